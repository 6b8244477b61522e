from __future__ import annotations

import pytest

import turngym
from turngym.agents import ExpertAgent, RandomAgent
from turngym.envs.river_crossing import BRIDGE, LOOK, WADE, RiverCrossingEnv


def success_rate(choose, episodes: int = 1000) -> float:
    """Test-split success of a policy `choose(env) -> action` that reads the env directly."""
    env = RiverCrossingEnv()
    wins = 0
    for seed in range(episodes):
        env.reset(seed=seed, options={"split": "test"})
        while not env.done:
            env.step(choose(env))
        wins += env.won
    return wins / episodes


def imitate(env: RiverCrossingEnv) -> str:
    """The best copy of the expert's choices on what the agent sees: wade calm water, bridge fast."""
    return WADE if env.water[env.river] == "calm" else BRIDGE


def test_the_privileged_expert_always_succeeds_and_a_random_agent_rarely():
    expert = turngym.evaluate("turngym/RiverCrossing-v0", ExpertAgent(), 200)
    assert expert.overall.success_rate == 1.0 and expert.overall.mean_turns == 10
    random = turngym.evaluate("turngym/RiverCrossing-v0", RandomAgent(), 300)
    assert random.overall.success_rate < 0.2


def test_copying_the_expert_from_what_the_agent_sees_is_worse_than_always_bridging():
    # the imitation gap this env is built to show: the best policy the expert's choices teach
    # (wade calm water, bridge fast water) against the best policy on the agent's information
    assert 0.31 < success_rate(imitate) < 0.39  # 0.9 ** 10 = 0.35 in expectation
    assert success_rate(lambda env: BRIDGE, episodes=50) == 1.0


def test_commands_and_their_outcomes():
    env = RiverCrossingEnv(num_rivers=2)
    env.reset(seed=0)
    env.deep = [True, False]  # fix the hidden depths for this test
    obs, reward, terminated, _, info = env.step("fly away")
    assert not info["valid_action"] and "I don't understand" in obs and not terminated
    obs, _, _, _, info = env.step("Look.")
    assert info["valid_action"] and env.river == 0 and obs.startswith("You look at the river")
    obs, _, _, _, info = env.step(BRIDGE)
    assert env.river == 1 and info["progress"] == 0.5 and "River 2 of 2" in obs
    obs, reward, terminated, truncated, info = env.step("wade")
    assert (reward, terminated, truncated, info["success"], info["progress"]) == (1.0, True, False, True, 1.0)
    assert "Task complete" in obs and info["admissible_actions"] == []

    env.reset(seed=0)
    env.deep = [True, False]
    obs, reward, terminated, _, info = env.step(WADE)
    assert terminated and reward == 0.0 and not info["success"] and "Task failed" in obs
    assert info["progress"] == 0.0


def test_levels_replay_by_task_id_and_splits_are_disjoint():
    env = RiverCrossingEnv()
    obs, info = env.reset(seed=3, options={"split": "test"})
    water, deep = list(env.water), list(env.deep)
    assert info["split"] == "test" and info["task_id"].startswith("river10-")
    obs2, info2 = env.reset(seed=99, options={"task_id": info["task_id"]})
    assert (obs2, info2["task_id"], env.water, env.deep) == (obs, info["task_id"], water, deep)
    assert env.admissible_actions() == [WADE, BRIDGE, LOOK]
    for seed in range(20):
        assert env.reset(seed=seed)[1]["split"] == "train"
    with pytest.raises(ValueError, match="unknown task_id"):
        env.reset(options={"task_id": "keydoor5-0001"})
    with pytest.raises(ValueError, match="num_rivers"):
        RiverCrossingEnv(num_rivers=0)


def test_what_the_agent_sees_does_not_depend_on_the_depths():
    shallow, deep = RiverCrossingEnv(), RiverCrossingEnv()
    seen = []
    for env, depth in ((shallow, False), (deep, True)):
        obs, _ = env.reset(seed=1)
        env.deep = [depth] * env.num_rivers
        texts = [obs]
        for action in (LOOK, BRIDGE, LOOK, BRIDGE, BRIDGE):
            texts.append(env.step(action)[0])
        seen.append(texts)
    assert seen[0] == seen[1]
