"""WebShop's product and goal records, in the shape WebShop's own loader produces (`Title`,
`BulletPoints`, `Attributes`, `options`, ...) whether they come from the built-in catalog or real data."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Review:
    title: str
    score: int  # stars, 1 to 5
    body: str


@dataclass(frozen=True)
class Product:
    asin: str  # 10 characters, upper case, e.g. "B07XJ8C8F5"
    name: str  # the product's name (WebShop: `name`, shown as its Title)
    query: str  # the search query the product was scraped for (WebShop: `query`)
    category: str  # coarse category: beauty, electronics, fashion, food, furniture
    product_category: str  # breadcrumb path joined by " › "
    description: str
    bullet_points: tuple[str, ...]  # WebShop: `BulletPoints`, the "Features" page
    attributes: tuple[str, ...]  # WebShop: `Attributes` (short phrases such as "gluten free")
    options: dict[str, tuple[str, ...]]  # option name -> values, lower case, in page order
    price: float  # the price the reward checks against the goal's limit
    price_tag: str  # the price as the pages show it: "$12.99" or "$10.0 to $15.0"
    rating: str = "N.A."
    reviews: tuple[Review, ...] = ()

    @property
    def title(self) -> str:
        return self.name


@dataclass(frozen=True)
class Goal:
    asin: str  # the product the instruction was written for
    instruction: str  # "i need a gluten free hot sauce in 12 ounce, and price lower than 30.00 dollars"
    attributes: tuple[str, ...]  # goal attributes the purchase should have
    options: tuple[str, ...]  # goal option values (WebShop's `goal_options`)
    price_upper: float  # the price limit; WebShop uses 1,000,000 where it states none
    # Copied from the goal product, for the type reward:
    query: str
    product_category: str
    name: str
    option_names: tuple[str, ...] = field(default=())  # the option each value belongs to, where known
    # WebShop's goal_options was a dict (its synthetic goals, some human ones): goal.py's get_reward then
    # matches its (name, value) items, not the bare values (see reward.goal_options)
    options_by_name: bool = False
