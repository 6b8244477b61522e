"""Turn-level PPO: a value head V(s) over conversations, GAE over turns, the clipped surrogate applied to
every token of an action with that turn's advantage, and an optional KL penalty to the reference policy."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from turngym.errors import ConfigError
from turngym.trainers.common.collect import rollout_stats
from turngym.trainers.common.critic import BACKBONES, TextEncoder, ValueNet
from turngym.trainers.common.engines import logprob_mismatch
from turngym.trainers.common.loop import Trainer
from turngym.trainers.common.optim import make_optimizer, mean_metrics, optimizer_step
from turngym.trainers.common.packing import episode_gradient_steps
from turngym.trainers.common.pg import ClippedPolicyUpdate, PolicyGradientConfig
from turngym.trainers.common.replay import transitions
from turngym.trainers.common.runtime import autocast
from turngym.trainers.credit import build_credit, record_credit


@dataclass
class PPOConfig(PolicyGradientConfig):
    """Turn-level PPO hyperparameters (GAE runs over the per-turn rewards `credit` gives)."""

    gamma: float = 0.95
    """Discount over turns."""
    gae_lambda: float = 0.95
    """GAE lambda over turns."""
    ppo_epochs: int = 4
    """Passes over each iteration's turns."""
    critic_lr: float = 1e-3
    """Value network learning rate."""
    normalize_advantages: bool = True
    """Standardise advantages per iteration."""
    critic_backbone: str = "own"
    """own: a small transformer encoder of its own; policy: a value head on the policy's backbone."""
    critic_layers: int = 1
    """Own value encoder: transformer blocks."""
    critic_width: int = 64
    """Own value encoder: hidden size."""
    critic_heads: int = 2
    """Own value encoder: attention heads."""

    algo = "ppo"

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("gamma", "gae_lambda"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.critic_lr <= 0:
            raise ConfigError(f"critic_lr must be > 0, got {self.critic_lr}")
        if self.critic_backbone not in BACKBONES:
            raise ConfigError(
                f"critic_backbone must be one of {list(BACKBONES)}, got {self.critic_backbone!r}"
            )


def gae(
    rewards: list[float], values: list[float], next_value: float, done: bool, gamma: float, lam: float
) -> list[float]:
    """Generalised advantage estimates over one episode's turns (bootstraps `next_value` unless done)."""
    advantages = [0.0] * len(rewards)
    running = 0.0
    for t in reversed(range(len(rewards))):
        following = next_value * (1 - done) if t == len(rewards) - 1 else values[t + 1]
        delta = rewards[t] + gamma * following - values[t]
        running = delta + gamma * lam * running
        advantages[t] = running
    return advantages


class PPOTrainer(Trainer):
    """Trains `agent` (default: a TinyAgent for `config.env_id`) with turn-level PPO."""

    def __init__(
        self, config: PPOConfig | None = None, agent: Any = None, resume: bool = False, judge: Any = None
    ) -> None:
        config = config or PPOConfig()
        super().__init__(config, agent, resume)
        config = self.config
        self.credit = build_credit(config, self.agent, judge=judge)
        encoder = TextEncoder(
            self.agent, config.critic_backbone, config.critic_layers, config.critic_width, config.critic_heads
        )
        self.value = ValueNet(encoder).to(self.device)
        self.update = ClippedPolicyUpdate(self.agent, config, self.device)
        self.value_optimizer, _ = make_optimizer(self.value.parameters(), config.critic_lr)
        self.rng = np.random.default_rng(config.seed)

    def iteration(self, iteration: int) -> tuple[dict[str, Any], int]:
        config = self.config
        trajectories = self.rollouts(iteration)
        turn_rewards = self.credit.assign(trajectories)
        turn_advantages = []
        states, actions, action_tokens, advantages, returns = [], [], [], [], []
        rollout_logprobs = []  # the rollout engine's log-probs of each action's tokens
        for t, rewards in zip(trajectories, turn_rewards):
            turns = transitions(t, config.history_window, config.gamma)
            with torch.no_grad(), autocast(config, self.device):
                values = self.value([x.state for x in turns] + [turns[-1].next_state]).float().tolist()
            adv = gae(
                [float(r) for r in rewards],
                values[:-1],
                values[-1],
                turns[-1].done,
                config.gamma,
                config.gae_lambda,
            )
            states += [x.state for x in turns]
            actions += [x.action for x in turns]
            action_tokens += [x.action_tokens for x in turns]
            rollout_logprobs += [x.action_logprobs for x in turns]
            advantages += adv
            turn_advantages.append(np.array(adv))
            returns += [a + v for a, v in zip(adv, values[:-1])]
        credit_logs = record_credit(
            self.run, iteration, self.credit, trajectories, turn_rewards, turn_advantages
        )
        advantages_t = torch.tensor(advantages, device=self.device)
        if config.normalize_advantages and len(advantages) > 1:
            advantages_t = (advantages_t - advantages_t.mean()) / (advantages_t.std() + 1e-8)
        returns_t = torch.tensor(returns, device=self.device)
        old = self.old_logprobs(states, actions, action_tokens)

        def loss(index: np.ndarray) -> tuple[torch.Tensor, dict[str, float]]:
            batch_states = [states[i] for i in index]
            policy_loss, metrics = self.update.loss(
                batch_states,
                [actions[i] for i in index],
                [action_tokens[i] for i in index],
                [old[i] for i in index],
                advantages_t[index],
                [rollout_logprobs[i] for i in index],
            )
            with autocast(config, self.device):
                values = self.value(batch_states).float()
            value_loss = F.mse_loss(values, returns_t[index])
            return policy_loss + value_loss, {**metrics, "losses/value": value_loss.item()}

        def step() -> None:
            self.update.step()
            optimizer_step(self.value_optimizer, None, self.value.parameters(), config.max_grad_norm)

        logs = episode_gradient_steps(
            [t.num_turns for t in trajectories], config, self.rng, loss, step, config.ppo_epochs
        )
        metrics = mean_metrics(logs)
        metrics.update(rollout_stats(trajectories))
        metrics.update(credit_logs)
        if self.engine is not None:
            metrics["charts/rollout_logprob_mismatch"] = logprob_mismatch(old, rollout_logprobs)
        return metrics, sum(t.num_turns for t in trajectories)

    def _checkpoint_parts(self) -> dict[str, Any]:
        return dict(
            **self.update.checkpoint_parts(),
            value=self.value,
            value_optimizer=self.value_optimizer,
            rng=self.rng,
            credit=self.credit,
        )
