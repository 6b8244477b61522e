"""WebShop's reward against the released `get_reward` (web_agent_site/engine/goal.py on WebShop's master):
worked examples, the built-in catalog, and thefuzz itself for the fuzzy score."""

from __future__ import annotations

import itertools
import random
from pathlib import Path

import pytest

from turngym.envs.webshop.catalog import build_catalog
from turngym.envs.webshop.data import load_webshop_data
from turngym.envs.webshop.env import WebShopEnv
from turngym.envs.webshop.reward import fuzzy_score, goal_options, option_matches, webshop_reward
from turngym.envs.webshop.types import Goal, Product

FIXTURE = Path(__file__).parent / "webshop_data"


@pytest.fixture(scope="module", autouse=True)
def _cache_in_tmp(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TURNGYM_CACHE", str(tmp_path_factory.mktemp("turngym-cache")))
        yield


def _shirt() -> Product:
    return Product(
        asin="B000000002",
        name="Acme Blue Large Cotton Shirt",
        query="shirt",
        category="fashion",
        product_category="Clothing › Men › Shirts",
        description="A shirt.",
        bullet_points=(),
        attributes=("machine wash",),
        options={"color": ("blue", "red"), "size": ("large", "small"), "material": ("cotton",)},
        price=19.0,
        price_tag="$19.0",
    )


def _shirt_goal(**overrides) -> Goal:
    fields = dict(
        asin="B000000002",
        instruction="i want a red machine wash shirt",
        attributes=("machine wash",),
        options=("red",),
        price_upper=30.0,
        query="shirt",
        product_category="Clothing › Men › Shirts",
        name="Acme Blue Large Cotton Shirt",
    )
    return Goal(**{**fields, **overrides})


def test_goal_options_are_counted_so_the_reward_stays_within_one():
    # goal.py get_option_reward loops over the goal options: "red" is matched by none of blue, large,
    # cotton, so (1 attribute + 0 options + 1 price) / (1 + 1 + 1). Counting the chosen values found in
    # the title instead gave (1 + 3 + 1) / 3 = 1.667, a "success" for the wrong colour.
    chosen = {"color": "blue", "size": "large", "material": "cotton"}
    result = webshop_reward(_shirt(), _shirt_goal(), 19.0, chosen)
    assert result.num_option_matches == 0 and result.r_option == 0.0
    assert result.reward == pytest.approx(2 / 3)
    right = webshop_reward(_shirt(), _shirt_goal(), 19.0, {**chosen, "color": "red"})
    assert right.num_option_matches == 1 and right.reward == 1.0


def test_each_goal_option_counts_once_whatever_matches_it():
    # both chosen values match the goal's "12 ounce" (token_set_ratio 100 and 94): still one match
    assert option_matches(("12 ounce",), ["12 ounce", "12 ounces"]) == 1
    assert option_matches(("12 ounce", "habanero"), ["12 ounce"]) == 1
    assert option_matches((), ["12 ounce"]) == 0


def test_size_matches_fuzzily_as_webshop_does():
    # get_option_reward has no exact-match rule for sizes: "pack of 12" scores 90 against "pack of 24"
    assert fuzzy_score("pack of 12", "pack of 24") == 90
    assert option_matches(("pack of 24",), ["pack of 12"]) == 1
    assert option_matches(("large",), ["x-large"]) == 1  # "large" is a token subset of "x large": 100
    assert option_matches(("large",), ["small"]) == 0


def test_built_in_catalog_near_miss_variant_scores_as_webshop():
    # Goal 1684 asks for an iphone 15 case in purple; the product also comes as "iphone 15 pro", whose
    # tokens contain "iphone 15" (token_set_ratio 100), so WebShop credits it: reward 1.0. The old
    # exact-size rule gave 0.8 here (on 1,500 random-agent episodes, 17 of 697 purchases scored lower).
    env = WebShopEnv()
    env.reset(options={"task_id": "webshop-1684"})
    goal, product = env.goal, env.catalog.by_asin[env.goal.asin]
    assert goal.options == ("iphone 15", "purple") and "iphone 15 pro" in product.options["size"]
    env.step(f"search[{product.name}]")
    env.step(f"click[{goal.asin}]")
    env.step("click[iphone 15 pro]")
    env.step("click[purple]")
    _, reward, terminated, _, info = env.step("click[buy now]")
    assert terminated and reward == 1.0 and info["success"]
    assert info["purchase"]["num_option_matches"] == 2


def test_reward_within_zero_one_on_random_purchases():
    catalog = build_catalog()
    rng = random.Random(0)
    for goal in rng.sample(catalog.goals, 300):
        product = rng.choice(catalog.products)
        chosen = {name: rng.choice(values) for name, values in product.options.items() if rng.random() < 0.8}
        result = webshop_reward(product, goal, product.price, chosen)
        assert 0.0 <= result.reward <= 1.0
        assert result.num_option_matches <= len(goal.options)


def test_dict_goal_options_compare_name_value_pairs():
    # goal.py passes `goal_options.items()` when goal_options is a dict (synthetic goals): a pair stays a
    # tuple through normalize_color unless one element is exactly a colour, then thefuzz compares its str()
    pairs = _shirt_goal(options=("large", "red"), option_names=("size", "color"), options_by_name=True)
    assert goal_options(pairs) == (("size", "large"), ("color", "red"))
    assert fuzzy_score("x-large", ("size", "large")) == 83  # "x large" vs "size large": no match
    assert option_matches(goal_options(pairs), ["x-large", "red"]) == 1
    assert option_matches(goal_options(pairs), ["large", "red"]) == 2
    values = _shirt_goal(options=("large", "red"), option_names=("size", "color"))
    assert option_matches(goal_options(values), ["x-large", "red"]) == 2


def test_synthetic_goals_from_webshop_data_compare_pairs():
    catalog = load_webshop_data(FIXTURE, human_goals=False)
    assert all(g.options_by_name and len(g.option_names) == len(g.options) for g in catalog.goals)
    human = load_webshop_data(FIXTURE)
    assert not any(g.options_by_name for g in human.goals)  # the fixture's human goals list values
    env = WebShopEnv(data_dir=str(FIXTURE), human_goals=False)  # the expert's purchases still score 1
    for index in range(len(env.catalog.goals)):
        env.reset(options={"task_id": f"webshop-{index}"})
        for _ in range(12):
            _, reward, terminated, _, info = env.step(env.expert_action())
            if terminated:
                break
        assert reward == 1.0 and info["purchase"]["num_option_matches"] == len(env.goal.options), env.goal


def _catalog_strings() -> list[str]:
    catalog = build_catalog()
    strings = set()
    for product in catalog.products[:400]:
        strings.update(product.attributes)
        strings.update(itertools.chain.from_iterable(product.options.values()))
    return sorted(strings)


TRICKY = ["", " ", "!!!", "a", "A b", "b a", "café crème", "Ünïcode", "日本茶", "日本", "snake_case", "snake case",
          "12 OZ.", "12 oz", "x-large", "xl", "tab\tsep", "new\nline", "3.4 Ounce (Pack of 1)", "3.4 ounce",
          "naïve", "naive", "½ inch", "1/2 inch", "ÿ", "Ā", ("size", "large"), ("color", "navy blue")]  # fmt: skip


def test_fuzzy_score_equals_thefuzz():
    thefuzz = pytest.importorskip("thefuzz.fuzz")
    strings = _catalog_strings()
    pairs = list(itertools.product(TRICKY, TRICKY))
    rng = random.Random(1)
    pairs += [(rng.choice(strings), rng.choice(strings)) for _ in range(3000)]
    pairs += [(a, b) for a in TRICKY for b in rng.sample(strings, 20)]
    for a, b in pairs:
        assert fuzzy_score(a, b) == thefuzz.token_set_ratio(a, b), (a, b)
