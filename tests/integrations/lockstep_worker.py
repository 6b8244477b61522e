"""One process of tests/integrations/test_trl.py's lock-step test (launched twice by `accelerate launch`;
its argument: a folder for the tiny model).

A stand-in for TRL's vLLM engine in server mode, collective as TRL's is (trl 1.16,
`trl/generation/vllm_generation.py`, `VLLMGeneration.generate`, `mode == "server"`): every process's
prompts are gathered, the main process answers them all, the answers are broadcast, and each process
keeps the slice at its index times its own prompt count. Process i plays episodes of 1 + 2i turns,
so the processes reach their last turn at different rounds. Prints one JSON line per process."""

from __future__ import annotations

import json
import sys
from types import SimpleNamespace
from typing import Any

from accelerate import Accelerator
from accelerate.utils import broadcast_object_list, gather_object
from transformers import AutoModelForCausalLM, AutoTokenizer

import turngym
from turngym import TextEnv, parse_reset_options
from turngym.integrations.trl import EnvRollout, prompt_dataset, save_tiny_qwen


class TurnsEnv(TextEnv):
    """Episode of seed s lasts 1 + s turns; each reply pays 1."""

    @property
    def instructions(self) -> str:
        return "Say a word every turn."

    def task_ids(self, split: str = "train") -> list[str] | None:
        return None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        parse_reset_options(options)
        self.turns, self.turn = 1 + (seed or 0), 0
        return "Speak.", {"task": "speak"}

    def step(self, action: str):
        self.turn += 1
        done = self.turn == self.turns
        return "Again.", 1.0, done, False, {"valid_action": True, "success": done}


def reply_for(prompt: list[int], words: list[list[int]]) -> list[int]:
    """The engine's answer names its prompt: a word chosen by the prompt's length, then EOS."""
    return [*words[len(prompt) % len(words)], words[-1][0]]


class ServerEngine:
    def __init__(self, accelerator: Accelerator, words: list[list[int]], eos: int) -> None:
        self.accelerator, self.words, self.eos = accelerator, words, eos
        self.calls, self.answered = 0, []

    def generate(self, prompts, images, num_generations, profiler=None):
        self.calls += 1
        all_prompts = gather_object(prompts)
        payload = (
            [[[*reply_for(p, self.words)[:-1], self.eos] for p in all_prompts]]
            if self.accelerator.is_main_process
            else [None]
        )
        broadcast_object_list(payload, from_process=0)
        index = self.accelerator.process_index
        mine = payload[0][index * len(prompts) : (index + 1) * len(prompts)]
        self.answered += [(list(p), c) for p, c in zip(prompts, mine)]
        return prompts, mine, [[[-1.0]] * len(c) for c in mine], None


def main() -> None:
    accelerator = Accelerator(cpu=True)
    turngym.register("test/Turns-v0", TurnsEnv, max_episode_steps=5, listed=False)
    folder = sys.argv[1]  # transformers saves from the main process only: it writes, the others read
    with accelerator.main_process_first():
        if accelerator.is_main_process:
            save_tiny_qwen(["Say a word every turn.", "Speak.", "Again.", "red green blue"], folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    words = [tokenizer(w, add_special_tokens=False)["input_ids"] for w in ("red", "green", "blue")]
    engine = ServerEngine(accelerator, words, tokenizer.eos_token_id)
    trainer = SimpleNamespace(
        processing_class=tokenizer,
        model=AutoModelForCausalLM.from_pretrained(folder),
        temperature=1.0,
        top_p=1.0,
        max_completion_length=4,
        use_vllm=True,
        vllm_mode="server",
        vllm_generation=engine,
        args=SimpleNamespace(seed=0, vllm_tensor_parallel_size=1),
        state=SimpleNamespace(global_step=0),
        accelerator=accelerator,
    )
    rank = accelerator.process_index
    rows = prompt_dataset("test/Turns-v0", 2 * rank + 1, seed=0)  # the last row's seed is 2 * rank
    prompts = [rows[-1]["prompt"]] * 2
    output = EnvRollout("test/Turns-v0")(prompts, trainer)
    own = sum(1 for prompt, _ in engine.answered if prompt != [tokenizer.eos_token_id])
    print(
        json.dumps(
            {
                "rank": rank,
                "engine_calls": engine.calls,
                "own_prompts": own,
                "turns": output["num_turns"],
                "rewards": output["episode_reward"],
                "answers_match": all(
                    c == [*reply_for(p, words)[:-1], tokenizer.eos_token_id] for p, c in engine.answered
                ),
                "policy_tokens": [sum(m) for m in output["env_mask"]],
            }
        ),
        flush=True,
    )
    sys.exit(0)


if __name__ == "__main__":
    main()
