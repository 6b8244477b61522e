"""Turns as critic transitions (s, a, r, s', done) and the replay buffer ArCHer samples them from."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from turngym.errors import ConfigError
from turngym.types import Conversation, Trajectory, build_conversation


@dataclass
class Transition:
    """One turn for an utterance-level critic: s (conversation so far), a (the whole utterance),
    r, s' (the conversation after the env answered), done (terminal: no bootstrap)."""

    state: Conversation
    action: str
    reward: float
    next_state: Conversation
    done: bool
    trajectory_return: float = 0.0  # discounted return from this turn (Monte Carlo), for diagnostics
    action_tokens: list[int] | None = None  # the sampled ids of `action` (Turn.action_tokens)
    action_logprobs: list[float] | None = None  # their log-probs under the sampler (Turn.action_logprobs)


def transitions(
    trajectory: Trajectory,
    history_window: int | None = None,
    gamma: float = 1.0,
    bootstrap_truncated: bool = True,
) -> list[Transition]:
    """The trajectory's turns as transitions. The last turn is `done` if the env terminated the
    episode; a turn-limit cut bootstraps from s', or is `done` too if `bootstrap_truncated` is False."""
    observations, actions = trajectory.observations, trajectory.actions
    n = len(actions)
    returns = [0.0] * n
    running = 0.0
    for i in reversed(range(n)):
        running = trajectory.turns[i].reward + gamma * running
        returns[i] = running
    return [
        Transition(
            state=build_conversation(
                trajectory.instructions, observations[: i + 1], actions[:i], history_window
            ),
            action=actions[i],
            reward=float(trajectory.turns[i].reward),
            next_state=build_conversation(
                trajectory.instructions, observations[: i + 2], actions[: i + 1], history_window
            ),
            done=i == n - 1 and (trajectory.terminated or (trajectory.truncated and not bootstrap_truncated)),
            trajectory_return=returns[i],
            action_tokens=trajectory.turns[i].action_tokens,
            action_logprobs=trajectory.turns[i].action_logprobs,
        )
        for i in range(n)
    ]


@dataclass
class ReplayBuffer:
    """A FIFO buffer of turns, sampled uniformly with its own RNG (saved in checkpoints)."""

    capacity: int
    seed: int = 0
    items: list[Transition] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise ConfigError(f"capacity must be >= 1, got {self.capacity}")
        self.rng = np.random.default_rng(self.seed)

    def __len__(self) -> int:
        return len(self.items)

    def extend(self, items: Sequence[Transition]) -> None:
        self.items.extend(items)
        del self.items[: max(0, len(self.items) - self.capacity)]

    def sample(self, n: int) -> list[Transition]:
        if not self.items:
            raise ValueError("cannot sample from an empty replay buffer")
        return [self.items[i] for i in self.rng.integers(len(self.items), size=n)]

    def state_dict(self) -> dict[str, Any]:
        return {"items": [dataclasses.asdict(t) for t in self.items], "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.items = [Transition(**t) for t in state["items"]]
        self.rng.bit_generator.state = state["rng"]
