"""MiniGrid/BabyAI as text: importing this registers the ids; minigrid (the `minigrid` extra) is imported
only when one is made, and its absence is a one-line install hint."""

from turngym.registry import register

# (level, MiniGrid's own step limit, what the mission asks)
BABYAI_LEVELS = (
    ("BabyAI-GoToRedBall-v0", 64, "go to the red ball in a room with distractors"),
    ("BabyAI-GoToObj-v0", 64, "go to the only object in the room"),
    ("BabyAI-GoToLocal-v0", 64, "go to an object named by colour and type, among distractors"),
    ("BabyAI-PickupLoc-v0", 64, "pick up an object named by colour, type or location"),
    ("BabyAI-OpenDoor-v0", 576, "open a door named by colour or location, in a 3x3 grid of rooms"),
    ("BabyAI-PutNextLocal-v0", 128, "put one object next to another, in one room"),
)

for level, steps, what in BABYAI_LEVELS:
    register(
        f"turngym/{level}",
        "turngym.envs.minigrid.text:MiniGridTextEnv",
        max_episode_steps=steps,
        kwargs={"env_id": level},
        description=f"BabyAI as text: {what} (needs minigrid).",
    )
register(
    "turngym/MiniGrid-v0",
    "turngym.envs.minigrid.text:MiniGridTextEnv",
    max_episode_steps=1000,
    description="Any MiniGrid/BabyAI level as text: make('turngym/MiniGrid-v0', env_id='MiniGrid-...').",
)
