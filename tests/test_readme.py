"""The README's commands and examples are the ones that run."""

from __future__ import annotations

import re
import runpy
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)```", README, re.S)


def test_quickstart_is_two_commands_and_ci_runs_the_test_command():
    main_job, test_command = (block.strip() for block in _bash_blocks()[:2])
    assert "\n" not in main_job and "\n" not in test_command
    assert "pytest" in test_command and "pytest" not in main_job
    ci_lines = [
        line for line in (ROOT / ".ci" / "run").read_text().splitlines() if line and not line.startswith("#")
    ]
    assert test_command in ci_lines


def test_custom_env_example_is_in_the_readme_and_runs(capsys):
    example = (ROOT / "examples" / "custom_env.py").read_text()
    assert example in README
    runpy.run_path(str(ROOT / "examples" / "custom_env.py"), run_name="__main__")
    printed = capsys.readouterr().out
    match = re.search(r"expert success: (\d+)%, mean turns ([\d.]+)", printed)
    assert match, printed
    assert match.group(1) == "100"  # binary search always finds the number within the 10-turn limit
    assert 1 <= float(match.group(2)) <= 5  # and needs at most ceil(log2(20 + 1)) = 5 guesses


@pytest.mark.filterwarnings("ignore:.*Overriding environment my/GuessNumber-v0")  # run as __main__ above
def test_one_file_env_commands_run(tmp_path, monkeypatch):
    """The CLI route of "Register your own environment": each README command, as written (training
    with a tiny budget appended), on examples/custom_env.py."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from typer.testing import CliRunner

    from turngym.cli import app

    block = next(b for b in _bash_blocks() if "turngym check examples/custom_env.py" in b)
    monkeypatch.chdir(tmp_path)  # runs/ goes here; the commands name examples/ relative to the repo
    (tmp_path / "examples").symlink_to(ROOT / "examples")
    tiny = ["tiny_layers=1", "tiny_embd=16", "max_new_tokens=4", "eval_episodes=2", "expert_episodes=2"]
    tiny += ["batch_size=2", "epochs=1", "tensorboard=false"]
    expected = {"check": "passes check_env", "play": "Episode over", "train": "held-out success"}
    expected |= {"eval": "GuessNumber-v0 (test split)", "list": "my/GuessNumber-v0"}
    commands = [shlex.split(line.split("#")[0]) for line in block.strip().splitlines()]
    assert [c[1] for c in commands] == ["check", "play", "eval", "train", "eval", "list"]
    for command in commands:
        args = command[1:]
        if args[0] == "train":
            args += [arg for value in tiny for arg in ("--set", value)]
        result = CliRunner().invoke(app, args, input="10\n5\n15\n3\n8\n13\n18\n1\n2\n4\n" * 2)
        assert result.exit_code == 0, (command, result.output)
        assert command[0] == "turngym" and expected[args[0]] in result.output, (command, result.output)
