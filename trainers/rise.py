"""RISE (Recursive Introspection, Qu et al. 2024, seeds 000/001; code github.com/cmu-mind/RISE):
`turngym train rise ENV`, for envs with a checkable answer (Calc, SQL, SearchQA, Python, Wordle).

A failed answer is followed by the env's feedback and an improved attempt, the best of N candidates from
the policy or the expert, each scored by replaying it from the snapshot taken before the first attempt.
Which attempts are trained on and how much follows RISE's `workflow_convert.py` term by term, at the
settings of its shipped `bash/convert.sh` (`--criteria all --remove_duplication`, `--temperature` 0.4):
`remove_duplication` drops an attempt repeating an earlier one (and the feedback to it); `convert_to_data`
keeps the first attempt always (unless criteria=success) and the others by `criteria`, and stops after an
attempt with reward 1; `exp_dataset_reward` weighs each kept attempt exp(reward / temperature).
`attempt_weights` is that rule; differences from the original are in docs/reflection.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from turngym.engine.rollout import Agent, LiveEpisode, episode_trajectory, start_episode
from turngym.errors import ConfigError
from turngym.trainers.bc import TURN_MASK_KEY, TURN_WEIGHT_KEY
from turngym.trainers.common.self_train import (
    RISE_CRITERIA,
    RISE_WEIGHTINGS,
    ReflectionConfig,
    SelfTrainConfig,
    SelfTrainer,
)
from turngym.types import Trajectory, Turn

ATTEMPTS_KEY = "attempt_turns"  # indices of the answer attempts, first attempt first
IMPROVERS = ("expert", "policy")


class AnswerExpert:
    """RISE's stronger improver: the env's gold answer (`answer_action()`) where it has one, else its
    scripted expert's next action. Reads the live env, like `ExpertAgent`."""

    name = "answer_expert"

    def act(self, conversations: Sequence[Any], episodes: Sequence[LiveEpisode] | None = None) -> list[str]:
        if episodes is None or len(episodes) != len(conversations):
            raise ConfigError("AnswerExpert reads the live envs: pass episodes")
        actions = []
        for episode in episodes:
            env = episode.env.unwrapped
            action = env.answer_action() or env.expert_action()
            if action is None:
                raise ConfigError(f"{episode.env_id} has neither answer_action() nor expert_action()")
            actions.append(action)
        return actions


def attempt_weights(
    actions: Sequence[str], rewards: Sequence[float], config: ReflectionConfig
) -> tuple[list[int], dict[int, float]]:
    """RISE's choice of attempts (`workflow_convert.py`): the attempts kept in the conversation (indices
    into `actions`; `remove_duplication` drops repeats and empty ones, and `convert_to_data` stops after
    a reward of 1), and {attempt index: loss weight} of those trained on (`criteria`, `weighting`)."""
    seen: set[str] = set()
    kept: list[int] = []
    for i, action in enumerate(actions):
        if config.remove_duplication:  # `remove_duplication`: strip, drop empty and repeated actions
            if action.strip() == "" or action.strip() in seen:
                continue
            seen.add(action.strip())
        kept.append(i)
    weights: dict[int, float] = {}
    for k, i in enumerate(kept):
        r = rewards[i]
        previous = [rewards[j] for j in kept[:k]]
        if k == 0 and config.criteria != "success":  # `if i < 1 and args.criteria != "success"`
            train = True
        else:
            train = {
                "all": True,
                "better": bool(previous) and r > previous[-1],
                "best": all(r >= p for p in previous),
                "success": r == 1.0,
            }[config.criteria]
        if train:
            weights[i] = {
                "exp_reward": math.exp(r / config.temperature),
                "improvement": r - (previous[-1] if previous else 0.0),
                "none": 1.0,
            }[config.weighting]
        if r == 1.0:  # `convert_to_data` breaks after a perfect answer
            kept = kept[: k + 1]
            break
    return kept, weights


def _score(env: Any, state: dict, episode: LiveEpisode, improver: Agent, n: int) -> tuple[str, tuple]:
    """The best of `n` improver candidates from `state`, each replayed from the snapshot."""
    conversation = episode.conversation()
    best: tuple[str, tuple] | None = None
    for _ in range(n):
        env.unwrapped.set_state(state)
        candidate = improver.act([conversation], [episode])[0]
        env.unwrapped.set_state(state)
        step = env.unwrapped.step(candidate)  # snapshots restore the env, not its wrappers
        if best is None or float(step[1]) > float(best[1][1]):
            best = (candidate, step)
    return best


def _drop_attempts(trajectory: Trajectory, dropped: Sequence[int]) -> None:
    """Remove the turns `dropped` and the env's answer to each (RISE's `remove_duplication` drops an
    action and its observation): the next turn's prompt becomes the dropped turn's."""
    observations = trajectory.observations
    for i in sorted(dropped, reverse=True):
        del observations[i + 1]
        del trajectory.turns[i]
    trajectory.turns = [
        Turn(o, t.action, t.reward, t.info, t.action_tokens) for o, t in zip(observations, trajectory.turns)
    ]
    trajectory.final_observation = observations[-1]


def rise_trajectories(
    env_id: str,
    policy: Agent,
    episodes: int,
    improver: Agent | None = None,
    seed: int = 0,
    split: str = "train",
    config: ReflectionConfig | None = None,
) -> list[Trajectory]:
    """RISE's multi-attempt conversations. `policy` plays each episode; where its last action (the
    first attempt) fails, the env's feedback is followed by up to `attempts - 1` improved attempts,
    each the best of `candidates` from `improver` (default: the policy itself, RISE's self-distillation;
    `AnswerExpert()` for distillation from a stronger model), scored from the snapshot taken before
    the first attempt. `attempt_weights` picks the attempts `metadata["turn_mask"]` trains on and
    their `metadata["turn_weights"]`; `metadata["env_steps"]` counts every candidate played."""
    config = config or ReflectionConfig()
    improver = improver or policy
    trajectories = []
    for index in range(episodes):
        episode = start_episode(env_id, seed + index, split, index)
        env = episode.env
        terminated = truncated = False
        state = env.unwrapped.get_state()
        while not (terminated or truncated):  # the policy's episode; the last action is attempt 1
            state = env.unwrapped.get_state()
            action = policy.act([episode.conversation()], [episode])[0]
            step = env.step(action)
            episode.record(action, step)
            terminated, truncated = bool(step[2]), bool(step[3])
        attempts = [episode.turn - 1]
        while len(attempts) < config.attempts and not episode.infos[-1].get("success", False):
            candidate, step = _score(env, state, episode, improver, config.candidates)
            episode.record(candidate, step)  # the previous attempt's feedback is this turn's prompt
            attempts.append(episode.turn - 1)
            terminated, truncated = bool(step[2]), bool(step[3])
        env.close()
        env_steps = episode.turn + (len(attempts) - 1) * (config.candidates - 1)
        rewards = [float(episode.rewards[i]) for i in attempts]
        kept, weights = attempt_weights([episode.actions[i] for i in attempts], rewards, config)
        name = f"rise({getattr(policy, 'name', 'policy')}<-{getattr(improver, 'name', 'improver')})"
        trajectory = episode_trajectory(episode, terminated, name, truncated, {})
        kept = kept or list(range(len(attempts)))  # every attempt empty: keep them, untrained
        dropped = [attempts[k] for k in range(len(attempts)) if k not in kept]
        _drop_attempts(trajectory, dropped)
        turn_of = {k: attempts[k] - sum(d < attempts[k] for d in dropped) for k in kept}
        mask = [False] * trajectory.num_turns
        turn_weights = [0.0] * trajectory.num_turns
        for k, weight in weights.items():
            mask[turn_of[k]], turn_weights[turn_of[k]] = weight != 0, weight
        last = attempts[kept[-1]]
        trajectory.metadata = {
            TURN_MASK_KEY: mask,
            TURN_WEIGHT_KEY: turn_weights,
            ATTEMPTS_KEY: [turn_of[k] for k in kept],
            "attempt_rewards": [rewards[k] for k in kept],
            "dropped_attempts": len(attempts) - len(kept),
            "first_attempt_success": bool(episode.infos[attempts[0]].get("success", False)),
            "env_steps": env_steps,
            "method": "rise",
        }
        # the attempts replace one another: the episode's outcome is the last kept attempt's
        trajectory.success = bool(episode.infos[last].get("success", False))
        trajectory.total_reward = float(episode.rewards[last])
        trajectories.append(trajectory)
    return trajectories


@dataclass
class RiseConfig(SelfTrainConfig):
    """RISE: for envs with a checkable answer (Calc, SQL, SearchQA, Python, Wordle)."""

    attempts: int = 2
    """Attempts per task, the first included (`--max_turns 2` in RISE's `bash/gen.sh`)."""
    candidates: int = 5
    """Candidates per improved attempt; the best by the env's reward is kept (best-of-N; `--num_of_samples
    1 5` in `bash/gen.sh`)."""
    improver: str = "expert"
    """Who proposes improved attempts: expert (the env's answer: distillation from a stronger model, as
    `bash/gen.sh`'s gpt-3.5-turbo for the second turn) or policy (the policy's own samples: RISE's
    self-distillation)."""
    criteria: str = "all"
    """Which attempts are trained on: all (RISE's `bash/convert.sh`), better, best or success
    (`ReflectionConfig.criteria`)."""
    remove_duplication: bool = True
    """Drop attempts that repeat an earlier one (RISE's `--remove_duplication`, on in `bash/convert.sh`)."""
    weighting: str = "exp_reward"
    """exp_reward: exp(reward / reward_temperature) (RISE's `exp_dataset_reward`); improvement: the
    reward gained (needs criteria=better); none: 1."""
    reward_temperature: float = 0.4
    """The temperature of exp_reward (RISE's default)."""

    algo = "rise"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.improver not in IMPROVERS:
            raise ConfigError(f"improver must be one of {list(IMPROVERS)}, got {self.improver!r}")
        if self.criteria not in RISE_CRITERIA:
            raise ConfigError(f"criteria must be one of {list(RISE_CRITERIA)}, got {self.criteria!r}")
        if self.weighting not in RISE_WEIGHTINGS:
            raise ConfigError(f"weighting must be one of {list(RISE_WEIGHTINGS)}, got {self.weighting!r}")
        if self.reward_temperature <= 0:
            raise ConfigError(f"reward_temperature must be > 0, got {self.reward_temperature}")
        self.reflection()  # the remaining checks (attempts, candidates, criteria x weighting)

    def reflection(self) -> ReflectionConfig:
        """The data settings of this run."""
        return ReflectionConfig(
            attempts=self.attempts,
            candidates=self.candidates,
            criteria=self.criteria,
            remove_duplication=self.remove_duplication,
            weighting=self.weighting,
            temperature=self.reward_temperature,
        )


class RiseTrainer(SelfTrainer):
    """RISE: the policy's attempts, improved attempts best-of-N, BC weighted by reward."""

    config_class = RiseConfig

    def data(self, seeds: Sequence[int]) -> tuple[list[Trajectory], int, dict[str, float]]:
        config = self.config
        improver = AnswerExpert() if config.improver == "expert" else self.player
        trajectories = rise_trajectories(
            config.env_id,
            self.player,
            len(seeds),
            improver,
            seed=seeds[0],
            split="train",
            config=config.reflection(),
        )
        first = [t.metadata["first_attempt_success"] for t in trajectories]
        stats = {
            "first_attempt_success_rate": float(np.mean(first)),
            "train_success_rate": float(np.mean([t.success for t in trajectories])),
            "dropped_attempts": sum(t.metadata["dropped_attempts"] for t in trajectories),
        }
        return trajectories, sum(t.metadata["env_steps"] for t in trajectories), stats
