"""MiniGrid/BabyAI as text: the agent's 7x7 view in words, actions as words, the BabyAI bot as expert."""

from __future__ import annotations

import contextlib
import io
from typing import Any

import gymnasium
import numpy as np

from turngym.core import TextEnv, check_step_order, quote_action
from turngym.envs.games.grid import level_info, reset_level_seed
from turngym.errors import did_you_mean, require

ACTIONS = ("turn left", "turn right", "go forward", "pick up", "drop", "toggle", "done")
"""The action words, in MiniGrid's action order (index = `MiniGridEnv.Actions` value)."""
_ALIASES = {
    "left": "turn left",
    "right": "turn right",
    "forward": "go forward",
    "move forward": "go forward",
    "go straight": "go forward",
    "pickup": "pick up",
    "pick it up": "pick up",
    "open": "toggle",
    "open door": "toggle",
    "open the door": "toggle",
    "unlock": "toggle",
    "unlock the door": "toggle",
    "drop it": "drop",
}
DOOR_STATES = ("open", "closed", "locked")  # MiniGrid's door state 0/1/2
DIRECTIONS = ("east", "south", "west", "north")  # MiniGrid's agent_dir 0..3
_VIEW_OBJECTS = ("door", "key", "ball", "box", "goal", "lava")


def parse_action(action: str) -> int | None:
    """The MiniGrid action index of an action word (`turn left`, `pick up`, aliases), else None."""
    command = " ".join(str(action).lower().strip().rstrip(".!").replace("_", " ").split())
    command = _ALIASES.get(command, command)
    return ACTIONS.index(command) if command in ACTIONS else None


def _steps(n: int) -> str:
    return f"{n} step{'s' if n != 1 else ''}"


def relative_position(ahead: int, right: int) -> str:
    """Words for a cell `ahead` steps forward and `right` steps to the right (negative: left)."""
    if ahead == 1 and right == 0:
        return "right in front of you"
    parts = [f"{_steps(ahead)} ahead"] if ahead else []
    if right:
        parts.append(f"{_steps(abs(right))} to the {'right' if right > 0 else 'left'}")
    return " and ".join(parts) if ahead else f"{parts[0]} of you"


def describe_cell(object_name: str, colour: str, state: int) -> str:
    if object_name == "door":
        article = "an" if state == 0 else "a"
        return f"{article} {DOOR_STATES[state]} {colour} door"
    if object_name in ("goal", "lava"):
        return f"the {object_name}" if object_name == "goal" else "lava"
    return f"a {colour} {object_name}"


def describe_view(image: np.ndarray, carrying: str | None = None) -> str:
    """The agent's egocentric view (MiniGrid's `obs["image"]`, (7, 7, 3): object, colour, state per
    cell; the agent at the bottom middle facing up) in words: what is right in front, each visible
    object with its position in steps ahead/left/right, the walls ahead and beside, what is carried."""
    from minigrid.core.constants import IDX_TO_COLOR, IDX_TO_OBJECT

    size = image.shape[0]
    mid, bottom = size // 2, size - 1

    def cell(i: int, j: int) -> tuple[str, str, int]:
        obj, colour, state = (int(v) for v in image[i, j])
        return IDX_TO_OBJECT[obj], IDX_TO_COLOR[colour], state

    seen = []
    for j in range(bottom, -1, -1):
        for i in range(size):
            name, colour, state = cell(i, j)
            ahead, right = bottom - j, i - mid
            if name in _VIEW_OBJECTS and (ahead, right) not in ((0, 0), (1, 0)):  # (1, 0): said first
                seen.append((ahead + abs(right), ahead, right, describe_cell(name, colour, state)))
    lines = []
    front_name, front_colour, front_state = cell(mid, bottom - 1)
    if front_name == "wall":
        lines.append("In front of you: a wall.")
    elif front_name in _VIEW_OBJECTS:
        lines.append(f"In front of you: {describe_cell(front_name, front_colour, front_state)}.")
    else:
        lines.append("In front of you: open floor.")
    wall_ahead = next((bottom - j for j in range(bottom - 1, -1, -1) if cell(mid, j)[0] == "wall"), None)
    blocked_ahead = next(
        (bottom - j for j in range(bottom - 1, -1, -1) if cell(mid, j)[0] not in ("empty", "floor")), None
    )
    if wall_ahead is not None and wall_ahead == blocked_ahead:
        lines.append(f"There is a wall {_steps(wall_ahead)} ahead.")
    beside = [side for side, i in (("left", mid - 1), ("right", mid + 1)) if cell(i, bottom)[0] == "wall"]
    if beside:
        lines.append(f"There is a wall directly to your {' and '.join(beside)}.")
    others = [f"{what}, {relative_position(ahead, right)}" for _, ahead, right, what in sorted(seen)]
    lines.append("You see: " + ("; ".join(others) if others else "nothing else") + ".")
    lines.append(f"You carry: {carrying or 'nothing'}.")
    return "\n".join(lines)


class MiniGridTextEnv(TextEnv):
    """Any MiniGrid/BabyAI level as a text env: the mission is the task, the agent's 7x7 view is
    described in words each turn, actions are words (`turn left`, `turn right`, `go forward`,
    `pick up`, `drop`, `toggle`, `done`). Reward and success are MiniGrid's (success: the episode
    terminated with a positive reward); the level's own step limit truncates episodes.

    Levels are procedural: a level seed drawn from the env seed (even seeds train, odd seeds test)
    seeds MiniGrid's `reset`. The expert (BabyAI levels only) is minigrid's BabyAI bot, replanned
    every turn (it follows the agent's own actions, and is rebuilt when turns were played without it)."""

    success_definition = (
        "the MiniGrid mission was completed (MiniGrid ended the episode with a positive reward)"
    )

    def __init__(self, env_id: str = "BabyAI-GoToLocal-v0", render_mode: str | None = None) -> None:
        super().__init__(render_mode=render_mode)
        require("minigrid", "minigrid", f"the MiniGrid text env ({env_id})")
        ids = [i for i in gymnasium.registry if i.startswith(("MiniGrid-", "BabyAI-"))]
        if env_id not in ids:
            raise ValueError(f"unknown MiniGrid/BabyAI env_id {env_id!r}.{did_you_mean(env_id, ids)}")
        self.env_id = env_id
        self.inner = gymnasium.make(env_id).unwrapped
        self.level_seed = -1
        self.steps = 0
        self.done = False
        self.won = False
        self.last_image: np.ndarray | None = None
        self.bot: Any = None
        self._bot_step = -1  # the turn the bot last planned for
        self._bot_action: int | None = None
        self._last_action: int | None = None

    @property
    def instructions(self) -> str:
        return (
            "You are an agent in a grid world of rooms with walls, doors, keys, balls and boxes. Each turn "
            "I describe what you see in front of you (positions in steps ahead and to your left or right; "
            "you cannot see behind you or through walls). Complete the mission. Reply with exactly one "
            "action per turn: turn left, turn right, go forward, pick up (the object right in front of "
            "you), drop (in front of you), toggle (open, close or unlock the door in front of you; "
            "unlocking needs the key of its colour), done."
        )

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        self.level_seed = reset_level_seed(self.np_random, options, self.env_id)
        with contextlib.redirect_stdout(io.StringIO()):  # BabyAI's level sampler prints its retries
            obs, _ = self.inner.reset(seed=self.level_seed)
        self.last_image = obs["image"]
        self.steps = 0
        self.done = self.won = False
        self.bot, self._bot_step, self._bot_action, self._last_action = None, -1, None, None
        mission = str(obs["mission"])
        observation = f"Mission: {mission}.\n{self._describe()}"
        info = {**level_info(mission, self.env_id, self.level_seed, self.env_id), **self._state_info()}
        self.last_observation = observation
        return observation, info

    def _describe(self) -> str:
        carrying = self.inner.carrying
        held = f"a {carrying.color} {carrying.type}" if carrying is not None else None
        return describe_view(self.last_image, held)

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        check_step_order(started=self.level_seed >= 0, done=self.done)
        index = parse_action(action)
        if index is None:
            observation = (
                f"I don't understand {quote_action(action)}. Reply with one of: {', '.join(ACTIONS)}.\n"
                f"{self._describe()}"
            )
            info = {"valid_action": False, **self._state_info()}
            self.last_observation = observation
            return observation, 0.0, False, False, info
        before = self._snapshot_facts()
        obs, reward, terminated, truncated, _ = self.inner.step(index)
        self.last_image = obs["image"]
        self.steps += 1
        self._last_action = index
        self.won = bool(terminated and reward > 0)
        self.done = bool(terminated or truncated)
        feedback = self._feedback(index, before)
        if self.won:
            feedback += " Mission complete!"
        elif terminated:
            feedback += " The mission failed."
        observation = f"{feedback}\n{self._describe()}"
        info = {"valid_action": True, **self._state_info()}
        self.last_observation = observation
        return observation, float(reward), bool(terminated), bool(truncated), info

    def _snapshot_facts(self) -> tuple[Any, ...]:
        front = self.inner.grid.get(*self.inner.front_pos)
        door_state = (front.is_open, front.is_locked) if front is not None and front.type == "door" else None
        return tuple(self.inner.agent_pos), self.inner.carrying, front, door_state

    def _feedback(self, index: int, before: tuple[Any, ...]) -> str:
        position, carried, front, door_state = before
        name = ACTIONS[index]
        if name in ("turn left", "turn right"):
            return f"You {name}."
        if name == "go forward":
            if tuple(self.inner.agent_pos) != position:
                return "You go forward."
            return (
                "You can't go forward: "
                + (f"a {front.color} {front.type}" if front else "it")
                + " blocks the way."
            )
        if name == "pick up":
            if self.inner.carrying is not None and carried is None:
                return f"You pick up the {self.inner.carrying.color} {self.inner.carrying.type}."
            return "You can't pick that up." if carried is None else "Your hands are full."
        if name == "drop":
            if carried is not None and self.inner.carrying is None:
                return f"You drop the {carried.color} {carried.type}."
            return (
                "You have nothing to drop."
                if carried is None
                else "You can't drop it here: the cell is not free."
            )
        if name == "toggle":
            if door_state is not None and (front.is_open, front.is_locked) != door_state:
                verb = "open" if front.is_open else "close"
                return f"You {'unlock and ' if door_state[1] else ''}{verb} the {front.color} door."
            if door_state is not None and door_state[1]:
                return f"The {front.color} door is locked: you need the {front.color} key."
            return "Nothing happens."
        return "You say you are done."

    def _state_info(self) -> dict[str, Any]:
        return {
            "success": self.won,
            "admissible_actions": [] if self.done else list(ACTIONS),
            "state_key": (
                self.level_seed,
                tuple(int(v) for v in self.inner.agent_pos),
                int(self.inner.agent_dir),
                self.inner.grid.encode().tobytes(),
                self._carrying_key(),
            ),
        }

    def _carrying_key(self) -> tuple[str, str] | None:
        carrying = self.inner.carrying
        return None if carrying is None else (carrying.type, carrying.color)

    def admissible_actions(self) -> list[str]:
        return [] if self.level_seed < 0 or self.done else list(ACTIONS)

    def expert_action(self) -> str | None:
        """The BabyAI bot's action for this turn (computed once per turn); None for MiniGrid levels
        without BabyAI instructions (the bot reads them)."""
        if self.level_seed < 0 or self.done or not hasattr(self.inner, "instrs"):
            return None
        if self._bot_step != self.steps:
            from minigrid.utils.baby_ai_bot import BabyAIBot

            in_step = self.bot is not None and self._bot_step == self.steps - 1
            if not in_step:  # first turn, or turns were played without the bot: start it afresh
                self.bot = BabyAIBot(self.inner)
            self._bot_action = int(self.bot.replan(self._last_action if in_step else None))
            self._bot_step = self.steps
        return ACTIONS[self._bot_action]
