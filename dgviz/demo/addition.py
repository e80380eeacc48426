"""Multi-digit addition: ``add 4821+977`` -> ``5798``.

Carries make later digits decide earlier ones.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

NAME = "addition"
DEFAULT_DIFFICULTY = {"max_digits": 12}


@dataclass(frozen=True)
class Item:
    a: int
    b: int


def generate(n: int, seed: int, max_digits: int = 12, min_digits: int = 1) -> list[Item]:
    rng = random.Random(seed)

    def number():
        digits = rng.randint(min_digits, max_digits)
        return rng.randint(10 ** (digits - 1) if digits > 1 else 0, 10**digits - 1)

    return [Item(number(), number()) for _ in range(n)]


def prompt(item: Item) -> str:
    return f"add {item.a}+{item.b}"


def answer(item: Item) -> str:
    return str(item.a + item.b)


target = answer


def parse(text: str) -> str:
    """The leading run of digits (the model writes only the sum)."""
    text = text.strip()
    digits = ""
    for ch in text:
        if not ch.isdigit():
            break
        digits += ch
    return digits


def score(item: Item, text: str) -> float:
    return float(parse(text) == answer(item))


def position_accuracy(item: Item, text: str) -> float:
    expected, got = answer(item), parse(text)
    return sum(e == g for e, g in zip(expected, got, strict=False)) / len(expected)
