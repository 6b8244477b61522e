"""`VLLMAgent`: a vLLM offline engine as a batched policy, with log-probs, LoRA adapters and live weight sync."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
import weakref
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from turngym.agents.prompting import few_shot_messages, parse_reply, prepare_conversation, react_stop
from turngym.agents.sampling import Generation, SamplingConfig, cut_at_stop
from turngym.errors import ConfigError, TurnGymError, require
from turngym.types import Conversation, Trajectory

if TYPE_CHECKING:
    import torch
    from vllm import LLM, SamplingParams
    from vllm.lora.request import LoRARequest


class VLLMAgent:
    """All conversations of a turn go to ONE `LLM.chat` call (vLLM batches and schedules them).

    `model` is a Hugging Face id or folder (e.g. `turngym.agents.hub.smollm2_path()`); `engine_kwargs`
    go to `vllm.LLM` (`gpu_memory_utilization`, `tensor_parallel_size`, ...). Automatic prefix
    caching is on (`enable_prefix_caching=True`): a turn's prompt shares all but its newest tokens
    with the previous turn's, so only those are prefilled. For trainers:
    `generate` returns token ids and log-probs, `set_lora` switches to a (re)saved PEFT adapter,
    `load_weights` copies a trainer's weights into the running engine without a restart.
    `examples` holds the few-shot transcript built from `few_shot` (replace it to change examples).
    """

    name = "vllm"

    def __init__(
        self,
        model: str | os.PathLike[str],
        *,
        sampling: SamplingConfig | None = None,
        react: bool = False,
        few_shot: Sequence[Trajectory] = (),
        lora_path: str | os.PathLike[str] | None = None,
        enable_lora: bool = False,
        max_lora_rank: int = 16,
        seed: int = 0,
        dtype: str = "auto",
        max_model_len: int | None = None,
        enforce_eager: bool = False,
        chat_template: str | None = None,
        enable_prefix_caching: bool = True,
        **engine_kwargs: Any,
    ) -> None:
        vllm = require("vllm", "vllm", "VLLMAgent")
        self.sampling = sampling or SamplingConfig()
        self.react = react
        self.examples = few_shot_messages(few_shot, react=react)
        self.seed = seed
        self.chat_template = chat_template
        self.enable_lora = enable_lora or lora_path is not None
        if self.enable_lora:
            engine_kwargs = {"enable_lora": True, "max_lora_rank": max_lora_rank, **engine_kwargs}
        self.llm: LLM = vllm.LLM(
            model=str(model),
            dtype=dtype,
            seed=seed,
            max_model_len=max_model_len,
            enforce_eager=enforce_eager,
            # each turn's prompt is the last turn's prompt plus its reply and an observation: the
            # engine reuses the KV blocks of that shared prefix instead of prefilling it again
            enable_prefix_caching=enable_prefix_caching,
            **engine_kwargs,
        )
        self.lora_request: LoRARequest | None = None
        self._lora_ids = itertools.count(1)
        self._sync_dir: Path | None = None
        if lora_path is not None:
            self.set_lora(lora_path)

    # ---- acting --------------------------------------------------------------------------------

    def act(self, conversations: Sequence[Conversation], episodes: Sequence[Any] | None = None) -> list[str]:
        return [g.text for g in self._chat(conversations, self.sampling, logprobs=False)]

    def generate(
        self, conversations: Sequence[Conversation], sampling: SamplingConfig | None = None
    ) -> list[Generation]:
        """One batched call: per conversation the action text, its token ids and their log-probs."""
        return self._chat(conversations, sampling or self.sampling, logprobs=True)

    def sampling_params(self, sampling: SamplingConfig, logprobs: bool = False) -> SamplingParams:
        """`SamplingConfig` as vLLM `SamplingParams` (temperature 0 is greedy in vLLM too)."""
        from vllm import SamplingParams

        stop = react_stop(sampling.stop) if self.react else sampling.stop
        return SamplingParams(
            temperature=sampling.temperature,
            top_p=sampling.top_p,
            max_tokens=sampling.max_new_tokens,
            stop=list(stop),
            logprobs=0 if logprobs else None,  # 0: only the sampled token's log-prob
        )  # no per-request seed: identical prompts (group rollouts) must get different samples;
        # the engine's `seed` makes runs reproducible

    def _chat(
        self, conversations: Sequence[Conversation], sampling: SamplingConfig, logprobs: bool
    ) -> list[Generation]:
        if not conversations:
            return []
        params = self.sampling_params(sampling, logprobs)
        messages = [prepare_conversation(c, self.react, self.examples) for c in conversations]
        outputs = self.llm.chat(
            messages,  # type: ignore[arg-type]
            params,
            use_tqdm=False,
            lora_request=self.lora_request,
            chat_template=self.chat_template,
        )
        generations = []
        for output in outputs:
            completion = output.outputs[0]
            token_ids = list(completion.token_ids)
            token_logprobs = (
                [float(step[t].logprob) for step, t in zip(completion.logprobs, token_ids)]
                if logprobs and completion.logprobs is not None
                else []
            )
            text = parse_reply(cut_at_stop(completion.text, params.stop or ()), self.react)
            generations.append(Generation(text, token_ids, token_logprobs))
        return generations

    # ---- LoRA and weight sync ------------------------------------------------------------------

    def set_lora(self, path: str | os.PathLike[str] | None) -> None:
        """Generate with the PEFT adapter saved at `path` from now on (None: the base model). Call it
        again after saving a newer adapter to the same path: each call gets a new adapter id, so
        vLLM loads the new file instead of reusing its cached copy."""
        if path is None:
            self.lora_request = None
            return
        if not self.enable_lora:
            raise ConfigError("set_lora needs a VLLMAgent built with enable_lora=True (or lora_path=)")
        if not (Path(path) / "adapter_config.json").is_file():
            raise ConfigError(f"no PEFT adapter at {str(path)!r}: expected adapter_config.json there")
        from vllm.lora.request import LoRARequest

        lora_id = next(self._lora_ids)
        self.lora_request = LoRARequest(f"turngym-lora-{lora_id}", lora_id, str(Path(path).resolve()))

    def load_weights(
        self, weights: torch.nn.Module | Mapping[str, torch.Tensor] | Iterable[tuple[str, torch.Tensor]]
    ) -> None:
        """Copy new weights into the running engine (no restart): a `torch.nn.Module`, a state dict
        or `(name, tensor)` pairs, with Hugging Face checkpoint names (a plain, or LoRA-merged, model).

        vLLM 0.32's workers reload in place with `reload_weights`; it reads safetensors from a
        folder, so the weights are written to a private folder (in RAM under /dev/shm where there is
        one) and every worker loads them, whatever the executor. The prefix cache is then cleared:
        cached keys/values were computed with the old weights."""
        from safetensors.torch import save_file

        if hasattr(weights, "state_dict"):
            weights = weights.state_dict()  # type: ignore[union-attr]
        items = list(weights.items()) if isinstance(weights, Mapping) else list(weights)
        lora_keys = [name for name, _ in items if "lora_" in name]
        if lora_keys:
            raise ConfigError(
                f"load_weights takes plain checkpoint weights, got LoRA tensors ({lora_keys[0]}): merge "
                "the adapter first (merge_and_unload) or save it and call set_lora(path)"
            )
        tensors = {name: t.to("cpu").contiguous() for name, t in distinct_tensors(items).items()}
        folder = self._weights_folder()
        save_file(tensors, str(folder / "model.safetensors"))
        try:
            self.llm.collective_rpc("reload_weights", kwargs={"weights_path": str(folder)})
        except Exception as exc:  # an engine too old or a name mismatch: say which, in one line
            message = " ".join(str(exc).split())[:300]
            raise TurnGymError(
                f"vLLM could not reload the weights ({type(exc).__name__}: {message})"
            ) from exc
        self.llm.reset_prefix_cache()

    def _weights_folder(self) -> Path:
        if self._sync_dir is None:
            self._sync_dir = private_folder(self, "turngym-vllm-weights-")
        return self._sync_dir


def private_folder(owner: object, prefix: str) -> Path:
    """A new private folder, in RAM (/dev/shm) where there is one, removed when `owner` is collected."""
    ram = Path("/dev/shm")
    parent = str(ram) if ram.is_dir() and os.access(ram, os.W_OK) else None
    folder = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    weakref.finalize(owner, shutil.rmtree, folder, True)
    return folder


def distinct_tensors(items: Iterable[tuple[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """`(name, tensor)` pairs as a dict holding each tensor once, detached: of tied weights
    (lm_head = embeddings) the first name only, since vLLM ties them again itself."""
    tensors, seen = {}, set()
    for name, tensor in items:
        if tensor.data_ptr() not in seen:
            seen.add(tensor.data_ptr())
            tensors[name] = tensor.detach()
    return tensors
