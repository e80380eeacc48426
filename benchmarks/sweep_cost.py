"""Does a sweep of N schedules cost about N single runs? Prints the ratio.

In one process, interleaved: a `dgviz.comparison.sweep` over N schedules (one seed, progress bar
on, summary table computed), then the same N runs recorded one by one with `dgviz.record` (a
diffusers pipeline built by hand for the diffusers schedules). Ratio = sweep time / sum of the N
single-run times; the goal is ~1.0 (the sweep adds only bookkeeping). Also printed as min/min
(the least disturbed repeat of each), the same ratios in CPU time of this process (which other
processes disturb less than wall time), and the sweep's own bookkeeping (its time minus the wall
time of the runs it recorded), which a busy machine disturbs least.

    python benchmarks/sweep_cost.py [--repeats 5] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import dgviz
from dgviz.comparison import sweep
from dgviz.schedules import CosineSampler, FixedRateSampler, Schedule
from dgviz.testing import tiny_model


def schedules():
    import diffusers
    from transformers import EntropyBoundSamplerConfig

    no_stop = {"stability_threshold": None, "confidence_threshold": None}
    return {
        # label: (Schedule for the sweep, how to record it by hand)
        "8 steps": ({"max_denoising_steps": 8, **no_stop},
                    ("record", {"max_denoising_steps": 8, **no_stop})),
        "loose bound, 16 steps": (
            Schedule.transformers(steps=16, entropy_bound=4.0, adaptive_stop=False),
            ("record", {"max_denoising_steps": 16,
                        "sampler_config": EntropyBoundSamplerConfig(entropy_bound=4.0),
                        **no_stop})),
        "fixed 4/step": (
            Schedule.fixed_rate(tokens_per_step=4, adaptive_stop=False),
            ("record", {"max_denoising_steps": 16, "sampler": FixedRateSampler.factory(4),
                        **no_stop})),
        "cosine 12": (
            Schedule.cosine(steps=12, adaptive_stop=False),
            ("record", {"max_denoising_steps": 12, "sampler": CosineSampler.factory(), **no_stop})),
        "ddim 8": (Schedule.diffusers(scheduler=diffusers.DiscreteDDIMScheduler(), steps=8),
                   ("pipe", diffusers.DiscreteDDIMScheduler, {"num_inference_steps": 8})),
        "block refinement 8": (
            Schedule.diffusers(scheduler=diffusers.BlockRefinementScheduler(threshold=0.9),
                               steps=8),
            ("pipe", lambda: diffusers.BlockRefinementScheduler(threshold=0.9),
             {"num_inference_steps": 8})),
    }


single_cpu: list[float] = []  # CPU seconds of each set of single runs
sweep_cpu: list[float] = []


def single_runs(model, tok, prompt, plan, seed, length) -> tuple[float, int]:
    """Seconds for the N runs one by one, and the denoising steps they took."""
    import diffusers

    start, cpu = time.perf_counter(), time.process_time()
    steps = 0
    for how in plan.values():
        if how[0] == "record":
            kwargs = dict(how[1])
            trace = dgviz.record(model, tok, prompt, seed=seed, max_new_tokens=length,
                                 routing=False, **kwargs)
        else:
            _, make, kwargs = how
            pipe = diffusers.DiffusionGemmaPipeline(model=model, scheduler=make(), processor=tok)
            pipe.set_progress_bar_config(disable=True)
            trace = dgviz.record(pipe, None, prompt, seed=seed, gen_length=length, routing=False,
                                 **kwargs)
        steps += trace.num_steps
    single_cpu.append(time.process_time() - cpu)
    return time.perf_counter() - start, steps


def swept_steps_equal(a: int, b: int) -> bool:
    if a != b:
        raise AssertionError(f"the sweep took {a} steps, the single runs {b}: not the same work")
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    model, tok = tiny_model(canvas_length=64, hidden_size=64)
    prompt = [{"role": "user", "content": "the cat sat on the mat"}]
    length = 128
    table = schedules()
    sweep_input = {label: sched for label, (sched, _) in table.items()}
    plan = {label: how for label, (_, how) in table.items()}
    n = len(table)
    print(f"tiny DiffusionGemma (canvas 64, hidden 64), {length} new tokens, {n} schedules "
          f"({', '.join(table)}), {args.threads} thread(s), {args.repeats} interleaved repeats")
    # warm-up both paths
    warm = sweep(model, tok, prompt, sweep_input, seeds=[0], max_new_tokens=length, progress=False)
    _ = warm.summary
    single_runs(model, tok, prompt, plan, 0, length)

    sweeps, singles, ratios, overheads = [], [], [], []
    for i in range(args.repeats):
        seed = 100 + i

        def run_sweep(seed=seed):
            t0, cpu = time.perf_counter(), time.process_time()
            comp = sweep(model, tok, prompt, sweep_input, seeds=[seed], max_new_tokens=length)
            _ = comp.summary  # part of the cost of a sweep
            took = time.perf_counter() - t0
            sweep_cpu.append(time.process_time() - cpu)
            overheads.append(took - sum(r.wall_seconds for r in comp))
            return took, int(sum(r.trace.num_steps for r in comp))

        if i % 2:  # alternate which goes first
            (single, single_steps), (swept, sweep_steps) = single_runs(
                model, tok, prompt, plan, seed, length), run_sweep()
        else:
            (swept, sweep_steps), (single, single_steps) = run_sweep(), single_runs(
                model, tok, prompt, plan, seed, length)
        assert swept_steps_equal(sweep_steps, single_steps)
        sweeps.append(swept)
        singles.append(single)
        ratios.append(swept / single)
        print(f"repeat {i}: sweep {swept:.2f} s, {n} single runs {single:.2f} s ({sweep_steps} "
              f"steps each way), ratio {swept / single:.3f}")
    print(f"sweep of {n} schedules: median {statistics.median(sweeps):.2f} s; {n} single runs: "
          f"median {statistics.median(singles):.2f} s")
    print(f"ratio sweep / sum of single runs: median {statistics.median(ratios):.3f}, "
          f"min/min {min(sweeps) / min(singles):.3f}")
    cpu_ratios = [a / b for a, b in zip(sweep_cpu[-args.repeats:], single_cpu[-args.repeats:],
                                        strict=True)]
    print(f"CPU-time ratio (this process only, less disturbed by other processes): median "
          f"{statistics.median(cpu_ratios):.3f}, min/min "
          f"{min(sweep_cpu[-args.repeats:]) / min(single_cpu[-args.repeats:]):.3f}")
    print(f"sweep bookkeeping (sweep time minus its runs' own wall time, summary included): "
          f"median {1000 * statistics.median(overheads):.1f} ms per sweep")


if __name__ == "__main__":
    main()
