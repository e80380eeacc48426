"""Every check a `Trace` must pass, whether it was recorded, built by hand or read from a file.

A damaged file must never load into a trace that hangs or crashes a view later: a flipped bit in
``step_canvas`` must not mean billions of phantom canvases, an id out of range must not index
past the token table. Each check says what is wrong and where, as a `TraceFormatError`. The
checks cost O(size of the arrays) and allocate nothing that is not bounded by them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

# 1e-3 above 1 for probabilities: float32 softmax rounding, float16 storage
_PROB_SLACK = 1e-3


class TraceFormatError(ValueError):
    """A file is not a dgviz trace, is damaged, or was written by a newer dgviz; or a trace's
    arrays do not fit together."""


def check_shapes(t: Any) -> None:
    """The arrays' shapes against each other (``t`` is a Trace or anything with its fields)."""
    if t.canvas_in.ndim != 3:
        raise TraceFormatError(f"Trace.canvas_in has shape {t.canvas_in.shape}, expected "
                               "(B, S, L).")
    b, s, length = t.canvas_in.shape
    expect = {
        "sampled": (b, s, length), "draft": (b, s, length), "accepted": (b, s, length),
        "confidence": (b, s, length), "entropy": (b, s, length), "active": (b, s),
        "stop": (b, s), "step_canvas": (s,), "step_remaining": (s,), "temperature": (s,),
        "step_seconds": (s,), "tokens_per_forward": (b,),
    }
    for name, shape in expect.items():
        got = getattr(t, name).shape
        if got != shape:
            raise TraceFormatError(f"Trace.{name} has shape {got}, expected {shape}.")
    if (t.topk_ids.ndim != 4 or t.topk_ids.shape[:3] != (b, s, length)
            or t.topk_probs.shape != t.topk_ids.shape or t.topk_ids.shape[3] < 1):
        raise TraceFormatError(
            f"Trace.topk_ids/topk_probs have shapes {t.topk_ids.shape} / {t.topk_probs.shape}, "
            f"expected ({b}, {s}, {length}, K) each with K >= 1.")
    for name in ("prompt_ids", "output_ids"):
        got = getattr(t, name).shape
        if len(got) != 2 or got[0] != b:
            raise TraceFormatError(f"Trace.{name} has shape {got}, expected ({b}, n).")
    _check_routing(t, b, s, length)


def _check_routing(t: Any, b: int, s: int, length: int) -> None:
    ids, weights, entropy = t.expert_ids, t.expert_weights, t.router_entropy
    if (ids is None) != (weights is None) or (ids is None) != (entropy is None):
        raise TraceFormatError("Trace routing is partial: expert_ids, expert_weights and "
                               "router_entropy come together or not at all.")
    if ids is not None:
        if ids.ndim != 5 or ids.shape[:2] != (b, s) or ids.shape[3] != length:
            raise TraceFormatError(f"Trace.expert_ids has shape {ids.shape}, expected "
                                   f"({b}, {s}, N, {length}, k).")
        if weights.shape != ids.shape or entropy.shape != ids.shape[:4]:
            raise TraceFormatError(
                f"Trace.expert_weights / router_entropy have shapes {weights.shape} / "
                f"{entropy.shape}, expected {ids.shape} / {ids.shape[:4]}.")
    enc = (t.encoder_expert_ids, t.encoder_expert_weights, t.encoder_router_entropy)
    if any(a is not None for a in enc):
        if any(a is None for a in enc):
            raise TraceFormatError("Trace encoder routing is partial: encoder_expert_ids, "
                                   "_weights and _router_entropy come together.")
        eids, eweights, eentropy = enc
        if eids.ndim != 4 or eids.shape[0] != b or eweights.shape != eids.shape \
                or eentropy.shape != eids.shape[:3]:
            raise TraceFormatError(
                f"Trace encoder routing has shapes {eids.shape} / {eweights.shape} / "
                f"{eentropy.shape}, expected ({b}, T, N, k) twice and ({b}, T, N).")


def check_values(t: Any, vocab_size: int | None, num_experts: int | None) -> None:
    """Values in range: the step axis, ids, probabilities, routing; meta and token text types."""
    _check_steps(t.step_canvas)
    _check_ids(t, vocab_size)
    for name in ("confidence", "topk_probs"):
        _in_range(name, getattr(t, name), 0.0, 1.0 + _PROB_SLACK)
    _in_range("entropy", t.entropy, -_PROB_SLACK, math.inf)
    _finite_or_nan("temperature", t.temperature)
    _finite_or_nan("tokens_per_forward", t.tokens_per_forward)
    _in_range("step_seconds", t.step_seconds, 0.0, math.inf)
    if t.expert_ids is not None:
        _ids_in("expert_ids", t.expert_ids, num_experts, "experts")
        _in_range("expert_weights", t.expert_weights, -math.inf, math.inf)
        _in_range("router_entropy", t.router_entropy, -_PROB_SLACK, math.inf)
    if t.encoder_expert_ids is not None:
        _ids_in("encoder_expert_ids", t.encoder_expert_ids, num_experts, "experts")
        _in_range("encoder_expert_weights", t.encoder_expert_weights, -math.inf, math.inf)
        _in_range("encoder_router_entropy", t.encoder_router_entropy, -_PROB_SLACK, math.inf)
    check_meta(t.meta, t.batch_size, t.num_steps)
    _check_branching(t.meta, t.batch_size, t.canvas_in.shape[2], t.prompt_ids.shape[1])


def _is_int(value: Any, low: int = 0, high: float = math.inf) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value < high


def _check_branching(meta: Any, batch: int, length: int, prompt: int) -> None:
    """What `dgviz.branch` and ``record(hold=)`` keep: holds, mid-run setting changes, the fork,
    the prompt's attention mask."""
    held = meta.get("held", [])
    if not isinstance(held, list):
        raise TraceFormatError("Trace.meta['held'] must be a list.")
    for h in held:
        if not (isinstance(h, Mapping) and _is_int(h.get("canvas")) and _is_int(h.get("token"))
                and _is_int(h.get("position"), 0, length)
                and (h.get("row") is None or _is_int(h.get("row"), 0, batch))
                and (h.get("from_step") is None or _is_int(h.get("from_step")))):
            raise TraceFormatError(f"Trace.meta['held'] has a damaged entry {h!r}: each is "
                                   "{canvas, position, token, row, from_step}.")
    changes = meta.get("changes", [])
    if not isinstance(changes, list) or not all(
            isinstance(c, Mapping) and _is_int(c.get("step"))
            and isinstance(c.get("settings"), Mapping) for c in changes):
        raise TraceFormatError("Trace.meta['changes'] must be a list of {step, settings}.")
    fork = meta.get("fork")
    if fork is not None and not (isinstance(fork, Mapping) and _is_int(fork.get("step"))
                                 and isinstance(fork.get("parent"), str)):
        raise TraceFormatError("Trace.meta['fork'] must be {parent, step, ...}.")
    mask = meta.get("attention_mask")
    if mask is not None and not (isinstance(mask, list) and len(mask) == batch and all(
            isinstance(r, list) and len(r) == prompt and all(v in (0, 1) for v in r)
            for r in mask)):
        raise TraceFormatError(f"Trace.meta['attention_mask'] must be {batch} list(s) of "
                                   f"{prompt} zeros and ones, as the prompt ids.")


def _check_steps(step_canvas: np.ndarray) -> None:
    """Canvases in order, none skipped: 0, 0, ..., 1, 1, ... (so canvases <= steps)."""
    if step_canvas.size == 0:
        return
    steps = step_canvas.astype(np.int64)
    jumps = np.diff(steps)
    if steps[0] != 0 or (jumps.size and (jumps.min() < 0 or jumps.max() > 1)):
        bad = 0 if steps[0] != 0 else int(np.flatnonzero((jumps < 0) | (jumps > 1))[0]) + 1
        raise TraceFormatError(
            f"Trace.step_canvas must start at 0 and go up by 0 or 1 per step (canvases in "
            f"order); step {bad} says canvas {int(steps[bad])}.")


def _check_ids(t: Any, vocab_size: int | None) -> None:
    known = np.fromiter(t.token_text, np.int64, len(t.token_text)) if t.token_text else None
    has_text = None  # with a vocabulary: a table of the ids with text (a lookup, not a sort)
    if known is not None and vocab_size is not None:
        has_text = np.zeros(vocab_size, bool)
        has_text[known[(known >= 0) & (known < vocab_size)]] = True
    for name in ("canvas_in", "sampled", "draft", "topk_ids", "prompt_ids", "output_ids"):
        values = getattr(t, name)
        _ids_in(name, values, vocab_size, "tokens in the vocabulary")
        if known is None or not values.size:
            continue
        if has_text is not None:
            missing = np.unique(values[~has_text[values]])
        else:
            missing = np.setdiff1d(np.unique(values), known)
        if missing.size:
            raise TraceFormatError(
                f"Trace.{name} holds token id {int(missing[0])}, which has no entry in "
                f"token_text ({missing.size} such id(s)): the trace is damaged.")


def _ids_in(name: str, values: np.ndarray, limit: int | None, what: str) -> None:
    if not values.size:
        return
    low, high = int(values.min()), int(values.max())
    if low < 0 or (limit is not None and high >= limit):
        span = f"0..{limit - 1}" if limit is not None else ">= 0"
        raise TraceFormatError(f"Trace.{name} holds {low}..{high}, outside {span} ({what}).")


def _in_range(name: str, values: np.ndarray, low: float, high: float) -> None:
    if not values.size:
        return
    v = values.astype(np.float64, copy=False)
    finite = np.isfinite(v)
    if not finite.all():
        raise TraceFormatError(f"Trace.{name} holds a non-finite value at "
                               f"{np.unravel_index(int(np.argmin(finite)), v.shape)}.")
    if v.min() < low or v.max() > high:
        raise TraceFormatError(f"Trace.{name} holds {v.min():.4g}..{v.max():.4g}, outside "
                               f"[{low:g}, {high:g}].")


def _finite_or_nan(name: str, values: np.ndarray) -> None:
    if values.size and np.isinf(values.astype(np.float64, copy=False)).any():
        raise TraceFormatError(f"Trace.{name} holds an infinite value.")


def check_meta(meta: Any, batch_size: int, num_steps: int) -> None:
    """The metadata's structure: the keys every view reads have the types views expect."""
    if not isinstance(meta, Mapping):
        raise TraceFormatError(f"Trace.meta must be a dict, got {type(meta).__name__}.")
    for key in ("settings", "model", "versions"):
        if key in meta and not isinstance(meta[key], Mapping):
            raise TraceFormatError(f"Trace.meta[{key!r}] must be a dict.")
    for key in ("text", "prompt_text"):
        if key in meta:
            value = meta[key]
            if not isinstance(value, list) or not all(isinstance(x, str) for x in value) \
                    or len(value) not in (0, batch_size):
                raise TraceFormatError(
                    f"Trace.meta[{key!r}] must be a list of {batch_size} string(s).")
    if "complete" in meta and not isinstance(meta["complete"], bool):
        raise TraceFormatError("Trace.meta['complete'] must be True or False.")
    for key in ("num_experts", "top_k_experts"):
        if meta.get(key) is not None and (not isinstance(meta[key], int)
                                          or isinstance(meta[key], bool) or meta[key] < 1):
            raise TraceFormatError(f"Trace.meta[{key!r}] must be a positive integer or None.")
    model = meta.get("model", {})
    for key in ("vocab_size", "canvas_length", "num_layers"):
        value = model.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or value < 1):
            raise TraceFormatError(f"Trace.meta['model'][{key!r}] must be a positive integer.")
    settings = meta.get("settings", {})
    for key in ("entropy_bound", "t_min", "t_max"):
        value = settings.get(key)
        if value is not None and (not isinstance(value, int | float) or isinstance(value, bool)):
            raise TraceFormatError(f"Trace.meta['settings'][{key!r}] must be a number or None.")
    fp = settings.get("forward_passes")
    if fp is not None and (not isinstance(fp, int) or isinstance(fp, bool) or fp < 0):
        raise TraceFormatError("Trace.meta['settings']['forward_passes'] must be an integer.")
    per_step = settings.get("step_passes")
    if per_step is not None and (
            not isinstance(per_step, list)
            or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0
                       for n in per_step)
            or len(per_step) != num_steps):
        raise TraceFormatError("Trace.meta['settings']['step_passes'] must be a list of "
                               "non-negative integers, one per step.")


def check_token_text(token_text: Any) -> dict[int, str]:
    """``{id: text}`` with int ids >= 0 and str texts (JSON gives string keys)."""
    if not isinstance(token_text, Mapping):
        raise TraceFormatError(f"Trace.token_text must be a dict, got {type(token_text).__name__}.")
    out = {}
    for key, value in token_text.items():
        try:
            number = int(key)
        except (TypeError, ValueError):
            raise TraceFormatError(f"Trace.token_text has a key {key!r} that is not a token id."
                                   ) from None
        if number < 0 or not isinstance(value, str):
            raise TraceFormatError(f"Trace.token_text[{key!r}] must map an id >= 0 to text.")
        out[number] = value
    return out
