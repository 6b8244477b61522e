"""RiverCrossing: hike across rivers to a camp, wading or taking the bridge (`turngym/RiverCrossing-v0`).

An env built to show the imitation gap: its scripted expert sees how deep each ford is and the agent
does not, so behaviour cloning copies choices the agent cannot make on its own information, and
reinforcement learning from the agent's own outcomes is what closes the gap."""

from __future__ import annotations

from typing import Any

import numpy as np

from turngym.core import TextEnv, check_step_order, quote_action
from turngym.envs.games.grid import level_info, reset_level_seed

CALM_SHARE = 0.5
"""Share of rivers whose water looks calm (the rest look fast)."""
DEEP_PROBABILITY = {"calm": 0.2, "fast": 0.7}
"""Chance that a river's ford is too deep to wade, given how its water looks."""
# Deep fords are the minority (45%), so the expert wades more often than it takes the bridge and a
# policy that copies its majority choice fails; the bridge is always safe.

WADE, BRIDGE, LOOK = "wade across", "take the bridge", "look"
_ALIASES = {"wade": WADE, "wade across": WADE, "bridge": BRIDGE, "take the bridge": BRIDGE, "look": LOOK}


class RiverCrossingEnv(TextEnv):
    """Cross `num_rivers` rivers in a row to reach the camp. At each river: wade across (one turn;
    a deep ford sweeps the hiker away and fails the episode) or take the bridge upstream (always
    safe). The agent sees whether the water looks calm or fast, which only hints at the depth
    (`DEEP_PROBABILITY`).

    Reward 1 on reaching the camp, else 0. The expert is privileged: it sees each ford's depth,
    wades the shallow ones and bridges the deep ones (100% success). Copying its choice from what the
    agent sees (wade calm water, bridge fast water) succeeds 0.9^10 = 35% of the time with 10 rivers,
    always taking the bridge 100%, a random agent about 8%. Levels are procedural (one per level
    seed: which rivers look calm and which are deep; even seeds train, odd seeds test).
    """

    success_definition = "the hiker reached the camp after the last river (reward 1)"
    task_type = "river"

    def __init__(self, num_rivers: int = 10, render_mode: str | None = None) -> None:
        super().__init__(render_mode=render_mode)
        if not 1 <= num_rivers <= 20:
            raise ValueError(f"num_rivers must be in [1, 20], got {num_rivers}")
        self.num_rivers = num_rivers
        self.level_seed = -1
        self.water: list[str] = []  # "calm" or "fast", one per river: what the agent sees
        self.deep: list[bool] = []  # one per river: what only the expert sees
        self.river = 0  # index of the river ahead (num_rivers once all are crossed)
        self.done = False
        self.won = False

    @property
    def instructions(self) -> str:
        return (
            f"You are hiking to a camp on the far side of {self.num_rivers} rivers. At each river you can "
            "wade across (quick, but a deep ford sweeps you away and ends the hike) or take the bridge "
            "upstream (a detour, always safe). Calm water is usually shallow; fast water is usually deep.\n"
            f"Reply with exactly one command per turn: {WADE}, {BRIDGE}, or {LOOK}."
        )

    @property
    def task(self) -> str:
        return f"reach the camp across {self.num_rivers} rivers"

    @property
    def level_prefix(self) -> str:
        return f"river{self.num_rivers}"

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        self.level_seed = reset_level_seed(self.np_random, options, self.level_prefix)
        rng = np.random.default_rng(self.level_seed)
        self.water = ["calm" if rng.random() < CALM_SHARE else "fast" for _ in range(self.num_rivers)]
        self.deep = [bool(rng.random() < DEEP_PROBABILITY[w]) for w in self.water]
        self.river = 0
        self.done = self.won = False
        observation = f"Task: {self.task}.\n{self._describe()}"
        info = {
            **level_info(self.task, self.level_prefix, self.level_seed, self.task_type),
            **self._state_info(),
        }
        self.last_observation = observation
        return observation, info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        check_step_order(started=self.level_seed >= 0, done=self.done)
        command = _ALIASES.get(" ".join(str(action).lower().strip().rstrip(".!").split()))
        valid, reward = command is not None, 0.0
        if command is None:
            feedback = (
                f"I don't understand {quote_action(action)}. Reply with one of the commands in the rules."
            )
        elif command == LOOK:
            feedback = "You look at the river but cannot see the bottom."
        elif command == WADE and self.deep[self.river]:
            self.done = True
            feedback = "The ford is deeper than it looked and the current sweeps you away. Task failed."
        else:
            feedback = "You wade across." if command == WADE else "You walk upstream and cross the bridge."
            self.river += 1
            if self.river == self.num_rivers:
                self.done = self.won = True
                reward = 1.0
                feedback += " You reach the camp. Task complete!"
        observation = feedback if self.done else f"{feedback}\n{self._describe()}"
        info = {"valid_action": valid, **self._state_info()}
        self.last_observation = observation
        return observation, reward, self.done, False, info

    def _describe(self) -> str:
        return f"River {self.river + 1} of {self.num_rivers}. The water is {self.water[self.river]}."

    def _state_info(self) -> dict[str, Any]:
        lost = self.done and not self.won
        return {
            "success": self.won,
            "admissible_actions": self.admissible_actions(),
            "progress": 0.0 if lost else self.river / self.num_rivers,
            "state_key": (self.level_seed, self.river, self.done),
        }

    def admissible_actions(self) -> list[str]:
        if self.level_seed < 0 or self.done:
            return []
        return [WADE, BRIDGE, LOOK]

    def expert_action(self) -> str | None:
        """The privileged expert: wades a shallow ford, takes the bridge over a deep one."""
        if self.level_seed < 0 or self.done:
            return None
        return BRIDGE if self.deep[self.river] else WADE
