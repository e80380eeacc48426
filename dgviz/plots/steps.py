"""Figures over the step timeline: confidence and entropy heatmaps, the lock-in map, the
convergence curve, accepted per step."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import plotly.graph_objects as go

from .. import palette
from ..trace import FINAL, KEPT, NEW, STATE_NAMES, Trace, visible
from ._common import (
    INK,
    TIMELINE_BELOW,
    View,
    bin_mean,
    boundary,
    counter,
    discrete_scale,
    gapped,
    legend_entries,
    position_px,
    remaining_text,
    setting,
    size,
    step_custom,
    step_hover,
    texts,
    thin,
    timeline,
    view,
)


# ============================================================================ heatmaps
def _value_heatmap(
    trace: Trace, values: np.ndarray, row: int, canvas: int | None, max_cells: int | None, *,
    name: str, unit: str, scale: str, zmin: float | None, zmax: float | None, fmt: str,
) -> go.Figure:
    v = view(trace, row, canvas)
    steps, length = v.steps, trace.canvas_length
    z = values[row, steps].astype(np.float64)  # [n, L]
    z[~v.active] = np.nan
    draft = texts(trace, trace.draft[row, steps])  # [n, L]
    th = thin(steps.size, length, max_cells)
    x = last = steps
    if th.thinned:
        z = bin_mean(z, th.starts, axis=0)
        draft = draft[th.ends]
        x, last = steps[th.starts], steps[th.ends]
    if zmax is None:  # plotly needs both bounds; keep 0 as the floor
        finite = z[np.isfinite(z)]
        zmax = max(float(finite.max()) if finite.size else 1.0, (zmin or 0.0) + 1e-6)
    fig = go.Figure(
        go.Heatmap(
            z=z.T.astype(np.float32), x=x, y=np.arange(length), text=draft.T,
            customdata=step_custom(trace, last, length),
            colorscale=scale, zmin=zmin, zmax=zmax,
            colorbar=dict(title=dict(text=unit, side="right"), thickness=14),
            hovertemplate=(
                step_hover(th.thinned) + "<br>position %{y}<br>draft %{text}<br>"
                f"{name} %{{z:{fmt}}}<extra></extra>"
            ),
            hoverongaps=False,
        )
    )
    v.layout(fig, f"{name.capitalize()} per position and step",
             th.mean_note(f"{length}×{steps.size}"))
    fig.update_yaxes(title_text="position in canvas", autorange="reversed", showgrid=False)
    timeline(fig, trace, steps)
    return size(fig, position_px(length), below=TIMELINE_BELOW)


def confidence_heatmap(
    trace: Trace, row: int = 0, canvas: int | None = None, max_cells: int | None = None
) -> go.Figure:
    """Confidence (top probability after the temperature schedule), position x step.

    ``z`` is ``trace.confidence[row, steps].T`` (positions down, steps across), blank where the
    row had stopped; hover shows the draft token after that step.
    """
    return _value_heatmap(
        trace, trace.confidence, row, canvas, max_cells, name="confidence",
        unit="top probability", scale=palette.CONFIDENCE_SCALE, zmin=0.0, zmax=1.0, fmt=".3f",
    )


def entropy_heatmap(
    trace: Trace, row: int = 0, canvas: int | None = None, max_cells: int | None = None
) -> go.Figure:
    """Entropy (nats) of each position's distribution, position x step (low = sure)."""
    return _value_heatmap(
        trace, trace.entropy, row, canvas, max_cells, name="entropy",
        unit="entropy (nats)", scale=palette.ENTROPY_SCALE, zmin=0.0, zmax=None, fmt=".3f",
    )


# ============================================================================ lock-in map
def lock_in_map(
    trace: Trace, row: int = 0, canvas: int | None = None, max_cells: int | None = None,
    highlight: Iterable[int] | None = None,
) -> go.Figure:
    """Each position's state at each step, in the widget's four colours; lock-in and flips marked.

    Cells are `Trace.states` (re-noised or, masked diffusion, masked / accepted this step /
    accepted earlier / final). The
    green "final" region of a position starts at its lock-in step (`Trace.lock_in`: the draft
    holds its final token from there on, accepted or not), marked with a bar; ``×`` marks a step
    where the draft changed (a flip; `Trace.flips` counts them). Positions final from their
    canvas's first step get no bar. ``highlight``: canvas positions to outline (e.g. the wrong
    cells of an answer: "final" means the token it ends with, right or wrong).
    """
    v = view(trace, row, canvas)
    steps, length = v.steps, trace.canvas_length
    marked = sorted({int(p) for p in highlight}) if highlight is not None else []
    if any(not 0 <= p < length for p in marked):
        raise ValueError(f"highlight: positions must be in 0..{length - 1}, got {marked}.")
    th = thin(steps.size, length, max_cells)
    fig = go.Figure(_state_heatmap(v, th))
    fig.add_trace(_lock_in_marks(v))
    fs, fp = np.nonzero(_flip_cells(v))
    n_flips = int(fs.size)
    note = th.shown_note("step", f"{length}×{steps.size}")  # categorical: last step of a bin
    if 0 < n_flips <= setting("MAX_MARKERS"):
        fig.add_trace(
            go.Scatter(
                x=steps[fs], y=fp, mode="markers", name="flip (draft changed)",
                marker=dict(symbol="x-thin", size=6, line=dict(width=1.5, color=INK)),
                hoverinfo="skip",
            )
        )
    elif n_flips > setting("MAX_MARKERS"):
        note = (note + " · " if note else "") + f"{n_flips:,} flips: counts in hover only"
    for p in marked:  # an outline along the position's row, over every step shown
        fig.add_shape(type="rect", x0=steps[0] - 0.5, x1=steps[-1] + 0.5, y0=p - 0.5, y1=p + 0.5,
                      line=dict(color=INK, width=2))
    if marked:
        fig.add_trace(go.Scatter(
            x=[None], y=[None], mode="markers", marker=dict(symbol="square-open", size=12,
                                                            color=INK),
            name="highlighted: position" + ("s " if len(marked) > 1 else " ")
            + ", ".join(map(str, marked[:12])) + (" …" if len(marked) > 12 else "")))
    v.layout(fig, "Lock-in map: state of every position at every step", note)
    fig.update_yaxes(title_text="position in canvas", autorange="reversed", showgrid=False)
    timeline(fig, trace, steps)
    return size(fig, position_px(length), below=TIMELINE_BELOW, legend=legend_entries(fig))


def _state_heatmap(v: View, th) -> go.Heatmap:
    """`Trace.states` of the view as cells, with token, state, lock-in step and flips in the
    hover (beyond the cell limit, the last step of each bin)."""
    trace, row, steps, length = v.trace, v.row, v.steps, v.trace.canvas_length
    canv = trace.step_canvas[steps]
    keep = th.ends if th.thinned else slice(None)
    x = steps[keep]
    z = trace.states[row, steps][keep]  # [n, L]
    cells = texts(trace, trace.draft[row, steps])[keep]
    pos = np.arange(length)[None, :]
    lock = trace.lock_in[row][canv[:, None], pos][keep]  # [n, L]
    flips = trace.flips[row][canv[:, None], pos][keep]
    names = np.array(STATE_NAMES, dtype=object)
    text = cells + " · " + names[z.astype(int)]  # token and state, one string a cell
    shown = trace.state_values  # the run's own states (masked diffusion: "masked", no re-noise)
    # colours indexed by legend rank, so the colour bar has no band for a state the run lacks
    rank = np.zeros(max(shown) + 1, dtype=np.int8)
    rank[list(shown)] = np.arange(len(shown))
    n = len(shown)
    custom = np.concatenate(
        [step_custom(trace, x, length), lock.T[..., None], flips.T[..., None]], axis=-1
    ).astype(np.int32)
    return go.Heatmap(
        z=rank[z.T.astype(np.int64)], x=x, y=np.arange(length), text=text.T, customdata=custom,
        colorscale=discrete_scale([palette.STATE_COLORS[s] for s in shown]), zmin=-0.5,
        zmax=n - 0.5,
        colorbar=dict(
            tickvals=list(range(n)), ticktext=[STATE_NAMES[s] for s in shown],
            thickness=14, title=dict(text="state"),
        ),
        xgap=0, ygap=1 if length <= 40 else 0, name="state",
        hovertemplate=(
            step_hover(False) + "<br>position %{y}<br>draft %{text}<br>"
            "locked in at step %{customdata[3]} · flips %{customdata[4]}<extra></extra>"
        ),
    )


def _lock_in_marks(v: View) -> go.Scatter:
    """A bar at each position's lock-in step (`Trace.lock_in`), in every canvas shown; none for
    positions final from their canvas's first step."""
    trace, row, length = v.trace, v.row, v.trace.canvas_length
    lx, ly, lt = [], [], []
    for c in np.unique(trace.step_canvas[v.steps]):
        lk = trace.lock_in[row, c]
        later = np.flatnonzero(lk > trace.canvas_bounds[c, 0])
        lx.extend((lk[later] - 0.5).tolist())
        ly.extend(later.tolist())
        finals = trace.tokens(trace.final_tokens[row, c][later])
        lt.extend(
            f"position {p}: final token {visible(t)} from step {int(s)}"
            for p, t, s in zip(later, finals, lk[later], strict=True)
        )
    return go.Scatter(
        x=lx, y=ly, mode="markers", name="lock-in (holds final token from here)",
        marker=dict(symbol="line-ns", size=max(6, min(16, 500 // max(length, 1))),
                    line=dict(width=2.5, color=INK)),
        text=lt, hovertemplate="%{text}<extra></extra>",
    )


def _flip_cells(v: View) -> np.ndarray:
    """bool ``[n, L]``: the draft changed from the step before, both steps active and in one
    canvas (the changes `Trace.flips` counts)."""
    trace, steps = v.trace, v.steps
    draft = trace.draft[v.row, steps]
    canv = trace.step_canvas[steps]
    changed = np.zeros(draft.shape, dtype=bool)
    changed[1:] = draft[1:] != draft[:-1]
    if trace.mask_token_id is not None:  # filling a mask is no flip (as `Trace.flips`)
        changed[1:] &= draft[:-1] != trace.mask_token_id
    changed[np.r_[True, canv[1:] != canv[:-1]]] = False
    changed &= v.active[:, None]
    if steps.size > 1:
        changed &= np.r_[False, v.active[:-1]][:, None]
    return changed


# ============================================================================ curves
def convergence_curve(trace: Trace, row: int = 0, canvas: int | None = None) -> go.Figure:
    """Fraction of the canvas that already holds its final token, against step (lock-in).

    Also drawn, to show that they differ: the fraction the sampler *accepted* at that step, and
    the fraction *stable* (draft unchanged since the step before). Stable or accepted is not
    settled: a position can be accepted with a token it later loses.
    """
    v = view(trace, row, canvas)
    steps = v.steps
    canv = trace.step_canvas[steps]
    locked = (steps[:, None] >= trace.lock_in[row][canv]).mean(axis=1)
    accepted = trace.accepted[row, steps].mean(axis=1).astype(np.float64)
    draft = trace.draft[row, steps]
    stable = np.full(steps.size, np.nan)
    stable[1:] = (draft[1:] == draft[:-1]).mean(axis=1)
    stable[~np.r_[False, canv[1:] == canv[:-1]]] = np.nan
    for arr in (locked, accepted, stable):
        arr[~v.active] = np.nan
    remaining = np.array(remaining_text(trace, steps), dtype=object)
    fig = go.Figure()
    for y, name, color, dash in (
        (locked, "holds its final token (lock-in)", palette.STATE_COLORS[FINAL], "solid"),
        (accepted, "accepted by the sampler this step", palette.STATE_COLORS[NEW], "dash"),
        (stable, "stable (draft same as the step before)", "#0072B2", "dot"),
    ):
        x, y, custom = gapped(trace, steps, y, remaining)
        fig.add_trace(
            go.Scatter(
                x=x, y=y, name=name, mode="lines+markers", customdata=custom,
                line=dict(color=color, width=3 if dash == "solid" else 2, dash=dash),
                marker=dict(size=4),
                hovertemplate="step %{x} · %{customdata}<br>" + name
                + ": %{y:.1%}<extra></extra>",
            )
        )
    v.layout(fig, "Convergence: share of the canvas already final")
    fig.update_yaxes(title_text="share of canvas positions", tickformat=".0%", range=[-0.02, 1.02])
    timeline(fig, trace, steps)
    return size(fig, 320, below=TIMELINE_BELOW, legend=legend_entries(fig))


def accepted_per_step(trace: Trace, row: int = 0, canvas: int | None = None) -> go.Figure:
    """Positions accepted per step (new vs kept), and tokens per forward pass so far.

    Top: stacked bars, positions the sampler accepted at each step, split into newly accepted
    and accepted again. Bottom: final tokens so far (positions already holding their final
    token, all canvases, padding not counted) divided by forward passes so far, on a log axis;
    it ends at the dashed line, transformers' ``tokens_per_forward`` for the run.
    """
    from plotly.subplots import make_subplots

    v = view(trace, row, canvas)
    steps = v.steps
    new, again = _new_and_again(v)
    tpf = _tokens_per_forward_so_far(v)
    remaining = remaining_text(trace, steps)
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, row_heights=[0.6, 0.4], vertical_spacing=0.08,
    )
    for y, name, color in (
        (new, f"{STATE_NAMES[NEW]} (newly accepted)", palette.STATE_COLORS[NEW]),
        (again, f"{STATE_NAMES[KEPT]} (accepted the step before too)",
         palette.STATE_COLORS[KEPT]),
    ):
        fig.add_trace(
            go.Bar(
                x=steps, y=y, name=name, marker_color=color, customdata=remaining,
                hovertemplate="step %{x} · %{customdata}<br>" + name + ": %{y}<extra></extra>",
            ),
            row=1, col=1,
        )
    fig.add_trace(
        go.Scatter(
            x=steps, y=tpf, name="final tokens so far / forward passes so far",
            mode="lines+markers", line=dict(color=palette.STATE_COLORS[FINAL], width=3),
            marker=dict(size=4), customdata=remaining,
            hovertemplate="step %{x} · %{customdata}<br>tokens per forward so far %{y:.2f}"
            "<extra></extra>",
        ),
        row=2, col=1,
    )
    recorded = float(trace.tokens_per_forward[row])
    fig.add_trace(
        go.Scatter(
            x=[steps[0] - 0.5, steps[-1] + 0.5], y=[recorded, recorded], mode="lines",
            line=dict(color=INK, dash="dash", width=1.5),
            name=f"run: {recorded:.2f} tokens / forward ({counter(trace)})",
            hovertemplate=f"tokens_per_forward {recorded:.3f}<extra></extra>",
        ),
        row=2, col=1,
    )
    v.layout(
        fig, "Accepted per step and tokens per forward pass",
        f"{trace.forward_passes(row)} forward passes", barmode="stack",
        legend=dict(traceorder="normal"), bargap=0.1,
    )
    top = int(max((new + again).max(), 1))
    fig.update_yaxes(title_text="positions accepted", rangemode="tozero", tickformat="d",
                     dtick=1 if top <= 8 else None, row=1, col=1)
    ticks = _log_ticks(tpf, recorded)
    fig.update_yaxes(title_text="tokens / forward (log)", type="log", tickmode="array",
                     tickvals=ticks, ticktext=[f"{t:g}" for t in ticks], row=2, col=1)
    timeline(fig, trace, steps, row=2, col=1, top_axis=True, label_canvases=True)
    fig.update_xaxes(showgrid=False, row=1, col=1)
    for c in np.unique(trace.step_canvas[steps])[1:]:
        boundary(fig, int(trace.canvas_bounds[c, 0]) - 0.5, row=1, col=1)
    # 420 px: each panel's y axis title fits beside its own panel, clear of the other's
    return size(fig, 420, below=TIMELINE_BELOW, legend=legend_entries(fig))


def _new_and_again(v: View) -> tuple[np.ndarray, np.ndarray]:
    """Positions accepted at each step shown, split into newly accepted and accepted again
    (also the step before, in the same canvas): the sampler's view, independent of lock-in
    (which `Trace.states` folds in)."""
    trace, row = v.trace, v.row
    acc = trace.accepted[row, v.steps] & v.active[:, None]
    prev_full = np.zeros_like(trace.accepted[row])
    prev_full[1:] = trace.accepted[row, :-1]
    prev_full[trace.canvas_bounds[:, 0]] = False
    prev = prev_full[v.steps] & acc
    return (acc & ~prev).sum(axis=1), prev.sum(axis=1)


def _tokens_per_forward_so_far(v: View) -> np.ndarray:
    """float ``[n]``: positions holding their final token in every canvas so far (`Trace.lock_in`;
    padding left out, as transformers does for ``tokens_per_forward``) / forward passes so far."""
    trace, row = v.trace, v.row
    length = trace.canvas_length
    out = trace.output_ids[row]
    final = (
        out.reshape(trace.num_canvases, length)
        if out.size == trace.num_canvases * length else trace.final_tokens[row]
    )
    pad = trace.settings.get("pad_token_id")
    counted = final != pad if pad is not None else np.ones(final.shape, dtype=bool)
    before = np.r_[0, np.cumsum(counted.sum(axis=1))]
    locked_now = np.zeros(trace.num_steps)
    for s in range(trace.num_steps):
        c = trace.step_canvas[s]
        locked_now[s] = before[c] + ((s >= trace.lock_in[row, c]) & counted[c]).sum()
    forwards = np.cumsum(trace.active[row].astype(np.int64))
    with np.errstate(invalid="ignore", divide="ignore"):
        tpf = np.where(forwards > 0, locked_now / np.maximum(forwards, 1), np.nan)
    tpf = tpf[v.steps]
    tpf[~v.active] = np.nan
    return tpf


def _log_ticks(values: np.ndarray, recorded: float) -> list[float]:
    """1-2-5 ticks spanning ``values`` and ``recorded`` (a log axis: early steps, few forwards
    and many settled tokens, would squash the end on a linear one)."""
    finite = values[np.isfinite(values) & (values > 0)]
    lo = min(float(finite.min()) if finite.size else recorded, recorded)
    hi = max(float(finite.max()) if finite.size else recorded, recorded)
    return [t for t in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
            if lo / 2 <= t <= hi * 2]
