from __future__ import annotations

import pytest
from conftest import ChainEnv

import turngym
from turngym.core import TEXT_CHARSET, parse_reset_options, quote_action, text_space


@pytest.mark.parametrize(
    "env_id", ["turngym/KeyDoor-v0", "turngym/KeyDoorHard-v0", "turngym/RiverCrossing-v0"]
)
def test_builtin_envs_pass_check_env(env_id):
    turngym.check_env(turngym.make(env_id), invalid_actions=("", "fly away", "open the door"))


def test_check_env_accepts_the_generic_test_env():
    turngym.check_env(ChainEnv())


def test_check_env_catches_a_nondeterministic_env():
    import random

    class Flaky(ChainEnv):
        def reset(self, *, seed=None, options=None):
            obs, info = super().reset(seed=seed, options=options)
            return obs + f" ({random.random()})", info

    with pytest.raises(AssertionError, match="same seed"):
        turngym.check_env(Flaky(), skip_gymnasium=True)


def test_check_env_catches_missing_step_keys():
    class NoSuccess(ChainEnv):
        def step(self, action):
            obs, reward, terminated, truncated, info = super().step(action)
            del info["success"]
            return obs, reward, terminated, truncated, info

    with pytest.raises(AssertionError, match="success"):
        turngym.check_env(NoSuccess(), skip_gymnasium=True)


def test_spaces_are_wide_text():
    env = turngym.make("turngym/KeyDoor-v0")
    for text in ("plain ascii", "naïve café – “quotes” 😀 東京", "line\nbreak\ttab", ""):
        assert env.action_space.contains(text)
        assert env.observation_space.contains(text)
    assert not env.action_space.contains(123)
    assert len(TEXT_CHARSET) > 50_000
    a, b = text_space(10), text_space(10)
    a.seed(1)
    b.seed(2)
    assert a.sample() != b.sample()  # copies share tables, not the RNG


def test_parse_reset_options_validates():
    assert parse_reset_options(None).split == "train"
    assert parse_reset_options({"split": "test", "task_id": 3}).task_id == "3"
    with pytest.raises(ValueError, match="valid splits"):
        parse_reset_options({"split": "validation"})
    with pytest.raises(ValueError, match="unknown reset option"):
        parse_reset_options({"tsk_id": "x"})


def test_quote_action_is_safe_and_short():
    quoted = quote_action("Ꭰ\x00" + "x" * 500)
    assert len(quoted) < 70 and "\x00" not in quoted and quoted.endswith("...'")


def test_truncation_at_max_turns():
    env = turngym.make("turngym/KeyDoor-v0", max_episode_steps=3)
    env.reset(seed=0)
    results = [env.step("look") for _ in range(3)]
    assert [r[3] for r in results] == [False, False, True]
    assert not any(r[2] for r in results)


def test_get_state_set_state_branches():
    env = turngym.make("turngym/KeyDoor-v0").unwrapped
    env.reset(seed=5)
    snapshot = env.get_state()
    first = env.step(env.expert_action())
    env.step(env.expert_action())
    env.set_state(snapshot)
    assert env.step(env.expert_action())[0] == first[0]
    env.set_state(snapshot)  # a snapshot can be restored more than once
    assert env.step(env.expert_action())[0] == first[0]


def test_render_ansi_returns_last_observation():
    env = turngym.make("turngym/KeyDoor-v0", render_mode="ansi")
    obs, _ = env.reset(seed=0)
    assert env.render() == obs


@pytest.mark.parametrize(
    "env_id",
    ["turngym/KeyDoor-v0", "turngym/Household-v0", "turngym/Maze-v0", "turngym/Wordle-v0", "turngym/Calc-v0"],
)
def test_step_before_reset_or_after_the_end_is_a_caller_error(env_id):
    env = turngym.make(env_id).unwrapped
    with pytest.raises(RuntimeError, match="call reset"):
        env.step("look")
    env.reset(seed=0)
    while (action := env.expert_action()) is not None:
        *_, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            break
    with pytest.raises(RuntimeError, match="episode is over"):
        env.step("look")


STEP_ORDER_ENVS = [
    "turngym/KeyDoor-v0",
    "turngym/Household-v0",
    "turngym/Maze-v0",
    "turngym/Wordle-v0",
    "turngym/Calc-v0",
]


@pytest.mark.parametrize("env_id", STEP_ORDER_ENVS)
def test_step_after_truncation_raises_like_after_termination(env_id):
    env = turngym.make(env_id, max_episode_steps=1)
    env.reset(seed=0)
    *_, terminated, truncated, _ = env.step("look")
    assert truncated and not terminated
    with pytest.raises(RuntimeError, match="episode is over"):  # was: a silent second step
        env.step("look")
    env.reset(seed=0)  # a reset starts the next episode
    env.step("look")


def test_step_after_the_end_raises_also_for_envs_that_do_not_check():
    if "test/ChainNoCheck-v0" not in turngym.list_envs():
        turngym.register("test/ChainNoCheck-v0", ChainEnv, max_episode_steps=10)
    env = turngym.make("test/ChainNoCheck-v0")
    env.reset(seed=0)
    while not env.step("right")[2]:
        pass
    with pytest.raises(RuntimeError, match="episode is over"):
        env.step("right")
