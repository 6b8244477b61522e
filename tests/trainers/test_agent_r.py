"""Agent-R revision trajectories (trainers/agent_r.py): known answers for the first error, the splice
and its replay in the env."""

from __future__ import annotations

import numpy as np
import pytest

import turngym
from turngym.errors import ConfigError
from turngym.trainers.agent_r import (
    RevisionConfig,
    SearchPath,
    agent_r_trajectories,
    first_error_by_judge,
    first_error_by_value,
    parting_turn,
)
from turngym.trainers.bc import TURN_MASK_KEY, TURN_WEIGHT_KEY, BCConfig, bc_examples

KEYDOOR, MAZE = "turngym/KeyDoor-v0", "turngym/Maze-v0"


class NoisyExpert:
    """The env's expert, except a random admissible action with probability `eps` (own seeded RNG)."""

    name = "noisy-expert"

    def __init__(self, eps: float, seed: int = 0) -> None:
        self.eps, self.rng = eps, np.random.default_rng(seed)

    def act(self, conversations, episodes=None):
        actions = []
        for episode in episodes:
            env = episode.env.unwrapped
            explore = self.rng.random() < self.eps
            actions.append(str(self.rng.choice(env.admissible_actions())) if explore else env.expert_action())
        return actions


def path(actions, values, success):
    return SearchPath(
        [f"o{i}" for i in range(len(actions) + 1)], actions, values, [0.0] * len(actions), success
    )


def test_first_error_is_where_the_values_cross():
    good = path(["a", "b", "c"], [0.5, 0.6, 1.0], True)
    bad = path(["a", "x", "y", "z", "w"], [0.5, 0.9, 0.7, 0.4, 0.0], False)
    assert parting_turn(good, bad) == 1
    # the failing path's Q stays above the good path's Q at the parting turn (0.6) until turn 3
    assert first_error_by_value(good, bad) == 3
    bad_at_once = path(["a", "x", "y"], [0.5, 0.1, 0.0], False)
    assert first_error_by_value(good, bad_at_once) == 1


class JudgesBad:
    """A judge that calls one action bad and everything else good."""

    def __init__(self, bad_action: str) -> None:
        self.bad_action = bad_action

    def act(self, conversations, episodes=None):
        said = conversations[0][-1]["content"]
        return ["Judgement: Bad" if f'"{self.bad_action}"' in said else "Fine. Judgement: Good"]


def test_model_judge_picks_the_first_turn_it_calls_bad():
    good = path(["a", "b", "c"], [0.5, 0.6, 1.0], True)
    bad = path(["a", "x", "y", "z", "w"], [0.5, 0.9, 0.7, 0.4, 0.0], False)
    config = RevisionConfig(error="model")
    task = type("T", (), {"instructions": "Do it.", "probe": None, "history_window": None})()
    assert first_error_by_judge(good, bad, JudgesBad("y"), config, task) == 2
    assert first_error_by_judge(good, bad, JudgesBad("nothing"), config, task) == 4  # the whole path


@pytest.mark.parametrize(("env_id", "eps"), [(KEYDOOR, 0.5), (MAZE, 0.85)])
def test_revisions_splice_the_failing_prefix_and_replay_to_success(env_id, eps):
    trajectories, stats = agent_r_trajectories(env_id, NoisyExpert(eps), range(6), RevisionConfig(budget=16))
    revisions = [t for t in trajectories if t.metadata["method"] == "agent_r"]
    assert revisions and stats["pairs"] >= len(revisions) and stats["env_steps"] > 0
    for t in revisions:
        m = t.metadata
        error, branch = m["error_turn"], m["branch_turn"]
        # the splice starts with the exact failing prefix, up to and including its first error
        assert t.actions[: error + 1] == m["failing_actions"][: error + 1]
        assert t.actions[:branch] == m["good_actions"][:branch]  # the prefix both paths share
        # the error is where the values cross: below the good path's Q at the parting turn, not before
        assert m["failing_values"][error] < m["good_value"]
        assert all(v >= m["good_value"] for v in m["failing_values"][branch:error])
        assert m["reflection_turn"] == error + 1 and "was a mistake" in t.actions[error + 1]
        # loss: the failing prefix is context (weight 0), the reflection and continuation are trained
        assert m[TURN_WEIGHT_KEY] == [0.0] * (error + 1) + [1.0] * (t.num_turns - error - 1)
        assert [a for _, a, _ in bc_examples([t], BCConfig(env_id=env_id))] == t.actions[error + 1 :]
        # replaying the env actions (not the reflection turn) from reset(seed) succeeds
        env = turngym.make(env_id)
        env.reset(seed=t.seed, options={"split": "train"})
        for i, action in enumerate(t.actions):
            if i != m["reflection_turn"]:
                *_, info = env.step(action)
        assert info["success"] and t.success
    goods = [t for t in trajectories if t.metadata["method"] == "agent_r_good"]
    assert goods and all(t.success and TURN_MASK_KEY not in t.metadata for t in goods)


def test_prefix_weight_trains_the_prefix_too():
    config = RevisionConfig(budget=16, prefix_weight=0.5, good_paths_per_task=0)
    trajectories, _ = agent_r_trajectories(KEYDOOR, NoisyExpert(0.5), range(6), config)
    assert trajectories and all(t.metadata["method"] == "agent_r" for t in trajectories)
    for t in trajectories:
        error = t.metadata["error_turn"]
        assert t.metadata[TURN_WEIGHT_KEY][: error + 1] == [0.5] * (error + 1)
        assert len(bc_examples([t], BCConfig(env_id=KEYDOOR))) == t.num_turns


def test_config_errors_name_the_valid_values():
    with pytest.raises(ConfigError, match=r"error must be one of \['value', 'model'\]"):
        RevisionConfig(error="critic")
    with pytest.raises(ConfigError, match="reflection_source must be one of"):
        RevisionConfig(reflection_source="teacher")
    with pytest.raises(ConfigError, match="budget must be >= 1"):
        RevisionConfig(budget=0)


class WritesItsOwnReflection(NoisyExpert):
    """A noisy expert that, asked for a reflection, answers in its own words."""

    def act(self, conversations, episodes=None):
        if conversations[0][-1]["content"].startswith("Your action"):
            return ["Wrong key, I will drop it."]
        return super().act(conversations, episodes)


def test_model_written_reflection_and_model_judged_error():
    config = RevisionConfig(budget=16, error="model", reflection_source="model", good_paths_per_task=0)
    # the judge calls every picked-up key bad: the error is the first pick-up after the paths part
    trajectories, _ = agent_r_trajectories(
        KEYDOOR, WritesItsOwnReflection(0.5), range(6), config, judge=JudgesBad("pick up the yellow key")
    )
    assert trajectories
    for t in trajectories:
        m = t.metadata
        assert t.actions[m["reflection_turn"]] == "Wrong key, I will drop it." and m["error_by"] == "model"
        said_bad = [
            i
            for i in range(m["branch_turn"], len(m["failing_actions"]))
            if m["failing_actions"][i] == "pick up the yellow key"
        ]
        assert m["error_turn"] == (said_bad[0] if said_bad else len(m["failing_actions"]) - 1)
        assert t.success
