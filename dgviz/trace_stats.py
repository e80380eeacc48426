"""Run statistics of a `Trace`: what a run cost (`run_stats`, ``Trace.stats()``), how its
routing moved between steps (`routing_steps`, ``Trace.routing_steps``), and how fast it
converged (`steps_to_lock`, `lock_fraction_curve`, ...: the per-run numbers of a
`dgviz.comparison.Comparison`).

Kept apart from `dgviz.trace` (the data model and the per-position quantities) so that each file
stays readable; `Trace` exposes both and computes each once.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .trace import Trace

#: The columns of `Trace.stats`, in order.
STATS_COLUMNS = (
    "forward_passes", "tokens", "tokens_per_forward", "wall_seconds", "tokens_per_second",
    "accepted_per_step", "max_accepted_per_step", "canvases", "steps_per_canvas",
)


def generated_tokens(trace: Trace, row: int) -> int:
    """Output tokens of ``row`` that are not padding (transformers' count for tokens per
    forward pass: the padding after ``<eos>`` is not generated text)."""
    out = trace.output_ids[row]
    pad = trace.settings.get("pad_token_id")
    return int(out.size if pad is None else (out != pad).sum())


def run_stats(trace: Trace) -> Any:
    """One row per batch row, the columns of `STATS_COLUMNS` (a pandas DataFrame).

    - ``forward_passes``: decoder forward passes the row used (`Trace.forward_passes`);
    - ``tokens``: tokens generated (padding after ``<eos>`` not counted);
    - ``tokens_per_forward``: tokens / forward passes;
    - ``wall_seconds``: the run's wall time (``meta["wall_seconds"]``, else the sum of its
      steps' times), shared by the rows of a batch; ``tokens_per_second``: tokens / that;
    - ``accepted_per_step`` / ``max_accepted_per_step``: positions newly accepted per active
      step (accepted this step and not the step before: what a step decides in parallel);
    - ``canvases``, ``steps_per_canvas``: canvases and the mean active steps per canvas.
    """
    import pandas as pd

    wall = trace.meta.get("wall_seconds")
    wall = float(wall) if isinstance(wall, int | float) else float(np.sum(trace.step_seconds))
    rows = []
    for b in range(trace.batch_size):
        active = trace.active[b]
        new = _newly_accepted(trace, b)[active] if trace.num_steps else np.zeros(0)
        passes = trace.forward_passes(b)
        tokens = generated_tokens(trace, b)
        canvases = trace.num_canvases
        rows.append({
            "forward_passes": passes,
            "tokens": tokens,
            "tokens_per_forward": tokens / passes if passes else np.nan,
            "wall_seconds": wall,
            "tokens_per_second": tokens / wall if wall > 0 else np.nan,
            "accepted_per_step": float(new.mean()) if new.size else np.nan,
            "max_accepted_per_step": int(new.max()) if new.size else 0,
            "canvases": canvases,
            "steps_per_canvas": float(active.sum()) / canvases if canvases else np.nan,
        })
    frame = pd.DataFrame(rows, columns=list(STATS_COLUMNS))
    frame.index.name = "row"
    return frame


def _newly_accepted(trace: Trace, row: int) -> np.ndarray:
    """int ``[S]``: positions accepted at each step that were not accepted the step before
    (within its canvas; a canvas's first step counts all it accepts)."""
    acc = trace.accepted[row]
    prev = np.zeros_like(acc)
    prev[1:] = acc[:-1]
    prev[trace.canvas_bounds[:, 0]] = False  # a canvas starts afresh
    return (acc & ~prev).sum(axis=-1)


def routing_steps(trace: Trace) -> dict[str, np.ndarray]:
    """How the decoder's routing moves between steps, per row, step and layer (``[B, S, N]``).

    - ``experts_used``: distinct experts the row's positions were routed to (top-k) at the step;
    - ``similarity``: weighted Jaccard of each position's expert weights with the step before's
      (``sum_e min(w, w') / sum_e max(w, w')`` over the top-k experts of both), averaged over
      positions; NaN at a canvas's first step, where there is no step before;
    - ``similarity_changed`` / ``similarity_stayed``: the same average over the positions whose
      token (the one the decoder read) changed since the step before / stayed (NaN if none).

    Steps where the row was no longer active repeat nothing: they are NaN (similarity) and 0.
    """
    if trace.expert_ids is None:
        raise ValueError("This trace has no routing (recorded with routing=False).")
    ids = trace.expert_ids.astype(np.int64)  # [B, S, N, L, k]
    weights = np.abs(trace.expert_weights.astype(np.float32))
    b, s, n, _, _ = ids.shape
    used = np.zeros((b, s, n), dtype=np.int32)
    num_experts = trace.num_experts or int(ids.max()) + 1
    for layer in range(n):  # distinct ids: a bincount per (row, step) over positions x k
        flat = ids[:, :, layer].reshape(b * s, -1)
        offsets = (np.arange(b * s) * num_experts)[:, None]
        hits = np.bincount((flat + offsets).ravel(), minlength=b * s * num_experts)
        used[:, :, layer] = (hits.reshape(b * s, num_experts) > 0).sum(-1).reshape(b, s)
    jac = np.full((b, s, n, trace.canvas_length), np.nan, dtype=np.float32)
    follows = np.ones(s, dtype=bool)
    follows[0] = False
    follows[trace.canvas_bounds[:, 0]] = False  # a canvas's first step has no step before
    cur = np.flatnonzero(follows)
    for layer in range(n if cur.size else 0):  # a layer at a time: [B, s', L, k, k] at most
        a_ids, a_w = ids[:, cur, layer], weights[:, cur, layer]
        p_ids, p_w = ids[:, cur - 1, layer], weights[:, cur - 1, layer]
        match = a_ids[..., :, None] == p_ids[..., None, :]
        shared = np.where(match, np.minimum(a_w[..., :, None], p_w[..., None, :]), 0).sum((-1, -2))
        union = a_w.sum(-1) + p_w.sum(-1) - shared
        with np.errstate(invalid="ignore", divide="ignore"):
            jac[:, cur, layer] = np.where(union > 0, shared / union, 1.0)
    live = trace.active.copy()
    live[:, 1:] &= trace.active[:, :-1]  # both steps active
    jac[~live] = np.nan
    used[~trace.active] = 0
    changed = np.zeros(trace.canvas_in.shape, dtype=bool)
    changed[:, 1:] = trace.canvas_in[:, 1:] != trace.canvas_in[:, :-1]
    changed = changed[:, :, None, :]  # [B, S, 1, L]
    return {
        "experts_used": used,
        "similarity": _nanmean(jac, np.ones_like(changed)),
        "similarity_changed": _nanmean(jac, changed),
        "similarity_stayed": _nanmean(jac, ~changed),
    }


def _nanmean(values: np.ndarray, where: np.ndarray) -> np.ndarray:
    """Mean over the last axis of the finite ``values`` selected by ``where``; NaN if none."""
    take = np.isfinite(values) & where
    count = take.sum(-1)
    total = np.where(take, values, 0).sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan).astype(np.float32)


# ============================================================================ convergence
def steps_to_lock(trace: Trace, fraction: float, row: int = 0) -> float:
    """Steps a canvas takes until ``fraction`` of its positions hold their final token.

    Per canvas: the smallest ``n`` such that after its ``n``-th step at least
    ``ceil(fraction * L)`` positions hold, from there to the end, the token the canvas ends
    with (`Trace.lock_in`). Averaged over the run's canvases; NaN for an empty trace. Only
    positions the run generated count (`generated_positions`).
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction must be in (0, 1] (got {fraction!r}).")
    if trace.num_steps == 0 or trace.num_canvases == 0:
        return math.nan
    generated = generated_positions(trace, row)
    per_canvas = []
    for c in range(trace.num_canvases):
        start = trace.canvas_bounds[c, 0]
        steps = np.sort(trace.lock_in[row, c][generated[c]] - start + 1)
        if steps.size:
            need = max(1, math.ceil(fraction * steps.size - 1e-9))
            per_canvas.append(int(steps[need - 1]))
    return float(np.mean(per_canvas)) if per_canvas else math.nan


def mean_final_confidence(trace: Trace, row: int = 0) -> float:
    """Mean top-1 probability over every generated position (`generated_positions`) at its
    canvas's last active step."""
    if trace.num_steps == 0:
        return math.nan
    last = trace.last_active_step[row]  # [C]
    return float(trace.confidence[row, last][generated_positions(trace, row)].mean())


def generated_positions(trace: Trace, row: int = 0) -> np.ndarray:
    """bool ``[C, L]``: the canvas positions the run generated, the ones lock-in measures count.

    Every position of a DiffusionGemma canvas. In masked diffusion (LLaDA2) a block that starts
    inside the prompt (the prompt's length is not a multiple of ``block_length``) holds the
    prompt's last tokens in its first positions: given, never masked, not generated. They are
    the positions not masked when the block starts.
    """
    shape = (trace.num_canvases, trace.canvas_length)
    mask = trace.mask_token_id
    if mask is None or trace.num_steps == 0:
        return np.ones(shape, dtype=bool)
    return trace.canvas_in[row, trace.canvas_bounds[:, 0]] == mask


def token_agreement(ids: np.ndarray, reference: np.ndarray) -> float:
    """Share of output positions equal to the reference's (over the longer of the two)."""
    a, b = np.asarray(ids).ravel(), np.asarray(reference).ravel()
    n = max(a.size, b.size)
    if n == 0:
        return 1.0
    pa = np.full(n, -1, np.int64)
    pb = np.full(n, -2, np.int64)
    pa[: a.size], pb[: b.size] = a, b
    return float((pa == pb).mean())


def prediction_lock_in(trace: Trace, row: int = 0) -> np.ndarray:
    """int ``[C, L]``: first step from which the model's top-1 prediction is the final token.

    Like `Trace.lock_in`, but on the argmax of each step's distribution (``topk_ids[..., 0]``)
    instead of the draft. For transformers the two agree (its draft is the argmax); for diffusers,
    whose draft is the canvas it keeps (random tokens until committed), this says when the model
    already predicted what the canvas ends with: the same measure for both libraries.
    """
    return trace.holds_final_from(trace.topk_ids[..., 0])[row]


def lock_fraction_curve(trace: Trace, row: int = 0,
                        basis: str = "draft") -> tuple[np.ndarray, np.ndarray]:
    """``(forward passes, fraction)``: share of all the run's positions holding their final token.

    Starts at ``(0, 0)``; after step ``s`` the x value is the forward passes so far (diffusers'
    corrector sweeps spread evenly over the steps) and the y value counts positions of finished
    canvases as final and positions of later canvases as not yet final (generated positions
    only: `generated_positions`). ``basis="draft"`` uses
    `Trace.lock_in` (what the run shows); ``"prediction"`` uses `prediction_lock_in`.
    """
    if basis not in ("draft", "prediction"):
        raise ValueError('basis must be "draft" or "prediction".')
    s = trace.num_steps
    if s == 0:
        return np.zeros(1), np.zeros(1)
    lock = (trace.lock_in[row] if basis == "draft" else prediction_lock_in(trace, row))
    lock = lock[generated_positions(trace, row)]
    steps = np.arange(s)
    frac = (lock[None, :] <= steps[:, None]).mean(axis=1)
    passes = np.cumsum(trace.step_passes(row)).astype(np.float64)
    total = trace.forward_passes(row)
    if passes[-1] > 0 and total != passes[-1]:  # an older trace: only the total is known
        passes = passes * (total / passes[-1])
    return np.r_[0.0, passes], np.r_[0.0, frac]
