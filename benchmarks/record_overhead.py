"""How much does recording cost? Prints, from one process with interleaved runs:

- the median ratio of `dgviz.record` wall time to a plain `model.generate` (same seed, same
  settings; goal <= 1.05 on CPU),
- trace bytes per step, for two vocabulary sizes: the per-step arrays (recording reduces on the
  device, so these must not grow with the vocabulary) and the whole saved file (which also holds
  the text of every distinct token id seen: more distinct random tokens with a larger vocabulary,
  bounded by positions x steps, not by the vocabulary).

Ratios are also given as min/min (the least disturbed run of each kind) and as the median ratio
of process CPU time (`time.process_time`: the time this process ran, not the time it waited for a
core another job held), both robust to a busy machine.

It also counts, with torch's profiler, the aten operations recording adds per step and the host
syncs (`.item()`) it adds per run: on a GPU each operation is a kernel launch from Python and each
sync a wait for the device, so these counts carry over to a GPU where the CPU timings do not.

    python benchmarks/record_overhead.py [--repeats 9] [--threads 1] [--cases tiny256,tiny4096,demo]
                                         [--top-k 5] [--no-routing]

``--top-k`` and ``--no-routing`` are passed to `dgviz.record`: what recording fewer alternatives,
or no expert routing, saves.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import dgviz
from dgviz.demo import demo_model
from dgviz.testing import tiny_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cases", default="tiny256,tiny4096,demo",
                        help="comma-separated subset of tiny256, tiny4096, demo")
    parser.add_argument("--top-k", type=int, default=5, help="dgviz.record's top_k")
    parser.add_argument("--no-routing", action="store_true", help="dgviz.record(routing=False)")
    args = parser.parse_args()
    options = {"top_k": args.top_k, "routing": not args.no_routing}
    torch.set_num_threads(args.threads)

    gen = {"max_new_tokens": 512, "max_denoising_steps": 24}
    print(f"tiny: untrained DiffusionGemma (canvas 256, hidden 64, 2 layers, 8 experts top-2), "
          f"{gen}; demo: the shipped model on a 40-blank Sudoku with its defaults; "
          f"{args.threads} thread(s), {args.repeats} interleaved pairs; record options {options}")
    print(f"{'model':>10} {'vocab':>6} {'plain s':>9} {'recorded s':>11} {'median ratio':>13} "
          f"{'min/min':>8} {'CPU ratio':>10} {'steps':>6} {'array B/step':>13} "
          f"{'file B/step':>12} {'ops/step':>9} {'syncs':>6}")
    wanted = args.cases.split(",")
    cases = [(f"tiny {v}", lambda v=v: tiny_model(vocab_size=v, canvas_length=256, hidden_size=64),
              torch.tensor([[4, 5, 6, 7, 8, 9, 10, 11]]), gen) for v in (256, 4096)
             if f"tiny{v}" in wanted]
    if "demo" in wanted:
        cases.append(("demo", demo_model, _demo_prompt(), {}))  # the shipped model, its defaults
    for name, load, ids, gen in cases:
        model, tok = load()
        vocab = model.config.text_config.vocab_size
        dgviz.record(model, tok, ids, seed=0, **options, **gen)  # warm-up both paths
        plain_times, recorded_times, ratios, cpu_ratios = [], [], [], []
        for i in range(args.repeats):
            torch.manual_seed(i)
            t0, c0 = time.perf_counter(), time.process_time()
            model.generate(ids, **gen)
            plain, plain_cpu = time.perf_counter() - t0, time.process_time() - c0
            t0, c0 = time.perf_counter(), time.process_time()
            trace = dgviz.record(model, tok, ids, seed=i, **options, **gen)
            recorded, recorded_cpu = time.perf_counter() - t0, time.process_time() - c0
            plain_times.append(plain)
            recorded_times.append(recorded)
            ratios.append(recorded / plain)
            cpu_ratios.append(recorded_cpu / plain_cpu)
        with tempfile.TemporaryDirectory() as tmp:
            size = trace.save(Path(tmp) / "t.dgtrace").stat().st_size
        per_step = sum(
            a.nbytes for a in vars(trace).values()
            if isinstance(a, np.ndarray) and a.ndim >= 2 and a.shape[1] == trace.num_steps
        )
        print(f"{name:>10} {vocab:>6} {statistics.median(plain_times):>9.3f} "
              f"{statistics.median(recorded_times):>11.3f} {statistics.median(ratios):>13.3f} "
              f"{min(recorded_times) / min(plain_times):>8.3f} "
              f"{statistics.median(cpu_ratios):>10.3f} {trace.num_steps:>6} "
              f"{per_step / trace.num_steps:>13.0f} {size / trace.num_steps:>12.0f} "
              f"{_added_ops(model, tok, ids, gen, options, trace.num_steps)}")


def _added_ops(model, tok, ids, gen, options, steps: int) -> str:
    """Aten operations recording adds per step, and host syncs it adds per run."""
    from torch.profiler import ProfilerActivity, profile

    def count(run):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            run()
        events = prof.key_averages()
        return (sum(e.count for e in events),
                sum(e.count for e in events if e.key == "aten::_local_scalar_dense"))

    torch.manual_seed(0)
    plain = count(lambda: model.generate(ids, **gen))
    recorded = count(lambda: dgviz.record(model, tok, ids, seed=0, **options, **gen))
    return f"{(recorded[0] - plain[0]) / steps:>9.1f} {recorded[1] - plain[1]:>6}"


def _demo_prompt() -> torch.Tensor:
    from dgviz.demo import sudoku

    _, tok = demo_model()
    chat = [{"role": "user", "content": sudoku.prompt(sudoku.generate(1, seed=5, blanks=40)[0])}]
    return tok.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt",
                                   return_dict=True)["input_ids"]


if __name__ == "__main__":
    main()
