"""Playing the policy: training rollouts (seeded per iteration, tagged for resume), greedy held-out
evaluation as `eval/*` metrics, and the `charts/*` summary of a batch of episodes."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from turngym.agents.sampling import SamplingConfig
from turngym.engine.ray_backend import env_backend
from turngym.trainers.common.distributed import gather_episodes, rank_share
from turngym.types import Trajectory

if TYPE_CHECKING:
    from turngym.agents.hf import HFAgent
    from turngym.trainers.common.config import TrainConfig
    from turngym.trainers.common.run import Run


@contextlib.contextmanager
def sampling_as(agent: Any, sampling: SamplingConfig) -> Iterator[None]:
    """Temporarily change how `agent` samples (e.g. greedy for eval)."""
    saved = agent.sampling
    agent.sampling = sampling
    try:
        yield
    finally:
        agent.sampling = saved


def episode_seed(config: TrainConfig, iteration: int) -> int:
    """The env seed of an iteration's first training episode (the next ones count up from it): it
    depends only on the run seed and the iteration, so a resumed run plays the same tasks, and it is
    far from the eval seeds."""
    return config.seed * 1_000_003 + iteration * 10_007


def data_seed(config: TrainConfig) -> int:
    """The env seed of the first episode of the data a trainer collects before training (BC's expert
    demonstrations, A-LoL's logged policy episodes): a stream apart from the iterations' episodes."""
    return config.seed * 1_000_003 + 999_983


def collect(
    agent: HFAgent,
    config: TrainConfig,
    iteration: int,
    run: Run | None,
    policy_version: int | None = None,
    **kwargs: Any,
) -> list[Trajectory]:
    """Sample `rollout_episodes` train-split episodes with the policy (seeds depend only on the run
    seed and the iteration, so a resumed run plays the same episodes). Each trajectory's metadata
    holds its `iteration` and the `policy_version` that played it (the number of updates the policy
    had had: `iteration - 1`, or `iteration - 2` when collected ahead by `OffPolicyCollector`).
    In a multi-process run each process plays its share (whole GRPO groups) and all get every episode."""
    import turngym

    version = iteration - 1 if policy_version is None else policy_version
    seed = episode_seed(config, iteration)
    kwargs.setdefault("num_episodes", config.rollout_episodes)
    batch_size = kwargs.pop("batch_size", config.rollout_episodes)
    share = rank_share(kwargs, seed, getattr(config, "group_size", 1))
    sink = run.iteration_sink(iteration, policy_version=version) if run is not None else None

    with sampling_as(agent, config.sampling):
        trajectories = turngym.rollout(
            config.env_id,
            agent,
            batch_size=batch_size,
            seed=seed,
            split="train",
            max_turns=config.max_turns,
            history_window=config.history_window,
            env_workers=config.env_workers,
            backend=env_backend(config.env_backend, config.ray_address),
            sink=sink if share is None else None,
            **(kwargs if share is None else share),
        )
    for trajectory in trajectories:
        trajectory.metadata["policy_version"] = version
    return trajectories if share is None else gather_episodes(trajectories, sink)


class OffPolicyCollector:
    """One-step off-policy collection (`TrainConfig.async_collect`): while iteration i's update runs,
    a background thread plays iteration i+1's episodes with a frozen copy of the policy as it was
    before that update, as asynchronous RL systems do (e.g. AReaL, PipelineRL, with staleness 1).

    `rollouts(i)` returns iteration i's trajectories and the agent that played them (the
    behaviour policy), so PPO and GRPO take their ratio's denominator from it: the ratio is
    pi_new / pi_behaviour, the importance weight of the off-policy sample. Generation and the update
    then share the machine (on one GPU, or on CPU cores), so the gain is the env time and whatever
    the update leaves idle; `bench/async_collect.py` measures it. The copy costs the policy's memory
    once more. A resumed run collects its next iteration with the checkpoint's policy."""

    def __init__(self, trainer: Any) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.trainer = trainer
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="turngym-collect")
        self.ahead: tuple[int, Any, Any] | None = None  # (iteration, future, behaviour agent)

    def rollouts(self, iteration: int) -> tuple[list[Trajectory], Any]:
        trainer, config = self.trainer, self.trainer.config
        if self.ahead is not None and self.ahead[0] == iteration:
            _, future, behaviour = self.ahead
            self.ahead = None
            trajectories = future.result()
        else:  # the first iteration (or the first after a resume): play it now
            behaviour = trainer.agent
            trajectories = collect(
                behaviour, config, iteration, trainer.run, **trainer.rollout_kwargs(iteration)
            )
        if iteration < config.num_iterations:
            frozen = behaviour_copy(trainer.agent)
            future = self.executor.submit(
                collect,
                frozen,
                config,
                iteration + 1,
                trainer.run,
                policy_version=iteration - 1,  # updates the policy has had before iteration's own
                **trainer.rollout_kwargs(iteration + 1),
            )
            self.ahead = (iteration + 1, future, frozen)
        return trajectories, behaviour

    def close(self) -> None:
        """Wait for a collection in flight (a thread cannot be stopped) and drop its episodes."""
        self.executor.shutdown(wait=True, cancel_futures=True)
        self.ahead = None


def behaviour_copy(agent: Any) -> Any:
    """A frozen copy of `agent` to play with while the original trains."""
    import copy

    frozen = copy.deepcopy(agent)
    frozen.model.eval()
    frozen.model.requires_grad_(False)
    return frozen


def evaluate_policy(
    agent: HFAgent,
    config: TrainConfig,
    progress: bool = False,
    sink: Callable[[Trajectory], None] | None = None,
    notify: Callable[[str], None] | None = None,
) -> dict[str, float]:
    """Greedy success on the fixed held-out episodes (`turngym.evaluate`; `config.eval_split`), as `eval/*` metrics;
    `progress` shows a bar over episodes (not inside another live bar: rich runs one at a time); `sink`
    receives the episodes played (the loop writes them to the run's `eval_trajectories.jsonl`); `notify`
    gets `turngym.evaluate`'s notices (default: a warning).

    Where the env lists its tasks, `eval_episodes` is at most one episode per task (`turngym.evaluate`
    warns once when it asks for more) and the interval is over the `eval/tasks` distinct tasks."""
    import turngym

    greedy = SamplingConfig(temperature=0.0, max_new_tokens=config.max_new_tokens)
    with sampling_as(agent, greedy):
        result = turngym.evaluate(
            config.env_id,
            agent,
            config.eval_episodes,
            batch_size=min(config.eval_episodes, 64),
            max_turns=config.max_turns,
            history_window=config.history_window,
            split=config.eval_split,
            progress=progress,
            env_workers=config.env_workers,
            backend=env_backend(config.env_backend, config.ray_address),
            sink=sink,
            notify=notify,
        )
    stats = result.overall
    return {
        "eval/success_rate": stats.success_rate,
        "eval/ci_low": stats.ci_low,
        "eval/ci_high": stats.ci_high,
        "eval/mean_turns": stats.mean_turns,
        "eval/episodes": stats.episodes,
        "eval/tasks": stats.tasks,
    }


def rollout_stats(trajectories: Sequence[Trajectory]) -> dict[str, float]:
    n = max(len(trajectories), 1)
    turns = [turn for t in trajectories for turn in t.turns]
    return {
        "charts/train_success_rate": sum(t.success for t in trajectories) / n,
        "charts/train_return": sum(t.total_reward for t in trajectories) / n,
        "charts/episode_turns": len(turns) / n,
        "charts/valid_action_rate": sum(bool(t.info.get("valid_action")) for t in turns) / max(len(turns), 1),
    }
