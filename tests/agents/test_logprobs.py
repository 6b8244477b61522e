"""The LM head at the action tokens only (agents/logprobs.py): the same log-probs and gradients as the
full (B, L, V) logits, and no logits tensor larger than (action tokens, V) in a BC step, a GRPO
update, the critic's score or `HFAgent.action_logprobs`; chunked under `LOGITS_CHUNK_MB`, and split
into passes under `pass_memory_mb`, with the same results."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

from conftest import full_logprobs  # noqa: E402

import turngym  # noqa: E402
from turngym.agents import logprobs as head_only  # noqa: E402
from turngym.agents.hf import HFAgent  # noqa: E402
from turngym.agents.logprobs import token_logprobs  # noqa: E402
from turngym.agents.scripted import ExpertAgent, RandomAgent  # noqa: E402
from turngym.agents.tiny import save_tiny_llama  # noqa: E402
from turngym.trainers.bc import BCConfig, bc_loss  # noqa: E402
from turngym.trainers.common.critic import TextEncoder  # noqa: E402
from turngym.trainers.common.packing import pack_turns, turn_logprobs  # noqa: E402
from turngym.trainers.common.pg import ClippedPolicyUpdate  # noqa: E402
from turngym.trainers.common.replay import transitions  # noqa: E402
from turngym.trainers.grpo import GRPOConfig  # noqa: E402

ENV = "turngym/KeyDoor-v0"


@pytest.fixture(scope="module")
def llama_path(tmp_path_factory):
    return save_tiny_llama(ENV, tmp_path_factory.mktemp("llama"), hidden_size=32, layers=2)


@pytest.fixture
def agent(llama_path):
    torch.manual_seed(0)
    return HFAgent.from_pretrained(llama_path)


@pytest.fixture(scope="module")
def turns():
    episodes = turngym.rollout(ENV, ExpertAgent(), 3, seed=0) + turngym.rollout(ENV, RandomAgent(), 3, seed=1)
    return [x for t in episodes for x in transitions(t)]


class HeadShapes:
    """The shapes of every output of `model`'s LM head while in a `with` block."""

    def __init__(self, model):
        base = model.get_base_model() if hasattr(model, "get_base_model") else model
        self.head, self.shapes = base.get_output_embeddings(), []

    def __enter__(self):
        self.handle = self.head.register_forward_hook(lambda m, a, out: self.shapes.append(tuple(out.shape)))
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def grads(model):
    return [p.grad.clone() for p in model.parameters() if p.grad is not None]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_head_only_logprobs_and_gradients_equal_the_full_logits_path(agent, turns, temperature):
    batch = agent.token_batch([x.state for x in turns], [x.action for x in turns])
    expected = full_logprobs(agent.model, batch, temperature)
    expected.sum().backward()
    expected_grads = grads(agent.model)
    agent.model.zero_grad()
    got = token_logprobs(agent.model, batch, temperature)
    got.sum().backward()
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    for a, b in zip(grads(agent.model), expected_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)
    logprobs, mask = agent.action_logprobs([x.state for x in turns], [x.action for x in turns])
    with torch.no_grad():  # at the sampling temperature of the agent's own scoring: 1
        torch.testing.assert_close(logprobs, full_logprobs(agent.model, batch), atol=1e-5, rtol=0)
    assert torch.equal(mask, batch.action_mask[:, 1:])


def test_no_logits_larger_than_the_action_tokens_in_bc_grpo_the_critic_and_action_logprobs(agent, turns):
    """Each scorer's largest LM-head output is (its action tokens, V), never (B, L, V): the full
    path's (B, L, V) fails this (the critic's score and `action_logprobs` took it before)."""
    vocab = agent.model.get_output_embeddings().weight.shape[0]
    states, actions = [x.state for x in turns], [x.action for x in turns]
    action_tokens = sum(len(agent.action_ids(a)) for a in actions)
    token_logprobs(agent.model, agent.token_batch(states[:1], actions[:1]))  # the once-per-model head check
    critic = TextEncoder(agent, backbone="copy")
    token_logprobs(critic.model, agent.token_batch(states[:1], actions[:1]))
    config = GRPOConfig(env_id=ENV, batch_size=len(turns))
    update = ClippedPolicyUpdate(agent, config, "cpu")
    examples = [(s, a, 1.0) for s, a in zip(states, actions)]
    old = [torch.zeros(len(agent.action_ids(a))) for a in actions]
    advantages = torch.linspace(-1, 1, len(turns))
    jobs = {
        "bc step": lambda: bc_loss(agent, examples, BCConfig(env_id=ENV), "cpu").backward(),
        "grpo update": lambda: update.loss(states, actions, None, old, advantages)[0].backward(),
        "action_logprobs": lambda: agent.action_logprobs(states, actions)[0].sum().backward(),
    }
    for name, job in jobs.items():
        with HeadShapes(agent.model) as seen:
            job()
        assert seen.shapes and all(len(s) == 2 for s in seen.shapes), (name, seen.shapes)
        assert max(s[0] for s in seen.shapes) <= action_tokens and seen.shapes[0][1] == vocab, name
    with HeadShapes(critic.model) as seen:
        _, loglik = critic.score(states, actions)
        loglik.sum().backward()
    assert seen.shapes == [(action_tokens, vocab)], seen.shapes


def test_a_chunked_head_holds_at_most_a_chunk_of_logits_with_the_same_results(agent, turns, monkeypatch):
    batch = pack_turns(agent, [x.state for x in turns], [x.action for x in turns])
    one = turn_logprobs(agent.model, batch, 0.7)
    one.sum().backward()
    one_grads = grads(agent.model)
    agent.model.zero_grad()
    vocab = agent.model.get_output_embeddings().weight.shape[0]
    monkeypatch.setattr(head_only, "LOGITS_CHUNK_MB", 5 * 4 * vocab / 2**20)  # 5 positions' logits
    assert head_only.logits_chunk(vocab) == 5
    with HeadShapes(agent.model) as seen:
        chunked = turn_logprobs(agent.model, batch, 0.7)
        chunked.sum().backward()
    n = int(batch.mask.sum())
    assert n > 10 and max(s[0] for s in seen.shapes) == 5
    assert sum(s[0] for s in seen.shapes) == 2 * n  # each chunk once forward, once recomputed backward
    torch.testing.assert_close(chunked, one, atol=1e-6, rtol=0)
    for a, b in zip(grads(agent.model), one_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)


def test_passes_under_a_memory_bound_give_the_same_logprobs_and_gradients(agent, turns):
    batch = pack_turns(agent, [x.state for x in turns], [x.action for x in turns], pack=False)
    one = turn_logprobs(agent.model, batch)
    one.sum().backward()
    one_grads = grads(agent.model)
    agent.model.zero_grad()
    from turngym.trainers.common import packing

    longest = int(batch.attention_mask.sum(-1).max())
    memory_mb = 2 * longest * packing.activation_bytes_per_token(agent.model) / 2**20  # ~2 rows a pass
    assert packing.pass_tokens(agent.model, memory_mb) in (2 * longest - 1, 2 * longest)
    budget = packing.pass_tokens(agent.model, memory_mb)
    assert len(packing._passes(batch, None, budget)) > batch.num_rows // 3
    calls = []
    body = agent.model.get_decoder()
    handle = body.register_forward_hook(lambda m, a, out: calls.append(tuple(out[0].shape[:2])))
    try:
        split = turn_logprobs(agent.model, batch, pass_mb=memory_mb)
        split.sum().backward()
    finally:
        handle.remove()
    assert all(rows * width <= budget or rows == 1 for rows, width in calls), (budget, calls)
    assert sum(rows for rows, _ in calls) == 2 * batch.num_rows  # each pass again in the backward pass
    torch.testing.assert_close(split, one, atol=1e-6, rtol=0)
    for a, b in zip(grads(agent.model), one_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)


def test_a_row_longer_than_the_budget_runs_with_layer_checkpointing(agent, turns):
    """A pass budget under one row's length: each row gets a pass of its own, run once through the body
    with each layer checkpointed (its attention runs again in the backward pass, the body does not:
    a split pass would be recomputed whole, holding every layer's activations at once), with the same
    log-probs and gradients, and the model's switches as they were afterwards."""
    from turngym.trainers.common import packing

    batch = pack_turns(agent, [x.state for x in turns], [x.action for x in turns], pack=False)
    one = turn_logprobs(agent.model, batch)
    one.sum().backward()
    one_grads = grads(agent.model)
    agent.model.zero_grad()
    switches = packing.layer_switches(agent.model)
    assert switches and not any(m.gradient_checkpointing or m.training for m in switches)
    shortest = int(batch.attention_mask.sum(-1).min())
    memory_mb = (shortest - 1) * packing.activation_bytes_per_token(agent.model) / 2**20
    assert len(packing._passes(batch, None, packing.pass_tokens(agent.model, memory_mb))) == batch.num_rows
    body = agent.model.get_decoder()
    bodies, attentions = [], []
    handles = [
        body.register_forward_hook(lambda *_: bodies.append(1)),
        body.layers[0].self_attn.register_forward_hook(lambda *_: attentions.append(1)),
    ]
    try:
        split = turn_logprobs(agent.model, batch, pass_mb=memory_mb)
        split.sum().backward()
    finally:
        for handle in handles:
            handle.remove()
    assert len(bodies) == batch.num_rows and len(attentions) == 2 * batch.num_rows
    torch.testing.assert_close(split, one, atol=1e-6, rtol=0)
    for a, b in zip(grads(agent.model), one_grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-4)
    assert not any(m.gradient_checkpointing or m.training for m in switches)


def test_pass_memory_mb_must_not_be_negative():
    with pytest.raises(turngym.ConfigError, match="pass_memory_mb"):
        BCConfig(pass_memory_mb=-1)


def test_the_critic_score_equals_the_full_pass(agent, turns):
    critic = TextEncoder(agent, backbone="copy")
    states, actions = [x.state for x in turns], [x.action for x in turns]
    batch = agent.token_batch(states, actions)
    with torch.no_grad():
        features, loglik = critic.score(states, actions)
        out = critic.model(
            input_ids=batch.input_ids,
            attention_mask=batch.attention_mask,
            position_ids=batch.position_ids,
            output_hidden_states=True,
        )
        expected = full_logprobs(critic.model, batch).sum(-1)
        state_end = batch.input_ids.shape[1] - 1 - batch.action_mask.sum(-1)
        expected_features = out.hidden_states[-1][np.arange(len(states)), state_end]
    torch.testing.assert_close(loglik, expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(features, expected_features, atol=1e-5, rtol=0)
