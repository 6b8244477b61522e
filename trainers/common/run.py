"""The run folder `runs/NAME/`: config.yaml, metrics (JSONL and TensorBoard), episodes, checkpoints
(with the RNG state, for exact resumes), rewinding on resume, and curve.png."""

from __future__ import annotations

import io
import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from turngym.errors import ConfigError, require
from turngym.storage import JsonlWriter, atomic_write_bytes, atomic_write_text, iter_jsonl, to_json_line
from turngym.trainers.common.config import TrainConfig, config_yaml

if TYPE_CHECKING:
    from turngym.agents.hf import HFAgent
    from turngym.types import Trajectory


class Run:
    """`runs/NAME/`: config.yaml, metrics.jsonl, TensorBoard events, checkpoints/, trajectories.jsonl,
    credit.jsonl (per-turn credit, policy-gradient trainers), curve.png. Metrics are flat dicts with namespaced keys (`losses/critic`, `charts/success_rate`)."""

    map_location: Any = None  # where checkpoint tensors load (`torch.load`): where they were saved

    def __init__(self, config: TrainConfig, resume: bool = False) -> None:
        self.config = config
        self.dir = Path(config.runs_dir) / config.name
        self.checkpoints = self.dir / "checkpoints"
        config_path = self.dir / "config.yaml"
        check_run_folder(config, resume)
        self.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(config_path, config_yaml(config))
        self.trajectories = JsonlWriter(self.dir / "trajectories.jsonl")
        self.eval_trajectories = JsonlWriter(self.dir / "eval_trajectories.jsonl")
        self._metrics = JsonlWriter(self.dir / "metrics.jsonl")
        self._credit: JsonlWriter | None = None
        self._tb = None
        if config.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(self.dir))

    @property
    def credit(self) -> JsonlWriter:
        """`credit.jsonl`: each episode's per-turn rewards and advantages (opened on first use)."""
        if self._credit is None:
            self._credit = JsonlWriter(self.dir / "credit.jsonl")
        return self._credit

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
        if self._credit is not None:
            self._credit.close()
            self._credit = None
        self.eval_trajectories.close()
        for name in ("metrics.jsonl", "trajectories.jsonl", "credit.jsonl", "eval_trajectories.jsonl"):
            path = self.dir / name
            records = list(iter_jsonl(path)) if path.exists() else []
            kept = [r for r in records if _iteration(r) <= last_iteration]
            if len(kept) < len(records):
                atomic_write_bytes(path, b"".join(to_json_line(r) for r in kept))
        self.trajectories = JsonlWriter(self.dir / "trajectories.jsonl")
        self.eval_trajectories = JsonlWriter(self.dir / "eval_trajectories.jsonl")
        self._metrics = JsonlWriter(self.dir / "metrics.jsonl")

    # checkpoints: one torch file per save, written atomically; the newest `keep_checkpoints` are kept
    def iteration_sink(self, iteration: int, **tags: Any) -> Callable[[Trajectory], None]:
        """A rollout `sink` writing each trajectory to `trajectories.jsonl` tagged with its `iteration` (so a
        resume can drop a lost iteration's episodes) and `tags`."""
        return _tagged_sink(self.trajectories, iteration, tags)

    def eval_sink(self, iteration: int) -> Callable[[Trajectory], None]:
        """The sink of the held-out eval after `iteration` (0: before training): `eval_trajectories.jsonl`,
        each episode tagged with the iteration, so `turngym view` shows what the policy did there."""
        return _tagged_sink(self.eval_trajectories, iteration, {})

    def save_checkpoint(self, iteration: int, state: dict[str, Any]) -> Path:
        import torch

        buffer = io.BytesIO()
        # config.yaml's text goes along: the checkpoint alone says how to rebuild its policy
        # (`checkpoint_agent`), whose base model it names rather than copies
        saved = {
            "iteration": iteration,
            "global_rng": rng_state(),
            "config": config_yaml(self.config),
            **state,
        }
        torch.save(saved, buffer)
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
        state = torch.load(paths[-1], weights_only=False, map_location=self.map_location)
        set_rng_state(state["global_rng"])
        return state

    def write_curve(self) -> Path:
        """curve.png: this run's curves, as `turngym report RUN` draws them."""
        from turngym.trainers.common.curves import load_run, plot_runs

        return plot_runs([load_run(self.dir, x_axis=self.config.curve_axis)], self.dir / "curve.png")

    def close(self) -> None:
        self.trajectories.close()
        self.eval_trajectories.close()
        self._metrics.close()
        if self._credit is not None:
            self._credit.close()
        if self._tb is not None:
            self._tb.close()


def check_run_folder(config: TrainConfig, resume: bool) -> None:
    """Whether `config` may start (or, with `resume`, continue) the run in `runs/NAME/`: a one-line
    `ConfigError` if not. Cheap (no model, no env), so a command checks before its work."""
    run_dir = Path(config.runs_dir) / config.name
    config_path = run_dir / "config.yaml"
    if not resume:
        if run_dir.exists() and any(run_dir.iterdir()):
            raise ConfigError(f"{run_dir} already holds a run: pass --resume, or choose another run_name")
        return
    if not config_path.exists():
        raise ConfigError(f"cannot resume: {run_dir} has no config.yaml (no run there yet)")
    yaml = require("yaml", "train", "config files")
    saved = yaml.safe_load(config_path.read_text()) or {}
    current = yaml.safe_load(config_yaml(config))
    for key, what in (("algo", "algorithm"), ("env_id", "env")):
        if _bare(saved.get(key)) != _bare(current.get(key)):
            raise ConfigError(
                f"cannot resume {run_dir}: it holds {saved.get('algo')} on {_bare(saved.get('env_id'))}, "
                f"not {current.get('algo')} on {_bare(current.get('env_id'))} (its {what} differs): "
                "choose another run_name"
            )
    # the loop's length may grow (resuming extends the same run) and the display may change; a run
    # resumed with another number of processes keeps its global batch by its accumulation
    free = {"iterations", config.loop_unit, "progress", "env_id", "keep_best", "grad_accum_steps"}
    changed = sorted(k for k in set(saved) | set(current) if k not in free and saved.get(k) != current.get(k))
    if changed:
        raise ConfigError(f"cannot resume {run_dir}: config differs from its config.yaml in {changed}")


def _bare(env_id: Any) -> Any:
    """An env id without the module that registers it ("file.py:my/Env-v0" -> "my/Env-v0")."""
    return env_id.rpartition(":")[2] if isinstance(env_id, str) else env_id


def _tagged_sink(writer: JsonlWriter, iteration: int, tags: dict[str, Any]) -> Callable[[Trajectory], None]:
    def sink(trajectory: Trajectory) -> None:
        trajectory.metadata["iteration"] = iteration
        trajectory.metadata.update(tags)
        writer.write(trajectory)

    return sink


def _iteration(record: dict[str, Any]) -> int:
    """The iteration a metrics record or a tagged trajectory belongs to (-1 if untagged)."""
    return record.get("iteration", record.get("metadata", {}).get("iteration", -1))


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
    return {"model": module_state(agent.model), "generator": agent.generator.get_state()}


def load_agent_state(agent: HFAgent, state: dict[str, Any]) -> None:
    load_module_state(agent.model, state["model"])
    agent.generator.set_state(state["generator"])


ADAPTER_KEY = "lora_adapter"  # a module state holding only a LoRA adapter's weights


def module_state(part: Any) -> dict[str, Any]:
    """What a checkpoint keeps of a part: for a LoRA model whose base weights are frozen (the policy,
    or its frozen reference copy) only the adapter's weights, `{ADAPTER_KEY: peft's
    get_peft_model_state_dict}` (a rank-8 adapter is a few MB where SmolLM2's base is 544): the base
    is named in config.yaml and rebuilt from there; for anything else its whole `state_dict()`."""
    if _adapter_only(part):
        from peft import get_peft_model_state_dict

        return {ADAPTER_KEY: get_peft_model_state_dict(part)}
    return part.state_dict()


def load_module_state(part: Any, state: dict[str, Any]) -> None:
    """Restore what `module_state` kept (an adapter onto the rebuilt base; checkpoints written before
    adapters were kept alone hold the whole state and load as such)."""
    if set(state) != {ADAPTER_KEY}:
        part.load_state_dict(state)
        return
    from peft import set_peft_model_state_dict

    result = set_peft_model_state_dict(part, state[ADAPTER_KEY])
    unexpected = list(getattr(result, "unexpected_keys", []))
    if unexpected:
        raise ConfigError(
            f"the checkpoint's LoRA adapter does not fit this model (unexpected weights {unexpected[:3]}): "
            "was it written with other lora_* keys?"
        )


def checkpoint_agent(path: str | Path, device: str | None = None) -> HFAgent:
    """The policy of a training checkpoint (`runs/NAME/checkpoints/iter_N.pt`): built as its run
    built it (from the config the checkpoint carries, else its run's config.yaml: the model it names
    with its LoRA adapter, or the default TinyAgent), then given the checkpoint's weights, with the
    run's eval settings so that `turngym eval --agent` plays as the run's evals did."""
    import dataclasses

    import torch

    from turngym.trainers.common.policy import build_policy, eval_settings
    from turngym.trainers.common.runtime import resolve_device

    path = Path(path)
    if not path.is_file():
        raise ConfigError(
            f"checkpoint {path} does not exist (a run keeps its newest in runs/NAME/checkpoints/)"
        )
    try:
        state = torch.load(path, weights_only=False, map_location="cpu")
    except Exception as exc:  # torch says it in a paragraph; what it was and why, on one line
        raise ConfigError(f"{path} is not a training checkpoint: {str(exc).splitlines()[0]}") from None
    if not isinstance(state, dict) or "agent" not in state:
        raise ConfigError(f"{path} is not a training checkpoint (no policy in it)")
    yaml = require("yaml", "train", "config files")
    config_path = path.parent.parent / "config.yaml"
    if "config" in state:
        saved = yaml.safe_load(state["config"])
    elif config_path.exists():  # checkpoints written before they carried their config
        saved = yaml.safe_load(config_path.read_text())
    else:
        raise ConfigError(
            f"{path} carries no config and {config_path} does not exist: cannot rebuild its policy"
        )
    # the policy's keys are TrainConfig's; a run's own class may leave some of the others unset
    # (BC's deprecated `iterations`), and those keep TrainConfig's defaults here
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    config = TrainConfig(
        **{k: v for k, v in saved.items() if k in defaults and (v is not None or defaults[k] is None)}
    )
    # where it is evaluated now, not where it trained (a GPU run's checkpoint plays on a laptop)
    agent = build_policy(config, resolve_device(device or "auto"))
    load_agent_state(agent, state["agent"])
    agent.eval_settings = eval_settings(config)
    return agent


def _adapter_only(part: Any) -> bool:
    """A PEFT LoRA model that trains nothing but its adapter (a critic copy that trains the whole
    model is kept whole)."""
    if not getattr(part, "peft_config", None) or not hasattr(part, "named_parameters"):
        return False
    return all("lora_" in name for name, p in part.named_parameters() if p.requires_grad)


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
            state[name] = module_state(part)
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
            load_module_state(part, state[name])
