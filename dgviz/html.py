"""Offline HTML: one self-contained file that replays a run in any browser, without a kernel.

The page holds the widget's own ESM bundle (base64, imported from a ``blob:`` URL), its CSS, the
trace payload (the same structure the widget syncs, with base64 array data) and a tiny model shim
(``get``/``set``/``on``/``off``/``save_changes``/``send``) so that the same ``render`` runs as in
Jupyter. No CDN, no network: a Content-Security-Policy forbids every fetch.

Token text is untrusted model output. It is only ever inside a JSON ``<script>`` block with
``<``, ``>`` and ``&`` escaped (so ``</script>`` in a token cannot close the block), and the front
end writes it with ``textContent``.
"""

from __future__ import annotations

import base64
import html
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from . import _codec
from .payload import STATIC, SYNC_MODES, canvas_payload, chunk_bytes, run_payload, token_payload
from .trace import Trace

DEFAULT_MAX_BYTES = 64_000_000

_CSP = ("default-src 'none'; script-src 'unsafe-inline' blob:; style-src 'unsafe-inline'; "
        "img-src data:; connect-src 'none'")

# The model shim: the widget's `render` gets an object that behaves like an anywidget model.
_SHIM = """
const read = (id) => JSON.parse(document.getElementById(id).textContent);
const apps = [...document.querySelectorAll("[data-dgviz-state]")];
let mod = null;
for (const el of apps) try {
  if (!mod) {
    const bytes = Uint8Array.from(atob(read("dgviz-esm")), (c) => c.charCodeAt(0));
    const url = URL.createObjectURL(new Blob([bytes], { type: "text/javascript" }));
    mod = await import(url); // one module for every view on the page (synced views share it)
  }
  const values = read(el.dataset.dgvizState); // arrays stay base64 until the widget first uses them
  const listeners = new Map();
  const model = {
    get: (name) => values[name],
    set: (name, value) => {
      values[name] = value;
      for (const fn of listeners.get(`change:${name}`) || []) fn();
    },
    on: (name, fn) => { listeners.set(name, [...(listeners.get(name) || []), fn]); },
    off: (name, fn) => {
      listeners.set(name, (listeners.get(name) || []).filter((g) => g !== fn));
    },
    save_changes: () => {},
    send: () => {},
  };
  await mod.default.render({ model, el });
} catch (err) {
  const box = document.createElement("pre");
  box.className = "dgviz-load-error";
  box.textContent = `dgviz could not start: ${err && err.stack ? err.stack : err}`;
  el.append(box);
}
"""


def _script_json(value: Any) -> str:
    """JSON that is safe inside a <script> block: no '<', '>' or '&' survive unescaped."""
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def page_state(trace: Trace, *, row: int = 0, step: int = 0, routing: bool = True,
            sync: str | None = None, sync_mode: str = "normalized", compact: bool = False,
            label: str | None = None) -> dict[str, Any]:
    """The model state the page starts from (all canvases; arrays as base64)."""
    routing = routing and trace.has_routing
    sizes = [chunk_bytes(trace, c, routing) for c in range(trace.num_canvases)]
    transport = {"cap_bytes": int(sum(sizes)), "total_bytes": int(sum(sizes)),
                 "canvas_bytes": sizes, "mode": "all", "routing": routing, "offline": True}
    if trace.num_steps:
        step = trace.num_steps - 1 if step < 0 else min(step, trace.num_steps - 1)
    run = run_payload(trace, row, initial_step=step, transport=transport)
    chunks = {str(c): canvas_payload(trace, row, c, routing=routing, version=c + 1)
              for c in range(trace.num_canvases)}
    return {"_run": _codec.to_base64(run), "_chunks": _codec.to_base64(chunks), "_live": {},
            "_tokens": token_payload(trace, row), "status": "", "error": "", "selection": None,
            "sync": sync, "sync_mode": sync_mode, "compact": bool(compact), "label": label}


def trace_to_html(trace: Trace, path: str | Path, *, row: int = 0, step: int = 0,
                  routing: bool = True, max_bytes: int = DEFAULT_MAX_BYTES,
                  title: str | None = None) -> Path:
    """Write one HTML file that replays ``trace`` (batch row ``row``) offline. Returns the path.

    The page starts at global step ``step`` (``-1``: the last step). Routing is left out (with a
    warning) when the canvas data would exceed ``max_bytes``; a trace too large even without it
    raises ``ValueError`` (export a single row, or fewer steps, instead).
    """
    trace.check_row(row)
    routing = _fit_routing(trace, routing, max_bytes)
    state = page_state(trace, row=row, step=step, routing=routing)
    prompt = trace.prompt_text[row] if row < len(trace.prompt_text) else ""
    page_title = title if title is not None else f"dgviz · {' '.join(prompt.split())[:80]}"
    return _write_page(path, [state], page_title)


def traces_to_html(traces: Sequence[Trace], path: str | Path, *,
                   labels: Sequence[str] | None = None, sync: bool = True, compact: bool = True,
                   sync_mode: str = "normalized", row: int = 0, routing: bool = True,
                   max_bytes: int = DEFAULT_MAX_BYTES, title: str | None = None) -> Path:
    """Write one offline HTML page with a Timeline per trace, stacked; returns the path.

    With ``sync`` the views scrub and play together (``sync_mode``: ``"normalized"`` or
    ``"forward_passes"``, switchable on the page); ``compact`` shows only each run's header,
    controls, legend and canvas. ``labels`` name the runs (default ``"run 1"``, …). The bundle
    is embedded once; ``max_bytes`` applies to each trace (see `trace_to_html`).
    """
    traces = list(traces)
    if not traces:
        raise ValueError("traces_to_html needs at least one trace.")
    if not all(isinstance(t, Trace) for t in traces):
        raise TypeError("traces_to_html needs a sequence of dgviz.Trace.")
    labels = [f"run {i + 1}" for i in range(len(traces))] if labels is None else list(labels)
    if len(labels) != len(traces):
        raise ValueError(f"{len(labels)} labels for {len(traces)} traces.")
    if sync_mode not in SYNC_MODES:
        raise ValueError(f"sync_mode must be one of {SYNC_MODES} (got {sync_mode!r}).")
    states = []
    for trace, label in zip(traces, labels, strict=True):
        trace.check_row(row)
        states.append(page_state(trace, row=row, routing=_fit_routing(trace, routing, max_bytes),
                              sync="page" if sync else None, sync_mode=sync_mode, compact=compact,
                              label=str(label)))
    page_title = title if title is not None else f"dgviz · {len(traces)} runs"
    return _write_page(path, states, page_title)


def _fit_routing(trace: Trace, routing: bool, max_bytes: int) -> bool:
    total = sum(chunk_bytes(trace, c, routing) for c in range(trace.num_canvases))
    if total > max_bytes and routing and trace.has_routing:
        warnings.warn(f"The trace's canvas data ({total / 1e6:.1f} MB) exceeds max_bytes "
                      f"({max_bytes / 1e6:.1f} MB): the HTML file leaves routing out.",
                      stacklevel=3)
        routing = False
        total = sum(chunk_bytes(trace, c, False) for c in range(trace.num_canvases))
    if total > max_bytes:
        raise ValueError(f"The trace's canvas data ({total / 1e6:.1f} MB) exceeds max_bytes "
                         f"({max_bytes / 1e6:.1f} MB) even without routing; raise max_bytes.")
    return routing


def _write_page(path: str | Path, states: list[dict[str, Any]], page_title: str) -> Path:
    esm_b64 = base64.b64encode((STATIC / "widget.js").read_bytes()).decode("ascii")
    css = (STATIC / "widget.css").read_text(encoding="utf-8")
    assert "</" not in css, "widget.css must not contain '</' (it is inlined in a <style> block)"
    apps = "\n".join(
        f'<div id="dgviz-app{suffix}" class="dgviz-app" data-dgviz-state="dgviz-data{suffix}">'
        f'</div>\n<script type="application/json" id="dgviz-data{suffix}">'
        f'{_script_json(state)}</script>'
        for suffix, state in ((f"-{i}" if i else "", state) for i, state in enumerate(states)))
    doc = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{_CSP}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="dgviz">
<title>{html.escape(page_title)}</title>
<style>{css}</style>
<style>body {{ margin: 16px; background: #fff; }}</style>
</head>
<body>
{apps}
<script type="application/json" id="dgviz-esm">{_script_json(esm_b64)}</script>
<script type="module">{_SHIM}</script>
</body>
</html>
"""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(doc, encoding="utf-8")
    return path


__all__ = ["page_state", "trace_to_html", "traces_to_html"]
