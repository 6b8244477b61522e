"""The policy-gradient update PPO and GRPO share (and the keys that configure it): PPO's clipped surrogate
over the action tokens, each token carrying its turn's advantage, an optional KL penalty to the frozen
reference policy, and the policy's optimizer. An algorithm file keeps only what makes it that algorithm:
where the advantages come from (PPO: GAE over a value network; GRPO: the group of rollouts of one task)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from turngym.errors import ConfigError
from turngym.trainers.common.optim import deep_copy_frozen, optimizer_step, policy_optimizer
from turngym.trainers.common.packing import pack_turns, turn_logprobs
from turngym.trainers.common.runtime import autocast
from turngym.trainers.credit.base import CreditConfig

if TYPE_CHECKING:
    from turngym.agents.hf import HFAgent
    from turngym.types import Conversation


@dataclass
class PolicyGradientConfig(CreditConfig):
    """The keys of the clipped policy-gradient update (PPO, GRPO); credit assignment keys from
    `CreditConfig`."""

    clip_range: float = 0.2
    """Clipping of the probability ratio."""
    ppo_epochs: int = 2
    """Passes over each iteration's turns."""
    kl_coef: float = 0.0
    """Weight of the KL penalty to the reference policy (the policy at the start of training)."""
    minibatch_episodes: int = 0
    """0: each minibatch is `batch_size` turns drawn at random from all episodes. k >= 1: each is k
    whole episodes drawn at random, so that with pack_episodes each episode is one forward pass
    (docs/packing.md); with grad_accum_steps, minibatches weigh by their share of episodes."""

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.clip_range < 1:
            raise ConfigError(f"clip_range must be in (0, 1), got {self.clip_range}")
        if self.ppo_epochs < 1 or self.kl_coef < 0:
            raise ConfigError(
                f"ppo_epochs must be >= 1 and kl_coef >= 0, got {self.ppo_epochs} and {self.kl_coef}"
            )
        if self.minibatch_episodes < 0:
            raise ConfigError(
                f"minibatch_episodes must be >= 0 (0: minibatches of batch_size turns), got {self.minibatch_episodes}"
            )


def kl_penalty(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean per-token KL(pi || ref) on the sampled action tokens (the non-negative k3 estimator)."""
    log_ratio = (ref_logprobs - logprobs) * mask
    return ((log_ratio.exp() - 1 - log_ratio) * mask).sum() / mask.sum().clamp(min=1)


def clipped_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip: float,
) -> tuple[torch.Tensor, float]:
    """PPO's clipped surrogate, per token (B, L-1), each token carrying its action's advantage (B,).
    Returns (loss averaged over action tokens, fraction of clipped tokens)."""
    ratio = (logprobs - old_logprobs).exp()  # (B, L-1)
    adv = advantages.unsqueeze(-1)  # (B, 1)
    surrogate = torch.minimum(ratio * adv, ratio.clamp(1 - clip, 1 + clip) * adv)
    loss = -(surrogate * mask).sum() / mask.sum().clamp(min=1)
    clipped = (((ratio - 1).abs() > clip).float() * mask).sum() / mask.sum().clamp(min=1)
    return loss, clipped.item()


class ClippedPolicyUpdate:
    """PPO's clipped-surrogate update of `agent`'s policy: its optimizer and, with `kl_coef`, the frozen
    reference policy of the KL penalty. `loss` scores one minibatch; `step` clips, steps and zeroes."""

    def __init__(self, agent: HFAgent, config: PolicyGradientConfig, device: str) -> None:
        self.agent, self.config, self.device = agent, config, device
        self.reference = deep_copy_frozen(agent.model) if config.kl_coef > 0 else None
        self.optimizer, self.scheduler = policy_optimizer(agent.model, config)

    def loss(
        self,
        states: Sequence[Conversation],
        actions: Sequence[str],
        action_tokens: Sequence[Any],
        old: Sequence[torch.Tensor],
        advantages: torch.Tensor,
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """The clipped surrogate (+ kl_coef x KL) of one minibatch of turns: `old` holds each action's
        per-token log-probs before the update (`Trainer.old_logprobs`), `advantages` one value per turn."""
        config = self.config
        tokens = pack_turns(self.agent, states, actions, action_tokens, pack=config.pack_episodes)
        mask = tokens.mask
        old_logprobs = torch.zeros(mask.shape, device=self.device)
        old_logprobs[mask] = torch.cat(list(old))  # actions sit at the right end of each row, in order
        with autocast(config, self.device):
            logprobs = turn_logprobs(self.agent.model, tokens, config.temperature)
        loss, clipped = clipped_policy_loss(
            logprobs, old_logprobs, advantages, mask.float(), config.clip_range
        )
        metrics = {"losses/policy": loss.item(), "charts/clip_fraction": clipped}
        if self.reference is not None:
            with torch.no_grad(), autocast(config, self.device):
                ref = turn_logprobs(self.reference, tokens, config.temperature)
            kl = kl_penalty(logprobs, ref, mask.float())
            loss = loss + config.kl_coef * kl
            metrics["losses/kl"] = kl.item()
        return loss, metrics

    def step(self) -> float:
        """Clip, step and zero the policy's optimizer; the pre-clip gradient norm."""
        return optimizer_step(
            self.optimizer, self.scheduler, self.agent.model.parameters(), self.config.max_grad_norm
        )

    def checkpoint_parts(self) -> dict[str, Any]:
        return dict(optimizer=self.optimizer, scheduler=self.scheduler, reference=self.reference)
