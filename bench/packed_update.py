"""Packed vs per-turn update step: one GRPO update (old log-probs + ppo_epochs passes of clipped-surrogate
gradient steps, `GRPOTrainer.iteration` with its rollouts replaced by fixed episodes) with
`pack_episodes` off and on, on RiverCrossing (20-turn episodes) and KeyDoor, for the TinyAgent (and a
tiny Llama with a Llama-3-style chat template with --models llama).

The "full logits" arm is per-turn scoring with the LM head run over every position, as before
(`token_logprobs`); every other arm computes logits at the action tokens only. Minibatches are drawn
two ways: `batch_size` turns at random (`minibatch_episodes=0`, the default: a minibatch holds
about batch_size / episodes turns of each episode, which packing can share) and whole
episodes (`minibatch_episodes=2`: each episode one row when packed). Timings
are interleaved (the arms take turns, `--repeats` rounds) and the median is reported, on one torch
thread; peak RSS of each arm comes from a child process that runs that arm's update once.

Run: python bench/packed_update.py [--models tiny llama]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

import turngym
from turngym.agents.scripted import ExpertAgent, RandomAgent

ENVS = {"river": "turngym/RiverCrossing-v0", "keydoor": "turngym/KeyDoor-v0"}
LLAMA_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>\n\n"
    "{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)


class LooksAndExpert:
    """The expert's 10 crossings with 10 `look`s mixed in at places drawn from the episode's seed:
    RiverCrossing episodes of exactly 20 turns (its turn limit) that differ from each other early
    (all looks first would make the first 10 turns of many episodes the same token ids, which pack
    across episodes and flatter packing)."""

    name = "looks-and-expert"

    def __init__(self, looks: int = 10, crossings: int = 10) -> None:
        self.looks, self.crossings = looks, crossings

    def act(self, conversations: Sequence[Any], episodes: Sequence[Any] | None = None) -> list[str]:
        actions = []
        for e in episodes or ():
            plan = ["look"] * self.looks + ["expert"] * (self.crossings - 1)
            random.Random(e.seed).shuffle(plan)
            plan.append("expert")  # the last crossing ends the episode
            step = plan[len(e.actions)]
            actions.append("look" if step == "look" else e.env.unwrapped.expert_action())
        return actions


def episodes(env_key: str, count: int) -> list[turngym.Trajectory]:
    env_id = ENVS[env_key]
    if env_key == "river":
        return turngym.rollout(env_id, LooksAndExpert(), count, seed=0)
    half = count // 2  # KeyDoor: expert (2-3 turns) and random (up to its 8-turn limit) episodes
    return turngym.rollout(env_id, ExpertAgent(), half, seed=0) + turngym.rollout(
        env_id, RandomAgent(), count - half, seed=1
    )


def make_agent(env_key: str, model: str) -> Any:
    from turngym.agents.hf import HFAgent
    from turngym.agents.tiny import TinyAgent, TinyConfig, env_texts, word_tokenizer

    env_id = ENVS[env_key]
    if model == "tiny":  # the trainers' default policy: TrainConfig's tiny_* (2 x 64)
        return TinyAgent.from_env(env_id, TinyConfig(n_layer=2, n_embd=64, n_head=2, n_positions=1024))
    import transformers

    tokenizer = word_tokenizer([*env_texts(env_id, 8), "system\nuser\nassistant"])
    specials = ["<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    tokenizer.add_special_tokens({"additional_special_tokens": specials}, replace_extra_special_tokens=False)
    tokenizer.eos_token, tokenizer.bos_token = "<|eot_id|>", "<|begin_of_text|>"
    tokenizer.chat_template = LLAMA_TEMPLATE
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return HFAgent(transformers.LlamaForCausalLM(config), tokenizer, max_context_tokens=4000)


ARMS = {  # name: (pack_episodes, minibatch_episodes, logits at every position as before packing.py)
    "per-turn, full logits": (False, 0, True),
    "per-turn": (False, 0, False),
    "packed": (True, 0, False),
    "per-turn, episode minibatches": (False, 2, False),
    "packed, episode minibatches": (True, 2, False),
}


class Update:
    """A GRPO trainer whose `rollouts` returns fixed episodes: `run()` is one update step."""

    def __init__(self, env_key: str, model: str, arm: str, trajectories: list, runs_dir: str) -> None:
        from turngym.trainers.grpo import GRPOConfig, GRPOTrainer

        pack, per_minibatch, full_logits = ARMS[arm]
        config = GRPOConfig(
            env_id=ENVS[env_key],
            runs_dir=runs_dir,
            run_name=f"{env_key}-{model}-{arm.replace(' ', '_').replace(',', '')}",
            rollout_episodes=len(trajectories),
            group_size=8,
            batch_size=32,
            ppo_epochs=2,
            pack_episodes=pack,
            minibatch_episodes=per_minibatch,
            tensorboard=False,
            progress=False,
        )
        self.trainer = GRPOTrainer(config, make_agent(env_key, model))
        self.trainer.rollouts = lambda iteration: trajectories  # type: ignore[method-assign]
        if full_logits:  # the LM head over every position of every row, as token_logprobs computes it
            from turngym.trainers.common.packing import _PLAIN_HEAD

            _PLAIN_HEAD[self.trainer.agent.model] = False
        self.state = {k: v.clone() for k, v in self.trainer.agent.model.state_dict().items()}
        self.iteration = 0

    def run(self) -> float:
        """Seconds of one update from the same starting weights."""
        self.trainer.agent.model.load_state_dict(self.state)
        self.iteration += 1
        start = time.perf_counter()
        self.trainer.iteration(self.iteration)
        return time.perf_counter() - start


def peak_rss_mib() -> float:
    """This process's peak RSS: VmHWM, which starts afresh at exec (getrusage's ru_maxrss keeps the
    parent's peak across fork + exec, so every child would report the parent's)."""
    status = Path("/proc/self/status")
    for line in status.read_text().splitlines() if status.exists() else ():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: an upper bound


def child(env_key: str, model: str, arm: str, count: int) -> None:
    """One update of one arm in this process, then its peak RSS (MiB) on stdout as JSON."""
    torch.set_num_threads(1)
    trajectories = episodes(env_key, count)
    with tempfile.TemporaryDirectory() as runs_dir:
        update = Update(env_key, model, arm, trajectories, runs_dir)
        before = peak_rss_mib()
        update.run()
    print(json.dumps({"peak_rss_mib": peak_rss_mib(), "before_mib": before}))


def peak_rss(env_key: str, model: str, arm: str, count: int) -> str:
    """Peak RSS (MiB) of a child running one update of the arm, and (+) what the update added to it."""
    out = subprocess.run(
        [sys.executable, __file__, "--child", env_key, model, arm, "--episodes", str(count)],
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return f"{result['peak_rss_mib']:.0f} (+{result['peak_rss_mib'] - result['before_mib']:.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--envs", nargs="+", default=list(ENVS), choices=list(ENVS))
    parser.add_argument(
        "--models",
        nargs="+",
        default=["tiny"],
        choices=["tiny", "llama"],
        help="llama: 2 x 64, Llama-3 template",
    )
    parser.add_argument("--no-rss", action="store_true", help="skip the peak-RSS child processes")
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS), help="(default: all)")
    parser.add_argument("--child", nargs=3, metavar=("ENV", "MODEL", "ARM"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child, args.episodes)
        return
    torch.set_num_threads(1)
    print(
        f"GRPO update (old log-probs + 2 epochs, batch_size 32, group 8) on {args.episodes} episodes, "
        f"median of {args.repeats} interleaved rounds, torch threads 1, load average {os.getloadavg()[0]:.2f}"
    )
    header = f"{'env':<14} {'model':<6} {'turns':>5} {'arm':<30} {'rows/turns':>10} {'update s':>9} {'vs per-turn':>11} {'peak RSS MiB (+update)':>22}"
    print(header)
    for env_key in args.envs:
        trajectories = episodes(env_key, args.episodes)
        turns = sum(t.num_turns for t in trajectories)
        for model in args.models:
            with tempfile.TemporaryDirectory() as runs_dir:
                updates = {arm: Update(env_key, model, arm, trajectories, runs_dir) for arm in args.arms}
                times: dict[str, list[float]] = {arm: [] for arm in args.arms}
                for _ in range(args.repeats):
                    for arm, update in updates.items():
                        times[arm].append(update.run())
                rows = rows_per_turn(next(iter(updates.values())).trainer, trajectories)
            median = {arm: statistics.median(values) for arm, values in times.items()}
            for arm in args.arms:
                base = median.get("per-turn, episode minibatches" if "episode" in arm else "per-turn", 0.0)
                rss = "" if args.no_rss else peak_rss(env_key, model, arm, args.episodes)
                packing = rows if ARMS[arm][0] else "1"
                print(
                    f"{env_key:<14} {model:<6} {turns:>5} {arm:<30} {packing:>10} {median[arm]:>9.2f} "
                    f"{base / median[arm]:>10.2f}x {rss:>22}",
                    flush=True,
                )


def rows_per_turn(trainer: Any, trajectories: list) -> str:
    """Rows over turns when all the episodes' turns are packed (the old log-probs pass)."""
    from turngym.trainers.common.packing import pack_turns
    from turngym.trainers.common.replay import transitions

    turns = [x for t in trajectories for x in transitions(t)]
    batch = pack_turns(trainer.agent, [x.state for x in turns], [x.action for x in turns])
    return f"{batch.num_rows / len(turns):.3f}"


if __name__ == "__main__":
    main()
