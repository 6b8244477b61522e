"""TextWorld adapters: generated TextWorld games (`TextWorld-v0`) and real ALFWorld (`ALFWorld-v0`)."""

from turngym.registry import register

register(
    "turngym/TextWorld-v0",
    "turngym.envs.textworld.env:TextWorldEnv",
    max_episode_steps=100,
    description="TextWorld games from its own generator (tw-simple by default; needs turngym[textworld]).",
)
register(
    "turngym/ALFWorld-v0",
    "turngym.envs.textworld.alfworld:ALFWorldEnv",
    max_episode_steps=50,
    description="Real ALFWorld text games (needs the alfworld package and its data in ALFWORLD_DATA).",
)
