"""Load WebShop's own data files (`items_shuffle*.json`, `items_ins_v2*.json`, `items_human_ins.json`,
`reviews.json`) the way WebShop's `load_products` and `get_goals` read them. Nothing is downloaded:
point `data_dir` at the files you fetched with WebShop's setup script."""

from __future__ import annotations

import itertools
import json
import random
import re
import zlib
from decimal import Decimal
from pathlib import Path
from typing import Any

from turngym.core import TEXT_CHARSET
from turngym.envs.webshop.catalog import Catalog, StableRng, price_limit
from turngym.envs.webshop.types import Goal, Product, Review

PRODUCT_FILES = ("items_shuffle.json", "items_shuffle_1000.json")
ATTRIBUTE_FILES = ("items_ins_v2.json", "items_ins_v2_1000.json")
HUMAN_GOAL_FILE = "items_human_ins.json"
REVIEW_FILE = "reviews.json"
GOAL_SHUFFLE_SEED = 233  # WebShop shuffles its goals with random.seed(233): the same order here
TEST_GOALS, DEV_GOALS = 500, 1000  # WebShop's baselines: goals 0-499 test, 500-1499 dev, the rest train


def _find(data_dir: Path, names: tuple[str, ...], required: bool = True) -> Path | None:
    for name in names:
        if (data_dir / name).is_file():
            return data_dir / name
    if required:
        raise FileNotFoundError(
            f"no {' or '.join(names)} in {data_dir} (WebShop's data files are expected there)"
        )
    return None


def _clean(text: Any) -> str:
    """A field as text, keeping only characters observations may hold (real scraped text has control
    characters and private-use glyphs)."""
    if text is None:
        return ""
    text = str(text)
    if all(c in TEXT_CHARSET for c in text):
        return text
    return "".join(c if c in TEXT_CHARSET else " " for c in text)


def _pricing(raw: Any, asin: str) -> tuple[float, str]:
    """(price, price tag) as WebShop derives them; a range gets a price drawn inside it (WebShop draws
    it unseeded at start-up; here it is fixed per asin)."""
    if not raw:
        return 100.0, "$100.0"
    prices = [float(Decimal(re.sub(r"[^\d.]", "", p) or "0")) for p in str(raw).split("$")[1:]]
    if not prices:
        return 100.0, "$100.0"
    if len(prices) == 1:
        return prices[0], f"${prices[0]}"
    rng = StableRng(zlib.crc32(asin.encode()))
    return rng.uniform(prices[0], prices[1]), f"${prices[0]} to ${prices[1]}"


def _options(raw: dict[str, Any] | None) -> dict[str, tuple[str, ...]]:
    options: dict[str, tuple[str, ...]] = {}
    for name, contents in (raw or {}).items():
        if contents is None:
            continue
        options[_clean(name).lower()] = tuple(
            _clean(c["value"]).strip().replace("/", " | ").lower() for c in contents
        )
    return options


def _reviews(entries: list[dict[str, Any]]) -> tuple[Review, ...]:
    reviews = []
    for r in entries:
        score = r.get("score", r.get("stars", 0))
        try:
            score = int(float(score))
        except (TypeError, ValueError):
            score = 0
        reviews.append(Review(_clean(r.get("title")), score, _clean(r.get("body", r.get("review")))))
    return tuple(reviews)


def load_products(data_dir: Path, num_products: int | None = None) -> tuple[list[Product], dict[str, Any]]:
    """WebShop's products (skipping bad and repeated asins, as it does) and its attribute file."""
    with open(_find(data_dir, PRODUCT_FILES)) as f:
        raw_products = json.load(f)
    with open(_find(data_dir, ATTRIBUTE_FILES)) as f:
        attributes = json.load(f)
    reviews: dict[str, tuple[tuple[Review, ...], str]] = {}
    review_path = _find(data_dir, (REVIEW_FILE,), required=False)
    if review_path is not None:
        with open(review_path) as f:
            for r in json.load(f):
                reviews[r["asin"]] = (
                    _reviews(r.get("reviews") or []),
                    _clean(r.get("average_rating", "N.A.")),
                )
    if num_products is not None:
        raw_products = raw_products[:num_products]
    products, seen = [], set()
    for p in raw_products:
        asin = str(p.get("asin"))
        if asin == "nan" or len(asin) > 10 or asin in seen:
            continue
        seen.add(asin)
        bullets = p.get("small_description")
        bullets = bullets if isinstance(bullets, list) else [bullets]
        price, price_tag = _pricing(p.get("pricing"), asin)
        product_reviews, rating = reviews.get(asin, ((), "N.A."))
        products.append(
            Product(
                asin=asin,
                name=_clean(p.get("name")),
                query=_clean(p.get("query")).lower().strip(),
                category=_clean(p.get("category")),
                product_category=_clean(p.get("product_category")),
                description=_clean(p.get("full_description")),
                bullet_points=tuple(_clean(b) for b in bullets),
                attributes=tuple(attributes.get(asin, {}).get("attributes") or ["DUMMY_ATTR"]),
                options=_options(p.get("customization_options")),
                price=price,
                price_tag=price_tag,
                rating=rating or "N.A.",
                reviews=product_reviews,
            )
        )
    return products, attributes


def _price_text(product: Product) -> tuple[float, str]:
    limit = price_limit(product.price, StableRng(zlib.crc32(f"goal {product.asin}".encode())))
    return limit, (f", and price lower than {limit:.2f} dollars" if limit < 1_000_000 else "")


def load_human_goals(products: list[Product], human: dict[str, list[dict[str, Any]]]) -> list[Goal]:
    """WebShop's human-written goals (`get_human_goals`): one per instruction with attributes."""
    goals = []
    for product in products:
        for ins in human.get(product.asin, []):
            goal_attributes = tuple(ins.get("instruction_attributes") or ())
            if not goal_attributes:
                continue
            limit, price_text = _price_text(product)
            options = ins.get("instruction_options") or []
            by_name = isinstance(options, dict)
            values = tuple(options.values()) if by_name else tuple(options)
            names = tuple(options) if by_name else ()
            goals.append(
                _goal(
                    product,
                    _clean(ins["instruction"]).strip(".") + price_text,
                    goal_attributes,
                    values,
                    limit,
                    names,
                    by_name,
                )
            )
    return goals


def load_synthetic_goals(products: list[Product], attributes: dict[str, Any]) -> list[Goal]:
    """WebShop's synthetic goals (`get_synthetic_goals`): one per product option combination."""
    goals = []
    for product in products:
        entry = attributes.get(product.asin, {})
        if entry.get("instruction") is None or not entry.get("instruction_attributes"):
            continue
        limit, price_text = _price_text(product)
        names = sorted(product.options)
        for combination in itertools.product(*(product.options[name] for name in names)):
            chosen = dict(zip(names, combination))
            option_text = ", and ".join(f"{k}: {v}" for k, v in chosen.items())
            option_text = f" with {option_text}" if option_text else ""
            text = f"{_clean(entry['instruction'])}{option_text}{price_text}"
            goals.append(
                _goal(product, text, tuple(entry["instruction_attributes"]), combination, limit, names, True)
            )
    return goals


def _goal(
    product: Product,
    text: str,
    goal_attributes: tuple[str, ...],
    values: tuple[str, ...],
    limit: float,
    option_names: list[str] | tuple[str, ...] = (),
    options_by_name: bool = False,
) -> Goal:
    return Goal(
        asin=product.asin,
        instruction=text,
        attributes=tuple(_clean(a) for a in goal_attributes),
        options=tuple(_clean(v) for v in values),
        price_upper=limit,
        query=product.query,
        product_category=product.product_category,
        name=product.name,
        option_names=tuple(option_names),
        options_by_name=options_by_name,
    )


def webshop_splits(num_goals: int) -> dict[str, tuple[int, ...]]:
    """WebShop's split of its shuffled goals: the first 500 test, 500-1499 dev (unused here), the rest
    train. A small data set (under 2,000 goals) holds out its first 20% instead."""
    if num_goals >= TEST_GOALS + DEV_GOALS + TEST_GOALS:
        return {"test": tuple(range(TEST_GOALS)), "train": tuple(range(TEST_GOALS + DEV_GOALS, num_goals))}
    num_test = max(1, num_goals // 5) if num_goals > 1 else 0
    return {"test": tuple(range(num_test)), "train": tuple(range(num_test, num_goals))}


def load_webshop_data(
    data_dir: str | Path, num_products: int | None = None, human_goals: bool = True
) -> Catalog:
    """A `Catalog` of WebShop's files in `data_dir`. Goals are in WebShop's order (shuffled with its
    seed 233), so `task_id` `webshop-<i>` is WebShop's session `i`."""
    data_dir = Path(data_dir)
    products, attributes = load_products(data_dir, num_products)
    if human_goals:
        with open(_find(data_dir, (HUMAN_GOAL_FILE,))) as f:
            goals = load_human_goals(products, json.load(f))
    else:
        goals = load_synthetic_goals(products, attributes)
    if not goals:
        raise ValueError(f"no goals in {data_dir}: the products have no instructions with attributes")
    random.Random(GOAL_SHUFFLE_SEED).shuffle(goals)
    return Catalog(tuple(products), tuple(goals), webshop_splits(len(goals)), str(data_dir))
