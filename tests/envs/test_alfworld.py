"""The ALFWorld adapter against a tiny fixture in ALFWorld's data layout and a scripted stand-in game
(the real `alfworld` package and data are not needed)."""

from __future__ import annotations

import json

import pytest

import turngym
from turngym.envs.textworld import alfworld
from turngym.errors import MissingDependencyError

INTRO = (
    "-= Welcome to TextWorld, ALFRED! =-\n\nYou are in the middle of a room. Looking quickly around you, "
    "you see a countertop 1, a sinkbasin 1, and a coffeemachine 1.\n\nYour task is to: put a clean mug in "
    "coffeemachine."
)
PLAN = [
    ("go to countertop 1", "You arrive at countertop 1. On the countertop 1, you see a mug 1."),
    ("take mug 1 from countertop 1", "You pick up the mug 1 from the countertop 1."),
    ("go to sinkbasin 1", "You arrive at sinkbasin 1. On the sinkbasin 1, you see nothing."),
    ("clean mug 1 with sinkbasin 1", "You clean the mug 1 using the sinkbasin 1."),
    ("go to coffeemachine 1", "You arrive at coffeemachine 1. On the coffeemachine 1, you see nothing."),
    ("move mug 1 to coffeemachine 1", "You move the mug 1 to the coffeemachine 1."),
]


class ScriptedAlfredGame:
    """Answers like ALFWorld's TextWorld env (GameState dicts with feedback, admissible commands,
    won, extra.expert_plan) along one scripted solution; anything else is 'Nothing happens.'."""

    def __init__(self, path: str) -> None:
        self.path, self.k = path, 0

    def _state(self, feedback: str) -> dict:
        won = self.k == len(PLAN)
        admissible = [] if won else sorted({PLAN[self.k][0], "look", "inventory", "go to sinkbasin 1"})
        plan = [] if won else [PLAN[self.k][0]]
        return {
            "feedback": feedback,
            "admissible_commands": admissible,
            "won": won,
            "extra.expert_plan": plan,
            "extra.gamefile": self.path,
        }

    def reset(self) -> dict:
        self.k = 0
        return self._state(INTRO)

    def step(self, command: str):
        if command == PLAN[self.k][0]:
            self.k += 1
            feedback = PLAN[self.k - 1][1]
        else:
            feedback = "Nothing happens."
        return self._state(feedback), int(self.k == len(PLAN)), self.k == len(PLAN)

    def close(self) -> None:
        pass


def _trial(root, split, folder, task_type, solvable=True):
    trial = root / "json_2.1.1" / split / folder / "trial_T20190000_000000_000000"
    trial.mkdir(parents=True)
    traj = {"task_type": task_type, "pddl_params": {"object_target": "Mug", "parent_target": "CoffeeMachine"}}
    (trial / "traj_data.json").write_text(json.dumps(traj))
    game = {"pddl_domain": "", "grammar": "", "pddl_problem": "", "solvable": solvable}
    (trial / "game.tw-pddl").write_text(json.dumps(game))


@pytest.fixture
def data(tmp_path, monkeypatch):
    _trial(
        tmp_path,
        "train",
        "pick_clean_then_place_in_recep-Mug-None-CoffeeMachine-5",
        "pick_clean_then_place_in_recep",
    )
    _trial(
        tmp_path, "train", "pick_and_place_simple-Mug-None-Shelf-2", "pick_and_place_simple", solvable=False
    )
    _trial(
        tmp_path,
        "train",
        "pick_clean_then_place_in_recep-AppleSliced-None-Fridge-1",
        "pick_clean_then_place_in_recep",
    )
    _trial(tmp_path, "valid_unseen", "look_at_obj_in_light-Mug-None-DeskLamp-3", "look_at_obj_in_light")
    _trial(tmp_path, "valid_seen", "pick_two_obj_and_place-Mug-None-Shelf-4", "pick_two_obj_and_place")
    monkeypatch.setattr(alfworld, "_check_installed", lambda: None)
    monkeypatch.setattr(alfworld, "start_game", lambda path, expert_type: ScriptedAlfredGame(path))
    alfworld.collect_games.cache_clear()
    return tmp_path


def test_games_are_collected_like_alfworld_does(data):
    train = alfworld.collect_games(data, "train")
    assert [(task_id, task_type) for task_id, _, task_type in train] == [
        (
            "train/pick_clean_then_place_in_recep-Mug-None-CoffeeMachine-5/trial_T20190000_000000_000000",
            "pick_clean_then_place",
        )
    ]  # the unsolvable and the Sliced games are skipped
    env = alfworld.ALFWorldEnv(data_dir=str(data))
    assert env.task_ids("test")[0].startswith("valid_unseen/look_at_obj_in_light")
    seen = alfworld.ALFWorldEnv(data_dir=str(data), test_split="valid_seen")
    assert seen.task_ids("test")[0].startswith("valid_seen/pick_two_obj_and_place")


def test_expert_wins_through_make_with_the_same_info_keys(data):
    env = turngym.make("turngym/ALFWorld-v0", data_dir=str(data))
    obs, info = env.reset(seed=0)
    assert obs.startswith("-= Welcome to TextWorld, ALFRED! =-")
    assert info["task"] == "put a clean mug in coffeemachine"
    assert info["task_type"] == "pick_clean_then_place" and info["split"] == "train"
    total = 0.0
    while True:
        action = env.unwrapped.expert_action()
        obs, reward, terminated, truncated, info = env.step(action)
        total += reward
        assert info["valid_action"] and set(info) >= {"success", "admissible_actions", "progress"}
        if terminated or truncated:
            break
    assert info["success"] and total == 1.0 and info["progress"] == 1.0
    assert obs == "You move the mug 1 to the coffeemachine 1."


def test_both_placing_spellings_and_invalid_commands(data):
    env = alfworld.ALFWorldEnv(data_dir=str(data))
    env.reset(seed=0)
    for command, _ in PLAN[:5]:
        env.step(command)
    *_, info = env.step("teleport home")
    assert info["valid_action"] is False and env.history == [c for c, _ in PLAN[:5]]
    _, reward, terminated, _, info = env.step("put mug 1 in/on coffeemachine 1")  # older spelling
    assert info["valid_action"] and info["success"] and terminated and reward == 1.0
    assert env.history[-1] == "move mug 1 to coffeemachine 1"
    assert alfworld.translate_command("move mug 1 to shelf 1", ["put mug 1 in/on shelf 1"]) == (
        "put mug 1 in/on shelf 1"
    )
    assert alfworld.translate_command("put mug 1 on shelf 2", ["put mug 1 in/on shelf 1"]) is None


def test_check_env_and_task_id_replay(data):
    env = turngym.make("turngym/ALFWorld-v0", data_dir=str(data))
    turngym.check_env(env, invalid_actions=("fly", "go to moon 1"))
    _, info = env.reset(options={"split": "test"})
    assert info["split"] == "test" and info["task_type"] == "look_at_obj_in_light"
    _, again = env.reset(seed=5, options={"task_id": info["task_id"]})
    assert again["task_id"] == info["task_id"] and again["split"] == "test"
    with pytest.raises(ValueError, match="unknown task_id"):
        env.reset(options={"task_id": "train/nope"})


def test_missing_package_or_data_is_a_one_line_hint(tmp_path, monkeypatch):
    with pytest.raises(MissingDependencyError) as missing:
        turngym.make("turngym/ALFWorld-v0", data_dir=str(tmp_path))
    message = str(missing.value)
    assert "\n" not in message and "pip install 'turngym[alfworld]'" in message and "ALFWORLD_DATA" in message
    monkeypatch.setattr(alfworld, "_check_installed", lambda: None)
    with pytest.raises(MissingDependencyError, match=r"no json_2\.1\.1 folder"):
        alfworld.ALFWorldEnv(data_dir=str(tmp_path))
