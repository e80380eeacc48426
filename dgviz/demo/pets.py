"""Templated English: ``pets tom 3 cat`` -> ``tom has three cats.`` (number words, plurals)."""

from __future__ import annotations

import random
from dataclasses import dataclass

NAME = "pets"
DEFAULT_DIFFICULTY: dict = {}
NAMES = (
    "anna", "ben", "carla", "dev", "elif", "finn", "greta", "hugo", "ines", "jonas", "kai", "lena",
    "marco", "nora", "omar", "paula", "quinn", "rosa", "sami", "tom", "uma", "vera", "wen", "yusuf",
    "zoe", "mia", "leo", "ada", "noah", "ivy",
)
ANIMALS = {  # singular -> plural
    "cat": "cats", "dog": "dogs", "fish": "fish", "mouse": "mice", "horse": "horses",
    "goose": "geese", "sheep": "sheep", "fox": "foxes", "bird": "birds", "frog": "frogs",
    "pony": "ponies", "duck": "ducks", "rabbit": "rabbits", "goat": "goats", "wolf": "wolves",
}
NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@dataclass(frozen=True)
class Item:
    name: str
    count: int
    animal: str


def generate(n: int, seed: int) -> list[Item]:
    rng = random.Random(seed)
    return [
        Item(rng.choice(NAMES), rng.randint(0, 9), rng.choice(list(ANIMALS))) for _ in range(n)
    ]


def prompt(item: Item) -> str:
    return f"pets {item.name} {item.count} {item.animal}"


def answer(item: Item) -> str:
    noun = item.animal if item.count == 1 else ANIMALS[item.animal]
    if item.count == 0:
        return f"{item.name} has no {noun}."
    return f"{item.name} has {NUMBER_WORDS[item.count]} {noun}."


target = answer


def parse(text: str) -> str:
    """The first sentence, whitespace-normalised."""
    sentence = text.strip().split(".")[0]
    return " ".join(sentence.split()) + "."


def score(item: Item, text: str) -> float:
    return float(parse(text) == answer(item))


def position_accuracy(item: Item, text: str) -> float:
    expected, got = answer(item), parse(text)
    return sum(e == g for e, g in zip(expected, got, strict=False)) / len(expected)
