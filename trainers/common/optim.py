"""Optimisation helpers every trainer shares: AdamW with warm-up, the clipped step, shuffled (accumulated)
minibatches and the loop over them (`gradient_steps`), frozen copies and the mean of logged losses."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from turngym.trainers.common.distributed import average_gradients, gather_objects, rank, world_size

if TYPE_CHECKING:
    import torch

    from turngym.trainers.common.config import TrainConfig


def make_optimizer(params: Any, lr: float, weight_decay: float = 0.0, warmup_steps: int = 0) -> tuple:
    """AdamW and a linear warm-up schedule (constant afterwards). `params`: tensors, or param-group
    dicts (a group's own `lr` overrides `lr`)."""
    import torch

    params = list(params)
    if params and isinstance(params[0], dict):
        groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in params]
    else:
        groups = [{"params": [p for p in params if p.requires_grad]}]
    optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    )
    return optimizer, scheduler


def policy_optimizer(model: Any, config: TrainConfig) -> tuple:
    """The policy's AdamW and warm-up schedule: `lr`, `weight_decay`, `warmup_steps` of `config`."""
    return make_optimizer(model.parameters(), config.lr, config.weight_decay, config.warmup_steps)


def optimizer_step(optimizer: Any, scheduler: Any, params: Any, max_grad_norm: float) -> float:
    """Average the gradients over the processes of a multi-process run (`average_gradients`), clip,
    step, zero; returns the pre-clip gradient norm."""
    import torch

    params = [p for p in params if p.requires_grad]
    average_gradients(params)
    norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return float(norm)


def minibatches(n: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A shuffled split of range(n) into batches of at most `size`."""
    order = rng.permutation(n)
    return [order[i : i + size] for i in range(0, n, size)]


@dataclass(frozen=True)
class Minibatch:
    """One minibatch of an accumulation group: its example indices, its share of the group's examples
    (the weight of its mean loss in the group's gradient) and whether the optimizer steps after it."""

    index: np.ndarray
    weight: float
    ends_group: bool


def accumulated_minibatches(
    n: int, size: int, accum_steps: int, rng: np.random.Generator, passes: int = 1
) -> Iterator[Minibatch]:
    """`passes` shuffled passes over range(n) in minibatches of at most `size`, grouped `accum_steps` at a
    time; a pass's last group may be shorter, so no gradient is carried into the next pass or iteration
    (checkpoints do not hold gradients, so a resumed run would lose it). Each minibatch weighs its share
    of its group's examples, so a group's gradient is the mean over all its examples, the last (shorter)
    group's too (dividing every loss by `accum_steps` under-weighted it)."""
    for _ in range(passes):
        batches = minibatches(n, size, rng)
        for start in range(0, len(batches), accum_steps):
            group = batches[start : start + accum_steps]
            examples = sum(len(index) for index in group)
            for k, index in enumerate(group):
                yield Minibatch(index, len(index) / examples, k == len(group) - 1)


def gradient_steps(
    n: int,
    config: TrainConfig,
    rng: np.random.Generator,
    loss: Callable[[np.ndarray], tuple[torch.Tensor, dict[str, float]]],
    step: Callable[[], Any],
    passes: int = 1,
    accum_steps: int | None = None,
) -> list[dict[str, float]]:
    """The minibatch loop every gradient trainer runs: `passes` shuffled passes over `n` examples in
    minibatches of `config.batch_size`; `loss(index)` gives a minibatch's mean loss and its metrics, its
    gradient is accumulated with the minibatch's weight, and `step()` runs at the end of each group of
    `accum_steps` (default `config.grad_accum_steps`) minibatches. Returns each minibatch's metrics.

    With W processes (trainers/common/distributed.py) a step accumulates `grad_accum_steps` x W
    minibatches (`batch_size` is per process; an explicit `accum_steps` is the run's, as in one
    process), minibatch k computed by process k mod W alone, its gradient scaled by W for the
    average `optimizer_step` takes; every process returns every minibatch's metrics."""
    logs = []
    processes = world_size()
    accum_steps = accum_steps or config.grad_accum_steps * processes
    batches = accumulated_minibatches(n, config.batch_size, accum_steps, rng, passes)
    for k, batch in enumerate(batches):
        if k % processes == rank():
            value, metrics = loss(batch.index)
            (value * (batch.weight * processes)).backward()
            logs.append((k, metrics))
        if batch.ends_group:
            step()
    return [metrics for _, metrics in sorted(gather_objects(logs), key=lambda log: log[0])]


def deep_copy_frozen(module: torch.nn.Module) -> torch.nn.Module:
    """A frozen copy of a module (reference policy, target network)."""
    clone = copy.deepcopy(module)
    for p in clone.parameters():
        p.requires_grad_(False)
    return clone


def mean_metrics(logs: Sequence[dict[str, float]]) -> dict[str, float]:
    """Each key's mean over the update steps that logged it."""
    keys = dict.fromkeys(key for m in logs for key in m)
    return {key: float(np.mean([m[key] for m in logs if key in m])) for key in keys}
