"""Agent Q (Putta et al. 2024, arXiv:2408.07199): tree search makes preference pairs, DPO learns
from them, iterated. Each iteration:

1. MCTS over env snapshots on `rollout_episodes` training tasks, the current policy proposing K
   sampled candidates per node and playing the rollouts (`agents/mcts.py`, `MCTSAgent`);
2. the searched trees become pairs, the best vs the worst visited child of every node whose
   children's mean returns differ (`preference_pairs`, their Sec. 4.2);
3. `epochs` passes of DPO over those pairs against the frozen starting policy (`trainers/dpo.py`);
4. (every `eval_every` iterations) greedy held-out success of the policy alone, without search.

The authors' code is not public; left out as in `agents/mcts.py`: the AI self-critique that
ranks the K candidates (values are the env's returns), and their mixing of the MCTS value with the
critique into the preference score (here the pair's order is by the backed-up mean return Q only).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from turngym.agents.mcts import MCTSAgent, MCTSConfig, Node
from turngym.engine.rollout import rollout
from turngym.errors import ConfigError
from turngym.storage import atomic_write_bytes, to_json_line
from turngym.trainers.common.collect import episode_seed, rollout_stats, sampling_as
from turngym.trainers.common.distributed import is_main
from turngym.trainers.dpo import DPOConfig, DPOTrainer, Pair, pair_rows, pairs_dataset
from turngym.types import Message, Trajectory, build_conversation

if TYPE_CHECKING:
    import datasets


@dataclass
class SearchResult:
    """What `search_pairs` found: the pairs, the searched episodes, and the env steps it took."""

    pairs: list[Pair]
    trajectories: list[Trajectory]
    env_steps: int
    """Every env step: the searches' own (expansions and rollouts) plus the episodes' turns."""


def search_pairs(
    env_id: str,
    policy: Any,
    seeds: Sequence[int],
    search: MCTSConfig | None = None,
    *,
    split: str = "train",
    max_turns: int | None = None,
    history_window: int | None = None,
    min_margin: float = 0.0,
    sink: Callable[[Trajectory], None] | None = None,
) -> SearchResult:
    """Play one episode per seed with `MCTSAgent(policy, search)` and turn every searched tree into
    DPO pairs (best vs worst visited child, `preference_pairs`). The policy's prompts, in the search
    and in the pairs, keep `history_window` turns. An LM policy proposes its K candidates by
    sampling: give it a temperature > 0 (`sampling_as`)."""
    search = replace(search or MCTSConfig(), keep_trees=True, history_window=history_window)
    pairs: list[Pair] = []
    trajectories: list[Trajectory] = []
    env_steps = 0
    for seed in seeds:  # one agent per episode: its trees belong to one task's instructions
        agent = MCTSAgent(policy, search)
        (trajectory,) = rollout(
            env_id,
            agent,
            seeds=[seed],
            split=split,
            max_turns=max_turns,
            history_window=history_window,
            sink=sink,
        )
        rows = preference_pairs(agent.trees, trajectory.instructions, min_margin, history_window)
        pairs.extend(pair_rows(rows))
        trajectories.append(trajectory)
        env_steps += agent.env_steps + trajectory.num_turns
    return SearchResult(pairs, trajectories, env_steps)


@dataclass
class AgentQConfig(DPOConfig):
    """Agent Q: each of `iterations` searches `rollout_episodes` training tasks with MCTS (the
    policy proposing and rolling out), then runs `epochs` passes of DPO over the new pairs."""

    budget: int = 16
    """MCTS simulations per executed action (`MCTSConfig.budget`)."""
    num_candidates: int = 4
    """K: actions the policy samples per node (`MCTSConfig.num_candidates`; sampled at `temperature`)."""
    exploration: float = 1.0
    """c of the search's UCB1 (`MCTSConfig.exploration`)."""
    min_margin: float = 0.0
    """A node gives a pair only where its best and worst children's mean returns differ by more than this."""

    algo = "agent_q"
    plays_episodes = True  # its search plays with the policy (DPO, which it extends, does not)
    loop_unit = "iterations"
    curve_axis = "env_steps"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.pairs:
            raise ConfigError(
                "agent_q makes its pairs by search: train on a pairs file with `turngym train dpo` instead"
            )
        if self.temperature <= 0:
            raise ConfigError(
                f"agent_q samples the K candidates of each node: temperature must be > 0, got {self.temperature}"
            )
        if self.async_collect:
            raise ConfigError("agent_q searches its episodes in this process: async_collect does not apply")
        if self.min_margin < 0:
            raise ConfigError(f"min_margin must be >= 0, got {self.min_margin}")
        self.search_config()  # MCTSConfig checks budget, num_candidates and exploration

    def search_config(self, seed: int = 0) -> MCTSConfig:
        return MCTSConfig(
            budget=self.budget, num_candidates=self.num_candidates, exploration=self.exploration, seed=seed
        )


class AgentQTrainer(DPOTrainer):
    """Agent Q's loop on `agent` (default: the policy `config` names). Each iteration's pairs are
    written to the run folder's `pairs/iter_NNNNNN.jsonl` (TRL rows: `turngym train dpo --set
    pairs=runs/NAME/pairs` trains on them all) and its searched episodes to `trajectories.jsonl`."""

    def __init__(self, config: AgentQConfig | None = None, agent: Any = None, resume: bool = False) -> None:
        super().__init__(config or AgentQConfig(), agent, resume=resume)

    def _load_pairs(self) -> list[Pair]:
        return []  # made by search, iteration by iteration

    def iteration(self, iteration: int) -> tuple[dict[str, Any], int]:
        config = self.config
        seed = episode_seed(config, iteration)  # a resumed run searches the same tasks

        with self.playing() as player, sampling_as(player, config.sampling):
            result = search_pairs(
                config.env_id,
                player,
                [seed + i for i in range(config.rollout_episodes)],
                config.search_config(seed),
                max_turns=config.max_turns,
                history_window=config.history_window,
                min_margin=config.min_margin,
                sink=self.run.iteration_sink(iteration),
            )
        self.pairs = result.pairs
        self._write_pairs(iteration, result.pairs)
        metrics: dict[str, Any] = self.update(result.pairs, passes=config.epochs) if result.pairs else {}
        metrics["charts/pairs"] = len(result.pairs)
        metrics.update(rollout_stats(result.trajectories))  # the searched episodes: success with search
        return metrics, result.env_steps

    def _write_pairs(self, iteration: int, pairs: Sequence[Pair]) -> None:
        if not is_main():  # the other processes of a multi-process run found the same pairs
            return
        folder = self.run.dir / "pairs"
        for stale in folder.glob("iter_*.jsonl"):  # a killed run's later iterations: made again on resume
            if int(stale.stem.removeprefix("iter_")) > iteration:
                stale.unlink()
        rows = pairs_dataset(pairs).to_list() if pairs else []
        atomic_write_bytes(folder / f"iter_{iteration:06d}.jsonl", b"".join(to_json_line(r) for r in rows))


def preference_pairs(
    trees: Sequence[Node], instructions: str, min_margin: float = 0.0, history_window: int | None = None
) -> datasets.Dataset:
    """DPO pairs from searched trees, one per visited node with two or more visited children whose
    mean returns differ by more than `min_margin`: the best child's action is `chosen`, the worst's
    `rejected` (Agent Q Sec. 4.2). TRL's conversational preference format: `prompt` (the episode so
    far as messages, ending with the observation), `chosen` and `rejected` (one assistant message)."""
    import datasets

    rows: dict[str, list[Any]] = {"prompt": [], "chosen": [], "rejected": []}
    stack = list(trees)
    while stack:
        node = stack.pop()
        visited = [(a, c) for a, c in node.children.items() if c.visits > 0]
        stack.extend(c for _, c in visited)
        if len(visited) < 2:
            continue
        (best, b), (worst, w) = max(visited, key=lambda x: x[1].q), min(visited, key=lambda x: x[1].q)
        if b.q - w.q <= min_margin:
            continue
        rows["prompt"].append(
            build_conversation(instructions, node.observations, node.actions, history_window)
        )
        rows["chosen"].append([Message(role="assistant", content=best)])
        rows["rejected"].append([Message(role="assistant", content=worst)])
    return datasets.Dataset.from_dict(rows)
