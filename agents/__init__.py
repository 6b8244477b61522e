"""Agents: policies that map a batch of conversations to the next actions (`turngym.agents`)."""

from __future__ import annotations

from typing import Any

from turngym.agents.scripted import ExpertAgent, RandomAgent
from turngym.errors import ConfigError, did_you_mean
from turngym.rollout import Agent, LiveEpisode

AGENT_NAMES = ("expert", "random")


def make_agent(name: str, **kwargs: Any) -> Agent:
    """An agent by CLI name (`expert`, `random`); a one-line error names the valid ones."""
    if name == "expert":
        return ExpertAgent(**kwargs)
    if name == "random":
        return RandomAgent(**kwargs)
    raise ConfigError(
        f"unknown agent {name!r}.{did_you_mean(name, AGENT_NAMES)} Valid agents: {list(AGENT_NAMES)}"
    )


__all__ = ["AGENT_NAMES", "Agent", "ExpertAgent", "LiveEpisode", "RandomAgent", "make_agent"]
