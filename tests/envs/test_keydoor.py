from __future__ import annotations

import pytest

import turngym
from turngym.agents import ExpertAgent, RandomAgent
from turngym.envs.keydoor import KeyDoorEnv


def test_expert_solves_every_test_task():
    env = KeyDoorEnv()
    task_ids = env.task_ids("test")
    trajectories = turngym.rollout(
        lambda: KeyDoorEnv(), ExpertAgent(), task_ids=task_ids, batch_size=32, max_turns=8
    )
    assert len(trajectories) == len(task_ids) == 280
    assert all(t.success and t.total_reward == 1.0 for t in trajectories)
    assert max(t.num_turns for t in trajectories) == 3


def test_random_agent_rarely_succeeds():
    result = turngym.evaluate("turngym/KeyDoor-v0", RandomAgent(), 300)
    assert result.overall.success_rate < 0.2


def test_splits_are_disjoint_and_cover_all_tasks():
    env = KeyDoorEnv()
    train, test = set(env.task_ids("train")), set(env.task_ids("test"))
    assert not train & test
    assert len(train) + len(test) == 8 * 7 * 6 * 5 * 4 // 120 * 5 * 5  # C(8,5) x target x carried
    for seed in range(20):
        _, info = env.reset(seed=seed, options={"split": "test"})
        assert info["task_id"] in test and info["split"] == "test"


def test_task_id_replays_the_task():
    env = KeyDoorEnv()
    _, info = env.reset(seed=3)
    _obs2, info2 = env.reset(seed=99, options={"task_id": info["task_id"]})
    assert info2["task"] == info["task"] and info2["task_id"] == info["task_id"]
    with pytest.raises(ValueError, match="unknown task_id"):
        env.reset(options={"task_id": "keydoor5-99999"})


def _env_with(carried=None):
    env = KeyDoorEnv()
    for seed in range(200):
        env.reset(seed=seed)
        if env.carried == carried or (carried == "any" and env.carried):
            return env
    raise AssertionError("no such task")


def test_every_command():
    env = _env_with(carried=None)
    target = env.task.target
    other = next(c for c in env.task.colors if c != target)
    obs, _, _, _, info = env.step("look")
    assert info["valid_action"] and obs.startswith("You look around.")
    _, _, _, _, info = env.step(f"open the {target} door")
    assert not info["valid_action"]  # locked without its key
    _, _, _, _, info = env.step(f"drop the {other} key")
    assert not info["valid_action"]  # not carried
    _, _, _, _, info = env.step(f"pick up the {other} key")
    assert info["valid_action"] and env.carried == other and info["progress"] == 0.0
    _, _, _, _, info = env.step(f"take the {target} key")
    assert not info["valid_action"]  # hands full
    _, _, _, _, info = env.step(f"drop the {other} key")
    assert info["valid_action"] and env.carried is None
    _, _, _, _, info = env.step(f"Take the {target} key.")
    assert info["valid_action"] and info["progress"] == 0.5
    obs, reward, terminated, truncated, info = env.step(f"open the {target} door")
    assert (reward, terminated, truncated, info["success"], info["progress"]) == (1.0, True, False, True, 1.0)


def test_opening_the_wrong_door_fails_the_episode():
    env = _env_with(carried="any")
    obs, reward, terminated, _, info = env.step(f"open the {env.carried} door")
    assert terminated and reward == 0.0 and not info["success"] and "Task failed" in obs


@pytest.mark.parametrize(
    "action", ["", "open", "open the mauve door", "pick up the door", "x" * 100_000, "🙂"]
)
def test_invalid_actions_are_feedback(action):
    env = KeyDoorEnv()
    env.reset(seed=0)
    obs, reward, terminated, _truncated, info = env.step(action)
    assert info["valid_action"] is False and reward == 0 and not terminated and len(obs) < 500


def test_bad_constructor_argument():
    with pytest.raises(ValueError, match="num_colors"):
        KeyDoorEnv(num_colors=1)
