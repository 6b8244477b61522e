"""Training in several processes: `accelerate launch -m turngym.cli train ...`, `torchrun -m
turngym.cli train ...` or `turngym train --num-processes N` start one process (a rank) per GPU, or
N on CPU with gloo; this module is what the trainers share to train exactly as one process would.

The scheme, chosen so that every trainer is correct under it without a line of its own:

- Each rank plays its share of an iteration's episodes (`rank_share`: contiguous, whole GRPO groups,
  each episode with the sampler stream the one-process rollout gives it), then every rank gathers
  all of them in episode order (`gather_episodes`): every rank holds the data one process would.
- Work on that data is replicated (advantages, values, eval, ArCHer's steps), except the minibatches
  of `gradient_steps` and `Trainer.old_logprobs`, which are dealt to the ranks (minibatch k to rank
  k mod W), each loss exactly the one-process loss of that minibatch (token means, weighted means).
  `batch_size` is per process, and an optimizer step accumulates `grad_accum_steps` x W minibatches
  (Accelerate's and TRL's convention: global batch = batch_size x grad_accum_steps x processes).
- `optimizer_step` averages the gradients over the ranks before clipping (`average_gradients`, one
  all-reduce per bucket, as DDP does once per accumulated step): each dealt minibatch's gradient is
  scaled by W, so the average is the one-process sum; a replicated gradient averages to itself.
  So W processes train as one process with `grad_accum_steps` x W, to float rounding
  (tests/trainers/test_distributed.py).
- Rank 0 writes the run folder; the other ranks hold a `ReplicaRun` that writes nothing and reads
  rank 0's checkpoints, which hold nothing rank-specific: a run resumes with any number of processes.

The model is replicated on every rank, as in DDP: Accelerate's FSDP and DeepSpeed launches are
refused (`examples/accelerate/` has their config files for TRL's GRPOTrainer, which shards)."""

from __future__ import annotations

import atexit
import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from turngym.errors import ConfigError, TurnGymError
from turngym.trainers.common.run import Run

if TYPE_CHECKING:
    import torch

    from turngym.trainers.common.config import TrainConfig
    from turngym.types import Trajectory

TIMEOUT_S = 1800
"""How long a collective waits for a silent rank (a rank that died is noticed at once: its sockets
close, and the launcher ends the others). Long, because ranks wait for each other's rollouts."""


class PeersLost(TurnGymError):
    """A collective failed: another process of the run ended (or stopped answering)."""


def world_size() -> int:
    """How many processes train together (1 without a launcher)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """Whether this process writes the run folder and prints (rank 0)."""
    return rank() == 0


def join_processes(config: TrainConfig, device: str) -> str:
    """Under a launcher: refuse what this scheme cannot train, join the process group (gloo on CPU,
    NCCL on GPUs, through Accelerate's `PartialState`) and return this rank's device (its own GPU);
    else `device` as it was."""
    if world_size() == 1:
        return device
    check_launch(config)
    import torch
    from accelerate import PartialState

    cpu = device == "cpu" or not torch.cuda.is_available()
    state = PartialState(cpu=cpu, timeout=timedelta(seconds=TIMEOUT_S))
    # leave the group before the interpreter tears down: a gloo group left to its destructor at
    # exit can abort the process ("terminate called without an active exception", seen here)
    atexit.register(state.destroy_process_group)
    return str(state.device)


def check_launch(config: TrainConfig) -> None:
    """A one-line `ConfigError` for what several processes cannot train."""
    for variable, what in (("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")):
        if os.environ.get(variable, "").lower() == "true":
            raise ConfigError(
                f"TurnGym's trainers replicate the model on every process (DDP); an Accelerate {what} "
                "launch is not supported: use examples/accelerate/ddp.yaml (or TRL's GRPOTrainer, "
                "turngym.integrations.trl, to shard)"
            )
    if getattr(config, "async_collect", False):
        raise ConfigError("async_collect=true trains in one process only; drop it to train with several")
    group = getattr(config, "group_size", 1)
    plays = config.loop_unit == "iterations"  # the offline trainers count epochs and play no rollouts
    if plays and config.rollout_episodes < world_size() * group:
        raise ConfigError(
            f"rollout_episodes ({config.rollout_episodes}) must give each of the {world_size()} processes "
            f"at least {'one group of ' + str(group) if group > 1 else 'one'} episode"
            f"{'s' if group > 1 else ''}"
        )


@contextlib.contextmanager
def collective(what: str) -> Iterator[None]:
    """Turn a failed collective into one line: another rank ended, so this one cannot go on."""
    try:
        yield
    except RuntimeError as exc:  # gloo and NCCL errors (torch.distributed.DistError is one)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise PeersLost(
            f"process {rank()} of {world_size()}: {what} failed, another process of the run has ended "
            f"({first[:200]})"
        ) from None


def barrier() -> None:
    if world_size() > 1:
        import torch.distributed as dist

        with collective("waiting for the other processes"):
            dist.barrier()


def gather_objects(items: Sequence[Any]) -> list[Any]:
    """Every rank's `items`, concatenated in rank order, on every rank (pickled: keep tensors on
    the CPU)."""
    if world_size() == 1:
        return list(items)
    import torch.distributed as dist

    parts: list[Any] = [None] * world_size()
    with collective("gathering results"):
        dist.all_gather_object(parts, list(items))
    return [item for part in parts for item in part]


def dealt(batches: Sequence[Any]) -> list[Any]:
    """This process's share of `batches` dealt round-robin (batch k to process k mod N)."""
    return [batch for k, batch in enumerate(batches) if k % world_size() == rank()]


def gather_dealt(results: list[Any], device: Any) -> list[Any]:
    """`results` (one tensor per example, None where another process scored it) completed from every
    process, on `device`."""
    if world_size() == 1:
        return results
    scored = gather_objects([(i, result.cpu()) for i, result in enumerate(results) if result is not None])
    for i, result in scored:
        results[i] = result.to(device)
    return results


def any_rank(flag: bool) -> bool:
    """Whether `flag` is true on some rank (e.g. a stop request that reached only some processes)."""
    return any(gather_objects([flag]))


def share_range(n: int, group: int = 1) -> range:
    """This rank's contiguous share of `n` items dealt in whole groups of `group` (as even as the
    groups allow; the first ranks take one group more)."""
    groups, rest = divmod(n, group)
    if rest:
        raise ConfigError(f"{n} episodes are not whole groups of {group}")
    base, extra = divmod(groups, world_size())
    start = rank() * base + min(rank(), extra)
    stop = start + base + (rank() < extra)
    return range(start * group, stop * group)


def rank_share(kwargs: dict[str, Any], seed: int, group: int) -> dict[str, Any] | None:
    """The `turngym.rollout` arguments of this rank's share of a rollout given by `kwargs` (with
    `num_episodes`, `seeds` or `task_ids`) whose first seed is `seed`: its episodes' seeds and tasks
    and `first_index`, so that each episode samples as in the whole rollout. None in one process."""
    if world_size() == 1:
        return None
    count = kwargs.get("num_episodes")
    lists = {key: list(kwargs[key]) for key in ("seeds", "task_ids") if kwargs.get(key) is not None}
    n = len(next(iter(lists.values()))) if lists else count
    lists.setdefault("seeds", [seed + i for i in range(n)])  # the rollout's own default seeds
    share = share_range(n, group)
    out = {key: value for key, value in kwargs.items() if key != "num_episodes"}
    out.update({key: values[share.start : share.stop] for key, values in lists.items()})
    out["first_index"] = share.start
    return out


def gather_episodes(
    trajectories: Sequence[Trajectory], sink: Callable[[Trajectory], None] | None
) -> list[Trajectory]:
    """Every rank's episodes in episode order, on every rank; written to `sink` in that order (a
    replica's sinks write nothing)."""
    everything = gather_objects(trajectories)
    if sink is not None:
        for trajectory in everything:
            sink(trajectory)
    return everything


def average_gradients(params: Sequence[torch.Tensor], bucket_numel: int = 1 << 24) -> None:
    """Average the parameters' gradients over the ranks, in place, a bucket of flattened gradients
    per all-reduce. A parameter with a gradient on some rank only gets zeros elsewhere; one without
    a gradient on any rank keeps none (so AdamW skips it, as it would in one process)."""
    if world_size() == 1:
        return
    import torch
    import torch.distributed as dist

    params = [p for p in params if p.requires_grad]
    if not params:
        return
    device = params[0].device
    with collective("averaging gradients"):
        present = torch.tensor([p.grad is not None for p in params], dtype=torch.uint8, device=device)
        dist.all_reduce(present, op=dist.ReduceOp.MAX)
        used = [p for p, flag in zip(params, present.tolist()) if flag]
        for p in used:
            if p.grad is None:
                p.grad = torch.zeros_like(p)
        bucket: list[torch.Tensor] = []
        for p in used:
            bucket.append(p)
            if sum(q.numel() for q in bucket) >= bucket_numel or p is used[-1]:
                _average_bucket(bucket)
                bucket = []


def _average_bucket(params: list[torch.Tensor]) -> None:
    import torch
    import torch.distributed as dist

    for dtype in dict.fromkeys(p.grad.dtype for p in params):
        same = [p for p in params if p.grad.dtype == dtype]
        flat = torch.cat([p.grad.reshape(-1) for p in same])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat /= world_size()
        offset = 0
        for p in same:
            p.grad.copy_(flat[offset : offset + p.numel()].view_as(p.grad))
            offset += p.numel()


def open_run(config: TrainConfig, resume: bool, device: str) -> Run:
    """The run folder: rank 0 writes it once every rank has checked it (`check_run_folder` ran
    first on all of them: a rank checking after rank 0 made it would find it taken); the others
    get a `ReplicaRun` (`device`: this process's)."""
    barrier()
    if is_main():
        return Run(config, resume=resume)
    return ReplicaRun(config, device)


class _NoWriter:
    def write(self, record: Any) -> None:
        pass

    def close(self) -> None:
        pass


class ReplicaRun(Run):
    """The run folder as a rank other than 0 sees it: it writes nothing (rank 0 writes the same
    metrics, episodes and checkpoints) and reads rank 0's checkpoints to resume."""

    def __init__(self, config: TrainConfig, device: str) -> None:  # no super().__init__: it writes
        from pathlib import Path

        self.config = config
        if device.startswith("cuda"):  # rank 0 saved from its GPU, cuda:0; load onto this one's
            self.map_location = {"cuda:0": device}
        self.dir = Path(config.runs_dir) / config.name
        self.checkpoints = self.dir / "checkpoints"
        self.trajectories = self.eval_trajectories = self._metrics = _NoWriter()
        self._credit = _NoWriter()
        self._tb = None

    def log(self, metrics: dict[str, Any], step: int) -> None:
        pass

    def metrics(self) -> list[dict[str, Any]]:
        return []  # rank 0 may be rewriting metrics.jsonl; a replica only shows nothing of it

    def rewind(self, last_iteration: int) -> None:
        pass

    def save_checkpoint(self, iteration: int, state: dict[str, Any]) -> Any:
        return None

    def write_curve(self) -> Any:
        return None

    def close(self) -> None:
        pass


def check_same_start(iteration: int) -> None:
    """Refuse to train when the ranks would resume from different checkpoints (the run folder is not
    on a filesystem they share)."""
    starts = gather_objects([iteration])
    if len(set(starts)) > 1:
        raise ConfigError(
            f"the processes found different newest checkpoints (iterations {starts}): put runs_dir on a "
            "filesystem every machine shares"
        )
