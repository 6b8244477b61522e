"""TurnGym's small error hierarchy and the optional-dependency guard."""

from __future__ import annotations

import difflib
import importlib
import traceback
from collections.abc import Iterable
from types import ModuleType


class TurnGymError(Exception):
    """Base class: a TurnGym error carries a one-line message meant for the user."""


class UnknownEnvError(TurnGymError, KeyError):
    """An env id that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class ConfigError(TurnGymError, ValueError):
    """A bad config value or key."""


class EnvError(TurnGymError, RuntimeError):
    """An env's `step` raised during a rollout (an env bug: an agent's bad action is feedback, never an
    exception). The message names the env, the episode and the action; `__cause__` is the original."""


class MissingDependencyError(TurnGymError, ImportError):
    """An optional dependency is not installed."""


def close_matches(name: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """Candidates that look like `name` (case-insensitive), best first."""
    candidates = list(candidates)
    lowered = {c.lower(): c for c in candidates}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.5)
    return [lowered[h] for h in hits]


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """' Did you mean `x`?' or '' when nothing is close."""
    matches = close_matches(name, candidates)
    return f" Did you mean {' or '.join(f'`{m}`' for m in matches)}?" if matches else ""


def exception_line(exc: BaseException) -> str:
    """`Type: message (file:line)` of the innermost frame outside importlib: an error in user code
    (an env file, an env's step) as one line that still says where."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "importlib" not in f.filename]
    place = f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    message = " ".join(str(exc).split())
    if len(message) > 200:  # e.g. an error quoting a 10,000-character garbage action
        message = message[:200] + "..."
    return f"{type(exc).__name__}: {message}{place}"


def require(module: str, extra: str, what: str | None = None) -> ModuleType:
    """Import an optional dependency, or raise a one-line install hint."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingDependencyError(
            f"{what or module} needs the `{module}` package: pip install 'turngym[{extra}]' ({exc})"
        ) from None
