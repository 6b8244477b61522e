"""Episode data: `Message`, `Turn`, `Trajectory`, `build_conversation` (an episode so far as chat
messages, with a history window) and `to_dataset` (TRL's conversational format)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypedDict

if TYPE_CHECKING:
    import datasets


class Message(TypedDict):
    """One chat message, in the format of chat templates and the OpenAI API."""

    role: Literal["system", "user", "assistant"]
    content: str


Conversation = list[Message]
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


@dataclass
class Turn:
    """One agent turn: the observation it answered, its action, and what the env returned.
    `action_tokens`: the token ids an LM agent sampled for the action (None for other agents);
    trainers score these, not a re-tokenization of `action`. `action_logprobs`: their log-probs under
    the distribution they were sampled from, kept from agents that report those (the vLLM rollout
    engine: `sampling_logprobs`); a trainer's importance-sampling correction compares them with its own."""

    observation: str
    action: str
    reward: float
    info: dict[str, Any] = field(default_factory=dict)
    action_tokens: list[int] | None = None
    action_logprobs: list[float] | None = None


@dataclass
class Trajectory:
    """One finished episode.

    `turns[i].observation` is what the agent saw before action i; `final_observation` is the env's
    answer to the last action. `terminated` means the env ended the episode (goal reached or failed);
    `truncated` means a turn limit cut it (so a critic should bootstrap, not treat it as terminal).
    """

    env_id: str
    task_id: str | None
    seed: int | None
    instructions: str
    task: str
    turns: list[Turn]
    final_observation: str
    success: bool
    total_reward: float
    terminated: bool
    truncated: bool
    agent: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def num_turns(self) -> int:
        return len(self.turns)

    @property
    def observations(self) -> list[str]:
        """All observations in order: one per turn plus the final one."""
        return [t.observation for t in self.turns] + [self.final_observation]

    @property
    def actions(self) -> list[str]:
        return [t.action for t in self.turns]

    def to_messages(self, history_window: int | None = None, include_final: bool = False) -> Conversation:
        """The episode as chat messages: system (instructions), then user/assistant per turn.

        `include_final` appends the env's answer to the last action as a final user message."""
        observations = self.observations if include_final else self.observations[:-1]
        return build_conversation(self.instructions, observations, self.actions, history_window)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Trajectory:
        data = dict(data)
        data["turns"] = [Turn(**t) for t in data["turns"]]
        return cls(**data)


def to_dataset(trajectories: Sequence[Trajectory], history_window: int | None = None) -> datasets.Dataset:
    """A `datasets.Dataset` in TRL's conversational format: a `messages` column (one conversation
    per trajectory) plus `env_id`, `task_id`, `seed`, `success`, `total_reward`, `num_turns`."""
    from turngym.errors import require

    datasets_module = require("datasets", "data", "to_dataset")
    return datasets_module.Dataset.from_list(
        [
            {
                "messages": t.to_messages(history_window),
                "env_id": t.env_id,
                "task_id": t.task_id,
                "seed": t.seed,
                "success": t.success,
                "total_reward": float(t.total_reward),
                "num_turns": t.num_turns,
            }
            for t in trajectories
        ]
    )
