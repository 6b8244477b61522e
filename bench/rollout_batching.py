"""How well the transformers rollout batches: env steps/s at batch 32 over batch 1, in one run.

A TinyAgent (built from the env's text, random weights, sampling at temperature 1 as `turngym
train` does) plays RiverCrossing (20 turns, 32 new tokens per action) at each batch size in turn,
`--repeats` times interleaved (1, 32, 1, 32, ...), with one torch thread. Each measurement starts
with an empty KV cache and plays `--episodes` episodes (default: the batch size, at least 4).
Printed per batch size (medians): env steps/s by the wall clock and by the process's CPU time (on
a shared machine the CPU time is the steadier one), where each step's CPU time went (prefill
forward passes, decode forward passes, everything else: prompts, bookkeeping, sampling, env
steps) and prefill tokens per step (padding included: it is computed too); then each batch size's
ratio to the first one's (of the medians, and each repeat's own), and the process's peak RSS.

    python bench/rollout_batching.py                       # RiverCrossing, batch 1 and 32, 3 repeats
    python bench/rollout_batching.py --env turngym/KeyDoor-v0 --turns 8 --max-new-tokens 8 --batch-sizes 1 8 32
    python bench/rollout_batching.py --json out.jsonl      # one JSON line per measurement

It uses only `turngym.rollout`, `TinyAgent` and `SamplingConfig`, so it measures older versions too
(install one in another environment and run this file there).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import time
from collections import defaultdict
from typing import Any


class ForwardClock:
    """CPU seconds of the model's forward passes, prefill (more than one input token per row) and
    decode apart, and the input tokens of each kind."""

    def __init__(self, model: Any) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.tokens: dict[str, int] = defaultdict(int)
        self.start = 0.0
        self.hooks = [
            model.register_forward_pre_hook(self.before, with_kwargs=True),
            model.register_forward_hook(self.after, with_kwargs=True),
        ]

    def before(self, module: Any, args: Any, kwargs: Any) -> None:
        self.start = time.process_time()

    def after(self, module: Any, args: Any, kwargs: Any, output: Any) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        kind = "prefill" if ids.shape[1] > 1 else "decode"
        self.seconds[kind] += time.process_time() - self.start
        self.tokens[kind] += ids.numel()

    def close(self) -> None:
        for hook in self.hooks:
            hook.remove()


def measure(agent: Any, env_id: str, batch_size: int, turns: int, episodes: int | None) -> dict[str, Any]:
    import turngym

    agent.prefix_cache.clear()
    clock = ForwardClock(agent.model)
    wall, cpu = time.perf_counter(), time.process_time()
    try:
        trajectories = turngym.rollout(
            env_id, agent, episodes or max(batch_size, 4), batch_size=batch_size, max_turns=turns, seed=0
        )
    finally:
        clock.close()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    steps = sum(t.num_turns for t in trajectories)
    forward = clock.seconds["prefill"] + clock.seconds["decode"]
    return {
        "env": env_id,
        "batch": batch_size,
        "env_steps": steps,
        "steps_per_s": steps / wall,
        "steps_per_cpu_s": steps / cpu,
        "prefill_ms": 1e3 * clock.seconds["prefill"] / steps,
        "decode_ms": 1e3 * clock.seconds["decode"] / steps,
        "other_ms": 1e3 * (cpu - forward) / steps,
        "prefill_tokens": clock.tokens["prefill"] / steps,
        "generated_tokens": sum(len(turn.action_tokens) for t in trajectories for turn in t.turns) / steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="turngym/RiverCrossing-v0")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 32])
    parser.add_argument(
        "--episodes", type=int, help="episodes per measurement (default: the batch size, at least 4)"
    )
    parser.add_argument("--turns", type=int, default=20)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: fastest on 2 shared cores)")
    parser.add_argument("--label", default="", help="a name for this run in the JSON lines (e.g. the commit)")
    parser.add_argument("--json", help="append one JSON line per measurement to this file")
    args = parser.parse_args()

    import torch

    from turngym.agents import SamplingConfig, TinyAgent, TinyConfig

    torch.set_num_threads(args.threads)
    sampling = SamplingConfig(temperature=args.temperature, max_new_tokens=args.max_new_tokens)
    agent = TinyAgent.from_env(args.env, TinyConfig(), sampling)
    print(
        f"TinyAgent on {args.env}: {args.turns} turns, {args.max_new_tokens} new tokens, "
        f"{torch.get_num_threads()} torch thread(s), load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    runs: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for repeat in range(args.repeats):
        for batch in args.batch_sizes:
            result = measure(agent, args.env, batch, args.turns, args.episodes)
            result.update(repeat=repeat, label=args.label, threads=args.threads)
            runs[batch].append(result)
            print(
                f"  batch {batch:>2}: {result['env_steps']} env steps, {result['steps_per_s']:.1f}/s wall, "
                f"{result['steps_per_cpu_s']:.1f}/s CPU",
                flush=True,
            )
            if args.json:
                with open(args.json, "a") as f:
                    f.write(json.dumps(result) + "\n")

    def median(batch: int, key: str) -> float:
        return statistics.median(r[key] for r in runs[batch])

    print(f"\nmedians of {args.repeats} (load average {os.getloadavg()[0]:.2f} at the end)")
    print(
        "| batch | env steps/s (wall) | env steps/s (CPU) | prefill ms/step | decode ms/step | other ms/step | prefill tokens/step |"
    )
    print("|---|---|---|---|---|---|---|")
    for batch in args.batch_sizes:
        print(
            f"| {batch} | {median(batch, 'steps_per_s'):.1f} | {median(batch, 'steps_per_cpu_s'):.1f} | "
            f"{median(batch, 'prefill_ms'):.1f} | {median(batch, 'decode_ms'):.1f} | "
            f"{median(batch, 'other_ms'):.1f} | {median(batch, 'prefill_tokens'):.0f} |"
        )
    first = args.batch_sizes[0]
    for batch in args.batch_sizes[1:]:
        for key, clock in (("steps_per_s", "wall"), ("steps_per_cpu_s", "CPU")):
            each = [b[key] / a[key] for a, b in zip(runs[first], runs[batch])]
            print(
                f"batch {batch} / batch {first} env steps/s ({clock}): "
                f"{median(batch, key) / median(first, key):.2f}x (repeats: {', '.join(f'{r:.2f}' for r in each)})"
            )
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10:.0f} MiB")


if __name__ == "__main__":
    main()
