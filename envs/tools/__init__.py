"""Tool-use envs: SQL, calculator, local search QA and sandboxed Python. Importing this registers
their ids; the env modules load only on `make`."""

from turngym.registry import register

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
