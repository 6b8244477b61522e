"""Same seed, same episode, byte for byte, across processes: every env played in two interpreters
with different `PYTHONHASHSEED` (set and dict-of-str iteration orders differ between them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import turngym

# Plays every registered env (skipping those whose optional dependency is missing): the expert on
# seed 0 and a seeded random admissible choice on seed 1, at most 8 turns each; prints the
# trajectories as they are stored (JSONL records).
PLAY_EVERY_ENV = """
import json, warnings
warnings.simplefilter("ignore")
import turngym
from turngym.agents import ExpertAgent, RandomAgent
from turngym.errors import MissingDependencyError
from turngym.storage import to_json_line

records, skipped = {}, []
for env_id in sorted(turngym.list_envs()):
    try:
        trajectories = turngym.rollout(env_id, ExpertAgent(), seeds=[0], max_turns=8)
        trajectories += turngym.rollout(env_id, RandomAgent(seed=1), seeds=[1], max_turns=8)
    except MissingDependencyError:
        skipped.append(env_id)
        continue
    records[env_id] = [to_json_line(t.to_dict()).decode("utf-8") for t in trajectories]
print(json.dumps({"played": records, "skipped": skipped}))
"""


def test_every_env_is_deterministic_across_processes_with_different_hash_seeds():
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", PLAY_EVERY_ENV],
            env={**os.environ, "PYTHONHASHSEED": hash_seed, "OMP_NUM_THREADS": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for hash_seed in ("1", "2")
    ]
    outputs = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=600)
        assert process.returncode == 0, stderr[-2000:]
        outputs.append(json.loads(stdout))
    first, second = (output["played"] for output in outputs)
    # Other tests register envs in this process (one-file envs, test envs): compare built-ins only.
    built_in = {env_id for env_id in turngym.list_envs() if env_id.startswith("turngym/")}
    assert set(first) | set(outputs[0]["skipped"]) == built_in
    assert len(first) > len(outputs[0]["skipped"]), f"most envs were skipped: {outputs[0]['skipped']}"
    assert sorted(first) == sorted(second)
    for env_id in first:
        assert first[env_id] == second[env_id], f"{env_id}: PYTHONHASHSEED 1 and 2 played different episodes"
