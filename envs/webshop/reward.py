"""WebShop's purchase reward (Yao et al. 2022), equal to `get_reward` in `web_agent_site/engine/goal.py`
on WebShop's master branch, term by term:

R = r_type * (attribute matches + option matches + 1[price <= limit]) / (goal attributes + goal options + 1)

- attribute match (`get_attribute_reward`): for each goal attribute, a product attribute with fuzzy
  `token_set_ratio` > 85, or the goal attribute appearing verbatim in the title, features or description;
- option match (`get_option_reward`): for each *goal* option, any purchased option value with
  `token_set_ratio` > 85, both sides first through `normalize_color` (web_agent_site/engine/normalize.py).
  Every goal option counts at most once, so R never exceeds 1;
- r_type (`get_type_reward`): 1, 0.5, 0.1 or 0 from query equality, shared category levels and title
  noun overlap.

Fuzzy scores are thefuzz's `token_set_ratio` with its defaults (`force_ascii=True, full_process=True`):
code points 128-255 dropped, then rapidfuzz's `default_process` (lower case, non-alphanumerics to spaces,
trimmed), then rapidfuzz's `token_set_ratio`, rounded to an integer; thefuzz >= 0.20 is exactly this
wrapper around rapidfuzz (tests/envs/test_webshop_reward.py checks it against thefuzz itself). WebShop's
requirements.txt pins thefuzz 0.19.0, which without python-Levenshtein scores with difflib: measured once
on the built-in catalog, its raw scores differed on 7,308 of 24,964 attribute pairs and 966 of 18,225
option pairs, but the > 85 decision the reward uses on none of them.

The one deviation: WebShop tags title nouns with spaCy's `en_core_web_sm` (goal.py loads it; its
setup.sh downloads `en_core_web_lg`). That model is not on PyPI, so `title_nouns` keeps the content words
of a title (no stopwords, numbers or common adjectives), which is what NOUN/PROPN tags keep on product
titles; r_type can differ from WebShop's where the two disagree.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from turngym.envs.webshop.types import Goal, Product
from turngym.errors import require

fuzz = require("rapidfuzz.fuzz", "webshop", "WebShop's reward")
default_process = require("rapidfuzz.utils", "webshop", "WebShop's reward").default_process

FUZZY_THRESHOLD = 85  # goal.py: `if score > 85` in get_attribute_reward and get_option_reward

# normalize.py's COLOR_SET, in its order: an option value becomes the first of these it contains.
_COLORS = (
    "alabaster apricot aqua ash asphalt azure banana beige black blue blush bordeaux bronze brown "
    "burgundy camel camo caramel champagne charcoal cheetah chestnut chocolate christmas coffee cognac "
    "copper coral cranberry cream crystal dark denim eggplant elephant espresso fuchsia gold granite "
    "grape graphite grass gray green grey heather indigo ivory ivy khaki lavender lemon leopard light "
    "lilac lime magenta maroon mauve merlot midnight mint mocha multicolor mushroom mustard natural "
    "navy nude olive orange peach pewter pink plum purple rainbow red rose royal rust sand sapphire "
    "seashell silver skull slate steel stone stonewash sunflower tan taupe teal tiger turquoise violet "
    "walnut wheat white wine yellow"
)
COLOR_SET = tuple(_COLORS.split())

_STOPWORD_TEXT = (
    "a an the and or nor but of for to in on at by with from into onto over under about as per via "
    "vs than then so too very not no yes is are was were be been being am do does did has have had "
    "it its it's this that these those there here i me my we our you your he she they them their "
    "his her who whom which what when where why how all any both each every few more most other "
    "some such only own same can will just also up down out off again further once x"
)
_STOPWORDS = frozenset(_STOPWORD_TEXT.split())
_ADJECTIVE_TEXT = (
    "free natural organic hot cold warm cool soft hard long short tall high low large small big "
    "little mini extra super ultra premium classic original fresh dry wet light dark heavy thin thick "
    "wide narrow slim fit loose tight easy quick fast slow durable portable wireless waterproof "
    "lightweight compact adjustable comfortable breathable stretchy washable reusable rechargeable "
    "vegan sensitive gentle strong deep rich smooth sweet spicy mild bold pure real best great good "
    "new perfect modern vintage elegant cute pretty sexy casual formal daily everyday outdoor indoor "
    "non eco friendly safe healthy simple multi full half double single high-quality quality "
    "black white red blue green yellow pink purple grey gray brown beige navy silver gold orange "
    "men's women's mens womens unisex kids baby adult"
)
_ADJECTIVES = frozenset(_ADJECTIVE_TEXT.split())
_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


@dataclass(frozen=True)
class RewardBreakdown:
    """The reward and its parts, as WebShop's `get_reward(..., verbose=True)` reports them."""

    reward: float
    r_type: float
    query_match: bool
    category_match: bool
    title_score: float
    r_att: float
    num_attr_matches: int
    r_option: float | None  # None where the goal has no options
    num_option_matches: int
    r_price: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_LATIN1 = dict.fromkeys(range(128, 256))  # thefuzz's force_ascii drops exactly these code points


GoalOption = str | tuple[str, str]  # a value, or a (name, value) pair where WebShop's goal_options is a dict


def fuzzy_score(a: GoalOption, b: GoalOption) -> int:
    """thefuzz's `token_set_ratio(a, b)` with its defaults: `str()` of each side (thefuzz's force_ascii
    does this, so a (name, value) pair is compared as its repr), code points 128-255 dropped, rapidfuzz's
    `default_process`, rapidfuzz's `token_set_ratio`, rounded half to even as `int(round(...))` is."""
    processed = [default_process(str(s).translate(_LATIN1)) for s in (a, b)]
    return round(fuzz.token_set_ratio(*processed))


def normalize_color(value: GoalOption) -> GoalOption:
    """normalize.py's `normalize_color`: the first colour word the value contains, else the value. On a
    (name, value) pair `in` tests the elements, so only an exact colour name or value is replaced."""
    for color in COLOR_SET:
        if color in value:
            return color
    return value


def title_nouns(title: str) -> list[str]:
    """The nouns and proper nouns of a product title, lower case, in order (repeats kept, as
    WebShop's list is; see the module docstring for how they are found)."""
    return [
        w
        for w in _WORD.findall(title.lower())
        if len(w) > 1 and not w.isdigit() and w not in _STOPWORDS and w not in _ADJECTIVES
    ]


def type_reward(purchased: Product, goal: Goal) -> tuple[float, bool, bool, float]:
    """(r_type, query_match, category_match, title_score) as WebShop's `get_type_reward`."""
    query_match = purchased.query == goal.query
    purchased_levels = {x.strip() for x in purchased.product_category.split("›")}
    goal_levels = {x.strip() for x in goal.product_category.split("›")}
    category_match = len(purchased_levels & goal_levels) >= 2
    purchased_nouns = title_nouns(purchased.name)
    desired_nouns = title_nouns(goal.name)
    if not desired_nouns:
        title_score = 0.2
    else:
        title_score = len(set(purchased_nouns) & set(desired_nouns)) / len(desired_nouns)
    r_type = 1.0
    if not (query_match or category_match or title_score > 0.2):
        r_type = 0.5
    if title_score < 0.1:
        r_type = 0.1
    if title_score == 0.0:
        r_type = 0.0
    return r_type, query_match, category_match, title_score


def _in_text(value: str, product: Product) -> bool:
    return (
        value in product.name.lower()
        or value in " ".join(product.bullet_points).lower()
        or value in product.description.lower()
    )


def attribute_matches(purchased: Product, goal: Goal) -> int:
    """goal.py's `get_attribute_reward` count: goal attributes the product has (fuzzy over its
    attributes, else verbatim in its title, features or description)."""
    matches = 0
    for goal_attribute in goal.attributes:
        if any(fuzzy_score(p, goal_attribute) > FUZZY_THRESHOLD for p in purchased.attributes) or _in_text(
            goal_attribute, purchased
        ):
            matches += 1
    return matches


def goal_options(goal: Goal) -> tuple[GoalOption, ...]:
    """The goal options as goal.py's `get_reward` hands them to `get_option_reward`: the values, or
    `goal_options.items()` where WebShop's goal_options is a dict (its synthetic goals)."""
    if goal.options_by_name:
        return tuple(zip(goal.option_names, goal.options, strict=True))
    return goal.options


def option_matches(goal_options: tuple[GoalOption, ...], purchased_options: list[str]) -> int:
    """goal.py's `get_option_reward` count: goal options that some purchased option value matches
    (token_set_ratio > 85 after normalize_color on both sides); each goal option counts at most once."""
    purchased = [normalize_color(o) for o in purchased_options]
    return sum(
        any(fuzzy_score(p, g) > FUZZY_THRESHOLD for p in purchased)
        for g in map(normalize_color, goal_options)
    )


def webshop_reward(purchased: Product, goal: Goal, price: float, chosen: dict[str, str]) -> RewardBreakdown:
    """goal.py's `get_reward` for buying `purchased` at `price` with `chosen` options (name -> value)."""
    r_type, query_match, category_match, title_score = type_reward(purchased, goal)
    num_attr = attribute_matches(purchased, goal)
    num_option = option_matches(goal_options(goal), list(chosen.values()))
    # goal.py: r_price is None where price_upper <= 0, which its sum cannot add; limits here are > 0
    r_price = price <= goal.price_upper
    total = (num_attr + num_option + int(r_price)) / (len(goal.attributes) + len(goal.options) + 1)
    reward = total * r_type
    assert 0.0 <= reward <= 1.0, f"reward {reward} outside [0, 1] for {goal.asin}"
    return RewardBreakdown(
        reward=reward,
        r_type=r_type,
        query_match=query_match,
        category_match=category_match,
        title_score=title_score,
        r_att=num_attr / len(goal.attributes) if goal.attributes else 0.0,
        num_attr_matches=num_attr,
        r_option=num_option / len(goal.options) if goal.options else None,
        num_option_matches=num_option,
        r_price=r_price,
    )
