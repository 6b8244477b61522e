"""The README's commands and examples are the ones that run."""

from __future__ import annotations

import re
import runpy
from pathlib import Path

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
