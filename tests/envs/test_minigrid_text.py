from __future__ import annotations

import subprocess
import sys

import pytest

import turngym
from turngym.agents import ExpertAgent
from turngym.errors import MissingDependencyError

pytest.importorskip("minigrid")

from minigrid.core.world_object import Ball, Box, Door, Key

from turngym.envs.minigrid.text import (
    ACTIONS,
    MiniGridTextEnv,
    parse_action,
    relative_position,
)

BOT_LEVELS = ("BabyAI-GoToLocal-v0", "BabyAI-PickupLoc-v0", "BabyAI-OpenDoor-v0", "BabyAI-PutNextLocal-v0")


def _empty_room(agent=(1, 1), direction=0) -> MiniGridTextEnv:
    """An 8x8 empty room (walls all round) with the agent at `agent` facing `direction` (0 = east)."""
    env = MiniGridTextEnv("MiniGrid-Empty-8x8-v0")
    env.reset(seed=0)
    env.inner.grid.set(6, 6, None)  # remove the goal square
    env.inner.agent_pos, env.inner.agent_dir = agent, direction
    return env


def _view(env: MiniGridTextEnv) -> str:
    env.last_image = env.inner.gen_obs()["image"]
    return env._describe()


def test_description_matches_a_hand_made_layout():
    env = _empty_room(agent=(1, 1), direction=0)  # facing east: ahead is +x, right is +y
    env.inner.grid.set(3, 1, Ball("red"))
    env.inner.grid.set(2, 2, Key("blue"))
    env.inner.grid.set(4, 3, Door("yellow", is_locked=True))
    assert _view(env) == (
        "In front of you: open floor.\n"
        "There is a wall directly to your left.\n"
        "You see: a blue key, 1 step ahead and 1 step to the right; a red ball, 2 steps ahead; "
        "a locked yellow door, 3 steps ahead and 2 steps to the right.\n"
        "You carry: nothing."
    )


def test_description_of_walls_doors_and_carried_objects():
    env = _empty_room(agent=(5, 3), direction=3)  # facing north, 2 cells below the top wall
    env.inner.grid.set(5, 2, Door("green", is_open=False))
    env.inner.grid.set(4, 3, Box("purple"))
    env.inner.carrying = Key("green")
    assert _view(env) == (
        "In front of you: a closed green door.\n"
        "You see: a purple box, 1 step to the left of you.\n"
        "You carry: a green key."
    )
    env.inner.grid.set(5, 2, None)
    env.inner.agent_dir = 0  # east: the wall at x=7 is 2 steps ahead
    assert _view(env).splitlines()[:2] == ["In front of you: open floor.", "There is a wall 2 steps ahead."]


def test_actions_act_on_the_hand_made_layout():
    env = _empty_room(agent=(1, 1), direction=0)
    env.inner.grid.set(2, 1, Ball("red"))
    env.last_image = env.inner.gen_obs()["image"]
    obs, _, _, _, info = env.step("go forward")
    assert obs.startswith("You can't go forward: a red ball blocks the way.") and info["valid_action"]
    obs, *_ = env.step("Pick up.")
    assert obs.startswith("You pick up the red ball.") and "You carry: a red ball." in obs
    obs, *_ = env.step("pickup")
    assert obs.startswith("Your hands are full.")
    obs, *_ = env.step("go forward")
    assert obs.startswith("You go forward.") and tuple(env.inner.agent_pos) == (2, 1)
    obs, *_ = env.step("turn right")
    assert obs.startswith("You turn right.") and env.inner.agent_dir == 1
    obs, *_ = env.step("drop")
    assert obs.startswith("You drop the red ball.") and env.inner.grid.get(2, 2).type == "ball"


def test_toggle_unlocks_a_door_with_its_key():
    env = _empty_room(agent=(3, 3), direction=0)
    env.inner.grid.set(4, 3, Door("blue", is_locked=True))
    obs, *_ = env.step("toggle")
    assert obs.startswith("The blue door is locked: you need the blue key.")
    env.inner.carrying = Key("blue")
    obs, *_ = env.step("open the door")
    assert obs.startswith("You unlock and open the blue door.")
    assert "In front of you: an open blue door." in obs.splitlines()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("turn left", 0),
        ("Right", 1),
        ("go forward.", 2),
        ("forward", 2),
        ("pick up", 3),
        ("drop", 4),
        ("toggle", 5),
        ("open", 5),
        ("done", 6),
        ("jump", None),
        ("", None),
        ("turn around", None),
    ],
)
def test_action_words(text, expected):
    assert parse_action(text) == expected


def test_relative_positions():
    assert relative_position(1, 0) == "right in front of you"
    assert relative_position(0, -2) == "2 steps to the left of you"
    assert relative_position(3, 1) == "3 steps ahead and 1 step to the right"


@pytest.mark.parametrize("level", BOT_LEVELS)
def test_babyai_bot_solves_50_seeds_through_the_text_interface(level):
    trajectories = turngym.rollout(f"turngym/{level}", ExpertAgent(), num_episodes=50, batch_size=10)
    failed = [t.seed for t in trajectories if not t.success]
    assert not failed, f"{level}: the bot failed seeds {failed}"  # the README: 100% of 50 seeds
    assert all(t.total_reward > 0 for t in trajectories if t.success)


@pytest.mark.parametrize("level", ["BabyAI-GoToLocal-v0", "BabyAI-PutNextLocal-v0"])
def test_check_env(level):
    turngym.check_env(turngym.make(f"turngym/{level}"), invalid_actions=("", "jump", "turn around"))


def test_same_seed_same_episode_and_splits():
    env = MiniGridTextEnv("BabyAI-GoToLocal-v0")
    first = env.reset(seed=7, options={"split": "test"})
    assert first == env.reset(seed=7, options={"split": "test"})
    assert first[1]["split"] == "test" and int(first[1]["task_id"].rsplit("-", 1)[1]) % 2 == 1
    replay = env.reset(seed=99, options={"task_id": first[1]["task_id"]})
    assert replay[0] == first[0]
    with pytest.raises(ValueError, match="unknown task_id"):
        env.reset(options={"task_id": "BabyAI-GoToObj-v0-3"})


def test_invalid_actions_are_feedback():
    env = MiniGridTextEnv("BabyAI-GoToLocal-v0")
    env.reset(seed=0)
    for action in ["", "fly", "x" * 10_000, "🙂"]:
        obs, reward, terminated, _, info = env.step(action)
        assert info["valid_action"] is False and reward == 0 and not terminated and len(obs) < 1000
    assert env.admissible_actions() == list(ACTIONS)


def test_generic_id_and_unknown_env_id():
    env = turngym.make("turngym/MiniGrid-v0", env_id="MiniGrid-DoorKey-5x5-v0")
    obs, _ = env.reset(seed=0)
    assert obs.startswith("Mission: use the key to open the door and then get to the goal.")
    assert env.unwrapped.expert_action() is None  # the BabyAI bot needs BabyAI instructions
    with pytest.raises(ValueError, match="Did you mean `MiniGrid-DoorKey-5x5-v0`"):
        MiniGridTextEnv("MiniGrid-DoorKey-5x5")


def test_missing_minigrid_gives_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "minigrid", None)  # makes `import minigrid` fail
    with pytest.raises(MissingDependencyError, match=r"pip install 'turngym\[minigrid\]'"):
        turngym.make("turngym/BabyAI-GoToLocal-v0")


def test_bot_takes_over_after_the_agent_played_without_it():
    env = MiniGridTextEnv("BabyAI-GoToLocal-v0")
    wins = 0
    for seed in range(20):
        env.reset(seed=seed)
        for action in ("turn left", "go forward", "turn right"):
            if not env.done:  # the first moves can reach the goal by chance
                env.step(action)
        while not env.done:
            env.step(env.expert_action())
        wins += env.won
    assert wins >= 19


def test_importing_turngym_imports_neither_minigrid_nor_the_game_modules():
    code = (
        "import sys, turngym; turngym.list_envs(); "
        "assert not [m for m in sys.modules if m.startswith('minigrid') or m.startswith('turngym.envs.games.')"
        " or m == 'turngym.envs.minigrid.text'], sorted(sys.modules)"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
