"""Conversation building (with a history window) and the ReAct action format."""

from __future__ import annotations

import re
from collections.abc import Sequence

from turngym.types import Conversation, Message

OMITTED_NOTE = "[{n} earlier turn(s) omitted]"


def build_conversation(
    instructions: str,
    observations: Sequence[str],
    actions: Sequence[str],
    history_window: int | None = None,
) -> Conversation:
    """Chat messages for an episode so far: the instructions as the system message, then each
    observation as a user message and each action as an assistant message.

    `observations` has one more entry than `actions` for a live episode (the agent answers the last
    observation) or the same number for a finished one. With `history_window=K`, only the first turn
    (it carries the task) and the last K turns are kept, as verl-agent does to fit long episodes into
    context; a note marks the gap.
    """
    if not len(actions) <= len(observations) <= len(actions) + 1:
        raise ValueError(
            f"need len(actions) <= len(observations) <= len(actions) + 1, got {len(observations)} "
            f"observations and {len(actions)} actions"
        )
    if history_window is not None and history_window < 0:
        raise ValueError(f"history_window must be >= 0 or None, got {history_window}")
    n = len(observations)
    kept = range(n)
    if history_window is not None and n > history_window + 2:
        kept = [0, *range(n - history_window - 1, n)]
    messages: Conversation = [Message(role="system", content=instructions)]
    previous = -1
    for i in kept:
        observation = observations[i]
        if i > previous + 1:
            observation = OMITTED_NOTE.format(n=i - previous - 1) + "\n" + observation
        messages.append(Message(role="user", content=observation))
        if i < len(actions):
            messages.append(Message(role="assistant", content=actions[i]))
        previous = i
    return messages


REACT_FORMAT = (
    "Answer in this format:\nThought: <your reasoning>\nAction: <the action, exactly as the rules say>"
)

_REACT_ACTION = re.compile(r"^\s*Action\s*:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)


def parse_react_action(text: str) -> str | None:
    """The action of a ReAct reply (`Thought: ... Action: ...`): the text after the last `Action:`
    line, or None when there is none (the env should then treat the reply as an invalid action)."""
    matches = _REACT_ACTION.findall(text)
    return matches[-1] if matches else None
