"""What a TurnGym house is made of: room types, receptacles, object types and their properties."""

from __future__ import annotations

from dataclasses import dataclass

# Object capability bits (what can be done to an object) and state bits (what has been done).
CLEANABLE, HEATABLE, COOLABLE, SLICEABLE, TOGGLEABLE = 1, 2, 4, 8, 16
CLEAN, HOT, COOL, SLICED, ON = 1, 2, 4, 8, 16

OPENABLE = frozenset({"cabinet", "drawer", "fridge", "microwave", "safe"})
KNIVES = frozenset({"knife", "butterknife"})
# ALFWorld's MOVABLE_RECEPTACLES (alfworld/gen/constants.py): its games mark them isReceptacleObject,
# and examining one answers "This is a normal mug 1. In it, you see nothing." whatever its state.
RECEPTACLE_OBJECTS = frozenset({"bowl", "box", "cup", "mug", "plate", "pan", "pot"})
LAMP = "desklamp"
LAMP_HOMES = ("desk", "sidetable", "dresser")

# The appliance each transformation needs, as in ALFWorld's PDDL domain.
APPLIANCE = {"clean": "sinkbasin", "heat": "microwave", "cool": "fridge"}


@dataclass(frozen=True)
class RoomType:
    core: tuple[tuple[str, int, int], ...]  # (receptacle type, min count, max count)
    storage: tuple[str, ...]  # receptacle types that fill the room up to its size


ROOMS: dict[str, RoomType] = {
    "kitchen": RoomType(
        core=(
            ("countertop", 1, 3),
            ("fridge", 1, 1),
            ("microwave", 1, 1),
            ("sinkbasin", 1, 1),
            ("stoveburner", 2, 4),
            ("coffeemachine", 1, 1),
            ("toaster", 1, 1),
            ("garbagecan", 1, 1),
            ("diningtable", 0, 1),
        ),
        storage=("cabinet", "drawer", "shelf"),
    ),
    "livingroom": RoomType(
        core=(
            ("sofa", 1, 1),
            ("armchair", 0, 1),
            ("coffeetable", 1, 1),
            ("sidetable", 1, 2),
            ("tvstand", 0, 1),
            ("garbagecan", 1, 1),
        ),
        storage=("drawer", "cabinet", "shelf"),
    ),
    "bedroom": RoomType(
        core=(
            ("bed", 1, 1),
            ("desk", 0, 1),
            ("dresser", 1, 1),
            ("sidetable", 1, 2),
            ("garbagecan", 1, 1),
            ("safe", 0, 1),
        ),
        storage=("drawer", "shelf"),
    ),
    "bathroom": RoomType(
        core=(
            ("sinkbasin", 1, 2),
            ("bathtubbasin", 0, 1),
            ("toilet", 1, 1),
            ("towelholder", 1, 1),
            ("handtowelholder", 0, 1),
            ("toiletpaperhanger", 1, 1),
            ("countertop", 1, 1),
            ("garbagecan", 1, 1),
        ),
        storage=("cabinet", "drawer", "shelf"),
    ),
}


@dataclass(frozen=True)
class ObjectType:
    rooms: frozenset[str]  # rooms it is found in
    homes: frozenset[str]  # receptacle types that can hold it (ALFWorld's canContain)
    capabilities: int  # CLEANABLE | HEATABLE | ...


def _objects(rows: str) -> dict[str, ObjectType]:
    """Parse `name: rooms; homes; capabilities` rows (capabilities: c h k s = clean heat cool slice)."""
    bits = {"c": CLEANABLE, "h": HEATABLE, "k": COOLABLE, "s": SLICEABLE}
    table = {}
    for row in rows.strip().splitlines():
        name, rest = row.split(":")
        rooms, homes, caps = (part.split() for part in rest.split(";"))
        table[name.strip()] = ObjectType(frozenset(rooms), frozenset(homes), sum(bits[c] for c in caps))
    return table


_FOOD = "countertop diningtable fridge microwave sinkbasin garbagecan"
_DISH = "countertop diningtable fridge microwave sinkbasin cabinet shelf"
_POT = "stoveburner countertop diningtable cabinet sinkbasin fridge"
_CUTLERY = "countertop diningtable drawer sinkbasin"
_SMALL = "sofa armchair bed coffeetable sidetable desk dresser shelf drawer"
_DESKTOP = "coffeetable sidetable desk dresser shelf drawer"

OBJECTS: dict[str, ObjectType] = _objects(f"""
apple: kitchen; {_FOOD}; c h k s
bread: kitchen; countertop diningtable fridge microwave cabinet; h k s
egg: kitchen; {_FOOD}; c h k
lettuce: kitchen; countertop diningtable fridge sinkbasin garbagecan; c k s
potato: kitchen; {_FOOD}; c h k s
tomato: kitchen; {_FOOD}; c h k s
mug: kitchen livingroom bedroom; {_DISH} coffeemachine desk sidetable coffeetable; c h k
cup: kitchen; {_DISH}; c h k
bowl: kitchen livingroom; {_DISH} coffeetable sidetable; c k
plate: kitchen; {_DISH}; c h k
pan: kitchen; {_POT}; c k
pot: kitchen; {_POT}; c k
kettle: kitchen; stoveburner countertop diningtable cabinet sinkbasin; c
knife: kitchen; {_CUTLERY}; c
butterknife: kitchen; {_CUTLERY}; c
fork: kitchen; {_CUTLERY}; c
spoon: kitchen; {_CUTLERY}; c
spatula: kitchen; {_CUTLERY}; c
ladle: kitchen; {_CUTLERY}; c
saltshaker: kitchen; countertop diningtable cabinet drawer shelf;
peppershaker: kitchen; countertop diningtable cabinet drawer shelf;
dishsponge: kitchen bathroom; countertop diningtable cabinet drawer sinkbasin garbagecan shelf; c
winebottle: kitchen; countertop diningtable fridge cabinet shelf garbagecan; k
soapbar: bathroom; countertop cabinet sinkbasin bathtubbasin toilet garbagecan shelf; c
cloth: bathroom; countertop cabinet drawer sinkbasin bathtubbasin shelf; c
handtowel: bathroom; handtowelholder countertop cabinet shelf;
towel: bathroom; towelholder countertop cabinet shelf;
toiletpaper: bathroom; toiletpaperhanger countertop cabinet toilet shelf garbagecan;
spraybottle: bathroom; countertop cabinet toilet shelf garbagecan;
candle: bathroom livingroom; countertop cabinet toilet shelf sidetable coffeetable;
soapbottle: bathroom kitchen; countertop cabinet toilet shelf garbagecan;
book: livingroom bedroom; {_SMALL};
cellphone: livingroom bedroom; {_SMALL} safe;
creditcard: livingroom bedroom; {_SMALL} safe;
keychain: livingroom bedroom; {_SMALL} safe;
pen: livingroom bedroom; {_DESKTOP} garbagecan;
pencil: livingroom bedroom; {_DESKTOP} garbagecan;
cd: livingroom bedroom; {_DESKTOP} safe garbagecan;
alarmclock: bedroom; sidetable desk dresser shelf;
laptop: livingroom bedroom; sofa armchair bed coffeetable sidetable desk dresser;
remotecontrol: livingroom; sofa armchair coffeetable sidetable tvstand dresser drawer;
newspaper: livingroom; sofa armchair coffeetable sidetable tvstand garbagecan;
pillow: livingroom bedroom; sofa armchair bed;
statue: livingroom; coffeetable sidetable tvstand shelf dresser;
vase: livingroom; coffeetable sidetable tvstand shelf;
watch: livingroom bedroom; {_DESKTOP} safe;
tissuebox: livingroom bathroom; coffeetable sidetable shelf dresser toilet countertop;
box: livingroom; sofa armchair coffeetable sidetable tvstand shelf;
""")

TASK_TYPES = (
    "pick_and_place",
    "pick_clean_then_place",
    "pick_heat_then_place",
    "pick_cool_then_place",
    "look_at_obj_in_light",
    "pick_two_obj_and_place",
)
"""ALFWorld's six task types (its `pick_and_place_simple` etc. without the suffixes)."""

TRANSFORM = {"pick_clean_then_place": "clean", "pick_heat_then_place": "heat", "pick_cool_then_place": "cool"}
TRANSFORM_BITS = {"clean": (CLEANABLE, CLEAN), "heat": (HEATABLE, HOT), "cool": (COOLABLE, COOL)}

# The rooms a task type needs (one of them): its appliance or lamp lives there.
TASK_ROOMS = {
    "pick_clean_then_place": ("kitchen", "bathroom"),
    "pick_heat_then_place": ("kitchen",),
    "pick_cool_then_place": ("kitchen",),
    "look_at_obj_in_light": ("livingroom", "bedroom"),
}

# ALFWorld's goal templates (two per task type, picked at random per task).
TEMPLATES = {
    "pick_and_place": ("put a {obj} in {recep}", "put some {obj} on {recep}"),
    "pick_clean_then_place": ("put a clean {obj} in {recep}", "clean some {obj} and put it in {recep}"),
    "pick_heat_then_place": ("put a hot {obj} in {recep}", "heat some {obj} and put it in {recep}"),
    "pick_cool_then_place": ("put a cool {obj} in {recep}", "cool some {obj} and put it in {recep}"),
    "look_at_obj_in_light": ("look at {obj} under the {recep}", "examine the {obj} with the {recep}"),
    "pick_two_obj_and_place": ("put two {obj} in {recep}", "find two {obj} and put them in {recep}"),
}
