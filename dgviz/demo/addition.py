"""Addition of two 10-digit numbers: ``add 0000004821+0000000977`` -> ``00000005798``.

Both terms are written with `DIGITS` digits (leading zeros) and the sum with `DIGITS + 1`, so
every digit sits at a fixed offset from the digits it depends on. Carries still make later
(less significant) digits decide earlier ones.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

NAME = "addition"
DIGITS = 10
DEFAULT_DIFFICULTY: dict = {}


@dataclass(frozen=True)
class Item:
    a: int
    b: int

    def __post_init__(self):
        for term in (self.a, self.b):
            if not 0 <= term < 10**DIGITS:
                raise ValueError(f"addition terms are whole numbers with at most {DIGITS} digits")


def generate(n: int, seed: int) -> list[Item]:
    """`n` pairs of uniformly random terms below 10**DIGITS."""
    rng = random.Random(seed)
    return [Item(rng.randrange(10**DIGITS), rng.randrange(10**DIGITS)) for _ in range(n)]


def prompt(item: Item) -> str:
    return f"add {item.a:0{DIGITS}d}+{item.b:0{DIGITS}d}"


def answer(item: Item) -> str:
    return f"{item.a + item.b:0{DIGITS + 1}d}"


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
