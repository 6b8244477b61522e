"""The GPU check of issue 34, prepared to run as one short call on a lent GPU machine (about 8 minutes
on one H100; the machine has no network and no hub, so the models are built from config).

Models: random-init models shaped like Qwen2.5-0.5B-Instruct and Qwen2.5-1.5B-Instruct (the
layer counts, widths, heads, grouped KV heads and the 151,936-token vocabulary of their config.json;
Llama's architecture with Qwen2's attention biases, so that the word tokenizer loads as saved),
with a word-level tokenizer over the envs' text padded to that vocabulary (a random model samples
any id, and vLLM must be able to detokenize each). A random model's actions are invalid, so every
episode runs to `--turns` and every action to `--max-new-tokens`: the work per measurement is fixed,
which is what a throughput check wants.

Per shape and rollout engine (`hf`: transformers in this process; `vllm`: a vLLM engine), in a
fresh subprocess each (its GPU memory is freed at exit and its peak is its own):
- rollout generated tokens/s and env steps/s on KeyDoor and WebShop at batch 64 and 256
  (`turngym.rollout`, one generation call per turn for all live episodes);
- one GRPO iteration (`turngym train grpo` with `rollout_engine=` that engine, in a process of its
  own), seconds;
- peak GPU memory: torch's peak in the worker and `nvidia-smi`'s device peak while it ran.

Every measurement is one JSON line in `--out` as soon as it exists (a timeout loses nothing
measured), and a markdown table (`--out` with `.md`) at the end. The whole run keeps to `--budget-s`:
a worker that would start past it is skipped and listed as skipped.

    python bench/gpu_check.py --out $OUT/gpu_check.jsonl              # on the GPU machine
    python bench/gpu_check.py --tiny --engines hf --out /tmp/g.jsonl   # CPU: the same steps, tiny
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from turngym.storage import JsonlWriter

# config.json of Qwen/Qwen2.5-0.5B-Instruct and Qwen/Qwen2.5-1.5B-Instruct (the shapes, not weights)
SHAPES: dict[str, dict[str, Any]] = {
    "qwen2.5-0.5b": dict(
        hidden_size=896, intermediate_size=4864, num_hidden_layers=24, num_attention_heads=14,
        num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True,
    ),
    "qwen2.5-1.5b": dict(
        hidden_size=1536, intermediate_size=8960, num_hidden_layers=28, num_attention_heads=12,
        num_key_value_heads=2, vocab_size=151936, tie_word_embeddings=True,
    ),
    "tiny": dict(  # --tiny: the same code path on CPU in seconds
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, vocab_size=2048, tie_word_embeddings=True,
    ),
}  # fmt: skip
ENVS = ("turngym/KeyDoor-v0", "turngym/WebShop-v0")


def build_model(
    shape: str,
    folder: Path,
    envs: Sequence[str] = ENVS,
    episodes: int = 4,
    shapes: dict[str, dict[str, Any]] | None = None,
) -> Path:
    """A random-init model of `shape` (a key of `shapes`, default SHAPES) in bf16 and its word tokenizer
    over the text of `episodes` expert and random episodes of each of `envs`, padded to the vocabulary,
    saved as an HF folder."""
    import torch
    import transformers

    from turngym.agents.tiny import env_texts, word_tokenizer

    dims = (shapes or SHAPES)[shape]
    texts = [text for env_id in envs for text in env_texts(env_id, episodes)]
    base = len(word_tokenizer(texts))
    if base > dims["vocab_size"]:
        raise SystemExit(f"{shape}: the envs' text has {base} words, more than the vocabulary")
    filler = " ".join(f"w{i}" for i in range(dims["vocab_size"] - base))  # one new word each
    tokenizer = word_tokenizer([*texts, filler])
    assert len(tokenizer) == dims["vocab_size"], (len(tokenizer), dims["vocab_size"])
    torch.manual_seed(0)
    # a Llama with Qwen2's dimensions and its q/k/v biases (attention_bias also puts one on o_proj: 896
    # or 1,536 numbers per layer), not a Qwen2: a folder whose config.json says qwen2 makes AutoTokenizer
    # (transformers 5) rebuild the word tokenizer as Qwen2's byte-level BPE, which encodes the envs'
    # text as letters ("Is it in Asia?" -> "ss?"); a llama folder loads it as saved
    config = transformers.LlamaConfig(
        **dims,
        attention_bias=True,
        max_position_embeddings=8192,
        rope_theta=1_000_000.0,
        bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    model = transformers.LlamaForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def rollout_agent(engine: str, folder: Path, device: str, max_new_tokens: int, tiny: bool) -> Any:
    from turngym.agents import SamplingConfig

    sampling = SamplingConfig(temperature=1.0, max_new_tokens=max_new_tokens)
    if engine == "hf":
        from turngym.agents.hf import HFAgent

        dtype = "bfloat16" if device.startswith("cuda") else "float32"
        return HFAgent.from_pretrained(folder, device=device, dtype=dtype, sampling=sampling)
    from turngym.agents.vllm import VLLMAgent

    return VLLMAgent(
        folder,
        sampling=sampling,
        dtype="float32" if tiny else "bfloat16",
        max_model_len=4096,
        enforce_eager=True,  # no torch.compile / CUDA-graph capture: minutes of a short check
        gpu_memory_utilization=0.45,
    )


def gpu_peak_gib() -> float | None:
    import torch

    return torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None


def worker(args: argparse.Namespace) -> None:
    """One (shape, engine, part): `rollouts` at each env and batch size, or one `grpo` iteration (each
    part in its own process, so the GRPO run's engine finds the GPU memory the rollouts' engine held)."""
    import torch

    import turngym

    device = "cuda" if torch.cuda.is_available() else "cpu"
    folder = Path(args.folder)

    def emit(record: dict[str, Any]) -> None:
        record = {"shape": args.shape, "engine": args.engine, "device": device, **record}
        print("GPU_CHECK " + json.dumps(record), flush=True)

    if args.part == "grpo":
        emit({"step": "grpo", **grpo_iteration(args, folder, device)})
        return
    started = time.perf_counter()
    agent = rollout_agent(args.engine, folder, device, args.max_new_tokens, args.shape == "tiny")
    emit({"step": "engine_start", "seconds": round(time.perf_counter() - started, 2)})
    for env_id in ENVS:
        for batch in args.batches:
            started = time.perf_counter()
            trajectories = turngym.rollout(
                env_id, agent, num_episodes=batch, batch_size=batch, max_turns=args.turns, seed=0
            )
            seconds = time.perf_counter() - started
            steps = sum(len(t.turns) for t in trajectories)
            tokens = sum(len(turn.action_tokens or ()) for t in trajectories for turn in t.turns)
            emit(
                {
                    "step": "rollout", "env": env_id, "batch": batch, "seconds": round(seconds, 2),
                    "env_steps": steps, "generated_tokens": tokens,
                    "tokens_per_s": round(tokens / seconds, 1), "env_steps_per_s": round(steps / seconds, 1),
                    "torch_peak_gib": gpu_peak_gib(),
                }
            )  # fmt: skip


def grpo_iteration(args: argparse.Namespace, folder: Path, device: str) -> dict[str, Any]:
    """One GRPO iteration (64 episodes in 8 groups, the update, a small greedy eval) with the engine."""
    from turngym.trainers import algorithm
    from turngym.trainers.common.config import make_config

    config_cls, trainer_cls = algorithm("grpo")
    overrides = {
        "env_id": "turngym/KeyDoor-v0", "model": str(folder), "iterations": 1,
        "rollout_episodes": args.grpo_episodes, "group_size": 8, "batch_size": 16,
        "max_turns": args.turns, "max_new_tokens": args.max_new_tokens, "eval_at_start": False,
        "eval_episodes": 8, "lr": 1e-6, "precision": "bf16" if device == "cuda" else "fp32",
        "runs_dir": tempfile.mkdtemp(prefix="gpu-check-runs-"), "tensorboard": False,
        "progress": False, "rollout_engine": args.engine,
    }  # fmt: skip
    try:
        config = make_config(config_cls, overrides)
    except Exception as exc:  # e.g. a TurnGym without the rollout_engine key
        return {"error": f"{type(exc).__name__}: {exc}"}
    started = time.perf_counter()
    (metrics,) = trainer_cls(config).train()
    return {
        "seconds": round(time.perf_counter() - started, 2),
        "episodes": args.grpo_episodes,
        "policy_loss": metrics.get("losses/policy"),
        "logprob_mismatch": metrics.get("charts/rollout_logprob_mismatch"),
        "torch_peak_gib": gpu_peak_gib(),
    }


class DevicePeak:
    """The device's peak used memory (GiB) by `nvidia-smi` while a worker runs (None without one)."""

    def __init__(self) -> None:
        self.peak: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run(
                    ["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                    capture_output=True, text=True, timeout=5,
                )  # fmt: skip
                used = max(float(line) for line in out.stdout.split()) / 1024
                self.peak = used if self.peak is None else max(self.peak, used)
            except (OSError, ValueError, subprocess.SubprocessError):
                return
            self._stop.wait(0.5)

    def __enter__(self) -> DevicePeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def run_worker(command: list[str], seconds: float, record: Any) -> int:
    """Run one worker for at most `seconds`, recording each measurement as it comes (a kill keeps
    what was measured) with the device's peak memory so far; its exit code."""
    with DevicePeak() as peak:
        run = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=os.environ)
        timer = threading.Timer(seconds, run.kill)
        timer.start()
        assert run.stdout is not None
        for line in run.stdout:
            if line.startswith("GPU_CHECK "):
                entry = json.loads(line.removeprefix("GPU_CHECK "))
                entry["device_peak_gib"] = None if peak.peak is None else round(peak.peak, 1)
                record(entry)
        code = run.wait()
        timer.cancel()
    return code


def recorder(path: Path) -> tuple[list[dict[str, Any]], Callable[[dict[str, Any]], None]]:
    """The records so far and the function that adds one: kept in the list, appended to the JSONL at
    `path` at once (one flushed append per record: a timeout or crash loses nothing measured) and printed."""
    writer = JsonlWriter(path)
    records: list[dict[str, Any]] = []

    def record(entry: dict[str, Any]) -> None:
        records.append(entry)
        writer.write(entry)
        print(json.dumps(entry), flush=True)

    return records, record


def table(records: list[dict[str, Any]]) -> str:
    lines = [
        "| shape | engine | step | env | batch | tokens/s | env steps/s | seconds | torch peak GiB | device peak GiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        gib = r.get("torch_peak_gib")
        lines.append(
            f"| {r['shape']} | {r['engine']} | {r['step']} | {r.get('env', '').removeprefix('turngym/')} | "
            f"{r.get('batch', '')} | {r.get('tokens_per_s', '')} | {r.get('env_steps_per_s', '')} | "
            f"{r.get('seconds', '')} | {'' if gib is None else f'{gib:.1f}'} | {r.get('device_peak_gib') or ''} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu_check.jsonl")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer model, small batches: CPU in seconds")
    parser.add_argument("--shapes", nargs="+", default=None, choices=sorted(SHAPES))
    parser.add_argument("--engines", nargs="+", default=["hf", "vllm"], choices=["hf", "vllm"])
    parser.add_argument("--batches", type=int, nargs="+", default=None)
    parser.add_argument("--turns", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--grpo-episodes", type=int, default=None)
    parser.add_argument("--budget-s", type=float, default=450.0, help="no worker starts past this")
    parser.add_argument("--worker", nargs=3, metavar=("SHAPE", "ENGINE", "PART"), help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.batches = args.batches or ([4, 8] if args.tiny else [64, 256])
    args.grpo_episodes = args.grpo_episodes or (8 if args.tiny else 64)
    if args.worker:
        args.shape, args.engine, args.part = args.worker
        worker(args)
        return
    deadline = time.monotonic() + args.budget_s
    shapes = args.shapes or (["tiny"] if args.tiny else ["qwen2.5-0.5b", "qwen2.5-1.5b"])
    out = Path(args.out)
    records, record = recorder(out)

    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        for shape in shapes:
            started = time.perf_counter()
            folder = build_model(shape, Path(tmp) / shape)
            record(
                {
                    "shape": shape,
                    "engine": "-",
                    "step": "build",
                    "seconds": round(time.perf_counter() - started, 2),
                }
            )
            for engine in args.engines:
                for part in ("rollouts", "grpo"):
                    left = deadline - time.monotonic()
                    if left < 30:
                        record(
                            {
                                "shape": shape,
                                "engine": engine,
                                "step": f"{part} skipped",
                                "why": "budget spent",
                            }
                        )
                        continue
                    command = [
                        sys.executable,
                        __file__,
                        "--worker",
                        shape,
                        engine,
                        part,
                        "--folder",
                        str(folder),
                    ]
                    command += ["--turns", str(args.turns), "--max-new-tokens", str(args.max_new_tokens)]
                    command += [
                        "--grpo-episodes",
                        str(args.grpo_episodes),
                        "--batches",
                        *map(str, args.batches),
                    ]
                    code = run_worker(command, left, record)
                    if code != 0:
                        record(
                            {"shape": shape, "engine": engine, "step": f"{part} failed", "exit_code": code}
                        )
    out.with_suffix(".md").write_text(table(records) + "\n")
    print(table(records))


if __name__ == "__main__":
    main()
