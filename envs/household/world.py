"""Procedural houses and tasks: a task id (config, split, task type, number) -> an immutable `World`."""

from __future__ import annotations

import functools
import random
import re
import zlib
from dataclasses import dataclass

from turngym.envs.household.catalog import (
    APPLIANCE,
    LAMP,
    LAMP_HOMES,
    OBJECTS,
    OPENABLE,
    ROOMS,
    TASK_ROOMS,
    TASK_TYPES,
    TEMPLATES,
    TOGGLEABLE,
    TRANSFORM,
    TRANSFORM_BITS,
)

TEST_BUCKETS = 2  # of 10: the share of floor plans (and of goal combinations) held out for test
MAX_ATTEMPTS = 200
TASK_ID = re.compile(r"^r(\d+)c(\d+)d(\d+)(u?)-(train|test)-([a-z_]+)-(\d+)$")


@dataclass(frozen=True)
class HouseConfig:
    """The difficulty knobs."""

    rooms: int = 1  # rooms in the house (1 to 4 room types: kitchen, living room, bedroom, bathroom)
    receptacles: int = 12  # receptacles per room (core furniture first, then cabinets/drawers/shelves)
    distractors: int = 8  # non-target objects per room
    unseen_combinations: bool = False  # test goals use (object, receptacle) pairs never in train goals

    def __post_init__(self) -> None:
        if not 1 <= self.rooms <= len(ROOMS):
            raise ValueError(f"rooms must be in [1, {len(ROOMS)}], got {self.rooms}")
        if not 4 <= self.receptacles <= 40:
            raise ValueError(f"receptacles must be in [4, 40], got {self.receptacles}")
        if not 0 <= self.distractors <= 40:
            raise ValueError(f"distractors must be in [0, 40], got {self.distractors}")

    @property
    def tag(self) -> str:
        return f"r{self.rooms}c{self.receptacles}d{self.distractors}{'u' if self.unseen_combinations else ''}"


@dataclass(frozen=True, eq=False)
class World:
    """One task: the house as generated (never mutated; the env keeps the changing state apart)."""

    task_id: str
    split: str
    task_type: str
    instruction: str
    target_type: str  # the object type the task is about
    recep_type: str  # the receptacle type to place it in (the lamp type for look_at_obj_in_light)
    room_names: tuple[str, ...]
    recep_names: tuple[str, ...]
    recep_types: tuple[str, ...]
    recep_room: tuple[int, ...]
    openable: tuple[bool, ...]
    obj_names: tuple[str, ...]
    obj_types: tuple[str, ...]
    capabilities: tuple[int, ...]
    pickupable: tuple[bool, ...]
    can_contain: tuple[frozenset[int], ...]  # object -> receptacles that can hold it
    contents: tuple[tuple[int, ...], ...]  # receptacle -> objects in it at the start
    recep_index: dict[str, int]
    obj_index: dict[str, int]

    def __deepcopy__(self, memo: dict) -> World:  # immutable: env snapshots share it
        return self

    @functools.cached_property
    def targets(self) -> tuple[int, ...]:
        return tuple(i for i, t in enumerate(self.obj_types) if t == self.target_type)

    @functools.cached_property
    def goal_receps(self) -> tuple[int, ...]:
        return tuple(i for i, t in enumerate(self.recep_types) if t == self.recep_type)

    @functools.cached_property
    def lamps(self) -> tuple[int, ...]:
        return tuple(i for i, t in enumerate(self.obj_types) if t == LAMP)

    @functools.cached_property
    def appliances(self) -> tuple[int, ...]:
        kind = TRANSFORM.get(self.task_type)
        return tuple(i for i, t in enumerate(self.recep_types) if kind and t == APPLIANCE[kind])

    @functools.cached_property
    def location_numbers(self) -> tuple[int, ...]:
        """Receptacle -> N of its place 'loc N', as ALFWorld before 0.4.0 named it on arrival. There
        the numbers come from sorting mangled location ids (alfworld/agents/utils/misc.py, Demangler),
        unrelated to the receptacle's own number; here a fixed shuffle per task (its own generator,
        so the house generation draws nothing more)."""
        numbers = list(range(1, len(self.recep_names) + 1))
        random.Random(f"{self.task_id}|locations").shuffle(numbers)
        return tuple(numbers)

    @functools.cached_property
    def intro(self) -> str:
        def listing(receps: list[int]) -> str:
            return join_items([f"a {self.recep_names[r]}" for r in receps])

        if len(self.room_names) == 1:
            looking = f"Looking quickly around you, you see {listing(list(range(len(self.recep_names))))}."
            where = "room"
        else:
            looking = " ".join(
                f"In the {room}, you see {listing([r for r, k in enumerate(self.recep_room) if k == i])}."
                for i, room in enumerate(self.room_names)
            )
            where = "house"
        return f"You are in the middle of a {where}. {looking}"


def join_items(items: list[str]) -> str:
    """ALFWorld's list style: 'a mug 2, and a apple 1'; 'nothing' when empty."""
    if not items:
        return "nothing"
    if len(items) == 1:
        return items[0]
    return ", ".join(items[:-1]) + ", and " + items[-1]


def _bucket(key: str) -> str:
    return "test" if zlib.crc32(key.encode()) % 10 < TEST_BUCKETS else "train"


def task_id(config: HouseConfig, split: str, task_type: str, number: int) -> str:
    return f"{config.tag}-{split}-{task_type}-{number}"


def parse_task_id(text: str) -> tuple[HouseConfig, str, str, int]:
    """(config, split, task type, number) of a task id, or a one-line ValueError."""
    match = TASK_ID.match(text)
    if not match or match.group(6) not in TASK_TYPES:
        raise ValueError(
            f"unknown task_id {text!r}; household task ids look like "
            f"'r1c12d8-train-pick_and_place-42' (task types: {', '.join(TASK_TYPES)})"
        )
    rooms, receps, distractors, unseen, split, task_type, number = match.groups()
    config = HouseConfig(int(rooms), int(receps), int(distractors), unseen == "u")
    return config, split, task_type, int(number)


@functools.lru_cache(maxsize=4096)
def make_world(config: HouseConfig, split: str, task_type: str, number: int) -> World:
    """The task `number` of `task_type` in `split`: the first generated house whose floor plan (rooms
    and receptacles) hashes into `split`, so train and test floor plans never overlap."""
    for attempt in range(MAX_ATTEMPTS):
        rng = random.Random(f"{config.tag}|{split}|{task_type}|{number}|{attempt}")
        world = _generate(rng, config, split, task_type, number)
        if world is not None:
            return world
    raise RuntimeError(f"no {task_type} house for {config} after {MAX_ATTEMPTS} attempts")


def _generate(
    rng: random.Random, config: HouseConfig, split: str, task_type: str, number: int
) -> World | None:
    # Rooms: the first one hosts what the task needs (appliance or lamp), the others are random.
    needed = TASK_ROOMS.get(task_type, tuple(ROOMS))
    first = rng.choice(needed)
    rooms = [first, *rng.sample([r for r in ROOMS if r != first], config.rooms - 1)]

    recep_types: list[str] = []
    recep_room: list[int] = []
    for index, room in enumerate(rooms):
        spec = ROOMS[room]
        kinds = [kind for kind, low, high in spec.core for _ in range(rng.randint(low, high))]
        while len(kinds) < config.receptacles:
            kinds.append(rng.choice(spec.storage))
        recep_types += kinds
        recep_room += [index] * len(kinds)
    recep_names = _number(recep_types)
    if _bucket("|".join(rooms) + "|" + ",".join(sorted(recep_names))) != split:
        return None

    # The goal: an object type found in these rooms and a receptacle type that can hold it.
    present = set(recep_types)
    room_set = set(rooms)
    kind = TRANSFORM.get(task_type)
    candidates = []
    for obj, spec in OBJECTS.items():
        if not spec.rooms & room_set or not spec.homes & present:
            continue
        if kind and not spec.capabilities & TRANSFORM_BITS[kind][0]:
            continue
        if task_type == "look_at_obj_in_light":
            candidates.append((obj, LAMP))
        else:
            appliance = APPLIANCE[kind] if kind else None
            for recep in sorted(spec.homes & present):
                if recep != appliance and _placeable_elsewhere(spec.homes & present, recep):
                    candidates.append((obj, recep))
    if config.unseen_combinations:
        candidates = [c for c in candidates if _bucket(f"{c[0]}|{c[1]}") == split]
    if not candidates:
        return None
    target, recep_type = rng.choice(candidates)

    # Objects: the targets first (never already in a goal receptacle), then distractors, then lamps.
    obj_types: list[str] = []
    contents: list[list[int]] = [[] for _ in recep_types]

    def place(obj: str, rooms_allowed: set[int], exclude: str | None = None) -> bool:
        homes = OBJECTS[obj].homes if obj != LAMP else frozenset(LAMP_HOMES)
        spots = [
            r
            for r, t in enumerate(recep_types)
            if t in homes and t != exclude and recep_room[r] in rooms_allowed
        ]
        if not spots:
            return False
        contents[rng.choice(spots)].append(len(obj_types))
        obj_types.append(obj)
        return True

    native = {i for i, room in enumerate(rooms) if room in OBJECTS[target].rooms}
    low = 2 if task_type == "pick_two_obj_and_place" else 1
    for _ in range(rng.randint(low, low + 1)):
        exclude = None if task_type == "look_at_obj_in_light" else recep_type
        if not place(target, native, exclude=exclude) and not place(target, set(range(len(rooms))), exclude):
            return None
    for index, room in enumerate(rooms):
        pool = [o for o, spec in OBJECTS.items() if room in spec.rooms and o != target]
        for _ in range(config.distractors):
            place(rng.choice(pool), {index})
        if room in TASK_ROOMS["look_at_obj_in_light"]:
            place(LAMP, {index})
    if task_type == "look_at_obj_in_light" and LAMP not in obj_types:
        return None
    for items in contents:
        rng.shuffle(items)

    obj_names = _number(obj_types)
    templates = TEMPLATES[task_type]
    instruction = rng.choice(templates).format(obj=target, recep=recep_type)
    return World(
        task_id=task_id(config, split, task_type, number),
        split=split,
        task_type=task_type,
        instruction=instruction,
        target_type=target,
        recep_type=recep_type,
        room_names=tuple(rooms),
        recep_names=tuple(recep_names),
        recep_types=tuple(recep_types),
        recep_room=tuple(recep_room),
        openable=tuple(t in OPENABLE for t in recep_types),
        obj_names=tuple(obj_names),
        obj_types=tuple(obj_types),
        capabilities=tuple(_capabilities(t, task_type) for t in obj_types),
        pickupable=tuple(t != LAMP for t in obj_types),
        can_contain=tuple(
            frozenset(r for r, rt in enumerate(recep_types) if t != LAMP and rt in OBJECTS[t].homes)
            for t in obj_types
        ),
        contents=tuple(tuple(items) for items in contents),
        recep_index={name: i for i, name in enumerate(recep_names)},
        obj_index={name: i for i, name in enumerate(obj_names)},
    )


def _capabilities(obj_type: str, task_type: str) -> int:
    """What can be done to an object. ALFWorld's games make lamps toggleable only in the task that
    needs them (alfworld/gen/game_states/planned_game_state.py: `toggleable` for the toggle target
    alone), so elsewhere `use desklamp 1` does nothing."""
    if obj_type == LAMP:
        return TOGGLEABLE if task_type == "look_at_obj_in_light" else 0
    return OBJECTS[obj_type].capabilities


def _placeable_elsewhere(homes: frozenset[str], recep: str) -> bool:
    """The targets must start outside every goal receptacle, so they need another home."""
    return bool(homes - {recep})


def _number(types: list[str]) -> list[str]:
    """Instance names: the k-th receptacle or object of a type is '<type> k'."""
    counts: dict[str, int] = {}
    names = []
    for t in types:
        counts[t] = counts.get(t, 0) + 1
        names.append(f"{t} {counts[t]}")
    return names
