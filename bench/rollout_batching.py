"""Rollout throughput of an HFAgent (the tiny GPT-2 policy) at batch size 1 vs 8 vs 32, side by side.

Every turn of a batched rollout is one `model.generate` call for all live episodes, so batching
amortises the per-step Python overhead of generation. Run: python bench/rollout_batching.py
"""

from __future__ import annotations

import argparse
import os
import time

import torch

import turngym
from turngym.agents import SamplingConfig, TinyAgent, TinyConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="turngym/KeyDoor-v0")
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--max-new-tokens", type=int, default=8)
    args = parser.parse_args()

    torch.set_num_threads(os.cpu_count() or 1)
    agent = TinyAgent.from_env(
        args.env, TinyConfig(), SamplingConfig(temperature=1.0, max_new_tokens=args.max_new_tokens)
    )
    params = sum(p.numel() for p in agent.model.parameters())
    print(
        f"env {args.env}, TinyAgent {params / 1e6:.2f} M params, {args.episodes} episodes, "
        f"{args.max_new_tokens} new tokens per action, torch threads {torch.get_num_threads()}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    rows = []
    for batch_size in args.batch_sizes:
        agent.generator.manual_seed(0)
        start = time.perf_counter()
        trajectories = turngym.rollout(args.env, agent, args.episodes, batch_size=batch_size, seed=0)
        seconds = time.perf_counter() - start
        steps = sum(t.num_turns for t in trajectories)
        rows.append((batch_size, steps, seconds, steps / seconds))
    base = rows[0][3]
    print(f"{'batch':>5} {'env steps':>9} {'seconds':>8} {'steps/s':>8} {'speed-up':>8}")
    for batch_size, steps, seconds, rate in rows:
        print(f"{batch_size:>5} {steps:>9} {seconds:>8.2f} {rate:>8.1f} {rate / base:>7.1f}x")


if __name__ == "__main__":
    main()
