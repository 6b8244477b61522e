"""Pieces every trainer shares: the base config, config loading, the run directory (metrics, TensorBoard,
checkpoints, curve.png), the replay buffer of turns, rollouts and periodic eval."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import itertools
import math
import random
import re
import time
import types
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from turngym.agents.sampling import SamplingConfig
from turngym.errors import ConfigError, did_you_mean, require
from turngym.prompts import build_conversation
from turngym.storage import JsonlWriter, atomic_write_bytes, atomic_write_text, iter_jsonl, to_json_line
from turngym.types import Conversation, Trajectory

if TYPE_CHECKING:
    import torch

    from turngym.agents.hf import HFAgent

C = TypeVar("C", bound="TrainConfig")
DEVICES = ("auto", "cpu", "cuda")


@dataclass
class TrainConfig:
    """Fields shared by every trainer (each algorithm's config extends it)."""

    env_id: str = "turngym/KeyDoor-v0"
    """Env to train on (train split); eval uses its held-out test split."""
    run_name: str = ""
    """Run folder name under `runs_dir` (default: `<algo>-<env name>-s<seed>`)."""
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
    """Gradients of this many minibatches of batch_size are summed (each scaled 1/N) per optimizer step:
    the same step as one batch N times larger, in less memory. BC, PPO, GRPO: each pass over the data
    ends with a step. ArCHer: each critic and actor step samples batch_size x N replayed turns (official
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
    eval_every: int = 5
    """Evaluate on the test split every this many iterations (and at the start and the end)."""
    eval_episodes: int = 100
    """Held-out test episodes per evaluation (fixed seeds 0..N-1, greedy decoding)."""
    target_success: float | None = None
    """Stop early once an eval reaches this success rate (None: run all iterations)."""
    save_every: int = 5
    """Checkpoint every this many iterations (and at the end)."""
    keep_checkpoints: int = 2
    """Checkpoints kept (older ones are deleted)."""
    tiny_layers: int = 2
    """Default policy (a TinyAgent built for the env): transformer blocks."""
    tiny_embd: int = 64
    """Default policy: hidden size."""
    tiny_heads: int = 2
    """Default policy: attention heads."""
    device: str = "auto"
    """auto (cuda if available), cpu or cuda."""
    mixed_precision: bool = True
    """bf16 autocast for forward passes when running on a GPU (ignored on CPU)."""
    tensorboard: bool = True
    """Also log to TensorBoard event files in the run folder."""
    progress: bool = False
    """Show a rich progress bar over iterations."""

    algo = "train"  # class-level name used for the default run name

    def __post_init__(self) -> None:
        positive = ("iterations", "rollout_episodes", "batch_size", "grad_accum_steps", "eval_every")
        for name in (*positive, "save_every", "keep_checkpoints", "eval_episodes", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("lr", "max_grad_norm"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")
        if self.temperature < 0:
            raise ConfigError(f"temperature must be >= 0, got {self.temperature}")
        if self.device not in DEVICES:
            raise ConfigError(f"device must be one of {list(DEVICES)}, got {self.device!r}")
        if self.history_window is not None and self.history_window < 0:
            raise ConfigError(f"history_window must be >= 0 or None, got {self.history_window}")
        if self.target_success is not None and not 0 < self.target_success <= 1:
            raise ConfigError(f"target_success must be in (0, 1] or None, got {self.target_success}")
        if self.tiny_embd % self.tiny_heads:
            raise ConfigError(
                f"tiny_embd ({self.tiny_embd}) must be a multiple of tiny_heads ({self.tiny_heads})"
            )

    @property
    def name(self) -> str:
        return self.run_name or f"{self.algo}-{self.env_id.split('/')[-1]}-s{self.seed}"

    @property
    def sampling(self) -> SamplingConfig:
        return SamplingConfig(temperature=self.temperature, max_new_tokens=self.max_new_tokens)


# ---- config loading ----------------------------------------------------------------------------


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


# ---- torch helpers -----------------------------------------------------------------------------


def resolve_device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device='cuda' but torch sees no GPU; use device=auto or cpu")
    return name


def autocast(config: TrainConfig, device: str) -> contextlib.AbstractContextManager:
    """bf16 autocast on a GPU when `mixed_precision`; a no-op on CPU."""
    import torch

    if device.startswith("cuda") and config.mixed_precision:
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def make_optimizer(params: Any, lr: float, weight_decay: float = 0.0, warmup_steps: int = 0) -> tuple:
    """AdamW and a linear warm-up schedule (constant afterwards). `params`: tensors, or param-group
    dicts (a group's own `lr` overrides `lr`)."""
    import torch

    params = list(params)
    if params and isinstance(params[0], dict):
        groups = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in params]
    else:
        groups = [{"params": [p for p in params if p.requires_grad]}]
    optimizer = torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / warmup_steps) if warmup_steps > 0 else 1.0
    )
    return optimizer, scheduler


def optimizer_step(optimizer: Any, scheduler: Any, params: Any, max_grad_norm: float) -> float:
    """Clip, step, zero; returns the pre-clip gradient norm."""
    import torch

    norm = torch.nn.utils.clip_grad_norm_([p for p in params if p.requires_grad], max_grad_norm)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return float(norm)


def default_agent(config: TrainConfig) -> HFAgent:
    """A TinyAgent for `config.env_id` (vocabulary from the env's text), sized by `tiny_*`."""
    from turngym.agents.tiny import TinyAgent, TinyConfig

    tiny = TinyConfig(
        n_layer=config.tiny_layers, n_embd=config.tiny_embd, n_head=config.tiny_heads, seed=config.seed
    )
    return TinyAgent.from_env(config.env_id, tiny, config.sampling)


@contextlib.contextmanager
def sampling_as(agent: Any, sampling: SamplingConfig) -> Iterator[None]:
    """Temporarily change how `agent` samples (e.g. greedy for eval)."""
    saved = agent.sampling
    agent.sampling = sampling
    try:
        yield
    finally:
        agent.sampling = saved


# ---- data: turns and the replay buffer ---------------------------------------------------------


@dataclass
class Transition:
    """One turn for an utterance-level critic: s (conversation so far), a (the whole utterance),
    r, s' (the conversation after the env answered), done (terminal: no bootstrap)."""

    state: Conversation
    action: str
    reward: float
    next_state: Conversation
    done: bool
    trajectory_return: float = 0.0  # discounted return from this turn (Monte Carlo), for diagnostics
    action_tokens: list[int] | None = None  # the sampled ids of `action` (Turn.action_tokens)


def transitions(
    trajectory: Trajectory,
    history_window: int | None = None,
    gamma: float = 1.0,
    bootstrap_truncated: bool = True,
) -> list[Transition]:
    """The trajectory's turns as transitions. The last turn is `done` if the env terminated the
    episode; a turn-limit cut bootstraps from s', or is `done` too if `bootstrap_truncated` is False."""
    observations, actions = trajectory.observations, trajectory.actions
    n = len(actions)
    returns = [0.0] * n
    running = 0.0
    for i in reversed(range(n)):
        running = trajectory.turns[i].reward + gamma * running
        returns[i] = running
    return [
        Transition(
            state=build_conversation(
                trajectory.instructions, observations[: i + 1], actions[:i], history_window
            ),
            action=actions[i],
            reward=float(trajectory.turns[i].reward),
            next_state=build_conversation(
                trajectory.instructions, observations[: i + 2], actions[: i + 1], history_window
            ),
            done=i == n - 1 and (trajectory.terminated or (trajectory.truncated and not bootstrap_truncated)),
            trajectory_return=returns[i],
            action_tokens=trajectory.turns[i].action_tokens,
        )
        for i in range(n)
    ]


@dataclass
class ReplayBuffer:
    """A FIFO buffer of turns, sampled uniformly with its own RNG (saved in checkpoints)."""

    capacity: int
    seed: int = 0
    items: list[Transition] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise ConfigError(f"capacity must be >= 1, got {self.capacity}")
        self.rng = np.random.default_rng(self.seed)

    def __len__(self) -> int:
        return len(self.items)

    def extend(self, items: Sequence[Transition]) -> None:
        self.items.extend(items)
        del self.items[: max(0, len(self.items) - self.capacity)]

    def sample(self, n: int) -> list[Transition]:
        if not self.items:
            raise ValueError("cannot sample from an empty replay buffer")
        return [self.items[i] for i in self.rng.integers(len(self.items), size=n)]

    def state_dict(self) -> dict[str, Any]:
        return {"items": [dataclasses.asdict(t) for t in self.items], "rng": self.rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.items = [Transition(**t) for t in state["items"]]
        self.rng.bit_generator.state = state["rng"]


def minibatches(n: int, size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A shuffled split of range(n) into batches of at most `size`."""
    order = rng.permutation(n)
    return [order[i : i + size] for i in range(0, n, size)]


def accumulated_minibatches(
    n: int, size: int, accum_steps: int, rng: np.random.Generator, passes: int = 1
) -> Iterator[tuple[np.ndarray, bool]]:
    """`passes` shuffled passes over range(n) in minibatches of at most `size`, each with whether the
    optimizer steps after it: every `accum_steps` minibatches and at each pass's last one, so no
    gradient is carried into the next pass or iteration (checkpoints do not hold gradients, so a
    resumed run would lose it)."""
    for _ in range(passes):
        batches = minibatches(n, size, rng)
        for step, index in enumerate(batches, 1):
            yield index, step % accum_steps == 0 or step == len(batches)


# ---- the run: directory, logging, checkpoints, eval, curve -------------------------------------


class Run:
    """`runs/NAME/`: config.yaml, metrics.jsonl, TensorBoard events, checkpoints/, trajectories.jsonl,
    curve.png. Metrics are flat dicts with namespaced keys (`losses/critic`, `charts/success_rate`)."""

    def __init__(self, config: TrainConfig, resume: bool = False) -> None:
        self.config = config
        self.dir = Path(config.runs_dir) / config.name
        self.checkpoints = self.dir / "checkpoints"
        config_path = self.dir / "config.yaml"
        if resume:
            if not config_path.exists():
                raise ConfigError(f"cannot resume: {self.dir} has no config.yaml (no run there yet)")
            yaml = require("yaml", "train", "config files")
            saved = yaml.safe_load(config_path.read_text())
            current = yaml.safe_load(config_yaml(config))
            changed = sorted(
                k for k in set(saved) | set(current) if k != "iterations" and saved.get(k) != current.get(k)
            )
            if changed:  # only `iterations` may grow: resuming extends the same run
                raise ConfigError(
                    f"cannot resume {self.dir}: config differs from its config.yaml in {changed}"
                )
        elif self.dir.exists() and any(self.dir.iterdir()):
            raise ConfigError(f"{self.dir} already holds a run: pass --resume, or choose another run_name")
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(config_path, config_yaml(config))
        self.trajectories = JsonlWriter(self.dir / "trajectories.jsonl")
        self._metrics = JsonlWriter(self.dir / "metrics.jsonl")
        self._tb = None
        if config.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.dir))

    def log(self, metrics: dict[str, Any], step: int) -> None:
        record = {"iteration": step, **{k: _plain(v) for k, v in metrics.items()}}
        self._metrics.write(record)
        if self._tb is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "iteration":
                    self._tb.add_scalar(key, value, step)
            self._tb.flush()

    def metrics(self) -> list[dict[str, Any]]:
        path = self.dir / "metrics.jsonl"
        return list(iter_jsonl(path)) if path.exists() else []

    def rewind(self, last_iteration: int) -> None:
        """On resume: drop the metrics and the episodes of iterations after `last_iteration` (the
        checkpoint's; -1 without one): the resumed run produces them again. Episodes are tagged
        with their iteration by `collect`; untagged ones (older runs) are kept."""
        self._metrics.close()
        self.trajectories.close()
        for name in ("metrics.jsonl", "trajectories.jsonl"):
            path = self.dir / name
            records = list(iter_jsonl(path)) if path.exists() else []
            kept = [r for r in records if _iteration(r) <= last_iteration]
            if len(kept) < len(records):
                atomic_write_bytes(path, b"".join(to_json_line(r) for r in kept))
        self.trajectories = JsonlWriter(self.dir / "trajectories.jsonl")
        self._metrics = JsonlWriter(self.dir / "metrics.jsonl")

    # checkpoints: one torch file per save, written atomically; the newest `keep_checkpoints` are kept
    def save_checkpoint(self, iteration: int, state: dict[str, Any]) -> Path:
        import torch

        buffer = io.BytesIO()
        torch.save({"iteration": iteration, "global_rng": rng_state(), **state}, buffer)
        path = self.checkpoints / f"iter_{iteration:06d}.pt"
        atomic_write_bytes(path, buffer.getvalue())
        for old in sorted(self.checkpoints.glob("iter_*.pt"))[: -self.config.keep_checkpoints]:
            old.unlink()
        return path

    def latest_checkpoint(self) -> dict[str, Any] | None:
        import torch

        paths = sorted(self.checkpoints.glob("iter_*.pt"))
        if not paths:
            return None
        state = torch.load(paths[-1], weights_only=False)
        set_rng_state(state["global_rng"])
        return state

    def write_curve(self, title: str | None = None) -> Path:
        return plot_curves({self.config.algo: self.metrics()}, self.dir / "curve.png", title or self.dir.name)

    def close(self) -> None:
        self.trajectories.close()
        self._metrics.close()
        if self._tb is not None:
            self._tb.close()


def _iteration(record: dict[str, Any]) -> int:
    """The iteration a metrics record or a tagged trajectory belongs to (-1 if untagged)."""
    return record.get("iteration", record.get("metadata", {}).get("iteration", -1))


def config_yaml(config: TrainConfig) -> str:
    yaml = require("yaml", "train", "config files")
    return yaml.safe_dump({"algo": config.algo, **dataclasses.asdict(config)}, sort_keys=False)


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no nan/inf; keep them visible
    return value


def rng_state() -> dict[str, Any]:
    import torch

    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def agent_state(agent: HFAgent) -> dict[str, Any]:
    return {"model": agent.model.state_dict(), "generator": agent.generator.get_state()}


def load_agent_state(agent: HFAgent, state: dict[str, Any]) -> None:
    agent.model.load_state_dict(state["model"])
    agent.generator.set_state(state["generator"])


def checkpoint_state(agent: HFAgent, **parts: Any) -> dict[str, Any]:
    """A trainer's checkpoint: the agent plus each named part (modules, optimizers, schedulers,
    buffers: anything with `state_dict`; numpy Generators by their bit-generator state; None stays None)."""
    state: dict[str, Any] = {"agent": agent_state(agent)}
    for name, part in parts.items():
        if part is None:
            state[name] = None
        elif isinstance(part, np.random.Generator):
            state[name] = part.bit_generator.state
        else:
            state[name] = part.state_dict()
    return state


def load_checkpoint_state(state: dict[str, Any], agent: HFAgent, **parts: Any) -> None:
    """Restore what `checkpoint_state` saved into the same named parts (None parts are skipped)."""
    load_agent_state(agent, state["agent"])
    for name, part in parts.items():
        if part is None:
            continue
        if isinstance(part, np.random.Generator):
            part.bit_generator.state = state[name]
        else:
            part.load_state_dict(state[name])


def plot_curves(curves: dict[str, list[dict[str, Any]]], path: str | Path, title: str) -> Path:
    """Success rate (with its 95% CI band) vs env steps, one line per named metrics list."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, metrics in curves.items():
        points = [m for m in metrics if "eval/success_rate" in m]
        if not points:
            continue
        x = [m["charts/env_steps"] for m in points]
        ax.plot(x, [m["eval/success_rate"] for m in points], marker="o", label=label)
        ax.fill_between(x, [m["eval/ci_low"] for m in points], [m["eval/ci_high"] for m in points], alpha=0.2)
    ax.set_xlabel("env steps (training turns)")
    ax.set_ylabel("success rate (held-out test tasks)")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    ax.set_title(title)
    if curves:
        ax.legend(loc="lower right")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def collect(
    agent: HFAgent, config: TrainConfig, iteration: int, run: Run | None, **kwargs: Any
) -> list[Trajectory]:
    """Sample `rollout_episodes` train-split episodes with the policy (seeds depend only on the run
    seed and the iteration, so a resumed run plays the same episodes)."""
    import turngym

    seed = config.seed * 1_000_003 + iteration * 10_007
    kwargs.setdefault("num_episodes", config.rollout_episodes)

    def sink(trajectory: Trajectory) -> None:  # tagged, so a resume can drop a lost iteration's episodes
        trajectory.metadata["iteration"] = iteration
        run.trajectories.write(trajectory)

    with sampling_as(agent, config.sampling):
        trajectories = turngym.rollout(
            config.env_id,
            agent,
            batch_size=kwargs.pop("batch_size", config.rollout_episodes),
            seed=seed,
            split="train",
            max_turns=config.max_turns,
            history_window=config.history_window,
            sink=sink if run is not None else None,
            **kwargs,
        )
    return trajectories


def evaluate_policy(agent: HFAgent, config: TrainConfig) -> dict[str, float]:
    """Greedy success on the fixed held-out episodes (`turngym.evaluate`), as `eval/*` metrics."""
    import turngym

    greedy = SamplingConfig(temperature=0.0, max_new_tokens=config.max_new_tokens)
    with sampling_as(agent, greedy):
        result = turngym.evaluate(
            config.env_id,
            agent,
            config.eval_episodes,
            batch_size=min(config.eval_episodes, 64),
            max_turns=config.max_turns,
            history_window=config.history_window,
        )
    stats = result.overall
    return {
        "eval/success_rate": stats.success_rate,
        "eval/ci_low": stats.ci_low,
        "eval/ci_high": stats.ci_high,
        "eval/mean_turns": stats.mean_turns,
    }


def rollout_stats(trajectories: Sequence[Trajectory]) -> dict[str, float]:
    n = max(len(trajectories), 1)
    turns = [turn for t in trajectories for turn in t.turns]
    return {
        "charts/train_success_rate": sum(t.success for t in trajectories) / n,
        "charts/train_return": sum(t.total_reward for t in trajectories) / n,
        "charts/episode_turns": len(turns) / n,
        "charts/valid_action_rate": sum(bool(t.info.get("valid_action")) for t in turns) / max(len(turns), 1),
    }


class Clock:
    """Env steps and wall time of a run, restored on resume."""

    def __init__(self) -> None:
        self.env_steps = 0
        self.elapsed = 0.0
        self._start = time.perf_counter()

    def charts(self, new_steps: int) -> dict[str, float]:
        now = time.perf_counter()
        span = now - self._start
        self._start = now
        self.elapsed += span
        self.env_steps += new_steps
        return {
            "charts/env_steps": self.env_steps,
            "charts/env_steps_per_s": new_steps / span if span > 0 else 0.0,
            "charts/wall_time_s": self.elapsed,  # seconds since the run started (`turngym report` shows it)
        }

    def state_dict(self) -> dict[str, Any]:
        return {"env_steps": self.env_steps, "elapsed": self.elapsed}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.env_steps = state["env_steps"]
        self.elapsed = state.get("elapsed", 0.0)  # checkpoints written before wall time was logged


def progress_bar(total: int, description: str, enabled: bool):
    """A rich progress bar (a no-op object when disabled)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[status]}"),
        disable=not enabled,
    )
    task = bar.add_task(description, total=total, status="")
    return bar, task


def deep_copy_frozen(module: torch.nn.Module) -> torch.nn.Module:
    """A frozen copy of a module (reference policy, target network)."""
    clone = copy.deepcopy(module)
    for p in clone.parameters():
        p.requires_grad_(False)
    return clone


def finite(metrics: dict[str, Any]) -> bool:
    return all(math.isfinite(v) for v in metrics.values() if isinstance(v, (int, float)))


def safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text)


class Trainer:
    """What every trainer shares: seeding, the device, the policy (default: a TinyAgent for
    `config.env_id`), the run folder, `train()` and checkpoints. A subclass builds its networks and
    optimizers after `super().__init__`, defines `iteration(i)` and names what a checkpoint holds in
    `_checkpoint_parts()`."""

    def __init__(self, config: TrainConfig, agent: Any = None, resume: bool = False) -> None:
        self.config = config
        seed_everything(config.seed)
        self.device = resolve_device(config.device)
        self.agent = agent if agent is not None else default_agent(config)
        self.agent.model.to(self.device)
        self.resume = resume
        self.run = Run(config, resume=resume)

    def train(self) -> list[dict[str, Any]]:
        """Run the training loop; returns each iteration's metrics (also in `metrics.jsonl`)."""
        return train_loop(self, resume=self.resume)

    def _checkpoint_parts(self) -> dict[str, Any]:
        raise NotImplementedError

    def old_logprobs(
        self, states: Sequence[Conversation], actions: Sequence[str], action_tokens: Sequence[Any]
    ) -> list[Any]:
        """Per-token log-probs (at the sampling temperature) of each action under the policy before
        an update, one 1-D tensor over its action tokens per example, in example order (the
        denominators of PPO's and GRPO's ratios)."""
        import torch

        from turngym.trainers.critic import token_logprobs

        config = self.config
        out: list[Any] = [None] * len(states)
        with torch.no_grad():
            for index in minibatches(len(states), config.batch_size, np.random.default_rng(0)):
                tokens = self.agent.token_batch(
                    [states[i] for i in index], [actions[i] for i in index], [action_tokens[i] for i in index]
                )
                with autocast(config, self.device):
                    logprobs = token_logprobs(self.agent.model, tokens, config.temperature).float()
                for row, i in enumerate(index):
                    out[i] = logprobs[row][tokens.action_mask[row, 1:]]
        return out

    def state_dict(self) -> dict[str, Any]:
        return checkpoint_state(self.agent, **self._checkpoint_parts())

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_checkpoint_state(state, self.agent, **self._checkpoint_parts())


def mean_metrics(logs: Sequence[dict[str, float]]) -> dict[str, float]:
    """Each key's mean over the update steps that logged it."""
    keys = dict.fromkeys(key for m in logs for key in m)
    return {key: float(np.mean([m[key] for m in logs if key in m])) for key in keys}


def train_loop(trainer: Any, resume: bool = False) -> list[dict[str, Any]]:
    """The loop every trainer runs: `trainer.iteration(i)` collects data and updates (returning
    metrics and the env steps it took), with eval at the start, every `eval_every` iterations and at the
    end, logging, checkpoints (`trainer.state_dict()`) and `curve.png`. `resume` continues from the
    newest checkpoint with its RNG state, so the run goes on exactly as if never stopped. The run's
    files are closed when it ends, also on an error."""
    try:
        return _train_loop(trainer, resume)
    finally:
        trainer.run.close()


def _train_loop(trainer: Any, resume: bool) -> list[dict[str, Any]]:
    config, run = trainer.config, trainer.run
    clock = Clock()
    start = 0
    if resume:
        if (state := run.latest_checkpoint()) is not None:
            trainer.load_state_dict(state)
            clock.load_state_dict(state["clock"])
            start = state["iteration"]
        run.rewind(start if state is not None else -1)  # without a checkpoint, iteration 0 reruns too
    if start == 0:
        run.log({**evaluate_policy(trainer.agent, config), **clock.charts(0)}, 0)
    history = []
    bar, task = progress_bar(config.iterations - start, f"{config.algo} {config.env_id}", config.progress)
    with bar:
        for iteration in range(start + 1, config.iterations + 1):
            metrics, steps = trainer.iteration(iteration)
            metrics.update(clock.charts(steps))
            last = iteration == config.iterations
            if iteration % config.eval_every == 0 or last:
                metrics.update(evaluate_policy(trainer.agent, config))
            reached = (
                config.target_success is not None
                and metrics.get("eval/success_rate", 0.0) >= config.target_success
            )
            run.log(metrics, iteration)
            history.append(metrics)
            if iteration % config.save_every == 0 or last or reached:
                run.save_checkpoint(iteration, {**trainer.state_dict(), "clock": clock.state_dict()})
            status = f"success {metrics['eval/success_rate']:.0%}" if "eval/success_rate" in metrics else ""
            bar.update(task, advance=1, **({"status": status} if status else {}))
            if reached:
                break
    run.write_curve()
    trainer.agent.save(run.dir / "agent")
    return history
