"""Multi-turn GRPO: G rollouts of the same task (the same seed); each episode's total reward, normalised
within its group, is the advantage of every token of every action it took; PPO's clipped surrogate and
an optional KL penalty to the reference policy. No critic.

What is followed: the group advantage (R - mean) / (sample std + 1e-6) over one reward per episode, as
TRL's GRPOTrainer and verl's `compute_grpo_outcome_advantage` compute it for one response per prompt.
verl-agent's multi-turn GRPO (`verl/trainer/ppo/core_algos.py`, `compute_grpo_outcome_advantage` with
`compute_mean_std_cross_steps=True`; `ray_trainer.py`, `apply_invalid_action_penalty`) differs in two
terms, each a key here: its mean and std run over every step row of the group, so an episode weighs by
its number of turns (`group_stats_over=steps`), and 0.1 is subtracted from the score of each turn whose
action was invalid (`invalid_action_penalty=0.1`); with both set the advantages equal verl-agent's
(tests/trainers/test_credit_originals.py). Its token-mean loss over a minibatch, PPO epochs and clipping
are the shared update's (`trainers/common/pg.py`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from turngym.errors import ConfigError
from turngym.trainers.common.collect import episode_seed, rollout_stats
from turngym.trainers.common.engines import logprob_mismatch
from turngym.trainers.common.loop import Trainer
from turngym.trainers.common.optim import mean_metrics
from turngym.trainers.common.packing import episode_gradient_steps
from turngym.trainers.common.pg import ClippedPolicyUpdate, PolicyGradientConfig
from turngym.trainers.common.replay import transitions
from turngym.trainers.credit import (
    GROUP_STATS,
    Credit,
    build_credit,
    group_advantages,  # noqa: F401  (re-exported: turngym.trainers.grpo.group_advantages)
    outcome_advantages,
    record_credit,
    turn_group_advantages,
)
from turngym.types import Trajectory


@dataclass
class GRPOConfig(PolicyGradientConfig):
    """Trajectory-level group-relative policy optimisation (per-turn with `credit`: see
    trainers/credit/)."""

    group_size: int = 8
    """Rollouts per task (G); `rollout_episodes` must be a multiple of it."""
    scale_by_std: bool = True
    """Divide by the group's return std (GRPO); False keeps only the mean baseline (Dr. GRPO). GiGPO
    uses gigpo_mode instead."""
    group_stats_over: str = ""
    """What the outcome advantage's group mean and std run over: episodes (one score per episode, as
    TRL's GRPOTrainer) or steps (every turn, so longer episodes weigh more: verl-agent's
    compute_mean_std_cross_steps=True). "": steps with credit=gigpo (as verl-agent), else episodes."""
    invalid_action_penalty: float | None = None
    """Subtracted from the outcome score (and GiGPO's step return) of a turn whose action was invalid
    (info["valid_action"] is False), as verl-agent's apply_invalid_action_penalty. None: 0.1 with
    credit=gigpo (verl-agent's invalid_action_penalty_coef), else 0. Used by credit=outcome and gigpo."""
    turn_scale_by_std: bool = False
    """With per-turn rewards (credit=spa, info_gain, judge): also divide each turn's centred return by
    the group's std at that turn; IGPO's compute_grpo_outcome_advantage does not (False)."""

    algo = "grpo"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.group_size < 2:
            raise ConfigError(f"group_size must be >= 2, got {self.group_size}")
        if self.rollout_episodes % self.group_size:
            raise ConfigError(
                f"rollout_episodes ({self.rollout_episodes}) must be a multiple of group_size ({self.group_size})"
            )
        if self.group_stats_over not in ("", *GROUP_STATS):
            raise ConfigError(
                f"group_stats_over must be one of {list(GROUP_STATS)} (or empty), got {self.group_stats_over!r}"
            )
        if self.invalid_action_penalty is not None and self.invalid_action_penalty < 0:
            raise ConfigError(f"invalid_action_penalty must be >= 0, got {self.invalid_action_penalty}")


def grpo_advantages(
    config: GRPOConfig, credit: Credit, trajectories: Sequence[Trajectory]
) -> tuple[list[np.ndarray] | None, list[np.ndarray]]:
    """Each turn's GRPO advantage, and the per-turn rewards of a reward-kind credit method (None for
    GiGPO): the episode's group advantage (`credit=outcome`), GiGPO's own advantages, or, from the
    method's per-turn rewards, the group baseline at each turn (`turn_group_advantages`, IGPO's)."""
    rewards = None if credit.kind == "advantage" else credit.assign(trajectories)
    if config.credit == "outcome":  # each turn carries its episode's advantage (less any penalty)
        advantages = outcome_advantages(
            trajectories,
            config.group_size,
            config.scale_by_std,
            config.group_stats_over or "episodes",
            config.invalid_action_penalty or 0.0,
        )
    elif rewards is None:  # GiGPO: per-turn advantages
        advantages = credit.assign(trajectories)
    else:
        advantages = turn_group_advantages(rewards, config.group_size, config.turn_scale_by_std)
    return rewards, advantages


class GRPOTrainer(Trainer):
    """Trains `agent` (default: a TinyAgent for `config.env_id`) with multi-turn GRPO. `judge` (an
    Agent) is the judge of `credit=judge` when not named by `judge_model`."""

    def __init__(
        self, config: GRPOConfig | None = None, agent: Any = None, resume: bool = False, judge: Any = None
    ) -> None:
        super().__init__(config or GRPOConfig(), agent, resume)
        config = self.config
        self.credit = build_credit(config, self.agent, judge=judge)
        self.update = ClippedPolicyUpdate(self.agent, config, self.device)
        self.rng = np.random.default_rng(config.seed)

    def rollout_kwargs(self, iteration: int) -> dict[str, Any]:
        config = self.config
        groups = config.rollout_episodes // config.group_size
        base = episode_seed(config, iteration)
        return {
            "seeds": [base + g for g in range(groups) for _ in range(config.group_size)]
        }  # one task a group

    def iteration(self, iteration: int) -> tuple[dict[str, Any], int]:
        config = self.config
        trajectories = self.rollouts(iteration)
        rewards, advantages = grpo_advantages(config, self.credit, trajectories)
        credit_logs = record_credit(self.run, iteration, self.credit, trajectories, rewards, advantages)
        examples = [
            (turn, float(a))
            for t, turn_advantages in zip(trajectories, advantages)
            for turn, a in zip(transitions(t, config.history_window), turn_advantages)
        ]
        old = self.old_logprobs(
            [turn.state for turn, _ in examples],
            [turn.action for turn, _ in examples],
            [turn.action_tokens for turn, _ in examples],
        )

        def loss(index: np.ndarray) -> tuple[torch.Tensor, dict[str, float]]:
            turns = [examples[i][0] for i in index]
            advantages = torch.tensor([examples[i][1] for i in index], device=self.device)
            return self.update.loss(
                [turn.state for turn in turns],
                [turn.action for turn in turns],
                [turn.action_tokens for turn in turns],
                [old[i] for i in index],
                advantages,
                [turn.action_logprobs for turn in turns],
            )

        logs = episode_gradient_steps(
            [t.num_turns for t in trajectories], config, self.rng, loss, self.update.step, config.ppo_epochs
        )
        metrics = mean_metrics(logs)
        metrics.update(rollout_stats(trajectories))
        metrics.update(credit_logs)
        if self.engine is not None:
            rollout = [turn.action_logprobs for turn, _ in examples]
            metrics["charts/rollout_logprob_mismatch"] = logprob_mismatch(old, rollout)
        return metrics, sum(t.num_turns for t in trajectories)

    def _checkpoint_parts(self) -> dict[str, Any]:
        return dict(**self.update.checkpoint_parts(), rng=self.rng, credit=self.credit)
