from __future__ import annotations

import pytest

from turngym import build_conversation, parse_react_action


def test_full_history():
    messages = build_conversation("rules", ["o0", "o1", "o2"], ["a0", "a1"])
    assert messages == [
        {"role": "system", "content": "rules"},
        {"role": "user", "content": "o0"},
        {"role": "assistant", "content": "a0"},
        {"role": "user", "content": "o1"},
        {"role": "assistant", "content": "a1"},
        {"role": "user", "content": "o2"},
    ]


@pytest.mark.parametrize(
    ("window", "kept_users"),
    [
        (0, ["o0", "[4 earlier turn(s) omitted]\no5"]),
        (2, ["o0", "[2 earlier turn(s) omitted]\no3", "o4", "o5"]),
        (4, None),
        (10, None),
    ],
)
def test_history_window_keeps_task_and_last_turns(window, kept_users):
    observations = [f"o{i}" for i in range(6)]
    actions = [f"a{i}" for i in range(5)]
    messages = build_conversation("rules", observations, actions, history_window=window)
    users = [m["content"] for m in messages if m["role"] == "user"]
    assert users == (kept_users or observations)
    assert messages[0]["role"] == "system"
    roles = [m["role"] for m in messages[1:]]
    assert roles == ["user", "assistant"] * (len(roles) // 2) + ["user"]


def test_finished_episode_and_bad_lengths():
    assert build_conversation("r", ["o0"], ["a0"])[-1] == {"role": "assistant", "content": "a0"}
    with pytest.raises(ValueError, match="observations"):
        build_conversation("r", ["o0"], ["a0", "a1"])
    with pytest.raises(ValueError, match="history_window"):
        build_conversation("r", ["o0"], [], history_window=-1)


@pytest.mark.parametrize(
    ("text", "action"),
    [
        ("Thought: I need the key.\nAction: pick up the red key", "pick up the red key"),
        ("thought: x\naction:   open the red door  ", "open the red door"),
        ("Action: look\nThought: hmm\nAction: drop the key", "drop the key"),
        ("no action here", None),
        ("Action:", None),
    ],
)
def test_parse_react_action(text, action):
    assert parse_react_action(text) == action
