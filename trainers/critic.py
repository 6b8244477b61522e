"""Utterance-level value networks: a text encoder (a small transformer of its own, or the policy's
backbone) plus MLP heads, used by ArCHer (Q1, Q2, V1, V2) and PPO (V)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch
from torch import nn

from turngym.errors import ConfigError
from turngym.types import Conversation

if TYPE_CHECKING:
    from turngym.agents.hf import HFAgent

BACKBONES = ("own", "copy", "policy")


def token_logprobs(model: nn.Module, batch) -> torch.Tensor:
    """Per-token log-probs of `batch.input_ids[:, 1:]` under `model` (B, L-1), masked to the action."""
    logits = (
        model(input_ids=batch.input_ids, attention_mask=batch.attention_mask, position_ids=batch.position_ids)
        .logits[:, :-1]
        .float()
    )  # (B, L-1, V)
    logprobs = logits.log_softmax(-1).gather(-1, batch.input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    return logprobs * batch.action_mask[:, 1:]


class TextEncoder(nn.Module):
    """Maps conversations (optionally followed by an action) to one feature vector: the hidden state
    of the last token (left padding puts it at position -1).

    `backbone="own"`: a small GPT-2 of its own over the policy's tokenizer (trained with the heads).
    `backbone="copy"`: a trainable copy of the policy LM, initialised from its current weights (as
    RLHF value models start from the SFT model: the critic inherits what the policy already reads).
    `backbone="policy"`: the policy LM's last hidden layer, read without gradients (saves a second
    model for large policies; only the heads learn)."""

    def __init__(
        self, agent: HFAgent, backbone: str = "own", layers: int = 1, width: int = 64, heads: int = 2
    ):
        super().__init__()
        if backbone not in BACKBONES:
            raise ConfigError(f"critic backbone must be one of {list(BACKBONES)}, got {backbone!r}")
        self.backbone = backbone
        self._agent = _Shared(agent)  # not a submodule: target copies and checkpoints leave the policy alone
        if backbone == "own":
            import transformers

            if width % heads:
                raise ConfigError(f"critic width ({width}) must be a multiple of critic heads ({heads})")
            config = transformers.GPT2Config(
                vocab_size=len(agent.tokenizer),
                n_positions=max(agent.max_context_tokens + agent.sampling.max_new_tokens + 1, 64),
                n_embd=width,
                n_layer=layers,
                n_head=heads,
                resid_pdrop=0.0,
                embd_pdrop=0.0,
                attn_pdrop=0.0,
                # the tokenizer's ids, not GPT-2's 50256 (outside this vocabulary)
                bos_token_id=agent.tokenizer.eos_token_id,
                eos_token_id=agent.tokenizer.eos_token_id,
                pad_token_id=agent.tokenizer.pad_token_id,
            )
            self.model = transformers.GPT2Model(config)
            self.out_dim = width
        elif backbone == "copy":
            import copy

            self.model = copy.deepcopy(agent.model)
            self.model.requires_grad_(True)
            self.out_dim = agent.model.config.hidden_size
        else:
            self.model = None
            self.out_dim = agent.model.config.hidden_size

    @property
    def agent(self) -> HFAgent:
        return self._agent.value

    def forward(self, states: Sequence[Conversation], actions: Sequence[str] | None = None) -> torch.Tensor:
        agent = self.agent
        if actions is None:
            input_ids, attention_mask, position_ids = agent._left_pad([agent.prompt_ids(s) for s in states])
        else:
            batch = agent.token_batch(states, actions)
            input_ids, attention_mask, position_ids = (
                batch.input_ids,
                batch.attention_mask,
                batch.position_ids,
            )
        if self.backbone == "own":
            out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)
            return out.last_hidden_state[:, -1].float()  # (B, H)
        if self.backbone == "copy":
            out = self.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                output_hidden_states=True,
            )
            return out.hidden_states[-1][:, -1].float()  # (B, H)
        with torch.no_grad():
            out = agent.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                output_hidden_states=True,
            )
        return out.hidden_states[-1][:, -1].float().detach()  # (B, H)


class _Shared:
    """A reference that `copy.deepcopy` keeps as is."""

    def __init__(self, value: object) -> None:
        self.value = value

    def __deepcopy__(self, memo: dict) -> _Shared:
        return self


def mlp_head(in_dim: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1)
    )


class DoubleCritic(nn.Module):
    """ArCHer's critic: Q1(s,a), Q2(s,a) from the encoding of s followed by a; V1(s), V2(s) from s."""

    def __init__(self, encoder: TextEncoder, hidden: int = 64):
        super().__init__()
        self.encoder = encoder
        self.q1, self.q2 = mlp_head(encoder.out_dim, hidden), mlp_head(encoder.out_dim, hidden)
        self.v1, self.v2 = mlp_head(encoder.out_dim, hidden), mlp_head(encoder.out_dim, hidden)

    def q(self, states: Sequence[Conversation], actions: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(states, actions)  # (B, H)
        return self.q1(h).squeeze(-1), self.q2(h).squeeze(-1)

    def v(self, states: Sequence[Conversation]) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(states)  # (B, H)
        return self.v1(h).squeeze(-1), self.v2(h).squeeze(-1)


class ValueNet(nn.Module):
    """V(s) for PPO: an encoder and one head."""

    def __init__(self, encoder: TextEncoder, hidden: int = 64):
        super().__init__()
        self.encoder = encoder
        self.v = mlp_head(encoder.out_dim, hidden)

    def forward(self, states: Sequence[Conversation]) -> torch.Tensor:
        return self.v(self.encoder(states)).squeeze(-1)


@torch.no_grad()
def polyak_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    """target <- (1 - tau) * target + tau * source."""
    for t, s in zip(target.parameters(), source.parameters()):
        t.lerp_(s, tau)


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
