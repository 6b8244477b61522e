"""The iteration Agent-R, STeP and RISE share (`turngym train agent_r | step | rise ENV`), and the reflection
data they have in common.

Each iteration makes data with the current policy on `rollout_episodes` train tasks (seeded by the
run seed and the iteration, so a resumed run makes the same), then runs `bc_epochs` passes of BC on
it with BC's per-turn masks and weights (`trajectories.jsonl` keeps the data, tagged by iteration).
The algorithms, each in its own file: `trainers/agent_r.py` (MCTS revision trajectories),
`trainers/step.py` (teacher-corrected episodes, partial masking), `trainers/rise.py` (improved attempts,
reward-weighted).

`reflection_dataset` exports any of their trajectories as a `datasets.Dataset` in TRL's conversational
prompt-completion format: one row per trained turn (`prompt`: the conversation so far, `completion`:
the assistant turn), so TRL's `SFTTrainer` puts the loss on the completion only and the masked turns
appear only as context, as in TurnGym's BC trainer (`bc_examples`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from turngym.errors import ConfigError
from turngym.trainers.bc import TURN_MASK_KEY, TURN_WEIGHT_KEY, BCConfig, bc_examples, bc_loss
from turngym.trainers.common.collect import episode_seed, sampling_as
from turngym.trainers.common.config import TrainConfig
from turngym.trainers.common.loop import Trainer
from turngym.trainers.common.optim import gradient_steps, mean_metrics
from turngym.types import Trajectory, build_conversation

if TYPE_CHECKING:
    import datasets

FLAGS = ("invalid", "differs")  # STeP
RISE_WEIGHTINGS = ("exp_reward", "improvement", "none")
RISE_CRITERIA = ("all", "better", "best", "success")  # RISE's `workflow_convert.py --criteria`


@dataclass
class ReflectionConfig:
    """Settings of STeP and RISE data generation (`step_trajectories`, `rise_trajectories`)."""

    flag: str = "invalid"
    """STeP: which student steps are wrong. invalid: the action differs from the teacher's and the
    env answered `valid_action=False`; differs: any action that differs from the teacher's."""
    reflection: str = (
        'Thought: My last action "{action}" was a mistake: {feedback} I should {correction} instead.\n'
        "Action: {correction}"
    )
    """STeP: the reflection turn, in the agent's voice and the ReAct format (`parse_react_action`
    reads the correction back out of it). Fields: action, feedback (the env's first line), correction."""
    max_turns: int = 50
    """STeP: a cap on turns per episode (the env's own limit applies too)."""
    attempts: int = 2
    """RISE: attempts per task, the first one included (`--max_turns 2` in RISE's `bash/gen.sh`)."""
    candidates: int = 5
    """RISE: candidates per improved attempt; the best by the env's reward is kept (best-of-N;
    `--num_of_samples 1 5` in `bash/gen.sh`: 5 for the second turn)."""
    criteria: str = "all"
    """RISE: which attempts are trained on (`workflow_convert.py --criteria`; `bash/convert.sh` ships
    all). all: every attempt; better: the first, then those that beat the previous one; best: the first,
    then those no earlier attempt beats; success: those with reward 1."""
    remove_duplication: bool = True
    """RISE: drop an attempt (and the feedback to it) that repeats an earlier one or is empty
    (`--remove_duplication`, on in `bash/convert.sh`)."""
    weighting: str = "exp_reward"
    """RISE: exp_reward: exp(reward / temperature) (RISE's `exp_dataset_reward`); improvement: the
    reward gained over the previous attempt (needs criteria=better); none: 1."""
    temperature: float = 0.4
    """RISE: the temperature of exp_reward (RISE's `workflow_convert.py` default)."""

    def __post_init__(self) -> None:
        if self.flag not in FLAGS:
            raise ConfigError(f"flag must be one of {list(FLAGS)}, got {self.flag!r}")
        if self.weighting not in RISE_WEIGHTINGS:
            raise ConfigError(f"weighting must be one of {list(RISE_WEIGHTINGS)}, got {self.weighting!r}")
        if self.criteria not in RISE_CRITERIA:
            raise ConfigError(f"criteria must be one of {list(RISE_CRITERIA)}, got {self.criteria!r}")
        if self.weighting == "improvement" and self.criteria != "better":
            raise ConfigError("weighting=improvement needs criteria=better (a gain is negative otherwise)")
        for name in ("max_turns", "attempts", "candidates"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature}")


def reflection_examples(trajectory: Trajectory, history_window: int | None = None) -> list[dict[str, Any]]:
    """One TRL prompt-completion row per turn that `turn_mask` keeps: the conversation so far as
    `prompt`, the assistant turn as `completion`, and its `weight` (`turn_weights`, else 1)."""
    mask = trajectory.metadata.get(TURN_MASK_KEY) or [True] * trajectory.num_turns
    weights = trajectory.metadata.get(TURN_WEIGHT_KEY) or [1.0] * trajectory.num_turns
    if len(mask) != trajectory.num_turns or len(weights) != trajectory.num_turns:
        raise ConfigError(
            f"{TURN_MASK_KEY}/{TURN_WEIGHT_KEY} need one entry per turn ({trajectory.num_turns})"
        )
    observations, actions = trajectory.observations, trajectory.actions
    rows = []
    for i in range(trajectory.num_turns):
        if mask[i]:
            prompt = build_conversation(
                trajectory.instructions, observations[: i + 1], actions[:i], history_window
            )
            rows.append(
                {
                    "prompt": prompt,
                    "completion": [{"role": "assistant", "content": actions[i]}],
                    "weight": float(weights[i]),
                    "turn": i,
                    "env_id": trajectory.env_id,
                    "task_id": trajectory.task_id,
                    "seed": trajectory.seed,
                    "method": str(trajectory.metadata.get("method", "")),
                }
            )
    return rows


def reflection_dataset(
    trajectories: Sequence[Trajectory], history_window: int | None = None
) -> datasets.Dataset:
    """STeP, RISE or Agent-R trajectories as a `datasets.Dataset` in TRL's conversational prompt-completion
    format (`prompt`, `completion`, plus `weight`, `turn`, `env_id`, `task_id`, `seed`, `method`):
    `SFTTrainer` trains on the completions only, so masked turns are context, never targets."""
    from turngym.errors import require

    datasets_module = require("datasets", "data", "reflection_dataset")
    rows = [row for t in trajectories for row in reflection_examples(t, history_window)]
    if not rows:
        raise ConfigError("no turn left to train on: every turn is masked (no flagged step was corrected?)")
    return datasets_module.Dataset.from_list(rows)


@dataclass
class SelfTrainConfig(TrainConfig):
    """Shared by agent_r, step and rise: each iteration makes data on `rollout_episodes` train tasks
    with the current policy (sampling at `temperature`), then trains on it with BC."""

    bc_epochs: int = 2
    """Passes of BC over each iteration's data (the update of an iteration)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.bc_epochs < 1:
            raise ConfigError(f"bc_epochs must be >= 1, got {self.bc_epochs}")


class SelfTrainer(Trainer):
    """The loop shared by the three: `data(seeds)` with the current policy, then BC on it."""

    config_class: type[SelfTrainConfig] = SelfTrainConfig

    def __init__(
        self, config: SelfTrainConfig | None = None, agent: Any = None, resume: bool = False
    ) -> None:
        super().__init__(config or self.config_class(), agent, resume)
        self.make_policy_optimizer()
        self.rng = np.random.default_rng(self.config.seed)

    def data(self, seeds: Sequence[int]) -> tuple[list[Trajectory], int, dict[str, float]]:
        """This iteration's trajectories, played by `self.player` (the policy or the rollout engine),
        the env steps they took and `charts/*` stats."""
        raise NotImplementedError

    def iteration(self, iteration: int) -> tuple[dict[str, Any], int]:
        config = self.config
        first = episode_seed(config, iteration)
        with self.playing() as player, sampling_as(player, config.sampling):  # `data` plays `self.player`
            trajectories, steps, stats = self.data(list(range(first, first + config.rollout_episodes)))
        sink = self.run.iteration_sink(iteration)  # tagged: a resume drops a lost iteration's data
        for trajectory in trajectories:
            sink(trajectory)
        examples = bc_examples(
            trajectories, BCConfig(env_id=config.env_id, history_window=config.history_window)
        )
        # a turn longer than max_new_tokens (a reflection quoting a long action) is one the policy
        # cannot write, and its prompt was fit to the context assuming at most that many
        fits = [e for e in examples if len(self.agent.action_ids(e[1])) <= config.max_new_tokens]
        too_long, examples = len(examples) - len(fits), fits

        def loss(index: np.ndarray) -> tuple[torch.Tensor, dict[str, float]]:
            value = bc_loss(self.agent, [examples[i] for i in index], config, self.device)
            return value, {"losses/bc": value.item()}

        logs = gradient_steps(
            len(examples), config, self.rng, loss, self.step_policy, passes=config.bc_epochs
        )
        metrics: dict[str, Any] = {f"charts/{key}": value for key, value in stats.items()}
        metrics.update(
            {
                "charts/examples": len(examples),
                "charts/examples_too_long": too_long,
                "charts/trajectories": len(trajectories),
            }
        )
        metrics.update(mean_metrics(logs))  # none when an iteration found nothing to train on
        return metrics, steps

    def _checkpoint_parts(self) -> dict[str, Any]:
        return dict(optimizer=self.optimizer, scheduler=self.scheduler, rng=self.rng)
