"""Sampling parameters and the `Generation` record shared by every LM agent (transformers, vLLM, OpenAI)."""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

from turngym.errors import ConfigError


@dataclass
class Generation:
    """One sampled action: the text the env receives, the generated token ids (up to and including
    EOS or a stop string) and their log-probabilities under the model at temperature 1 (before
    temperature and top-p)."""

    text: str
    token_ids: list[int]
    logprobs: list[float]


@dataclass(frozen=True)
class SamplingConfig:
    """How an LM agent turns a conversation into an action."""

    temperature: float = 1.0
    """Softmax temperature; 0 means greedy decoding."""
    top_p: float = 1.0
    """Nucleus sampling: keep the smallest token set with this much probability mass."""
    max_new_tokens: int = 32
    """Longest action, in tokens (ArCHer uses 32)."""
    stop: tuple[str, ...] = ("\n",)
    """The action ends before the first of these strings (one action per line by default)."""

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.max_new_tokens < 1:
            raise ConfigError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if isinstance(self.stop, str):
            object.__setattr__(self, "stop", (self.stop,))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0


def cut_at_stop(text: str, stop: Sequence[str]) -> str:
    """`text` up to the first stop string (the stop string itself excluded), stripped."""
    cut = len(text)
    for s in stop:
        if s and (i := text.find(s)) != -1:
            cut = min(cut, i)
    return text[:cut].strip()


def stream_seed(*key: Hashable) -> int:
    """A 63-bit seed named by `key` (ints, strings, None): the same key gives the same seed on every
    machine and Python run (no `hash()` salt). LM agents seed one sampler per episode and turn
    from it, so an episode's tokens do not depend on which other episodes share its batch."""
    digest = hashlib.blake2b(repr(key).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 1
