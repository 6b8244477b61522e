"""FrozenLake as text: Gymnasium's FrozenLake on random solvable maps, drawn as a grid (`turngym/FrozenLake-v0`)."""

from __future__ import annotations

from collections.abc import Hashable, Iterator

import numpy as np
from gymnasium.envs.toy_text.frozen_lake import FrozenLakeEnv as GymFrozenLake
from gymnasium.envs.toy_text.frozen_lake import generate_random_map

from turngym.envs.games.grid import MOVES, GridGameEnv, Position, render_rows, shortest_path, step_position

_ACTION = {"left": 0, "down": 1, "right": 2, "up": 3}  # Gymnasium's FrozenLake action indices


class FrozenLakeEnv(GridGameEnv):
    """Cross a frozen lake from the start S to the goal G without falling into a hole H.

    The dynamics are Gymnasium's `FrozenLakeEnv` on a map from its `generate_random_map` (which
    guarantees a path), one map per level seed. Reward 1 on reaching G, else 0; falling into a hole
    ends the episode. Moving off the board is an invalid action. With `is_slippery=True` a move goes
    the intended way one time in three, else sideways (Gymnasium's rule); the expert
    (a shortest path that avoids holes, replanned every turn) is optimal only on the default,
    non-slippery ice."""

    success_definition = "the player reached the goal G (reward 1); falling into a hole H fails"
    task_type = "frozenlake"

    def __init__(
        self,
        size: int = 4,
        frozen_fraction: float = 0.8,
        is_slippery: bool = False,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(render_mode=render_mode)
        if not 3 <= size <= 12:
            raise ValueError(f"size must be in [3, 12], got {size}")
        if not 0.5 <= frozen_fraction <= 1.0:
            raise ValueError(f"frozen_fraction must be in [0.5, 1], got {frozen_fraction}")
        self.size = size
        self.frozen_fraction = frozen_fraction
        self.is_slippery = is_slippery
        self.lake: GymFrozenLake | None = None
        self.desc: tuple[str, ...] = ()  # the map rows: S start, F ice, H hole, G goal
        self.player: Position = (0, 0)

    @property
    def instructions(self) -> str:
        slip = (
            " The ice is slippery: you may slide sideways instead of where you meant to go."
            if self.is_slippery
            else ""
        )
        return (
            "You are the player P on a frozen lake drawn as a text grid: S is the start, F is frozen "
            "ice (safe), H is a hole, G is the goal. Row 1 is the top row. Walk to G without stepping "
            "into a hole (that ends the game). Each turn reply with exactly one move: up, down, left or "
            f"right. Moving off the board is not allowed.{slip}"
        )

    @property
    def level_prefix(self) -> str:
        return f"frozenlake{self.size}" + ("-slippery" if self.is_slippery else "")

    @property
    def task(self) -> str:
        return "reach the goal G without falling into a hole"

    def _generate(self, rng: np.random.Generator) -> None:
        desc = generate_random_map(self.size, self.frozen_fraction, seed=int(rng.integers(1 << 31)))
        self.desc = tuple(desc)
        self.lake = GymFrozenLake(desc=desc, is_slippery=self.is_slippery)
        # The slips are episode randomness (from the env seed), the map is the level's.
        self.lake.reset(seed=int(self.np_random.integers(1 << 31)))
        self.player = (0, 0)

    def _tile(self, position: Position) -> str:
        return self.desc[position[0]][position[1]]

    def _render(self) -> str:
        rows = [list(row) for row in self.desc]
        rows[self.player[0]][self.player[1]] = "P"
        return render_rows(rows)

    def _on_board(self, position: Position) -> bool:
        return 0 <= position[0] < self.size and 0 <= position[1] < self.size

    def _blocked(self, move: str) -> str | None:
        if self._on_board(step_position(self.player, move)):
            return None
        return f"You can't go {move}: that is off the edge of the lake."

    def _apply(self, move: str) -> tuple[str, float]:
        intended = step_position(self.player, move)
        state, reward, _, _, _ = self.lake.step(_ACTION[move])
        self.player = divmod(int(state), self.size)
        where = "You slip" if self.player != intended else f"You go {move}"
        tile = self._tile(self.player)
        if tile == "G":
            self.done = self.won = True
            return f"{where} and reach the goal. Task complete!", float(reward)
        if tile == "H":
            self.done = True
            return f"{where} and fall into a hole. Game over.", 0.0
        return f"{where}.", 0.0

    def _successors(self, position: Position) -> Iterator[tuple[str, Position]]:
        for move in MOVES:
            nxt = step_position(position, move)
            if self._on_board(nxt) and self._tile(nxt) != "H":
                yield move, nxt

    def _solve(self) -> list[str] | None:
        return shortest_path(self.player, self._successors, lambda p: self._tile(p) == "G")

    def _state_key(self) -> Hashable:
        return self.player
