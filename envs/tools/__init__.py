"""Tool-use envs: SQL, calculator, local search QA and sandboxed Python (registered in `turngym.envs`)."""
