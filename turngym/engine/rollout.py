"""The batched rollout engine: all live episodes answer in one `agent.act` call per turn."""

from __future__ import annotations

import bisect
import inspect
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import gymnasium

from turngym.core import quote_action
from turngym.engine.backends import (
    BackendBuilder,
    EnvBackend,
    EnvFactory,
    EnvResult,
    WorkerEnvProxy,
    env_id_of,
    make_backend,
)
from turngym.errors import ConfigError, EnvError, TurnGymError
from turngym.storage import JsonlWriter
from turngym.types import Conversation, Trajectory, Turn, build_conversation

Sink = Callable[[Trajectory], None]


@dataclass
class LiveEpisode:
    """An episode in flight: what an agent may look at besides the conversation (scripted agents
    read `env` and `info`; LM agents ignore it). With env workers, `env` is a
    `turngym.env_backends.WorkerEnvProxy` whose methods run on the env in its worker."""

    env: gymnasium.Env | WorkerEnvProxy
    env_id: str
    index: int  # position in the rollout's episode list
    seed: int | None
    split: str
    requested_task_id: str | None
    reset_info: dict[str, Any]
    observations: list[str]
    actions: list[str] = field(default_factory=list)
    action_tokens: list[list[int] | None] = field(default_factory=list)
    action_logprobs: list[list[float] | None] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    infos: list[dict[str, Any]] = field(default_factory=list)
    slot: int = 0  # the batch position (and env) the episode plays in

    @property
    def info(self) -> dict[str, Any]:
        """The latest info (from `reset` before the first step)."""
        return self.infos[-1] if self.infos else self.reset_info

    @property
    def turn(self) -> int:
        return len(self.actions)

    @property
    def instructions(self) -> str:
        return self.env.get_wrapper_attr("instructions")

    def conversation(self, history_window: int | None = None) -> Conversation:
        return build_conversation(self.instructions, self.observations, self.actions, history_window)

    def record(
        self,
        action: str,
        step: tuple,
        tokens: list[int] | None = None,
        logprobs: list[float] | None = None,
    ) -> None:
        """Add one turn: `action` and what `env.step(action)` returned (`step`, the 5-tuple)."""
        observation, reward, _, _, info = step
        self.actions.append(action)
        self.action_tokens.append(tokens)
        self.action_logprobs.append(logprobs)
        self.observations.append(observation)
        self.rewards.append(float(reward))
        self.infos.append(dict(info))

    def fork(
        self,
        observations: Sequence[str],
        actions: Sequence[str],
        info: dict[str, Any],
        seed: int | None = None,
    ) -> LiveEpisode:
        """This episode at another history (a search tree's node), for a policy to read: the same env
        and task, `observations`/`actions` as its turns so far, `info` as the latest info, and `seed`
        (default: this episode's) for agents that sample by episode. Rewards and infos before the
        last are not kept in a tree node: zeros and empty dicts stand in (policies read the
        conversation and the latest info)."""
        return LiveEpisode(
            env=self.env,
            env_id=self.env_id,
            index=self.index,
            seed=self.seed if seed is None else seed,
            split=self.split,
            requested_task_id=self.requested_task_id,
            reset_info=self.reset_info,
            observations=list(observations),
            actions=list(actions),
            action_tokens=[None] * len(actions),
            action_logprobs=[None] * len(actions),
            rewards=[0.0] * len(actions),
            infos=[*([{}] * (len(actions) - 1)), info] if actions else [],
            slot=self.slot,
        )


@runtime_checkable
class Agent(Protocol):
    """A policy: one batched call maps every live conversation to its next action.

    LM agents (HFAgent, TinyAgent, VLLMAgent) also have `generate(conversations) -> list[Generation]`;
    the rollout calls that instead of `act` and keeps each action's sampled token ids in
    `Turn.action_tokens`, so trainers score the tokens the policy drew. A `generate` that takes
    `streams=` gets one key per episode and turn to seed that row's sampler with. An agent with
    `sampling_logprobs = True` also has the log-probs it reports kept in `Turn.action_logprobs`."""

    def act(
        self, conversations: Sequence[Conversation], episodes: Sequence[LiveEpisode] | None = None
    ) -> list[str]: ...


def rollout(
    env: str | EnvFactory,
    agent: Agent,
    num_episodes: int | None = None,
    *,
    batch_size: int = 8,
    seeds: Sequence[int] | None = None,
    task_ids: Sequence[str] | None = None,
    seed: int = 0,
    split: str = "train",
    max_turns: int | None = None,
    history_window: int | None = None,
    sink: Sink | str | os.PathLike[str] | None = None,
    env_kwargs: dict[str, Any] | None = None,
    progress: bool = False,
    env_workers: int = 0,
    backend: str | BackendBuilder | None = None,
    overlap: bool = False,
    first_index: int = 0,
) -> list[Trajectory]:
    """Run episodes with up to `batch_size` live at once and return their trajectories in episode order.

    Episode i is `reset(seed=seeds[i], options={"split": split, "task_id": task_ids[i]})`; without
    `seeds` the seeds are `seed, seed+1, ...`. Each turn sends the conversations of all live episodes
    to ONE `agent.act` call, steps each env, and refills finished slots with the next episode
    (continuous batching). An episode ends when the env terminates or truncates it, or after
    `max_turns` actions (default: the env's registered `max_episode_steps`). Finished trajectories
    stream to `sink` (a callable, or a JSONL path) as they complete.

    `env_workers=N` hosts the envs in N worker processes (`turngym.env_backends.ProcessBackend`)
    that step concurrently; `backend` picks another env backend by name or builder
    (`turngym.env_backends.ENV_BACKENDS`). With `overlap=True` (and a backend that returns steps as
    they finish) the agent acts for the ready episodes as soon as they are half of the batch, while
    the other envs still step: worth it when env steps take about as long as a generate call, not
    when each call has a large fixed cost. The same seeds give the same trajectories with any
    backend, as long as the agent's action for an episode does not depend on which episodes share
    its batch (true of the scripted agents and of the LM agents' per-episode streams).
    `first_index` is the index episode 0 has in a larger rollout this one is a share of (a process
    of a multi-process run plays one): the LM agents' streams then draw that rollout's tokens.
    """
    plan = _episode_plan(num_episodes, seeds, task_ids, seed)
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    make_env = _env_factory(env, max_turns, env_kwargs or {})
    envs = make_backend(make_env, env_workers, backend)
    writer = JsonlWriter(sink) if isinstance(sink, (str, os.PathLike)) else None
    emit: Sink | None = writer.write if writer else sink
    agent_name = getattr(agent, "name", type(agent).__name__)
    slots = _Slots(envs, plan, split, min(batch_size, len(plan)))
    bar = _EpisodeProgress(len(plan)) if progress else None
    results: list[Trajectory | None] = [None] * len(plan)
    try:
        while slots.unfinished():
            slots.start_episodes()
            if envs.pending():
                for episode, step in slots.receive():
                    trajectory = None
                    terminated, truncated = step[2], step[3]
                    if terminated or truncated or episode.turn >= _turn_limit(episode.env, max_turns):
                        trajectory = episode_trajectory(episode, bool(terminated), agent_name)
                        results[episode.index] = trajectory
                        if emit:
                            emit(trajectory)
                        slots.free(episode)
                    else:
                        slots.ready.append(episode)
                    if bar:
                        bar.stepped(trajectory)
                if bar:
                    bar.show()
                if slots.must_wait(overlap):
                    continue
            if slots.ready:
                episodes = slots.take_ready()
                conversations = [episode.conversation(history_window) for episode in episodes]
                actions, action_tokens, action_logprobs = _act(
                    agent, conversations, episodes, seed, first_index
                )
                _check_actions(actions, len(episodes), agent_name)
                slots.step(episodes, actions, action_tokens, action_logprobs)
    finally:
        if bar:
            bar.stop()
        if writer:
            writer.close()
        envs.close()
    return [t for t in results if t is not None]


class _Slots:
    """The rollout's continuous batching: which episode lives in which batch slot (each slot with its
    env), which are resetting, stepping or ready for their next action, and the next one to start."""

    def __init__(
        self, envs: EnvBackend, plan: list[tuple[int | None, str | None]], split: str, batch: int
    ) -> None:
        self.envs, self.plan, self.split, self.batch = envs, plan, split, batch
        self.free_slots = list(range(batch))
        self.starting: dict[int, int] = {}  # slot -> index of the episode whose reset is in flight there
        self.stepping: dict[
            int, tuple[LiveEpisode, str, list[int] | None]
        ] = {}  # slot -> (episode, action, tokens)
        self.ready: list[LiveEpisode] = []  # episodes waiting for their next action
        self.next_index = 0

    def unfinished(self) -> bool:
        return self.next_index < len(self.plan) or bool(self.ready) or self.envs.pending()

    def start_episodes(self) -> None:
        """Reset the next planned episodes in the free slots."""
        while self.next_index < len(self.plan) and self.free_slots:
            slot = self.free_slots.pop(0)
            seed, task_id = self.plan[self.next_index]
            self.envs.reset_async(slot, seed, _reset_options(self.split, task_id))
            self.starting[slot] = self.next_index
            self.next_index += 1

    def receive(self) -> Iterator[tuple[LiveEpisode, tuple]]:
        """The env steps that came back, each recorded on its episode, as (episode, step result);
        a finished reset joins `ready`; a step that raised stops the rollout with an `EnvError`."""
        for result in self.envs.wait():
            if result.kind == "reset":
                index = self.starting.pop(result.slot)
                self.ready.append(_started(self.envs, result, index, self.plan, self.split))
                continue
            episode, action, tokens, logprobs = self.stepping.pop(result.slot)
            if result.error is not None:
                raise _step_error(episode, action, result.error) from result.error
            episode.record(action, result.value, tokens, logprobs)
            yield episode, result.value

    def free(self, episode: LiveEpisode) -> None:
        bisect.insort(self.free_slots, episode.slot)

    def must_wait(self, overlap: bool) -> bool:
        """Whether to collect more results before the agent acts: start the next episodes first (they
        join this turn's agent call), and wait for the envs still stepping (with `overlap`: until half
        of the batch is ready)."""
        if self.free_slots and self.next_index < len(self.plan):
            return True
        occupied = self.batch - len(self.free_slots)
        return self.envs.pending() and not (overlap and _enough_ready(len(self.ready), occupied))

    def take_ready(self) -> list[LiveEpisode]:
        """The ready episodes in index order (in-process: all live episodes at once); none stay ready."""
        episodes = sorted(self.ready, key=lambda e: e.index)
        self.ready = []
        return episodes

    def step(
        self,
        episodes: list[LiveEpisode],
        actions: list[str],
        tokens: list[list[int] | None],
        logprobs: list[list[float] | None],
    ) -> None:
        for episode, action, action_tokens, action_logprobs in zip(episodes, actions, tokens, logprobs):
            self.stepping[episode.slot] = (episode, action, action_tokens, action_logprobs)
            self.envs.step_async(episode.slot, action)


def _episode_plan(
    num_episodes: int | None, seeds: Sequence[int] | None, task_ids: Sequence[str] | None, seed: int
) -> list[tuple[int | None, str | None]]:
    lengths = {name: len(v) for name, v in (("seeds", seeds), ("task_ids", task_ids)) if v is not None}
    if num_episodes is not None:
        lengths["num_episodes"] = num_episodes
    if not lengths:
        raise ConfigError("rollout needs num_episodes, seeds or task_ids")
    if len(set(lengths.values())) > 1:
        raise ConfigError(f"num_episodes, seeds and task_ids disagree on the episode count: {lengths}")
    n = next(iter(lengths.values()))
    if n < 0:
        raise ConfigError(f"num_episodes must be >= 0, got {n}")
    episode_seeds = list(seeds) if seeds is not None else [seed + i for i in range(n)]
    episode_tasks = list(task_ids) if task_ids is not None else [None] * n
    return list(zip(episode_seeds, episode_tasks))


def _env_factory(env: str | EnvFactory, max_turns: int | None, env_kwargs: dict[str, Any]) -> EnvFactory:
    if isinstance(env, str):
        from turngym.registry import make

        turn_kwargs = {"max_episode_steps": max_turns} if max_turns is not None else {}
        make(env, **turn_kwargs, **env_kwargs).close()  # fail fast on a bad id or argument
        return lambda: make(env, **turn_kwargs, **env_kwargs)
    if env_kwargs:
        raise ConfigError("env_kwargs only applies to env ids; bind them in your env factory instead")
    if not callable(env):
        raise ConfigError(f"env must be an env id or a factory returning an env, got {env!r}")
    return env


def _turn_limit(env: gymnasium.Env, max_turns: int | None) -> int:
    if max_turns is not None:
        if max_turns < 1:
            raise ConfigError(f"max_turns must be >= 1, got {max_turns}")
        return max_turns
    limit = env.spec.max_episode_steps if env.spec is not None else None
    if limit is None:
        raise ConfigError(f"{env_id_of(env)} has no turn limit: pass max_turns= (every episode must end)")
    return limit


def _reset_options(split: str, task_id: str | None) -> dict[str, Any]:
    options: dict[str, Any] = {"split": split}
    if task_id is not None:
        options["task_id"] = task_id
    return options


def start_episode(
    env: str | gymnasium.Env,
    seed: int | None = None,
    split: str = "train",
    index: int = 0,
    task_id: str | None = None,
) -> LiveEpisode:
    """Reset `env` (an env, or an id for `turngym.make`) and return its episode, for code that plays
    one episode a step at a time outside `rollout` (tree search, reflection data): step
    `episode.env`, add each turn with `episode.record`, end with `episode_trajectory`."""
    if isinstance(env, str):
        from turngym.registry import make

        env = make(env)
    reset = env.reset(seed=seed, options=_reset_options(split, task_id))
    return _reset_episode(env, index, seed, split, task_id, reset)


def _started(
    envs: EnvBackend, result: EnvResult, index: int, plan: list[tuple[int | None, str | None]], split: str
) -> LiveEpisode:
    if result.error is not None:  # a bad task id or option: the env's own error, as from `env.reset`
        raise result.error
    seed, task_id = plan[index]
    return _reset_episode(envs.env(result.slot), index, seed, split, task_id, result.value, result.slot)


def _reset_episode(
    env: gymnasium.Env | WorkerEnvProxy,
    index: int,
    seed: int | None,
    split: str,
    task_id: str | None,
    reset: tuple[str, dict[str, Any]],
    slot: int = 0,
) -> LiveEpisode:
    """A new episode from what `env.reset` returned (`reset`: the observation and info)."""
    observation, info = reset
    return LiveEpisode(
        env=env,
        env_id=env_id_of(env),
        index=index,
        seed=seed,
        split=split,
        requested_task_id=task_id,
        reset_info=info,
        observations=[observation],
        slot=slot,
    )


def _enough_ready(ready: int, occupied: int) -> bool:
    """Act on the ready episodes while the others still step once they are half of the batch: the
    model generates for one half while the other half's envs step (only a backend that returns
    results as they finish, such as `ProcessBackend`, ever has steps in flight here)."""
    return 2 * ready >= occupied


def _step_error(episode: LiveEpisode, action: str, exc: BaseException) -> EnvError:
    """An exception from `env.step` as an `EnvError` that says which episode and action broke the
    env (the rollout stops: an env bug is not hidden; finished episodes are already saved)."""
    return EnvError(
        f"{episode.env_id} step raised {type(exc).__name__}: {_first_line(exc)} "
        f"(episode {episode.index}, seed {episode.seed}, task_id {episode.reset_info.get('task_id')!r}, "
        f"turn {episode.turn}, action {quote_action(action, 200)})"
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:500] if text else "(no message)"


def _act(
    agent: Agent, conversations: list[Conversation], live: list[LiveEpisode], seed: int, first_index: int = 0
) -> tuple[list[str], list[list[int] | None], list[list[float] | None]]:
    """The agent's actions and, for an LM agent, the token ids it sampled for each and, from an
    agent whose `sampling_logprobs` is true (the vLLM rollout engine), their log-probs under the
    distribution it sampled from (`Generation.logprobs`; else None: an HF agent's are at temperature 1
    and vary in the last bits with the batch, so they are not kept).

    An LM agent whose `generate` takes `streams` gets one key per episode and turn (the rollout's
    seed, the episode's index and seed, the turn) to seed that episode's sampler with, so its
    tokens do not depend on `batch_size` or on the episodes that share its batch."""
    generate = getattr(agent, "generate", None)
    if callable(generate):
        if "streams" in inspect.signature(generate).parameters:
            streams = [(seed, first_index + e.index, e.seed, e.turn) for e in live]
            generations = generate(conversations, streams=streams)
        else:
            generations = generate(conversations)
        keep_logprobs = getattr(agent, "sampling_logprobs", False)
        return (
            [g.text for g in generations],
            [list(g.token_ids) for g in generations],
            [(list(g.logprobs) or None) if keep_logprobs else None for g in generations],
        )
    return agent.act(conversations, live), [None] * len(conversations), [None] * len(conversations)


def _check_actions(actions: object, expected: int, agent_name: str) -> None:
    if not isinstance(actions, list) or len(actions) != expected:
        got = f"{len(actions)} actions" if isinstance(actions, list) else type(actions).__name__
        raise TurnGymError(f"agent {agent_name} returned {got} for {expected} conversations")
    bad = [type(a).__name__ for a in actions if not isinstance(a, str)]
    if bad:
        raise TurnGymError(f"agent {agent_name} returned non-string actions: {bad[:3]}")


def episode_trajectory(
    episode: LiveEpisode,
    terminated: bool,
    agent_name: str,
    truncated: bool | None = None,
    metadata: dict[str, Any] | None = None,
) -> Trajectory:
    """The finished `episode` as a Trajectory (truncated unless the env terminated it, or as
    `truncated` says where the caller stopped for its own reasons; metadata: the split and the
    reset's task type, or `metadata`). Anything that plays episodes outside `rollout` builds its
    trajectories with this too."""
    reset_info = episode.reset_info
    turns = [
        Turn(
            observation=obs, action=act, reward=rew, info=info, action_tokens=tokens, action_logprobs=logprobs
        )
        for obs, act, rew, info, tokens, logprobs in zip(
            episode.observations,
            episode.actions,
            episode.rewards,
            episode.infos,
            episode.action_tokens,
            episode.action_logprobs,
        )
    ]
    if metadata is None:
        metadata = {"split": episode.split}
        if "task_type" in reset_info:
            metadata["task_type"] = reset_info["task_type"]
    return Trajectory(
        env_id=episode.env_id,
        task_id=reset_info.get("task_id", episode.requested_task_id),
        seed=episode.seed,
        instructions=episode.instructions,
        task=str(reset_info.get("task", "")),
        turns=turns,
        final_observation=episode.observations[-1],
        success=bool(episode.info.get("success", False)),
        total_reward=float(sum(episode.rewards)),
        terminated=terminated,
        truncated=not terminated if truncated is None else truncated,
        agent=agent_name,
        metadata=metadata,
    )


class _EpisodeProgress:
    """The rollout's progress bar (on stderr: stdout keeps only results): episodes finished, their
    success rate so far, and env steps, which move during a slow LM's turn before any episode ends."""

    def __init__(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            TextColumn("episodes"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("success {task.fields[success]}"),  # of the finished episodes so far
            TextColumn("{task.fields[steps]} env steps"),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=False,
        )
        self.task = self.bar.add_task("episodes", total=total, success="-", steps=0)
        self.bar.start()
        self.finished = self.successes = self.env_steps = 0

    def stepped(self, finished: Trajectory | None) -> None:
        """One env step, and the trajectory it finished (None: the episode goes on)."""
        self.env_steps += 1
        if finished is not None:
            self.finished += 1
            self.successes += finished.success
            self.bar.update(self.task, advance=1, success=f"{self.successes / self.finished:.0%}")

    def show(self) -> None:
        self.bar.update(self.task, steps=self.env_steps)

    def stop(self) -> None:
        self.bar.stop()
