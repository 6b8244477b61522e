"""The built-in WebShop catalog: thousands of products over five categories and instructions in
WebShop's style, generated deterministically from `vocab.py` (no download, same on every machine)."""

from __future__ import annotations

import functools
import random
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeVar

from turngym.envs.webshop.types import Goal, Product, Review
from turngym.envs.webshop.vocab import CATEGORIES, REVIEW_LINES, Category, ProductType

CATALOG_SEED = 20221204  # fixes the built-in catalog; changing it changes every product and goal
PRODUCTS_PER_TYPE = 120  # 30 product types -> 3,600 products
GOALS_PER_PRODUCT = 2
TEST_PRODUCTS = 250  # their 500 goals are the test split (WebShop also tests on 500 goals)
PRICE_RANGE = tuple(10.0 * i for i in range(1, 100))  # WebShop's price limits: 10, 20, ..., 990
_ASIN_CHARS = string.digits + string.ascii_uppercase
_MODEL_LETTERS = "BCDFGHJKLMNPQSTVWXZR"
T = TypeVar("T")


class StableRng:
    """Draws built only on `random.Random.random()`, the one stream Python promises to keep the same
    across versions for a given seed, so the catalog is identical everywhere (numpy's `choice` is
    also stable but ten times slower per call, and the catalog makes ~100k draws)."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed).random

    def random(self) -> float:
        return self._random()

    def integer(self, n: int) -> int:
        return int(self._random() * n)

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self._random()

    def choice(self, values: Sequence[T]) -> T:
        return values[self.integer(len(values))]

    def sample_indices(self, n: int, k: int) -> list[int]:
        """`k` distinct indices of `range(n)` (a partial Fisher-Yates shuffle)."""
        pool = list(range(n))
        for i in range(k):
            j = i + self.integer(n - i)
            pool[i], pool[j] = pool[j], pool[i]
        return pool[:k]


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: one object per loaded catalog
class Catalog:
    """Products, goals and their train/test split (indices into `goals`)."""

    products: tuple[Product, ...]
    goals: tuple[Goal, ...]
    splits: dict[str, tuple[int, ...]]
    name: str  # "builtin" or the data directory

    @functools.cached_property
    def by_asin(self) -> dict[str, Product]:
        return {p.asin: p for p in self.products}

    @functools.cached_property
    def split_of(self) -> dict[int, str]:
        """goal index -> its split."""
        return {i: split for split, indices in self.splits.items() for i in indices}


def price_limit(price: float, rng: StableRng) -> float:
    """WebShop's goal price limit: of the first four multiples of 10 above the price, the larger of
    two drawn at random (no limit, 1,000,000, where fewer than two exist)."""
    above = [p for p in PRICE_RANGE if p > price][:4]
    if len(above) < 2:
        return 1_000_000.0
    return max(above[i] for i in rng.sample_indices(len(above), 2))


def _asin(rng: StableRng, taken: set[str]) -> str:
    while True:
        asin = "B0" + "".join(rng.choice(_ASIN_CHARS) for _ in range(8))
        if asin not in taken:
            taken.add(asin)
            return asin


def _pick(rng: StableRng, values: Sequence[str], low: int, high: int) -> list[str]:
    """`low` to `high` distinct values, in their vocabulary order."""
    k = low + rng.integer(min(high, len(values)) - low + 1)
    return [values[i] for i in sorted(rng.sample_indices(len(values), k))]


def _product(
    rng: StableRng, category: Category, kind: ProductType, taken: set[str], titles: set[str]
) -> Product:
    brand = rng.choice(category.brands)
    style = rng.choice(kind.styles)
    attributes = _pick(rng, kind.attributes, 2, 4)
    options = {name: tuple(_pick(rng, values, 2, 4)) for name, values in kind.options.items()}
    noun = kind.noun.title().replace("Usb C", "USB-C").replace("Hdmi", "HDMI")
    title = f"{brand} {style} {noun}, {', '.join(a.title() for a in attributes[:2])}"
    if title in titles:  # the same brand, style and attributes: tell them apart by a model name
        # consonants only, no digits: a model name must not contain an option value ("7", "red")
        n = len(titles)
        title += (
            f" - Model {_MODEL_LETTERS[n % 20]}{_MODEL_LETTERS[n // 20 % 20]}{_MODEL_LETTERS[n // 400 % 20]}"
        )
    titles.add(title)
    low, high = kind.price
    if rng.random() < 0.15:  # a price range, as some WebShop listings have; the reward sees one price
        first = round(rng.uniform(low, high), 2)
        second = round(first * rng.uniform(1.1, 1.5), 2)
        price, price_tag = rng.uniform(first, second), f"${first} to ${second}"
    else:
        price = round(rng.uniform(low, high)) - 0.01
        price_tag = f"${price:.2f}"
    features = [f"{a.upper()}: one of the reasons shoppers choose {brand}." for a in attributes]
    features.append(f"MADE FOR {kind.use.upper()}.")
    features.append(f"SATISFACTION GUARANTEED: contact {brand} with any question about your order.")
    description = (
        f"The {brand} {style.lower()} {kind.noun} is made for {kind.use}. "
        f"Key features: {', '.join(attributes[:-1])} and {attributes[-1]}. "
        f"Every {kind.noun} from {brand} is checked by hand before it ships."
    )
    reviews = tuple(
        Review(title, score, body)
        for score, title, body in (rng.choice(REVIEW_LINES) for _ in range(rng.integer(4)))
    )
    rating = f"{sum(r.score for r in reviews) / len(reviews):.1f}" if reviews else "N.A."
    return Product(
        asin=_asin(rng, taken),
        name=title,
        query=kind.noun,
        category=category.name,
        product_category=" › ".join((category.root, *kind.path)),
        description=description,
        bullet_points=tuple(features),
        attributes=tuple(attributes),
        options=options,
        price=price,
        price_tag=price_tag,
        rating=rating,
        reviews=reviews,
    )


_OPTION_WORD = {"color": "color", "scent": "scent", "flavor name": "flavor", "style": "style"}
_ARTICLE = re.compile(r"\ba ([aeio]|u(?!s))")  # "an organic", "an unsalted", but "a usb c charger"
_TEMPLATES = (
    "i need {art}{attrs} {noun}{opts}",
    "i am looking for {art}{noun} that is {attrs}{opts}",
    "i want {art}{attrs} {noun}{opts}",
    "find me {art}{noun} with {attrs}{opts}",
    "i'm looking for {art}{attrs} {noun}{opts}",
)


def _instruction(rng: StableRng, kind: ProductType, attributes: list[str], options: dict[str, str]) -> str:
    parts = []
    for name, value in options.items():  # "12 ounce", "black color", but not "unscented scent"
        word = _OPTION_WORD.get(name, "")
        parts.append(value if not word or word in value else f"{value} {word}")
    opts = ""
    if parts:
        opts = " in " + (parts[0] if len(parts) == 1 else f"{', '.join(parts[:-1])} and {parts[-1]}")
    attrs = attributes[0] if len(attributes) == 1 else f"{', '.join(attributes[:-1])} and {attributes[-1]}"
    template = rng.choice(_TEMPLATES)
    text = template.format(art="" if kind.plural else "a ", noun=kind.noun, attrs=attrs, opts=opts)
    return _ARTICLE.sub(lambda m: f"an {m.group(1)}", text)


def _goal(rng: StableRng, product: Product, kind: ProductType) -> Goal:
    attributes = _pick(rng, product.attributes, 1, 2)
    options = {name: rng.choice(values) for name, values in product.options.items()}
    limit = price_limit(product.price, rng)
    text = _instruction(rng, kind, attributes, options)
    return Goal(
        asin=product.asin,
        instruction=f"{text}, and price lower than {limit:.2f} dollars",
        attributes=tuple(attributes),
        options=tuple(options.values()),
        price_upper=limit,
        query=product.query,
        product_category=product.product_category,
        name=product.name,
        option_names=tuple(options),
    )


def build_catalog(products_per_type: int = PRODUCTS_PER_TYPE, seed: int = CATALOG_SEED) -> Catalog:
    """Generate the built-in catalog (about 0.3 s for the default 3,600 products)."""
    rng = StableRng(seed)
    taken: set[str] = set()
    titles: set[str] = set()
    products: list[Product] = []
    goals: list[Goal] = []
    goal_owner: list[int] = []
    for category in CATEGORIES:
        for kind in category.types:
            for _ in range(products_per_type):
                product = _product(rng, category, kind, taken, titles)
                for _ in range(GOALS_PER_PRODUCT):
                    goals.append(_goal(rng, product, kind))
                    goal_owner.append(len(products))
                products.append(product)
    num_test = min(TEST_PRODUCTS, len(products) // 5)
    test_products = set(rng.sample_indices(len(products), num_test))
    splits = {
        "train": tuple(i for i, owner in enumerate(goal_owner) if owner not in test_products),
        "test": tuple(i for i, owner in enumerate(goal_owner) if owner in test_products),
    }
    return Catalog(tuple(products), tuple(goals), splits, "builtin")


@functools.cache
def builtin_catalog() -> Catalog:
    """The built-in catalog, generated once per process and shared by every env (read-only)."""
    return build_catalog()
