"""WebShop bench: env steps/s including search (one core), and search-engine build and query times for
tantivy (the engine WebShop-v0 uses) and SQLite FTS5 side by side, on the built-in catalog and on
100k synthetic products.

    python bench/webshop.py            # about a minute on one core
    python bench/webshop.py --quick    # skip the 100k-product part
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np

from turngym.envs.webshop import search
from turngym.envs.webshop.catalog import CATEGORIES, build_catalog
from turngym.envs.webshop.env import WebShopEnv
from turngym.envs.webshop.types import Product


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def fts5_build(products: tuple[Product, ...], path: Path) -> None:
    connection = sqlite3.connect(path)
    connection.execute("CREATE VIRTUAL TABLE docs USING fts5(asin UNINDEXED, contents, tokenize='porter')")
    connection.executemany(
        "INSERT INTO docs VALUES (?, ?)", ((p.asin, search.document_text(p)) for p in products)
    )
    connection.execute("INSERT INTO docs(docs) VALUES ('optimize')")
    connection.commit()
    connection.close()


def fts5_query_ms(path: Path, queries: list[str]) -> float:
    connection = sqlite3.connect(path)
    start = time.perf_counter()
    for query in queries:
        match = " OR ".join(f'"{t}"' for t in search.query_terms(query))
        connection.execute(
            "SELECT asin FROM docs WHERE docs MATCH ? ORDER BY rank LIMIT 50", (match,)
        ).fetchall()
    return (time.perf_counter() - start) / len(queries) * 1000


def tantivy_query_ms(path: Path, queries: list[str]) -> float:
    search.search(str(path), "warm up")
    start = time.perf_counter()
    for query in queries:
        search.search.__wrapped__(str(path), query)  # bypass the query cache
    return (time.perf_counter() - start) / len(queries) * 1000


def engines(name: str, products: tuple[Product, ...], queries: list[str], workdir: Path) -> None:
    tantivy_path = workdir / f"{name}-tantivy"
    _, tantivy_build = timed(search.build_index, products, tantivy_path)
    fts5_path = workdir / f"{name}.sqlite"
    _, fts5_build_s = timed(fts5_build, products, fts5_path)
    print(
        f"{name} ({len(products):,} products), index build:  tantivy {tantivy_build:.2f} s   FTS5 {fts5_build_s:.2f} s"
    )
    print(
        f"{name}, top-50 query ({len(queries)} instructions):  tantivy {tantivy_query_ms(tantivy_path, queries):.3f} ms"
        f"   FTS5 {fts5_query_ms(fts5_path, queries):.3f} ms"
    )


def steps_per_second(policy: str, episodes: int, cold: bool = False) -> tuple[float, float]:
    """Raw env steps/s (no rollout engine, no agent model) and searches per episode; `cold` empties
    the query cache before every step, so every search runs the engine."""
    env = WebShopEnv()
    rng = np.random.default_rng(0)
    search.search.cache_clear()
    steps = searches = 0
    start = time.perf_counter()
    for seed in range(episodes):
        _, info = env.reset(seed=seed)
        for _ in range(15):
            if policy == "expert":
                action = env.expert_action()
            else:
                actions = info["admissible_actions"]
                action = actions[rng.integers(len(actions))]
            searches += action.startswith("search[")
            if cold:
                search.search.cache_clear()
            _, _, terminated, _, info = env.step(action)
            steps += 1
            if terminated:
                break
    return steps / (time.perf_counter() - start), searches / episodes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="skip the 100k-product part")
    args = parser.parse_args()
    where = "one process"
    if hasattr(os, "sched_setaffinity"):  # Linux: measure on one core
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        where = "pinned to one core"
    print(f"WebShop bench, {where}, {time.strftime('%Y-%m-%d %H:%M')}")
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["TURNGYM_CACHE"] = tmp
        catalog, generate_s = timed(build_catalog)
        print(
            f"built-in catalog: {len(catalog.products):,} products, {len(catalog.goals):,} goals, generated in {generate_s:.2f} s"
        )
        queries = [goal.instruction for goal in catalog.goals[:1000]]
        engines("built-in", catalog.products, queries, Path(tmp))
        _, first_env_s = timed(WebShopEnv)
        print(
            f"first WebShopEnv() in a fresh cache (hash + index build): {first_env_s:.2f} s; later ones reuse it"
        )
        for policy in ("random", "expert"):
            for cold in (False, True):
                rate, searches = steps_per_second(policy, 400, cold)
                cache = "query cache emptied every step" if cold else "query cache on"
                print(f"env steps/s, {policy} agent ({searches:.2f} searches/episode, {cache}): {rate:,.0f}")
        if not args.quick:
            per_type = -(-100_000 // sum(len(c.types) for c in CATEGORIES))
            big, big_s = timed(build_catalog, per_type)
            print(f"synthetic catalog: {len(big.products):,} products generated in {big_s:.1f} s")
            engines("100k", big.products, [g.instruction for g in big.goals[:300]], Path(tmp))


if __name__ == "__main__":
    main()
