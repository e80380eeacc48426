"""Timeline widget render speed in Chromium: first paint, and the whole frame of a scrub step.

A synthetic trace of 4 canvases x 256 positions x 48 steps (192 steps), top-5 alternatives,
routing for 8 decoder layers x top-2 of 16 experts, and a 262,144-token vocabulary (re-noised
positions draw random ids, so the token-text table is large, as with the real model).

Measured in headless Debian chromium (Playwright, ``executable_path``), in one run, in two hosts:
**JupyterLab** (a real server and kernel; the widget among Lab's own DOM and CSS, where style and
layout cost most) and the **offline HTML** file.

- payload: bytes of the widget's binary traits, and of the offline HTML file;
- first paint, widget path (offline page): from ``render({model, el})`` with the decoded model
  state in memory to the second animation frame after it;
- first paint, offline file: from navigation start to the first painted canvas;
- scrub, per step over all 191 steps: the slider's ``input`` event is dispatched inside an
  animation-frame callback (where Chromium delivers rAF-aligned input); **handler** is the time the
  event handler takes, **frame** the time from the start of that callback until the browser has run
  style, layout and paint for the frame (a message posted from the callback runs after the
  frame's rendering work on the main thread; rasterisation and compositing run on other threads);
  **layouts/step** counts layout passes per step (CDP ``Performance.getMetrics``): 1 means no
  forced layout. Scenarios: a cold pass, the inspector idle, a pinned inspector, colouring by
  expert. The widget's height is recorded at every step (it must not change).

Goal (issue 17): whole frame <= 16 ms per scrub step in JupyterLab; first paint <= 300 ms.

    python benchmarks/widget_render.py [--chromium /usr/bin/chromium] [--repeat 5] [--no-lab]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np

import dgviz

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]
VIEWPORT = {"width": 1200, "height": 1000}
TOKEN = "bench"


def synthetic_trace(canvases=4, length=256, steps=48, topk=5, layers=8, k=2, experts=16,
                    vocab=262_144, seed=0) -> dgviz.Trace:
    rng = np.random.default_rng(seed)
    s = canvases * steps
    final = rng.integers(0, 50_000, size=(canvases, length))  # "text" lives in common ids
    lock = rng.integers(0, steps, size=(canvases, length))
    local = np.tile(np.arange(steps), canvases)
    canvas_of = np.repeat(np.arange(canvases), steps)
    locked = local[:, None] >= lock[canvas_of]  # [S, L]
    accepted = locked | (rng.random((s, length)) < 0.05)
    draft = np.where(locked, final[canvas_of], rng.integers(0, 50_000, size=(s, length)))
    sampled = np.where(accepted, draft, rng.integers(0, vocab, size=(s, length)))
    canvas_in = np.roll(np.where(accepted, sampled, rng.integers(0, vocab, size=(s, length))), 1, 0)
    conf = np.clip(0.1 + 0.9 * locked + rng.normal(0, 0.05, (s, length)), 0, 1)
    probs = np.sort(rng.dirichlet(np.ones(topk), size=(s, length)), axis=-1)[..., ::-1]
    probs = probs * conf[..., None]
    topk_ids = rng.integers(0, 50_000, size=(s, length, topk))
    topk_ids[..., 0] = draft
    ids = rng.integers(0, experts, size=(s, layers, length, k))
    w = rng.random((s, layers, length, k))
    trace = dgviz.Trace(
        canvas_in=canvas_in[None], sampled=sampled[None], draft=draft[None],
        accepted=accepted[None], confidence=conf[None], entropy=(1 - conf)[None] * 5,
        topk_ids=topk_ids[None], topk_probs=probs[None], active=np.ones((1, s), bool),
        stop=np.zeros((1, s), bool), step_canvas=canvas_of, step_remaining=steps - local,
        temperature=np.linspace(0.8, 0.4, s), step_seconds=np.full(s, 0.05),
        prompt_ids=rng.integers(0, 50_000, size=(1, 40)), output_ids=final.reshape(1, -1),
        tokens_per_forward=np.array([canvases * length / s]),
        expert_ids=ids[None], expert_weights=(w / w.sum(-1, keepdims=True))[None],
        router_entropy=rng.random((1, s, layers, length)) * 2,
        meta={"settings": {"entropy_bound": 0.1, "sampler": "EntropyBoundSampler",
                           "max_denoising_steps": steps},
              "num_experts": experts, "prompt_text": ["a synthetic benchmark prompt"],
              "model": {"name_or_path": "synthetic", "vocab_size": vocab}},
    )
    seen = np.unique(np.concatenate([a.ravel() for a in (canvas_in, sampled, draft, topk_ids,
                                                          trace.prompt_ids)]))
    words = np.array([" the", " cat", " sat", "ing", " on", "\n", "  ", " mat", "ed", ","])
    trace.token_text = {int(i): str(words[i % len(words)]) + str(i % 97) for i in seen}
    return trace


# A scrub pass over every step of the widget under `root`: {handler: [...], frame: [...],
# heights: [...]} in ms / px. See the module docstring for what "frame" covers.
SCRUB = """
async ([root, label]) => {
  const slider = root.querySelector(".dgv-slider");
  const n = Number(slider.max) + 1;
  const afterPaint = () => new Promise((done) => {
    const ch = new MessageChannel();
    ch.port1.onmessage = () => done(performance.now());
    ch.port2.postMessage(0);
  });
  const out = { label, handler: [], frame: [], heights: new Set() };
  for (let s = 1; s < n; s++) {
    await new Promise((done) => requestAnimationFrame(async () => {
      const t0 = performance.now();
      slider.value = String(s);
      slider.dispatchEvent(new Event("input", { bubbles: true }));
      out.handler.push(performance.now() - t0);
      out.frame.push((await afterPaint()) - t0);
      done();
    }));
    if (s % 8 === 0) out.heights.add(Math.round(root.getBoundingClientRect().height * 10) / 10);
  }
  out.heights = [...out.heights];
  return out;
}
"""

# The widget path's first paint, measured in the offline page (its bundle, its state).
FIRST_PAINT = """
async (repeat) => {
  const read = (id) => JSON.parse(document.getElementById(id).textContent);
  const bytes = Uint8Array.from(atob(read("dgviz-esm")), (c) => c.charCodeAt(0));
  const mod = await import(URL.createObjectURL(new Blob([bytes], { type: "text/javascript" })));
  const frame = () => new Promise((r) => requestAnimationFrame(() => r()));
  const state = document.querySelector("[data-dgviz-state]").dataset.dgvizState;
  const res = { paint: [], decode: [] };
  for (let r = 0; r < repeat; r++) {
    let t = performance.now();
    const values = read(state);
    res.decode.push(performance.now() - t);
    const model = { get: (n) => values[n], set: (n, v) => { values[n] = v; }, on: () => {},
                    off: () => {}, save_changes: () => {}, send: () => {} };
    const el = document.createElement("div");
    document.body.append(el);
    await frame();
    t = performance.now();
    const cleanup = await mod.default.render({ model, el });
    await frame(); await frame();
    res.paint.push(performance.now() - t);
    cleanup();
    el.remove();
  }
  return res;
}
"""


def scrub_scenarios(page, root_selector: str) -> list[dict]:
    """Scrub every step of the widget under `root_selector`: cold, idle, pinned, by expert."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable")

    def layouts() -> float:
        metrics = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
        return metrics["LayoutCount"]

    root = page.locator(root_selector).first
    root.scroll_into_view_if_needed()
    handle = root.element_handle()
    results = []

    def run(label):
        before = layouts()
        res = page.evaluate(SCRUB, [handle, label])
        res["layouts"] = (layouts() - before) / len(res["frame"])
        results.append(res)

    run("first pass (cold JIT)")
    run("idle inspector")
    root.locator('.dgv-tok[data-pos="7"]').click()
    run("pinned inspector")
    if root.locator('.dgv-colorby option[value="expert"]').is_enabled():  # routing was sent
        root.locator(".dgv-colorby").select_option("expert")
        run("colour by expert")
        root.locator(".dgv-colorby").select_option("state")
    return results


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def in_jupyterlab(browser, trace_path: Path, tmp: Path, max_bytes: int) -> list[dict]:
    """Open a notebook showing the benchmark trace in a fresh JupyterLab and scrub it."""
    root = trace_path.parent
    cell = ("import dgviz\ntrace = dgviz.load_trace('bench.dgtrace')\n"
            f"dgviz.Timeline(trace, max_bytes={max_bytes})")
    nb = {"cells": [{"cell_type": "code", "execution_count": None, "id": "c0", "metadata": {},
                     "outputs": [], "source": cell}],
          "metadata": {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python",
                                      "name": "python3"}}, "nbformat": 4, "nbformat_minor": 5}
    (root / "bench.ipynb").write_text(json.dumps(nb))
    (tmp / "cfg" / "labconfig").mkdir(parents=True)
    (tmp / "cfg" / "labconfig" / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}}))
    env = dict(os.environ, JUPYTER_CONFIG_DIR=str(tmp / "cfg"), JUPYTER_DATA_DIR=str(tmp / "data"),
               JUPYTER_RUNTIME_DIR=str(tmp / "rt"), IPYTHONDIR=str(tmp / "ipy"),
               JUPYTER_PLATFORM_DIRS="1")
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    with open(tmp / "lab.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--allow-root",
             "--ip=127.0.0.1", f"--port={port}", f"--IdentityProvider.token={TOKEN}",
             f"--ServerApp.root_dir={root}", f"--LabApp.workspaces_dir={tmp / 'ws'}",
             "--LabApp.news_url=None",
             "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"{base}/api/status?token={TOKEN}", timeout=2):
                        break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("JupyterLab did not start") from None
                    time.sleep(0.3)
            page = browser.new_page(viewport=VIEWPORT)
            page.goto(f"{base}/lab/tree/bench.ipynb?token={TOKEN}&reset")
            status = page.locator("#jp-main-statusbar")
            status.get_by_text("Python 3 (ipykernel) | Idle").wait_for(timeout=120_000)
            page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
            page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
            sel = ".jp-OutputArea-output .dgv-root"
            page.locator(f"{sel} .dgv-tok").nth(255).wait_for(timeout=120_000)
            page.wait_for_timeout(1500)  # the other canvases decode in idle time
            return scrub_scenarios(page, sel)
        finally:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()


def offline(browser, path: Path, repeat: int) -> tuple[list[float], dict, list[dict]]:
    page = browser.new_page(viewport=VIEWPORT)
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    nav = []
    for _ in range(repeat):
        page.goto(path.as_uri())
        page.wait_for_function("document.querySelector('.dgv-root[data-step]')", polling="raf")
        nav.append(page.evaluate("performance.now()"))
    paint = page.evaluate(FIRST_PAINT, repeat)
    page.goto(path.as_uri())
    page.locator(".dgv-root .dgv-tok").nth(255).wait_for()
    page.wait_for_timeout(1000)
    scrub = scrub_scenarios(page, ".dgv-root")
    if errors:
        raise SystemExit(f"page errors: {errors}")
    return nav, paint, scrub


def pct(values, q):
    return float(np.percentile(np.asarray(values), q))


def report(host: str, results: list[dict]) -> None:
    med = statistics.median
    for r in results:
        print(f"  {host:10s} {r['label']:22s} handler {med(r['handler']):5.1f} / "
              f"{pct(r['handler'], 95):5.1f} ms   frame {med(r['frame']):5.1f} / "
              f"{pct(r['frame'], 95):5.1f} ms   layouts/step {r['layouts']:4.1f}   "
              f"heights {sorted(r['heights'])}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chromium", default=os.environ.get("DGVIZ_CHROMIUM", "/usr/bin/chromium"))
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--no-lab", action="store_true", help="skip the JupyterLab measurement")
    ap.add_argument("--real-shape", action="store_true",
                    help="8 canvases with the 26B-A4B's routing (30 layers, top-8 of 128 "
                         "experts) instead of 4 canvases x 8 layers: over the widget's 16 MB "
                         "cap, so canvases travel on demand (issue 13)")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    t = time.perf_counter()
    trace = (synthetic_trace(canvases=8, layers=30, k=8, experts=128) if args.real_shape
             else synthetic_trace())
    print(f"trace: {trace!r}, {len(trace.token_text):,} distinct token texts "
          f"(built in {time.perf_counter() - t:.1f} s)")
    t = time.perf_counter()
    # the real shape keeps the widget's default cap: canvases then travel on demand
    max_bytes = dgviz.widget.DEFAULT_MAX_BYTES if args.real_shape else 64_000_000
    w = dgviz.Timeline(trace, max_bytes=max_bytes)
    build = time.perf_counter() - t
    text = len(json.dumps(w._tokens)) / 1e6
    print(f"python: Timeline(trace) {build * 1000:.0f} ms; binary traits "
          f"{w.payload_bytes / 1e6:.2f} MB, token-text JSON ~{text:.2f} MB")
    lab = shutil.which("jupyter", path=str(Path(sys.executable).parent)) is not None
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        (tmp / "root").mkdir()
        t = time.perf_counter()
        path = trace.to_html(tmp / "root" / "bench.html")
        print(f"html: {path.stat().st_size / 1e6:.2f} MB written in "
              f"{(time.perf_counter() - t) * 1000:.0f} ms")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=ARGS)
            nav, paint, scrub_offline = offline(browser, path, args.repeat)
            scrub_lab = []
            if not args.no_lab and lab:
                trace.save(tmp / "root" / "bench.dgtrace")
                scrub_lab = in_jupyterlab(browser, tmp / "root" / "bench.dgtrace", tmp, max_bytes)
            browser.close()
    load = os.getloadavg()
    print(f"chromium {args.chromium}; {os.cpu_count()} CPUs, load average {load[0]:.1f} "
          f"(1 min) {load[1]:.1f} (5 min)")
    med = statistics.median
    print(f"first paint, widget path (render -> 2nd frame): median {med(paint['paint']):.0f} ms "
          f"(runs: {', '.join(f'{v:.0f}' for v in paint['paint'])})  [goal <= 300 ms]")
    print(f"  + JSON.parse of the offline payload: median {med(paint['decode']):.0f} ms")
    print(f"first paint, offline file (navigation -> canvas painted): median {med(nav):.0f} ms "
          f"(runs: {', '.join(f'{v:.0f}' for v in nav)})")
    print(f"scrub, per step over {len(scrub_offline[0]['frame'])} steps: median / p95  "
          f"[goal: frame <= 16 ms]")
    if scrub_lab:
        report("JupyterLab", scrub_lab)
    elif not args.no_lab:
        print("  (JupyterLab not installed here: skipped)")
    report("offline", scrub_offline)


if __name__ == "__main__":
    main()
