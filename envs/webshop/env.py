"""WebShop (Yao et al. 2022) as a TurnGym env (`turngym/WebShop-v0`): search, browse and buy the product
an instruction describes; scored at purchase with WebShop's own reward."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any, ClassVar

from turngym.core import MAX_ACTION_CHARS, TextEnv, check_step_order, parse_reset_options, quote_action
from turngym.envs.webshop.catalog import Catalog, builtin_catalog
from turngym.envs.webshop.pages import Segment, to_html, to_text
from turngym.envs.webshop.reward import webshop_reward
from turngym.envs.webshop.search import ensure_index, search
from turngym.envs.webshop.types import Goal, Product

PRODUCT_WINDOW = 10  # results per page, as in WebShop
BACK_TO_SEARCH, PREV, NEXT, BUY_NOW = "Back to Search", "< Prev", "Next >", "Buy Now"
SUB_PAGES = ("Description", "Features", "Reviews")
_ACTION = re.compile(r"^\s*(search|click)\s*\[(.*)\]\s*$", re.IGNORECASE | re.DOTALL)


@functools.cache
def load_catalog(data_dir: str | None, num_products: int | None, human_goals: bool) -> Catalog:
    """The built-in catalog, or WebShop's own data files in `data_dir` (loaded once per process)."""
    if data_dir is None:
        return builtin_catalog()
    from turngym.envs.webshop.data import load_webshop_data

    return load_webshop_data(data_dir, num_products=num_products, human_goals=human_goals)


@functools.cache
def _index_path(
    data_dir: str | None, num_products: int | None, human_goals: bool, directory: str | None
) -> str:
    catalog = load_catalog(data_dir, num_products, human_goals)
    return str(ensure_index(catalog.products, Path(directory) if directory else None))


class WebShopEnv(TextEnv):
    """Find and buy the product an instruction asks for on a simulated shopping site.

    Pages and actions are WebShop's: the search page (`search[query]`), a results page (10 products a
    page, `click[next >]`, `click[< prev]`, `click[<product id>]`), a product page (option values,
    `click[description]`, `click[features]`, `click[reviews]`, `click[< prev]`, `click[back to
    search]`, `click[buy now]`) and its sub-pages. `click[buy now]` ends the episode with WebShop's
    reward in [0, 1] (`reward.py`); anything else earns 0. Without `data_dir` it runs on the built-in
    catalog (3,600 products, 7,200 instructions, 500 of them the test split); with `data_dir` it loads
    WebShop's own JSON files (`data.py`).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["ansi", "human", "html"], "render_fps": 1}
    success_definition = (
        "the purchase scored WebShop's full reward 1.0: the right product type, every goal attribute "
        "and option, and a price within the limit (partial purchases earn partial reward, not success)"
    )

    def __init__(
        self,
        data_dir: str | None = None,
        num_products: int | None = None,
        human_goals: bool = True,
        cache_dir: str | None = None,
        render_mode: str | None = None,
    ) -> None:
        super().__init__(render_mode=render_mode)
        if data_dir is not None:
            data_dir = str(Path(data_dir).expanduser().resolve())
        # The catalog and index are shared, read-only and looked up by this key: snapshots stay small.
        self._source = (data_dir, num_products, bool(human_goals))
        self._index = _index_path(*self._source, None if cache_dir is None else str(cache_dir))
        self.goal_index = -1
        self.page = "search"  # search | results | item | description | features | reviews | done
        self.keywords: str | None = None  # the last search (kept after `back to search`, for the expert)
        self.results: tuple[str, ...] = ()
        self.page_num = 1
        self.asin: str | None = None
        self.options: dict[str, str] = {}
        self.purchase: dict[str, Any] | None = None
        self._last_error: str | None = None

    # -- task set ----------------------------------------------------------------------------------
    @property
    def catalog(self) -> Catalog:
        return load_catalog(*self._source)

    @property
    def goal(self) -> Goal:
        return self.catalog.goals[self.goal_index]

    def task_ids(self, split: str = "train") -> list[str]:
        return [f"webshop-{i}" for i in self.catalog.splits[split]]

    def _parse_task_id(self, task_id: str) -> int:
        number = task_id.removeprefix("webshop-")
        if task_id.startswith("webshop-") and number.isdigit() and int(number) < len(self.catalog.goals):
            return int(number)
        raise ValueError(
            f"unknown task_id {task_id!r}; ids run from webshop-0 to webshop-{len(self.catalog.goals) - 1}"
        )

    @property
    def instructions(self) -> str:
        return (
            "You are shopping on WebShop, a web store. Find and buy the product that the instruction "
            "describes, with the right options, within the price limit.\n"
            "Each page is shown as text, its parts separated by [SEP]; clickable buttons, product ids and "
            "option values are in [brackets].\n"
            "Reply with exactly one action per turn:\n"
            "  search[<keywords>]   on the search page only, e.g. search[gluten free hot sauce]\n"
            "  click[<button>]      a bracketed item of the page, e.g. click[next >], click[b07xj8c8f5],\n"
            "                       click[12 ounce], click[description], click[< prev], click[buy now]\n"
            "Pick the options (size, color, ...) on the product page before click[buy now]: buying ends the "
            "episode and scores the purchase from 0 to 1."
        )

    # -- episode -----------------------------------------------------------------------------------
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[str, dict]:
        super().reset(seed=seed)
        opts = parse_reset_options(options)
        if opts.task_id is not None:
            self.goal_index = self._parse_task_id(opts.task_id)
        else:
            pool = self.catalog.splits[opts.split]
            if not pool:
                raise ValueError(f"the {opts.split} split of this catalog has no goals")
            self.goal_index = int(pool[self.np_random.integers(len(pool))])
        self.page, self.keywords, self.results, self.page_num = "search", None, (), 1
        self.asin, self.options, self.purchase = None, {}, None
        goal = self.goal
        observation = self._observation()
        info = {
            "task": goal.instruction,
            "task_id": f"webshop-{self.goal_index}",
            "task_type": self.catalog.by_asin[goal.asin].category,
            # a goal of WebShop's dev range (500-1499), reachable only by task_id, is in neither split
            "split": self.catalog.split_of.get(self.goal_index, "dev"),
            **self._state_info(),
        }
        return observation, info

    def step(self, action: str) -> tuple[str, float, bool, bool, dict]:
        check_step_order(started=self.goal_index >= 0, done=self.page == "done")
        error, reward = self._apply(str(action)), 0.0
        if self.purchase is not None:
            reward = self.purchase["reward"]
        observation = self._observation(error)
        info = {"valid_action": error is None, **self._state_info()}
        if self.purchase is not None:
            info["purchase"] = self.purchase
        return observation, reward, self.page == "done", False, info

    def _apply(self, action: str) -> str | None:
        """Perform one action; None when valid, else why it is not."""
        if len(action) > MAX_ACTION_CHARS:
            return f"the action is longer than {MAX_ACTION_CHARS} characters"
        match = _ACTION.match(action)
        if match is None:
            return "reply with search[<keywords>] or click[<one of the bracketed items>]"
        verb, argument = match.group(1).lower(), " ".join(match.group(2).split())
        if not argument:
            return f"{verb}[] needs something inside the brackets"
        if verb == "search":
            if self.page != "search":
                return "searching works on the search page only: click[back to search] first"
            self.keywords, self.results, self.page_num = argument, search(self._index, argument), 1
            self.page, self.asin, self.options = "results", None, {}
            return None
        return self._click(argument.lower())

    def _click(self, target: str) -> str | None:
        clickables = self._clickables()
        if target not in clickables:
            return f"there is nothing called {quote_action(target)} to click on this page"
        kind, value = clickables[target]
        if kind == "back":
            self.page, self.asin, self.options = "search", None, {}
        elif kind == "next":
            self.page_num += 1
        elif kind == "prev":
            if self.page == "results":
                self.page_num -= 1
            elif self.page == "item":
                self.page, self.asin, self.options = "results", None, {}
            else:
                self.page = "item"
        elif kind == "product":
            self.page, self.asin, self.options = "item", value, {}
        elif kind == "option":
            name, option_value = value
            self.options[name] = option_value
        elif kind == "sub":
            self.page = value
        elif kind == "buy":
            self._buy()
        return None

    def _clickables(self) -> dict[str, tuple[str, Any]]:
        """lower-cased click target -> (kind, value) for the current page (options last: as in
        WebShop, an option value shadows a button of the same name)."""
        if self.page in ("search", "done"):
            return {}
        targets: dict[str, tuple[str, Any]] = {BACK_TO_SEARCH.lower(): ("back", None)}
        if self.page == "results":
            if self.page_num > 1:
                targets[PREV.lower()] = ("prev", None)
            if self.page_num * PRODUCT_WINDOW < len(self.results):
                targets[NEXT.lower()] = ("next", None)
            for asin in self._page_asins():
                targets[asin.lower()] = ("product", asin)
            return targets
        targets[PREV.lower()] = ("prev", None)
        if self.page == "item":
            for name in SUB_PAGES:
                targets[name.lower()] = ("sub", name.lower())
            targets[BUY_NOW.lower()] = ("buy", None)
            for name, values in self._product().options.items():
                for value in values:  # keyed as actions are read: lower case, single spaces
                    targets[" ".join(value.lower().split())] = ("option", (name, value))
        return targets

    def _page_asins(self) -> tuple[str, ...]:
        return self.results[(self.page_num - 1) * PRODUCT_WINDOW : self.page_num * PRODUCT_WINDOW]

    def _product(self) -> Product:
        return self.catalog.by_asin[self.asin]

    def _buy(self) -> None:
        product = self._product()
        breakdown = webshop_reward(product, self.goal, product.price, self.options)
        self.purchase = {
            "asin": product.asin,
            "options": dict(self.options),
            "price": product.price,
            "goal_asin": self.goal.asin,
            **breakdown.to_dict(),
        }
        self.page = "done"

    # -- pages -------------------------------------------------------------------------------------
    def _segments(self) -> list[Segment]:
        """The current page (`pages.py` renders it as text or HTML)."""
        goal = self.goal
        if self.page == "search":
            return [
                ("text", "WebShop"),
                ("text", "Instruction:"),
                ("instruction", goal.instruction),
                ("search", ""),
            ]
        if self.page == "done":
            product = self._product()
            chosen = "; ".join(f"{k}: {v}" for k, v in self.options.items()) or "none"
            return [
                ("text", "Thank you for shopping with us!"),
                ("text", f"You bought {product.asin}"),
                ("heading", product.name),
                ("text", f"Options: {chosen}"),
                ("text", "Your score (min 0.0, max 1.0)"),
                ("text", f"{self.purchase['reward']:.4f}"),
            ]
        segments: list[Segment] = [
            ("text", "Instruction:"),
            ("instruction", goal.instruction),
            ("click", BACK_TO_SEARCH),
        ]
        if self.page == "results":
            segments.append(("text", f"Page {self.page_num} (Total results: {len(self.results)})"))
            if self.page_num > 1:
                segments.append(("click", PREV))
            if self.page_num * PRODUCT_WINDOW < len(self.results):
                segments.append(("click", NEXT))
            for asin in self._page_asins():
                product = self.catalog.by_asin[asin]
                segments += [("click", asin), ("text", product.name), ("text", product.price_tag)]
            return segments
        product = self._product()
        segments.append(("click", PREV))
        if self.page == "item":
            for name, values in product.options.items():
                segments.append(("heading", name))
                segments += [("selected" if self.options.get(name) == v else "option", v) for v in values]
            segments += [
                ("heading", product.name),
                ("text", f"Price: {product.price_tag}"),
                ("text", f"Rating: {product.rating}"),
                *[("click", name) for name in SUB_PAGES],
                ("click", BUY_NOW),
            ]
        elif self.page == "description":
            segments.append(("text", product.description))
        elif self.page == "features":
            segments += [("text", bullet) for bullet in product.bullet_points]
        elif self.page == "reviews":
            for review in product.reviews:
                segments += [("text", review.title), ("text", f"{review.score} stars"), ("text", review.body)]
            if not product.reviews:
                segments.append(("text", "No reviews yet."))
        return segments

    def _observation(self, error: str | None = None) -> str:
        text = to_text(self._segments())
        if error is not None:
            text = f"Invalid action: {error}. Nothing happened.\n{text}"
        self.last_observation = text
        self._last_error = error
        return text

    def render(self) -> str | None:
        if self.render_mode == "html":
            note = f"Invalid action: {self._last_error}." if self._last_error else ""
            return to_html(self._segments(), note=note)
        return super().render()

    # -- agents' helpers ---------------------------------------------------------------------------
    def admissible_actions(self) -> list[str]:
        """The clickables of the page as `click[...]`; on the search page, one search: the instruction
        itself (the search box accepts any words, a list cannot hold them all)."""
        if self.goal_index < 0 or self.page == "done":
            return []
        if self.page == "search":
            return [f"search[{self.goal.instruction}]"]
        return [f"click[{target}]" for target in self._clickables()]

    def expert_action(self) -> str | None:
        """Search the instruction's words, page to the goal product (searching its title if the words
        do not find it), open it, pick the goal's options, buy."""
        if self.goal_index < 0 or self.page == "done":
            return None
        goal = self.goal
        if self.page == "search":
            query = goal.instruction
            if self.keywords == query:  # the instruction's words did not surface it: search its title
                query = self.catalog.by_asin[goal.asin].name if goal.asin in self.catalog.by_asin else query
            return f"search[{query}]"
        if self.page == "results":
            if goal.asin in self._page_asins():
                return f"click[{goal.asin.lower()}]"
            if goal.asin in self.results and self.results.index(goal.asin) >= self.page_num * PRODUCT_WINDOW:
                return f"click[{NEXT.lower()}]"
            if goal.asin in self.results:
                return f"click[{PREV.lower()}]"
            return f"click[{BACK_TO_SEARCH.lower()}]"
        if self.asin != goal.asin:
            return f"click[{BACK_TO_SEARCH.lower()}]"
        if self.page != "item":
            return f"click[{PREV.lower()}]"
        for name, value in self._goal_option_choices():
            if self.options.get(name) != value:
                return f"click[{value}]"
        return f"click[{BUY_NOW.lower()}]"

    def _goal_option_choices(self) -> list[tuple[str, str]]:
        """(option name, value) for each goal option the goal product offers."""
        goal, product = self.goal, self._product()
        names = goal.option_names or (None,) * len(goal.options)
        choices = []
        for name, value in zip(names, goal.options):
            if value.lower() not in product.options.get(name, ()):  # real WebShop goals may list values
                # only, or name them otherwise than the product does: find the option that has this value
                name = next((n for n, values in product.options.items() if value.lower() in values), None)
            if name is not None and value.lower() in product.options.get(name, ()):
                choices.append((name, value.lower()))
        return choices

    def _state_info(self) -> dict[str, Any]:
        success = self.purchase is not None and self.purchase["reward"] >= 1.0
        return {
            "success": success,
            "admissible_actions": self.admissible_actions(),
            "progress": self._progress(success),
            "state_key": (
                self.goal_index,
                self.page,
                self.keywords if self.page != "search" else None,
                self.page_num,
                self.asin,
                tuple(sorted(self.options.items())),
            ),
            "page": self.page,
        }

    def _progress(self, success: bool) -> float:
        """0 at the start; 0.25 with the goal product among the results; 0.5 on its page, plus up to
        0.5 for its goal options chosen; 1 on success."""
        if success:
            return 1.0
        goal = self.goal
        if self.asin == goal.asin and self.page != "done":
            choices = self._goal_option_choices()
            chosen = sum(self.options.get(name) == value for name, value in choices)
            return 0.5 + 0.5 * chosen / (len(choices) + 1)
        if self.page == "results" and goal.asin in self.results:
            return 0.25
        return 0.0
