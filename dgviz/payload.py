"""The widget's wire format: what the front end (``js/``) reads, for Jupyter and offline HTML.

One run is shown as a small whole-run part (`run_payload`: per-step arrays, per-canvas
summaries, facts), one chunk per canvas (`canvas_payload`: that canvas's steps) and a token-text
table (`token_payload`). Arrays travel as binary buffers with explicit dtypes (`dgviz._codec`).
The widget (`dgviz.widget`) syncs these as traits; the offline page (`dgviz.html`) embeds them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from . import _codec, palette
from .trace import Trace

STATIC = Path(__file__).parent / "static"  # the built front end: widget.js, widget.css
SYNC_MODES = ("normalized", "forward_passes")

# Per canvas chunk: (field, dtype policy). "id" means the narrowest dtype for the trace's ids.
_CHUNK_FIELDS = (
    ("canvas_in", "id"), ("sampled", "id"), ("draft", "id"), ("state", "uint8"),
    ("accepted", "uint8"), ("confidence", "float32"), ("entropy", "float32"),
    ("topk_ids", "id"), ("topk_probs", "float16"),
)


def _id_dtype(trace: Trace) -> str:
    arrays = (trace.canvas_in, trace.sampled, trace.draft, trace.topk_ids, trace.prompt_ids,
              trace.output_ids)
    top = max((int(a.max()) for a in arrays if a.size), default=0)
    top = max(top, int(trace.meta.get("model", {}).get("vocab_size", 0) or 0) - 1)
    return _codec.id_dtype(top)


def _expert_dtype(trace: Trace) -> str:
    return "uint8" if (trace.num_experts or 1) <= 256 else "int16"


def chunk_bytes(trace: Trace, canvas: int, routing: bool = True) -> int:
    """Bytes of one canvas's chunk on the wire (without building it)."""
    n = int((trace.step_canvas == canvas).sum())
    ids = _id_dtype(trace)
    per_step = 0
    for name, policy in _CHUNK_FIELDS:
        tail = trace.topk_ids.shape[3] if name.startswith("topk") else 1
        itemsize = np.dtype(ids if policy == "id" else policy).itemsize
        per_step += trace.canvas_length * tail * itemsize
    if routing and trace.has_routing:
        _, _, layers, length, k = trace.expert_ids.shape
        per_step += layers * length * k * np.dtype(_expert_dtype(trace)).itemsize
        per_step += layers * length * k * 2 + layers * length * 2
    return n * per_step


def canvas_payload(trace: Trace, row: int, canvas: int, *, routing: bool = True,
                   states: np.ndarray | None = None, version: int = 0,
                   reference: Trace | None = None) -> dict[str, Any]:
    """One canvas's steps for the front end: ``{canvas, lo, version, <encoded arrays>}``.

    Arrays are ``[n, L]`` (``topk_*`` ``[n, L, K]``; ``expert_*`` ``[n, N, L, k]``,
    ``router_entropy`` ``[n, N, L]``) for the ``n`` steps of the canvas. With a ``reference``
    run (a branch's parent), ``differs`` marks where the draft differs from its draft.
    """
    steps = np.flatnonzero(trace.step_canvas == canvas)
    lo, hi = int(steps[0]), int(steps[-1]) + 1
    ids = _id_dtype(trace)
    state = (trace.states if states is None else states)[row, lo:hi]
    source = {"state": state, "accepted": trace.accepted[row, lo:hi]}
    out: dict[str, Any] = {"canvas": int(canvas), "lo": lo, "version": int(version)}
    for name, policy in _CHUNK_FIELDS:
        value = source[name] if name in source else getattr(trace, name)[row, lo:hi]
        out[name] = _codec.encode(value, ids if policy == "id" else policy)
    if reference is not None:
        out["differs"] = _codec.encode(differs(trace, reference, row, canvas), "uint8")
    if routing and trace.has_routing:
        out["expert_ids"] = _codec.encode(trace.expert_ids[row, lo:hi], _expert_dtype(trace))
        out["expert_weights"] = _codec.encode(trace.expert_weights[row, lo:hi], "float16")
        out["router_entropy"] = _codec.encode(trace.router_entropy[row, lo:hi], "float16")
    return out


def differs(trace: Trace, reference: Trace, row: int, canvas: int) -> np.ndarray:
    """bool ``[n, L]``: where ``trace``'s draft differs from ``reference``'s at the same step of
    the same canvas (a reference canvas that ended earlier is compared at its last step)."""
    steps = np.flatnonzero(trace.step_canvas == canvas)
    out = np.zeros((steps.size, trace.canvas_length), dtype=bool)
    if (canvas >= reference.num_canvases or reference.canvas_length != trace.canvas_length
            or row >= reference.batch_size):
        return out
    ref = np.flatnonzero(reference.step_canvas == canvas)
    local = np.minimum(np.arange(steps.size), ref.size - 1)
    return trace.draft[row, steps] != reference.draft[row, ref[local]]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return repr(value)


def run_payload(trace: Trace, row: int, *, initial_step: int = 0, transport: dict | None = None,
                live: bool = False, in_progress: int | None = None) -> dict[str, Any]:
    """The small whole-run part: per-step arrays, per-canvas summaries, token text, facts.

    ``in_progress`` names a canvas still being generated (live mode): its lock-in and final
    tokens are not known yet (sent as -1 and the current draft).
    """
    ids = _id_dtype(trace)
    c, length = trace.num_canvases, trace.canvas_length
    lock_in = trace.lock_in[row].copy() if trace.num_steps else np.zeros((0, length), np.int32)
    final = trace.final_tokens[row].copy() if trace.num_steps else np.zeros((0, length), np.int32)
    first = trace.first_accepted[row] if trace.num_steps else np.zeros((0, length), np.int32)
    flips = trace.flips[row] if trace.num_steps else np.zeros((0, length), np.int32)
    if in_progress is not None and 0 <= in_progress < c:
        lock_in[in_progress] = -1
    routed = trace.has_routing and (transport or {}).get("routing", True)
    drift = {}
    if routed and not live:  # routing between steps (a finished run: computed once per trace)
        rs = trace.routing_steps
        drift = {name: _codec.encode(rs[key][row], dtype) for name, key, dtype in (
            ("routing_similarity", "similarity", "float32"),
            ("routing_changed", "similarity_changed", "float32"),
            ("routing_stayed", "similarity_stayed", "float32"),
            ("experts_used", "experts_used", "uint16"))}
    stats = trace.stats().iloc[row].to_dict() if trace.num_steps else {}
    settings = trace.settings
    model = trace.meta.get("model", {})
    prompt_text = trace.prompt_text[row] if row < len(trace.prompt_text) else ""
    text = trace.text[row] if row < len(trace.text) else ""
    return {
        "version": 1,
        "shape": {
            "steps": trace.num_steps, "length": length, "canvases": c,
            "topk": int(trace.topk_ids.shape[3]),
            "layers": int(trace.expert_ids.shape[2]) if routed else 0,
            "k": int(trace.expert_ids.shape[4]) if routed else 0,
            "experts": int(trace.num_experts or 0) if routed else 0,
        },
        "arrays": {
            "step_canvas": _codec.encode(trace.step_canvas, "int32"),
            "step_remaining": _codec.encode(trace.step_remaining, "int32"),
            "temperature": _codec.encode(trace.temperature, "float32"),
            "step_seconds": _codec.encode(trace.step_seconds, "float32"),
            "active": _codec.encode(trace.active[row], "uint8"),
            "passes": _codec.encode(trace.step_passes(row), "int32"),  # the sync axis
            "stop": _codec.encode(trace.stop[row], "uint8"),
            "prompt_ids": _codec.encode(trace.prompt_ids[row], ids),
            "final_tokens": _codec.encode(final, ids),
            "lock_in": _codec.encode(lock_in, "int32"),
            "first_accepted": _codec.encode(first, "int32"),
            "flips": _codec.encode(flips, "int32"),
            **drift,
        },
        "info": _jsonable({
            "settings": settings,
            "model_name": _shown_name(model.get("name_or_path")) or model.get("class") or "",
            "complete": trace.complete,
            "live": live,
            "prompt_text": prompt_text,
            "text": text,
            "row": row,
            "batch_size": trace.batch_size,
            "pad_token_id": settings.get("pad_token_id"),
            "family": trace.family,
            "mask_token_id": trace.mask_token_id,  # masked diffusion: the legend shows "masked"
            "held": bool(trace.meta.get("held")),  # the legend shows "held"
            "fork": trace.fork,  # a branch: the strip marks its fork step
            "changes": trace.meta.get("changes", []),  # settings changed mid-run (a branch)
            "stats": stats,  # Trace.stats() of this row: the header's cost figures
            "versions": trace.meta.get("versions", {}),
        }),
        "palette": palette.as_dict(),
        "transport": transport or {},
        "initial_step": int(initial_step),
    }


def token_payload(trace: Trace, row: int, start: int = 0, stop: int | None = None,
                  *, context: bool = True) -> dict[str, str]:
    """``{str(id): text}`` for the ids that global steps ``start:stop`` of ``row`` show.

    With ``context``, also the prompt's ids and the final tokens of the canvases finished before
    ``stop``. Token text is JSON (strings); it is the one non-binary part that grows with a run.
    """
    sl = slice(start, stop)
    parts = [trace.canvas_in[row, sl], trace.sampled[row, sl], trace.draft[row, sl],
             trace.topk_ids[row, sl]]
    if context:
        parts.append(trace.prompt_ids[row])
        if trace.num_steps:
            done = trace.step_canvas[: trace.num_steps if stop is None else stop]
            parts.append(trace.final_tokens[row, : int(done.max()) + 1 if done.size else 0])
    ids = np.unique(np.concatenate([p.ravel() for p in parts])) if parts else []
    text = trace.token_text
    return {str(int(i)): text[int(i)] for i in ids if int(i) in text}


def _shown_name(name_or_path: str | None) -> str:
    """A Hub id as it is; a local checkpoint by its folder's name: a page made to be shared
    does not show where the files sit on the recording machine."""
    if not name_or_path:
        return ""
    path = Path(name_or_path).expanduser()
    return path.name if path.is_absolute() or name_or_path.startswith(".") else name_or_path
