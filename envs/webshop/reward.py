"""WebShop's purchase reward (Yao et al. 2022, `web_agent_site/engine/goal.py`), reproduced term by term.

R = r_type * (attribute matches + option matches + 1[price <= limit]) / (goal attributes + goal options + 1)

- attribute match: a product attribute with fuzzy `token_set_ratio` > 85 against the goal attribute,
  or the goal attribute appearing verbatim in the title, features or description;
- option match (counted over the *purchased* options, as WebShop does): `size` must equal a goal
  option; other options fuzzy-match one (> 85); failing that, the chosen value appearing in the
  title, features or description counts. Values first go through WebShop's `normalize_color`;
- r_type: 1, 0.5, 0.1 or 0 from query equality, shared category levels and title noun overlap.

Fuzzy scores are thefuzz's (what WebShop calls): code points 128-255 dropped, lower-cased, punctuation
stripped, then rapidfuzz's `token_set_ratio`, rounded to an integer. WebShop tags title nouns with spaCy's
`en_core_web_lg`; that model is a large download, so `title_nouns` keeps the content words of a title
(no stopwords, numbers or common adjectives), which is what NOUN/PROPN tags keep on product titles.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from turngym.envs.webshop.types import Goal, Product
from turngym.errors import require

fuzz = require("rapidfuzz.fuzz", "webshop", "WebShop's reward")
default_process = require("rapidfuzz.utils", "webshop", "WebShop's reward").default_process

FUZZY_THRESHOLD = 85  # WebShop: a match needs a score above 85
EXACT_MATCH_OPTIONS = ("size",)

# WebShop's normalize_color list: an option value becomes the first of these it contains.
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


def fuzzy_score(a: str, b: str) -> int:
    """thefuzz's `token_set_ratio(a, b)`: Latin-1 letters dropped, default processing, rounded."""
    return round(
        fuzz.token_set_ratio(default_process(a.translate(_LATIN1)), default_process(b.translate(_LATIN1)))
    )


def normalize_color(value: str) -> str:
    """WebShop's `normalize_color`: the first colour word the value contains, else the value."""
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
    """How many goal attributes the product has (fuzzy over its attributes, else verbatim in its text)."""
    matches = 0
    for goal_attribute in goal.attributes:
        if any(fuzzy_score(p, goal_attribute) > FUZZY_THRESHOLD for p in purchased.attributes) or _in_text(
            goal_attribute, purchased
        ):
            matches += 1
    return matches


def option_matches(purchased: Product, goal_options: tuple[str, ...], chosen: dict[str, str]) -> int:
    """How many chosen options match a goal option (WebShop counts over the chosen ones)."""
    goal_values = [normalize_color(o) for o in goal_options]
    matches = 0
    for name, raw_value in chosen.items():
        value = normalize_color(raw_value)
        if name.lower() in EXACT_MATCH_OPTIONS:
            matched = value in goal_values
        else:
            matched = any(fuzzy_score(g, value) > FUZZY_THRESHOLD for g in goal_values)
        if matched or _in_text(value, purchased):
            matches += 1
    return matches


def webshop_reward(purchased: Product, goal: Goal, price: float, chosen: dict[str, str]) -> RewardBreakdown:
    """WebShop's reward for buying `purchased` at `price` with `chosen` options (name -> value)."""
    r_type, query_match, category_match, title_score = type_reward(purchased, goal)
    num_attr = attribute_matches(purchased, goal)
    num_option = option_matches(purchased, goal.options, chosen)
    r_price = price <= goal.price_upper
    total = (num_attr + num_option + int(r_price)) / (len(goal.attributes) + len(goal.options) + 1)
    return RewardBreakdown(
        reward=total * r_type,
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
