"""Agent-R (Yuan et al. 2025, seeds 001; code github.com/bytedance/Agent-R, read in its fork
zerosurplus/Agent-R): `turngym train agent_r ENV`. Tree search finds good and bad paths of a task; a bad
path, cut at its first error, is spliced to a reflection and the good path; then BC on it, each iteration
with the current policy (the paper's Sec. 3.2, iterative self-training). Term by term:
- one MCTS tree per task from its start, the policy proposing (`mcts_collection.py`): `MCTSAgent`
  (`agents/mcts.py`) with `keep_trees`; a task whose root value is <= 0 is skipped (`main`);
- leaf paths (`path_collection.py`: `find_leaf_paths`), every ordered pair whose leaf mean values
  (value / visits) differ by more than `beta`, shuffled (`pair_leaf_paths`), the high path's leaf value
  above `alpha` (`main`);
- the first error (`revise_worst_path`, the run's `--revise 1`): the policy, as verifier, judges the bad
  path's steps from its first action on, and the path is cut after the first one judged neither good nor
  uncertain (its last step if none) (`error="model"`); `error="value"` is TurnGym's alternative;
- the revision trajectory (`conversation_generation`): the bad path to its error with no loss, a
  revision thought (one of the first 10 of its 20 sentences, "Thought: ...\nAction: wait"), then the
  good path after what the two share.
Differences (docs/reflection.md has the table): here every turn is played in the env from the task's reset
(the env answers the reflection), the good path's actions are replayed from the state after the error
and, where they do not finish the task, `MCTSAgent` searches on (`continuation_budget`); pairs that
still fail are dropped; when the error ends the episode the turns are spliced as text, as there.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from turngym.agents.mcts import MCTSAgent, MCTSConfig, turn_limit
from turngym.engine.rollout import Agent, episode_trajectory, start_episode
from turngym.errors import ConfigError
from turngym.trainers.bc import TURN_MASK_KEY, TURN_WEIGHT_KEY
from turngym.trainers.common.search_paths import SearchPath, Task, leaf_paths, parting_turn
from turngym.trainers.common.self_train import SelfTrainConfig, SelfTrainer
from turngym.types import Trajectory, Turn, build_conversation

ERRORS = ("value", "model")
REFLECTION_SOURCES = ("sentences", "template", "model")
# the first 10 of `revision_thoughts` (mcts_utils/llm_server.py); `conversation_generation` draws
# `revision_thoughts[random.randint(0, 9)]`
REVISION_THOUGHTS = (
    "I realize my approach was flawed. I need to revise it.",
    "I took the wrong steps. I need to identify the right path.",
    "My actions were incorrect. I must adjust my strategy.",
    "I see an error in my actions. I need to fix it.",
    "I misunderstood the situation. Time to reassess.",
    "My decision was wrong. I should reevaluate.",
    "I went off course. I need to steer back on track.",
    "I recognize my mistake. Let’s find a better solution.",
    "My judgment was incorrect. I need to rethink it.",
    "I made an error. I must determine how to correct it.",
)


@dataclass
class RevisionConfig:
    """How `agent_r_trajectories` searches, finds the first error and writes the reflection."""

    budget: int = 32
    """MCTS simulations of each task's tree, from its reset state (`MCTSConfig.budget`)."""
    num_candidates: int = 4
    """Actions the policy proposes per tree node (`MCTSConfig.num_candidates`)."""
    exploration: float = 1.0
    """UCB1's c (`MCTSConfig.exploration`)."""
    error: str = "model"
    """How the bad path's first error is found. model (Agent-R's `revise_worst_path`, `--revise 1`): the
    policy judges each turn from the first (`judge_prompt`) and the first it calls bad is the error;
    value: the first turn after the paths part whose value Q(h, a) falls below the good path's Q there."""
    reflection_source: str = "sentences"
    """sentences: "Thought: S\nAction: wait" with S drawn from Agent-R's first 10 revision thoughts (as
    `conversation_generation`); template: `reflection`; model: the policy writes it (`reflection_prompt`)."""
    reflection: str = 'I see that "{action}" was a mistake. I need to find a better way.'
    """With reflection_source=template: the reflection turn (`{action}`: the erroneous action), sent to the
    env as the agent's reply."""
    reflection_prompt: str = (
        'Your action "{action}" was a mistake. In one sentence, say what went wrong, as the agent.'
    )
    """With reflection_source=model: the user message after the error that asks the policy for its reflection."""
    judge_prompt: str = (
        'Was your last action "{action}" good, bad or uncertain for the task? It led to: {observation} '
        "Give a reason, then end with Judgement: Good, Bad or Uncertain."
    )
    """With error=model: the user message after each turn of the failing path; a reply whose text after
    `Judgement:` says neither good nor uncertain marks the error (Agent-R's verifier rule)."""
    pairs_per_task: int = 0
    """Revision trajectories per task at most, the first of the shuffled pairs (0: all, as Agent-R)."""
    beta: float = 0.0
    """A pair's leaf mean values (value / visits) must differ by more than this (Agent-R's BETA; its
    README leaves BETA and ALPHA to the user)."""
    alpha: float = 0.0
    """A pair's high path needs a leaf value (the backed-up sum) above this (Agent-R's ALPHA)."""
    good_paths_per_task: int = 1
    """Successful paths per task also returned, trained on in full (Agent-R's `--data_type good`); 0: none."""
    prefix_weight: float = 0.0
    """Loss weight (`turn_weights`) of the turns before the reflection: 0 makes the failing prefix
    context only (Agent-R's `loss: False`); the reflection and the good continuation weigh 1."""
    continuation_budget: int = 8
    """MCTS simulations per turn when the good path's own actions do not finish the task from the
    state after the error (0: drop such pairs)."""

    def __post_init__(self) -> None:
        if self.error not in ERRORS:
            raise ConfigError(f"error must be one of {list(ERRORS)}, got {self.error!r}")
        if self.reflection_source not in REFLECTION_SOURCES:
            raise ConfigError(
                f"reflection_source must be one of {list(REFLECTION_SOURCES)}, got {self.reflection_source!r}"
            )
        for name in ("budget", "num_candidates"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("pairs_per_task", "good_paths_per_task", "continuation_budget", "beta", "prefix_weight"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")


def first_error_by_value(good: SearchPath, bad: SearchPath) -> int:
    """TurnGym's `error="value"`: the first turn t >= the parting turn b where the failing path's value
    Q(h_t, a_t) falls below the good path's Q(h_b, g_b) (the values cross); the failing path's last turn
    if never."""
    branch = parting_turn(good, bad)
    target = good.values[min(branch, len(good.values) - 1)]
    for turn in range(branch, len(bad.actions)):
        if bad.values[turn] < target:
            return turn
    return len(bad.actions) - 1


def first_error_by_judge(
    good: SearchPath, bad: SearchPath, judge: Agent, config: RevisionConfig, task: Task
) -> int:
    """Agent-R's `revise_worst_path`: `judge` (the policy) reads the bad path turn by turn from its first
    action (`worst_path[1:]`), and the first turn whose judgement is neither good nor uncertain is the
    error; the last turn if none is."""
    for turn in range(len(bad.actions)):
        conversation = build_conversation(
            task.instructions, bad.observations[: turn + 2], bad.actions[: turn + 1], task.history_window
        )
        question = config.judge_prompt.format(
            action=bad.actions[turn], observation=bad.observations[turn + 1]
        )
        reply = judge.act([[*conversation, {"role": "user", "content": question}]], [task.probe])[0]
        judgement = reply.split("Judgement:")[-1].lower()
        if "good" not in judgement and "uncertain" not in judgement:
            return turn
    return len(bad.actions) - 1


def pairs(
    paths: Sequence[SearchPath], config: RevisionConfig, rng: np.random.Generator
) -> list[tuple[SearchPath, SearchPath]]:
    """Agent-R's `pair_leaf_paths` and `main`: every ordered (high, low) pair of leaf paths whose leaf
    mean values differ by more than `beta`, in a random order, the high path's leaf value above `alpha`;
    the first `pairs_per_task` (0: all)."""
    chosen = [
        (high, low)
        for i, high in enumerate(paths)
        for j, low in enumerate(paths)
        if i != j and high.leaf_q - low.leaf_q > config.beta and high.leaf_value > config.alpha
    ]
    chosen = [chosen[i] for i in rng.permutation(len(chosen))]
    return chosen[: config.pairs_per_task] if config.pairs_per_task else chosen


def agent_r_trajectories(
    env_id: str,
    agent: Agent,
    seeds: Sequence[int],
    config: RevisionConfig | None = None,
    split: str = "train",
    search_seed: int = 0,
    judge: Agent | None = None,
    history_window: int | None = None,
) -> tuple[list[Trajectory], dict[str, int]]:
    """Agent-R's data for the tasks of `seeds`: revision trajectories (`metadata["method"] ==
    "agent_r"`) and, with `good_paths_per_task`, successful search paths (`"agent_r_good"`), every
    one played in the env from `reset(seed)`. `judge` (default: `agent`) judges turns with
    error=model; the policy's prompts keep `history_window` turns, as it was trained. Returns the
    trajectories and counts: env_steps (search, path completions, plays), tasks, tasks the search
    solved, no_value (tasks skipped: the tree's root value is <= 0), pairs, spliced (the error ended the
    episode: text splice), and pairs dropped: unfinished (no success after the reflection)."""
    config = config or RevisionConfig()
    judge = judge or agent
    keys = ("env_steps", "tasks", "no_value", "solved_by_search", "pairs", "spliced", "unfinished")
    stats = dict.fromkeys(keys, 0)
    out: list[Trajectory] = []
    rng = np.random.default_rng(search_seed)  # the pairs' order and the revision thoughts
    for index, seed in enumerate(seeds):
        episode = start_episode(env_id, seed, split, index)
        env = episode.env
        limit = turn_limit(env)
        budget, k, c = config.budget, config.num_candidates, config.exploration
        tree = MCTSConfig(budget, k, c, keep_trees=True, seed=search_seed, history_window=history_window)
        search = MCTSAgent(agent, tree)
        search.act([episode.conversation()], [episode])
        if not search.trees:  # the policy proposed nothing to search
            env.close()
            continue
        stats["env_steps"] += search.env_steps
        stats["tasks"] += 1
        if search.trees[-1].value_sum <= 0:  # Agent-R's `main`: `if root.value <= 0: return`
            stats["no_value"] += 1
            env.close()
            continue
        paths, steps = leaf_paths(search.trees[-1], episode, agent, limit, history_window)
        task = Task(env_id, seed, split, index, episode.instructions, episode, history_window)
        env.close()
        stats["env_steps"] += steps
        stats["solved_by_search"] += any(p.success for p in paths)
        best = sorted((p for p in paths if p.success), key=lambda p: (-p.total_reward, len(p.actions)))
        for path in best[: config.good_paths_per_task]:
            trajectory, played = _play(task, path.actions, agent, config)
            stats["env_steps"] += played
            if trajectory.success:
                trajectory.metadata = {"method": "agent_r_good", "split": split}
                out.append(trajectory)
        for good, bad in pairs(paths, config, rng):
            stats["pairs"] += 1
            if config.error == "value":
                error = first_error_by_value(good, bad)
            else:
                error = first_error_by_judge(good, bad, judge, config, task)
            revision, played = _revise(task, good, bad, error, agent, config, rng)
            stats["env_steps"] += played
            if revision is None:
                stats["unfinished"] += 1
            else:
                stats["spliced"] += revision.metadata["continuation"] == "text"
                out.append(revision)
    return out, stats


def _play(
    task: Task,
    actions: Sequence[str],
    agent: Agent,
    config: RevisionConfig,
    reflection: tuple[int, str] | None = None,
    search_budget: int = 0,
) -> tuple[Trajectory, int]:
    """Play `actions` in a fresh env from `reset(seed)`, with `reflection` (turn, text) the text as a
    turn after that turn, then, with `search_budget`, `MCTSAgent` until the episode ends. Returns the
    trajectory and the env steps taken."""
    episode = start_episode(task.env_id, task.seed, task.split, task.index)
    env = episode.env
    search = MCTSAgent(
        agent,
        MCTSConfig(
            budget=max(search_budget, 1),
            num_candidates=config.num_candidates,
            history_window=task.history_window,
        ),
    )
    terminated = truncated = False
    planned = list(actions)
    reflection_turn = None
    while not (terminated or truncated) and (planned or search_budget):
        if reflection is not None and reflection_turn is None and episode.turn == reflection[0] + 1:
            action = reflection[1]
            reflection_turn = episode.turn
        elif planned:
            action = planned.pop(0)
        else:
            action = search.act([episode.conversation(task.history_window)], [episode])[0]
        step = env.step(action)
        episode.record(action, step)
        terminated, truncated = bool(step[2]), bool(step[3])
    env.close()
    trajectory = episode_trajectory(episode, terminated, agent_name(agent), truncated or not terminated, {})
    if reflection_turn is not None:
        trajectory.metadata["reflection_turn"] = reflection_turn
    return trajectory, episode.turn + search.env_steps


def _revise(
    task: Task,
    good: SearchPath,
    bad: SearchPath,
    error: int,
    agent: Agent,
    config: RevisionConfig,
    rng: np.random.Generator,
) -> tuple[Trajectory | None, int]:
    """The revision trajectory of a pair: the bad path to `error`, the reflection, then the good path's
    turns after what the two share (`conversation_generation` skips the good path's leading actions
    equal to the cut bad path's); replayed in the env, where those do not finish the task the search
    does. An error that ended the episode leaves nothing to replay into: the recorded turns are spliced
    as text, the reflection answered "ok." as in `conversation_generation`."""
    branch = parting_turn(good, bad)
    start = min(branch, error + 1)
    reflection = _reflection(bad, error, agent, config, task, rng)
    prefix = bad.actions[: error + 1]
    steps = 0
    trajectory = None
    if error == len(bad.actions) - 1:
        trajectory, continuation = _splice(task, good, bad, error, start, reflection, agent), "text"
    budgets = (0, config.continuation_budget) if config.continuation_budget else (0,)
    for budget in budgets if trajectory is None else ():
        continuation = "splice" if budget == 0 else "search"
        replay = good.actions[start:] if budget == 0 else []
        trajectory, played = _play(task, [*prefix, *replay], agent, config, (error, reflection), budget)
        steps += played
        if trajectory.success and trajectory.metadata.get("reflection_turn") == error + 1:
            break
        trajectory = None
    if trajectory is None or not trajectory.success:
        return None, steps
    weights = [config.prefix_weight] * (error + 1) + [1.0] * (trajectory.num_turns - error - 1)
    trajectory.metadata = {
        "method": "agent_r",
        "split": task.split,
        TURN_WEIGHT_KEY: weights,
        TURN_MASK_KEY: [w > 0 for w in weights],
        "branch_turn": branch,
        "error_turn": error,
        "reflection_turn": error + 1,
        "error_by": config.error,
        "continuation": continuation,
        "failing_actions": list(bad.actions),
        "failing_values": list(bad.values),
        "good_actions": list(good.actions),
        "good_value": good.values[min(branch, len(good.values) - 1)],  # Q where the paths part
        "good_leaf_q": good.leaf_q,
    }
    return trajectory, steps


def _splice(
    task: Task, good: SearchPath, bad: SearchPath, error: int, start: int, reflection: str, agent: Agent
) -> Trajectory:
    """The bad path's recorded turns to `error`, the reflection, then the good path's from `start`."""
    turns = [Turn(bad.observations[t], bad.actions[t], bad.rewards[t]) for t in range(error + 1)]
    turns.append(Turn(bad.observations[error + 1], reflection, 0.0))
    prompts = ["ok.", *good.observations[start + 1 : len(good.actions)]]
    turns += [Turn(o, a, r) for o, a, r in zip(prompts, good.actions[start:], good.rewards[start:])]
    trajectory = episode_trajectory(task.probe, good.success, agent_name(agent), not good.success, {})
    trajectory.turns, trajectory.final_observation = turns, good.observations[len(good.actions)]
    trajectory.success, trajectory.total_reward = good.success, sum(t.reward for t in turns)
    return trajectory


def _reflection(
    bad: SearchPath, error: int, agent: Agent, config: RevisionConfig, task: Task, rng: np.random.Generator
) -> str:
    """The reflection turn after the bad path's `error`: Agent-R's sentence, the template, or the
    policy's own words."""
    if config.reflection_source == "sentences":  # `revision_thoughts[random.randint(0, 9)]`
        return f"Thought: {REVISION_THOUGHTS[int(rng.integers(10))]}\nAction: wait"
    if config.reflection_source == "template":
        return config.reflection.format(action=bad.actions[error])
    conversation = build_conversation(
        task.instructions, bad.observations[: error + 2], bad.actions[: error + 1], task.history_window
    )
    question = config.reflection_prompt.format(action=bad.actions[error])
    return agent.act([[*conversation, {"role": "user", "content": question}]], [task.probe])[0]


def agent_name(agent: Agent) -> str:
    return f"agent_r({getattr(agent, 'name', type(agent).__name__)})"


@dataclass
class AgentRConfig(SelfTrainConfig, RevisionConfig):
    """Agent-R: the fields of `RevisionConfig` (the search, the first error, the reflection) plus the
    shared ones; env steps count the search, its path completions and the plays."""

    algo = "agent_r"

    def __post_init__(self) -> None:
        SelfTrainConfig.__post_init__(self)
        RevisionConfig.__post_init__(self)


class AgentRTrainer(SelfTrainer):
    """Agent-R's iterative self-training: MCTS + splice with the current policy, then BC."""

    config_class = AgentRConfig

    def data(self, seeds: Sequence[int]) -> tuple[list[Trajectory], int, dict[str, float]]:
        config = self.config
        trajectories, stats = agent_r_trajectories(
            config.env_id,
            self.player,
            seeds,
            config,
            search_seed=seeds[0] if seeds else 0,
            history_window=config.history_window,
        )
        steps = stats.pop("env_steps")
        stats["revisions"] = sum(t.metadata["method"] == "agent_r" for t in trajectories)
        return trajectories, steps, stats
