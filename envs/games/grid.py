"""Shared pieces of the grid games (Maze, Sokoban, FrozenLake): move parsing, BFS, procedural task ids."""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Callable, Hashable, Iterable
from typing import Any, ClassVar

import numpy as np

from turngym.core import TextEnv, check_step_order, parse_reset_options, quote_action

MOVES: dict[str, tuple[int, int]] = {"up": (-1, 0), "down": (1, 0), "left": (0, -1), "right": (0, 1)}
"""Move name -> (row delta, column delta)."""

_MOVE = re.compile(r"^(?:move |go |walk |push )?(?:the player )?(up|down|left|right|north|south|west|east)$")
_COMPASS = {"north": "up", "south": "down", "west": "left", "east": "right"}

Position = tuple[int, int]


def parse_move(action: str) -> str | None:
    """`up`/`down`/`left`/`right` (also `move up`, `go north`, any case, a trailing full stop), else None."""
    command = " ".join(str(action).lower().strip().rstrip(".!").split())
    match = _MOVE.match(command)
    if not match:
        return None
    return _COMPASS.get(match.group(1), match.group(1))


def step_position(position: Position, move: str) -> Position:
    drow, dcol = MOVES[move]
    return position[0] + drow, position[1] + dcol


def shortest_path(
    start: Hashable, successors: Callable[[Hashable], Iterable[tuple[str, Hashable]]], is_goal: Callable
) -> list[str] | None:
    """Breadth-first search: the shortest list of moves from `start` to a goal state, or None.

    `successors(state)` yields `(move, next_state)` in a fixed order, so ties break the same way
    every time (the experts stay deterministic)."""
    if is_goal(start):
        return []
    parents: dict[Hashable, tuple[Hashable, str] | None] = {start: None}
    frontier = deque([start])
    while frontier:
        state = frontier.popleft()
        for move, nxt in successors(state):
            if nxt in parents:
                continue
            parents[nxt] = (state, move)
            if is_goal(nxt):
                moves = []
                while parents[nxt] is not None:
                    nxt, move = parents[nxt]
                    moves.append(move)
                return moves[::-1]
            frontier.append(nxt)
    return None


def render_rows(rows: Iterable[Iterable[str]]) -> str:
    return "\n".join("".join(row) for row in rows)


# Procedural levels: a level is fully determined by its integer level seed. Train levels have even
# seeds and test levels odd ones, so the splits are disjoint and every level id replays exactly.
LEVEL_SEEDS = 1 << 30


def draw_level_seed(np_random: np.random.Generator, split: str) -> int:
    return 2 * int(np_random.integers(LEVEL_SEEDS)) + (1 if split == "test" else 0)


def level_split(level_seed: int) -> str:
    return "test" if level_seed % 2 else "train"


def parse_level_id(task_id: str, prefix: str) -> int:
    """The level seed of a task id `<prefix>-<seed>`, or a one-line `ValueError`."""
    head, _, tail = task_id.rpartition("-")
    if head == prefix and tail.isdigit() and int(tail) < 2 * LEVEL_SEEDS:
        return int(tail)
    raise ValueError(f"unknown task_id {task_id!r}: expected '{prefix}-<level seed>' (e.g. '{prefix}-42')")


def reset_level_seed(np_random: np.random.Generator, options: dict[str, Any] | None, prefix: str) -> int:
    """The level a reset plays: the one `options["task_id"]` names (`<prefix>-<seed>`), else a fresh
    draw from `options["split"]` (train by default)."""
    opts = parse_reset_options(options)
    if opts.task_id is not None:
        return parse_level_id(opts.task_id, prefix)
    return draw_level_seed(np_random, opts.split)


def level_info(task: str, prefix: str, level_seed: int, task_type: str) -> dict[str, Any]:
    """The reset info keys that name a procedural level: task, task_id, task_type, split."""
    return {
        "task": task,
        "task_id": f"{prefix}-{level_seed}",
        "task_type": task_type,
        "split": level_split(level_seed),
    }


class GridGameEnv(TextEnv):
    """A single-agent grid puzzle played with `up`/`down`/`left`/`right`, one level per level seed.

    Subclasses build a level from its own generator (`_generate`), render it, say which moves are
    possible and apply them; this class handles reset options, splits, parsing and the info keys."""

    task_type: ClassVar[str] = "grid"

    def __init__(self, render_mode: str | None = None) -> None:
        super().__init__(render_mode=render_mode)
        self.level_seed = -1
        self.start_distance = 1  # shortest solution length at the start of the level
        self.done = False
        self.won = False

    # -- what a game defines --------------------------------------------------------------------
    @property
    def level_prefix(self) -> str:
        """Task ids are `<level_prefix>-<level seed>`; the prefix names the size/variant."""
        raise NotImplementedError

    @property
    def task(self) -> str:
        raise NotImplementedError

    def _generate(self, rng: np.random.Generator) -> None:
        raise NotImplementedError

    def _render(self) -> str:
        raise NotImplementedError

    def _blocked(self, move: str) -> str | None:
        """Why `move` is impossible now (feedback), or None when it is possible."""
        raise NotImplementedError

    def _apply(self, move: str) -> tuple[str, float]:
        """Make a possible move: (feedback, reward); sets `done`/`won` when the episode ends."""
        raise NotImplementedError

    def _solve(self) -> list[str] | None:
        """The shortest winning move list from the current state, or None (no solution)."""
        raise NotImplementedError

    def _progress(self) -> float:
        """The share of the shortest path walked (0 after a loss)."""
        if self.won:
            return 1.0
        if self.done:
            return 0.0
        remaining = len(self._solve() or [])
        return max(0.0, 1.0 - remaining / max(self.start_distance, 1))

    def _state_key(self) -> Hashable:
        raise NotImplementedError

    # -- the TextEnv contract ---------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        self.level_seed = reset_level_seed(self.np_random, options, self.level_prefix)
        self._generate(np.random.default_rng(self.level_seed))
        self.done = self.won = False
        self.start_distance = len(self._solve() or [])
        observation = f"Task: {self.task}.\n{self._render()}"
        info = {
            **level_info(self.task, self.level_prefix, self.level_seed, self.task_type),
            **self._state_info(),
        }
        self.last_observation = observation
        return observation, info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        check_step_order(started=self.level_seed >= 0, done=self.done)
        move = parse_move(action)
        reward = 0.0
        if move is None:
            feedback = f"I don't understand {quote_action(action)}. Reply with one of: up, down, left, right."
            valid = False
        elif (blocked := self._blocked(move)) is not None:
            feedback, valid = blocked, False
        else:
            (feedback, reward), valid = self._apply(move), True
        observation = f"{feedback}\n{self._render()}"
        info = {"valid_action": valid, **self._state_info()}
        self.last_observation = observation
        return observation, reward, self.done, False, info

    def _state_info(self) -> dict[str, Any]:
        return {
            "success": self.won,
            "admissible_actions": self.admissible_actions(),
            "progress": self._progress(),
            "state_key": (self.level_seed, self._state_key()),
        }

    def admissible_actions(self) -> list[str]:
        if self.level_seed < 0 or self.done:
            return []
        return [move for move in MOVES if self._blocked(move) is None]

    def expert_action(self) -> str | None:
        """The first move of a shortest solution (BFS); where none exists (a lost Sokoban state),
        the first possible move."""
        if self.level_seed < 0 or self.done:
            return None
        path = self._solve()
        if path:
            return path[0]
        admissible = self.admissible_actions()
        return admissible[0] if admissible else None
