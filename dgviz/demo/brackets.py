"""Close nested brackets: ``close ([{<(`` -> ``)>}])``, innermost first."""

from __future__ import annotations

import random
from dataclasses import dataclass

NAME = "brackets"
DEFAULT_DIFFICULTY = {"max_depth": 12}
PAIRS = {"(": ")", "[": "]", "{": "}", "<": ">"}


@dataclass(frozen=True)
class Item:
    opened: str


def generate(n: int, seed: int, max_depth: int = 12, min_depth: int = 1) -> list[Item]:
    rng = random.Random(seed)
    return [
        Item("".join(rng.choice(list(PAIRS)) for _ in range(rng.randint(min_depth, max_depth))))
        for _ in range(n)
    ]


def prompt(item: Item) -> str:
    return f"close {item.opened}"


def answer(item: Item) -> str:
    return "".join(PAIRS[ch] for ch in reversed(item.opened))


target = answer


def parse(text: str) -> str:
    return "".join(ch for ch in text if ch in ")]}>")


def score(item: Item, text: str) -> float:
    return float(parse(text) == answer(item))


def position_accuracy(item: Item, text: str) -> float:
    expected, got = answer(item), parse(text)
    return sum(e == g for e, g in zip(expected, got, strict=False)) / len(expected)
