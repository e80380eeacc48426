"""Render docs/images/gallery-*.png (every dgviz.plots figure) and gallery-canvas.gif.

    python scripts/render_gallery.py [--model auto|demo|tiny] [--out docs/images] [--concepts]

`--concepts` also renders the four concept-*.png of docs/concepts.md (sampler explainer, lock-in
map, convergence curve, top-1 expert map) from a second run of the same prompt that stops at
`<eos>` as usual, so it is one canvas.

`auto` uses the trained demo model (`dgviz.demo.demo_model`) when its checkpoint is there, else
the tiny untrained model from `dgviz.testing`. Prints which. Needs kaleido and a Chrome/Chromium.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import plotly.io as pio

import dgviz
from dgviz import plots

# (file stem, builder): every figure dgviz.plots makes, rendered WIDTH px wide at the height
# the figure sets itself (what a notebook shows).
WIDTH = 1000
FIGURES = [
    ("confidence", lambda t: plots.confidence_heatmap(t)),
    ("entropy", lambda t: plots.entropy_heatmap(t)),
    ("lock-in", lambda t: plots.lock_in_map(t)),
    ("convergence", lambda t: plots.convergence_curve(t)),
    ("accepted", lambda t: plots.accepted_per_step(t)),
    ("sampler", lambda t: plots.sampler_explainer(t, plots._explainer_step(t, 0))),
    ("expert-weights", lambda t: plots.expert_weights(t, int(t.canvas_steps(0)[-1]), 0)),
    ("expert-load", lambda t: plots.expert_load(t)),
    ("expert-churn", lambda t: plots.expert_churn(t)),
    ("expert-churn-position", lambda t: plots.expert_churn(t, by="position")),
    ("router-entropy", lambda t: plots.router_entropy(t)),
    ("expert-map", lambda t: plots.expert_map(t, layer=0)),
    ("encoder-routing", lambda t: plots.encoder_routing(t)),
]

# (file stem, builder): the docs/concepts.md figures, from a one-canvas run.
CONCEPTS = [
    ("sampler", lambda t: plots.sampler_explainer(t, plots._explainer_step(t, 0))),
    ("lock-in", lambda t: plots.lock_in_map(t)),
    ("convergence", lambda t: plots.convergence_curve(t)),
    ("expert-map", lambda t: plots.expert_map(t, layer=0)),
]


def record_trace(which: str, checkpoint: Path | None, task: str, canvases: int
                 ) -> tuple[dgviz.Trace, str]:
    if which in ("auto", "demo"):
        try:
            from dgviz.demo import demo_model, get_task

            model, tok = demo_model(task, checkpoint=checkpoint)
        except (ImportError, FileNotFoundError) as err:
            if which == "demo":
                raise
            print(f"demo model unavailable ({err}); using the tiny untrained model")
        else:
            module = get_task(task)
            item = module.generate(1, seed=3)[0]
            chat = [{"role": "user", "content": module.prompt(item)}]
            length = model.config.canvas_length
            # The answer fits one canvas; to show the multi-canvas timeline, switch off the
            # end-of-sequence stop so generation goes on into the next canvas(es).
            extra = {"eos_token_id": None} if canvases > 1 else {}
            trace = dgviz.record(model, tok, chat, seed=0, max_new_tokens=canvases * length,
                                 **extra)
            where = f" from {checkpoint}" if checkpoint else ""
            return trace, (
                f"demo model{where} ({task} task, {canvases} canvases"
                + (", eos_token_id=None" if extra else "") + ")"
            )
    from dgviz.testing import tiny_model

    model, tok = tiny_model(canvas_length=32)
    trace = dgviz.record(model, tok, "the cat sat on the mat", seed=0, max_new_tokens=96,
                         max_denoising_steps=12)
    return trace, "tiny untrained model (dgviz.testing.tiny_model(canvas_length=32))"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["auto", "demo", "tiny"], default="auto")
    parser.add_argument("--checkpoint", type=Path, default=None,
                        help="demo checkpoint folder (default: the shipped one)")
    parser.add_argument("--task", default="sudoku", help="demo task to prompt with")
    parser.add_argument("--canvases", type=int, default=2, help="canvases to generate (demo)")
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    parser.add_argument("--save-trace", type=Path, default=None, help="also save the trace")
    parser.add_argument("--concepts", action="store_true",
                        help="also render concept-*.png (docs/concepts.md) from a one-canvas run")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(1)  # tiny models: one thread is fastest, and runs repeat exactly
    trace, label = record_trace(args.model, args.checkpoint, args.task, args.canvases)
    print(f"recorded {trace!r} with the {label}")
    if args.save_trace:
        trace.save(args.save_trace)
    args.out.mkdir(parents=True, exist_ok=True)
    figs, paths = [], []
    jobs = [("gallery", trace, FIGURES)]
    if args.concepts:
        one, label = record_trace(args.model, args.checkpoint, args.task, 1)
        print(f"recorded {one!r} with the {label} for the concept figures")
        jobs.append(("concept", one, CONCEPTS))
    for prefix, tr, specs in jobs:
        for stem, build in specs:
            figs.append(build(tr))
            paths.append(args.out / f"{prefix}-{stem}.png")
    t = time.perf_counter()
    # one browser session; each figure at its own height
    pio.write_images(figs, paths, width=[WIDTH] * len(figs),
                     height=[fig.layout.height for fig in figs], scale=1)
    print(f"wrote {len(paths)} PNGs in {time.perf_counter() - t:.1f} s")
    gif = plots.canvas_gif(trace, args.out / "gallery-canvas.gif")
    print(f"wrote {gif}")


if __name__ == "__main__":
    main()
