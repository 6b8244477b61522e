"""Generate the shipped data of the tool envs: three SQLite databases and the SearchQA corpus.

`python -m turngym.envs.tools.make_data [OUT_DIR]` rewrites them (default: the package's data/);
the output depends only on the fixed seeds below, so a rerun gives the same rows and documents."""

from __future__ import annotations

import json
import sqlite3
import sys
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).with_name("data")
DATABASES = ("company", "library", "shop")
SQL_SEED = 7_2026
CORPUS_SEED = 11_2026

FIRST = ("Ana", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kira",
         "Leo", "Maya", "Nils", "Olga", "Pavel", "Rosa", "Sami", "Tara", "Umar", "Vera", "Wen", "Yusuf",
         "Zoe")  # fmt: skip
LAST = ("Alvarez", "Brandt", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Haddad", "Ito", "Jansen",
        "Kowalski", "Lindqvist", "Moreau", "Novak", "Okafor", "Petrov", "Quinn", "Rossi", "Sato",
        "Tanaka", "Usman", "Varga", "Weber", "Young")  # fmt: skip
CITIES = ("Lisbon", "Oslo", "Lagos", "Osaka", "Lima", "Perth", "Quebec", "Tunis", "Krakow", "Seoul")


def _names(rng: np.random.Generator, n: int) -> list[str]:
    """n distinct 'First Last' names."""
    pairs = [f"{first} {last}" for first in FIRST for last in LAST]
    return [pairs[i] for i in rng.permutation(len(pairs))[:n]]


def _company(db: sqlite3.Connection, rng: np.random.Generator) -> None:
    db.executescript(
        """
        CREATE TABLE departments (id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT NOT NULL);
        CREATE TABLE employees (id INTEGER PRIMARY KEY, name TEXT NOT NULL,
            department_id INTEGER NOT NULL REFERENCES departments(id), salary INTEGER NOT NULL,
            hire_year INTEGER NOT NULL);
        CREATE TABLE projects (id INTEGER PRIMARY KEY, name TEXT NOT NULL,
            department_id INTEGER NOT NULL REFERENCES departments(id), budget INTEGER NOT NULL);
        CREATE TABLE assignments (employee_id INTEGER NOT NULL REFERENCES employees(id),
            project_id INTEGER NOT NULL REFERENCES projects(id), hours INTEGER NOT NULL,
            PRIMARY KEY (employee_id, project_id));
        """
    )
    departments = (
        "Engineering",
        "Sales",
        "Marketing",
        "Finance",
        "Support",
        "Research",
        "Legal",
        "Operations",
    )
    for i, name in enumerate(departments, 1):
        db.execute("INSERT INTO departments VALUES (?, ?, ?)", (i, name, str(rng.choice(CITIES[:6]))))
    for i, name in enumerate(_names(rng, 120), 1):
        row = (i, name, int(rng.integers(1, 9)), int(rng.integers(35, 160)) * 1000 + int(rng.integers(0, 10)) * 100,
               int(rng.integers(2012, 2026)))  # fmt: skip
        db.execute("INSERT INTO employees VALUES (?, ?, ?, ?, ?)", row)
    codenames = ("Atlas", "Beacon", "Comet", "Delta", "Ember", "Falcon", "Glacier", "Harbor", "Iris",
                 "Juniper", "Kestrel", "Lumen", "Meridian", "Nova", "Orbit", "Pioneer")  # fmt: skip
    for i, name in enumerate(codenames, 1):
        db.execute(
            "INSERT INTO projects VALUES (?, ?, ?, ?)",
            (i, name, int(rng.integers(1, 9)), int(rng.integers(5, 200)) * 1000),
        )
    for employee in range(1, 121):
        for project in rng.choice(16, size=int(rng.integers(0, 4)), replace=False):
            db.execute(
                "INSERT INTO assignments VALUES (?, ?, ?)",
                (employee, int(project) + 1, int(rng.integers(2, 40)) * 5),
            )


def _library(db: sqlite3.Connection, rng: np.random.Generator) -> None:
    db.executescript(
        """
        CREATE TABLE authors (id INTEGER PRIMARY KEY, name TEXT NOT NULL, country TEXT NOT NULL,
            birth_year INTEGER NOT NULL);
        CREATE TABLE books (id INTEGER PRIMARY KEY, title TEXT NOT NULL,
            author_id INTEGER NOT NULL REFERENCES authors(id), genre TEXT NOT NULL, year INTEGER NOT NULL,
            pages INTEGER NOT NULL);
        CREATE TABLE members (id INTEGER PRIMARY KEY, name TEXT NOT NULL, city TEXT NOT NULL);
        CREATE TABLE loans (id INTEGER PRIMARY KEY, book_id INTEGER NOT NULL REFERENCES books(id),
            member_id INTEGER NOT NULL REFERENCES members(id), loan_date TEXT NOT NULL,
            returned INTEGER NOT NULL);
        """
    )
    countries = ("Brazil", "Canada", "Egypt", "France", "India", "Japan", "Kenya", "Norway")
    names = _names(rng, 100)
    for i, name in enumerate(names[:40], 1):
        db.execute(
            "INSERT INTO authors VALUES (?, ?, ?, ?)",
            (i, name, str(rng.choice(countries)), int(rng.integers(1920, 1995))),
        )
    adjectives = (
        "Silent",
        "Crimson",
        "Hidden",
        "Last",
        "Frozen",
        "Golden",
        "Broken",
        "Distant",
        "Quiet",
        "Wild",
    )
    nouns = (
        "River",
        "Garden",
        "Empire",
        "Letter",
        "Harbor",
        "Forest",
        "Mirror",
        "Winter",
        "Voyage",
        "Orchard",
    )
    titles = [f"The {a} {n}" for a in adjectives for n in nouns]
    genres = ("Mystery", "Fantasy", "History", "Science", "Poetry", "Romance")
    for i, index in enumerate(rng.permutation(len(titles))[:90], 1):
        row = (i, titles[index], int(rng.integers(1, 41)), str(rng.choice(genres)), int(rng.integers(1950, 2025)),
               int(rng.integers(90, 700)))  # fmt: skip
        db.execute("INSERT INTO books VALUES (?, ?, ?, ?, ?, ?)", row)
    for i, name in enumerate(names[40:100], 1):
        db.execute("INSERT INTO members VALUES (?, ?, ?)", (i, name, str(rng.choice(CITIES[:5]))))
    for i in range(1, 301):
        date = (
            f"{int(rng.integers(2021, 2025))}-{int(rng.integers(1, 13)):02d}-{int(rng.integers(1, 29)):02d}"
        )
        row = (i, int(rng.integers(1, 91)), int(rng.integers(1, 61)), date, int(rng.random() < 0.85))
        db.execute("INSERT INTO loans VALUES (?, ?, ?, ?, ?)", row)


def _shop(db: sqlite3.Connection, rng: np.random.Generator) -> None:
    db.executescript(
        """
        CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, category TEXT NOT NULL,
            price REAL NOT NULL);
        CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT NOT NULL, country TEXT NOT NULL,
            signup_year INTEGER NOT NULL);
        CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL REFERENCES customers(id),
            order_date TEXT NOT NULL, status TEXT NOT NULL);
        CREATE TABLE order_items (order_id INTEGER NOT NULL REFERENCES orders(id),
            product_id INTEGER NOT NULL REFERENCES products(id), quantity INTEGER NOT NULL,
            PRIMARY KEY (order_id, product_id));
        """
    )
    catalog = {
        "Kitchen": ("Kettle", "Toaster", "Blender", "Chef Knife", "Cutting Board", "Teapot", "Frying Pan"),
        "Garden": ("Hose", "Rake", "Shovel", "Planter", "Sprinkler", "Pruner", "Wheelbarrow"),
        "Office": ("Stapler", "Desk Lamp", "Notebook", "Monitor Stand", "Office Chair", "Whiteboard"),
        "Sports": ("Yoga Mat", "Dumbbell", "Tennis Racket", "Football", "Jump Rope", "Bike Helmet"),
        "Toys": ("Puzzle", "Kite", "Robot Kit", "Board Game", "Plush Bear", "Toy Train"),
    }
    product_id = 0
    for category, items in catalog.items():
        for item in items:
            product_id += 1
            price = round(float(rng.integers(300, 25000)) / 100, 2)
            db.execute("INSERT INTO products VALUES (?, ?, ?, ?)", (product_id, item, category, price))
    countries = ("Chile", "Germany", "Ghana", "Mexico", "Spain", "Vietnam")
    for i, name in enumerate(_names(rng, 80), 1):
        db.execute(
            "INSERT INTO customers VALUES (?, ?, ?, ?)",
            (i, name, str(rng.choice(countries)), int(rng.integers(2018, 2025))),
        )
    statuses = ("delivered", "delivered", "delivered", "shipped", "cancelled")
    for i in range(1, 251):
        date = (
            f"{int(rng.integers(2022, 2025))}-{int(rng.integers(1, 13)):02d}-{int(rng.integers(1, 29)):02d}"
        )
        db.execute(
            "INSERT INTO orders VALUES (?, ?, ?, ?)",
            (i, int(rng.integers(1, 81)), date, str(rng.choice(statuses))),
        )
        for product in rng.choice(product_id, size=int(rng.integers(1, 4)), replace=False):
            db.execute(
                "INSERT INTO order_items VALUES (?, ?, ?)", (i, int(product) + 1, int(rng.integers(1, 6)))
            )


def write_databases(out_dir: Path) -> None:
    rng = np.random.default_rng(SQL_SEED)
    for name, fill in zip(DATABASES, (_company, _library, _shop)):
        path = out_dir / f"{name}.sqlite"
        path.unlink(missing_ok=True)
        db = sqlite3.connect(path)
        fill(db, rng)
        db.commit()
        db.execute("VACUUM")
        db.close()


# ----------------------------------------------------------------------------- SearchQA corpus

SYLLABLES = ("bar", "cel", "dor", "fen", "gal", "hir", "kas", "lom", "mer", "nav", "ost", "pel", "quin",
             "ros", "sul", "tav", "ur", "vel", "wim", "zan", "ael", "bri", "cor", "dra", "eth", "mil")  # fmt: skip
INDUSTRIES = ("robotics", "shipping", "textile", "software", "mining", "pharmaceutical", "aerospace", "food")
PROFESSIONS = ("engineer", "chemist", "architect", "economist", "pilot", "designer", "geologist", "lawyer")
CURRENCIES = (
    "crown",
    "mark",
    "florin",
    "dinar",
    "peso",
    "ducat",
    "real",
    "taler",
    "lira",
    "rand",
    "shilling",
    "guilder",
)
SUFFIXES = ("Industries", "Systems", "Works", "Labs", "Group", "Dynamics", "Holdings", "Partners")


def _words(rng: np.random.Generator, n: int, used: set[str]) -> list[str]:
    """n new capitalised made-up words (never seen before in `used`), so questions need the corpus."""
    words: list[str] = []
    while len(words) < n:
        word = "".join(rng.choice(SYLLABLES, size=int(rng.integers(2, 4)))).capitalize()
        if word not in used:
            used.add(word)
            words.append(word)
    return words


def make_corpus() -> dict:
    """Fact documents (countries, cities, companies, people) and multi-hop questions over them."""
    rng = np.random.default_rng(CORPUS_SEED)
    used: set[str] = set()
    countries = _words(rng, 12, used)
    cities = _words(rng, 48, used)
    people = [f"{a} {b}" for a, b in zip(_words(rng, 140, used), _words(rng, 140, used))]
    companies = [f"{w} {SUFFIXES[i % len(SUFFIXES)]}" for i, w in enumerate(_words(rng, 60, used))]
    city_country = {c: countries[i % 12] for i, c in enumerate(cities)}  # each country has 4 cities
    capital = {country: cities[i] for i, country in enumerate(countries)}
    born = {p: str(rng.choice(cities)) for p in people}
    founder = {c: people[i] for i, c in enumerate(companies)}  # the first 60 people founded a company
    employer = {p: str(rng.choice(companies)) for p in people[60:]}
    docs, doc_id = [], {}

    def add(kind: str, title: str, text: str) -> None:
        doc_id[title] = f"{kind}-{sum(d['id'].startswith(kind) for d in docs):03d}"
        docs.append({"id": doc_id[title], "title": title, "text": text})

    for i, country in enumerate(countries):
        add("country", country, f"{country} is a country whose capital is {capital[country]}. "
            f"Its currency is the {country} {CURRENCIES[i]}. It has {int(rng.integers(2, 90))} million inhabitants.")  # fmt: skip
    for city in cities:
        add("city", city, f"{city} is a city in {city_country[city]}. It has about "
            f"{int(rng.integers(20, 2000)) * 1000} inhabitants and a {rng.choice(('harbor', 'university', 'cathedral', 'market'))!s}.")  # fmt: skip
    years = {}
    for i, company in enumerate(companies):
        years[company] = int(rng.integers(1890, 2020))
        add("company", company, f"{company} is a {INDUSTRIES[i % len(INDUSTRIES)]} company founded in "
            f"{years[company]} by {founder[company]}. Its headquarters are in {rng.choice(cities)!s}.")  # fmt: skip
    hq = {
        d["title"]: d["text"].rsplit(" in ", 1)[1].rstrip(".") for d in docs if d["id"].startswith("company")
    }
    founded = {p: c for c, p in founder.items()}
    for person in people:
        job = f"founded {founded[person]}" if person in founded else f"works for {employer[person]}"
        profession = str(rng.choice(PROFESSIONS))
        article = "an" if profession[0] in "aeiou" else "a"
        add("person", person, f"{person} is {article} {profession} born in {born[person]} in "
            f"{int(rng.integers(1940, 2000))}. {person.split()[0]} {job}.")  # fmt: skip

    def hop(title: str) -> list[dict]:
        return [
            {"name": "search", "arguments": {"query": title}},
            {"name": "open", "arguments": {"doc_id": doc_id[title]}},
        ]

    tasks = []
    for company in companies[:50]:
        person = founder[company]
        tasks.append({"type": "founder-birth-country", "question": f"In which country was the founder of {company} born?",
                      "answer": city_country[born[person]], "gold": hop(company) + hop(person) + hop(born[person])})  # fmt: skip
        tasks.append({"type": "headquarters-country", "question": f"In which country are the headquarters of {company}?",
                      "answer": city_country[hq[company]], "gold": hop(company) + hop(hq[company])})  # fmt: skip
    for person in people[60:110]:
        tasks.append({"type": "employer-founding-year", "question": f"In which year was the company that {person} works for founded?",
                      "answer": str(years[employer[person]]), "gold": hop(person) + hop(employer[person])})  # fmt: skip
        country = city_country[born[person]]
        tasks.append({"type": "birth-country-capital", "question": f"What is the capital of the country where {person} was born?",
                      "answer": capital[country], "gold": hop(person) + hop(born[person]) + hop(country)})  # fmt: skip
    return {"docs": docs, "tasks": tasks}


def write_corpus(out_dir: Path) -> None:
    (out_dir / "searchqa.json").write_text(json.dumps(make_corpus(), indent=0, sort_keys=True) + "\n")


def main(out_dir: str | None = None) -> None:
    target = Path(out_dir) if out_dir else DATA_DIR
    target.mkdir(parents=True, exist_ok=True)
    write_databases(target)
    write_corpus(target)
    print(f"wrote {', '.join(f'{d}.sqlite' for d in DATABASES)} and searchqa.json to {target}")


if __name__ == "__main__":
    main(*sys.argv[1:2])
