"""Does a live view cost O(steps)? Prints the time of a run that builds `StepEvent.snapshot()`
at every step (what `dgviz.show` does) next to the same run without, for growing run lengths.

The snapshot of step s is a view of the steps so far, so the extra cost per step must not grow
with s: the ratio "with snapshots / without" stays flat as the run gets longer (before the step
buffers it grew with the run: 7.5 s vs 2.3 s at 384 steps). Interleaved, median of repeats.

    python benchmarks/live_snapshots.py [--repeats 3] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import dgviz
from dgviz.testing import tiny_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = tiny_model(canvas_length=64)
    ids = torch.tensor([[4, 5, 6, 7]])
    print(f"tiny DiffusionGemma, canvas 64, 48 steps a canvas; {args.threads} thread(s), "
          f"median of {args.repeats} interleaved repeats")
    print(f"{'steps':>6} {'plain s':>8} {'snapshots s':>12} {'ratio':>6} {'ms/snapshot':>12}")
    for canvases in (1, 2, 4, 8):
        gen = {"max_new_tokens": 64 * canvases, "max_denoising_steps": 48,
               "stability_threshold": None, "confidence_threshold": None}  # every step runs
        plain, live = [], []
        for repeat in range(args.repeats):
            t = time.perf_counter()
            trace = dgviz.record(model, tok, ids, seed=repeat, **gen)
            plain.append(time.perf_counter() - t)
            t = time.perf_counter()
            dgviz.record(model, tok, ids, seed=repeat, on_step=lambda e: e.snapshot(), **gen)
            live.append(time.perf_counter() - t)
        p, s = statistics.median(plain), statistics.median(live)
        print(f"{trace.num_steps:>6} {p:>8.2f} {s:>12.2f} {s / p:>6.2f} "
              f"{1000 * (s - p) / trace.num_steps:>12.2f}")


if __name__ == "__main__":
    main()
