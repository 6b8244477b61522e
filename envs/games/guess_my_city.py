"""GuessMyCity: find a hidden city with open and yes/no questions, as in ArCHer (`turngym/GuessMyCity-v0`)."""

from __future__ import annotations

import functools

from turngym.core import TEXT_CHARSET
from turngym.envs.games.questions import (
    Entity,
    Key,
    Oracle,
    PhraseIndex,
    QuestionGameEnv,
    answer_value,
    normalize,
    read_table,
)

POPULATION_BANDS = (
    (1.0, "Fewer than 1 million"),
    (5.0, "Between 1 and 5 million"),
    (10.0, "Between 5 and 10 million"),
)
CONTINENTS = ("Asia", "Europe", "Africa", "North America", "South America", "Oceania")
OPEN_QUESTIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "country": ("Which country is the city in?", ("country", "nation", "where")),
    "continent": ("Which continent is the city on?", ("continent",)),
    "languages": ("What language do people speak there?", ("language", "languages", "speak", "spoken")),
    "population": (
        "How many people live there?",
        ("how many people", "people live", "population", "inhabitants", "how big", "how large"),
    ),
    "hemisphere": ("Which hemisphere is the city in?", ("hemisphere",)),
}
YES_NO: dict[tuple[str, object], tuple[str, tuple[str, ...]]] = {
    ("coastal", True): (
        "Is the city on the coast?",
        ("coast", "coastal", "ocean", "sea", "seaside", "beach", "port"),
    ),
    ("capital", True): ("Is it a capital city?", ("capital", "capital city", "seat of government")),
    ("hemisphere", "south"): (
        "Is it in the southern hemisphere?",
        ("southern hemisphere", "south of the equator"),
    ),
    ("hemisphere", "north"): (
        "Is it in the northern hemisphere?",
        ("northern hemisphere", "north of the equator"),
    ),
}


def population_band(millions: float) -> str:
    for limit, band in POPULATION_BANDS:
        if millions < limit:
            return band
    return "More than 10 million"


@functools.cache
def _cities() -> tuple[tuple[Entity, ...], dict[str, tuple[str, ...]]]:
    """The shipped city table (data/cities.tsv), and each country's accepted names."""
    entities, countries = [], {}
    for names, country_names, continent, languages, population, coastal, capital, hemisphere in read_table(
        "cities.tsv"
    ):
        aliases = tuple(a.strip().lower() for a in names.split(";"))
        country = country_names.split(";")[0]
        countries[country] = tuple(c.strip().lower() for c in country_names.split(";"))
        attributes = {
            "country": country,
            "continent": continent,
            "languages": frozenset(languages.split(",")),
            "population_m": float(population),
            "population": population_band(float(population)),
            "coastal": coastal == "yes",
            "capital": capital == "yes",
            "hemisphere": hemisphere,
        }
        entities.append(Entity(names.split(";")[0], aliases, attributes))
    return tuple(entities), countries


def _vocabulary() -> tuple[dict[str, Key], dict[str, Key], tuple[tuple[Key, str], ...]]:
    """(yes/no phrase -> key, open phrase -> key, (key, canonical question) for the expert)."""
    entities, countries = _cities()
    yes_no: dict[str, Key] = {}
    questions: list[tuple[Key, str]] = []
    open_phrases: dict[str, Key] = {}
    for attribute, (canonical, words) in OPEN_QUESTIONS.items():
        questions.append((("open", attribute), canonical))
        open_phrases.update(dict.fromkeys(words, ("open", attribute)))
    for (attribute, value), (canonical, words) in YES_NO.items():
        questions.append((("is", attribute, value), canonical))
        yes_no.update(dict.fromkeys(words, ("is", attribute, value)))
    for continent in CONTINENTS:
        questions.append((("is", "continent", continent), f"Is it in {continent}?"))
        yes_no[continent.lower()] = ("is", "continent", continent)
    for country, names in countries.items():
        questions.append((("is", "country", country), f"Is it in {country}?"))
        yes_no.update(dict.fromkeys(names, ("is", "country", country)))
    for language in sorted({lang for e in entities for lang in e.attributes["languages"]}):
        questions.append((("is", "languages", language), f"Do people there speak {language}?"))
        yes_no[language.lower()] = ("is", "languages", language)
        yes_no.setdefault(language.split()[-1].lower(), ("is", "languages", language))  # "chinese"
    return yes_no, open_phrases, tuple(questions)


class GuessMyCityEnv(QuestionGameEnv):
    """ArCHer's guess-my-city: a hidden city among 93 on six continents; ask open questions
    ("Which country is it in?", "What language do people speak there?", "How many people live
    there?") or yes/no ones ("Is it on the coast?", "Is it a capital city?", "Does it have more than
    5 million people?"), then guess with "Is it <city>?".

    The answers come from the shipped facts table (country, continent, languages, population band,
    coast, capital, hemisphere); anything else gets "I can't answer that question." `answerer=`
    plugs in an LM instead (an answer naming the city is withheld, as in ArCHer). Cities are split
    80/20 into train/test; the expert (best worst-case split, then guess) always finds the city within
    20 questions."""

    success_definition = "the hidden city was guessed by name within the question limit"
    game = "city"
    split_seed = 20261125

    @classmethod
    @functools.cache
    def oracle(cls) -> Oracle:
        yes_no, open_phrases, _ = _vocabulary()
        return Oracle(
            entities=_cities()[0],
            yes_no=PhraseIndex(yes_no),
            open_questions=PhraseIndex(open_phrases),
            number_attribute="population_m",
        )

    @classmethod
    @functools.cache
    def expert_questions(cls) -> tuple[tuple[Key, str], ...]:
        return _vocabulary()[2]

    @property
    def task(self) -> str:
        return "Guess the hidden city"

    @property
    def instructions(self) -> str:
        return (
            "Let's play guess my city. I am thinking of a large city somewhere in the world. Find it by "
            "asking one question per turn: open questions about its country, continent, language, "
            "population or hemisphere (for example: Which country is the city in?), or yes/no questions "
            "(for example: Is it on the coast? Is it a capital city? Does it have more than 5 million "
            "people?). Questions I cannot answer are invalid. To guess, ask: Is it <city>? You have "
            f"{self.max_questions} questions in all, guesses included."
        )

    def _answer_text(self, entity: Entity, key: Key) -> str:
        value = answer_value(entity, key)
        if key[0] != "open":
            return "Yes." if value else "No."
        attribute = key[1]
        if attribute == "languages":
            return f"People there mostly speak {' and '.join(sorted(value))}."
        if attribute == "population":
            return f"{value} people live there."
        if attribute == "hemisphere":
            return f"It is in the {value}ern hemisphere."
        return f"It is in {value}."

    def _answerer_prompt(self, entity: Entity) -> str:
        return (
            f"You are playing guess my city. Your home town is {entity.name}, "
            f"{entity.attributes['country']}. Answer the player's question about it truthfully in one "
            "short sentence, without ever naming the city."
        )

    def _answerer_text(self, reply: str, entity: Entity) -> tuple[str, bool]:
        text = " ".join("".join(c for c in reply if c in TEXT_CHARSET).split())[:300]
        if not text:
            return "I can't answer that question.", False
        if any(f" {alias} " in f" {normalize(text)} " for alias in entity.aliases):
            return "I can't answer that question.", True
        return text, True
