"""Sokoban: push every box onto a target in procedurally generated, solvable rooms (`turngym/Sokoban-v0`)."""

from __future__ import annotations

from collections.abc import Hashable, Iterator

import numpy as np

from turngym.envs.games.grid import MOVES, GridGameEnv, Position, render_rows, shortest_path, step_position

WALL, FLOOR, TARGET, BOX, BOX_ON_TARGET, PLAYER, PLAYER_ON_TARGET = "#", "_", "O", "X", "*", "P", "S"
State = tuple[Position, frozenset[Position]]  # (player, boxes)


class SokobanEnv(GridGameEnv):
    """Push all boxes X onto the targets O in a `dim` x `dim` room (walls included).

    Levels are made by reverse play: boxes start on their targets and the player pulls them away
    along a random walk, so every level is solvable; a breadth-first solver over (player, boxes)
    states then keeps only levels whose shortest solution has at least `min_solution` moves and is
    the expert. Reward 1 when every box is on a target, else 0. Walking into a wall, or pushing a
    box into a wall or another box, is an invalid action. A box pushed into a corner can make the
    level unsolvable; the episode then runs to its turn limit."""

    success_definition = "every box is on a target (reward 1)"
    task_type = "sokoban"

    def __init__(
        self,
        dim: int = 6,
        num_boxes: int = 1,
        num_walls: int = 2,
        min_solution: int = 3,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(render_mode=render_mode)
        if not 5 <= dim <= 10:
            raise ValueError(f"dim must be in [5, 10] (the room with its walls), got {dim}")
        if not 1 <= num_boxes <= 3:
            raise ValueError(f"num_boxes must be in [1, 3], got {num_boxes}")
        if not 0 <= num_walls <= (dim - 2) ** 2 // 4:
            raise ValueError(f"num_walls must be in [0, {(dim - 2) ** 2 // 4}], got {num_walls}")
        self.dim, self.num_boxes, self.num_walls, self.min_solution = dim, num_boxes, num_walls, min_solution
        self.walls: frozenset[Position] = frozenset()
        self.targets: frozenset[Position] = frozenset()
        self.player: Position = (0, 0)
        self.boxes: frozenset[Position] = frozenset()

    @property
    def instructions(self) -> str:
        return (
            "You are the player in a Sokoban room drawn as a text grid: # wall, _ floor, O target, "
            "X box, * box on a target, P you, S you standing on a target. Row 1 is the top row. Push "
            "every box onto a target. You push a box by walking into it; it moves one square the same "
            "way if that square is free. You cannot pull boxes, and a box pushed into a corner is stuck "
            "for good. Each turn reply with exactly one move: up, down, left or right."
        )

    @property
    def level_prefix(self) -> str:
        return f"sokoban{self.dim}x{self.num_boxes}"

    @property
    def task(self) -> str:
        return "push every box onto a target" if self.num_boxes > 1 else "push the box onto the target"

    # -- level generation -----------------------------------------------------------------------
    def _generate(self, rng: np.random.Generator) -> None:
        for _ in range(1000):
            if self._try_generate(rng):
                return
        raise RuntimeError(f"could not generate a Sokoban level for {self.level_prefix}")

    def _try_generate(self, rng: np.random.Generator) -> bool:
        interior = [(r, c) for r in range(1, self.dim - 1) for c in range(1, self.dim - 1)]
        border = {(r, c) for r in range(self.dim) for c in range(self.dim)} - set(interior)
        picks = rng.permutation(len(interior))
        inner_walls = {interior[i] for i in picks[: self.num_walls]}
        floor = [p for p in interior if p not in inner_walls]
        if not _connected(set(floor)):
            return False
        self.walls = frozenset(border | inner_walls)
        order = rng.permutation(len(floor))
        self.targets = frozenset(floor[i] for i in order[: self.num_boxes])
        player = floor[order[self.num_boxes]]
        boxes = set(self.targets)
        for _ in range(int(rng.integers(10, 40))):  # reverse play: walk, sometimes pulling a box
            move = list(MOVES)[int(rng.integers(4))]
            nxt = step_position(player, move)
            if nxt in self.walls or nxt in boxes:
                continue
            behind = (2 * player[0] - nxt[0], 2 * player[1] - nxt[1])
            if behind in boxes and rng.random() < 0.7:
                boxes.remove(behind)
                boxes.add(player)
            player = nxt
        self.player, self.boxes = player, frozenset(boxes)
        solution = self._solve()
        return solution is not None and len(solution) >= self.min_solution

    # -- rules ----------------------------------------------------------------------------------
    def _render(self) -> str:
        rows = [[WALL if (r, c) in self.walls else FLOOR for c in range(self.dim)] for r in range(self.dim)]
        for r, c in self.targets:
            rows[r][c] = TARGET
        for r, c in self.boxes:
            rows[r][c] = BOX_ON_TARGET if (r, c) in self.targets else BOX
        r, c = self.player
        rows[r][c] = PLAYER_ON_TARGET if self.player in self.targets else PLAYER
        return render_rows(rows)

    def _push(self, state: State, move: str) -> State | None:
        """The state after `move`, or None where the move is impossible."""
        player, boxes = state
        nxt = step_position(player, move)
        if nxt in self.walls:
            return None
        if nxt in boxes:
            beyond = step_position(nxt, move)
            if beyond in self.walls or beyond in boxes:
                return None
            return nxt, (boxes - {nxt}) | {beyond}
        return nxt, boxes

    def _blocked(self, move: str) -> str | None:
        if self._push((self.player, self.boxes), move) is not None:
            return None
        nxt = step_position(self.player, move)
        if nxt in self.walls:
            return f"You can't go {move}: a wall is in the way."
        return f"You can't push that box {move}: something is behind it."

    def _apply(self, move: str) -> tuple[str, float]:
        pushed = step_position(self.player, move) in self.boxes
        self.player, self.boxes = self._push((self.player, self.boxes), move)
        if self.boxes == self.targets:
            self.done = self.won = True
            return "You push the last box onto its target. Task complete!", 1.0
        return (f"You push the box {move}." if pushed else f"You go {move}."), 0.0

    def _successors(self, state: State) -> Iterator[tuple[str, State]]:
        for move in MOVES:
            nxt = self._push(state, move)
            if nxt is not None:
                yield move, nxt

    def _solve(self) -> list[str] | None:
        return shortest_path((self.player, self.boxes), self._successors, lambda s: s[1] == self.targets)

    def _progress(self) -> float:
        return len(self.boxes & self.targets) / self.num_boxes

    def _state_key(self) -> Hashable:
        return self.player, tuple(sorted(self.boxes))


def _connected(cells: set[Position]) -> bool:
    if not cells:
        return False
    start = next(iter(sorted(cells)))
    seen, frontier = {start}, [start]
    while frontier:
        position = frontier.pop()
        for move in MOVES:
            nxt = step_position(position, move)
            if nxt in cells and nxt not in seen:
                seen.add(nxt)
                frontier.append(nxt)
    return len(seen) == len(cells)
