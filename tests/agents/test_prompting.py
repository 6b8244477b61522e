"""ReAct and few-shot prompting shared by the LM agents."""

from __future__ import annotations

import pytest

import turngym
from turngym.agents import ExpertAgent, RandomAgent
from turngym.agents.prompting import (
    EXAMPLE_HEADER,
    REACT_STOP,
    REAL_EPISODE_HEADER,
    few_shot_messages,
    insert_few_shot,
    parse_reply,
    prepare_conversation,
    react_stop,
    react_system,
)
from turngym.errors import ConfigError
from turngym.prompts import REACT_FORMAT

CONVERSATION = [
    {"role": "system", "content": "rules"},
    {"role": "user", "content": "o0"},
    {"role": "assistant", "content": "a0"},
    {"role": "user", "content": "o1"},
]


@pytest.fixture(scope="module")
def expert_trajectories():
    return turngym.rollout("turngym/KeyDoor-v0", ExpertAgent(), num_episodes=3, seed=100)


def test_react_system_appends_format_without_touching_the_input():
    messages = react_system(CONVERSATION)
    assert messages[0]["content"] == "rules\n\n" + REACT_FORMAT
    assert messages[1:] == CONVERSATION[1:]
    assert CONVERSATION[0]["content"] == "rules"
    assert react_system(CONVERSATION[1:])[0] == {"role": "system", "content": REACT_FORMAT}


def test_react_stop_drops_the_newline_stop():
    assert react_stop(("\n",)) == REACT_STOP
    assert react_stop(("\n", "END", " ")) == ("END", *REACT_STOP)
    assert "\n" not in react_stop(("\n", "\nObservation"))
    assert react_stop(("\nObservation",)) == ("\nObservation",)


@pytest.mark.parametrize(
    ("reply", "react", "action"),
    [
        ("Thought: I need the key.\nAction: pick up the red key", True, "pick up the red key"),
        ("Thought: hm\nAction: look\nThought: again\nAction: open the red door", True, "open the red door"),
        ("pick up the red key", True, "pick up the red key"),  # no Action line: passed through
        ("I am not sure what to do", True, "I am not sure what to do"),
        ("Thought: x\nAction: look", False, "Thought: x\nAction: look"),
    ],
)
def test_parse_reply(reply, react, action):
    assert parse_reply(reply, react) == action


def test_few_shot_transcript_alternates_and_marks_examples(expert_trajectories):
    examples = few_shot_messages(expert_trajectories, k=2)
    assert [m["role"] for m in examples] == ["user", "assistant"] * (len(examples) // 2)
    turns = sum(t.num_turns for t in expert_trajectories[:2])
    assert len(examples) == 2 * turns
    assert (
        examples[0]["content"]
        == EXAMPLE_HEADER.format(i=1, n=2) + expert_trajectories[0].turns[0].observation
    )
    assert [m["content"] for m in examples[1::2]] == [
        *expert_trajectories[0].actions,
        *expert_trajectories[1].actions,
    ]
    react_examples = few_shot_messages(expert_trajectories, k=1, react=True)
    assert all(m["content"].startswith("Action: ") for m in react_examples[1::2])
    assert len(few_shot_messages(expert_trajectories)) == 2 * sum(t.num_turns for t in expert_trajectories)
    assert few_shot_messages(expert_trajectories, k=0) == []


def test_few_shot_skips_failures_and_rejects_bad_input(expert_trajectories):
    failures = [t for t in turngym.rollout("turngym/KeyDoor-v0", RandomAgent(), 30) if not t.success]
    assert failures
    examples = few_shot_messages([*failures, expert_trajectories[0]], k=1)
    assert examples[0]["content"].endswith(expert_trajectories[0].turns[0].observation)
    with pytest.raises(ConfigError, match="successful"):
        few_shot_messages(failures)
    with pytest.raises(ConfigError, match="k must be"):
        few_shot_messages(expert_trajectories, k=-1)


def test_insert_few_shot_places_examples_after_the_system_message(expert_trajectories):
    examples = few_shot_messages(expert_trajectories, k=1)
    messages = insert_few_shot(CONVERSATION, examples)
    assert messages[0] == CONVERSATION[0]
    assert messages[1 : 1 + len(examples)] == examples
    assert messages[1 + len(examples)]["content"] == REAL_EPISODE_HEADER + "o0"
    assert messages[-2:] == CONVERSATION[-2:]
    assert [m["role"] for m in messages[1:]] == ["user", "assistant"] * (len(messages[1:]) // 2) + ["user"]
    assert insert_few_shot(CONVERSATION, []) == CONVERSATION
    with pytest.raises(ConfigError, match="user message"):
        insert_few_shot(CONVERSATION[:1], examples)


def test_prepare_conversation_combines_both(expert_trajectories):
    examples = few_shot_messages(expert_trajectories, k=1, react=True)
    messages = prepare_conversation(CONVERSATION, react=True, examples=examples)
    assert messages[0]["content"].endswith(REACT_FORMAT)
    assert messages[1 : 1 + len(examples)] == examples
    assert prepare_conversation(CONVERSATION) == CONVERSATION


def test_lm_agents_are_registered_lazily():
    import subprocess
    import sys

    code = (
        "import sys, turngym; from turngym.agents import make_agent, AGENT_NAMES;"
        "assert {'openai', 'vllm'} <= set(AGENT_NAMES);"
        "heavy = [m for m in ('httpx', 'vllm', 'torch') if m in sys.modules]; assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    with pytest.raises(ConfigError, match="needs model="):
        turngym.agents.make_agent("vllm")
