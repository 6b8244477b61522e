from __future__ import annotations

import numpy as np
import pytest

import turngym
from turngym.agents import ExpertAgent
from turngym.envs.games.wordle import (
    ABSENT,
    CORRECT,
    PRESENT,
    WordleEnv,
    _code,
    feedback,
    pattern_matrix,
    word_list,
)

A, P, C = ABSENT, PRESENT, CORRECT


def test_check_env():
    turngym.check_env(turngym.make("turngym/Wordle-v0"), invalid_actions=("", "abc", "zzzzz", "two words"))


@pytest.mark.parametrize(
    ("guess", "answer", "marks"),
    [
        ("crane", "crane", (C, C, C, C, C)),
        ("crane", "about", (A, A, P, A, A)),
        ("speed", "abide", (A, A, P, A, P)),  # only one E is yellow: the answer has one E
        ("eerie", "there", (P, A, P, A, C)),  # green E first, then one yellow E
        ("llama", "hello", (P, P, A, A, A)),
        ("array", "radar", (P, P, P, C, A)),  # radar has two Rs
    ],
)
def test_feedback_rules_for_repeated_letters(guess, answer, marks):
    assert feedback(guess, answer) == marks


def test_vectorized_patterns_match_the_rule():
    words, patterns = word_list(), pattern_matrix()
    rng = np.random.default_rng(0)
    for g, a in rng.integers(len(words), size=(2000, 2)):
        assert patterns[g, a] == _code(feedback(words[g], words[a]))


def test_expert_finds_every_word_within_six_guesses():
    env = WordleEnv()
    task_ids = env.task_ids("train") + env.task_ids("test")
    trajectories = turngym.rollout(WordleEnv, ExpertAgent(), task_ids=task_ids, batch_size=64, max_turns=6)
    assert len(trajectories) == len(word_list()) == 679
    assert all(t.success and t.total_reward == 1.0 for t in trajectories)
    assert max(t.num_turns for t in trajectories) <= 5


def test_a_game_with_feedback_lines():
    env = WordleEnv()
    env.reset(options={"task_id": "wordle-sheep"})
    obs, reward, terminated, _, info = env.step("SPEED")
    assert obs.splitlines() == [
        "Guess 1 of 6: SPEED",
        "S: correct spot",
        "P: in the word, wrong spot",
        "E: correct spot",
        "E: correct spot",
        "D: not in the word",
    ]
    assert (reward, terminated, info["valid_action"], info["progress"]) == (0.0, False, True, 0.6)
    obs, reward, terminated, _, info = env.step("Guess: sheep")
    assert reward == 1.0 and terminated and info["success"] and obs.endswith("Task complete!")


def test_six_wrong_guesses_end_the_game():
    env = WordleEnv()
    env.reset(options={"task_id": "wordle-zebra"})
    for word in ("crane", "about", "light", "money", "ocean", "pupil"):
        obs, reward, terminated, _, info = env.step(word)
    assert terminated and reward == 0.0 and not info["success"] and obs.endswith("The word was ZEBRA.")


@pytest.mark.parametrize(
    "action",
    # False, ["crane"], b"crane": non-str actions (bench/reliability.py found str(False) == "False" a word)
    [
        "",
        "cran",
        "cranes",
        "12345",
        "qqqqq",
        "crane now",
        "x" * 10_000,
        "🙂🙂🙂🙂🙂",
        False,
        ["crane"],
        b"crane",
    ],
)
def test_invalid_words_do_not_use_a_guess(action):
    env = WordleEnv()
    env.reset(seed=0)
    obs, reward, terminated, _, info = env.step(action)
    assert info["valid_action"] is False and reward == 0.0 and not terminated and env.guesses == []
    assert len(obs) < 200


def test_splits_and_replay():
    env = WordleEnv()
    train, test = set(env.task_ids("train")), set(env.task_ids("test"))
    assert not train & test and len(test) == 136
    obs, info = env.reset(seed=1, options={"split": "test"})
    assert info["task_id"] in test
    assert env.reset(seed=1, options={"split": "test"}) == (obs, info)
    with pytest.raises(ValueError, match="unknown task_id"):
        env.reset(options={"task_id": "wordle-xxxxx"})
