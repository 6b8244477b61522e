"""The ReAct action format (`Thought: ... Action: ...`): the instruction appended to prompts and its parser.

`build_conversation` lives in `turngym.types` next to the message types it builds (this module re-exports
it for code that imports it from here): types must not import prompts, or the two import each other."""

from __future__ import annotations

import re

from turngym.types import OMITTED_NOTE, build_conversation

__all__ = ["OMITTED_NOTE", "REACT_FORMAT", "build_conversation", "parse_react_action"]

REACT_FORMAT = (
    "Answer in this format:\nThought: <your reasoning>\nAction: <the action, exactly as the rules say>"
)

_REACT_ACTION = re.compile(r"^\s*Action\s*:\s*(.+?)\s*$", re.IGNORECASE | re.MULTILINE)


def parse_react_action(text: str) -> str | None:
    """The action of a ReAct reply (`Thought: ... Action: ...`): the text after the last `Action:`
    line, or None when there is none (the env should then treat the reply as an invalid action)."""
    matches = _REACT_ACTION.findall(text)
    return matches[-1] if matches else None
