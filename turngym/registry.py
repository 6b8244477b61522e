"""Env registry: a thin layer over Gymnasium's, with plugin loading and errors that name close matches."""

from __future__ import annotations

import inspect
import re
from importlib.metadata import entry_points
from typing import Any

import gymnasium
from gymnasium.envs.registration import EnvCreator, WrapperSpec, load_env_creator

from turngym.errors import ConfigError, UnknownEnvError, did_you_mean

ENTRY_POINT_GROUP = "turngym.envs"
ENV_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.:-]+-v\d+$")

_EPISODE_END = WrapperSpec("EpisodeEndEnforcing", "turngym.core:EpisodeEndEnforcing", {})

# id -> one-line description, for every env registered through `turngym.register`.
_DESCRIPTIONS: dict[str, str] = {}
_plugins_loaded = False

# Keywords `gymnasium.make` consumes itself rather than passing to the env constructor.
_MAKE_KEYWORDS = frozenset(
    {"max_episode_steps", "disable_env_checker", "autoreset", "apply_api_compatibility"}
)


def register(
    id: str,
    entry_point: str | EnvCreator,
    *,
    max_episode_steps: int | None = None,
    kwargs: dict[str, Any] | None = None,
    description: str = "",
) -> None:
    """Register an env under `id` (`namespace/Name-vN`, e.g. `turngym/KeyDoor-v0`).

    `entry_point` is a class/factory or a lazy `"module:Class"` string. `max_episode_steps` is the
    turn limit (every episode must end). `description` is the one line `turngym list` shows."""
    if not ENV_ID_PATTERN.match(id):
        raise ConfigError(f"env id {id!r} must look like 'namespace/Name-v0'")
    if max_episode_steps is not None and max_episode_steps < 1:
        raise ConfigError(f"{id}: max_episode_steps must be >= 1, got {max_episode_steps}")
    gymnasium.register(
        id=id,
        entry_point=entry_point,
        max_episode_steps=max_episode_steps,
        kwargs=dict(kwargs or {}),
        additional_wrappers=(_EPISODE_END,),  # outside TimeLimit: truncation ends the episode too
    )
    _DESCRIPTIONS[id] = description


def _load_plugins() -> None:
    """Run the `turngym.envs` entry points of installed packages once (each registers its envs)."""
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        loaded = ep.load()
        if callable(loaded):
            loaded()


def list_envs() -> dict[str, str]:
    """All env ids registered through TurnGym (built-in and plugins), sorted, with descriptions."""
    _load_plugins()
    return {env_id: _DESCRIPTIONS[env_id] for env_id in sorted(_DESCRIPTIONS)}


def spec(id: str) -> gymnasium.envs.registration.EnvSpec:
    """The Gymnasium spec of a registered id, or `UnknownEnvError` naming close matches."""
    _load_plugins()
    if id not in gymnasium.registry:
        known = list(_DESCRIPTIONS) or list(gymnasium.registry)
        raise UnknownEnvError(
            f"unknown env id {id!r}.{did_you_mean(id, known)} Run `turngym list` for all ids."
        )
    return gymnasium.registry[id]


def make(id: str, **kwargs: Any) -> gymnasium.Env:
    """`gymnasium.make` with TurnGym's checks: an unknown id or constructor argument is a one-line
    error naming the valid choices. `max_episode_steps=` overrides the registered turn limit."""
    env_spec = spec(id)
    constructor_kwargs = {**env_spec.kwargs, **{k: v for k, v in kwargs.items() if k not in _MAKE_KEYWORDS}}
    _check_constructor_kwargs(id, env_spec.entry_point, constructor_kwargs)
    return gymnasium.make(id, **kwargs)


def _check_constructor_kwargs(id: str, entry_point: str | EnvCreator, kwargs: dict[str, Any]) -> None:
    creator = load_env_creator(entry_point) if isinstance(entry_point, str) else entry_point
    try:
        signature = inspect.signature(creator)
    except (TypeError, ValueError):  # builtins without a signature: let the constructor decide
        return
    if any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values()):
        return
    valid = [name for name, p in signature.parameters.items() if p.kind is not p.VAR_POSITIONAL]
    for key in kwargs:
        if key not in valid:
            raise ConfigError(
                f"{id}: unknown argument {key!r}.{did_you_mean(key, valid)} Valid arguments: {valid}"
            )
