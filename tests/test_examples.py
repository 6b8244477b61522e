"""The examples in examples/ run in their `--tiny` mode and print what they promise."""

from __future__ import annotations

import re
import runpy
import sys
from pathlib import Path

import pytest

import turngym
from turngym.agents import ExpertAgent

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def run_example(name: str, *args: str, monkeypatch, capsys) -> str:
    """Run examples/NAME as `python examples/NAME ARGS` in this process; return what it printed."""
    monkeypatch.setattr(sys, "argv", [str(EXAMPLES / name), *args])
    monkeypatch.setenv("COLUMNS", "160")  # rich tables: no truncated cells when stdout is not a terminal
    runpy.run_path(str(EXAMPLES / name), run_name="__main__")
    return capsys.readouterr().out


def table_row(output: str, first_cell: str) -> list[str]:
    """The cells of the rich-table row whose first cell is `first_cell`."""
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if cells[0] == first_cell:
            return cells
    raise AssertionError(f"no table row {first_cell!r} in:\n{output}")


def test_openai_endpoint_eval_against_a_local_server(monkeypatch, capsys):
    pytest.importorskip("httpx")
    output = run_example("openai_endpoint_eval.py", "--tiny", monkeypatch=monkeypatch, capsys=capsys)
    assert re.search(r"local scripted model on http://127\.0\.0\.1:\d+/v1", output)
    # the scripted model plays the expert, so every held-out episode succeeds: 8/8 and its Wilson interval
    assert table_row(output, "all")[1:4] == ["8", "100.0%", "[67.6%, 100.0%]"]
    assert "scripted-expert on turngym/HouseholdEasy-v0 (test split)" in output
    # one request per turn: as many as the expert's turns on the same eight episodes
    expert = turngym.evaluate("turngym/HouseholdEasy-v0", ExpertAgent(), 8)
    served = int(re.search(r"answered (\d+) chat-completion requests", output).group(1))
    assert served == round(expert.overall.mean_turns * 8)


def test_scripted_model_reads_only_the_conversation():
    """It finds the episode from the text: after an off-script action it answers from the state
    that action led to, and it does not know conversations of other episodes."""
    example = runpy.run_path(str(EXAMPLES / "openai_endpoint_eval.py"))
    model = example["ExpertModel"]("turngym/HouseholdEasy-v0", seeds=range(4))
    env = turngym.make("turngym/HouseholdEasy-v0")
    observation, _ = env.reset(seed=2, options={"split": "test"})
    detour = env.unwrapped.admissible_actions()[-1]  # not what the expert would do first
    messages = [{"role": "system", "content": "rules"}, {"role": "user", "content": observation}]
    messages += [{"role": "assistant", "content": detour}, {"role": "user", "content": env.step(detour)[0]}]
    assert model.reply(messages) == env.unwrapped.expert_action()
    messages[1]["content"] = observation + " (changed)"
    assert model.reply(messages) == "look"


# TRL sets a TrainingArguments field that transformers 5 renamed
@pytest.mark.filterwarnings("ignore:`gradient_checkpointing` is deprecated:FutureWarning")
def test_trl_sft_export(monkeypatch, capsys, tmp_path):
    pytest.importorskip("trl")
    output = run_example(
        "trl_sft_export.py", "--tiny", "--out", str(tmp_path), monkeypatch=monkeypatch, capsys=capsys
    )
    assert "collected 16 expert episodes" in output
    assert "dataset: 16 rows, columns ['messages', 'env_id'" in output
    first, last = map(float, re.search(r"SFTTrainer: 4 steps, loss ([\d.]+) -> ([\d.]+)", output).groups())
    assert last < first  # SFTTrainer trained on the exported conversations
    assert table_row(output, "all")[1] == "8"  # evaluated back in TurnGym on 8 held-out episodes
    assert (tmp_path / "model" / "config.json").exists()


@pytest.mark.filterwarnings("ignore::FutureWarning")  # transformers 5 renamed gradient checkpointing
def test_trl_grpo_env(monkeypatch, capsys, tmp_path):
    pytest.importorskip("trl")
    output = run_example(
        "trl_grpo_env.py", "--tiny", "--out", str(tmp_path), monkeypatch=monkeypatch, capsys=capsys
    )
    assert "prompt dataset: 64 KeyDoor train tasks" in output
    steps = re.findall(r"GRPO step (\d): episode reward ([\d.]+)", output)
    assert [step for step, _ in steps] == ["1", "2"]  # GRPOTrainer trained 2 steps on KeyDoor episodes
    assert re.search(r"last batch: 8 episodes, \d opened the right door", output)
    assert (tmp_path / "model" / "config.json").exists()


def test_trl_chat_template_matches_the_tiny_agents():
    """The template with {% generation %} markers renders exactly TinyAgent's plain template, so
    TRL trains on the text the agent is prompted with."""
    pytest.importorskip("trl")
    from turngym.agents.hf import PLAIN_CHAT_TEMPLATE
    from turngym.agents.tiny import word_tokenizer

    template = runpy.run_path(str(EXAMPLES / "trl_sft_export.py"))["CHAT_TEMPLATE"]
    (trajectory,) = turngym.rollout("turngym/KeyDoor-v0", ExpertAgent(), 1)
    tokenizer = word_tokenizer([trajectory.instructions, *trajectory.observations, *trajectory.actions])
    messages = trajectory.to_messages(include_final=True)
    rendered = []
    for chat_template in (template, PLAIN_CHAT_TEMPLATE):
        tokenizer.chat_template = chat_template
        rendered.append(tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True))
    assert rendered[0] == rendered[1]
    tokenizer.chat_template = template
    encoded = tokenizer.apply_chat_template(messages, return_assistant_tokens_mask=True, return_dict=True)
    trained = [i for i, m in zip(encoded["input_ids"], encoded["assistant_masks"]) if m]
    assert tokenizer.decode(trained) == "<eos>".join(trajectory.actions) + "<eos>"


def test_compare_runs(monkeypatch, capsys, tmp_path):
    pytest.importorskip("torch")
    output = run_example(
        "compare_runs.py", "--tiny", "--runs-dir", str(tmp_path), monkeypatch=monkeypatch, capsys=capsys
    )
    for run in ("bc", "bc+grpo"):
        cells = table_row(output, run)
        assert cells[2] == "8" and re.fullmatch(r"\d+\.\d%", cells[3])
        assert re.fullmatch(r"\[\d+\.\d%, \d+\.\d%\]", cells[4])
        assert (tmp_path / run / "metrics.jsonl").exists() and (tmp_path / run / "agent").is_dir()
    assert "the 95% intervals" in output


def test_smollm2_lora_bc_grpo(monkeypatch, capsys, tmp_path):
    pytest.importorskip("peft")
    output = run_example(
        "smollm2_lora_bc_grpo.py",
        "--tiny",
        "--runs-dir",
        str(tmp_path),
        monkeypatch=monkeypatch,
        capsys=capsys,
    )
    assert "tiny random Llama + LoRA r=8 on turngym/KeyDoor-v0: held-out success over 4 episodes" in output
    stages = dict(
        re.findall(
            r"^  (before training|after BC|after GRPO|saved GRPO agent) +(\S+ \[.+?\]  \S+ turns)",
            output,
            re.M,
        )
    )
    assert list(stages) == ["before training", "after BC", "after GRPO", "saved GRPO agent"]
    # the saved agent, loaded as `turngym eval --agent` loads it, repeats the GRPO run's last eval
    assert stages["saved GRPO agent"] == stages["after GRPO"]
    for run in ("bc-KeyDoor-v0-s0", "grpo-KeyDoor-v0-s0"):  # each run saved its LoRA adapter only
        assert (tmp_path / run / "agent" / "adapter_config.json").exists()
        assert not (tmp_path / run / "agent" / "model.safetensors").exists()
    grpo_config = (tmp_path / "grpo-KeyDoor-v0-s0" / "config.yaml").read_text()
    assert f"init_from: {tmp_path / 'bc-KeyDoor-v0-s0'}" in grpo_config


def test_docs_list_every_example_and_this_file_runs_each():
    page = (EXAMPLES.parent / "docs" / "examples.md").read_text()
    this_file = Path(__file__).read_text()
    for example in sorted(EXAMPLES.glob("*.py")):
        assert f"`{example.name}`" in page, f"docs/examples.md does not list {example.name}"
        if example.name != "custom_env.py":  # tests/test_readme.py runs that one
            # the call names the script, then "--tiny" (on the same line or the next, as ruff formats it)
            called = re.search(rf'"{re.escape(example.name)}",\s*"--tiny"', this_file)
            assert called, f"no --tiny test of {example.name}"
