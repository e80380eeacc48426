"""Timeline widget render speed in Chromium: first paint and time per scrub step.

A synthetic trace of 4 canvases x 256 positions x 48 steps (192 steps), top-5 alternatives,
routing for 8 decoder layers x top-2 of 16 experts, and a 262,144-token vocabulary (re-noised
positions draw random ids, so the token-text table is large, as with the real model).

Measured in headless Debian chromium (Playwright, ``executable_path``):

- payload: bytes of the widget's binary traits, and of the offline HTML file;
- first paint, widget path: from ``render({model, el})`` with the decoded model state in memory to
  the second animation frame after it (tokens laid out and painted);
- first paint, offline file: from navigation start to the first painted canvas (includes parsing
  the file and decoding base64);
- scrub: one step change (slider ``input`` event) including style and layout, over 191 steps,
  first a cold pass, then with the inspector idle, with a pinned inspector, and colouring by
  expert (starting 0.5 s after the first paint, when the other canvases have been decoded in idle
  time).

Goal (issue 4): first paint <= 300 ms, scrub <= 16 ms per step.

    python benchmarks/widget_render.py [--chromium /usr/bin/chromium] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import dgviz
from dgviz.html import trace_to_html
from dgviz.widget import Timeline

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"]


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


MEASURE = """
async ({repeat}) => {
  const read = (id) => JSON.parse(document.getElementById(id).textContent);
  const bytes = Uint8Array.from(atob(read("dgviz-esm")), (c) => c.charCodeAt(0));
  const mod = await import(URL.createObjectURL(new Blob([bytes], { type: "text/javascript" })));
  const frame = () => new Promise((r) => requestAnimationFrame(() => r()));
  const results = { paint: [], decode: [], scrub: {} };
  for (let r = 0; r < repeat; r++) {
    let t = performance.now();
    const values = read("dgviz-data");
    results.decode.push(performance.now() - t);
    const listeners = new Map();
    const model = { get: (n) => values[n], set: (n, v) => { values[n] = v; },
                    on: (n, f) => listeners.set(n, f), off: () => {}, save_changes: () => {},
                    send: () => {} };
    const el = document.createElement("div");
    document.body.append(el);
    await frame();
    t = performance.now();
    const cleanup = await mod.default.render({ model, el });
    await frame(); await frame();
    results.paint.push(performance.now() - t);
    if (r === repeat - 1) {
      await new Promise((done) => setTimeout(done, 500)); // let the other canvases decode (idle)
      const root = el.querySelector(".dgv-root"), slider = el.querySelector(".dgv-slider");
      const n = Number(slider.max) + 1;
      const scrub = (label) => {
        const times = [];
        for (let s = 1; s < n; s++) {
          const t0 = performance.now();
          slider.value = String(s);
          slider.dispatchEvent(new Event("input"));
          void root.offsetHeight; // style + layout
          times.push(performance.now() - t0);
        }
        results.scrub[label] = times;
      };
      scrub("first pass (cold JIT)");
      scrub("idle inspector");
      el.querySelector('.dgv-tok[data-pos="7"]').click();
      scrub("pinned inspector");
      const sel = el.querySelector(".dgv-colorby");
      sel.value = "expert"; sel.dispatchEvent(new Event("change"));
      scrub("colour by expert");
      results.steps = n;
    }
    cleanup();
    el.remove();
  }
  return results;
}
"""


def pct(values, q):
    return float(np.percentile(np.asarray(values), q))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--chromium", default=os.environ.get("DGVIZ_CHROMIUM", "/usr/bin/chromium"))
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    t = time.perf_counter()
    trace = synthetic_trace()
    print(f"trace: {trace!r}, {len(trace.token_text):,} distinct token texts "
          f"(built in {time.perf_counter() - t:.1f} s)")
    t = time.perf_counter()
    w = Timeline(trace, max_bytes=64_000_000)
    build = time.perf_counter() - t
    json_text = len(json.dumps(w._tokens))
    print(f"python: Timeline(trace) {build * 1000:.0f} ms; binary traits "
          f"{w.payload_bytes / 1e6:.2f} MB ({w._run['transport']['mode']}), "
          f"token-text JSON ~{json_text / 1e6:.2f} MB")
    w_default = Timeline(trace)
    transport = w_default._run["transport"]
    print(f"python: default cap {transport['cap_bytes'] / 1e6:.0f} MB -> mode "
          f"{transport['mode']}, {w_default.payload_bytes / 1e6:.2f} MB sent at first")
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        path = trace_to_html(trace, Path(tmp) / "bench.html")
        took = (time.perf_counter() - t) * 1000
        print(f"html: {path.stat().st_size / 1e6:.2f} MB written in {took:.0f} ms")
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=args.chromium, args=ARGS)
            page = browser.new_page(viewport={"width": 1200, "height": 1000})
            errors = []
            page.on("pageerror", lambda e: errors.append(str(e)))
            nav = []
            for _ in range(args.repeat):
                page.goto(path.as_uri())
                page.wait_for_function("document.querySelector('.dgv-root[data-step]')",
                                       polling="raf")
                nav.append(page.evaluate("performance.now()"))
            res = page.evaluate(MEASURE, {"repeat": args.repeat})
            browser.close()
    if errors:
        raise SystemExit(f"page errors: {errors}")
    print(f"chromium {args.chromium}; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    med = statistics.median
    print(f"first paint, widget path (render -> 2nd frame): median {med(res['paint']):.0f} ms "
          f"(runs: {', '.join(f'{v:.0f}' for v in res['paint'])})  [goal <= 300 ms]")
    print(f"  + JSON.parse of the offline payload: median {med(res['decode']):.0f} ms")
    print(f"first paint, offline file (navigation -> canvas painted): median {med(nav):.0f} ms "
          f"(runs: {', '.join(f'{v:.0f}' for v in nav)})")
    for label, times in res["scrub"].items():
        print(f"scrub, {label}: median {med(times):.2f} ms, p95 {pct(times, 95):.2f} ms, "
              f"max {max(times):.2f} ms per step over {len(times)} steps  [goal <= 16 ms]")


if __name__ == "__main__":
    main()
