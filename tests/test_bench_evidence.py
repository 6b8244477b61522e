"""bench/evidence.py (issue 40's evidence table) runs its whole pipeline with --tiny: a BC start, arms
continued from it to the same env-step budget, held-out and train-split evals, a JSONL row per run and
the table; a rerun keeps the finished runs instead of training them again."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "bench" / "evidence.py"


def bench(tmp_path: Path) -> subprocess.CompletedProcess:
    command = [sys.executable, str(SCRIPT), "--tiny", "--envs", "KeyDoor", "--arms", "gigpo", "--seeds", "0",
               "--out", str(tmp_path / "e.jsonl"), "--runs-dir", str(tmp_path / "runs")]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    return done


@pytest.mark.slow
def test_tiny_evidence_table(tmp_path):
    first = bench(tmp_path)
    records = [json.loads(line) for line in (tmp_path / "e.jsonl").read_text().splitlines()]
    assert [r["arm"] for r in records] == ["bc", "gigpo"]
    for r in records:
        assert r["held_out_tasks"] == 4 and r["train_tasks"] == 4 and 0 <= r["held_out"] <= 1
    for r in records[1:]:  # each arm stopped at the first iteration that reached the budget
        assert r["env_steps"] >= 8 and r["iterations"] >= 1
    assert "| gigpo |" in first.stdout and "turn cap 6, history window 2" in first.stdout
    again = bench(tmp_path)
    assert "train" not in " ".join(line for line in again.stdout.splitlines() if line.startswith("$"))
    assert len((tmp_path / "e.jsonl").read_text().splitlines()) == 2


def test_archers_warm_up_ends_within_every_recipes_budget(monkeypatch):
    """ArCHer trains only its critic for `warmup_iterations`; the arm's warm-up must end before the
    budget can run out (at most max_turns steps per episode), or its row is BC's by construction."""
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import evidence

    defaults = evidence.build_parser().parse_args([])
    warmup = evidence.ARMS["archer"][1]["warmup_iterations"]
    for env, recipe in evidence.RECIPES.items():
        fewest = defaults.env_steps / (defaults.rollout_episodes * recipe["max_turns"])
        assert warmup < fewest, (env, warmup, fewest)
