from __future__ import annotations

import pytest

import turngym
from turngym.agents import ExpertAgent, RandomAgent
from turngym.envs.games.frozenlake import FrozenLakeEnv
from turngym.envs.games.grid import parse_move, shortest_path
from turngym.envs.games.maze import MazeEnv
from turngym.envs.games.sokoban import SokobanEnv

GRID_IDS = (
    "turngym/Maze-v0",
    "turngym/Sokoban-v0",
    "turngym/SokobanTwoBoxes-v0",
    "turngym/FrozenLake-v0",
    "turngym/FrozenLakeSlippery-v0",
)
INVALID = ("", "jump", "up up", "move diagonally", "🙂")


@pytest.mark.parametrize("env_id", GRID_IDS)
def test_check_env(env_id):
    turngym.check_env(turngym.make(env_id), invalid_actions=INVALID)


@pytest.mark.parametrize(
    "env_id", ["turngym/Maze-v0", "turngym/Sokoban-v0", "turngym/SokobanTwoBoxes-v0", "turngym/FrozenLake-v0"]
)
def test_expert_solves_every_generated_level(env_id):
    trajectories = turngym.rollout(env_id, ExpertAgent(), num_episodes=100, batch_size=25, split="test")
    assert all(t.success and t.total_reward == 1.0 for t in trajectories)
    assert all(t.metadata["split"] == "test" for t in trajectories)


@pytest.mark.parametrize("env_id", ["turngym/Maze-v0", "turngym/Sokoban-v0"])
def test_random_agent_is_a_weak_baseline(env_id):
    result = turngym.evaluate(env_id, RandomAgent(), 100)
    assert result.overall.success_rate < 0.6


@pytest.mark.parametrize("make", [MazeEnv, SokobanEnv, FrozenLakeEnv])
def test_levels_replay_and_splits_are_disjoint(make):
    env = make()
    obs, info = env.reset(seed=5, options={"split": "test"})
    assert info["split"] == "test" and int(info["task_id"].rsplit("-", 1)[1]) % 2 == 1
    assert env.reset(seed=123, options={"task_id": info["task_id"]})[0] == obs
    assert env.reset(seed=5, options={"split": "test"})[0] == obs
    train = {env.reset(seed=s)[1]["task_id"] for s in range(30)}
    test = {env.reset(seed=s, options={"split": "test"})[1]["task_id"] for s in range(30)}
    assert not train & test and len(train) == 30
    with pytest.raises(ValueError, match="unknown task_id"):
        env.reset(options={"task_id": "nonsense-12"})


@pytest.mark.parametrize("make", [MazeEnv, SokobanEnv, FrozenLakeEnv])
@pytest.mark.parametrize("action", ["", "diagonal", "up and left", "x" * 100_000, "\x00"])
def test_invalid_actions_are_feedback(make, action):
    env = make()
    obs, _ = env.reset(seed=0)
    obs2, reward, terminated, _, info = env.step(action)
    assert info["valid_action"] is False and reward == 0 and not terminated and len(obs2) < 600
    assert obs2.endswith(obs.split("\n", 1)[1])  # the board did not change


@pytest.mark.parametrize(
    ("text", "move"),
    [
        ("up", "up"),
        ("Move Left.", "left"),
        ("go north", "up"),
        ("RIGHT", "right"),
        ("push down", "down"),
        ("upward", None),
        ("", None),
    ],
)
def test_parse_move(text, move):
    assert parse_move(text) == move


def test_shortest_path():
    line = lambda x: [("right", x + 1)] if x < 5 else []  # noqa: E731
    assert shortest_path(0, line, lambda x: x == 3) == ["right"] * 3
    assert shortest_path(0, line, lambda x: x == 9) is None


def test_maze_walls_block_and_the_goal_ends_the_episode():
    env = MazeEnv(size=3)
    env.reset(seed=1)
    walls = [m for m in ("up", "down", "left", "right") if m not in env.admissible_actions()]
    assert walls  # a maze cell always has a wall on some side
    obs, _, _, _, info = env.step(walls[0])
    assert not info["valid_action"] and "wall" in obs
    rows = obs.split("\n")[1:]
    assert len(rows) == 7 and all(len(r) == 7 for r in rows) and sum(r.count("P") for r in rows) == 1
    path = env._solve()
    for move in path:
        _, reward, terminated, _, info = env.step(move)
    assert terminated and reward == 1.0 and info["success"] and info["progress"] == 1.0


def test_sokoban_pushes_boxes_and_blocked_pushes_are_invalid():
    env = SokobanEnv()
    env.reset(seed=0)
    env.walls = frozenset({(r, c) for r in range(6) for c in range(6) if r in (0, 5) or c in (0, 5)})
    env.player, env.boxes, env.targets = (2, 1), frozenset({(2, 2)}), frozenset({(2, 4)})
    assert env._render().split("\n")[2] == "#PX_O#"
    obs, reward, _, _, info = env.step("right")
    assert info["valid_action"] and obs.startswith("You push the box right.") and env.boxes == {(2, 3)}
    obs, reward, terminated, _, info = env.step("right")
    assert terminated and reward == 1.0 and info["success"] and "\n#__P*#\n" in obs  # box on target
    env.reset(seed=0)
    env.walls = frozenset({(r, c) for r in range(6) for c in range(6) if r in (0, 5) or c in (0, 5)})
    env.player, env.boxes, env.targets = (2, 3), frozenset({(2, 4)}), frozenset({(3, 3)})
    obs, _, _, _, info = env.step("right")  # the box is against the wall
    assert not info["valid_action"] and "can't push" in obs and env.player == (2, 3)
    assert env._solve() is None and env.expert_action() in env.admissible_actions()  # lost: any move


def test_sokoban_levels_are_solvable_and_not_trivial():
    env = SokobanEnv(dim=7, num_boxes=2)
    for seed in range(20):
        env.reset(seed=seed)
        assert env.boxes != env.targets and len(env._solve()) >= env.min_solution
        assert len(env.boxes) == len(env.targets) == 2


def test_frozenlake_holes_end_the_episode_and_the_edge_is_invalid():
    env = FrozenLakeEnv()
    for seed in range(100):
        env.reset(seed=seed)
        if env.desc[0][1] == "H" or env.desc[1][0] == "H":
            break
    obs, _, _, _, info = env.step("up")
    assert not info["valid_action"] and "edge" in obs
    move = "right" if env.desc[0][1] == "H" else "down"
    obs, reward, terminated, _, info = env.step(move)
    assert terminated and reward == 0.0 and not info["success"] and "hole" in obs


def test_slippery_frozenlake_depends_only_on_the_seed():
    env = FrozenLakeEnv(is_slippery=True)

    def play(seed):
        env.reset(seed=seed)
        return [env.step("right")[0] for _ in range(3) if not env.done]

    assert play(3) == play(3)
    assert any(play(s) != play(s + 1) for s in range(5))
