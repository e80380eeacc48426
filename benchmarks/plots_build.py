"""How long dgviz.plots takes to build every figure for a big synthetic trace.

The trace: 4 canvases x 256 positions x 48 steps (192 steps), 8 decoder layers with 16 experts
(top-2), an encoder that read a 64-token prompt and 3 canvases, top-5 alternatives. Arrays are
random, with the documented dtypes and shapes. Run:

    python benchmarks/plots_build.py [--repeat N] [--budget SECONDS] [--gif]

Prints each figure's build time (the best of N), the size of its plotly JSON (what a notebook
stores and a browser receives) and the total; exits 1 if the total build time exceeds
``--budget`` seconds (default 5 s, for 2 shared CPU cores). Building only: no rendering.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import dgviz
from dgviz import plots

CANVASES, LENGTH, STEPS_PER_CANVAS, LAYERS, EXPERTS, K_EXPERTS = 4, 256, 48, 8, 16, 2
VOCAB, TOP_K, PROMPT = 4096, 5, 64


def synthetic_trace(seed: int = 0) -> dgviz.Trace:
    rng = np.random.default_rng(seed)
    b, s, length = 1, CANVASES * STEPS_PER_CANVAS, LENGTH
    draft = rng.integers(0, VOCAB, (b, s, length), dtype=np.int32)
    # let drafts settle: from a random step on, each position keeps its canvas's final token
    for c in range(CANVASES):
        lo, hi = c * STEPS_PER_CANVAS, (c + 1) * STEPS_PER_CANVAS
        settle = rng.integers(lo, hi, (b, length))
        final = draft[:, hi - 1]
        steps = np.arange(lo, hi)[None, :, None]
        draft[:, lo:hi] = np.where(steps >= settle[:, None, :], final[:, None, :], draft[:, lo:hi])
    ids = np.argsort(rng.random((b, s, LAYERS, length, EXPERTS)), axis=-1)[..., :K_EXPERTS]
    w = np.sort(rng.random((b, s, LAYERS, length, K_EXPERTS)), axis=-1)[..., ::-1]
    w = w / w.sum(-1, keepdims=True)
    t_enc = PROMPT + (CANVASES - 1) * LENGTH
    enc_ids = np.argsort(rng.random((b, t_enc, LAYERS, EXPERTS)), axis=-1)[..., :K_EXPERTS]
    enc_w = rng.random((b, t_enc, LAYERS, K_EXPERTS))
    probs = rng.dirichlet(np.ones(TOP_K), (b, s, length)).astype(np.float32)
    return dgviz.Trace(
        canvas_in=rng.integers(0, VOCAB, (b, s, length)),
        sampled=rng.integers(0, VOCAB, (b, s, length)),
        draft=draft,
        accepted=rng.random((b, s, length)) < 0.3,
        confidence=rng.random((b, s, length)),
        entropy=rng.random((b, s, length)) * 3,
        topk_ids=rng.integers(0, VOCAB, (b, s, length, TOP_K)),
        topk_probs=-np.sort(-probs, axis=-1),
        active=np.ones((b, s), bool),
        stop=np.zeros((b, s), bool),
        step_canvas=np.repeat(np.arange(CANVASES), STEPS_PER_CANVAS),
        step_remaining=np.tile(np.arange(STEPS_PER_CANVAS, 0, -1), CANVASES),
        temperature=np.tile(np.linspace(0.8, 0.4, STEPS_PER_CANVAS), CANVASES),
        step_seconds=np.full(s, 0.05),
        prompt_ids=rng.integers(0, VOCAB, (b, PROMPT)),
        output_ids=draft[:, -1:].repeat(CANVASES, axis=1).reshape(b, -1)[:, : CANVASES * LENGTH],
        tokens_per_forward=np.array([CANVASES * LENGTH / s]),
        token_text={i: f"tok{i}" for i in range(VOCAB)},
        meta={"settings": {"entropy_bound": 0.1}, "num_experts": EXPERTS,
              "top_k_experts": K_EXPERTS},
        expert_ids=ids,
        expert_weights=w,
        router_entropy=rng.random((b, s, LAYERS, length)) * np.log(EXPERTS),
        encoder_expert_ids=enc_ids,
        encoder_expert_weights=enc_w,
        encoder_router_entropy=rng.random((b, t_enc, LAYERS)),
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=1, help="builds per figure (best kept)")
    parser.add_argument("--budget", type=float, default=5.0, help="seconds for all figures")
    parser.add_argument("--gif", action="store_true", help="also time canvas_gif (not budgeted)")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    trace = synthetic_trace()
    _ = trace.states, trace.lock_in, trace.flips  # derived arrays, computed once
    print(f"{trace!r}: made and derived in {time.perf_counter() - t0:.2f} s")
    mid = STEPS_PER_CANVAS // 2
    builders = {
        "confidence_heatmap": lambda: plots.confidence_heatmap(trace),
        "entropy_heatmap": lambda: plots.entropy_heatmap(trace),
        "lock_in_map": lambda: plots.lock_in_map(trace),
        "convergence_curve": lambda: plots.convergence_curve(trace),
        "accepted_per_step": lambda: plots.accepted_per_step(trace),
        "sampler_explainer": lambda: plots.sampler_explainer(trace, mid),
        "expert_weights": lambda: plots.expert_weights(trace, mid, layer=3),
        "expert_load": lambda: plots.expert_load(trace),
        "expert_churn (by step)": lambda: plots.expert_churn(trace),
        "expert_churn (by position)": lambda: plots.expert_churn(trace, by="position"),
        "router_entropy": lambda: plots.router_entropy(trace),
        "expert_map": lambda: plots.expert_map(trace, layer=3),
        "encoder_routing": lambda: plots.encoder_routing(trace),
        "confidence_heatmap (canvas 2)": lambda: plots.confidence_heatmap(trace, canvas=2),
    }
    total = 0.0
    print(f"{'figure':32s} {'build':>10s} {'JSON':>10s}")
    for name, build in builders.items():
        best = float("inf")
        for _ in range(max(1, args.repeat)):
            t = time.perf_counter()
            fig = build()
            best = min(best, time.perf_counter() - t)
        total += best
        size = len(fig.to_json()) / 1e6
        print(f"{name:32s} {best * 1000:7.1f} ms {size:7.2f} MB")
    print(f"{'total':32s} {total * 1000:7.1f} ms   (budget {args.budget:g} s)")
    if args.gif:
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            gif = plots.canvas_gif(trace, Path(tmp) / "run.gif")
            print(f"canvas_gif ({trace.num_steps} frames): {time.perf_counter() - t:.1f} s, "
                  f"{gif.stat().st_size / 1e6:.1f} MB (random tokens: every cell changes)")
    if total > args.budget:
        print("over budget", file=sys.stderr)
        sys.exit(1)

if __name__ == "__main__":
    main()
