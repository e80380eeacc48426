"""Evaluate the demo model with the real `model.generate`.

    python -m dgviz.demo.evaluate --n 500 --all-settings

Held-out items come from `EVAL_SEED` (training draws from seeds >= 1,000,000). For each task and
sampler setting it prints exact rate, per-position accuracy, givens kept (sudoku), decoder
forward passes (denoising steps), wall time per item, self-correction and routing balance.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .tasks import TASKS, get_task
from .vocab import chat_prompt_ids

EVAL_SEED = 20_261_130
# (task, difficulty) rows evaluated by default; sudoku at several blank counts.
DEFAULT_SUITE = [
    ("sudoku", {"blanks": 20}),
    ("sudoku", {"blanks": 30}),
    ("sudoku", {"blanks": 40}),
    ("sudoku6", {"blanks": 14}),
    ("sudoku6", {"blanks": 22}),
    ("pets", {}),
]
# Sampler settings besides the checkpoint's defaults (keyword arguments to `generate`).
SETTINGS = {
    "default": {},
    "eb=1.0 (greedy acceptance)": {"entropy_bound": 1.0},
    "eb=0.01 (cautious)": {"entropy_bound": 0.01},
    "max 4 steps": {"max_denoising_steps": 4},
}


class DraftRecorder:
    """A generate streamer keeping the argmax draft of every denoising step."""

    def __init__(self):
        self.drafts: list[torch.Tensor] = []

    def put(self, value):
        pass

    def put_draft(self, value=None, logits=None):
        self.drafts.append(value.clone())

    def end(self):
        pass


class RoutingCounter:
    """Counts each decoder layer's top-1 expert choices through forward hooks on its router."""

    def __init__(self, model):
        layers = model.model.decoder.layers
        num_experts = model.config.text_config.num_experts
        self.counts = torch.zeros(len(layers), num_experts, dtype=torch.long)
        self._handles = [
            layer.router.register_forward_hook(self._hook(index))
            for index, layer in enumerate(layers)
        ]

    def _hook(self, index):
        def hook(_module, _inputs, output):
            _probs, _weights, top_k_index = output
            self.counts[index] += torch.bincount(top_k_index[:, 0], minlength=self.counts.shape[1])

        return hook

    def max_share(self) -> list[float]:
        totals = self.counts.sum(dim=1).clamp(min=1)
        return (self.counts.max(dim=1).values / totals).tolist()

    def remove(self):
        for handle in self._handles:
            handle.remove()


def self_corrections(drafts: torch.Tensor) -> torch.Tensor:
    """Per item: does some position hold one token for two consecutive steps, then change?

    `drafts` is [steps, batch, canvas]. A token that looked settled and was replaced later is the
    visible self-correction a timeline shows (the first, random draft does not count).
    """
    if drafts.shape[0] < 3:
        return torch.zeros(drafts.shape[1], dtype=torch.bool)
    held = drafts[1:] == drafts[:-1]  # [steps-1, B, C]: step s+1 repeats step s
    corrected = torch.zeros(drafts.shape[1:], dtype=torch.bool)
    for s in range(held.shape[0]):
        later = drafts[s + 2:] if s + 2 < drafts.shape[0] else drafts[:0]
        if later.shape[0]:
            changed_later = (later != drafts[s + 1][None]).any(dim=0)
            corrected |= held[s] & changed_later
    return corrected.any(dim=-1)


@dataclass
class ItemResult:
    score: float
    position_accuracy: float
    givens_kept: bool | None
    steps: int
    self_corrected: bool
    seconds: float
    text: str = field(repr=False)


def run_items(model, tokenizer, task_name: str, items, settings: dict, batch_size: int = 50,
              seed: int = 0) -> list[ItemResult]:
    """Generate answers for `items` in left-padded batches with the real `model.generate`."""
    task = get_task(task_name)
    pad = tokenizer.pad_token_id
    settings = dict(settings)
    if "entropy_bound" in settings:  # generate takes the bound inside the sampler's config
        from transformers import EntropyBoundSamplerConfig

        settings["sampler_config"] = EntropyBoundSamplerConfig(settings.pop("entropy_bound"))
    results = []
    for start in range(0, len(items), batch_size):
        batch = items[start:start + batch_size]
        prompts = [chat_prompt_ids(tokenizer, task.prompt(item)) for item in batch]
        width = max(len(p) for p in prompts)
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
        attention_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        recorder = DraftRecorder()
        torch.manual_seed(seed + start)
        began = time.perf_counter()
        with torch.no_grad():
            out = model.generate(input_ids, attention_mask=attention_mask, streamer=recorder,
                                 **settings)
        seconds = (time.perf_counter() - began) / len(batch)
        generated = out.sequences[:, width:]
        valid_tokens = (generated != pad).sum(dim=-1).float()
        steps = torch.round(valid_tokens / out.tokens_per_forward).long().tolist()
        corrected = self_corrections(torch.stack(recorder.drafts)).tolist()
        for row, item in enumerate(batch):
            text = tokenizer.decode(generated[row], skip_special_tokens=True)
            has_givens = hasattr(task, "givens_preserved")
            givens = task.givens_preserved(item, task.parse(text)) if has_givens else None
            results.append(ItemResult(
                score=task.score(item, text), position_accuracy=task.position_accuracy(item, text),
                givens_kept=givens, steps=steps[row], self_corrected=corrected[row],
                seconds=seconds, text=text,
            ))
    return results


def summarise(results: list[ItemResult]) -> dict:
    steps = [r.steps for r in results]
    givens = [r.givens_kept for r in results if r.givens_kept is not None]
    return {
        "n": len(results),
        "exact": sum(r.score for r in results) / len(results),
        "position_accuracy": sum(r.position_accuracy for r in results) / len(results),
        "givens_kept": sum(givens) / len(givens) if givens else None,
        "steps_mean": statistics.mean(steps),
        "steps_median": statistics.median(steps),
        "self_corrected": sum(r.self_corrected for r in results) / len(results),
        "seconds_per_item": statistics.mean(r.seconds for r in results),
    }


def evaluate(model, tokenizer, n: int = 500, seed: int = EVAL_SEED, suite=None, settings=None,
             batch_size: int = 50, progress=print) -> list[dict]:
    """Rows of measured numbers: one per (task, difficulty, sampler setting)."""
    suite = DEFAULT_SUITE if suite is None else suite
    settings = {"default": {}} if settings is None else settings
    rows = []
    for task_name, difficulty in suite:
        items = TASKS[task_name].generate(n, seed, **difficulty)
        for setting_name, setting in settings.items():
            counter = RoutingCounter(model)
            try:
                results = run_items(model, tokenizer, task_name, items, setting, batch_size, seed)
            finally:
                counter.remove()
            row = {"task": task_name, "difficulty": difficulty, "setting": setting_name,
                   **summarise(results), "routing_max_top1_share": counter.max_share(),
                   "routing_top1_counts": counter.counts.tolist()}
            rows.append(row)
            if progress:
                progress(format_row(row))
    return rows


def combined_max_share(rows: list[dict]) -> list[float]:
    """Per decoder layer, the largest top-1 expert share over all rows' tokens together."""
    counts = torch.tensor([row["routing_top1_counts"] for row in rows]).sum(dim=0)
    return (counts.max(dim=1).values / counts.sum(dim=1).clamp(min=1)).tolist()


def format_row(row: dict) -> str:
    difficulty = ",".join(f"{k}={v}" for k, v in row["difficulty"].items()) or "-"
    givens = "-" if row["givens_kept"] is None else f"{row['givens_kept']:.1%}"
    routing = " ".join(f"{share:.0%}" for share in row["routing_max_top1_share"])
    return (
        f"| {row['task']} | {difficulty} | {row['setting']} | {row['n']} | {row['exact']:.1%} | "
        f"{row['position_accuracy']:.1%} | {givens} | {row['steps_mean']:.1f} / "
        f"{row['steps_median']:g} | {row['self_corrected']:.0%} | "
        f"{1000 * row['seconds_per_item']:.0f} ms | {routing} |"
    )


TABLE_HEADER = (
    "| task | difficulty | sampler | n | exact | per-position | givens kept | steps mean / median "
    "| self-corrected | wall / item | max top-1 expert share per decoder layer |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|"
)


def main(argv=None):
    from . import demo_model

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=500, help="held-out items per task and difficulty")
    parser.add_argument("--seed", type=int, default=EVAL_SEED)
    parser.add_argument("--threads", type=int, default=1,
                        help="1 is fastest when other work shares the cores")
    parser.add_argument("--batch-size", type=int, default=50)
    parser.add_argument("--checkpoint", type=Path, default=None)
    parser.add_argument("--tasks", nargs="*", default=None, help="subset of tasks")
    parser.add_argument("--all-settings", action="store_true",
                        help="also run the non-default sampler settings")
    parser.add_argument("--settings-n", type=int, default=100,
                        help="items per row for the non-default settings")
    parser.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    suite = [row for row in DEFAULT_SUITE if args.tasks is None or row[0] in args.tasks]
    print(TABLE_HEADER, flush=True)
    rows, shares = [], []
    for task in dict.fromkeys(name for name, _ in suite):  # each task with its own checkpoint
        model, tokenizer = demo_model(task, checkpoint=args.checkpoint)
        mine = [row for row in suite if row[0] == task]
        done = evaluate(model, tokenizer, args.n, args.seed, mine, {"default": {}},
                        args.batch_size, progress=lambda line: print(line, flush=True))
        shares.append(f"{task} " + " ".join(f"{s:.0%}" for s in combined_max_share(done)))
        rows += done
        if args.all_settings:
            others = {k: v for k, v in SETTINGS.items() if k != "default"}
            rows += evaluate(model, tokenizer, args.settings_n, args.seed, mine, others,
                             args.batch_size, progress=lambda line: print(line, flush=True))
    print("\nrouting over each task's default rows: max top-1 expert share per decoder layer: "
          + "; ".join(shares))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
