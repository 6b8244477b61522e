"""Game environments (TwentyQuestions, GuessMyCity, Wordle, Sokoban, FrozenLake, Maze): importing this
registers their ids, lazily (no game module is imported until `make`)."""

from turngym.registry import register

register(
    "turngym/TwentyQuestions-v0",
    "turngym.envs.games.twenty_questions:TwentyQuestionsEnv",
    max_episode_steps=20,
    description="ArCHer's twenty questions: find a hidden object (157) with yes/no questions; -1 per turn.",
)
register(
    "turngym/GuessMyCity-v0",
    "turngym.envs.games.guess_my_city:GuessMyCityEnv",
    max_episode_steps=20,
    description="ArCHer's guess my city: find a hidden city (93) with open and yes/no questions; -1 per turn.",
)
register(
    "turngym/Wordle-v0",
    "turngym.envs.games.wordle:WordleEnv",
    max_episode_steps=12,
    description="Guess a five-letter word in 6 tries with per-letter feedback (679 shipped words).",
)
register(
    "turngym/Sokoban-v0",
    "turngym.envs.games.sokoban:SokobanEnv",
    max_episode_steps=40,
    description="Push the box onto the target in a generated, solvable 6x6 room (text grid).",
)
register(
    "turngym/SokobanTwoBoxes-v0",
    "turngym.envs.games.sokoban:SokobanEnv",
    max_episode_steps=60,
    kwargs={"dim": 7, "num_boxes": 2},
    description="Sokoban with two boxes in a generated, solvable 7x7 room.",
)
register(
    "turngym/FrozenLake-v0",
    "turngym.envs.games.frozenlake:FrozenLakeEnv",
    max_episode_steps=20,
    description="Gymnasium's FrozenLake on random 4x4 maps as a text grid: reach G, avoid holes.",
)
register(
    "turngym/FrozenLakeSlippery-v0",
    "turngym.envs.games.frozenlake:FrozenLakeEnv",
    max_episode_steps=40,
    kwargs={"is_slippery": True},
    description="FrozenLake on slippery ice: moves go sideways 2 times in 3 (Gymnasium's rule).",
)
register(
    "turngym/Maze-v0",
    "turngym.envs.games.maze:MazeEnv",
    max_episode_steps=60,
    description="Walk to the goal of a generated 4x4-cell maze drawn as a text grid.",
)
