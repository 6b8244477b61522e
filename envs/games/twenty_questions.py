"""TwentyQuestions: find a hidden object with yes/no questions, as in ArCHer (`turngym/TwentyQuestions-v0`)."""

from __future__ import annotations

import functools
from typing import Any

from turngym.envs.games.questions import Entity, Key, Oracle, PhraseIndex, QuestionGameEnv, read_table

# attribute value -> (canonical question, other phrasings). The oracle matches these phrases as
# whole words anywhere in a yes/no question; the expert asks the canonical wording.
CATEGORIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "sports equipment": ("Is it a piece of sports equipment?", ("sporting goods", "sports gear")),
    "animal": ("Is it an animal?", ("mammal", "creature", "beast")),
    "fruit": ("Is it a fruit?", ("fruits",)),
    "vehicle": ("Is it a vehicle?", ("means of transport", "transportation", "mode of transport")),
    "clothing": ("Is it a piece of clothing?", ("clothes", "garment", "item of clothing", "apparel")),
    "electronic device": ("Is it an electronic device?", ("electronics", "gadget", "appliance", "device")),
    "musical instrument": ("Is it a musical instrument?", ("instrument", "make music", "play music")),
    "furniture": ("Is it a piece of furniture?", ()),
    "office supply": ("Is it an office supply?", ("office supplies", "stationery", "office")),
    "vegetable": ("Is it a vegetable?", ("vegetables", "veggie")),
    "art supply": ("Is it an art supply?", ("art supplies", "art", "artwork", "work of art")),
    "kitchen utensil": ("Is it a kitchen utensil?", ("utensil", "kitchenware", "cookware", "kitchen tool")),
    "nature": ("Is it part of nature?", ("natural feature", "natural object", "landform", "landscape")),
    "toy": ("Is it a toy?", ("toys", "plaything")),
    "jewelry": ("Is it a piece of jewelry?", ("jewellery", "jewel", "accessory")),
    "garden tool": ("Is it a garden tool?", ("gardening tool", "garden", "gardening", "garden supply")),
    "tool": ("Is it a tool?", ("hand tool", "tools")),
}
SIZES: dict[str, tuple[str, tuple[str, ...]]] = {
    "small": (
        "Is it small enough to hold in one hand?",
        (
            "small",
            "tiny",
            "little",
            "fit in your hand",
            "fits in your hand",
            "hold it in one hand",
            "handheld",
        ),
    ),
    "medium": ("Is it medium-sized?", ("medium", "medium size")),
    "large": (
        "Is it bigger than a person?",
        ("large", "big", "huge", "bigger than a person", "larger than a person", "enormous", "giant"),
    ),
}
MATERIALS: dict[str, tuple[str, tuple[str, ...]]] = {
    "metal": ("Is it made of metal?", ("metallic", "steel", "iron")),
    "wood": ("Is it made of wood?", ("wooden",)),
    "plastic": ("Is it made of plastic?", ()),
    "fabric": ("Is it made of fabric?", ("cloth", "cotton", "textile")),
    "paper": ("Is it made of paper?", ()),
    "leather": ("Is it made of leather?", ()),
    "rubber": ("Is it made of rubber?", ()),
    "glass": ("Is it made of glass?", ()),
    "stone": ("Is it made of stone?", ()),
    "ceramic": ("Is it made of ceramic?", ("porcelain", "clay")),
}
COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown", "black", "white", "gray")
FLAGS: dict[str, tuple[str, tuple[str, ...]]] = {
    "alive": ("Is it alive?", ("living", "living thing", "breathe", "breathes")),
    "edible": ("Can you eat it?", ("edible", "eat", "eaten", "food")),
    "electric": (
        "Does it use electricity?",
        ("electric", "electricity", "electronic", "battery", "batteries", "plug", "power"),
    ),
    "wheels": ("Does it have wheels?", ("wheel",)),
    "wearable": ("Can you wear it?", ("wear", "wear it", "wearable", "worn", "put it on")),
    "sharp": ("Is it sharp?", ("cut", "pointy", "spiky", "prickly")),
    "round": ("Is it round?", ("spherical", "circular", "sphere", "ball shaped", "ball")),
    "sound": ("Does it make a sound?", ("sounds", "noise", "noisy", "loud")),
    "fly": ("Can it fly?", ("flies", "flying", "in the air", "in the sky")),
    "water": ("Is it found in or used on water?", ("float", "floats", "swim", "wet", "liquid")),
    "legs": ("Does it have legs?", ("leg",)),
    "soft": ("Is it soft?", ("fluffy", "furry")),
    "pet": ("Is it a pet?", ("pet animal", "kept as a pet", "domestic")),
    "farm": ("Is it a farm animal?", ("farm animal", "farm", "livestock")),
    "wild": ("Is it a wild animal?", ("wild animal", "wild", "in the wild", "jungle", "zoo")),
    "tree": (
        "Does it grow on trees?",
        ("grow on trees", "grows on trees", "grow on a tree", "grows on a tree"),
    ),
    "engine": ("Does it have an engine?", ("motor", "fuel", "petrol", "gasoline")),
    "screen": ("Does it have a screen?", ("display",)),
    "kitchen": ("Is it used in the kitchen?", ("kitchen", "cook", "cooking", "eat with")),
    "pair": ("Does it come in pairs?", ("pair", "pairs")),
    "sport": ("Is it used in sports?", ("sport", "sports", "athletic", "athletics")),
}
MAN_MADE = (
    ("man made", "manmade", "human made", "made by humans", "made by people", "artificial", "manufactured"),
    ("natural",),
)
NATURAL_CATEGORIES = frozenset({"animal", "fruit", "vegetable", "nature"})


def _vocabulary() -> tuple[dict[str, Key], tuple[tuple[Key, str], ...]]:
    """(phrase -> key, (key, canonical question) for the expert)."""
    phrases: dict[str, Key] = {}
    questions: list[tuple[Key, str]] = []

    def add(key: Key, canonical: str, words: tuple[str, ...]) -> None:
        questions.append((key, canonical))
        for word in words:
            phrases.setdefault(word, key)

    for attribute, table in (("category", CATEGORIES), ("size", SIZES), ("materials", MATERIALS)):
        for value, (canonical, words) in table.items():
            add(("is", attribute, value), canonical, (value, *words))
    for colour in COLOURS:
        add(
            ("is", "colours", colour),
            f"Is it {colour} in colour?",
            (colour, "grey") if colour == "gray" else (colour,),
        )
    for flag, (canonical, words) in FLAGS.items():
        add(("is", "flags", flag), canonical, (flag, *words))
    add(("is", "man_made", True), "Is it man-made?", MAN_MADE[0])
    phrases["natural"] = ("is", "man_made", False)
    return phrases, tuple(questions)


@functools.cache
def _objects() -> tuple[Entity, ...]:
    """The shipped object table (data/objects.tsv)."""
    entities = []
    for names, category, size, materials, colours, flags in read_table("objects.tsv"):
        aliases = tuple(a.strip().lower() for a in names.split(";"))
        attributes: dict[str, Any] = {
            "category": category,
            "size": size,
            "materials": frozenset(filter(None, materials.split(","))),
            "colours": frozenset(filter(None, colours.split(","))),
            "flags": frozenset(flags.split()),
            "man_made": category not in NATURAL_CATEGORIES,
        }
        entities.append(Entity(aliases[0], aliases, attributes))
    return tuple(entities)


class TwentyQuestionsEnv(QuestionGameEnv):
    """ArCHer's twenty questions: a hidden object from a fixed list of 157 (sports equipment,
    animals, fruits, vehicles, clothing, ...); ask yes/no questions, then guess it with "Is it a X?".

    The answerer is a rule-based oracle over the shipped attribute table (category, size, materials,
    colour of natural things, and flags such as alive, edible, electric, wheels, wearable, sharp):
    it answers "Yes.", "No." or "Invalid question." (questions it cannot parse, negations, or two
    questions at once). `answerer=` plugs in an LM instead (its reply is mapped to Yes/No/Invalid).
    Objects are split 80/20 into train/test; the expert (best worst-case split, then guess) always
    finds the object within 20 questions."""

    success_definition = "the hidden object was guessed by name within the question limit"
    game = "twentyq"
    split_seed = 20261124

    @classmethod
    @functools.cache
    def oracle(cls) -> Oracle:
        phrases, _ = _vocabulary()
        return Oracle(entities=_objects(), yes_no=PhraseIndex(phrases))

    @classmethod
    @functools.cache
    def expert_questions(cls) -> tuple[tuple[Key, str], ...]:
        return _vocabulary()[1]

    @property
    def task(self) -> str:
        return "Guess the hidden object"

    @property
    def instructions(self) -> str:
        return (
            f"Let's play twenty questions. I am thinking of an everyday object, animal, food, vehicle or "
            f"natural thing. Ask yes/no questions to find out what it is; I answer Yes., No. or Invalid "
            f"question. Ask one question per turn about one property (for example: Is it an animal? Is "
            f"it made of metal? Can you eat it?), without negations. To guess, ask: Is it a <name>? "
            f"You have {self.max_questions} questions in all, guesses included."
        )

    @classmethod
    def guess_question(cls, entity: Entity) -> str:
        article = "an" if entity.name[0] in "aeiou" else "a"
        return f"Is it {article} {entity.name}?"

    def _answerer_prompt(self, entity: Entity) -> str:
        return (
            "You are the answerer in a game of twenty questions. The hidden object is "
            f'"{entity.name}". Answer the player\'s question about it with exactly one of: Yes. / No. / '
            "Invalid question. (for anything that is not a yes/no question)."
        )
