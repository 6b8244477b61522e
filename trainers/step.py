"""STeP (Training LLM-Based Agents with Synthetic Self-Reflected Trajectories and Partial Masking, seeds
001): `turngym train step ENV`.

While a student `Agent` acts, a teacher (the env's expert, or any stronger `Agent`) checks each step. A
flagged step (the student's action differs from the teacher's and, by default, the env called it invalid)
stays in the trajectory as context, followed by a reflection turn in the agent's voice carrying the
teacher's correction. `trajectory.metadata["turn_mask"]` (BC's per-turn mask, `trainers/bc.py`) is False
on exactly the flagged steps: the paper's partial masking, so the model never learns the wrong step
itself. No public code of STeP (Chen et al. 2025, arXiv 2505.20023) was found: a search of public
repositories and pages for its title and authors on 2026-12-07 turned up summaries only. This follows the
paper's text; the reflection template and the "invalid" flag rule are TurnGym's choices where the paper
leaves the judgement to a teacher LLM.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from turngym.engine.rollout import Agent, episode_trajectory, start_episode
from turngym.errors import ConfigError
from turngym.prompts import parse_react_action
from turngym.trainers.bc import TURN_MASK_KEY
from turngym.trainers.common.self_train import FLAGS, ReflectionConfig, SelfTrainConfig, SelfTrainer
from turngym.types import Trajectory

FLAGGED_KEY = "flagged_turns"  # indices of the student's wrong steps


def _plain(action: str) -> str:
    """The action a reply stands for (the `Action:` line of a ReAct reply), normalized for comparison."""
    return (parse_react_action(action) or action).strip().lower()


def step_trajectories(
    env_id: str,
    student: Agent,
    episodes: int,
    teacher: Agent | None = None,
    seed: int = 0,
    split: str = "train",
    config: ReflectionConfig | None = None,
) -> list[Trajectory]:
    """STeP's self-reflected trajectories: `student` acts, `teacher` (default: the env's expert)
    checks every step; a flagged step is followed by a reflection turn carrying the teacher's
    correction, and the flagged step's `turn_mask` entry is False (its loss is masked)."""
    from turngym.agents import ExpertAgent

    config = config or ReflectionConfig()
    teacher = teacher or ExpertAgent()
    trajectories = []
    for index in range(episodes):
        episode = start_episode(env_id, seed + index, split, index)
        env = episode.env
        mask: list[bool] = []
        flagged: list[int] = []
        terminated = truncated = False
        while not (terminated or truncated) and episode.turn < config.max_turns:
            conversation = [episode.conversation()]
            if flagged and flagged[-1] == episode.turn - 1:  # reflect on the step just flagged
                correction = teacher.act(conversation, [episode])[0]
                feedback = (
                    episode.observations[-1].strip().splitlines()[0]
                    if episode.observations[-1].strip()
                    else ""
                )
                action = config.reflection.format(
                    action=parse_react_action(episode.actions[-1]) or episode.actions[-1],
                    feedback=feedback,
                    correction=parse_react_action(correction) or correction,
                )
                step = env.step(parse_react_action(action) or action)
                episode.record(action, step)
                mask.append(True)
            else:
                action = student.act(conversation, [episode])[0]
                expected = teacher.act(conversation, [episode])[0]
                step = env.step(action)
                episode.record(action, step)
                wrong = _plain(action) != _plain(expected)
                if config.flag == "invalid":
                    wrong = wrong and step[4].get("valid_action", True) is False
                mask.append(not wrong)
                if wrong:
                    flagged.append(episode.turn - 1)
            terminated, truncated = bool(step[2]), bool(step[3])
        env.close()
        metadata = {TURN_MASK_KEY: mask, FLAGGED_KEY: flagged, "method": "step"}
        name = f"step({getattr(student, 'name', 'student')}<-{getattr(teacher, 'name', 'teacher')})"
        trajectories.append(
            episode_trajectory(episode, terminated, name, truncated or not terminated, metadata)
        )
    return trajectories


@dataclass
class StepConfig(SelfTrainConfig):
    """STeP: the teacher is the env's scripted expert (`ExpertAgent`)."""

    flag: str = "invalid"
    """Which student steps are wrong: invalid (differs from the teacher's and the env answered
    `valid_action=False`) or differs (any disagreement with the teacher)."""
    step_reflection: str = ""
    """The reflection turn after a flagged step, a template with fields action, feedback and
    correction ("": `ReflectionConfig.reflection`, the ReAct default)."""

    algo = "step"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.flag not in FLAGS:
            raise ConfigError(f"flag must be one of {list(FLAGS)}, got {self.flag!r}")


class StepTrainer(SelfTrainer):
    """STeP: the policy acts, the env's expert flags and corrects, BC with the flagged steps masked."""

    config_class = StepConfig

    def data(self, seeds: Sequence[int]) -> tuple[list[Trajectory], int, dict[str, float]]:
        config = self.config
        reflection = ReflectionConfig(
            flag=config.flag, max_turns=config.max_turns or ReflectionConfig.max_turns
        )
        if config.step_reflection:
            reflection.reflection = config.step_reflection
        trajectories = step_trajectories(
            config.env_id, self.player, len(seeds), seed=seeds[0], split="train", config=reflection
        )
        flagged = sum(len(t.metadata["flagged_turns"]) for t in trajectories)
        stats = {
            "train_success_rate": float(np.mean([t.success for t in trajectories])),
            "flagged_turns": flagged,
        }
        return trajectories, sum(t.num_turns for t in trajectories), stats
