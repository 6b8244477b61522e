from __future__ import annotations

import json

from typer.testing import CliRunner

from turngym.cli import app

runner = CliRunner()


def test_list_shows_ids_and_descriptions():
    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0
    assert "turngym/KeyDoor-v0" in result.output and "coloured key" in result.output


def test_eval_expert_and_random(tmp_path):
    out = tmp_path / "r.json"
    result = runner.invoke(
        app, ["eval", "turngym/KeyDoor-v0", "--agent", "expert", "--episodes", "20", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "100.0%" in result.output and "95% CI" in result.output and "empty-handed" in result.output
    assert json.loads(out.read_text())["overall"]["success_rate"] == 1.0
    result = runner.invoke(
        app, ["eval", "turngym/KeyDoor-v0", "--agent", "random", "--episodes", "20", "--batch-size", "5"]
    )
    assert result.exit_code == 0, result.output


def test_unknown_env_is_one_line_exit_2():
    result = runner.invoke(app, ["eval", "turngym/KeyDor-v0"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Did you mean `turngym/KeyDoor-v0`" in lines[0]


def test_unknown_agent_and_bad_flag_exit_2():
    result = runner.invoke(app, ["eval", "turngym/KeyDoor-v0", "--agent", "expret"])
    assert result.exit_code == 2 and "Did you mean `expert`" in result.output
    assert runner.invoke(app, ["eval", "turngym/KeyDoor-v0", "--episodes", "0"]).exit_code == 2
    assert runner.invoke(app, ["eval", "turngym/KeyDoor-v0", "--split", "dev"]).exit_code == 2
    assert runner.invoke(app, ["eval", "turngym/KeyDoor-v0", "--no-such-flag"]).exit_code == 2


def test_play_in_the_terminal():
    from turngym.envs.keydoor import KeyDoorEnv

    env = KeyDoorEnv()
    env.reset(seed=4)
    moves = []
    while (action := env.expert_action()) is not None:
        moves.append(action)
        env.step(action)
    result = runner.invoke(app, ["play", "turngym/KeyDoor-v0", "--seed", "4"], input="\n".join(moves) + "\n")
    assert result.exit_code == 0, result.output
    assert "Task complete!" in result.output and "success, reward 1" in result.output
    result = runner.invoke(app, ["play", "turngym/KeyDoor-v0"], input="fly\nquit\n")
    assert result.exit_code == 0 and "I don't understand 'fly'" in result.output
