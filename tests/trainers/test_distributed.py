"""Training in several processes (trainers/common/distributed.py) on the CPU with gloo.

Two processes (`turngym train --num-processes 2`, i.e. `accelerate launch`) train exactly as one
process with twice the gradient accumulation (the same global batch): the same per-iteration losses
and the same final weights, to float rounding (the minibatches' gradients are summed in another
order). Tolerance: 1e-5 relative on logged losses, 1e-5 absolute on weights. A killed process ends
the run within seconds with a one-line error. A run of 2 processes resumes in 1."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("accelerate")
safetensors = pytest.importorskip("safetensors.torch")

import turngym  # noqa: E402
from turngym.trainers.common.config import load_config  # noqa: E402
from turngym.trainers.common.replay import transitions  # noqa: E402

ENV_FILE = Path(__file__).parent / "data" / "bandit_env.py"
BANDIT = f"{ENV_FILE}:test/Bandit-v0"
TINY = {
    "tiny_layers": 1,
    "tiny_embd": 32,
    "tiny_heads": 2,
    "max_new_tokens": 3,
    "history_window": 0,
    "temperature": 1.0,
    "eval_episodes": 2,
    "eval_every": 100,
    "tensorboard": False,
    "torch_threads": 1,
    "seed": 0,
    "lr": 3e-3,
}
DPO_PAIRS = Path(__file__).parent / "data" / "bandit_pairs.jsonl"
# per algorithm: minibatches of 2 over at least 8 examples, so one process accumulates groups of two
# minibatches that two processes deal one each
ALGOS = {
    "grpo": {"iterations": 2, "rollout_episodes": 8, "group_size": 4, "batch_size": 2, "ppo_epochs": 1},
    "ppo": {
        "iterations": 2,
        "rollout_episodes": 8,
        "batch_size": 2,
        "critic_backbone": "own",
        "critic_width": 16,
    },
    "bc": {"epochs": 2, "expert_episodes": 8, "batch_size": 2},
    "alol": {"epochs": 2, "data_episodes": 8, "batch_size": 2, "value_epochs": 2, "critic_width": 16},
    "dpo": {"epochs": 2, "pairs": str(DPO_PAIRS), "batch_size": 1},
    "agent_r": {"iterations": 2, "rollout_episodes": 4, "budget": 4, "num_candidates": 2, "batch_size": 2},
    "step": {"iterations": 2, "rollout_episodes": 4, "flag": "differs", "batch_size": 2},
    "rise": {"iterations": 2, "rollout_episodes": 4, "attempts": 2, "candidates": 1, "batch_size": 2},
    "agent_q": {"iterations": 2, "rollout_episodes": 4, "budget": 4, "num_candidates": 2, "batch_size": 1},
    "archer": {
        "iterations": 2,
        "rollout_episodes": 8,
        "batch_size": 4,
        "critic_backbone": "own",
        "critic_width": 16,
        "critic_updates": 2,
        "actor_updates": 1,
        "warmup_iterations": 0,
    },
}
FAST = {"grpo"}  # the others run with -m slow (15 to 50 s each on 2 busy cores)


@pytest.fixture(scope="module")
def uniform_policy(tmp_path_factory) -> Path:
    """A saved TinyAgent that says `left` or `right` about equally at the bandit's state (from random
    weights every reward is 0 and a policy gradient is 0: nothing to compare)."""
    import importlib.util

    from turngym.trainers.common.policy import default_agent
    from turngym.trainers.grpo import GRPOConfig

    spec = importlib.util.spec_from_file_location("bandit_env", ENV_FILE)
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    config = load_config(GRPOConfig, None, [f"{k}={v}" for k, v in TINY.items()] + ["env_id=test/Bandit-v0"])
    agent = default_agent(config)
    episode = turngym.rollout("test/Bandit-v0", turngym.agents.RandomAgent(), 1, seed=0)[0]
    state = transitions(episode, 0)[0].state
    batch = agent.token_batch([state, state], ["right", "left"])
    optimizer = torch.optim.Adam(agent.model.parameters(), lr=1e-2)
    for _ in range(30):
        logprobs, mask = agent.action_logprobs([], [], batch)
        (-(logprobs * mask).sum(-1).mean()).backward()
        optimizer.step()
        optimizer.zero_grad()
    folder = tmp_path_factory.mktemp("uniform") / "agent"
    agent.save(folder)
    return folder


def train(algo: str, runs: Path, name: str, processes: int, *extra: str, **keys) -> subprocess.Popen:
    """`turngym train ALGO` on the bandit in a subprocess (`--num-processes` when `processes` > 1)."""
    values = {**TINY, **ALGOS[algo], "runs_dir": runs, "run_name": name, **keys}
    command = [sys.executable, "-m", "turngym.cli", "train", algo, BANDIT, "--quiet", *extra]
    command += [f"--set={key}={value}" for key, value in values.items()]
    if processes > 1:
        command += ["--num-processes", str(processes)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )


def succeeded(process: subprocess.Popen, timeout: float = 240) -> None:
    _, err = process.communicate(timeout=timeout)
    assert process.returncode == 0, err[-3000:]


def logged(run: Path) -> list[dict[str, float]]:
    """Each iteration's losses and training statistics (not the wall clock)."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    keep = ("losses/", "charts/train_", "charts/clip", "charts/env_steps", "values/", "rewards/")
    return [
        {k: v for k, v in r.items() if k.startswith(keep) and k != "charts/env_steps_per_s"} for r in records
    ]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return safetensors.load_file(run / "agent" / "model.safetensors")


def accumulation(algo: str) -> dict[str, int]:
    """One process's `grad_accum_steps` matching two processes at 1 (ArCHer replicates its steps:
    the same config either way)."""
    return {} if algo == "archer" else {"grad_accum_steps": 2}


@pytest.mark.parametrize(
    "algo", [pytest.param(a, marks=() if a in FAST else pytest.mark.slow) for a in ALGOS]
)
def test_two_processes_train_as_one_with_twice_the_accumulation(algo, uniform_policy, tmp_path):
    start = {} if algo in ("bc", "dpo") else {"init_from": uniform_policy}
    two = train(algo, tmp_path, "two", 2, **start)
    one = train(algo, tmp_path, "one", 1, **start, **accumulation(algo))
    succeeded(two)
    succeeded(one)
    one_logs, two_logs = logged(tmp_path / "one"), logged(tmp_path / "two")
    assert [set(m) for m in two_logs] == [set(m) for m in one_logs]
    assert any(abs(v) > 1e-4 for m in one_logs for k, v in m.items() if k.startswith("losses/"))
    for a, b in zip(one_logs, two_logs):
        assert b == pytest.approx(a, rel=1e-5, abs=1e-7)
    start_weights = weights(uniform_policy.parent) if start else None
    one_w, two_w = weights(tmp_path / "one"), weights(tmp_path / "two")
    assert start_weights is None or any(not torch.equal(one_w[k], start_weights[k]) for k in one_w)
    for key in one_w:
        torch.testing.assert_close(two_w[key], one_w[key], rtol=0, atol=1e-5)
    # one run folder, written once: the episodes of every process, each once, in order
    one_episodes = (tmp_path / "one" / "trajectories.jsonl").read_text().splitlines()
    two_episodes = (tmp_path / "two" / "trajectories.jsonl").read_text().splitlines()
    assert [json.loads(line)["metadata"] for line in two_episodes] == [
        json.loads(line)["metadata"] for line in one_episodes
    ]


@pytest.mark.slow
def test_a_run_of_two_processes_resumes_in_one(uniform_policy, tmp_path):
    """Iteration 1 in two processes, then --resume in one with grad_accum_steps=2 (the same global
    batch): the same metrics and weights as one process throughout."""
    start = {"init_from": uniform_policy, "save_every": 1}
    two = train("grpo", tmp_path, "resumed", 2, **start, iterations=1)
    one = train("grpo", tmp_path, "one", 1, **start, grad_accum_steps=2)
    succeeded(two)
    succeeded(train("grpo", tmp_path, "resumed", 1, "--resume", **start, grad_accum_steps=2))
    succeeded(one)
    resumed, one_process = logged(tmp_path / "resumed"), logged(tmp_path / "one")
    assert len(resumed) == len(one_process)
    for got, expected in zip(resumed, one_process):  # pytest.approx takes no nested structures
        assert got == pytest.approx(expected, rel=1e-5, abs=1e-7)
    one_w, resumed_w = weights(tmp_path / "one"), weights(tmp_path / "resumed")
    for key in one_w:
        torch.testing.assert_close(resumed_w[key], one_w[key], rtol=0, atol=1e-5)


@pytest.mark.slow
def test_a_killed_process_ends_the_run_within_seconds_in_one_line(uniform_policy, tmp_path):
    """SIGKILL to process 1 mid-run: the launcher stops process 0 and the command exits non-zero
    within seconds, saying which process ended and how, without a traceback."""
    import psutil

    run = train("grpo", tmp_path, "killed", 2, init_from=uniform_policy, iterations=10_000)
    metrics = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2):  # iteration 1 logged
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()[1][-2000:]
        time.sleep(0.2)
    (victim,) = [
        child
        for child in psutil.Process(run.pid).children(recursive=True)
        if child.environ().get("RANK") == "1" and "turngym.cli" in child.cmdline()
    ]
    killed = time.monotonic()
    os.kill(victim.pid, signal.SIGKILL)
    _, err = run.communicate(timeout=60)
    assert time.monotonic() - killed < 20
    assert run.returncode != 0
    assert "error: process 1 of the run ended (signal SIGKILL)" in err
    assert "Traceback" not in err, err[-3000:]


@pytest.mark.parametrize("name", ["ddp", "fsdp", "zero2", "zero3"])
def test_the_accelerate_config_files_parse_and_name_valid_keys(name):
    """examples/accelerate/*.yaml (not run here: they need GPUs, and deepspeed for zero2/zero3):
    Accelerate loads each (an unknown top-level key is a TypeError there) and every key of its
    fsdp_config or deepspeed_config is an option of `accelerate launch`."""
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.commands.launch import launch_command_parser

    path = Path(__file__).parents[2] / "examples" / "accelerate" / f"{name}.yaml"
    config = load_config_from_file(str(path))
    kind = {"ddp": "MULTI_GPU", "fsdp": "FSDP", "zero2": "DEEPSPEED", "zero3": "DEEPSPEED"}[name]
    assert config.distributed_type.value == kind
    options = {action.dest for action in launch_command_parser()._actions}
    nested = {**(config.fsdp_config or {}), **(config.deepspeed_config or {})}
    assert nested or name == "ddp"
    assert sorted(set(nested) - options) == []
    if name.startswith("zero"):
        assert config.deepspeed_config["zero_stage"] == int(name[-1])


@pytest.mark.parametrize(
    ("variable", "what"), [("ACCELERATE_USE_FSDP", "FSDP"), ("ACCELERATE_USE_DEEPSPEED", "DeepSpeed")]
)
def test_an_fsdp_or_deepspeed_launch_is_refused_in_one_line(variable, what, monkeypatch):
    from turngym.errors import ConfigError
    from turngym.trainers.common.distributed import join_processes
    from turngym.trainers.grpo import GRPOConfig

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv(variable, "true")
    with pytest.raises(ConfigError, match=f"Accelerate {what} launch is not supported"):
        join_processes(GRPOConfig(), "cpu")


def test_async_collect_and_too_few_episodes_are_refused_with_several_processes(monkeypatch):
    from turngym.errors import ConfigError
    from turngym.trainers.bc import BCConfig
    from turngym.trainers.common.distributed import check_launch, join_processes
    from turngym.trainers.grpo import GRPOConfig
    from turngym.trainers.ppo import PPOConfig

    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(ConfigError, match="async_collect"):
        join_processes(GRPOConfig(async_collect=True), "cpu")
    with pytest.raises(ConfigError, match="at least one group of 4 episodes"):
        join_processes(GRPOConfig(rollout_episodes=8, group_size=4), "cpu")
    with pytest.raises(
        ConfigError, match=r"rollout_episodes \(2\) must give each of the 4 processes at least one"
    ):
        join_processes(PPOConfig(rollout_episodes=2), "cpu")
    check_launch(BCConfig(rollout_episodes=2))  # BC plays no rollouts: nothing to share


def test_shares_are_contiguous_whole_groups_covering_every_episode(monkeypatch):
    from turngym.trainers.common.distributed import rank_share, share_range

    monkeypatch.setenv("WORLD_SIZE", "3")
    shares = []
    for rank in range(3):
        monkeypatch.setenv("RANK", str(rank))
        shares.append(share_range(20, group=4))
    assert [list(s) for s in shares] == [list(range(0, 8)), list(range(8, 16)), list(range(16, 20))]
    monkeypatch.setenv("RANK", "1")
    grouped = rank_share({"seeds": [7] * 4 + [9] * 4 + [5] * 4, "batch_size": 2}, seed=100, group=4)
    assert grouped == {"seeds": [9] * 4, "batch_size": 2, "first_index": 4}
    counted = rank_share({"num_episodes": 6}, seed=100, group=1)
    assert counted == {"seeds": [102, 103], "first_index": 2}


def test_a_share_of_a_rollout_samples_what_the_whole_rollout_samples():
    """`first_index`: the second half of a sampled rollout, played alone, draws the same tokens."""
    from turngym.agents.sampling import SamplingConfig
    from turngym.agents.tiny import TinyAgent, TinyConfig

    agent = TinyAgent.from_env(
        "turngym/KeyDoor-v0", TinyConfig(n_layer=1, n_embd=32, n_head=2), SamplingConfig(max_new_tokens=4)
    )
    seeds = [11, 11, 12, 12, 13, 13]
    whole = turngym.rollout("turngym/KeyDoor-v0", agent, seeds=seeds, seed=5, max_turns=3)
    half = turngym.rollout("turngym/KeyDoor-v0", agent, seeds=seeds[3:], seed=5, max_turns=3, first_index=3)

    def tokens(trajectories):
        return [[turn.action_tokens for turn in t.turns] for t in trajectories]

    assert tokens(half) == tokens(whole[3:])
    alone = turngym.rollout("turngym/KeyDoor-v0", agent, seeds=seeds[3:], seed=5, max_turns=3)
    assert tokens(alone) != tokens(whole[3:])  # without first_index: other draws


@pytest.mark.slow
@pytest.mark.parametrize("to", ["launcher", "terminal"])
def test_a_stop_request_stops_every_process_after_one_iteration_with_a_checkpoint(
    to, uniform_policy, tmp_path
):
    """SIGTERM to the launcher, or Ctrl-C as a terminal sends it (SIGINT to every process of the
    command): the processes agree on the iteration to stop after; rank 0 saves, and says so once."""
    import psutil

    # no scheduled checkpoint: on a quiet machine iterations are quick, and one could land before the stop
    run = train(
        "grpo", tmp_path, "stopped", 2, init_from=uniform_policy, iterations=10_000, save_every=10_000
    )
    metrics = tmp_path / "stopped" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2):
        assert run.poll() is None and time.monotonic() < deadline, run.communicate()[1][-2000:]
        time.sleep(0.2)
    sent = signal.SIGTERM if to == "launcher" else signal.SIGINT
    if to == "launcher":
        (launcher,) = psutil.Process(run.pid).children()
        launcher.send_signal(sent)
    else:
        os.killpg(run.pid, sent)  # the command's own session: the terminal's foreground group
    _, err = run.communicate(timeout=60)
    assert run.returncode == 128 + sent, err[-3000:]
    assert err.count("stopped after iteration") == 1, err
    assert err.count(f"{signal.Signals(sent).name}: finishing") == 1, err
    (checkpoint,) = (tmp_path / "stopped" / "checkpoints").glob("iter_*.pt")
    last = json.loads(metrics.read_text().splitlines()[-1])["iteration"]
    assert checkpoint.name == f"iter_{last:06d}.pt"
    assert (tmp_path / "stopped" / "agent" / "model.safetensors").exists()
    assert "Traceback" not in err and "death signal" not in err


def test_a_replica_run_writes_nothing_and_resumes_from_rank_0s_checkpoint(tmp_path):
    from turngym.trainers.common.distributed import ReplicaRun
    from turngym.trainers.common.run import Run
    from turngym.trainers.grpo import GRPOConfig

    config = GRPOConfig(runs_dir=str(tmp_path), run_name="r", tensorboard=False)
    replica = ReplicaRun(config, "cpu")
    replica.log({"losses/policy": 1.0}, 1)
    episode = turngym.rollout("turngym/KeyDoor-v0", turngym.agents.RandomAgent(), 1, max_turns=1)[0]
    replica.iteration_sink(1)(episode)
    replica.eval_sink(1)(episode)
    replica.credit.write({"x": 1})
    replica.save_checkpoint(1, {"x": torch.ones(1)})
    replica.write_curve()
    replica.rewind(0)
    replica.close()
    assert not (tmp_path / "r").exists()
    main = Run(config)
    main.save_checkpoint(3, {"x": torch.ones(2)})
    main.close()
    state = ReplicaRun(config, "cpu").latest_checkpoint()
    assert state["iteration"] == 3 and torch.equal(state["x"], torch.ones(2))
    assert ReplicaRun(config, "cuda:3").map_location == {"cuda:0": "cuda:3"}  # not rank 0's GPU


def test_more_processes_than_gpus_is_refused(monkeypatch):
    from turngym.errors import ConfigError
    from turngym.trainers.common.launch import launch_command

    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    with pytest.raises(ConfigError, match="--num-processes 8 but torch sees 4 GPUs"):
        launch_command(8, ["train", "grpo", "turngym/KeyDoor-v0"])
    assert "--multi_gpu" in launch_command(4, ["train"])
