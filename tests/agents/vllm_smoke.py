"""VLLMAgent on a real model (SmolLM2-135M-Instruct): run by test_vllm_agent.py with a python that has vllm.

vLLM starts its engine process with spawn, so the engine must be built under a `__main__` guard in
a file (not inside pytest). Prints one line of measurements (`RESULT_MARKER` + JSON; vLLM logs to
stdout too); the test asserts on them.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time

RESULT_MARKER = "TURNGYM_VLLM_RESULT "

os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB of KV cache on CPU
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def log(message: str) -> None:
    print(f"[vllm_smoke {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def keydoor_conversations(n: int) -> list[list[dict[str, str]]]:
    import turngym
    from turngym.types import build_conversation

    env = turngym.make("turngym/KeyDoor-v0")
    instructions = env.get_wrapper_attr("instructions")
    return [build_conversation(instructions, [env.reset(seed=i)[0]], []) for i in range(n)]


def hf_logprobs(model, prompt_ids: list[int], token_ids: list[int]) -> list[float]:
    """Teacher-forced log-probs of `token_ids` after `prompt_ids` under a transformers model."""
    import torch

    ids = torch.tensor([prompt_ids + token_ids])
    with torch.no_grad():
        logits = model(ids).logits[0, len(prompt_ids) - 1 : -1].float()  # (T, V)
    return logits.log_softmax(-1).gather(-1, torch.tensor(token_ids)[:, None])[:, 0].tolist()


def main() -> None:
    import torch
    import transformers

    import turngym
    from turngym.agents import ExpertAgent
    from turngym.agents.hub import smollm2_path
    from turngym.agents.prompting import few_shot_messages
    from turngym.agents.sampling import SamplingConfig
    from turngym.agents.vllm import VLLMAgent

    result: dict = {}
    path = smollm2_path()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    reference = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).eval()
    conversations = keydoor_conversations(8)

    # A LoRA adapter that changes the model (random A and B), and the same change merged into the
    # weights: generating with the adapter and with the merged weights must agree.
    lora_dir = tempfile.mkdtemp(prefix="turngym-vllm-lora-")
    try:
        import peft
    except ImportError:
        peft = None
    merged = None
    if peft is not None:
        torch.manual_seed(0)
        base = transformers.AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        config = peft.LoraConfig(
            r=8, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False
        )
        lora_model = peft.get_peft_model(base, config)
        with torch.no_grad():  # strong enough to change most greedy replies
            for name, param in lora_model.named_parameters():
                if "lora_B" in name:
                    param.mul_(2.0)
        lora_model.save_pretrained(lora_dir)
        merged = lora_model.merge_and_unload()

    log("starting the engine")
    start = time.perf_counter()
    agent = VLLMAgent(
        path,
        sampling=SamplingConfig(temperature=0.0, max_new_tokens=16),
        enable_lora=peft is not None,
        max_lora_rank=8,
        dtype="float32",
        max_model_len=1024,
        enforce_eager=True,
        seed=0,
    )
    result["engine_start_s"] = round(time.perf_counter() - start, 1)
    log(f"engine up in {result['engine_start_s']} s")

    # 1. Greedy generations with log-probs, checked against transformers (teacher forcing).
    base_out = agent.generate(conversations)
    result["texts"] = [g.text for g in base_out]
    diffs = []
    for conversation, generation in zip(conversations[:4], base_out[:4]):
        prompt_ids = tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=True)
        prompt_ids = list(prompt_ids["input_ids"] if hasattr(prompt_ids, "keys") else prompt_ids)
        expected = hf_logprobs(reference, prompt_ids, generation.token_ids)
        diffs += [abs(a - b) for a, b in zip(generation.logprobs, expected)]
        # greedy: every generated token is the reference model's argmax up to numerical ties
    result["logprob_max_abs_diff_vs_transformers"] = max(diffs)
    result["logprobs_aligned"] = all(len(g.logprobs) == len(g.token_ids) > 0 for g in base_out)

    # 2. act() through the rollout engine, zero-shot and with two expert episodes as few-shot
    # examples (same engine: the agent's `examples` are what `few_shot=` would have built).
    expert = turngym.rollout("turngym/KeyDoor-v0", ExpertAgent(), num_episodes=2, seed=1000)
    for label, examples in (("zero_shot", []), ("few_shot", few_shot_messages(expert))):
        agent.examples = examples
        start = time.perf_counter()
        trajectories = turngym.rollout(
            "turngym/KeyDoor-v0", agent, num_episodes=8, batch_size=8, split="test", max_turns=4
        )
        steps = [turn for t in trajectories for turn in t.turns]
        result[f"rollout_{label}"] = {
            "episodes": len(trajectories),
            "agent": trajectories[0].agent,
            "seconds": round(time.perf_counter() - start, 1),
            "success_rate": sum(t.success for t in trajectories) / len(trajectories),
            "valid_action_rate": round(sum(s.info["valid_action"] for s in steps) / len(steps), 3),
            "first_actions": trajectories[0].actions[:2],
        }
    agent.examples = []

    # 3. Throughput: 32 conversations, sampled, up to 32 new tokens, one batched call.
    many = keydoor_conversations(32)
    sampled = SamplingConfig(temperature=1.0, max_new_tokens=32, stop=())
    agent.generate(many[:4], sampled)  # warm-up
    start = time.perf_counter()
    outputs = agent.generate(many, sampled)
    seconds = time.perf_counter() - start
    tokens = sum(len(g.token_ids) for g in outputs)
    result["throughput"] = {"conversations": 32, "new_tokens": tokens, "seconds": round(seconds, 2)}
    result["tokens_per_s"] = round(tokens / seconds, 1)
    log(f"{tokens} tokens in {seconds:.1f} s")

    # 4. LoRA, then the same change loaded as weights, then the original weights again.
    if merged is not None:
        agent.set_lora(lora_dir)
        lora_out = agent.generate(conversations)
        agent.set_lora(None)
        result["lora_changes_output"] = sum(a.token_ids != b.token_ids for a, b in zip(lora_out, base_out))
        start = time.perf_counter()
        agent.load_weights(merged)
        result["load_weights_s"] = round(time.perf_counter() - start, 1)
        merged_out = agent.generate(conversations)
        result["merged_equals_lora"] = sum(a.token_ids == b.token_ids for a, b in zip(merged_out, lora_out))
        result["merged_vs_lora_first_logprob_max_abs_diff"] = max(
            abs(a.logprobs[0] - b.logprobs[0]) for a, b in zip(merged_out, lora_out)
        )
        agent.load_weights(reference)
        restored = agent.generate(conversations)
        result["restored_equals_base"] = sum(a.token_ids == b.token_ids for a, b in zip(restored, base_out))
    result["n"] = len(conversations)
    print(RESULT_MARKER + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
