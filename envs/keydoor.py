"""KeyDoor: a room of locked doors and coloured keys; open the door the task names (`turngym/KeyDoor-v0`)."""

from __future__ import annotations

import functools
import itertools
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from turngym.core import TextEnv, check_step_order, parse_reset_options, quote_action

COLORS = ("red", "blue", "green", "yellow", "purple", "orange", "white", "black")
TEST_FRACTION = 0.2
SPLIT_SEED = 20261123  # fixes which tasks are held out; never change it (results would not compare)

_COMMAND = re.compile(r"^(pick up|take|drop|open)\s+(?:the\s+|a\s+)?([a-z]+)\s+(key|door)$")


@dataclass(frozen=True)
class KeyDoorTask:
    colors: tuple[str, ...]  # the doors in the room, one per colour (and a key of each colour)
    target: str  # the door to open
    carried: str | None  # a key the agent starts with (never the target's)

    @property
    def instruction(self) -> str:
        return f"open the {self.target} door"

    @property
    def task_type(self) -> str:
        return "starts-carrying" if self.carried else "empty-handed"


@functools.cache
def _task_table(num_colors: int) -> tuple[tuple[KeyDoorTask, ...], dict[str, tuple[int, ...]]]:
    """All tasks for `num_colors` and their train/test indices (immutable, shared by all instances,
    so env snapshots stay small)."""
    tasks = tuple(
        KeyDoorTask(colors, target, carried)
        for colors in itertools.combinations(COLORS, num_colors)
        for target in colors
        for carried in (None, *[c for c in colors if c != target])
    )
    order = np.random.default_rng(SPLIT_SEED).permutation(len(tasks))
    num_test = round(len(tasks) * TEST_FRACTION)
    splits = {
        "test": tuple(sorted(order[:num_test].tolist())),
        "train": tuple(sorted(order[num_test:].tolist())),
    }
    return tasks, splits


class KeyDoorEnv(TextEnv):
    """Locked doors and coloured keys: pick up the right key (dropping a wrong one first) and open
    the door the task names. Opening any other door fails the episode.

    Reward 1 on success, else 0. A random agent succeeds about 1 time in `num_colors`; the expert
    in 1 to 3 turns. Tasks (door colours x target x starting key) are split 80/20 into train/test.
    """

    success_definition = "the door named in the task was opened (reward 1)"

    def __init__(self, num_colors: int = 5, render_mode: str | None = None) -> None:
        super().__init__(render_mode=render_mode)
        if not 2 <= num_colors <= len(COLORS):
            raise ValueError(f"num_colors must be in [2, {len(COLORS)}], got {num_colors}")
        self.num_colors = num_colors
        self.task: KeyDoorTask | None = None
        self.task_index = -1
        self.doors: list[str] = []
        self.table: list[str] = []
        self.carried: str | None = None
        self.done = False

    @property
    def instructions(self) -> str:
        return (
            "You are in a room with locked doors and coloured keys. A door opens only with the key of "
            "its colour. You can carry one key at a time. Open the door named in the task; opening "
            "any other door fails the task.\n"
            "Reply with exactly one command per turn:\n"
            "  pick up the <color> key\n  drop the <color> key\n  open the <color> door\n  look"
        )

    @property
    def _tasks(self) -> tuple[KeyDoorTask, ...]:
        return _task_table(self.num_colors)[0]

    @property
    def _splits(self) -> dict[str, tuple[int, ...]]:
        return _task_table(self.num_colors)[1]

    def task_ids(self, split: str = "train") -> list[str]:
        return [self._task_id(i) for i in self._splits[split]]

    def _task_id(self, index: int) -> str:
        return f"keydoor{self.num_colors}-{index:04d}"

    def _parse_task_id(self, task_id: str) -> int:
        prefix = f"keydoor{self.num_colors}-"
        if task_id.startswith(prefix) and task_id[len(prefix) :].isdigit():
            index = int(task_id[len(prefix) :])
            if index < len(self._tasks):
                return index
        raise ValueError(
            f"unknown task_id {task_id!r} for KeyDoor(num_colors={self.num_colors}); "
            f"ids run from {self._task_id(0)} to {self._task_id(len(self._tasks) - 1)}"
        )

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        opts = parse_reset_options(options)
        if opts.task_id is not None:
            self.task_index = self._parse_task_id(opts.task_id)
        else:
            pool = self._splits[opts.split]
            self.task_index = int(pool[self.np_random.integers(len(pool))])
        self.task = self._tasks[self.task_index]
        self.doors = [str(c) for c in self.np_random.permutation(self.task.colors)]
        self.table = [str(c) for c in self.np_random.permutation(self.task.colors) if c != self.task.carried]
        self.carried = self.task.carried
        self.done = False
        observation = f"Task: {self.task.instruction}.\n{self._describe()}"
        info = {
            "task": self.task.instruction,
            "task_id": self._task_id(self.task_index),
            "task_type": self.task.task_type,
            "split": "train" if self.task_index in self._splits["train"] else "test",
            **self._state_info(),
        }
        self.last_observation = observation
        return observation, info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        check_step_order(started=self.task is not None, done=self.done)
        feedback, valid, reward = self._apply(action)
        observation = feedback if self.done else f"{feedback}\n{self._describe()}"
        info = {"valid_action": valid, **self._state_info()}
        self.last_observation = observation
        return observation, reward, self.done, False, info

    def _apply(self, action: str) -> tuple[str, bool, float]:
        """(feedback, valid_action, reward) for one command; changes the state."""
        command = " ".join(str(action).lower().strip().rstrip(".!").split())
        if command == "look":
            return "You look around.", True, 0.0
        match = _COMMAND.match(command)
        if not match:
            return (
                f"I don't understand {quote_action(action)}. Reply with one of the commands in the rules.",
                False,
                0.0,
            )
        verb, color, thing = match.groups()
        if color not in self.task.colors:
            return f"There is no {color} {thing} here.", False, 0.0
        if verb in ("pick up", "take"):
            if thing != "key":
                return "You can't pick up a door.", False, 0.0
            if self.carried == color:
                return f"You already carry the {color} key.", False, 0.0
            if self.carried is not None:
                return f"Your hands are full: drop the {self.carried} key first.", False, 0.0
            self.table.remove(color)
            self.carried = color
            return f"You pick up the {color} key.", True, 0.0
        if verb == "drop":
            if thing != "key" or self.carried != color:
                return f"You don't carry a {color} {thing}.", False, 0.0
            self.table.append(color)
            self.carried = None
            return f"You put the {color} key on the table.", True, 0.0
        if thing != "door":
            return "You can't open a key.", False, 0.0
        if self.carried != color:
            return f"The {color} door is locked. You need the {color} key.", False, 0.0
        self.done = True
        if color == self.task.target:
            return f"You unlock the {color} door and it swings open. Task complete!", True, 1.0
        return (
            f"You unlock the {color} door, but the task was the {self.task.target} door. An alarm "
            "sounds. Task failed.",
            True,
            0.0,
        )

    def _describe(self) -> str:
        table = ", ".join(f"a {c} key" for c in self.table) or "nothing"
        carried = f"the {self.carried} key" if self.carried else "nothing"
        return f"Locked doors: {', '.join(self.doors)}.\nOn the table: {table}.\nYou carry: {carried}."

    def _success(self) -> bool:
        return self.done and self.carried == self.task.target

    def _state_info(self) -> dict[str, Any]:
        success = self._success()
        has_key = self.carried == self.task.target
        return {
            "success": success,
            "admissible_actions": self.admissible_actions(),
            "progress": 1.0 if success else (0.5 if has_key else 0.0),
            "state_key": (self.task_index, tuple(sorted(self.table)), self.carried, self.done),
        }

    def admissible_actions(self) -> list[str]:
        if self.task is None or self.done:
            return []
        if self.carried is None:
            actions = [f"pick up the {c} key" for c in self.table]
        else:
            actions = [f"drop the {self.carried} key", f"open the {self.carried} door"]
        return [*actions, "look"]

    def expert_action(self) -> str | None:
        if self.task is None or self.done:
            return None
        if self.carried == self.task.target:
            return f"open the {self.task.target} door"
        if self.carried is not None:
            return f"drop the {self.carried} key"
        return f"pick up the {self.task.target} key"
