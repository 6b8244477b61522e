"""The household family: an ALFWorld-like simulator (`Household-v0`) and its difficulty variants."""

from turngym.registry import register

register(
    "turngym/Household-v0",
    "turngym.envs.household.env:HouseholdEnv",
    max_episode_steps=50,
    description="ALFWorld-like house: 6 task types (place, clean, heat, cool, look under lamp, two objects).",
)
register(
    "turngym/HouseholdEasy-v0",
    "turngym.envs.household.env:HouseholdEnv",
    max_episode_steps=50,
    kwargs={"receptacles": 6, "distractors": 3},
    description="Household with a small room: fewer receptacles (6) and distractors (3).",
)
register(
    "turngym/HouseholdHard-v0",
    "turngym.envs.household.env:HouseholdEnv",
    max_episode_steps=50,
    kwargs={"rooms": 3, "receptacles": 14, "distractors": 10},
    description="Household with three rooms, 14 receptacles and 10 distractors per room.",
)
