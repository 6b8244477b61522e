"""Built-in environments (`turngym.envs`): importing this registers their ids, lazily (no env module
is imported until `make`)."""

from turngym.registry import register

register(
    "turngym/KeyDoor-v0",
    "turngym.envs.keydoor:KeyDoorEnv",
    max_episode_steps=8,
    description="Pick up the right coloured key and open the door the task names (5 colours).",
)
register(
    "turngym/KeyDoorHard-v0",
    "turngym.envs.keydoor:KeyDoorEnv",
    max_episode_steps=8,
    kwargs={"num_colors": 8},
    description="KeyDoor with 8 colours: a random agent succeeds about 1 time in 8.",
)
register(
    "turngym/SQL-v0",
    "turngym.envs.tools.sql:SQLEnv",
    max_episode_steps=10,
    description="Answer questions about shipped SQLite databases with a read-only `query` tool.",
)
register(
    "turngym/Calc-v0",
    "turngym.envs.tools.calc:CalcEnv",
    max_episode_steps=6,
    description="Multi-step arithmetic word problems with a safe `calculate` tool.",
)
register(
    "turngym/SearchQA-v0",
    "turngym.envs.tools.searchqa:SearchQAEnv",
    max_episode_steps=16,
    description="Multi-hop questions over a local corpus with full-text `search` (FTS5) and `open` tools.",
)
register(
    "turngym/Python-v0",
    "turngym.envs.tools.coding:PythonEnv",
    max_episode_steps=8,
    description="Write a Python function that passes hidden tests; `run_python` runs code in a sandbox.",
)

import turngym.envs.games  # noqa: E402  (registers the game ids)
import turngym.envs.household  # noqa: E402  (registers the household ids)
import turngym.envs.minigrid  # noqa: E402  (registers the MiniGrid/BabyAI ids)
import turngym.envs.textworld  # noqa: E402  (registers the TextWorld and ALFWorld ids)
import turngym.envs.webshop  # noqa: E402, F401  (registers turngym/WebShop-v0)
