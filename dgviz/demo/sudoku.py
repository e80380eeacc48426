"""9x9 Sudoku: the givens go in the prompt, the full 81-digit solution fills the canvas.

A puzzle is an 81-character string, row by row, with ``.`` for a blank. `SudokuTask` holds the
rules for any box shape; `dgviz.demo.sudoku6` is the same task on a 6x6 grid of 2x3 boxes.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Item:
    puzzle: str  # size*size chars, '.' for blanks
    solution: str  # size*size digits


class SudokuTask:
    """Generator, prompt, parser and scorer for Sudoku with `box_rows` x `box_cols` boxes."""

    def __init__(self, name: str, box_rows: int, box_cols: int, default_blanks: int,
                 unchecked_blanks: int = 0):
        self.NAME = name
        self.DEFAULT_DIFFICULTY = {"blanks": default_blanks}
        self.box_rows, self.box_cols = box_rows, box_cols
        # So many first blanks are taken without a uniqueness check (a 9x9 grid with 20 blanks
        # always has one solution; checking each costs more than it saves).
        self.unchecked_blanks = unchecked_blanks
        self.size = n = box_rows * box_cols
        self.cells = n * n
        self.digits = "123456789"[:n]
        self.peers = [
            sorted(
                {r * n + c for r in range(n) for c in range(n)
                 if r == cell // n or c == cell % n
                 or (r // box_rows, c // box_cols) == (cell // n // box_rows, cell % n // box_cols)}
                - {cell}
            )
            for cell in range(self.cells)
        ]

    def random_solution(self, rng: random.Random) -> str:
        """A shuffled valid grid: relabel digits, permute rows in bands, bands, columns, stacks."""
        n, br, bc = self.size, self.box_rows, self.box_cols
        base = [[(r * bc + r // br + c) % n for c in range(n)] for r in range(n)]

        def shuffled_lines(group: int):
            groups = rng.sample(range(n // group), n // group)
            return [g * group + i for g in groups for i in rng.sample(range(group), group)]

        rows, cols = shuffled_lines(br), shuffled_lines(bc)
        labels = rng.sample(range(1, n + 1), n)
        grid = [[labels[base[r][c]] for c in cols] for r in rows]
        if br == bc and rng.random() < 0.5:  # transposing keeps square boxes boxes
            grid = [list(col) for col in zip(*grid, strict=False)]
        return "".join(str(d) for row in grid for d in row)

    def count_solutions(self, puzzle: str, limit: int = 2) -> int:
        """Backtracking count of solutions, stopping at `limit` (most-constrained cell first)."""
        cells = [0 if ch == "." else int(ch) for ch in puzzle]
        values = range(1, self.size + 1)

        def search() -> int:
            best, best_options = None, None
            for cell in range(self.cells):
                if cells[cell] == 0:
                    used = {cells[p] for p in self.peers[cell]}
                    options = [d for d in values if d not in used]
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

    def make_puzzle(
        self, solution: str, blanks: int, rng: random.Random, unique: bool = True
    ) -> str:
        """Blank `blanks` cells; with `unique`, only blank a cell if the solution stays unique."""
        grid = list(solution)
        removed = 0
        for cell in rng.sample(range(self.cells), self.cells):
            if removed == blanks:
                break
            keep = grid[cell]
            grid[cell] = "."
            checked = unique and removed >= self.unchecked_blanks
            if checked and self.count_solutions("".join(grid)) != 1:
                grid[cell] = keep  # blanking this cell would open a second solution
                continue
            removed += 1
        return "".join(grid)

    def generate(
        self, n: int, seed: int, blanks: int | tuple[int, int] | None = None, unique: bool = True
    ) -> list[Item]:
        """`n` puzzles; `blanks` is a count or an inclusive (low, high) range.

        With `unique` (the default) every puzzle has exactly one solution; a puzzle may end with
        fewer blanks than asked when no further cell can be blanked without losing uniqueness.
        """
        blanks = self.DEFAULT_DIFFICULTY["blanks"] if blanks is None else blanks
        rng = random.Random(seed)
        items = []
        for _ in range(n):
            count = blanks if isinstance(blanks, int) else rng.randint(*blanks)
            solution = self.random_solution(rng)
            items.append(Item(self.make_puzzle(solution, count, rng, unique=unique), solution))
        return items

    def _puzzle_of(self, item_or_puzzle) -> str:
        puzzle = item_or_puzzle.puzzle if isinstance(item_or_puzzle, Item) else item_or_puzzle
        if len(puzzle) != self.cells or any(ch not in "." + self.digits for ch in puzzle):
            raise ValueError(
                f"a {self.size}x{self.size} sudoku puzzle is {self.cells} characters of "
                f"1-{self.size} and '.' for blanks"
            )
        return puzzle

    def prompt(self, item_or_puzzle) -> str:
        """The user message for a puzzle (an `Item` or a string with '.' for blanks)."""
        return f"{self.NAME} {self._puzzle_of(item_or_puzzle)}"

    def target(self, item: Item) -> str:
        """The canvas text the model is trained to write."""
        return item.solution

    def answer(self, item: Item) -> str:
        return item.solution

    def parse(self, text: str) -> str:
        """The first size*size digits of the output, right-padded with '0' when it wrote fewer."""
        digits = [ch for ch in text if ch.isdigit()][: self.cells]
        return "".join(digits).ljust(self.cells, "0")

    def is_valid_solution(self, grid: str) -> bool:
        if len(grid) != self.cells or any(ch not in self.digits for ch in grid):
            return False
        return all(grid[c] != grid[p] for c in range(self.cells) for p in self.peers[c])

    def givens_preserved(self, item_or_puzzle, grid: str) -> bool:
        puzzle = self._puzzle_of(item_or_puzzle)
        return all(p == "." or p == g for p, g in zip(puzzle, grid, strict=False))

    def score(self, item: Item, text: str) -> float:
        """1.0 for any valid grid that keeps the givens (generated puzzles have one solution)."""
        grid = self.parse(text)
        return float(self.is_valid_solution(grid) and self.givens_preserved(item, grid))

    def position_accuracy(self, item: Item, text: str) -> float:
        """Fraction of the blank cells filled with the expected digit."""
        grid = self.parse(text)
        blanks = [i for i, ch in enumerate(item.puzzle) if ch == "."]
        if not blanks:
            return 1.0
        return sum(grid[i] == item.solution[i] for i in blanks) / len(blanks)


_TASK = SudokuTask("sudoku", 3, 3, default_blanks=30, unchecked_blanks=20)
NAME, DEFAULT_DIFFICULTY = _TASK.NAME, _TASK.DEFAULT_DIFFICULTY
random_solution, count_solutions, make_puzzle = (
    _TASK.random_solution, _TASK.count_solutions, _TASK.make_puzzle)
generate, prompt, target, answer, parse = (
    _TASK.generate, _TASK.prompt, _TASK.target, _TASK.answer, _TASK.parse)
is_valid_solution, givens_preserved, score, position_accuracy = (
    _TASK.is_valid_solution, _TASK.givens_preserved, _TASK.score, _TASK.position_accuracy)
