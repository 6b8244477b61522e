"""`check_env`: Gymnasium's env checker plus the TurnGym contract, reused by the tests of every env."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium
from gymnasium.utils.env_checker import check_env as gymnasium_check_env

from turngym.core import TextEnv

GARBAGE_ACTIONS = ("", "   ", "xyzzy plugh", "\x00\x01 ?!", "é" * 10_000, '🙂 { "unclosed": [', "Action:")


def check_env(
    env: gymnasium.Env,
    *,
    seed: int = 0,
    max_steps: int = 20,
    invalid_actions: Sequence[str] = ("",),
    skip_gymnasium: bool = False,
) -> list[str]:
    """Raise `AssertionError` where `env` breaks the TurnGym contract; return the checks that passed,
    one line each (what `turngym check` prints).

    Checks: Gymnasium's `check_env`; `instructions` and the reset info (`task`, `task_id`); the same
    seed gives the same episode (observations, rewards and infos) along the expert's (or admissible)
    actions; every step sets `valid_action` and `success`; garbage actions never raise and the given
    `invalid_actions` are reported as `valid_action=False`; every listed admissible action is valid;
    `get_state`/`set_state` branches reproduce the same step."""
    text_env = env.unwrapped
    assert isinstance(text_env, TextEnv), f"{type(text_env).__name__} is not a turngym.TextEnv"
    name = type(text_env).__name__
    passed: list[str] = []
    if not skip_gymnasium:
        gymnasium_check_env(text_env, skip_render_check=True)
        passed.append("Gymnasium's check_env: spaces, reset/step signatures, seeding")

    instructions = text_env.instructions
    assert isinstance(instructions, str) and instructions.strip(), (
        f"{name}.instructions must be non-empty text"
    )
    passed.append(f"instructions: non-empty text ({len(instructions)} characters)")

    first = _play(text_env, seed, max_steps)
    second = _play(text_env, seed, max_steps)
    assert first == second, (
        f"{name}: the same seed gave different episodes:\n{_first_difference(first, second)}"
    )
    reset_info = first[0][1]
    assert isinstance(reset_info.get("task"), str), f"{name}: reset info must hold the task in words ('task')"
    assert reset_info.get("task_id") is not None, f"{name}: reset info must hold 'task_id'"
    replay = _play(text_env, seed + 1, max_steps, options={"task_id": reset_info["task_id"]})
    assert replay[0][1].get("task_id") == reset_info["task_id"], (
        f"{name}: reset(options={{'task_id'}}) must replay that task"
    )
    text_env.reset(seed=seed)
    guide = "expert's" if text_env.expert_action() is not None else "admissible"
    passed.append(
        f"seed {seed} gives the same episode twice ({len(first) - 1} step(s) along the {guide} actions, "
        "every step with "
        "bool valid_action and success)"
    )
    passed.append(f"reset info holds task and task_id; task_id {reset_info['task_id']!r} replays that task")

    for action in GARBAGE_ACTIONS + tuple(invalid_actions):
        text_env.reset(seed=seed)
        observation, _, _, _, info = text_env.step(action)
        assert isinstance(observation, str), (
            f"{name}: step({action[:20]!r}) returned a non-string observation"
        )
        _check_step_info(name, info)
        if action in invalid_actions:
            assert info["valid_action"] is False, f"{name}: step({action[:20]!r}) must set valid_action=False"
    passed.append(
        f"{len(GARBAGE_ACTIONS)} garbage actions (empty, binary, 10,000 characters, ...) return feedback, "
        f"never raise; {len(invalid_actions)} known invalid action(s) set valid_action=False"
    )

    text_env.reset(seed=seed)
    snapshot = text_env.get_state()
    admissible = text_env.admissible_actions()
    for action in (admissible or [])[:20]:
        text_env.set_state(snapshot)
        *_, info = text_env.step(action)
        assert info["valid_action"] is True, f"{name}: admissible action {action!r} was reported invalid"
    passed.append(
        "admissible_actions() not implemented (optional)"
        if admissible is None
        else f"all {min(len(admissible), 20)} admissible actions at reset are valid"
    )

    text_env.reset(seed=seed)
    action = scripted_action(text_env)
    snapshot = text_env.get_state()
    once = text_env.step(action)
    text_env.set_state(snapshot)
    again = text_env.step(action)
    assert _comparable(once) == _comparable(again), (
        f"{name}: set_state(get_state()) did not restore the state"
    )
    passed.append("set_state(get_state()) replays the same step")
    return passed


def scripted_action(env: TextEnv) -> str:
    """The expert's next action, else the first admissible one, else `look`."""
    expert = env.expert_action()
    if expert is not None:
        return expert
    admissible = env.admissible_actions()
    return admissible[0] if admissible else "look"


def _play(env: TextEnv, seed: int, max_steps: int, options: dict[str, Any] | None = None) -> list[Any]:
    observation, info = env.reset(seed=seed, options=options)
    record: list[Any] = [(observation, _comparable(info))]
    for _ in range(max_steps):
        step = env.step(scripted_action(env))
        _check_step_info(type(env).__name__, step[4])
        record.append(_comparable(step))
        if step[2] or step[3]:
            break
    return record


def _check_step_info(name: str, info: dict[str, Any]) -> None:
    for key in ("valid_action", "success"):
        assert isinstance(info.get(key), bool), (
            f"{name}: every step's info must hold a bool {key!r}, got {info.get(key)!r}"
        )


def _comparable(value: Any) -> Any:
    """A structure that compares by value (numpy arrays to lists)."""
    if isinstance(value, dict):
        return {k: _comparable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_comparable(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def _first_difference(a: list[Any], b: list[Any]) -> str:
    for i, (x, y) in enumerate(zip(a, b)):
        if x != y:
            return f"step {i}: {str(x)[:300]} != {str(y)[:300]}"
    return f"lengths {len(a)} != {len(b)}"
