"""The bandit envs of tests/conftest.py, registered for a process that imports them by file
(`turngym train grpo tests/trainers/data/bandit_env.py:test/Bandit-v0`): the processes of a
multi-process run start from the command line, not from pytest."""

import sys
from pathlib import Path

import turngym

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # tests/, where conftest.py is
from conftest import BanditEnv

for env_id, turns in (("test/Bandit-v0", 1), ("test/TwoStepBandit-v0", 2)):
    if env_id not in turngym.list_envs():
        turngym.register(
            env_id, BanditEnv, max_episode_steps=turns, kwargs={"turns": turns}, description="bandit in words"
        )
