"""The registry of demo tasks: each module has generate, prompt, target, answer, parse, score."""

from __future__ import annotations

from types import ModuleType

from . import pets, sudoku, sudoku6

TASKS: dict[str, ModuleType] = {
    module.NAME: module for module in (sudoku, sudoku6, pets)
}


def get_task(name: str) -> ModuleType:
    if name not in TASKS:
        raise ValueError(f"unknown demo task {name!r}; valid tasks: {', '.join(sorted(TASKS))}")
    return TASKS[name]
