"""Shared test fixtures: a generic, injectable chain env; a bandit in words (the trainer direction
tests); the `sandbox` marker's skip-or-fail rule."""

from __future__ import annotations

import os
from typing import Any

import pytest

# pytest-xdist's workers inherit COLUMNS=80 from the controller; `turngym.cli`'s results console honours
# COLUMNS, so the tables the tests read would be cut to 80 columns ("100.…"). Tests see what a pipe
# or a file gets without xdist: COLUMNS unset (the console lays out for 200 columns off a terminal).
os.environ.pop("COLUMNS", None)

from turngym import TextEnv, parse_reset_options
from turngym.envs.tools import sandbox


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Tests marked `sandbox` skip, with the reason, where the Python sandbox cannot start (a laptop
    without root or user namespaces), but fail in CI: there a broken sandbox must not turn the escape
    suite into a row of skips."""
    if item.get_closest_marker("sandbox") is None:
        return
    problem = sandbox.sandbox_problem()
    if problem is None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and the Python sandbox cannot start: {problem}", pytrace=False)
    pytest.skip(f"the Python sandbox cannot start here: {problem}")


class ChainEnv(TextEnv):
    """States 0..length-1 in a line; `right` moves on, `left` moves back, reaching the end pays 1.

    Small and fully known, for tests of the rollout engine, eval and (later) critics."""

    def __init__(self, length: int = 3, render_mode: str | None = None) -> None:
        super().__init__(render_mode=render_mode)
        self.length = length
        self.position = 0

    @property
    def instructions(self) -> str:
        return "Walk to the end of the chain. Reply `left` or `right`."

    def task_ids(self, split: str = "train") -> list[str]:
        return [f"chain-{self.length}"]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        parse_reset_options(options)
        self.position = int(self.np_random.integers(0, self.length - 1))
        return self._obs(), {"task": "reach the end", "task_id": f"chain-{self.length}", "task_type": "chain"}

    def _obs(self) -> str:
        return f"You are at {self.position} of {self.length - 1}."

    def step(self, action: str):
        action = action.strip().lower()
        valid = action in ("left", "right")
        if action == "right":
            self.position += 1
        elif action == "left":
            self.position = max(0, self.position - 1)
        done = self.position == self.length - 1
        info = {"valid_action": valid, "success": done, "admissible_actions": ["left", "right"]}
        return self._obs(), float(done), done, False, info

    def admissible_actions(self) -> list[str]:
        return ["left", "right"]

    def expert_action(self) -> str:
        return "right"


@pytest.fixture
def chain_env_factory():
    return lambda: ChainEnv(length=4)


class BanditEnv(TextEnv):
    """A bandit in words: reply `left` or `right`; `right` pays 1, anything else 0.

    With `turns=2` the episode asks twice and pays at the end for the FIRST reply only (the second
    does not matter): a policy gradient must carry the reward back one turn. The second observation
    names the first reply, so a critic that sees only the latest turn can still value it. The
    trainer direction tests (tests/trainers/test_direction.py) use it: the best action is known, so
    the probability of `right` must rise."""

    def __init__(self, turns: int = 1, render_mode: str | None = None) -> None:
        super().__init__(render_mode=render_mode)
        if turns not in (1, 2):
            raise ValueError(f"turns must be 1 or 2, got {turns}")
        self.turns = turns
        self.turn = 0
        self.first = ""

    @property
    def instructions(self) -> str:
        return "Reply `left` or `right`."

    def task_ids(self, split: str = "train") -> list[str]:
        return [f"bandit-{self.turns}"]

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        parse_reset_options(options)
        self.turn, self.first = 0, ""
        return "Choose.", {"task": "say right", "task_id": f"bandit-{self.turns}", "task_type": "bandit"}

    def step(self, action: str):
        action = action.strip().lower()
        valid = action in ("left", "right")
        if self.turn == 0:
            self.first = action
        self.turn += 1
        done = self.turn == self.turns
        reward = float(done and self.first == "right")
        said = self.first if self.first in ("left", "right") else "nothing"
        observation = "Done." if done else f"You said {said}. Choose again."
        info = {
            "valid_action": valid,
            "success": reward == 1.0,
            "admissible_actions": ["left", "right"],
            "state_key": (self.turn, self.first),  # GiGPO groups the second turns by the first reply
        }
        return observation, reward, done, False, info

    def admissible_actions(self) -> list[str]:
        return ["left", "right"]

    def expert_action(self) -> str:
        return "right"

    def answer_action(self) -> str:
        return "right"  # the one correct reply (IGPO's information gain scores it)


CHAIN3 = "test/Chain3-v0"
# BC on CHAIN3 with a one-block TinyAgent and a few expert episodes: a run of seconds
TINY_BC = {
    "env_id": CHAIN3,
    "tiny_layers": 1,
    "tiny_embd": 32,
    "max_new_tokens": 3,
    "history_window": 0,
    "eval_episodes": 4,
    "batch_size": 4,
    "expert_episodes": 4,
    "tensorboard": False,
}


def register_chain3() -> str:
    """Registers CHAIN3 (a 3-state ChainEnv, 4 turns at most) unless a test module already did."""
    import turngym

    if CHAIN3 not in turngym.list_envs():
        turngym.register(
            CHAIN3, ChainEnv, max_episode_steps=4, kwargs={"length": 3}, description="3-state chain"
        )
    return CHAIN3


def set_args(values: list[str]) -> list[str]:
    """`turngym train`'s `--set key=value` arguments for `values` (the CLI tests' overrides)."""
    return [arg for value in values for arg in ("--set", value)]


def full_logprobs(model, batch, temperature=1.0):
    """Log-probs (B, L-1) of `batch.input_ids[:, 1:]` from the model's full (B, L, V) logits, masked to
    the action tokens: the path every scorer took before the LM head ran at the action tokens only."""
    logits = (
        model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids)
        .logits[:, :-1]
        .float()
    )
    taken = (logits / temperature).log_softmax(-1).gather(-1, batch.input_ids[:, 1:, None]).squeeze(-1)
    return taken * batch.action_mask[:, 1:]
