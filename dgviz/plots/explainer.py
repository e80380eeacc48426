"""The sampler explainer: why the sampler accepted what it did at one step (DiffusionGemma's
entropy bound; for masked diffusion, the scheduler's commits against its threshold)."""

from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go

from .. import palette
from ..trace import MASKED, NEW, RENOISED, STATE_NAMES, Trace
from ._common import BUDGET_LEFT, INK, MUTED, check_step, legend_entries, size, texts, view

_BOUND_COLOR = "#D55E00"  # Okabe-Ito vermillion: the entropy bound
_ALL = "all positions"
_PANEL_PX = 190  # each panel's height
_GAP_PX = 70  # between the panels: the top panel's tick labels, then the zoom panel's caption


def sampler_explainer(trace: Trace, step: int | None = None, row: int = 0) -> go.Figure:
    """Why the entropy-bound sampler accepted what it did at one step.

    Bars: every position's entropy, sorted (lowest first), coloured accepted / re-noised as
    recorded. Line: the sampler's criterion ``sum(entropy_1..k) - max(entropy_1..k)`` for the k
    lowest; it accepts while that stays under ``entropy_bound`` (dashed). The top panel shows
    every position; the bottom one zooms on the bound, where the decision is made. ``step`` is
    a global step (default: step 0).
    """
    from plotly.subplots import make_subplots

    v = view(trace, row)
    step = 0 if step is None else step
    check_step(trace, step)
    if trace.mask_token_id is not None:  # masked diffusion (LLaDA2): another rule
        return _masked_explainer(trace, v, step, row)
    ex = trace.sampler_explainer(step, row=row)
    n = ex["order"].size
    acc = np.asarray(ex["accepted"], dtype=bool)
    crit = np.asarray(ex["criterion"], dtype=np.float64)
    sorted_ent = np.asarray(ex["sorted_entropy"], dtype=np.float64)
    bound = float(ex["bound"])
    zoom_top = 3 * bound if math.isfinite(bound) else None
    zoom_log = None  # (low, high) of a log axis when the zoom's bars are tiny beside the bound
    if zoom_top:
        first, last = _zoom_ranks(crit, bound)
        shown = sorted_ent[first : last + 1]
        shown = shown[shown > 0]
        if shown.size and shown.max() < bound / 5:  # a sure model: many tiny entropies
            zoom_log = (math.log10(shown.min() / 2), math.log10(zoom_top))
    fig = make_subplots(
        rows=2, cols=1, row_heights=[0.5, 0.5],
        vertical_spacing=_GAP_PX / (2 * _PANEL_PX + _GAP_PX),
        subplot_titles=(
            _ALL,
            (f"zoom on the decision: ranks around the cut, log scale up to {zoom_top:g} nats"
             if zoom_log else
             f"zoom on the decision: entropies up to {zoom_top:g} nats, ranks around the cut")
            if zoom_top else "",
        ),
    )
    for r in (1, 2):
        fig.add_trace(_entropy_bars(trace, row, step, ex), row=r, col=1)
        fig.add_trace(
            go.Scatter(
                x=np.arange(n), y=crit, mode="lines+markers", name="criterion: Σ entropy − max",
                line=dict(color=INK, width=2), marker=dict(size=4), showlegend=r == 1,
                hovertemplate="k=%{x}: Σ−max = %{y:.4f}<extra></extra>",
            ),
            row=r, col=1,
        )
        if math.isfinite(bound):
            fig.add_hline(
                y=bound, line=dict(color=_BOUND_COLOR, dash="dash", width=2), row=r, col=1,
                # top left: sorted lowest first, so the low bars there never cross the label
                annotation_text=f"entropy_bound {bound:g}", annotation_position="top left",
                annotation_font=dict(color=_BOUND_COLOR),
            )
    for i in (NEW, _not_accepted(trace)):  # legend entries for the two bar colours
        fig.add_trace(
            go.Scatter(x=[None], y=[None], mode="markers",
                       name=f"entropy of a position: {STATE_NAMES[i]}",
                       marker=dict(symbol="square", size=12, color=palette.STATE_COLORS[i]))
        )
    ymax = float(np.nanmax(sorted_ent)) if n else 1.0
    v.layout(fig, "Sampler explainer: entropy-bound acceptance", _note(trace, row, step, acc),
             bargap=0.05)
    fig.update_layout(margin=dict(t=110), title_pad_b=40)  # room for the top panel's caption
    fig.update_xaxes(title_text="positions sorted by entropy (rank, lowest first)", row=2, col=1)
    fig.update_yaxes(title_text="nats", range=[0, 1.1 * max(ymax, 1e-6)], row=1, col=1)
    if zoom_log:
        fig.update_yaxes(title_text="nats (log)", type="log", range=list(zoom_log), row=2, col=1)
    elif zoom_top:
        fig.update_yaxes(title_text="nats", range=[0, zoom_top], row=2, col=1)
    if zoom_top:
        fig.update_xaxes(range=[first - 0.5, last + 0.5], row=2, col=1)
    for a in fig.layout.annotations:
        if a.text == _ALL or str(a.text).startswith("zoom on"):
            a.update(x=0, xanchor="left", font=dict(size=12, color=MUTED))
    return size(fig, 2 * _PANEL_PX + _GAP_PX, legend=legend_entries(fig))


def _entropy_bars(trace: Trace, row: int, step: int, ex: dict) -> go.Bar:
    """Every position's entropy, lowest first, orange if accepted (one trace, both panels)."""
    order = ex["order"]
    acc = np.asarray(ex["accepted"], dtype=bool)
    crit = np.asarray(ex["criterion"], dtype=np.float64)
    colors = np.where(acc, palette.STATE_COLORS[NEW],
                      palette.STATE_COLORS[_not_accepted(trace)]).tolist()
    return go.Bar(
        x=np.arange(order.size), y=np.asarray(ex["sorted_entropy"], dtype=np.float64),
        marker_color=colors, name="entropy", showlegend=False,
        text=texts(trace, trace.draft[row, step][order]),
        customdata=np.stack([order, crit], axis=-1), textposition="none",
        hovertemplate=(
            "rank %{x} · position %{customdata[0]}<br>draft %{text}<br>"
            "entropy %{y:.4f} nats<br>criterion %{customdata[1]:.4f}<extra></extra>"
        ),
    )


def _where(trace: Trace, step: int) -> str:
    """The step's place in the run, as both explainers' notes start."""
    return (f"step {step} (canvas {int(trace.step_canvas[step])}, "
            f"{BUDGET_LEFT}: {int(trace.step_remaining[step])})")


def _note(trace: Trace, row: int, step: int, acc: np.ndarray) -> str:
    temp = float(trace.temperature[step])
    note = (
        f"{_where(trace, step)} · accepted {int(acc.sum())} of {acc.size}"
        + (f" · temperature {temp:.2f}" if math.isfinite(temp) else "")
        + ("" if trace.active[row, step] else " · row had stopped")
    )
    sampler = trace.settings.get("sampler", "EntropyBoundSampler")
    if sampler != "EntropyBoundSampler":
        note += f" · recorded with {sampler}: the entropy-bound rule shown may not be its rule"
    return note


def _masked_explainer(trace: Trace, v, step: int, row: int) -> go.Figure:
    """Masked diffusion (diffusers' `BlockRefinementScheduler`): the positions masked before the
    step, most confident first, orange where the scheduler committed them this step, against its
    threshold (it commits every position above it, or the step's quota of the most confident)."""
    mask = trace.mask_token_id
    read, draft = trace.canvas_in[row, step], trace.draft[row, step]
    conf = trace.confidence[row, step].astype(np.float64)
    masked = np.flatnonzero(read == mask)
    order = masked[np.lexsort((masked, -conf[masked]))]  # most confident first, then position
    committed = draft[order] != mask
    edited = int(((read != mask) & (draft != read)).sum())
    still = int((draft == mask).sum())
    settings = trace.settings_at(step)
    threshold, editing = settings.get("threshold"), settings.get("editing_threshold")
    if not (isinstance(threshold, int | float) and math.isfinite(threshold)):
        threshold = None
    sampler = settings.get("sampler", "scheduler")
    rule = "committed this step" + (
        f": above the threshold {threshold:g}, or the step's quota of the most confident"
        if threshold is not None else "")
    fig = go.Figure()
    for done in (True, False):  # one trace per colour: a legend entry each
        state = NEW if done else MASKED
        pick = np.flatnonzero(committed == done)
        fig.add_trace(go.Bar(
            x=pick, y=conf[order[pick]], name=rule if done else "left masked",
            marker_color=palette.STATE_COLORS[state],
            text=texts(trace, draft[order[pick]]), customdata=order[pick], textposition="none",
            hovertemplate="rank %{x} · position %{customdata}<br>draft %{text}<br>"
            "confidence %{y:.4f}<extra></extra>",
        ))
    if threshold is not None:
        fig.add_hline(y=threshold, line=dict(color=_BOUND_COLOR, dash="dash", width=2),
                      annotation_text=f"threshold {threshold:g}", annotation_position="top right",
                      annotation_font=dict(color=_BOUND_COLOR))
    note = (f"{_where(trace, step)} · {sampler}: committed {int(committed.sum())} of "
            f"{order.size} masked"
            + (f" · edited {edited}" if isinstance(editing, int | float) and editing > 0 else "")
            + f" · {still} still masked")
    v.layout(fig, "Sampler explainer: masked-diffusion commits", note, bargap=0.05,
             barmode="overlay")
    fig.update_xaxes(title_text="positions masked before this step (rank, most confident first)",
                     dtick=1 if order.size <= 20 else None)  # whole ranks
    top = max([float(conf[order].max()) if order.size else 0.0]
              + ([threshold] if threshold is not None else []))
    fig.update_yaxes(title_text="top-1 probability", range=[0, min(1.0, 1.1 * max(top, 1e-6))])
    return size(fig, 2 * _PANEL_PX, legend=legend_entries(fig))


def _zoom_ranks(crit: np.ndarray, bound: float) -> tuple[int, int]:
    """First and last rank of the zoom panel: around where the criterion crosses the bound (the
    cut), at least 24 wide."""
    over = np.flatnonzero(crit > bound)
    cut = int(over[0]) if over.size else crit.size
    first = max(0, cut - 16)
    return first, min(crit.size - 1, max(cut + 8, first + 24))


def _explainer_step(trace: Trace, row: int) -> int:
    """A telling step: in the first canvas, the active step whose accepted count is nearest to
    half the canvas (the sampler had most to decide), the earliest such."""
    steps = trace.canvas_steps(0)
    steps = steps[trace.active[row, steps]] if trace.active[row, steps].any() else steps
    counts = trace.accepted[row, steps].sum(axis=1)
    return int(steps[np.argmin(np.abs(counts - trace.canvas_length / 2))])


def _not_accepted(trace: Trace) -> int:
    """The state a position the sampler did not take is left in: re-noised, or (masked
    diffusion) still masked."""
    return RENOISED if trace.mask_token_id is None else MASKED
