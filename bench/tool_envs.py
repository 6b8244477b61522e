"""Tool envs: success of the expert and two baselines on the test split, turns, env speed, tool latency,
and the sandbox's cost beside a bare `python -c pass`. Run: `python bench/tool_envs.py`."""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
import time
import zlib

import numpy as np

import turngym
from turngym.agents import ExpertAgent, RandomAgent
from turngym.envs.tools.sandbox import run_python

ENV_IDS = ("turngym/SQL-v0", "turngym/Calc-v0", "turngym/SearchQA-v0", "turngym/Python-v0")


class GuessAgent:
    """Answers at once with a random word or number of the question: what blind guessing earns."""

    name = "guess"

    def act(self, conversations, episodes=None):
        actions = []
        for conversation, episode in zip(conversations, episodes):
            question = conversation[-1]["content"].rsplit("Question:", 1)[-1]
            words = re.findall(r"[A-Za-z0-9.]+", question) or ["0"]
            rng = np.random.default_rng([episode.seed or 0, zlib.crc32(question.encode())])
            actions.append(f"<answer>{words[int(rng.integers(len(words)))]}</answer>")
        return actions


def _median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    print(
        f"{'env':22} {'tasks (test)':>12} {'expert':>7} {'random':>7} {'guess':>6} {'turns':>6} {'steps/s':>8}"
    )
    for env_id in ENV_IDS:
        env = turngym.make(env_id).unwrapped
        test_ids = env.task_ids("test")
        start = time.perf_counter()
        expert = turngym.rollout(env_id, ExpertAgent(), task_ids=test_ids, batch_size=8)
        elapsed = time.perf_counter() - start
        steps = sum(t.num_turns for t in expert)
        rates = [sum(t.success for t in expert) / len(expert)]
        for agent in (RandomAgent(), GuessAgent()):
            runs = turngym.rollout(env_id, agent, task_ids=test_ids, batch_size=8)
            rates.append(sum(t.success for t in runs) / len(runs))
        print(
            f"{env_id:22} {len(test_ids):>12} {rates[0]:>7.0%} {rates[1]:>7.0%} {rates[2]:>6.0%} "
            f"{steps / len(expert):>6.1f} {steps / elapsed:>8.0f}"
        )

    print("\ntool call latency (median)")
    sql = turngym.make("turngym/SQL-v0").unwrapped
    sql.reset(seed=0)
    calc = turngym.make("turngym/Calc-v0").unwrapped
    search = turngym.make("turngym/SearchQA-v0").unwrapped
    join = "SELECT COUNT(*) FROM orders o JOIN order_items i ON i.order_id = o.id"
    for name, fn, repeats in (
        ("query (SQLite, ro + authorizer)", lambda: sql.query(join), 200),
        ("calculate (AST walker)", lambda: calc.calculate("1000 * (1 + 5 / 100) ** 7 - 3 * sqrt(2)"), 2000),
        ("search (FTS5, BM25, top 5)", lambda: search.search("Celtav Industries founder"), 500),
        ("open", lambda: search.open("company-000"), 2000),
    ):
        print(f"  {name:34} {_median_ms(fn, repeats) * 1000:8.1f} µs")
    python = sys.executable
    bare = _median_ms(lambda: subprocess.run([python, "-I", "-S", "-c", "pass"], check=True), 20)
    boxed = _median_ms(lambda: run_python("pass"), 20)
    print(f"  {'python -I -S -c pass (no sandbox)':34} {bare:8.1f} ms")
    print(f"  {'run_python (sandbox)':34} {boxed:8.1f} ms  ({boxed / bare:.1f}x the bare process)")


if __name__ == "__main__":
    main()
