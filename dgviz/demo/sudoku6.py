"""6x6 Sudoku (2x3 boxes, digits 1-6): a puzzle is 36 characters with ``.`` for blanks.

The same task as `dgviz.demo.sudoku` on a smaller grid: ``sudoku6 1.3..6...`` -> 36 digits.
"""

from __future__ import annotations

from .sudoku import Item, SudokuTask  # noqa: F401 (Item belongs to the task API)

_TASK = SudokuTask("sudoku6", 2, 3, default_blanks=14)
NAME, DEFAULT_DIFFICULTY = _TASK.NAME, _TASK.DEFAULT_DIFFICULTY
random_solution, count_solutions, make_puzzle = (
    _TASK.random_solution, _TASK.count_solutions, _TASK.make_puzzle)
generate, prompt, target, answer, parse = (
    _TASK.generate, _TASK.prompt, _TASK.target, _TASK.answer, _TASK.parse)
is_valid_solution, givens_preserved, score, position_accuracy = (
    _TASK.is_valid_solution, _TASK.givens_preserved, _TASK.score, _TASK.position_accuracy)
