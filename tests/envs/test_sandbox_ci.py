"""The `sandbox` marker's rule: a sandbox that cannot start skips its tests locally (with the reason)
and fails them in CI (`CI=true`), so a broken sandbox cannot turn the escape suite into skips; and
a missing bwrap is named with the package to install. None of these needs a working sandbox."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import pytest_runtest_setup

from turngym.envs.tools import sandbox
from turngym.envs.tools.sandbox import SandboxUnavailableError, run_python

ROOT = Path(__file__).resolve().parents[2]
BROKEN = "unshare namespaces: Operation not permitted (test)"


def test_in_ci_a_sandbox_that_cannot_start_fails_the_escape_suite(tmp_path):
    # The real escape suite, in a pytest run where the sandbox reports itself broken.
    (tmp_path / "broken_sandbox.py").write_text(
        f"from turngym.envs.tools import sandbox\nsandbox.sandbox_problem = lambda: {BROKEN!r}\n"
    )
    env = {**os.environ, "CI": "true", "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "tests/envs/test_sandbox.py", "-k", "normal_code", "-p", "broken_sandbox"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 1, result.stdout[-2000:]
    assert f"CI=true and the Python sandbox cannot start: {BROKEN}" in result.stdout


class _Item:
    def __init__(self, marked: bool) -> None:
        self.marked = marked

    def get_closest_marker(self, name: str):
        return pytest.mark.sandbox.mark if self.marked and name == "sandbox" else None


def test_outside_ci_it_skips_with_the_reason_and_unmarked_tests_never_look(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(sandbox, "sandbox_problem", lambda: BROKEN)
    with pytest.raises(pytest.skip.Exception, match=re.escape(f"cannot start here: {BROKEN}")):
        pytest_runtest_setup(_Item(marked=True))
    pytest_runtest_setup(_Item(marked=False))  # no skip, no failure
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        pytest_runtest_setup(_Item(marked=True))


def test_a_missing_helper_program_is_named_with_the_package_to_install(monkeypatch):
    monkeypatch.setattr(sandbox, "TOOLS", {**sandbox.TOOLS, "bwrap-not-installed": "bubblewrap"})
    expected = "bwrap-not-installed not found: install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap)"
    with pytest.raises(SandboxUnavailableError, match=re.escape(expected)):
        run_python("print(1)")
