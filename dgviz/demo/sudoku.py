"""9x9 Sudoku: the givens go in the prompt, the full 81-digit solution fills the canvas.

A puzzle is an 81-character string, row by row, with ``.`` for a blank.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

NAME = "sudoku"
DEFAULT_DIFFICULTY = {"blanks": 30}
ALL_CELLS = range(81)
_PEERS = [
    sorted(
        {r * 9 + c for r in range(9) for c in range(9)
         if (r == cell // 9) or (c == cell % 9)
         or (r // 3 == cell // 27 and c // 3 == (cell % 9) // 3)}
        - {cell}
    )
    for cell in ALL_CELLS
]


@dataclass(frozen=True)
class Item:
    puzzle: str  # 81 chars, '.' for blanks
    solution: str  # 81 digits


def random_solution(rng: random.Random) -> str:
    """A uniformly shuffled valid grid: relabel digits and permute rows, columns, bands, stacks."""
    base = [[(r * 3 + r // 3 + c) % 9 for c in range(9)] for r in range(9)]

    def shuffled_lines():
        groups = rng.sample(range(3), 3)
        return [g * 3 + i for g in groups for i in rng.sample(range(3), 3)]

    rows, cols = shuffled_lines(), shuffled_lines()
    digits = rng.sample(range(1, 10), 9)
    grid = [[digits[base[r][c]] for c in cols] for r in rows]
    if rng.random() < 0.5:
        grid = [list(col) for col in zip(*grid, strict=False)]
    return "".join(str(d) for row in grid for d in row)


def count_solutions(puzzle: str, limit: int = 2) -> int:
    """Backtracking count of solutions, stopping at `limit` (most-constrained cell first)."""
    cells = [0 if ch == "." else int(ch) for ch in puzzle]

    def candidates(cell):
        used = {cells[p] for p in _PEERS[cell]}
        return [d for d in range(1, 10) if d not in used]

    def search() -> int:
        best, best_options = None, None
        for cell in ALL_CELLS:
            if cells[cell] == 0:
                options = candidates(cell)
                if best is None or len(options) < len(best_options):
                    best, best_options = cell, options
                    if len(options) <= 1:
                        break
        if best is None:
            return 1
        found = 0
        for digit in best_options:
            cells[best] = digit
            found += search()
            if found >= limit:
                break
        cells[best] = 0
        return found

    return search()


def make_puzzle(solution: str, blanks: int, rng: random.Random, unique: bool = True) -> str:
    """Blank `blanks` cells; with `unique`, only blank a cell if the solution stays unique."""
    grid = list(solution)
    order = rng.sample(range(81), 81)
    removed = 0
    for cell in order:
        if removed == blanks:
            break
        keep = grid[cell]
        grid[cell] = "."
        if unique and removed >= 20 and count_solutions("".join(grid)) != 1:
            grid[cell] = keep  # blanking this cell would open a second solution
            continue
        removed += 1
    return "".join(grid)


def generate(
    n: int, seed: int, blanks: int | tuple[int, int] = 30, unique: bool = True
) -> list[Item]:
    """`n` puzzles; `blanks` is a count or an inclusive (low, high) range.

    With `unique` (the default) every puzzle has exactly one solution; a puzzle may end with
    fewer blanks than asked when no further cell can be blanked without losing uniqueness.
    """
    rng = random.Random(seed)
    items = []
    for _ in range(n):
        count = blanks if isinstance(blanks, int) else rng.randint(*blanks)
        solution = random_solution(rng)
        items.append(Item(make_puzzle(solution, count, rng, unique=unique), solution))
    return items


def _puzzle_of(item_or_puzzle) -> str:
    puzzle = item_or_puzzle.puzzle if isinstance(item_or_puzzle, Item) else item_or_puzzle
    if len(puzzle) != 81 or any(ch not in ".123456789" for ch in puzzle):
        raise ValueError("a sudoku puzzle is 81 characters of 1-9 and '.' for blanks")
    return puzzle


def prompt(item_or_puzzle) -> str:
    """The user message for a puzzle (an `Item` or an 81-character string with '.' blanks)."""
    return "sudoku " + _puzzle_of(item_or_puzzle)


def target(item: Item) -> str:
    """The canvas text the model is trained to write."""
    return item.solution


def answer(item: Item) -> str:
    return item.solution


def parse(text: str) -> str:
    """The first 81 digits of the model's output, right-padded with '0' when it wrote fewer."""
    digits = [ch for ch in text if ch.isdigit()][:81]
    return "".join(digits).ljust(81, "0")


def is_valid_solution(grid: str) -> bool:
    if len(grid) != 81 or any(ch not in "123456789" for ch in grid):
        return False
    return all(grid[cell] != grid[peer] for cell in ALL_CELLS for peer in _PEERS[cell])


def givens_preserved(item_or_puzzle, grid: str) -> bool:
    puzzle = _puzzle_of(item_or_puzzle)
    return all(p == "." or p == g for p, g in zip(puzzle, grid, strict=False))


def score(item: Item, text: str) -> float:
    """1.0 for any valid grid that keeps the givens (generated puzzles have one solution)."""
    grid = parse(text)
    return float(is_valid_solution(grid) and givens_preserved(item, grid))


def position_accuracy(item: Item, text: str) -> float:
    """Fraction of the blank cells filled with the expected digit."""
    grid = parse(text)
    blanks = [i for i, ch in enumerate(item.puzzle) if ch == "."]
    if not blanks:
        return 1.0
    return sum(grid[i] == item.solution[i] for i in blanks) / len(blanks)
