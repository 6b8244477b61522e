"""Maze: walk through a procedurally generated perfect maze to the goal (`turngym/Maze-v0`)."""

from __future__ import annotations

from collections.abc import Hashable, Iterator

import numpy as np

from turngym.envs.games.grid import MOVES, GridGameEnv, Position, render_rows, shortest_path, step_position

WALL, FLOOR, PLAYER, GOAL = "#", ".", "P", "G"


def carve_maze(rng: np.random.Generator, height: int, width: int) -> list[list[str]]:
    """A perfect maze (one path between any two cells) by randomized depth-first search, as
    characters: cells sit at odd coordinates of a (2*height+1) x (2*width+1) grid of walls."""
    grid = [[WALL] * (2 * width + 1) for _ in range(2 * height + 1)]
    start = (int(rng.integers(height)), int(rng.integers(width)))
    grid[2 * start[0] + 1][2 * start[1] + 1] = FLOOR
    stack, seen = [start], {start}
    while stack:
        row, col = stack[-1]
        options = [
            (row + dr, col + dc)
            for dr, dc in MOVES.values()
            if 0 <= row + dr < height and 0 <= col + dc < width and (row + dr, col + dc) not in seen
        ]
        if not options:
            stack.pop()
            continue
        nxt = options[int(rng.integers(len(options)))]
        grid[row + nxt[0] + 1][col + nxt[1] + 1] = FLOOR  # the wall between the two cells
        grid[2 * nxt[0] + 1][2 * nxt[1] + 1] = FLOOR
        seen.add(nxt)
        stack.append(nxt)
    return grid


class MazeEnv(GridGameEnv):
    """A `size` x `size`-cell maze drawn as text; the player P walks one square per move to the goal G.

    Reward 1 on reaching the goal, else 0. Walking into a wall is an invalid action. Levels are
    procedural (one per level seed; even seeds train, odd seeds test); the expert walks the BFS
    shortest path."""

    success_definition = "the player reached the goal square G (reward 1)"
    task_type = "maze"

    def __init__(self, size: int = 4, render_mode: str | None = None) -> None:
        super().__init__(render_mode=render_mode)
        if not 2 <= size <= 12:
            raise ValueError(f"size must be in [2, 12] maze cells, got {size}")
        self.size = size
        self.grid: tuple[str, ...] = ()  # the walls and floor, without player and goal
        self.player: Position = (0, 0)
        self.goal: Position = (0, 0)

    @property
    def instructions(self) -> str:
        return (
            "You are the player P in a maze drawn as a text grid: # is a wall, . is floor, G is the goal. "
            "Row 1 is the top row. Reach G. Each turn reply with exactly one move: up, down, left or "
            "right (one square). Walking into a wall is not allowed."
        )

    @property
    def level_prefix(self) -> str:
        return f"maze{self.size}"

    @property
    def task(self) -> str:
        return "walk to the goal G"

    def _generate(self, rng: np.random.Generator) -> None:
        grid = carve_maze(rng, self.size, self.size)
        self.grid = tuple("".join(row) for row in grid)
        cells = [(2 * r + 1, 2 * c + 1) for r in range(self.size) for c in range(self.size)]
        first, second = rng.choice(len(cells), size=2, replace=False)
        self.player, self.goal = cells[int(first)], cells[int(second)]

    def _render(self) -> str:
        rows = [list(row) for row in self.grid]
        rows[self.goal[0]][self.goal[1]] = GOAL
        rows[self.player[0]][self.player[1]] = PLAYER
        return render_rows(rows)

    def _open(self, position: Position) -> bool:
        return self.grid[position[0]][position[1]] != WALL

    def _blocked(self, move: str) -> str | None:
        return (
            None
            if self._open(step_position(self.player, move))
            else f"You can't go {move}: a wall is in the way."
        )

    def _apply(self, move: str) -> tuple[str, float]:
        self.player = step_position(self.player, move)
        if self.player == self.goal:
            self.done = self.won = True
            return "You reach the goal. Task complete!", 1.0
        return f"You go {move}.", 0.0

    def _successors(self, position: Position) -> Iterator[tuple[str, Position]]:
        for move in MOVES:
            nxt = step_position(position, move)
            if self._open(nxt):
                yield move, nxt

    def _solve(self) -> list[str] | None:
        return shortest_path(self.player, self._successors, lambda p: p == self.goal)

    def _state_key(self) -> Hashable:
        return self.player
