"""Real ALFWorld text games (`turngym/ALFWorld-v0`), when the `alfworld` package and its data are installed."""

from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path
from typing import Any

from turngym.envs.textworld.game import TextWorldGameEnv
from turngym.errors import MissingDependencyError

INSTALL_HINT = (
    "turngym/ALFWorld-v0 needs the alfworld package and its game files: pip install 'turngym[alfworld]' "
    "&& alfworld-download, then set ALFWORLD_DATA to the download folder"
)
SPLIT_DIRS = {"train": "train", "valid_seen": "valid_seen", "valid_unseen": "valid_unseen"}
# ALFWorld's task-type names -> the names the household simulator (and eval tables) use.
TASK_TYPES = {
    "pick_and_place_simple": "pick_and_place",
    "pick_clean_then_place_in_recep": "pick_clean_then_place",
    "pick_heat_then_place_in_recep": "pick_heat_then_place",
    "pick_cool_then_place_in_recep": "pick_cool_then_place",
    "look_at_obj_in_light": "look_at_obj_in_light",
    "pick_two_obj_and_place": "pick_two_obj_and_place",
}
_GOAL = re.compile(r"Your task is to:\s*(.+?)\s*$", re.S)
_PUT = re.compile(r"^put (.+?) (?:in/on|in|on|into|onto) (.+)$")
_MOVE = re.compile(r"^move (.+?) to (.+)$")


def data_root(data_dir: str | None = None) -> Path:
    """ALFWorld's data folder: `data_dir`, else $ALFWORLD_DATA, else alfworld's default ~/.cache/alfworld."""
    return Path(data_dir or os.environ.get("ALFWORLD_DATA") or Path.home() / ".cache" / "alfworld")


@functools.cache
def collect_games(root: Path, split_dir: str) -> tuple[tuple[str, str, str], ...]:
    """(task_id, game file, task type) of every playable game under `root/json_2.1.1/split_dir`, as
    ALFWorld's own loader picks them: a `traj_data.json` beside a `game.tw-pddl` marked solvable,
    no 'movable' or 'Sliced' trajectories, one of the six task types. Sorted by task id."""
    base = root / "json_2.1.1"
    games = []
    for traj in sorted((base / split_dir).glob("**/traj_data.json")):
        folder = traj.parent
        game_file = folder / "game.tw-pddl"
        if "movable" in str(folder) or "Sliced" in str(folder) or not game_file.is_file():
            continue
        task_type = TASK_TYPES.get(json.loads(traj.read_text()).get("task_type", ""))
        if task_type is None or not json.loads(game_file.read_text()).get("solvable", False):
            continue
        games.append((folder.relative_to(base).as_posix(), str(game_file), task_type))
    return tuple(games)


def parse_goal(feedback: str) -> str:
    """The task of ALFWorld's first observation ('Your task is to: put a clean mug in coffeemachine.')."""
    match = _GOAL.search(feedback)
    return match.group(1).rstrip(".") if match else ""


def translate_command(command: str, admissible: list[str]) -> str | None:
    """The admissible game command for `command`: placing is `move X to Y` since ALFWorld 0.4.0
    (alfred.twl2, action PutObject) and `put X in/on Y` before; both spellings are accepted for either."""
    if command in admissible:
        return command
    match = _PUT.match(command) or _MOVE.match(command)
    if match is None:
        return None
    obj, recep = match.groups()
    for spelling in (f"move {obj} to {recep}", f"put {obj} in/on {recep}"):
        if spelling in admissible:
            return spelling
    return None


def start_game(path: str, expert_type: str) -> Any:
    """Start one ALFWorld game the way alfworld's `AlfredTWEnv` does, for a single game."""
    import textworld
    from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredExpert, AlfredInfos

    infos = textworld.EnvInfos(won=True, admissible_commands=True, extras=["gamefile", "expert_plan"])
    wrappers = [AlfredDemangler(shuffle=False), AlfredInfos, AlfredExpert(expert_type=expert_type)]
    return textworld.start(path, request_infos=infos, wrappers=wrappers)


def _check_installed() -> None:
    try:
        import alfworld  # noqa: F401
        import textworld  # noqa: F401
    except ImportError:
        raise MissingDependencyError(INSTALL_HINT) from None


class ALFWorldEnv(TextWorldGameEnv):
    """ALFWorld's TextWorld games with TurnGym's info keys: the goal of the first observation as
    `task`, ALFWorld's admissible commands, its hand-coded expert as `expert_action()`, reward 1 and
    success when the game is won. Train is ALFWorld's train split; test its `valid_unseen` (default)
    or `valid_seen` split."""

    success_definition = "ALFWorld reports the game won (the task's goal holds)"

    def __init__(
        self,
        data_dir: str | None = None,
        test_split: str = "valid_unseen",
        expert_type: str = "handcoded",
        render_mode: str | None = None,
    ) -> None:
        super().__init__(render_mode=render_mode)
        _check_installed()
        if test_split not in ("valid_seen", "valid_unseen"):
            raise ValueError(f"test_split must be 'valid_seen' or 'valid_unseen', got {test_split!r}")
        self.root = data_root(data_dir)
        if not (self.root / "json_2.1.1").is_dir():
            raise MissingDependencyError(f"{INSTALL_HINT} (no json_2.1.1 folder in {self.root})")
        self.split_dirs = {"train": "train", "test": test_split}
        self.expert_type = expert_type

    @property
    def instructions(self) -> str:
        return (
            "You are in a household (ALFWorld). Complete the task given in the first observation. "
            "Reply with exactly one command per turn:\n"
            "  go to X | open X | close X | take X from Y | move X to Y (or put X in/on Y)\n"
            "  clean X with Y | heat X with Y | cool X with Y | use X | examine X | inventory | look\n"
            "Use the numbered names from the observations (e.g. mug 2, countertop 1)."
        )

    def _games(self, split: str) -> tuple[tuple[str, str, str], ...]:
        games = collect_games(self.root, self.split_dirs[split])
        if not games:
            raise MissingDependencyError(
                f"{INSTALL_HINT} (no playable games in {self.root}/json_2.1.1/{split})"
            )
        return games

    def task_ids(self, split: str = "train") -> list[str]:
        return [task_id for task_id, _, _ in self._games(split)]

    def _choose_game(self, split: str, task_id: str | None) -> dict[str, Any]:
        if task_id is None:
            games = self._games(split)
            chosen = games[int(self.np_random.integers(len(games)))]
        else:
            split = "test" if task_id.split("/", 1)[0] == self.split_dirs["test"] else "train"
            chosen = next((g for g in self._games(split) if g[0] == task_id), None)
            if chosen is None:
                raise ValueError(
                    f"unknown task_id {task_id!r}; ALFWorld ids are game folders like "
                    f"{self._games('train')[0][0]!r} (see task_ids(split))"
                )
        task_id, path, task_type = chosen
        return {"task_id": task_id, "path": path, "task_type": task_type, "split": split}

    def _start(self, path: str) -> Any:
        return start_game(path, self.expert_type)

    def _task(self, state: Any) -> str:
        return parse_goal(state["feedback"])

    def _expert(self, state: Any) -> str | None:
        plan = state.get("extra.expert_plan") or []
        return plan[0] if plan else None

    def _translate(self, command: str, admissible: list[str]) -> str | None:
        return translate_command(command, admissible)

    def _play(self, command: str) -> float:
        super()._play(command)
        return 1.0 if self.won else 0.0  # ALFWorld's reward: 1 when the game is won
