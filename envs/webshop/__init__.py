"""WebShop (`turngym/WebShop-v0`): the web-shopping benchmark of Yao et al. 2022 on a built-in catalog or
WebShop's own data. Importing this registers the id; the env module loads only on `make`."""

from turngym.registry import register

register(
    "turngym/WebShop-v0",
    "turngym.envs.webshop.env:WebShopEnv",
    max_episode_steps=15,
    description="Search, browse and buy the product an instruction asks for; WebShop's reward (built-in "
    "catalog, or data_dir=WebShop's JSON).",
)
