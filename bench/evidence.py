"""Does it learn? Issue 40's evidence table: one BC start per env and seed, then each RL arm from it at
the same env-step budget, a real model through the CLI as a user runs it.

Per env and seed: `turngym train bc` (SmolLM2-135M-Instruct + LoRA r=8 by default) on a few expert
episodes, a budget chosen so that BC leaves room; then every arm continues from that BC run
(`init_from=`) until its env steps reach `--env-steps` (`max_env_steps`), and is evaluated on
`--episodes` held-out test tasks (the run's own last eval) and, by `turngym eval --split train`, on as
many training tasks (train vs held-out: a policy that memorised its training tasks shows it). BC's row
is its run's last eval, on the same held-out tasks, and the same train-split eval.

Arms (`ARMS`; each at its trainer's defaults but for the learning rate, shared by all):
- `grpo`: GRPO, groups of 4, outcome reward;
- `ppo`: PPO with its turn-level critic;
- `archer`: ArCHer with the paper's kind of critic, a pretrained LM body (`critic_model=` the policy's
  base model; the paper's is roberta-base, a download) fine-tuned with its heads as the official
  trainer does (`critic_loss` with `detach_model=False`), official `critic_lr` 1e-5, one critic-only
  warm-up iteration (the official 20 of 2,000; the default 20 would outlast this budget);
- `gigpo`, `spa`: GRPO with GiGPO's step groups / SPA-RL's progress rewards (`credit=`);
- `agent_r`: Agent-R's reflection data, trained with SFT on revised trajectories.

The table, per env: held-out success pooled over seeds with its 95% Wilson interval, train-split
success, the mean lift over BC (arm - BC per seed) with a 95% t interval over seeds, env steps spent
and wall seconds per iteration. Its caption states every recipe setting that changes the task (turn
cap, history window, decoding). Every finished run is appended to `--out` (JSON lines) at once and
kept: a rerun skips what is there, so a cut-short bench loses nothing (`--table-from` prints the table
of such a file).

    OMP_NUM_THREADS=1 python bench/evidence.py --envs KeyDoor --arms grpo,gigpo --seeds 0   # a slice
    python bench/evidence.py                       # the whole table: CPU-days; a GPU machine's job
    python bench/evidence.py --tiny --out /tmp/e.jsonl   # the pipeline in a minute (tiny random Llama)
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from intervals import percent_interval, t_interval

from turngym.engine.eval import wilson_interval
from turngym.storage import JsonlWriter

# Settings that change the task or its decoding, per env: stated in the table's caption. BC budgets
# are small on purpose: a BC start that already solves the env leaves RL nothing to show.
RECIPES: dict[str, dict[str, Any]] = {
    "KeyDoor": dict(max_turns=6, history_window=2, max_new_tokens=12, expert_episodes=24, epochs=1),
    "HouseholdEasy": dict(max_turns=16, history_window=2, max_new_tokens=16, expert_episodes=8, epochs=1),
    "GuessMyCity": dict(max_turns=10, history_window=None, max_new_tokens=16, expert_episodes=16, epochs=1),
    "WebShop": dict(max_turns=10, history_window=2, max_new_tokens=48, expert_episodes=8, epochs=1),
}
TASK_KEYS = ("max_turns", "history_window", "max_new_tokens")
ARMS: dict[str, tuple[str, dict[str, Any]]] = {
    "grpo": ("grpo", {"group_size": 4}),
    "ppo": ("ppo", {}),
    # the official warm-up is 20 of 2,000 iterations: at this budget (~4 iterations) the default 20 would
    # leave the policy untouched, a null by construction; 1 of ~4, as the demo's 3 of 12
    "archer": ("archer", {"critic_model": "{model}", "critic_lr": 1e-5, "warmup_iterations": 1}),
    "gigpo": ("grpo", {"group_size": 4, "credit": "gigpo"}),
    "spa": ("grpo", {"group_size": 4, "credit": "spa"}),
    "agent_r": ("agent_r", {}),
}


def cli(*args: Any) -> list[str]:
    return [sys.executable, "-m", "turngym.cli", *map(str, args)]


def sets(values: dict[str, Any]) -> list[str]:
    return [a for k, v in values.items() if v is not None for a in ("--set", f"{k}={v}")]


def call(command: list[str], log: Path) -> float:
    """Run a CLI command with its output in `log`; its wall seconds. A failure raises with the log's end."""
    print("$", " ".join(command), flush=True)
    start = time.perf_counter()
    with log.open("w") as out:
        done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT)
    if done.returncode != 0:
        raise SystemExit(f"failed ({done.returncode}): see {log}\n{log.read_text()[-1500:]}")
    return time.perf_counter() - start


def metrics(run_dir: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def seconds_per_iteration(rows: list[dict[str, Any]]) -> float:
    """Mean wall seconds of an iteration's rollouts and update. `charts/wall_time_s` is read before an
    iteration's eval, so an iteration's span is clean unless the row before it ran an eval (nan if none is)."""
    times, previous = [], {"charts/wall_time_s": 0.0}
    for row in rows:
        if row["iteration"] > 0 and "eval/success_rate" not in previous:
            times.append(row["charts/wall_time_s"] - previous["charts/wall_time_s"])
        previous = row
    return float(np.mean(times)) if times else float("nan")


def split_success(
    env_id: str, agent: Path, episodes: int, split: str, out: Path, log: Path
) -> dict[str, Any]:
    """`turngym eval` of a saved agent on `episodes` tasks of `split`, as the run's evals play."""
    if not out.exists():
        call(cli("eval", env_id, "--agent", agent, "--episodes", episodes, "--split", split, "--quiet",
                 "--out", out), log)  # fmt: skip
    return json.loads(out.read_text())["overall"]


def record(
    env: str, seed: int, arm: str, run_dir: Path, args: argparse.Namespace, work: Path
) -> dict[str, Any]:
    env_id = f"turngym/{env}-v0"
    rows = metrics(run_dir)
    last = rows[-1]  # the run's last iteration evaluated on `--episodes` held-out tasks
    train = split_success(env_id, run_dir / "agent", args.episodes, "train", run_dir / "eval-train.json",
                          work / f"{run_dir.name}-train.log")  # fmt: skip
    return {
        "env": env, "seed": seed, "arm": arm, "model": args.model,
        "held_out": last["eval/success_rate"], "held_out_tasks": last["eval/episodes"],
        "held_out_successes": round(last["eval/success_rate"] * last["eval/episodes"]),
        "train": train["success_rate"], "train_tasks": train["episodes"],
        "env_steps": last.get("charts/env_steps", 0), "iterations": last["iteration"],
        "s_per_iteration": seconds_per_iteration(rows), "recipe": {k: RECIPES[env][k] for k in TASK_KEYS},
    }  # fmt: skip


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    out = Path(args.out)
    done = {(r["env"], r["seed"], r["arm"]) for r in load(out)}
    runs = Path(args.runs_dir)
    work = runs / "logs"
    work.mkdir(parents=True, exist_ok=True)
    for env in args.envs:
        recipe = RECIPES[env]
        env_id = f"turngym/{env}-v0"
        task = {k: recipe[k] for k in TASK_KEYS}
        for seed in args.seeds:
            common = {"runs_dir": runs, "seed": seed, "eval_episodes": args.episodes, "batch_size": 8,
                      "tensorboard": "false", "progress": "false", **task}  # fmt: skip
            bc_run = runs / f"bc-{env}-v0-s{seed}"
            if not (bc_run / "agent" / "turngym_agent.json").exists():
                call(cli("train", "bc", env_id, *sets({**common, **args.model_sets, "lr": args.bc_lr,
                         "epochs": recipe["epochs"], "expert_episodes": recipe["expert_episodes"],
                         "eval_at_start": "false"})), work / f"bc-{env}-s{seed}.log")  # fmt: skip
            if (env, seed, "bc") not in done:
                append(out, record(env, seed, "bc", bc_run, args, work))
            for arm in args.arms:
                if (env, seed, arm) in done:
                    continue
                algo, extra = ARMS[arm]
                extra = {
                    k: (v.format(model=args.model) if isinstance(v, str) else v) for k, v in extra.items()
                }
                name = f"{arm}-{env}-v0-s{seed}"
                call(cli("train", algo, env_id, *sets({**common, **extra, "run_name": name, "init_from": bc_run,
                         "lr": args.rl_lr, "rollout_episodes": args.rollout_episodes, "iterations": 10_000,
                         "max_env_steps": args.env_steps, "eval_every": 10_000, "save_every": 10_000,
                         "eval_at_start": "false"})), work / f"{name}.log")  # fmt: skip
                append(out, record(env, seed, arm, runs / name, args, work))
    return load(out)


def append(path: Path, row: dict[str, Any]) -> None:
    with JsonlWriter(path) as writer:
        writer.write(row)
    print(json.dumps(row), flush=True)


def load(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def table(records: list[dict[str, Any]]) -> str:
    """The markdown table, one block per env, BC first, with the recipe in each block's caption."""
    lines = []
    for env in dict.fromkeys(r["env"] for r in records):
        rows = [r for r in records if r["env"] == env]
        seeds = sorted({r["seed"] for r in rows})
        recipe = rows[0]["recipe"]
        window = recipe["history_window"]
        lines += [
            "",
            f"**{env}** ({rows[0]['model']} + LoRA r=8; seeds {', '.join(map(str, seeds))}; turn cap "
            f"{recipe['max_turns']}, history window {'whole episode' if window is None else window}, "
            f"{recipe['max_new_tokens']} new tokens, greedy evals; train-split success on as many train tasks)",
            "",
            "| arm | held-out success [95% Wilson] | train success | lift over BC [95% t, seeds] | env steps | s / iteration |",
            "|---|---|---|---|---|---|",
        ]  # fmt: skip
        bc = {r["seed"]: r for r in rows if r["arm"] == "bc"}
        for arm in dict.fromkeys(r["arm"] for r in rows):
            mine = [r for r in rows if r["arm"] == arm]
            wins, n = sum(r["held_out_successes"] for r in mine), sum(r["held_out_tasks"] for r in mine)
            low, high = wilson_interval(wins, n)
            train = np.mean([r["train"] for r in mine])
            lifts = [r["held_out"] - bc[r["seed"]]["held_out"] for r in mine if r["seed"] in bc]
            lift = (
                "-"
                if arm == "bc"
                else f"{np.mean(lifts):+.1%} {percent_interval(*t_interval(lifts), '+', 1)}"
            )
            steps = np.mean([r["env_steps"] for r in mine])
            speeds = [r["s_per_iteration"] for r in mine if not math.isnan(r["s_per_iteration"])]
            speed = float(np.mean(speeds)) if speeds and arm != "bc" else math.nan
            lines.append(
                f"| {arm} | {wins / n:.1%} [{low:.1%}, {high:.1%}] | {train:.1%} | {lift} | {steps:,.0f} "
                f"| {'-' if math.isnan(speed) else f'{speed:.0f}'} |"
            )
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--envs", default=",".join(RECIPES), help=f"of {', '.join(RECIPES)}")
    parser.add_argument("--arms", default=",".join(ARMS), help=f"of {', '.join(ARMS)}")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--model", default="smollm2", help="the policy's base model (`model=`)")
    parser.add_argument("--episodes", type=int, default=100, help="held-out (and train) tasks per eval")
    parser.add_argument("--env-steps", type=int, default=400, help="each arm's env-step budget")
    parser.add_argument("--rollout-episodes", type=int, default=16)
    parser.add_argument("--bc-lr", type=float, default=1e-3)
    parser.add_argument("--rl-lr", type=float, default=5e-5)
    parser.add_argument("--runs-dir", default="runs/evidence")
    parser.add_argument("--out", default="runs/evidence/evidence.jsonl")
    parser.add_argument("--table-from", help="print the table of this JSONL file and exit")
    parser.add_argument(
        "--tiny", action="store_true", help="a tiny random Llama, 4 episodes: the pipeline only"
    )
    return parser


def main() -> None:
    args = build_parser().parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    if args.table_from:
        print(table(load(Path(args.table_from))))
        return
    args.envs, args.arms = args.envs.split(","), args.arms.split(",")
    args.seeds = [int(s) for s in args.seeds.split(",")]
    unknown = [e for e in args.envs if e not in RECIPES] + [a for a in args.arms if a not in ARMS]
    if unknown:
        raise SystemExit(f"unknown env or arm {unknown}: envs are {list(RECIPES)}, arms {list(ARMS)}")
    args.model_sets = {"model": args.model, "lora_r": 8}
    if args.tiny:
        from turngym.agents.tiny import save_tiny_llama

        if args.envs != ["KeyDoor"]:
            raise SystemExit("--tiny runs KeyDoor only (the tiny model's vocabulary is KeyDoor's)")
        args.model = save_tiny_llama("turngym/KeyDoor-v0", Path(tempfile.mkdtemp()) / "tiny-llama")
        args.model_sets = {"model": args.model, "lora_r": 8}
        args.episodes, args.rollout_episodes, args.env_steps = 4, 4, 8
    print(table(run(args)))


if __name__ == "__main__":
    main()
