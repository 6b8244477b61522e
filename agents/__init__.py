"""Agents: policies that map a batch of conversations to the next actions (`turngym.agents`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from turngym.agents.scripted import ExpertAgent, RandomAgent
from turngym.errors import ConfigError, did_you_mean
from turngym.rollout import Agent, LiveEpisode

if TYPE_CHECKING:
    from turngym.agents.openai import OpenAIAgent
    from turngym.agents.vllm import VLLMAgent

AGENT_NAMES = ("expert", "random", "openai", "vllm")


def make_agent(name: str, **kwargs: Any) -> Agent:
    """An agent by name with its keyword arguments: `expert`, `random`, `openai` (`model=`,
    `base_url=`, ... or the `OPENAI_*` env vars: see `OpenAIAgent`), `vllm` (`model=`, ...: see `VLLMAgent`); a one-line error
    names the valid ones."""
    if name == "expert":
        return ExpertAgent(**kwargs)
    if name == "random":
        return RandomAgent(**kwargs)
    if name == "openai":
        from turngym.agents.openai import OpenAIAgent

        return OpenAIAgent(**kwargs)
    if name == "vllm":
        if "model" not in kwargs:
            raise ConfigError("the vllm agent needs model= (a Hugging Face model id or folder)")
        from turngym.agents.vllm import VLLMAgent

        return VLLMAgent(**kwargs)
    raise ConfigError(
        f"unknown agent {name!r}.{did_you_mean(name, AGENT_NAMES)} Valid agents: {list(AGENT_NAMES)}"
    )


def __getattr__(name: str) -> Any:
    # httpx and vllm load only when their agent is first used: `import turngym` stays light
    if name == "OpenAIAgent":
        from turngym.agents.openai import OpenAIAgent

        return OpenAIAgent
    if name == "VLLMAgent":
        from turngym.agents.vllm import VLLMAgent

        return VLLMAgent
    raise AttributeError(f"module 'turngym.agents' has no attribute {name!r}")


__all__ = [
    "AGENT_NAMES",
    "Agent",
    "ExpertAgent",
    "LiveEpisode",
    "OpenAIAgent",
    "RandomAgent",
    "VLLMAgent",
    "make_agent",
]
