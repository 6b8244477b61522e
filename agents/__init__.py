"""Agents: policies that map a batch of conversations to the next actions (`turngym.agents`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from turngym.agents.sampling import SamplingConfig
from turngym.agents.scripted import ExpertAgent, RandomAgent
from turngym.errors import ConfigError, did_you_mean
from turngym.rollout import Agent, LiveEpisode

if TYPE_CHECKING:
    from turngym.agents.hf import HFAgent
    from turngym.agents.tiny import TinyAgent, TinyConfig

AGENT_NAMES = ("expert", "random")


def make_agent(name: str, **kwargs: Any) -> Agent:
    """An agent by CLI name (`expert`, `random`) or the folder of a saved `HFAgent`/`TinyAgent`
    (what `agent.save(path)` and the trainers' checkpoints write); a one-line error otherwise."""
    if name == "expert":
        return ExpertAgent(**kwargs)
    if name == "random":
        return RandomAgent(**kwargs)
    if (Path(name) / "config.json").exists() or (Path(name) / "adapter_config.json").exists():
        from turngym.agents.hf import HFAgent

        return HFAgent.load(name, **kwargs)
    raise ConfigError(
        f"unknown agent {name!r}.{did_you_mean(name, AGENT_NAMES)} Valid agents: {list(AGENT_NAMES)} "
        "or the folder of a saved model"
    )


def __getattr__(name: str) -> Any:
    # torch/transformers load only when an LM agent is first used: `import turngym` stays light
    if name in ("HFAgent", "Generation", "TokenBatch", "add_lora"):
        from turngym.agents import hf

        return getattr(hf, name)
    if name in ("TinyAgent", "TinyConfig"):
        from turngym.agents import tiny

        return getattr(tiny, name)
    raise AttributeError(f"module 'turngym.agents' has no attribute {name!r}")


__all__ = [
    "AGENT_NAMES",
    "Agent",
    "ExpertAgent",
    "HFAgent",
    "LiveEpisode",
    "RandomAgent",
    "SamplingConfig",
    "TinyAgent",
    "TinyConfig",
    "make_agent",
]
