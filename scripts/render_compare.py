"""Render docs/images/compare-*.png: the sweep of notebooks/03_compare_schedules.ipynb.

    OMP_NUM_THREADS=1 python scripts/render_compare.py [--blanks 40] [--out docs/images]

Records the notebook's twelve schedules on one Sudoku (puzzle seed 3, 40 blanks by default:
hard enough for the 9x9 specialist that the schedules differ; demo model, seeds 0-7), prints
`comparison.table` as a Markdown table (for docs/compare.md), and writes

- compare-pareto.png, compare-convergence.png, compare-convergence-prediction.png
  (`dgviz.plots.save_figure`: needs kaleido and a Chrome/Chromium), and
- compare-view.png: a screenshot of the offline view (`Comparison.to_html`) of the seed-0 runs
  after ``--passes`` forward passes, the prompt and legend shown for the first run only
  (Python playwright driving /usr/bin/chromium; no
  ``playwright install``).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

import dgviz
from dgviz.comparison import sweep
from dgviz.demo import sudoku
from dgviz.plots import save_figure
from dgviz.schedules import presets

NAMES = [
    "default", "few steps", "tight bound", "loose bound", "cold", "hot",
    "fixed 2/step", "cosine", "ddim", "ddim + corrector", "block refinement",
    "block refinement, 4 steps",
]
CHROMIUM = "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def markdown_table(comparison) -> str:
    """`comparison.table` in the layout of docs/compare.md."""
    def num(x: float, digits: int = 3) -> str:
        return f"{round(float(x), digits):g}"

    rows = ["| schedule | passes / canvas | tokens / forward | wall s | final conf. | "
            "steps to 50 / 90 / 100 % | agreement | score |",
            "|---|---|---|---|---|---|---|---|"]
    for label, r in comparison.table.iterrows():
        rows.append(
            f"| {label} | {num(r.forward_passes_per_canvas)} | {num(r.tokens_per_forward, 2)} | "
            f"{r.wall_seconds:.3f} | {r.mean_final_confidence:.3f} | {num(r.steps_to_50)} / "
            f"{num(r.steps_to_90)} / {num(r.steps_to_100)} | {r.agreement:.3f} | {r.score:.3f} |")
    return "\n".join(rows)


def screenshot_view(comparison, path: Path, passes: int, width: int) -> None:
    """The offline view of the seed-0 runs, moved to ``passes`` forward passes."""
    from playwright.sync_api import expect, sync_playwright

    seed0 = [i for i, run in enumerate(comparison) if run.seed == 0]
    html = comparison.to_html(Path(tempfile.mkdtemp()) / "compare.html", runs=seed0,
                              sync_mode="forward_passes")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        page = browser.new_page(viewport={"width": width, "height": 400}, device_scale_factor=1.5)
        page.goto(html.as_uri())
        views = page.locator(".dgv-root")
        expect(views).to_have_count(len(seed0), timeout=30_000)
        expect(views.nth(0)).to_have_attribute("data-sync-mode", "forward_passes")
        # slider value k = the (k+1)-th forward pass, as a user moves it
        views.nth(0).locator(".dgv-slider").evaluate(
            "(el, v) => { el.value = String(v);"
            " el.dispatchEvent(new Event('input', {bubbles: true})); }", passes - 1)
        expect(views.nth(0).locator(".dgv-steplabel")).to_contain_text(f"forward pass {passes}/")
        # For a readable docs image: the prompt (the same in every run) and the colour legend
        # are shown once, in the first run only.
        page.evaluate("document.querySelectorAll('.dgv-root').forEach((root, i) => { if (i)"
                      " root.querySelectorAll('.dgv-context, .dgv-legend')"
                      ".forEach(el => { el.style.display = 'none'; }); })")
        page.screenshot(path=str(path), full_page=True)
        browser.close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blanks", type=int, default=40,
                        help="Sudoku blanks (at 30 the specialist solves it with almost every "
                        "schedule)")
    parser.add_argument("--puzzle-seed", type=int, default=3)
    parser.add_argument("--seeds", type=int, default=8, help="seeds 0..N-1 per schedule")
    parser.add_argument("--passes", type=int, default=4, help="forward passes in the view image")
    parser.add_argument("--out", type=Path, default=Path("docs/images"))
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    model, tokenizer = dgviz.demo_model("sudoku")
    item = sudoku.generate(1, seed=args.puzzle_seed, blanks=args.blanks)[0]
    prompt = [{"role": "user", "content": sudoku.prompt(item)}]
    schedules = {name: presets()[name] for name in NAMES}
    comparison = sweep(model, tokenizer, prompt, schedules, seeds=range(args.seeds),
                       score=lambda text: sudoku.score(item, text))
    print(markdown_table(comparison))
    print("Pareto front:", ", ".join(comparison.table.index[comparison.table.pareto]))

    out = args.out
    figures = [
        ("compare-pareto.png", comparison.pareto_figure(), 1000, 620),
        ("compare-convergence.png", comparison.convergence_figure(), 1000, 560),
        ("compare-convergence-prediction.png",
         comparison.convergence_figure(basis="prediction"), 1000, 560),
    ]
    for name, fig, width, height in figures:
        print("wrote", save_figure(fig, out / name, width=width, height=height, scale=2))
    screenshot_view(comparison, out / "compare-view.png", args.passes, width=1140)
    print("wrote", out / "compare-view.png")


if __name__ == "__main__":
    main()
