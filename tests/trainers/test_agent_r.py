"""Agent-R revision trajectories (trainers/agent_r.py): known answers for the first error, the splice
and its replay in the env."""

from __future__ import annotations

import numpy as np
import pytest

import turngym
from turngym.engine.rollout import start_episode
from turngym.errors import ConfigError
from turngym.trainers.agent_r import (
    REVISION_THOUGHTS,
    RevisionConfig,
    SearchPath,
    Task,
    _reflection,
    _revise,
    agent_r_trajectories,
    first_error_by_judge,
    first_error_by_value,
    pairs,
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


# Maze at budget 4: 3 revisions of 6 tasks in under a second (at 16, 55 revisions in a minute, each search
# replaying its ~50-turn paths from reset)
@pytest.mark.parametrize(("env_id", "eps", "budget"), [(KEYDOOR, 0.5, 16), (MAZE, 0.85, 4)])
def test_revisions_splice_the_failing_prefix_and_replay_to_success(env_id, eps, budget):
    config = RevisionConfig(budget=budget, error="value", reflection_source="template")
    trajectories, stats = agent_r_trajectories(env_id, NoisyExpert(eps), range(6), config)
    revisions = [
        t for t in trajectories if t.metadata["method"] == "agent_r" and t.metadata["continuation"] != "text"
    ]
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
    config = RevisionConfig(budget=16, prefix_weight=0.5, good_paths_per_task=0, error="value")
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
        said_bad = [  # the judge reads the failing path from its first action (`revise_worst_path`)
            i for i in range(len(m["failing_actions"])) if m["failing_actions"][i] == "pick up the yellow key"
        ]
        assert m["error_turn"] == (said_bad[0] if said_bad else len(m["failing_actions"]) - 1)
        assert t.success and m["continuation"] in ("splice", "search", "text")


# ---- Agent-R's path_collection.py by hand -------------------------------------------------------------


def leaf(actions, leaf_q, leaf_value, success=False):
    p = path(actions, [0.0] * len(actions), success)
    p.leaf_q, p.leaf_value = leaf_q, leaf_value
    return p


def test_pairs_are_every_ordered_pair_with_a_leaf_value_gap_above_beta_and_a_high_path_above_alpha():
    # `pair_leaf_paths`: (i, j), i != j, node_avg_value(i) - node_avg_value(j) > BETA; `main`: skip a pair
    # whose high leaf's value <= ALPHA. Leaf means 1.0, 0.5, 0.0 with beta 0.3: (A,B), (A,C), (B,C);
    # alpha 1.0 leaves the two whose high path is A (value 2.0); no success is required
    a, b, c = leaf(["a"], 1.0, 2.0), leaf(["b"], 0.5, 0.5), leaf(["c"], 0.0, 0.0)
    rng = np.random.default_rng(0)
    found = pairs([a, b, c], RevisionConfig(beta=0.3), rng)
    assert sorted((h.actions[0], lo.actions[0]) for h, lo in found) == [("a", "b"), ("a", "c"), ("b", "c")]
    found = pairs([a, b, c], RevisionConfig(beta=0.3, alpha=1.0), rng)
    assert sorted((h.actions[0], lo.actions[0]) for h, lo in found) == [("a", "b"), ("a", "c")]
    assert len(pairs([a, b, c], RevisionConfig(beta=0.3, pairs_per_task=1), rng)) == 1


def test_the_judge_starts_at_the_first_action():
    # `revise_worst_path` judges `worst_path[1:]`: every step from the first, shared prefix included
    good = path(["a", "b", "c"], [0.5, 0.6, 1.0], True)
    bad = path(["a", "x", "y"], [0.5, 0.9, 0.7], False)
    task = type("T", (), {"instructions": "Do it.", "probe": None, "history_window": None})()
    assert first_error_by_judge(good, bad, JudgesBad("a"), RevisionConfig(), task) == 0


def test_revision_thoughts_are_drawn_from_the_first_ten():
    # `conversation_generation`: revision_thoughts[random.randint(0, 9)], "Thought: ...\nAction: wait"
    bad = path(["a", "x"], [0.0, 0.0], False)
    rng = np.random.default_rng(0)
    said = {_reflection(bad, 1, None, RevisionConfig(), None, rng) for _ in range(200)}
    assert said == {f"Thought: {s}\nAction: wait" for s in REVISION_THOUGHTS} and len(REVISION_THOUGHTS) == 10


def test_an_error_on_the_last_turn_is_kept_spliced_as_text():
    # `revise_worst_path` keeps the whole path when its last step is the error, and
    # `conversation_generation` appends the thought, "ok." and the good path after the shared prefix:
    # bad [a, x] (error at x, the last), good [a, c, d] -> a, x, thought, c (answering "ok."), d
    good = path(["a", "c", "d"], [0.0, 0.0, 1.0], True)
    good.rewards = [0.0, 0.0, 1.0]
    bad = path(["a", "x"], [0.0, 0.0], False)
    probe = start_episode(KEYDOOR, 0, "train", 0)
    task = Task(KEYDOOR, 0, "train", 0, probe.instructions, probe, None)
    config = RevisionConfig(reflection_source="template")
    t, steps = _revise(task, good, bad, 1, NoisyExpert(0.0), config, np.random.default_rng(0))
    probe.env.close()
    assert steps == 0 and t.actions == [
        "a",
        "x",
        'I see that "x" was a mistake. I need to find a better way.',
        "c",
        "d",
    ]
    assert [turn.observation for turn in t.turns] == ["o0", "o1", "o2", "ok.", "o2"]
    assert t.final_observation == "o3" and t.success and t.total_reward == 1.0
    assert t.metadata["continuation"] == "text" and t.metadata[TURN_WEIGHT_KEY] == [0, 0, 1, 1, 1]


class Looks:
    name = "looks"

    def act(self, conversations, episodes=None):
        return ["look"] * len(conversations)


def test_a_task_whose_tree_root_value_is_not_positive_is_skipped():
    # `main`: `if root.value <= 0: return`
    trajectories, stats = agent_r_trajectories(KEYDOOR, Looks(), range(2), RevisionConfig(budget=4))
    assert trajectories == [] and stats["tasks"] == stats["no_value"] == 2 and stats["pairs"] == 0
