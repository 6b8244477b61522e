"""Sample efficiency of ArCHer vs PPO vs GRPO: env steps (training turns) until held-out success reaches a
threshold, on one of the demo's envs (RiverCrossing by default, or KeyDoor), from the same
behaviour-cloned TinyAgent (the demo's BC stage), over several seeds.

Budget (default): 2 seeds x 3 algorithms x at most 12 iterations x 32 episodes (an iteration takes
10-40 s on 2 CPU cores; a run stops early at the threshold)."""

from __future__ import annotations

import argparse
import copy
import shutil
import tempfile
import time

import numpy as np

from turngym.trainers.archer import ArcherConfig, ArcherTrainer
from turngym.trainers.bc import BCConfig, BCTrainer
from turngym.trainers.demo import DEMO_ENV, SETUPS, demo_setup
from turngym.trainers.grpo import GRPOConfig, GRPOTrainer
from turngym.trainers.ppo import PPOConfig, PPOTrainer

BASELINES = {
    "ppo": (PPOConfig, PPOTrainer, {"lr": 1e-4, "batch_size": 32, "ppo_epochs": 2, "kl_coef": 0.05}),
    "grpo": (
        GRPOConfig,
        GRPOTrainer,
        {"lr": 1e-4, "batch_size": 32, "group_size": 8, "ppo_epochs": 2, "kl_coef": 0.05},
    ),
}


def algorithms(setup: dict) -> dict:
    """ArCHer with the demo's config for the env, then the baselines (one eval cadence for all)."""
    archer = {k: v for k, v in setup["archer"].items() if k not in ("iterations", "eval_every")}
    return {"archer": (ArcherConfig, ArcherTrainer, archer), **BASELINES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=12, help="RL iterations per run at most")
    parser.add_argument("--threshold", type=float, default=0.8, help="held-out success to reach")
    parser.add_argument("--eval-every", type=int, default=2)
    parser.add_argument("--env", default=DEMO_ENV, choices=sorted(SETUPS))
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="turngym-bench-")
    setup = demo_setup(args.env)
    algos = algorithms(setup)
    shared = {**setup["shared"], "runs_dir": root, "tensorboard": False, "eval_every": args.eval_every}
    steps: dict[str, list[float]] = {name: [] for name in algos}
    start = time.perf_counter()
    for seed in range(args.seeds):
        bc = BCTrainer(BCConfig(**{**shared, **setup["bc"], "seed": seed, "run_name": f"bc-{seed}"}))
        bc.train()
        bc_success = bc.run.metrics()[-1]["eval/success_rate"]
        for name, (config_cls, trainer_cls, params) in algos.items():
            config = config_cls(
                **{**shared, **params},
                seed=seed,
                run_name=f"{name}-{seed}",
                iterations=args.iterations,
                target_success=args.threshold,
            )
            history = trainer_cls(config, agent=copy.deepcopy(bc.agent)).train()
            hit = next(
                (m["charts/env_steps"] for m in history if m.get("eval/success_rate", 0) >= args.threshold),
                None,
            )
            if bc_success >= args.threshold:
                hit = 0
            steps[name].append(float("inf") if hit is None else hit)
            final = [m["eval/success_rate"] for m in history if "eval/success_rate" in m][-1]
            print(
                f"seed {seed} {name:6s} BC start {bc_success:.0%} -> final {final:.0%}; steps to "
                f"{args.threshold:.0%}: {'not reached' if hit is None else hit}",
                flush=True,
            )
    print(
        f"\nenv steps to reach {args.threshold:.0%} held-out success on {args.env} from a BC "
        f"TinyAgent ({args.seeds} seeds, at most {args.iterations} iterations x 32 episodes each)"
    )
    print(f"{'algorithm':10s} {'median steps':>12s} {'reached':>8s} {'ratio to ArCHer':>16s}")
    archer = float(np.median(steps["archer"]))
    for name, values in steps.items():
        median = float(np.median(values))
        reached = sum(np.isfinite(values))
        ratio = (
            median / archer if np.isfinite(archer) and archer > 0 and np.isfinite(median) else float("nan")
        )
        shown = "inf" if not np.isfinite(median) else f"{median:.0f}"
        print(f"{name:10s} {shown:>12s} {reached:>5d}/{len(values)} {ratio:>16.2f}")
    print(f"total wall time {time.perf_counter() - start:.0f} s")
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
