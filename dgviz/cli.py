"""The `dgviz` command line: record runs, export traces, and the demo.

    dgviz demo [--out DIR]                      record the demo model on its tasks, write a report
    dgviz record MODEL_DIR PROMPT [--out FILE]  record a prompt to a trace file
    dgviz export TRACE [--html FILE] [--gif FILE]
    dgviz info [TRACE] [--short]                what a trace holds; without one, what is
                                                installed here and what works
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

DEMO_TASKS = ("sudoku", "sudoku6", "pets")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dgviz", description="See text diffusion.")
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="record the shipped demo model and write an offline report")
    demo.add_argument("--out", type=Path, default=Path("dgviz-demo"), help="output folder")
    demo.add_argument("--tasks", nargs="+", default=list(DEMO_TASKS), help="demo tasks to run")
    demo.add_argument("--seed", type=int, default=0, help="sampling seed")
    demo.add_argument("--item-seed", type=int, default=2026, help="seed that picks the task items")

    rec = sub.add_parser("record", help="record one prompt to a trace file")
    rec.add_argument("model", help="a DiffusionGemma checkpoint directory (or hub id, if cached)")
    rec.add_argument("prompt", help="the prompt text")
    rec.add_argument("--chat", action="store_true", help="wrap the prompt as a user chat turn")
    rec.add_argument("--out", type=Path, default=Path("run.dgtrace"))
    rec.add_argument("--html", type=Path, help="also write an offline HTML replay here")
    rec.add_argument("--seed", type=int, default=0)
    rec.add_argument("--max-new-tokens", type=int)
    rec.add_argument("--steps", type=int, help="max_denoising_steps")

    exp = sub.add_parser("export", help="export a trace to offline HTML and/or GIF")
    exp.add_argument("trace", type=Path)
    exp.add_argument("--html", type=Path)
    exp.add_argument("--gif", type=Path)

    info = sub.add_parser("info", help="summarise a trace file, or (without one) the set-up")
    info.add_argument("trace", type=Path, nargs="?")
    info.add_argument("--short", action="store_true", help="one line of versions")

    args = parser.parse_args(argv)
    try:
        command = {"demo": _demo, "record": _record, "export": _export, "info": _info}[args.command]
        return command(args)
    except (OSError, ValueError, TypeError) as err:  # a missing file, a bad argument or trace
        print(f"dgviz {args.command}: {err}", file=sys.stderr)
        return 2


def _demo(args: argparse.Namespace) -> int:
    import dgviz
    from dgviz.demo import demo_model, get_task

    args.out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.tasks:
        task = get_task(name)
        model, tokenizer = demo_model(name)
        item = task.generate(1, seed=args.item_seed)[0]
        chat = [{"role": "user", "content": task.prompt(item)}]
        start = time.perf_counter()
        trace = dgviz.record(model, tokenizer, chat, seed=args.seed)
        seconds = time.perf_counter() - start
        trace.save(args.out / f"{name}.dgtrace")
        trace.to_html(args.out / f"{name}.html")
        score = task.score(item, trace.text[0])
        rows.append({
            "task": name,
            "score": score,
            "steps": trace.num_steps,
            "forward_passes": trace.forward_passes(),
            "tokens_per_forward": round(float(trace.tokens_per_forward[0]), 2),
            "flips": int(trace.flips[0].sum()),
            "seconds": round(seconds, 2),
        })
        print(f"{name:>10}: score {score:.2f}, {trace.num_steps} denoising steps, "
              f"{trace.flips[0].sum()} draft flips, {seconds:.2f} s "
              f"-> {args.out / (name + '.html')}")
        print(f"{'':>10}  answer: {trace.text[0]!r}")
    (args.out / "summary.json").write_text(json.dumps(rows, indent=2))
    _write_index(args.out / "index.html", rows)
    print(f"report: {args.out / 'index.html'} (open it in a browser; it works offline)")
    return 0


def _write_index(path: Path, rows: list[dict]) -> None:
    """A small report page. It holds only task names and numbers, never model text."""
    from html import escape

    cells = "".join(
        "<tr>"
        + f'<td><a href="{escape(r["task"])}.html">{escape(r["task"])}</a></td>'
        + "".join(f"<td>{escape(str(r[k]))}</td>" for k in
                  ("score", "steps", "forward_passes", "tokens_per_forward", "flips", "seconds"))
        + "</tr>"
        for r in rows
    )
    path.write_text(
        "<!doctype html><meta charset=utf-8><title>dgviz demo</title>"
        "<style>body{font:15px system-ui;margin:2em}td,th{padding:4px 12px;text-align:right}"
        "td:first-child,th:first-child{text-align:left}</style>"
        "<h1>dgviz demo</h1><p>One item of each task, written by the tiny DiffusionGemma shipped "
        "with dgviz (score 1 = exact answer); click a task to replay its denoising steps.</p>"
        "<table><tr><th>task</th><th>score</th><th>steps</th><th>forward passes</th>"
        f"<th>tokens / forward</th><th>draft flips</th><th>seconds</th></tr>{cells}</table>"
    )


def _record(args: argparse.Namespace) -> int:
    from transformers import AutoTokenizer, DiffusionGemmaForBlockDiffusion

    import dgviz

    tokenizer = AutoTokenizer.from_pretrained(args.model)
    model = DiffusionGemmaForBlockDiffusion.from_pretrained(args.model).eval()
    prompt = [{"role": "user", "content": args.prompt}] if args.chat else args.prompt
    kwargs = {}
    if args.max_new_tokens is not None:  # checked by record (0 is an error, not "default")
        kwargs["max_new_tokens"] = args.max_new_tokens
    if args.steps is not None:
        kwargs["max_denoising_steps"] = args.steps
    trace = dgviz.record(model, tokenizer, prompt, seed=args.seed, **kwargs)
    trace.save(args.out)
    print(f"{trace!r} -> {args.out}")
    if args.html:
        trace.to_html(args.html)
        print(f"replay -> {args.html}")
    return 0


def _export(args: argparse.Namespace) -> int:
    import dgviz

    if not (args.html or args.gif):
        raise ValueError("say what to write: --html FILE and/or --gif FILE")
    trace = dgviz.load_trace(args.trace)
    if args.html:
        print(f"html -> {trace.to_html(args.html)}")
    if args.gif:
        print(f"gif -> {trace.to_gif(args.gif)}")
    return 0


def _info(args: argparse.Namespace) -> int:
    import dgviz

    if args.trace is None:
        return _environment(short=args.short)
    trace = dgviz.load_trace(args.trace)
    print(repr(trace))
    print("settings:", json.dumps(trace.settings, default=str))
    print("model:", json.dumps(trace.meta.get("model", {})))
    print("versions:", json.dumps(trace.meta.get("versions", {})))
    for b, text in enumerate(trace.text):
        print(f"row {b}: {trace.forward_passes(b)} forward passes, "
              f"{float(trace.tokens_per_forward[b]):.2f} tokens/forward: {text!r}")
    return 0


def _environment(short: bool) -> int:
    """What is installed and what works: the recorder, the diffusers path, exports, GPUs."""
    import importlib.util
    import shutil
    from importlib.metadata import PackageNotFoundError, version

    def installed(name: str) -> str | None:
        try:
            return version(name)
        except PackageNotFoundError:
            return None

    import dgviz

    names = ("torch", "transformers", "diffusers", "accelerate", "anywidget", "plotly",
             "pillow", "kaleido")
    versions = {name: installed(name) for name in names}
    if short:
        print(", ".join(f"{k} {v}" for k, v in {"dgviz": dgviz.__version__, **versions}.items()
                        if v is not None))
        return 0
    print(f"dgviz {dgviz.__version__}")
    for name, v in versions.items():
        print(f"  {name:13} {v or 'not installed'}")
    checks = []
    has_model = importlib.util.find_spec("transformers.models.diffusion_gemma") is not None
    checks.append(("record DiffusionGemma (transformers)", has_model,
                   "" if has_model else "this transformers has no diffusion_gemma: upgrade it"))
    from dgviz.recording.diffusers_loop import diffusers_incompatibility

    problem = diffusers_incompatibility()
    checks.append(("record DiffusionGemmaPipeline (diffusers)", problem is None, problem or ""))
    checks.append(("Trace.to_gif (Pillow)", versions["pillow"] is not None,
                   "" if versions["pillow"] else "pip install pillow"))
    kaleido_ok = versions["kaleido"] is not None
    checks.append(("static figure export (kaleido)", kaleido_ok,
                   "" if kaleido_ok else "pip install 'dgviz[export]'"))
    chromium = shutil.which("chromium") or shutil.which("google-chrome")
    checks.append(("a browser for kaleido and the browser tests", chromium is not None,
                   chromium or "apt-get install chromium"))
    import torch

    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    checks.append((f"CUDA GPUs: {gpus}", gpus > 0, "" if gpus else "CPU only"))
    for what, ok, note in checks:
        print(f"  [{'x' if ok else ' '}] {what}" + (f": {note}" if note else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
