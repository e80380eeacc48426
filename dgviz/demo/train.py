"""Train the shipped demo model: ``python -m dgviz.demo.train --minutes 78``.

One multi-task DiffusionGemma (the tasks in `dgviz.demo.TASKS`) trained with the DiffusionGemma
objective (see `modeling.training_losses`). Writes the checkpoint (safetensors, config,
generation config, tokenizer with chat template), a loss CSV and the loss-curve figure.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import random
import time
from pathlib import Path

import torch

from .modeling import (
    RouterRecorder,
    build_config,
    generation_config,
    training_losses,
)
from .tasks import TASKS
from .vocab import build_tokenizer, chat_prompt_ids

CHECKPOINT_DIR = Path(__file__).parent / "checkpoint"
LOSS_FIGURE = Path(__file__).resolve().parents[2] / "docs" / "images" / "demo-loss.png"
# Training draws items from seeds >= TRAIN_SEED_BASE; evaluation uses seeds below it.
TRAIN_SEED_BASE = 1_000_000
DEFAULT_MIX = {"sudoku6": 0.45, "sudoku": 0.35, "pets": 0.2}
# Difficulty of training items; uniqueness checks cost more than a training step and a rare
# second solution is harmless, so training puzzles skip them.
TRAIN_DIFFICULTY = {
    "sudoku": {"blanks": (16, 42), "unique": False},
    "sudoku6": {"blanks": (6, 26), "unique": False},
}


def parse_mix(text: str) -> dict[str, float]:
    """``sudoku6=0.45,sudoku=0.35,pets=0.2`` -> task weights (task names checked)."""
    mix = {}
    for part in text.split(","):
        name, _, weight = part.partition("=")
        if name.strip() not in TASKS:
            raise argparse.ArgumentTypeError(
                f"unknown task {name.strip()!r} in --mix; tasks: {', '.join(TASKS)}")
        mix[name.strip()] = float(weight)
    return mix


def sample_items(rng: random.Random, batch_size: int, mix: dict[str, float], difficulty: dict):
    tasks = rng.choices(list(mix), weights=list(mix.values()), k=batch_size)
    return [
        (name, TASKS[name].generate(1, TRAIN_SEED_BASE + rng.getrandbits(40),
                                    **difficulty.get(name, {}))[0])
        for name in tasks
    ]


def encode_batch(tokenizer, items, canvas_length: int):
    """Left-padded prompt ids + mask, and clean canvases: answer, eos, then pad."""
    prompts = [chat_prompt_ids(tokenizer, TASKS[name].prompt(item)) for name, item in items]
    width = max(len(p) for p in prompts)
    pad, eos = tokenizer.pad_token_id, tokenizer.eos_token_id
    prompt_ids = torch.full((len(items), width), pad, dtype=torch.long)
    prompt_mask = torch.zeros((len(items), width), dtype=torch.long)
    canvas = torch.full((len(items), canvas_length), pad, dtype=torch.long)
    for row, (ids, (name, item)) in enumerate(zip(prompts, items, strict=False)):
        prompt_ids[row, width - len(ids):] = torch.tensor(ids)
        prompt_mask[row, width - len(ids):] = 1
        answer_ids = tokenizer(TASKS[name].target(item), add_special_tokens=False)["input_ids"]
        answer_ids = [*answer_ids, eos]
        assert len(answer_ids) <= canvas_length, "answer does not fit the canvas"
        canvas[row, : len(answer_ids)] = torch.tensor(answer_ids)
    return prompt_ids, prompt_mask, canvas


def learning_rate(progress: float, peak: float, warmup: float = 0.03) -> float:
    """Linear warm-up over the first 3% of training, then cosine decay to 10% of the peak."""
    if progress < warmup:
        return peak * max(progress, 0.002) / warmup
    decay = (progress - warmup) / (1 - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, decay))))


def save_checkpoint(model, tokenizer, out_dir: Path, **generation):
    """Weights, config, tokenizer and the `generate` defaults (``generation`` overrides them)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model.generation_config = generation_config(
        tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id, **generation
    )
    model.save_pretrained(out_dir)  # safetensors + config.json + generation_config.json
    tokenizer.save_pretrained(out_dir)


def write_loss_figure(csv_paths: list[Path], figure_path: Path) -> bool:
    """Render the loss curve of one or more consecutive stages (their CSVs, in order).

    matplotlib is a training-only tool, not a dgviz dependency.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(f"matplotlib not installed: loss curve left in {csv_paths[-1]}")
        return False
    rows, offset, stage_starts = [], 0, []
    for path in csv_paths:
        with open(path) as handle:
            stage = list(csv.DictReader(handle))
        stage_starts.append(offset)
        rows += [{**r, "step": int(r["step"]) + offset} for r in stage]
        offset = rows[-1]["step"] + 1 if rows else offset
    steps = [r["step"] for r in rows]
    fig, ax = plt.subplots(figsize=(7, 3.6), dpi=120)
    window = 50
    for key, label in (("denoise", "denoising CE (decoder)"), ("ar", "autoregressive CE (encoder)"),
                       ("balance", "load balancing (1 = balanced)")):
        values = [float(r[key]) for r in rows]
        smooth = [sum(values[max(0, i - window + 1): i + 1]) / (i + 1 - max(0, i - window + 1))
                  for i in range(len(values))]
        ax.plot(steps, smooth, label=label)
    ax.set_yscale("log")
    if len(stage_starts) > 1:
        for number, start in enumerate(stage_starts, 1):
            if number > 1:
                ax.axvline(start, color="grey", linestyle=":", linewidth=1)
            ax.annotate(f"stage {number}", (start, 1), xycoords=("data", "axes fraction"),
                        xytext=(2, -4), textcoords="offset points", va="top", fontsize=7,
                        rotation=90, color="grey")
    ax.set_xlabel("training step (batch of 64)")
    ax.set_ylabel(f"loss ({window}-step mean)")
    ax.set_title("dgviz demo model: training loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center right")
    fig.tight_layout()
    figure_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(figure_path)
    plt.close(fig)
    return True


def train(
    steps: int | None,
    out_dir: Path,
    seed: int = 0,
    threads: int = 1,
    batch_size: int = 64,
    lr: float = 2e-3,
    balance_weight: float = 0.05,
    pad_weight: float = 0.1,
    hidden_size: int = 64,
    num_layers: int = 4,
    num_heads: int = 2,
    minutes: float | None = None,
    save_every_minutes: float = 10.0,
    log_every: int = 10,
    figure: Path | None = LOSS_FIGURE,
    model=None,
    quiet: bool = False,
    init: Path | None = None,
    mix: dict[str, float] | None = None,
    difficulty: dict | None = None,
):
    """Train and save; returns the list of logged loss rows. `minutes` caps the wall time."""
    from transformers import DiffusionGemmaForBlockDiffusion

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = random.Random(seed)
    mix = mix or DEFAULT_MIX
    difficulty = TRAIN_DIFFICULTY if difficulty is None else difficulty
    generator = torch.Generator().manual_seed(seed)
    tokenizer = build_tokenizer()
    if model is None and init is not None:  # continue training a saved checkpoint
        model = DiffusionGemmaForBlockDiffusion.from_pretrained(init, local_files_only=True)
    if model is None:
        model = DiffusionGemmaForBlockDiffusion(
            build_config(hidden_size, num_layers, num_heads=num_heads))
    model.train()
    canvas_length = model.config.canvas_length
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, betas=(0.9, 0.98), weight_decay=0.01)
    recorder = RouterRecorder([layer.router for layer in model.model.decoder.layers])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path = out_dir.parent / f"{out_dir.name}-loss.csv"
    rows = []
    start = last_save = time.time()
    with open(csv_path, "w", newline="") as handle:
        columns = ["step", "seconds", "lr", "total", "denoise", "ar", "balance"]
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        # `steps` sets the schedule, or only caps the count under a wall-time budget.
        for step in itertools.count():
            if steps is not None and step >= steps:
                break
            elapsed = time.time() - start
            # With a wall-time budget the schedule follows the clock, so the LR still decays.
            progress = elapsed / (60 * minutes) if minutes is not None else step / steps
            if progress >= 1:
                break
            for group in optimizer.param_groups:
                group["lr"] = learning_rate(progress, lr)
            items = sample_items(rng, batch_size, mix, difficulty)
            prompt_ids, prompt_mask, canvas = encode_batch(tokenizer, items, canvas_length)
            losses = training_losses(
                model, prompt_ids, prompt_mask, canvas, recorder, generator,
                self_condition=rng.random() < 0.5, pad_weight=pad_weight,
            )
            total = losses["denoise"] + losses["ar"] + balance_weight * losses["balance"]
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            row = {
                "step": step, "seconds": round(elapsed, 1), "lr": optimizer.param_groups[0]["lr"],
                "total": total.item(), **{k: v.item() for k, v in losses.items()},
            }
            rows.append(row)
            writer.writerow(row)
            if step % log_every == 0:
                handle.flush()
                if not quiet:
                    print(
                        f"step {step:5d} {elapsed:7.0f}s lr {row['lr']:.2e} "
                        f"total {row['total']:.4f} denoise {row['denoise']:.4f} "
                        f"ar {row['ar']:.4f} balance {row['balance']:.3f}",
                        flush=True,
                    )
            if time.time() - last_save > 60 * save_every_minutes:
                save_checkpoint(model, tokenizer, out_dir)
                last_save = time.time()
    recorder.remove()
    model.eval()
    save_checkpoint(model, tokenizer, out_dir)
    meta = {"steps_done": len(rows), "wall_seconds": round(time.time() - start, 1), "seed": seed,
            "threads": threads, "batch_size": batch_size, "lr": lr,
            "balance_weight": balance_weight, "pad_weight": pad_weight,
            "mix": mix, "difficulty": difficulty, "init": str(init) if init else None,
            "minutes": minutes}
    (out_dir.parent / f"{out_dir.name}-train.json").write_text(json.dumps(meta, indent=2))
    if figure is not None:
        previous = Path(init).parent / f"{Path(init).name}-loss.csv" if init else None
        stages = [previous, csv_path] if previous is not None and previous.exists() else [csv_path]
        write_loss_figure(stages, figure)
    return rows


def finish_checkpoint(source: Path, out_dir: Path, t_max: float | None) -> None:
    """Copy a trained checkpoint to ``out_dir`` with its `generate` defaults set (``t_max``)."""
    from transformers import DiffusionGemmaForBlockDiffusion

    model = DiffusionGemmaForBlockDiffusion.from_pretrained(source, local_files_only=True)
    save_checkpoint(model.eval(), build_tokenizer(), Path(out_dir),
                    **({} if t_max is None else {"t_max": t_max}))


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=None,
                        help="optimizer steps (sets the schedule unless --minutes is given; "
                             "with --minutes, an optional cap)")
    parser.add_argument("--minutes", type=float, default=None,
                        help="wall-time budget; the LR schedule and curriculum follow the clock")
    parser.add_argument("--threads", type=int, default=1,
                        help="1 beats 2 on a shared 2-core machine (two-thread barriers stall)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--balance-weight", type=float, default=0.05)
    parser.add_argument("--pad-weight", type=float, default=0.1,
                        help="weight of the padding after <eos> relative to answer tokens")
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=2, help="attention heads per layer")
    parser.add_argument("--init", type=Path, default=None,
                        help="continue from this checkpoint instead of a fresh model")
    parser.add_argument("--mix", type=parse_mix, default=DEFAULT_MIX,
                        help="task weights, e.g. sudoku6=0.45,sudoku=0.35,pets=0.2")
    parser.add_argument("--blanks", type=int, nargs=2, metavar=("LOW", "HIGH"),
                        default=TRAIN_DIFFICULTY["sudoku"]["blanks"],
                        help="blank cells of training sudokus (inclusive range)")
    parser.add_argument("--out", type=Path, default=CHECKPOINT_DIR)
    parser.add_argument("--figure", type=Path, default=LOSS_FIGURE)
    parser.add_argument("--finish", type=Path, metavar="TRAINED", default=None,
                        help="do not train: copy the checkpoint TRAINED to --out with its "
                             "generate defaults (--t-max)")
    parser.add_argument("--t-max", type=float, default=None,
                        help="the checkpoint's default starting temperature (library: 0.8)")
    args = parser.parse_args(argv)
    if args.finish is not None:
        finish_checkpoint(args.finish, args.out, args.t_max)
        print(f"checkpoint {args.finish} -> {args.out} (t_max {args.t_max})")
        return
    if args.steps is None and args.minutes is None:
        parser.error("give --minutes (a wall-time budget) or --steps")
    rows = train(
        steps=args.steps, out_dir=args.out, seed=args.seed, threads=args.threads,
        batch_size=args.batch_size, lr=args.lr, balance_weight=args.balance_weight,
        pad_weight=args.pad_weight,
        hidden_size=args.hidden_size, num_layers=args.layers, num_heads=args.heads,
        minutes=args.minutes,
        figure=args.figure, init=args.init, mix=args.mix,
        difficulty={**TRAIN_DIFFICULTY,
                    "sudoku": {**TRAIN_DIFFICULTY["sudoku"], "blanks": tuple(args.blanks)}},
    )
    print(f"trained {len(rows)} steps; checkpoint in {args.out}")


if __name__ == "__main__":
    main()
