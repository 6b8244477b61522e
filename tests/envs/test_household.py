from __future__ import annotations

import random

import pytest

import turngym
from turngym.agents import ExpertAgent, RandomAgent
from turngym.envs.household.catalog import TASK_TYPES
from turngym.envs.household.env import NOTHING, HouseholdEnv
from turngym.envs.household.world import HouseConfig, make_world

INVALID = (
    "go to moon 1",
    "go to",
    "take apple 99 from countertop 1",
    "put mug 1 in/on countertop 1",
    "open countertop 1",
    "heat apple 1 with microwave 1",
    "use lamp",
    "examine fridge 1",
    "fly",
)


def test_check_env():
    turngym.check_env(turngym.make("turngym/Household-v0"), invalid_actions=INVALID)


@pytest.mark.parametrize("task_type", TASK_TYPES)
@pytest.mark.parametrize("split", ["train", "test"])
def test_expert_solves_every_task_of_each_type(task_type, split):
    trajectories = turngym.rollout(
        lambda: HouseholdEnv(task_types=[task_type]),
        ExpertAgent(),
        num_episodes=40,
        batch_size=40,
        split=split,
        max_turns=50,
    )
    assert all(t.success and t.total_reward == 1.0 for t in trajectories)
    assert {t.metadata["task_type"] for t in trajectories} == {task_type}
    assert max(t.num_turns for t in trajectories) <= 12


def test_expert_solves_the_hard_variant_and_finishes_from_random_states():
    env = turngym.make("turngym/HouseholdHard-v0").unwrapped
    for seed in range(60):
        _, info = env.reset(seed=seed, options={"split": "test"})
        rng = random.Random(seed)
        for _ in range(rng.randint(0, 25)):  # wander first: the expert must replan from anywhere
            *_, info = env.step(rng.choice(info["admissible_actions"]))
            if info["success"]:
                break
        for _ in range(30):
            if info["success"]:
                break
            *_, info = env.step(env.expert_action())
            assert info["valid_action"]
        assert info["success"], info["task_id"]


def test_random_agent_rarely_succeeds():
    result = turngym.evaluate("turngym/Household-v0", RandomAgent(), 120, batch_size=40)
    assert result.overall.success_rate < 0.1
    assert set(result.per_task_type) == set(TASK_TYPES)


def test_same_seed_same_episode_and_task_id_replays():
    env = HouseholdEnv()
    obs, info = env.reset(seed=7, options={"split": "test"})
    obs2, info2 = env.reset(seed=7, options={"split": "test"})
    assert (obs, info) == (obs2, info2)
    obs3, info3 = env.reset(seed=123, options={"task_id": info["task_id"]})
    assert obs3 == obs and info3["task_id"] == info["task_id"] and info3["split"] == "test"
    other, _ = env.reset(seed=8, options={"split": "test"})
    assert other != obs


def test_splits_use_disjoint_floor_plans_and_optionally_unseen_goal_pairs():
    def plans(config, split):
        worlds = [make_world(config, split, t, n) for t in TASK_TYPES for n in range(40)]
        assert {w.split for w in worlds} == {split}
        floor = {(w.room_names, tuple(sorted(w.recep_names))) for w in worlds}
        return floor, {(w.target_type, w.recep_type) for w in worlds}

    train, train_goals = plans(HouseConfig(), "train")
    test, test_goals = plans(HouseConfig(), "test")
    assert train and test and not train & test
    assert train_goals & test_goals  # by default the same goals appear in new floor plans
    _, unseen_train = plans(HouseConfig(unseen_combinations=True), "train")
    _, unseen_test = plans(HouseConfig(unseen_combinations=True), "test")
    assert unseen_test and not unseen_train & unseen_test


def _find(task_type, predicate=lambda env: True, **kwargs):
    env = HouseholdEnv(task_types=[task_type], **kwargs)
    for seed in range(500):
        env.reset(seed=seed)
        if predicate(env):
            return env
    raise AssertionError(f"no {task_type} task with that property")


def _do(env, command, valid=True):
    obs, reward, terminated, _truncated, info = env.step(command)
    assert info["valid_action"] is valid, (command, obs)
    if not valid:
        assert obs == NOTHING
    return obs, reward, terminated, info


def _closed_receptacle_with_target(env):
    r = env.where[env.world.targets[0]]
    return env.world.openable[r]


def test_every_command_of_the_grammar():
    env = _find("pick_heat_then_place", _closed_receptacle_with_target)
    w = env.world
    target = w.targets[0]
    name, home = w.obj_names[target], w.recep_names[env.where[target]]
    microwave, fridge = (
        w.recep_names[w.recep_types.index("microwave")],
        w.recep_names[w.recep_types.index("fridge")],
    )
    sink = w.recep_names[w.recep_types.index("sinkbasin")]

    obs, *_ = _do(env, "look")
    assert obs.startswith("You are in the middle of a room. Looking quickly around you, you see a ")
    assert _do(env, "inventory")[0] == "You are not carrying anything."
    assert "go to" in _do(env, "help")[0]
    _do(env, f"take {name} from {home}", valid=False)  # not there yet
    assert _do(env, f"go to {home}")[0] == f"You arrive at {home}. The {home} is closed."
    _do(env, f"go to {home}", valid=False)  # already there
    _do(env, f"take {name} from {home}", valid=False)  # closed
    obs, *_ = _do(env, f"open {home}")
    assert obs.startswith(f"You open the {home}. The {home} is open. In it, you see ") and name in obs
    _do(env, f"open {home}", valid=False)
    assert _do(env, f"examine {home}")[0].startswith(f"The {home} is open. In it, you see ")
    assert _do(env, f"examine {name}")[0] == f"There's nothing special about {name}."
    assert _do(env, f"take {name} from {home}")[0] == f"You pick up the {name} from the {home}."
    assert _do(env, "inventory")[0] == f"You are carrying: a {name}."
    assert _do(env, f"close {home}")[0] == f"You close the {home}."
    _do(env, f"put {name} in/on {home}", valid=False)  # closed
    _do(env, f"heat {name} with {microwave}", valid=False)  # not at the microwave
    _do(env, f"go to {microwave}")
    assert _do(env, f"heat {name} with {microwave}")[0] == f"You heat the {name} using the {microwave}."
    assert _do(env, f"examine {name}")[0] == f"This is a hot {name}."
    _do(env, f"cool {name} with {microwave}", valid=False)
    _do(env, f"go to {fridge}")
    assert _do(env, f"cool {name} with {fridge}")[0] == f"You cool the {name} using the {fridge}."
    assert _do(env, f"examine {name}")[0] == f"This is a cool {name}."
    _do(env, f"go to {sink}")
    obs, *_ = _do(env, f"clean {name} with {sink}")
    assert obs == f"You clean the {name} using the {sink}."
    assert _do(env, f"examine {name}")[0] == f"This is a cool and clean {name}."
    assert _do(env, f"put {name} in {sink}")[0] == f"You put the {name} in/on the {sink}."
    assert env.held == -1 and f"a {name}" in _do(env, f"examine {sink}")[0]
    _do(env, f"take {name} from {sink}")
    assert _do(env, f"move {name} to {sink}")[0] == f"You move the {name} to the {sink}."
    assert _do(env, "look")[0] == f"You are facing the {sink}. Next to it, you see nothing."


def test_use_lamp_and_look_at_object_in_light():
    env = _find("look_at_obj_in_light")
    w = env.world
    lamp = w.lamps[0]
    lamp_name, lamp_home = w.obj_names[lamp], w.recep_names[env.where[lamp]]
    _do(env, f"use {lamp_name}", valid=False)  # not there
    _do(env, f"go to {lamp_home}")
    assert _do(env, f"examine {lamp_name}")[0] == f"This {lamp_name} is off."
    assert _do(env, f"use {lamp_name}")[0] == f"You turn on the {lamp_name}."
    assert _do(env, f"use {lamp_name}")[0] == f"You turn off the {lamp_name}."
    _do(env, f"take {lamp_name} from {lamp_home}", valid=False)  # lamps stay put
    while not env.done:  # the expert finishes: hold the target at the lamp, lamp on
        *_, info = _do(env, env.expert_action())
    assert info["success"] and info["progress"] == 1.0


def test_slice_with_a_knife():
    def has_knife_and_fruit(env):
        types = env.world.obj_types
        return "knife" in types and any(t in types for t in ("apple", "bread", "potato", "tomato", "lettuce"))

    env = _find("pick_and_place", has_knife_and_fruit, receptacles=6, distractors=12)
    w = env.world
    knife = w.obj_types.index("knife")
    fruit = next(
        o for o, t in enumerate(w.obj_types) if t in ("apple", "bread", "potato", "tomato", "lettuce")
    )
    knife_home, fruit_home = env.where[knife], env.where[fruit]
    for r in (knife_home, fruit_home):
        _do(env, f"go to {w.recep_names[r]}", valid=r != env.loc)
        if w.openable[r]:
            _do(env, f"open {w.recep_names[r]}")
    _do(env, f"go to {w.recep_names[knife_home]}", valid=knife_home != env.loc)
    _do(env, f"take {w.obj_names[knife]} from {w.recep_names[knife_home]}")
    _do(env, f"go to {w.recep_names[fruit_home]}", valid=fruit_home != env.loc)
    fruit_name = w.obj_names[fruit]
    assert f"slice {fruit_name} with {w.obj_names[knife]}" in env.admissible_actions()
    assert _do(env, f"slice {fruit_name} with {w.obj_names[knife]}")[0].startswith("You sliced the")
    assert _do(env, f"examine {fruit_name}")[0] == f"This is a sliced {fruit_name}."


@pytest.mark.parametrize(
    "action", ["", "go", "put", "take x from", "🙂", "x" * 100_000, "clean with", "\x00"]
)
def test_invalid_actions_never_raise(action):
    env = HouseholdEnv()
    env.reset(seed=0)
    obs, reward, terminated, _, info = env.step(action)
    assert (obs, reward, terminated, info["valid_action"]) == (NOTHING, 0.0, False, False)


def test_admissible_actions_are_all_valid_and_follow_place_verb():
    env = HouseholdEnv(place_verb="move")
    _, info = env.reset(seed=3)
    rng = random.Random(0)
    seen_move = False
    for _ in range(200):
        snapshot = env.get_state()
        for action in info["admissible_actions"]:
            env.set_state(snapshot)
            *_, step_info = env.step(action)
            assert step_info["valid_action"], action
            seen_move |= action.startswith("move ")
            assert not action.startswith("put ")
        env.set_state(snapshot)
        _, _, terminated, _, info = env.step(rng.choice(info["admissible_actions"]))
        if terminated:
            _, info = env.reset(seed=rng.randint(0, 10**6))
    assert seen_move


def test_dense_reward_sums_to_one_along_the_expert():
    env = HouseholdEnv(dense_reward=True)
    for seed in range(30):
        env.reset(seed=seed)
        total, previous = 0.0, 0.0
        while not env.done:
            *_, reward, _, _, info = env.step(env.expert_action())
            total += reward
            assert info["progress"] >= previous
            previous = info["progress"]
        assert total == pytest.approx(1.0)


def test_snapshots_share_the_world_and_restore_the_state():
    env = HouseholdEnv()
    env.reset(seed=5)
    snapshot = env.get_state()
    assert snapshot["world"] is env.world
    first = [env.step(a)[0] for a in ["look", env.expert_action(), env.expert_action()]]
    env.set_state(snapshot)
    again = [env.step(a)[0] for a in ["look", env.expert_action(), env.expert_action()]]
    assert first == again


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(ValueError, match="rooms"):
        HouseholdEnv(rooms=9)
    with pytest.raises(ValueError, match="unknown task type"):
        HouseholdEnv(task_types=["pick_and_eat"])
    with pytest.raises(ValueError, match="place_verb"):
        HouseholdEnv(place_verb="drop")
    env = HouseholdEnv()
    with pytest.raises(ValueError, match="household task ids look like"):
        env.reset(options={"task_id": "keydoor5-0001"})
    with pytest.raises(ValueError, match="not this env's"):
        env.reset(options={"task_id": "r3c14d10-train-pick_and_place-1"})
