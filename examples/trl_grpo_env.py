"""Train on a TurnGym env with TRL's `GRPOTrainer`: whole multi-turn episodes through `rollout_func`.

    pip install -e ".[trl]"      # on CPU: pip install torch==2.13.0 first
    python examples/trl_grpo_env.py --tiny     # seconds: a tiny model from a config, 2 GRPO steps on CPU
    python examples/trl_grpo_env.py --model Qwen/Qwen2.5-0.5B-Instruct --steps 200   # a real run (GPU)

1. `prompt_dataset` makes TRL's prompt dataset from KeyDoor's train tasks: each prompt is what
   TurnGym's rollout shows at turn 0 (the rules as the system message, the first observation as
   the user message).
2. With `--tiny`, a random one-block Llama with a word-level tokenizer and Qwen3's chat template
   (`save_tiny_qwen`, nothing downloaded). It never opens a door, so every reward is 0 and GRPO's
   advantages are 0: the run shows the path, not learning. `--warmup-steps N` first trains it by
   behaviour cloning on expert episodes (TurnGym's BC loss).
3. `GRPOTrainer` trains with `rollout_func=EnvRollout(env_id)`: every prompt is played as a whole
   episode by `turngym.rollout` with the trainer's model, the observations masked from the loss,
   and `episode_reward` hands each episode's total reward to TRL.

Under `accelerate launch` (DDP, DeepSpeed; FSDP with vLLM) every process plays its own share of the prompts;
with `--vllm` TRL's colocated vLLM engine generates the actions, with `--vllm-server URL` a
`trl vllm-serve` server (all processes in lock step, turn by turn).
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
from pathlib import Path

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # rollout_func is marked experimental in TRL 1.16

import datasets
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.utils import logging as hf_logging
from trl import GRPOConfig, GRPOTrainer

import turngym
from turngym.agents import ExpertAgent
from turngym.agents.hf import HFAgent
from turngym.agents.tiny import env_texts
from turngym.integrations.trl import EnvRollout, episode_reward, prompt_dataset, save_tiny_qwen
from turngym.trainers.bc import BCConfig, bc_examples, bc_loss

ENV_ID = "turngym/KeyDoor-v0"


def warm_up(model, tokenizer, episodes: int, steps: int) -> None:
    """Behaviour cloning on expert episodes with TurnGym's BC loss (`turngym.trainers.bc`): a random
    model never opens a door, and GRPO learns nothing from groups whose rewards are all equal."""
    trajectories = turngym.rollout(ENV_ID, ExpertAgent(), episodes, split="train", seed=1_000)
    examples = bc_examples(trajectories, BCConfig())
    agent = HFAgent(model, tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    generator = random.Random(0)
    for _ in range(steps):
        loss = bc_loss(agent, generator.sample(examples, 16), BCConfig(), str(agent.device))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    print(f"BC warm-up: {steps} steps on {len(examples)} expert turns, loss {loss.item():.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tiny", action="store_true", help="a tiny model from a config, 2 GRPO steps (CPU, CI)"
    )
    parser.add_argument("--model", default=None, help="a chat model folder or hub id (not with --tiny)")
    parser.add_argument("--steps", type=int, default=2, help="GRPO steps")
    parser.add_argument(
        "--warmup-steps",
        type=int,
        default=0,
        help="with --tiny: behaviour-cloning steps on expert episodes first",
    )
    parser.add_argument("--vllm", action="store_true", help="generate with TRL's colocated vLLM engine")
    parser.add_argument(
        "--vllm-server", default=None, help="generate with a `trl vllm-serve` server at this URL instead"
    )
    parser.add_argument("--out", default=None, help="output folder (default: a temp dir)")
    args = parser.parse_args()
    if args.tiny == (args.model is not None):
        parser.error("give --tiny or --model")
    out = Path(args.out or tempfile.mkdtemp(prefix="turngym-trl-grpo-"))
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()

    if args.tiny:
        folder = save_tiny_qwen(env_texts(ENV_ID, 8), out / "tiny", hidden_size=64)
        model = AutoModelForCausalLM.from_pretrained(folder)
        tokenizer = AutoTokenizer.from_pretrained(folder)
        if args.warmup_steps:
            warm_up(model, tokenizer, episodes=64, steps=args.warmup_steps)
    else:
        model = AutoModelForCausalLM.from_pretrained(args.model)
        tokenizer = AutoTokenizer.from_pretrained(args.model)

    dataset = prompt_dataset(ENV_ID, 64 if args.tiny else None, split="train")
    print(f"prompt dataset: {dataset.num_rows} KeyDoor train tasks, columns {dataset.column_names}")
    rollout_func = EnvRollout(ENV_ID, max_turns=4, max_new_tokens=16)
    config = GRPOConfig(
        output_dir=str(out / "grpo"),
        max_steps=args.steps,
        per_device_train_batch_size=8,
        num_generations=8,  # one group: 8 episodes of one task and seed
        max_completion_length=16,
        learning_rate=1e-4 if args.tiny else 1e-6,
        temperature=1.0,
        logging_steps=1,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        use_cpu=args.tiny,
        bf16=not args.tiny,
        use_vllm=args.vllm or args.vllm_server is not None,
        vllm_mode="server" if args.vllm_server else "colocate",
        vllm_server_base_url=args.vllm_server,
        seed=0,
    )
    trainer = GRPOTrainer(
        model=model,
        reward_funcs=episode_reward,
        args=config,
        train_dataset=dataset,
        processing_class=tokenizer,
        rollout_func=rollout_func,
    )
    trainer.train()
    for log in trainer.state.log_history:
        if "reward" in log:
            print(
                f"GRPO step {log['step']}: episode reward {log['rewards/episode_reward/mean']:.3f} "
                f"(std {log['reward_std']:.3f}), loss {log['loss']:.4f}, "
                f"{log['completions/mean_length']:.1f} policy tokens an episode"
            )
    last = rollout_func.last_trajectories
    print(
        f"last batch: {len(last)} episodes, {sum(t.success for t in last)} opened the right door, "
        f"{sum(t.num_turns for t in last) / len(last):.1f} turns on average"
    )
    print(f"actions of the last episode: {last[-1].actions}")
    trainer.save_model(str(out / "model"))
    print(f"model folder: {out / 'model'}")


if __name__ == "__main__":
    main()
