"""Tiny trained DiffusionGemmas that ship with dgviz (a multi-task model and a 9x9 Sudoku
specialist), and the tasks they were trained on.

>>> from dgviz.demo import demo_model, sudoku
>>> model, tokenizer = demo_model("sudoku")
>>> ids = tokenizer.apply_chat_template(
...     [{"role": "user", "content": sudoku.prompt(puzzle)}], add_generation_prompt=True,
...     return_tensors="pt", return_dict=True)["input_ids"]
>>> out = model.generate(ids)
>>> sudoku.parse(tokenizer.decode(out.sequences[0, ids.shape[1]:], skip_special_tokens=True))
"""

from __future__ import annotations

from pathlib import Path

from . import pets, sudoku, sudoku6
from .tasks import TASKS, get_task

CHECKPOINT_DIR = Path(__file__).parent / "checkpoint"  # the multi-task model (all tasks)
# tasks with a specialist checkpoint of their own (same architecture and tokenizer)
TASK_CHECKPOINTS = {"sudoku": Path(__file__).parent / "checkpoint-sudoku"}

__all__ = [
    "CHECKPOINT_DIR",
    "TASKS",
    "TASK_CHECKPOINTS",
    "demo_model",
    "get_task",
    "pets",
    "sudoku",
    "sudoku6",
]


def demo_model(task: str | None = None, checkpoint: str | Path | None = None):
    """Load the shipped demo model and its tokenizer (offline, from package data).

    `task` (one of `TASKS`) is validated, picks that task's specialist checkpoint if it has one
    (`TASK_CHECKPOINTS`: 9x9 Sudoku), and applies its generation defaults, if any. Without a
    task: the multi-task model. Returns `(model, tokenizer)` with the model in eval mode on the
    CPU.
    """
    if task is not None:
        task_module = get_task(task)
    if checkpoint is not None:
        path = Path(checkpoint)
    else:
        path = TASK_CHECKPOINTS.get(task, CHECKPOINT_DIR) if task is not None else CHECKPOINT_DIR
    if not (path / "model.safetensors").exists():
        raise FileNotFoundError(
            f"no demo checkpoint in {path}; retrain it with `python -m dgviz.demo.train`"
        )
    from transformers import AutoTokenizer, DiffusionGemmaForBlockDiffusion

    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = DiffusionGemmaForBlockDiffusion.from_pretrained(path, local_files_only=True)
    model.eval()
    if task is not None:
        for key, value in getattr(task_module, "GENERATION_DEFAULTS", {}).items():
            setattr(model.generation_config, key, value)
    return model, tokenizer
