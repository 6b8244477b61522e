"""Prompt options shared by the LM agents: ReAct replies and few-shot examples from expert trajectories."""

from __future__ import annotations

from collections.abc import Sequence

from turngym.errors import ConfigError
from turngym.prompts import REACT_FORMAT, parse_react_action
from turngym.types import Conversation, Message, Trajectory

# ReAct replies span lines (Thought, then Action), so a bare-newline stop would cut them after the
# thought. Instead generation stops where the model starts to invent the env's answer.
REACT_STOP = ("\nObservation",)

EXAMPLE_HEADER = "Example {i} of {n} (solved by an expert):\n"
REAL_EPISODE_HEADER = "The examples are over. Now your own episode:\n"


def react_system(conversation: Sequence[Message]) -> Conversation:
    """The conversation with `REACT_FORMAT` appended to its system message (one is added if missing)."""
    messages = [dict(m) for m in conversation]
    if messages and messages[0]["role"] == "system":
        messages[0]["content"] = f"{messages[0]['content']}\n\n{REACT_FORMAT}"
    else:
        messages.insert(0, {"role": "system", "content": REACT_FORMAT})
    return messages  # type: ignore[return-value]


def react_stop(stop: Sequence[str]) -> tuple[str, ...]:
    """Stop strings for ReAct replies: the configured ones without whitespace-only entries (the
    default `"\\n"` would end the reply after `Thought:`), plus `REACT_STOP`."""
    kept = tuple(s for s in stop if s.strip())
    return kept + tuple(s for s in REACT_STOP if s not in kept)


def parse_reply(reply: str, react: bool) -> str:
    """The action in a model reply: with `react`, the text of its last `Action:` line; a reply
    without one is passed through unchanged, so the env reports it as an invalid action."""
    if not react:
        return reply
    action = parse_react_action(reply)
    return reply if action is None else action


def few_shot_messages(
    trajectories: Sequence[Trajectory], k: int | None = None, react: bool = False
) -> list[Message]:
    """The first `k` successful trajectories (all by default) as a user/assistant transcript, to go
    right after the system message (see `insert_few_shot`).

    A transcript rather than a system-message appendix: the model sees the exact reply format it
    must produce, in the assistant role, turn by turn as in its own episode, which small chat models
    imitate far better than a described example; roles keep alternating, so strict chat templates
    and OpenAI-compatible servers accept it. Each example's first observation is marked
    `Example i of n`, and `insert_few_shot` marks where the real episode starts. With `react`,
    actions are written as `Action: ...` lines so the examples follow the ReAct format (expert
    trajectories carry no thoughts, and none are invented)."""
    if k is not None and k < 0:
        raise ConfigError(f"few-shot k must be >= 0 or None, got {k}")
    solved = [t for t in trajectories if t.success and t.turns]
    if trajectories and not solved:
        raise ConfigError("few-shot examples need at least one successful trajectory with turns")
    examples = solved if k is None else solved[:k]
    messages: list[Message] = []
    for i, trajectory in enumerate(examples, start=1):
        for j, turn in enumerate(trajectory.turns):
            header = EXAMPLE_HEADER.format(i=i, n=len(examples)) if j == 0 else ""
            messages.append(Message(role="user", content=header + turn.observation))
            action = f"Action: {turn.action}" if react else turn.action
            messages.append(Message(role="assistant", content=action))
    return messages


def insert_few_shot(conversation: Sequence[Message], examples: Sequence[Message]) -> Conversation:
    """The conversation with `examples` (from `few_shot_messages`) after its system message and
    `REAL_EPISODE_HEADER` before the real episode's first observation."""
    messages = [dict(m) for m in conversation]
    if not examples:
        return messages  # type: ignore[return-value]
    start = 1 if messages and messages[0]["role"] == "system" else 0
    if start >= len(messages) or messages[start]["role"] != "user":
        raise ConfigError("few-shot examples go before a user message: the conversation has none")
    messages[start]["content"] = REAL_EPISODE_HEADER + messages[start]["content"]
    return [*messages[:start], *[dict(m) for m in examples], *messages[start:]]  # type: ignore[list-item]


def prepare_conversation(
    conversation: Sequence[Message], react: bool = False, examples: Sequence[Message] = ()
) -> Conversation:
    """What an LM agent sends for one conversation: few-shot examples inserted, ReAct format added."""
    messages = insert_few_shot(conversation, examples)
    return react_system(messages) if react else messages
