"""Seconds per training iteration: 2 processes (`turngym train --num-processes 2`: `accelerate launch`,
gloo on the CPU) vs 1 process, the same global batch (one process accumulates 2 minibatches, two
deal them one each), one torch thread per process. GRPO with a small TinyAgent on KeyDoor-v0.

Each run's iteration time is the median of its `charts/wall_time_s` steps over iterations 2..N
(iteration 1 also holds the eval at the start; the one eval at the end comes after the last step).
The two settings alternate, `--repeats` times each, and the ratio is of their medians. On CPU the
point is correctness (tests/trainers/test_distributed.py), not speed: two processes share this
machine's cores with everything else, and gloo all-reduces through memory.
Run: python bench/ddp.py [--iterations 5] [--episodes 16] [--repeats 3]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

KEYS = {
    "rollout_episodes": None,  # from --episodes
    "group_size": 4,
    "batch_size": 8,
    "ppo_epochs": 1,
    "tiny_layers": 1,  # a small policy: the machine's shared cores, not the model, set the pace
    "tiny_embd": 64,
    "history_window": 1,
    "max_new_tokens": 8,
    "max_turns": 6,
    "eval_episodes": 2,
    "eval_every": 1000,
    "save_every": 1000,
    "tensorboard": False,
    "torch_threads": 1,
    "seed": 0,
}


def seconds_per_iteration(processes: int, runs_dir: str, name: str, args: argparse.Namespace) -> float:
    keys = {
        **KEYS,
        "rollout_episodes": args.episodes,
        "iterations": args.iterations,
        "grad_accum_steps": 2 // processes,  # the same global batch: 2 minibatches per step
        "runs_dir": runs_dir,
        "run_name": name,
    }
    command = [sys.executable, "-m", "turngym.cli", "train", "grpo", "turngym/KeyDoor-v0", "--quiet"]
    command += [f"--set={key}={value}" for key, value in keys.items()]
    command += ["--num-processes", str(processes)] if processes > 1 else []
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, env={**os.environ, "OMP_NUM_THREADS": "1"})
    lines = (Path(runs_dir) / name / "metrics.jsonl").read_text().splitlines()
    clock = [json.loads(line)["charts/wall_time_s"] for line in lines]  # iteration 0 (eval), 1..N
    return statistics.median(b - a for a, b in itertools.pairwise(clock[1:]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--episodes", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    times: dict[int, list[float]] = {1: [], 2: []}
    with tempfile.TemporaryDirectory() as runs_dir:
        for repeat in range(args.repeats):
            for processes in (1, 2):
                seconds = seconds_per_iteration(processes, runs_dir, f"p{processes}-r{repeat}", args)
                times[processes].append(seconds)
                print(f"repeat {repeat}: {processes} process(es): {seconds:.3f} s/iteration", flush=True)
    one, two = statistics.median(times[1]), statistics.median(times[2])
    print(
        f"GRPO KeyDoor, {args.episodes} episodes/iteration, median of {args.repeats}: 1 process {one:.3f} s, "
        f"2 processes {two:.3f} s per iteration; 2 / 1 = {two / one:.2f}"
    )


if __name__ == "__main__":
    main()
