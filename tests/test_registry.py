from __future__ import annotations

import sys
import textwrap

import pytest
from conftest import ChainEnv

import turngym
from turngym import registry
from turngym.errors import ConfigError, UnknownEnvError


def test_unknown_id_names_close_matches():
    with pytest.raises(UnknownEnvError) as excinfo:
        turngym.make("turngym/Keydoor-v0")
    message = str(excinfo.value)
    assert "turngym/KeyDoor-v0" in message and "\n" not in message


def test_register_and_make_a_custom_env():
    turngym.register(
        "tests/Chain-v0", ChainEnv, max_episode_steps=5, kwargs={"length": 3}, description="chain"
    )
    env = turngym.make("tests/Chain-v0")
    assert isinstance(env.unwrapped, ChainEnv) and env.unwrapped.length == 3
    assert env.spec.max_episode_steps == 5
    assert turngym.list_envs()["tests/Chain-v0"] == "chain"
    assert turngym.make("tests/Chain-v0", length=6).unwrapped.length == 6


def test_unknown_constructor_argument_is_one_line_error():
    with pytest.raises(ConfigError, match=r"unknown argument 'num_colours'.*num_colors"):
        turngym.make("turngym/KeyDoor-v0", num_colours=4)


def test_bad_ids_and_limits_are_rejected():
    with pytest.raises(ConfigError, match="namespace/Name-v0"):
        turngym.register("NoNamespace", ChainEnv)
    with pytest.raises(ConfigError, match="max_episode_steps"):
        turngym.register("tests/Bad-v0", ChainEnv, max_episode_steps=0)


def test_entry_point_plugins_are_loaded(tmp_path, monkeypatch):
    (tmp_path / "myplugin.py").write_text(
        textwrap.dedent(
            """
            import turngym
            from turngym.envs.keydoor import KeyDoorEnv

            def register_envs():
                turngym.register("myplugin/Doors-v0", KeyDoorEnv, max_episode_steps=4,
                                 kwargs={"num_colors": 3}, description="a plugin env")
            """
        )
    )
    dist = tmp_path / "myplugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: myplugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[turngym.envs]\nmyplugin = myplugin:register_envs\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(registry, "_plugins_loaded", False)
    assert "myplugin/Doors-v0" in turngym.list_envs()
    assert turngym.make("myplugin/Doors-v0").unwrapped.num_colors == 3
    sys.modules.pop("myplugin", None)
