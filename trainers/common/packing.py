"""One forward pass per episode: the turns a trainer scores, packed so that every turn whose tokens
(prompt + action) are a prefix of a longer turn's tokens is read off that turn's sequence.

A multi-turn prompt repeats the whole episode so far, so scoring each turn as its own sample prefills
the episode's start once per turn (a 20-turn episode: ~20 prefills, quadratic in its length). When the
chat template keeps the history as it rendered it and no turn was cut from the context (no
`history_window`, nothing dropped by `max_context_tokens`), turn k's prompt + action is, token for
token, the start of turn k+1's prompt, and a causal model gives turn k's action tokens the same
log-probs at the same positions of the longer sequence. `pack_turns` checks this on the token ids of
each turn (it never assumes it): a turn whose ids are not a prefix of another's (a history window, a
template that rewrites past turns such as Qwen3's, which drops earlier `<think>` blocks, an action cut
at a stop string rather than EOS) gets a row of its own, as before.

`turn_logprobs` then reads the log-probs of each turn's action tokens from the packed rows, computing
the LM head only at those positions (the hidden states of the whole row, but not a vocabulary-sized
logit vector for every prompt token), and hands them back per turn, right-aligned in a (turns, T)
tensor with its mask: the layout of the action tokens in `HFAgent.token_batch`'s rows, so the losses
that used `token_logprobs(...)` and `action_mask[:, 1:]` read them unchanged."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.checkpoint import checkpoint

from turngym.agents.logprobs import gathered_logprobs
from turngym.trainers.common.optim import gradient_steps

if TYPE_CHECKING:
    from turngym.agents.hf import HFAgent
    from turngym.trainers.common.config import TrainConfig
    from turngym.types import Conversation

# Floats of activations per layer, per token and per unit of (hidden + MLP width), that a forward pass
# with gradients keeps for the backward pass: 5.5-5.7 measured on SmolLM2-135M + LoRA r=8 in float32
# on CPU (30 layers of 576 + 1536; one pass over 4 x 256, 8 x 256 and 4 x 512 tokens: linear in the
# tokens, so no (L, L) attention matrix is kept; `python bench/memory.py --calibrate`), rounded up.
ACTIVATION_FLOATS_PER_WIDTH = 6


@dataclass
class PackedTurns:
    """Turns packed into rows for one teacher-forced pass (see the module docstring).

    Row r is the prompt + action ids of one turn (its host), left-padded to L. `rows[n]`, `positions[n]`
    give where the logits that predict action token n are read (the token sits at `positions[n] + 1`),
    `targets[n]` its id; n runs over the turns in order, each turn's action tokens in order."""

    input_ids: torch.Tensor  # (R, L)
    attention_mask: torch.Tensor  # (R, L)
    position_ids: torch.Tensor  # (R, L)
    rows: torch.Tensor  # (N,) row of each action token's logits
    positions: torch.Tensor  # (N,) index in that row of the logits predicting the token
    targets: torch.Tensor  # (N,) the action token ids
    mask: torch.Tensor  # (B, T) bool: turn i's action tokens, right-aligned (T: the longest action)
    host: list[int]  # the turn whose sequence each turn is read from (itself where it is not packed)

    @property
    def num_turns(self) -> int:
        return self.mask.shape[0]

    @property
    def num_rows(self) -> int:
        return self.input_ids.shape[0]


def pack_turns(
    agent: HFAgent,
    states: Sequence[Conversation],
    actions: Sequence[str],
    action_tokens: Sequence[Sequence[int] | None] | None = None,
    *,
    pack: bool = True,
) -> PackedTurns:
    """The turns (prompt `states[i]`, action `actions[i]`; its sampled ids `action_tokens[i]` where
    given, else `agent.action_ids`, as `HFAgent.token_batch` tokenizes them) packed into rows: a turn
    whose prompt + action ids are a prefix of a longer turn's is read from that turn's row (any turn
    that holds it, of its episode or of another with the same start: the ids, hence the log-probs, are
    the same). `pack=False` gives every turn its own row (per-turn scoring)."""
    if len(states) != len(actions):
        raise ValueError(f"{len(states)} conversations but {len(actions)} actions")
    if action_tokens is not None and len(action_tokens) != len(actions):
        raise ValueError(f"{len(actions)} actions but {len(action_tokens)} action token lists")
    prompts = [agent.prompt_ids(c) for c in states]
    tokens = action_tokens if action_tokens is not None else [None] * len(actions)
    targets = [agent.action_ids(a) if t is None else list(t) for a, t in zip(actions, tokens)]
    sequences = [p + t for p, t in zip(prompts, targets)]
    host = _hosts(sequences) if pack else list(range(len(sequences)))
    # rows longest first: a pass over a slice of them (`rows_per_pass`) pads little
    row_turns = sorted(dict.fromkeys(host), key=lambda h: len(sequences[h]), reverse=True)
    row_of = {h: r for r, h in enumerate(row_turns)}
    if row_turns:
        input_ids, attention_mask, position_ids = agent._left_pad([sequences[h] for h in row_turns])
    else:  # no turns (an iteration without any): no rows, and no log-probs to read
        input_ids = attention_mask = position_ids = torch.zeros(0, 0, dtype=torch.long, device=agent.device)
    length = input_ids.shape[1]
    rows, positions, target_ids = [], [], []
    for i, h in enumerate(host):
        offset = length - len(sequences[h])  # left padding of the host's row
        first = offset + len(prompts[i]) - 1  # the logits at the last prompt token predict token 0
        rows += [row_of[h]] * len(targets[i])
        positions += range(first, first + len(targets[i]))
        target_ids += targets[i]
    widest = max((len(t) for t in targets), default=0)
    mask = torch.zeros(len(targets), widest, dtype=torch.bool)
    for i, t in enumerate(targets):
        mask[i, widest - len(t) :] = True
    device = input_ids.device
    return PackedTurns(
        input_ids,
        attention_mask,
        position_ids,
        torch.tensor(rows, dtype=torch.long, device=device),
        torch.tensor(positions, dtype=torch.long, device=device),
        torch.tensor(target_ids, dtype=torch.long, device=device),
        mask.to(device),
        host,
    )


def _hosts(sequences: Sequence[list[int]]) -> list[int]:
    """For each sequence, the sequence whose row it is read from: the first, longest first, of those
    that own a row and start with it (itself where none does, and it then owns a row)."""
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]), reverse=True)
    host = list(range(len(sequences)))
    owners: list[int] = []  # sequences that own a row, longest first
    for i in order:
        sequence, n = sequences[i], len(sequences[i])
        for h in owners:
            candidate = sequences[h]
            # the last token first: a cheap test that rejects almost every other episode
            if candidate[n - 1] == sequence[n - 1] and candidate[:n] == sequence:
                host[i] = h
                break
        else:
            owners.append(i)
    return host


def turn_logprobs(
    model: torch.nn.Module,
    batch: PackedTurns,
    temperature: float = 1.0,
    rows_per_pass: int | None = None,
    pass_mb: float = 0,
) -> torch.Tensor:
    """Log-probs (B, T) of each turn's action tokens under `model` (at `temperature` T: of softmax(logits
    / T); T = 0 reads as 1), right-aligned as `batch.mask` marks them, 0 elsewhere; float32, with
    gradients unless called under `torch.no_grad()`. The LM head runs at the action tokens only
    (`turngym.agents.logprobs.gathered_logprobs`).

    The rows go through the model in passes: of at most `rows_per_pass` rows, and, with `pass_mb` > 0,
    of at most `pass_tokens(model, pass_mb)` tokens (rows x their padded width; a longer row gets a
    pass of its own). With gradients and more than one pass, each pass keeps only its inputs and is
    recomputed in the backward pass (activation checkpointing), so that the activations held for
    the backward pass are one pass's, not the whole batch's (`TrainConfig.pass_memory_mb`); the
    log-probs and gradients are the same. A row longer than the budget, alone in its pass, runs with
    the model's per-layer checkpointing on (`layer_checkpointing`): it keeps each layer's input, not
    every layer's activations, so the budget bounds it too."""
    flat = torch.zeros(batch.targets.shape[0], device=batch.targets.device)
    budget = pass_tokens(model, pass_mb) if pass_mb > 0 else None
    passes = _passes(batch, rows_per_pass, budget)
    recompute = len(passes) > 1 and torch.is_grad_enabled()
    # the model's per-layer switches, for a row longer than the budget (alone in its pass)
    switches = layer_switches(model) if budget is not None and torch.is_grad_enabled() else []
    for start, end in passes:
        chosen = (batch.rows >= start) & (batch.rows < end)
        index = chosen.nonzero().squeeze(-1)
        part = slice(start, end)
        # these rows' own width: the columns that are padding in all of them are left out
        cut = batch.input_ids.shape[1] - int(batch.attention_mask[part].sum(-1).max())
        inputs = (
            batch.input_ids[part, cut:],
            batch.attention_mask[part, cut:],
            batch.position_ids[part, cut:],
            batch.rows[index] - start,
            batch.positions[index] - cut,
            batch.targets[index],
        )
        if switches and inputs[0].numel() > budget:
            with layer_checkpointing(switches):
                taken = gathered_logprobs(model, *inputs, temperature)
        elif recompute:
            taken = checkpoint(gathered_logprobs, model, *inputs, temperature, use_reentrant=False)
        else:
            taken = gathered_logprobs(model, *inputs, temperature)  # (n,)
        flat = flat.index_put((index,), taken)
    return torch.zeros(batch.mask.shape, device=flat.device).masked_scatter(batch.mask, flat)


def layer_switches(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The modules of a transformers model that checkpoint their layers when their `gradient_checkpointing`
    flag is on: the decoder layers (transformers 5's `GradientCheckpointingLayer`), or the model body
    that loops over them (transformers 4); [] for a model without the switch (then a long row's pass is
    recomputed whole, as any split pass)."""
    return [m for m in model.modules() if isinstance(getattr(m, "gradient_checkpointing", None), bool)]


@contextmanager
def layer_checkpointing(switches: Sequence[torch.nn.Module]) -> Iterator[None]:
    """Per-layer activation checkpointing (non-reentrant) for the forward passes inside: what
    `gradient_checkpointing=true` turns on for a whole run, here for one pass. transformers checkpoints a
    layer only where the flag is on and the layer is in training mode; the policy is scored in eval mode
    (no dropout), so the switch modules alone (not their submodules: dropout stays off) read as training
    for the pass. The recomputation in the backward pass runs inside each layer's own checkpoint, so the
    flags need not stay on for it. Switches already on (`gradient_checkpointing=true`) are left as they are."""
    saved = [
        (m, m.gradient_checkpointing, m.training, getattr(m, "_gradient_checkpointing_func", None))
        for m in switches
    ]
    try:
        for m in switches:
            if not m.gradient_checkpointing:
                m._gradient_checkpointing_func = partial(checkpoint, use_reentrant=False)
                m.gradient_checkpointing, m.training = True, True
        yield
    finally:
        for m, flag, training, func in saved:
            m.gradient_checkpointing, m.training = flag, training
            if func is None:
                m.__dict__.pop("_gradient_checkpointing_func", None)
            else:
                m._gradient_checkpointing_func = func


def pass_tokens(model: torch.nn.Module, memory_mb: float) -> int:
    """Tokens per forward pass whose activations, kept for the backward pass, come to about
    `memory_mb`: `memory_mb` over `activation_bytes_per_token(model)` (at least 1)."""
    return max(1, int(memory_mb * 2**20 / activation_bytes_per_token(model)))


def activation_bytes_per_token(model: torch.nn.Module) -> float:
    """An estimate of the bytes one token's activations take in a transformer's forward pass with
    gradients, from its config: per layer, ~ACTIVATION_FLOATS_PER_WIDTH floats per unit of the hidden
    and MLP widths, in the weights' dtype (measured on SmolLM2-135M in float32 on CPU: see
    bench/memory.py)."""
    config = getattr(model, "config", None)
    hidden = getattr(config, "hidden_size", None) or getattr(config, "n_embd", None) or 1024
    layers = getattr(config, "num_hidden_layers", None) or getattr(config, "n_layer", None) or 1
    mlp = getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None) or 4 * hidden
    size = next((p.element_size() for p in model.parameters()), 4)
    return layers * ACTIVATION_FLOATS_PER_WIDTH * (hidden + mlp) * size


def _passes(batch: PackedTurns, rows_per_pass: int | None, tokens: int | None) -> list[tuple[int, int]]:
    """[start, end) row ranges of the passes: consecutive rows (longest first, so a pass's first
    row sets its width), at most `rows_per_pass` rows and `tokens` padded tokens each."""
    lengths = batch.attention_mask.sum(-1).tolist()
    passes, start = [], 0
    while start < batch.num_rows:
        end = start + 1
        most = min(batch.num_rows, start + rows_per_pass) if rows_per_pass else batch.num_rows
        while end < most and (tokens is None or (end + 1 - start) * lengths[start] <= tokens):
            end += 1
        passes.append((start, end))
        start = end
    return passes


def per_turn(logprobs: torch.Tensor, batch: PackedTurns) -> list[torch.Tensor]:
    """`turn_logprobs`' result as one 1-D tensor per turn, over its action tokens."""
    return [row[mask] for row, mask in zip(logprobs, batch.mask)]


def episode_gradient_steps(
    episode_turns: Sequence[int],
    config: TrainConfig,
    rng: np.random.Generator,
    loss: Callable[[np.ndarray], tuple[torch.Tensor, dict[str, float]]],
    step: Callable[[], Any],
    passes: int = 1,
) -> list[dict[str, float]]:
    """`gradient_steps` over the turns of consecutive episodes (`episode_turns[e]` turns each, in
    order; `loss` takes turn indices): minibatches of `batch_size` turns drawn at random, or, with
    `config.minibatch_episodes` = k >= 1, of k whole episodes drawn at random, so that a minibatch holds
    every turn of its episodes and `pack_turns` scores each episode in one row."""
    episodes = getattr(config, "minibatch_episodes", 0)
    if not episodes:
        return gradient_steps(sum(episode_turns), config, rng, loss, step, passes)
    ends = np.cumsum(episode_turns)
    starts = ends - np.asarray(episode_turns)

    def episode_loss(index: np.ndarray) -> tuple[torch.Tensor, dict[str, float]]:
        return loss(np.concatenate([np.arange(starts[e], ends[e]) for e in index]))

    by_episode = dataclasses.replace(config, batch_size=episodes)
    return gradient_steps(len(episode_turns), by_episode, rng, episode_loss, step, passes)
