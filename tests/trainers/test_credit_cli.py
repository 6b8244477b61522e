"""Every credit method from the CLI (`turngym train ALGO ENV --set credit=NAME`): one tiny iteration
runs and stores each episode's per-turn credit; info_gain on an env without a single correct answer
is a one-line error before training starts."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from conftest import set_args
from typer.testing import CliRunner

from turngym.cli import app

runner = CliRunner()
TINY = [
    "iterations=1",
    "rollout_episodes=4",
    "batch_size=4",
    "eval_episodes=2",
    "max_turns=3",
    "max_new_tokens=6",
    "tiny_layers=1",
    "tiny_embd=32",
    "tiny_heads=2",
    "tensorboard=false",
    "progress=false",
]


@pytest.mark.parametrize(
    "algo, env_id, credit",
    [
        ("grpo", "turngym/KeyDoor-v0", "gigpo"),
        ("grpo", "turngym/KeyDoor-v0", "spa"),
        ("ppo", "turngym/KeyDoor-v0", "spa"),
        ("grpo", "turngym/TwentyQuestions-v0", "info_gain"),
        ("ppo", "turngym/TwentyQuestions-v0", "info_gain"),
        ("grpo", "turngym/KeyDoor-v0", "judge"),
    ],
)
def test_each_credit_method_trains_from_the_cli(algo, env_id, credit, tmp_path):
    extra = ["group_size=2"] if algo == "grpo" else []
    if credit == "judge":  # a local model folder as the judge (no download): a tiny Llama, replies unparsed
        from turngym.agents.tiny import save_tiny_llama

        save_tiny_llama("turngym/KeyDoor-v0", tmp_path / "judge")
        extra.append(f"judge_model={tmp_path / 'judge'}")
    args = [
        "train",
        algo,
        env_id,
        *set_args([*TINY, *extra, f"credit={credit}", f"runs_dir={tmp_path / 'runs'}"]),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    (stored,) = (tmp_path / "runs").glob("*/credit.jsonl")
    records = [json.loads(line) for line in stored.read_text().splitlines()]
    assert len(records) == 4 and {r["method"] for r in records} == {credit}
    for r in records:  # GiGPO gives advantages only (no per-turn rewards)
        assert len(r["turn_advantages"]) >= 1
        assert (
            r["turn_rewards"] is None
            if credit == "gigpo"
            else len(r["turn_rewards"]) == len(r["turn_advantages"])
        )


@pytest.mark.parametrize("algo", ["grpo", "ppo"])
def test_info_gain_without_an_answer_is_a_one_line_cli_error(algo, tmp_path):
    args = ["train", algo, "turngym/Sokoban-v0", *set_args(["credit=info_gain", f"runs_dir={tmp_path}"])]
    result = runner.invoke(app, args)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "single correct answer" in lines[0] and "TwentyQuestions" in lines[0]
    assert not list(tmp_path.iterdir())  # the config fails before a run folder is made
