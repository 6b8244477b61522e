"""The papers' comparisons at GPU scale (issue 40), each arm a `turngym train` run in a process of its own.

- `archer`: ArCHer's paper (Zhou et al., 2024), its Twenty Questions / Guess My City comparison: ArCHer
  (critic on a pretrained encoder, `critic_model=`, as the paper's roberta-base critic), PPO and online
  filtered BC (`filtered_bc`, the paper's baseline: imitate the top 10% of the policy's own episodes),
  each from the same behaviour-cloned start (the paper starts every method from one SFT checkpoint);
  held-out (here: train-list, as the paper scores its one word list) success against env steps.
- `gigpo`: GiGPO's ALFWorld comparison (Feng et al., 2025; verl-agent): GRPO + GiGPO (`credit=gigpo`) vs
  GRPO (verl-agent's: group statistics over steps, invalid-action penalty 0.1) on TurnGym's household
  env, both from the same model (verl-agent starts from Qwen2.5-1.5B-Instruct, no SFT).

Sizes:
- default (the smoke run, about 8 minutes on one H100; the machine has no network): random-init
  models (Llama's architecture) shaped like the papers' policies (GPT-2 124M for `archer`, Qwen2.5-0.5B for `gigpo`) with a
  word tokenizer over the envs' text padded to the real vocabulary (`bench/gpu_check.py build_model`),
  Guess My City and HouseholdEasy, 2 iterations of 32 episodes per arm. A random model does not learn in
  minutes: the smoke checks the pipeline end to end and measures time and GPU memory, not success.
- `--full`: the papers' budgets (`FULL` below, each value with the config file it comes from) with
  real models (`--model`, `--critic-model`: hub ids or folders; the defaults need the network).
- `--tiny`: the same steps with a 2-layer model and 1 iteration of 8 episodes, on CPU in a minute (tested).

Every eval point is one JSON line in `--out` as soon as the run logs it (a kill loses nothing
measured), each arm's time, env steps and the device's peak memory (`nvidia-smi`) when it ends, and a
markdown table (`--out` with `.md`) at the end: success at equal env-step budgets with the Wilson
intervals `turngym.evaluate` gives (`eval/ci_low`, `eval/ci_high` in metrics.jsonl), and each arm's
curve points. No arm starts past `--budget-s`; one that would is listed as skipped.

    python bench/paper_check.py --out $OUT/paper_check.jsonl               # the smoke, on a GPU machine
    python bench/paper_check.py --tiny --out /tmp/paper_check.jsonl        # CPU: the same steps, tiny
    python bench/paper_check.py --full --comparisons archer --envs turngym/TwentyQuestions-v0 --out pc.jsonl
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from gpu_check import SHAPES, DevicePeak, build_model, recorder

# GPT-2 (124M)'s sizes (config.json of openai-community/gpt2: 12 layers, 768 wide, 12 heads, 50,257
# tokens), the policy of ArCHer's paper (`policy_lm: "gpt2"` in scripts/config/default.yaml)
PAPER_SHAPES: dict[str, dict[str, Any]] = {
    **SHAPES,
    "gpt2-124m": dict(
        hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
        num_key_value_heads=12, vocab_size=50257, tie_word_embeddings=True,
    ),
}  # fmt: skip

SIZES = ("tiny", "smoke", "full")
COMPARISONS: dict[str, dict[str, Any]] = {
    "archer": {
        "title": "ArCHer vs PPO vs online filtered BC (ArCHer's paper)",
        "envs": {"tiny": ["turngym/GuessMyCity-v0"], "smoke": ["turngym/GuessMyCity-v0"],
                 "full": ["turngym/TwentyQuestions-v0", "turngym/GuessMyCity-v0"]},
        "shape": {"tiny": "tiny", "smoke": "gpt2-124m"},
        "model": "openai-community/gpt2",  # --full default (ArCHer's `policy_lm: "gpt2"`)
        "critic_model": "FacebookAI/roberta-base",  # --full default (ArCHer's `critic_lm: "roberta-base"`)
        "start": "bc",
        "arms": {"archer": "archer", "ppo": "ppo", "filtered_bc": "filtered_bc"},
    },
    "gigpo": {
        "title": "GRPO + GiGPO vs GRPO (GiGPO's ALFWorld comparison)",
        "envs": {"tiny": ["turngym/HouseholdEasy-v0"], "smoke": ["turngym/HouseholdEasy-v0"],
                 "full": ["turngym/Household-v0"]},
        "shape": {"tiny": "tiny", "smoke": "qwen2.5-0.5b"},
        "model": "Qwen/Qwen2.5-1.5B-Instruct",  # --full default (verl-agent's run_alfworld.sh)
        "start": None,
        "arms": {"gigpo": "grpo", "grpo": "grpo"},
    },
}  # fmt: skip

# ---- the settings, per size -------------------------------------------------------------------------
# ArCHer's official values: github.com/YifeiZhou02/ArCHer scripts/config/default.yaml (what every config
# extends), archer_20q.yaml, archer_city.yaml, online_filteredbc_20q.yaml. verl-agent's:
# examples/gigpo_trainer/run_alfworld.sh and examples/grpo_trainer/run_alfworld.sh (read at the copy
# vanzll/verl-agent 3553474; the repository langfengQ/verl-agent itself was not reachable here) and
# verl/trainer/config/ppo_trainer.yaml.
QUIET = {"tensorboard": "false", "progress": "false", "keep_checkpoints": "1"}
ARCHER_SHARED = {
    "tiny": {"eval_split": "train", "eval_every": 1, "eval_episodes": 4, "rollout_episodes": 8,
             "iterations": 1, "max_turns": 3, "max_new_tokens": 4, "batch_size": 8},
    "smoke": {"eval_split": "train", "eval_every": 1, "eval_episodes": 32, "rollout_episodes": 32,
              "iterations": 2, "max_new_tokens": 16, "batch_size": 32, "lr": 1e-5},
    # rollout_size 128, eval_freq 25, iterations 2000, temperature 1.0, max_new_tokens 32 (default.yaml);
    # eval_size 32 there: 100 here, for intervals a comparison can read
    "full": {"eval_split": "train", "eval_every": 25, "eval_episodes": 100, "rollout_episodes": 128,
             "iterations": 2000, "max_new_tokens": 32, "temperature": 1.0, "batch_size": 8,
             "grad_accum_steps": 32},
}  # fmt: skip
BC_START = {
    "tiny": {"expert_episodes": 8, "epochs": 2, "lr": 1e-3},
    "smoke": {"expert_episodes": 64, "epochs": 2, "lr": 1e-4},
    # the paper's start is an SFT checkpoint on its shipped dialogues (dataset/*.json); here the env's expert
    "full": {"expert_episodes": 1024, "epochs": 3, "lr": 2e-5, "batch_size": 32, "grad_accum_steps": 1},
}
ARMS: dict[str, dict[str, dict[str, Any]]] = {
    "archer": {
        "tiny": {"critic_updates": 1, "actor_updates": 1, "warmup_iterations": 0},
        "smoke": {"critic_updates": 5, "actor_updates": 3, "warmup_iterations": 1, "critic_lr": 2e-5},
        # epochs 50, actor_epochs 3, batch 8 x grad_accum 32, capacity 100000, tau 0.1, gamma 0.95
        # (default.yaml); critic_lr 2e-5 (archer_20q/city.yaml); done at the turn limit (env_utils.py)
        "full": {"critic_updates": 50, "actor_updates": 3, "buffer_size": 100000, "tau": 0.1, "gamma": 0.95,
                 "critic_lr": 2e-5, "bootstrap_truncated": "false"},
    },
    # the paper's PPO is token-level PPO on the LM with a value head: the value on the policy's backbone
    "ppo": {
        "tiny": {"critic_backbone": "policy", "ppo_epochs": 1},
        "smoke": {"critic_backbone": "policy", "ppo_epochs": 2},
        "full": {"critic_backbone": "policy", "ppo_epochs": 4, "gamma": 0.95},
    },
    # online_filteredbc_20q.yaml keeps default.yaml's values: actor_epochs 3, batch 8 x 32, warmup_iter 20
    "filtered_bc": {
        "tiny": {"actor_updates": 1, "top_fraction": 0.1},
        "smoke": {"actor_updates": 3, "top_fraction": 0.1},
        "full": {"actor_updates": 3, "top_fraction": 0.1, "warmup_iterations": 20},
    },
    "gigpo": {size: {"credit": "gigpo"} for size in SIZES},
    "grpo": {size: {"credit": "outcome", "group_stats_over": "steps", "invalid_action_penalty": 0.1} for size in SIZES},
}  # fmt: skip
# per env in --full: ArCHer's lm_lr (policy) and warmup_iter differ between its two configs
ARCHER_FULL_ENV = {
    "turngym/TwentyQuestions-v0": {"lr": 1e-6, "warmup_iterations": 20},  # archer_20q.yaml
    "turngym/GuessMyCity-v0": {"lr": 1e-5, "warmup_iterations": 10},  # archer_city.yaml
}
GIGPO_SHARED = {
    "tiny": {"group_size": 4, "rollout_episodes": 8, "iterations": 1, "max_turns": 3, "max_new_tokens": 4,
             "history_window": 2, "eval_episodes": 4, "eval_every": 1, "batch_size": 8, "ppo_epochs": 1},
    "smoke": {"group_size": 8, "rollout_episodes": 32, "iterations": 2, "max_turns": 20, "max_new_tokens": 16,
              "history_window": 2, "eval_episodes": 32, "eval_every": 1, "batch_size": 32, "ppo_epochs": 1,
              "lr": 1e-6, "kl_coef": 0.01},
    # group_size 8 (env.rollout.n), 16 tasks x 8 = 128 episodes per step (train_data_size 16), 150 steps
    # (total_epochs), lr 1e-6, ppo_mini_batch_size 256 (32 x 8 here), ppo_epochs 1, weight decay 0.01,
    # KL loss 0.01 (kl_loss_coef; its low_var_kl is the k3 estimate TurnGym uses), max_steps 50,
    # max_response_length 512, history_length 2 (ppo_trainer.yaml), val_data_size 128, test_freq 5;
    # gamma 0.95 and step_advantage_w 1.0 (TurnGym's gigpo_* defaults); mode mean_std_norm (the script)
    "full": {"group_size": 8, "rollout_episodes": 128, "iterations": 150, "lr": 1e-6, "batch_size": 32,
             "grad_accum_steps": 8, "ppo_epochs": 1, "weight_decay": 0.01, "kl_coef": 0.01, "max_turns": 50,
             "max_new_tokens": 512, "history_window": 2, "eval_episodes": 128, "eval_every": 5,
             "gigpo_mode": "mean_std_norm", "gigpo_gamma": 0.95, "gigpo_step_weight": 1.0},
}  # fmt: skip


def arm_settings(comparison: str, arm: str, env_id: str, size: str) -> dict[str, Any]:
    """The `--set` values of one arm (the start's with arm="bc")."""
    if comparison == "archer":
        shared = dict(ARCHER_SHARED[size])
        if arm == "bc":  # BC counts epochs and plays no episodes
            del shared["iterations"], shared["rollout_episodes"]
            return {**shared, **BC_START[size]}
        settings = {**shared, **ARMS[arm][size]}
        if size == "full" and env_id in ARCHER_FULL_ENV:
            # ArCHer's lm_lr of the env for ArCHer and PPO (the paper's PPO settings are not in its
            # repository); filtered BC keeps default.yaml's 1e-5 (online_filteredbc_20q.yaml sets none)
            settings["lr"] = 1e-5 if arm == "filtered_bc" else ARCHER_FULL_ENV[env_id]["lr"]
            if arm == "archer":
                settings["warmup_iterations"] = ARCHER_FULL_ENV[env_id]["warmup_iterations"]
        return settings
    settings = {**GIGPO_SHARED[size], **ARMS[arm][size]}
    if arm != "gigpo":  # GiGPO's own keys stay off the GRPO arm's command line
        settings = {k: v for k, v in settings.items() if not k.startswith("gigpo_")}
    return settings


def metrics_records(path: Path, seen: int) -> tuple[list[dict[str, Any]], int]:
    """The complete lines of `path` past the first `seen`, and the new count."""
    if not path.exists():
        return [], seen
    lines = path.read_text().splitlines(keepends=True)
    complete = [line for line in lines if line.endswith("\n")]
    return [json.loads(line) for line in complete[seen:]], len(complete)


def run_arm(
    command: list[str], run_dir: Path, seconds: float, base: dict[str, Any], record: Any
) -> dict[str, Any]:
    """Run one `turngym train` for at most `seconds`, recording each eval point of its metrics.jsonl as
    it appears; the arm's summary (seconds, exit code, iterations, env steps, device peak)."""
    started = time.perf_counter()
    seen, iterations, env_steps = 0, 0, 0
    with DevicePeak() as peak, tempfile.TemporaryFile("w+") as stderr:
        run = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, text=True, env=os.environ)
        killed = threading.Event()

        def kill() -> None:
            killed.set()
            run.kill()

        timer = threading.Timer(seconds, kill)
        timer.start()
        while True:
            done = run.poll() is not None
            new, seen = metrics_records(run_dir / "metrics.jsonl", seen)
            for m in new:
                iterations = max(iterations, m["iteration"])
                env_steps = m.get("charts/env_steps", env_steps)
                if "eval/success_rate" in m:
                    record(
                        {
                            **base, "step": "eval", "iteration": m["iteration"], "env_steps": env_steps,
                            "success": m["eval/success_rate"], "ci_low": m["eval/ci_low"],
                            "ci_high": m["eval/ci_high"], "episodes": m["eval/episodes"],
                            "wall_s": round(time.perf_counter() - started, 1),
                        }
                    )  # fmt: skip
            if done:
                break
            time.sleep(0.5)
        timer.cancel()
        stderr.seek(0)
        tail = stderr.read()[-1500:]
    summary = {
        **base, "step": "arm", "seconds": round(time.perf_counter() - started, 1), "exit_code": run.returncode,
        "iterations": iterations, "env_steps": env_steps,
        "device_peak_gib": None if peak.peak is None else round(peak.peak, 1),
    }  # fmt: skip
    if killed.is_set():
        summary["error"] = "killed: the budget was spent (--budget-s)"
    elif run.returncode != 0:
        summary["error"] = tail
    return summary


def train_command(algo: str, env_id: str, settings: dict[str, Any]) -> list[str]:
    """`turngym train ALGO ENV --set k=v ...`, as a user runs it (`python -m turngym.cli`: the same
    command without relying on the console script being on PATH)."""
    command = [sys.executable, "-m", "turngym.cli", "train", algo, env_id, "--quiet"]
    for key, value in settings.items():
        command += ["--set", f"{key}={value}"]
    return command


def pct(value: float | None) -> str:
    return "" if value is None else f"{value:.0%}"


def cell(point: dict[str, Any] | None) -> str:
    if point is None:
        return "n/a"
    return (
        f"{pct(point['success'])} [{pct(point['ci_low'])}, {pct(point['ci_high'])}] @ {point['env_steps']:,}"
    )


def table(records: list[dict[str, Any]], size: str) -> str:
    """Per (comparison, env): success at equal env-step budgets, then each arm's run and curve."""
    out: list[str] = []
    groups = dict.fromkeys((r["comparison"], r["env"]) for r in records if "env" in r)
    for comparison, env_id in groups:
        rows = [r for r in records if r.get("comparison") == comparison and r.get("env") == env_id]
        arms = list(dict.fromkeys(r["arm"] for r in rows))
        rl = [a for a in arms if a != "bc"]
        evals = {a: [r for r in rows if r["arm"] == a and r["step"] == "eval"] for a in arms}
        reached = [max((p["env_steps"] for p in evals[a]), default=0) for a in rl if evals[a]]
        common = min(reached) if reached and len(reached) == len(rl) else 0
        budgets = sorted({0, *(round(common * k / 4) for k in (1, 2, 3, 4))}) if common else [0]
        name = env_id.removeprefix("turngym/")
        out += [f"### {COMPARISONS[comparison]['title']}: {name} ({size})", ""]
        out += [
            "Success [95% Wilson interval] @ env steps of the eval read: each arm's last eval at or below the budget.",
            "",
            "| env steps <= | " + " | ".join(rl) + " |",
            "|---|" + "---|" * len(rl),
        ]
        previous: list[Any] = []
        for budget in budgets:
            points = [max((p for p in evals[a] if p["env_steps"] <= budget), key=lambda p: p["env_steps"], default=None) for a in rl]  # fmt: skip
            if points != previous:  # a budget that reads the same evals as the one before adds nothing
                out.append(f"| {budget:,} | " + " | ".join(cell(p) for p in points) + " |")
            previous = points
        out += [
            "",
            "| arm | seconds | iterations | env steps | device peak GiB | exit | curve (env steps: success) |",
        ]
        out.append("|---|---|---|---|---|---|---|")
        for a in arms:
            ends = [r for r in rows if r["arm"] == a and r["step"] != "eval"]
            end = ends[-1] if ends else {}
            if a == "bc":  # BC plays its demonstrations once: its curve is over epochs
                curve = ", ".join(f"epoch {p['iteration']}: {pct(p['success'])}" for p in evals[a])
            else:
                curve = ", ".join(f"{p['env_steps']:,}: {pct(p['success'])}" for p in evals[a])
            if end.get("step") == "skipped":
                out.append(f"| {a} | skipped: {end.get('why', '')} | | | | | |")
                continue
            exit_code = f"{end.get('exit_code', '')}" + (
                " (budget)" if "budget" in end.get("error", "") else ""
            )
            out.append(
                f"| {a} | {end.get('seconds', '')} | {end.get('iterations', '')} | {end.get('env_steps', '')} | "
                f"{end.get('device_peak_gib') or ''} | {exit_code} | {curve} |"
            )
        out.append("")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="paper_check.jsonl")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--tiny", action="store_true", help="a 2-layer model, 1 iteration of 8 episodes: CPU")
    size.add_argument("--full", action="store_true", help="the papers' budgets (real models; days of GPU)")
    parser.add_argument("--comparisons", nargs="+", default=list(COMPARISONS), choices=list(COMPARISONS))
    parser.add_argument("--envs", nargs="+", default=None, help="instead of each comparison's envs")
    parser.add_argument(
        "--model", default=None,
        help="policy: random (built from the shape; default except --full), smollm2, or a folder / hub id",
    )  # fmt: skip
    parser.add_argument(
        "--shape",
        default=None,
        choices=sorted(PAPER_SHAPES),
        help="the random model's shape (default: per comparison)",
    )
    parser.add_argument(
        "--critic-model", default=None, help="ArCHer's critic encoder (default: see COMPARISONS)"
    )
    parser.add_argument("--iterations", type=int, default=None, help="override every arm's iterations")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget-s", type=float, default=450.0, help="no arm starts past this")
    parser.add_argument("--runs-dir", default="", help="keep the run folders here (default: removed)")
    args = parser.parse_args()
    size_name = "tiny" if args.tiny else "full" if args.full else "smoke"
    model = args.model or ("random" if size_name != "full" else "")
    deadline = time.monotonic() + args.budget_s
    out = Path(args.out)
    records, record = recorder(out)

    root = Path(args.runs_dir or tempfile.mkdtemp(prefix="paper-check-"))
    try:
        for comparison in args.comparisons:
            spec = COMPARISONS[comparison]
            envs = args.envs or spec["envs"][size_name]
            policy = model or spec["model"]
            critic = args.critic_model or spec.get("critic_model", "")
            if policy == "random":
                shape = args.shape or spec["shape"]["tiny" if args.tiny else "smoke"]
                started = time.perf_counter()
                # the vocabulary is the text of this many episodes per env (64: most cities and objects)
                vocab = 8 if args.tiny else 64
                folder = build_model(shape, root / f"model-{comparison}", envs, vocab, PAPER_SHAPES)
                record({"comparison": comparison, "step": "build", "shape": shape,
                        "seconds": round(time.perf_counter() - started, 1)})  # fmt: skip
                policy = str(folder)
                critic = args.critic_model or policy  # a random encoder of the policy's shape
            elif policy == "smollm2" and not args.critic_model:
                critic = "smollm2"
            for env_id in envs:
                run_env(comparison, env_id, size_name, policy, critic, args, root, deadline, record)
    finally:
        if not args.runs_dir:
            shutil.rmtree(root, ignore_errors=True)
    text = table(records, size_name)
    out.with_suffix(".md").write_text(text + "\n")
    print(text)


def run_env(
    comparison: str, env_id: str, size: str, policy: str, critic: str, args: argparse.Namespace,
    root: Path, deadline: float, record: Any,
) -> None:  # fmt: skip
    """The start (if the comparison has one), then each arm from it, on one env."""
    spec = COMPARISONS[comparison]
    steps: list[tuple[str, str]] = ([(spec["start"], spec["start"])] if spec["start"] else []) + list(
        spec["arms"].items()
    )
    start_dir: Path | None = None
    for arm, algo in steps:
        base = {"comparison": comparison, "env": env_id, "arm": arm, "algo": algo}
        left = deadline - time.monotonic()
        if left < 30:
            record({**base, "step": "skipped", "why": "budget spent"})
            continue
        if spec["start"] and arm != spec["start"] and start_dir is None:
            record({**base, "step": "skipped", "why": f"no {spec['start']} start"})
            continue
        name = f"{comparison}-{arm}-{env_id.rpartition('/')[2]}-s{args.seed}"
        settings = {
            **QUIET, **arm_settings(comparison, arm, env_id, size), "runs_dir": str(root), "run_name": name,
            "seed": args.seed,
        }  # fmt: skip
        if args.iterations is not None:
            settings["epochs" if algo == "bc" else "iterations"] = args.iterations
        if arm == spec["start"] or start_dir is None:
            settings["model"] = policy
        else:
            settings["init_from"] = str(start_dir)
        if algo == "archer":
            settings["critic_model"] = critic
        command = train_command(algo, env_id, settings)
        summary = run_arm(command, root / name, left, base, record)
        record({**summary, "command": shlex.join(["turngym", *command[3:]])})
        if arm == spec["start"] and summary["exit_code"] == 0:
            start_dir = root / name


if __name__ == "__main__":
    main()
