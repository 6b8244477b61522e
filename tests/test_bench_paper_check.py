"""bench/paper_check.py (issue 40's comparisons at GPU scale) runs its whole pipeline on CPU with --tiny:
every arm of both comparisons is a `turngym train` run that logs its eval points to the JSONL (the RL
arms from the BC start), and the table names every arm; a spent budget skips arms instead of overrunning."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).parents[1] / "bench" / "paper_check.py"
ARMS = {
    ("archer", "turngym/GuessMyCity-v0"): ["bc", "archer", "ppo", "filtered_bc"],
    ("gigpo", "turngym/HouseholdEasy-v0"): ["gigpo", "grpo"],
}


def run(tmp_path: Path, *extra: str) -> tuple[list[dict], str]:
    out = tmp_path / "check.jsonl"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--tiny", "--out", str(out), *extra],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return [json.loads(line) for line in out.read_text().splitlines()], out.with_suffix(".md").read_text()


@pytest.mark.slow
def test_tiny_paper_check_runs_every_arm_of_archers_comparison(tmp_path):
    """ArCHer's comparison end to end (BC, then three arms from it); GiGPO's comparison runs the same
    `run_arm` path with GRPO commands (checked below without training: tests/test_bench_evidence.py
    runs GRPO + GiGPO from the CLI end to end)."""
    records, table = run(tmp_path, "--runs-dir", str(tmp_path / "runs"), "--comparisons", "archer")
    ((comparison, env_id), arms), *_ = ARMS.items()
    rows = [r for r in records if r.get("comparison") == comparison and r.get("env") == env_id]
    assert [r["arm"] for r in rows if r["step"] == "arm"] == arms
    for arm in arms:
        (end,) = [r for r in rows if r["arm"] == arm and r["step"] == "arm"]
        assert end["exit_code"] == 0, end.get("error")
        evals = [r for r in rows if r["arm"] == arm and r["step"] == "eval"]
        last = 2 if arm == "bc" else 1  # BC: 2 epochs; the others: 1 iteration
        assert [e["iteration"] for e in evals] == list(range(last + 1)), evals
        assert all(
            0 <= e["ci_low"] <= e["success"] <= e["ci_high"] <= 1 and e["episodes"] == 4 for e in evals
        )
        if arm != "bc":  # 8 episodes of 3 turns at most, counted once
            assert 8 <= evals[-1]["env_steps"] <= 24 and evals[0]["env_steps"] == 0
        assert f"| {arm} |" in table
    assert env_id.removeprefix("turngym/") in table
    config = (tmp_path / "runs" / "archer-archer-GuessMyCity-v0-s0" / "config.yaml").read_text()
    assert "init_from: " + str(tmp_path / "runs" / "archer-bc-GuessMyCity-v0-s0") in config
    assert "critic_backbone: pretrained" in config  # the paper's critic: a pretrained encoder


def test_gigpo_comparison_commands_differ_only_in_credit(monkeypatch):
    """GiGPO's two arms are the same `turngym train grpo` but for the credit (and GiGPO's own keys)."""
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import paper_check

    env_id = "turngym/HouseholdEasy-v0"
    for size in paper_check.SIZES:
        gigpo = paper_check.arm_settings("gigpo", "gigpo", env_id, size)
        grpo = paper_check.arm_settings("gigpo", "grpo", env_id, size)
        assert gigpo["credit"] == "gigpo" and grpo["credit"] == "outcome"
        assert not any(k.startswith("gigpo_") for k in grpo)
        shared = {k: v for k, v in gigpo.items() if k != "credit" and not k.startswith("gigpo_")}
        assert {k: v for k, v in grpo.items() if k in shared} == shared
        command = paper_check.train_command("grpo", env_id, gigpo)
        assert command[3:6] == ["train", "grpo", env_id] and "credit=gigpo" in command


def test_spent_budget_skips_every_arm(tmp_path):
    records, table = run(tmp_path, "--budget-s", "0")
    assert [r["step"] for r in records] == ["build", *["skipped"] * 4, "build", *["skipped"] * 2]
    assert [r["arm"] for r in records if r["step"] == "skipped"] == [
        a for arms in ARMS.values() for a in arms
    ]
    assert table.count("skipped: budget spent") == 6


def test_table_reads_each_arm_at_equal_env_step_budgets(monkeypatch):
    """Each row reads every arm's last eval at or below the budget (quarters of the largest budget all
    arms reached); a row reading the same evals as the one before is left out."""
    monkeypatch.syspath_prepend(str(SCRIPT.parent))
    import paper_check

    def evals(arm: str, steps: list[int], success: list[float]) -> list[dict]:
        return [
            {"comparison": "gigpo", "env": "turngym/HouseholdEasy-v0", "arm": arm, "step": "eval",
             "iteration": i, "env_steps": s, "success": p, "ci_low": 0.0, "ci_high": 1.0}
            for i, (s, p) in enumerate(zip(steps, success, strict=True))
        ]  # fmt: skip

    records = evals("gigpo", [0, 50, 100], [0.0, 0.25, 0.5]) + evals("grpo", [0, 80, 160], [0.0, 0.1, 0.9])
    rows = [line for line in paper_check.table(records, "smoke").splitlines() if line[:3] in ("| 0", "| 2", "| 5", "| 7", "| 1")]  # fmt: skip
    assert rows == [
        "| 0 | 0% [0%, 100%] @ 0 | 0% [0%, 100%] @ 0 |",
        "| 50 | 25% [0%, 100%] @ 50 | 0% [0%, 100%] @ 0 |",
        "| 100 | 50% [0%, 100%] @ 100 | 10% [0%, 100%] @ 80 |",  # grpo's 160-step eval is past every budget
    ]
