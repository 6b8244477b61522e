"""MiniGrid/BabyAI as text (needs the `minigrid` extra, imported only by `make`)."""
