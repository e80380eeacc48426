"""Plotly figures and animated exports of a recorded `Trace`.

Every figure function takes a `Trace` (plus ``row``, the batch row, and usually ``canvas``:
``None`` shows all canvases on the run's global step timeline, an int shows one canvas) and
returns a static `plotly.graph_objects.Figure`. Show it (``fig.show()``), save it
(`save_figure`, PNG/SVG through kaleido) or restyle it like any plotly figure.

The figures speak the model's language:

- the x axis of step figures is the *global* step (all canvases one after another, as in the
  Trace arrays); a second axis on top shows transformers' own count down, the steps left in
  the canvas's budget, this one included (N … 1); canvas boundaries are drawn as vertical lines;
- colours come from `dgviz.palette` (the same as the widget's; colour-blind safe);
- hovering a cell shows the token text (whitespace made visible) and the values.

Steps where the row had already stopped (``trace.active`` False) are left blank: their values
mean nothing. Heatmaps beyond ``max_cells`` cells average (or sample) neighbouring steps and say
so in their title.

`canvas_gif` renders the canvas evolving, one frame per step, with Pillow (no browser needed);
`Trace.to_gif` calls it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import plotly.graph_objects as go

from . import palette
from .trace import FINAL, KEPT, NEW, RENOISED, STATE_NAMES, Trace, visible

__all__ = [
    "MAX_CELLS",
    "MAX_MARKERS",
    "accepted_per_step",
    "all_figures",
    "canvas_gif",
    "confidence_heatmap",
    "convergence_curve",
    "encoder_routing",
    "entropy_heatmap",
    "expert_churn",
    "expert_load",
    "expert_map",
    "expert_weights",
    "lock_in_map",
    "router_entropy",
    "sampler_explainer",
    "save_figure",
]

#: Heatmaps with more cells than this average (or sample) neighbouring steps.
MAX_CELLS = 120_000
#: Flip markers drawn on the lock-in map at most (beyond, flips are in the hover only).
MAX_MARKERS = 4_000

_FONT = dict(family="DejaVu Sans, Arial, sans-serif", size=13)
_INK = "#222222"
# transformers' count down of a canvas's denoising steps (`Trace.step_remaining`, N … 1, the
# current step included); the widget (js/src/view.js) words it the same way
_BUDGET_LEFT = "steps left in the budget"


# ============================================================================ helpers
def _check_row(trace: Trace, row: int) -> None:
    if not 0 <= row < trace.batch_size:
        raise IndexError(f"row {row} out of range: this trace has {trace.batch_size} row(s).")


def _steps(trace: Trace, canvas: int | None) -> np.ndarray:
    """Global step indices shown: the whole run, or one canvas."""
    if canvas is None:
        return np.arange(trace.num_steps)
    if not 0 <= canvas < trace.num_canvases:
        raise IndexError(
            f"canvas {canvas} out of range: this trace has {trace.num_canvases} canvas(es)."
        )
    return trace.canvas_steps(canvas)


def _need_steps(trace: Trace) -> None:
    if trace.num_steps == 0:
        raise ValueError("This trace has no steps (the run was interrupted before the first).")


def _need_routing(trace: Trace, encoder: bool = False) -> None:
    arr = trace.encoder_expert_ids if encoder else trace.expert_ids
    if arr is None:
        part = "encoder (prompt) routing" if encoder else "MoE routing"
        raise ValueError(
            f"This trace has no {part}: record it with "
            "`dgviz.record(model, tokenizer, prompt, routing=True, ...)` (the default) to get "
            "routing figures."
        )


def _num_experts(trace: Trace) -> int:
    if trace.num_experts:
        return int(trace.num_experts)
    ids = [a for a in (trace.expert_ids, trace.encoder_expert_ids) if a is not None]
    return int(max(int(a.max()) for a in ids)) + 1


def _where(trace: Trace, row: int, canvas: int | None) -> str:
    parts = []
    if trace.batch_size > 1:
        parts.append(f"row {row}")
    if canvas is not None:
        parts.append(f"canvas {canvas} (canvases 0–{trace.num_canvases - 1})")
    elif trace.num_canvases > 1:
        parts.append(f"{trace.num_canvases} canvases")
    return " · ".join(parts)


def _title(main: str, trace: Trace, row: int, canvas: int | None, note: str = "") -> dict:
    sub = _where(trace, row, canvas)
    if not trace.complete:
        sub = (sub + " · " if sub else "") + "INCOMPLETE run"
    if note:
        sub = (sub + " · " if sub else "") + note
    text = f"<b>{main}</b>" + (f"<br><sup>{sub}</sup>" if sub else "")
    return dict(text=text, x=0.01, xref="container", xanchor="left", y=1, yref="paper",
                yanchor="bottom", pad=dict(b=22), font=dict(size=16))


def _base_layout(fig: go.Figure, **kwargs: Any) -> go.Figure:
    fig.update_layout(
        template="plotly_white",
        font=_FONT,
        hoverlabel=dict(font=dict(family="DejaVu Sans Mono, monospace", size=12)),
        margin=dict(l=70, r=30, t=90, b=60),
        **kwargs,
    )
    return fig


def _texts(trace: Trace, ids: np.ndarray) -> np.ndarray:
    """Visible token text of every id, same shape (object array)."""
    ids = np.asarray(ids)
    uniq, inv = np.unique(ids, return_inverse=True)
    lut = np.array([visible(t) for t in trace.tokens(uniq)] or [""], dtype=object)
    return lut[inv.reshape(ids.shape)] if ids.size else np.empty(ids.shape, dtype=object)


def _step_bins(n: int, per_col: int, max_cells: int | None) -> tuple[int, np.ndarray]:
    """(factor, first index of each bin) so that ``per_col * n / factor <= max_cells``."""
    max_cells = MAX_CELLS if max_cells is None else max_cells
    factor = max(1, math.ceil(per_col * n / max(1, max_cells)))
    return factor, np.arange(0, n, factor)


def _nth(n: int) -> str:
    """2 -> '2nd', 3 -> '3rd', 11 -> '11th'."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _bin_mean(values: np.ndarray, starts: np.ndarray, axis: int = -1) -> np.ndarray:
    """nan-mean of ``values`` over bins starting at ``starts`` along ``axis``."""
    values = np.moveaxis(np.asarray(values, dtype=np.float64), axis, -1)
    ok = ~np.isnan(values)
    sums = np.add.reduceat(np.where(ok, values, 0.0), starts, axis=-1)
    counts = np.add.reduceat(ok.astype(np.int64), starts, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return np.moveaxis(out, -1, axis)


def _timeline(
    fig: go.Figure,
    trace: Trace,
    steps: np.ndarray,
    *,
    row: int = 1,
    col: int = 1,
    top_axis: bool = True,
    label_canvases: bool = True,
) -> None:
    """Step axis in the model's terms: global step below, steps left in the budget on top,
    canvas lines."""
    steps = np.asarray(steps)
    if steps.size == 0:
        return
    where = {"row": row, "col": col} if fig._grid_ref is not None else {}
    fig.update_xaxes(
        title_text="step (whole run)", range=[steps[0] - 0.5, steps[-1] + 0.5],
        showgrid=False, zeroline=False, title_standoff=30 if label_canvases else None,
        **where,
    )
    if top_axis:
        # room above the plot for the budget axis, the title above it
        fig.update_layout(title_pad_b=62, margin_t=max(fig.layout.margin.t or 0, 140))
        stride = max(1, math.ceil(steps.size / 24))
        ticks = steps[::stride]
        fig.add_trace(
            go.Scatter(
                x=[float(steps[0]), float(steps[-1])], y=[None, None], xaxis="x99",
                showlegend=False, hoverinfo="skip", mode="markers",
            )
        )
        fig.update_layout(
            xaxis99=dict(
                overlaying="x", side="top", matches="x", tickmode="array",
                tickvals=ticks.tolist(),
                ticktext=[str(int(trace.step_remaining[s])) for s in ticks],
                title=dict(text=f"{_BUDGET_LEFT}, this one included (transformers counts down)",
                           font=dict(size=11)),
                showgrid=False, zeroline=False, tickfont=dict(size=10),
            )
        )
    canvases = np.unique(trace.step_canvas[steps])
    bounds = trace.canvas_bounds
    for c in canvases:
        lo, hi = (int(v) for v in bounds[c])
        if c != canvases[0]:
            _boundary(fig, lo - 0.5, **where)
        if label_canvases and canvases.size > 1:
            fig.add_annotation(
                x=(lo + hi - 1) / 2, y=0, yref="paper", yanchor="top", yshift=-22,
                text=f"canvas {c}", showarrow=False, font=dict(size=11, color="#555555"),
            )


def _boundary(fig: go.Figure, x: float, **where: Any) -> None:
    """A canvas boundary readable on any background: white under a dark dotted line."""
    fig.add_vline(x=x, line=dict(color="#FFFFFF", width=4), **where)
    fig.add_vline(x=x, line=dict(color=_INK, width=2, dash="dot"), **where)


def _position_height(length: int) -> int:
    """Figure height for a position axis: taller canvases get taller figures (450–900 px)."""
    return int(min(900, max(450, 200 + 2.5 * length)))


def _int_axis(fig: go.Figure, n: int, axis: str = "y") -> None:
    """Whole-number ticks for a small categorical axis (layers)."""
    if n <= 32:
        getattr(fig, f"update_{axis}axes")(tickmode="linear", tick0=0, dtick=1 if n <= 16 else 2)


def _discrete_scale(colors: Sequence[str]) -> list[list[Any]]:
    n = len(colors)
    scale: list[list[Any]] = []
    for i, c in enumerate(colors):
        scale.append([i / n, c])
        scale.append([(i + 1) / n, c])
    return scale


def _step_custom(trace: Trace, last: np.ndarray, rows: int) -> np.ndarray:
    """int32 ``[rows, n, 3]`` hover data per column: canvas, steps left in the budget, last step.

    Numbers, not strings: plotly ships numeric arrays as compact binary."""
    last = np.asarray(last)
    cols = np.stack([trace.step_canvas[last], trace.step_remaining[last], last], axis=-1)
    return np.ascontiguousarray(np.broadcast_to(cols[None], (rows, *cols.shape)), np.int32)


def _step_hover(binned: bool) -> str:
    if binned:
        return "steps %{x}–%{customdata[2]} (canvas %{customdata[0]})"
    return f"step %{{x}} (canvas %{{customdata[0]}}, {_BUDGET_LEFT}: %{{customdata[1]}})"


def _gapped(trace: Trace, steps: np.ndarray, *ys: Any) -> tuple[np.ndarray, ...]:
    """Insert a blank point at each canvas boundary so lines do not join across canvases.

    Returns ``x`` (the boundary points at ``first step - 0.5``) and each ``y`` (NaN there;
    object arrays get ``None``)."""
    canv = trace.step_canvas[steps]
    cuts = np.flatnonzero(canv[1:] != canv[:-1]) + 1
    x = np.insert(steps.astype(np.float64), cuts, steps[cuts] - 0.5)
    out = [x]
    for y in ys:
        y = np.asarray(y)
        fill = None if y.dtype == object else np.nan
        out.append(np.insert(y.astype(object if fill is None else np.float64), cuts, fill))
    return tuple(out)


def _remaining_text(trace: Trace, steps: np.ndarray) -> list[str]:
    return [
        f"canvas {int(trace.step_canvas[s])} · {_BUDGET_LEFT}: {int(trace.step_remaining[s])}"
        for s in steps
    ]


# ============================================================================ heatmaps
def _value_heatmap(
    trace: Trace, values: np.ndarray, row: int, canvas: int | None, max_cells: int, *,
    name: str, unit: str, scale: str, zmin: float | None, zmax: float | None, fmt: str,
) -> go.Figure:
    _check_row(trace, row)
    _need_steps(trace)
    steps = _steps(trace, canvas)
    length = trace.canvas_length
    z = values[row, steps].astype(np.float64)  # [n, L]
    z[~trace.active[row, steps]] = np.nan
    draft = _texts(trace, trace.draft[row, steps])  # [n, L]
    max_cells = MAX_CELLS if max_cells is None else max_cells
    factor, starts = _step_bins(steps.size, length, max_cells)
    note = ""
    if factor > 1:
        z = _bin_mean(z, starts, axis=0)
        ends = np.minimum(starts + factor, steps.size) - 1
        draft = draft[ends]
        x = steps[starts]
        last = steps[ends]
        note = (
            f"each column = mean of {factor} steps ({length}×{steps.size} cells > "
            f"{max_cells:,} limit)"
        )
    else:
        x = last = steps
    if zmax is None:  # plotly needs both bounds; keep 0 as the floor
        finite = z[np.isfinite(z)]
        zmax = max(float(finite.max()) if finite.size else 1.0, (zmin or 0.0) + 1e-6)
    fig = go.Figure(
        go.Heatmap(
            z=z.T.astype(np.float32), x=x, y=np.arange(length), text=draft.T,
            customdata=_step_custom(trace, last, length),
            colorscale=scale, zmin=zmin, zmax=zmax,
            colorbar=dict(title=dict(text=unit, side="right"), thickness=14),
            hovertemplate=(
                _step_hover(factor > 1) + "<br>position %{y}<br>draft %{text}<br>"
                f"{name} %{{z:{fmt}}}<extra></extra>"
            ),
            hoverongaps=False,
        )
    )
    _base_layout(
        fig,
        title=_title(f"{name.capitalize()} per position and step", trace, row, canvas, note),
    )
    fig.update_yaxes(title_text="position in canvas", autorange="reversed", showgrid=False)
    fig.update_layout(height=_position_height(trace.canvas_length))
    _timeline(fig, trace, steps)
    return fig


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


def lock_in_map(
    trace: Trace, row: int = 0, canvas: int | None = None, max_cells: int | None = None
) -> go.Figure:
    """Each position's state at each step, in the widget's four colours; lock-in and flips marked.

    Cells are `Trace.states` (re-noised / accepted this step / accepted earlier / final). The
    green "final" region of a position starts at its lock-in step (`Trace.lock_in`: the draft
    holds its final token from there on, accepted or not), marked with a bar; ``×`` marks a step
    where the draft changed (a flip; `Trace.flips` counts them). Positions final from their
    canvas's first step get no bar.
    """
    _check_row(trace, row)
    _need_steps(trace)
    steps = _steps(trace, canvas)
    length = trace.canvas_length
    states = trace.states[row, steps].astype(np.float64)  # [n, L]
    draft = trace.draft[row, steps]
    canv = trace.step_canvas[steps]
    first_of_canvas = np.r_[True, canv[1:] != canv[:-1]]
    changed = np.zeros(draft.shape, dtype=bool)
    changed[1:] = draft[1:] != draft[:-1]
    changed[first_of_canvas] = False
    changed &= trace.active[row, steps][:, None]
    if steps.size > 1:
        prev_active = np.r_[False, trace.active[row, steps][:-1]]
        changed &= prev_active[:, None]
    texts = _texts(trace, draft)
    max_cells = MAX_CELLS if max_cells is None else max_cells
    factor, starts = _step_bins(steps.size, length, max_cells)
    note = ""
    if factor > 1:  # categorical: sample the last step of each bin
        ends = np.minimum(starts + factor, steps.size) - 1
        x = steps[ends]
        z = states[ends]
        texts = texts[ends]
        note = f"every {_nth(factor)} step shown ({length}×{steps.size} cells > {max_cells:,})"
    else:
        x = steps
        z = states
    lock = trace.lock_in[row][canv[:, None], np.arange(length)[None, :]]  # [n, L]
    flips = trace.flips[row][canv[:, None], np.arange(length)[None, :]]
    if factor > 1:
        lock, flips = lock[ends], flips[ends]
    names = np.array(STATE_NAMES, dtype=object)
    text = texts + " · " + names[z.astype(int)]  # token and state, one string a cell
    custom = np.concatenate(
        [_step_custom(trace, x, length), lock.T[..., None], flips.T[..., None]], axis=-1
    ).astype(np.int32)
    fig = go.Figure(
        go.Heatmap(
            z=z.T.astype(np.int8), x=x, y=np.arange(length), text=text.T, customdata=custom,
            colorscale=_discrete_scale(palette.STATE_COLORS), zmin=-0.5, zmax=3.5,
            colorbar=dict(
                tickvals=[RENOISED, NEW, KEPT, FINAL], ticktext=list(STATE_NAMES),
                thickness=14, title=dict(text="state"),
            ),
            xgap=0, ygap=1 if length <= 40 else 0, name="state",
            hovertemplate=(
                _step_hover(False) + "<br>position %{y}<br>draft %{text}<br>"
                "locked in at step %{customdata[3]} · flips %{customdata[4]}<extra></extra>"
            ),
        )
    )
    # Lock-in: the step from which each position holds its final token.
    cvs = np.unique(canv)
    lx, ly, lt = [], [], []
    for c in cvs:
        lk = trace.lock_in[row, c]
        later = np.flatnonzero(lk > trace.canvas_bounds[c, 0])  # final from the start: no mark
        lx.extend((lk[later] - 0.5).tolist())
        ly.extend(later.tolist())
        finals = trace.tokens(trace.final_tokens[row, c][later])
        lt.extend(
            f"position {p}: final token {visible(t)} from step {int(s)}"
            for p, t, s in zip(later, finals, lk[later], strict=True)
        )
    fig.add_trace(
        go.Scatter(
            x=lx, y=ly, mode="markers", name="lock-in (holds final token from here)",
            marker=dict(symbol="line-ns", size=max(6, min(16, 500 // max(length, 1))),
                        line=dict(width=2.5, color=_INK)),
            text=lt, hovertemplate="%{text}<extra></extra>",
        )
    )
    fs, fp = np.nonzero(changed)
    n_flips = int(fs.size)
    if 0 < n_flips <= MAX_MARKERS:
        fig.add_trace(
            go.Scatter(
                x=steps[fs], y=fp, mode="markers", name="flip (draft changed)",
                marker=dict(symbol="x-thin", size=6, line=dict(width=1.5, color=_INK)),
                hoverinfo="skip",
            )
        )
    elif n_flips > MAX_MARKERS:
        note = (note + " · " if note else "") + f"{n_flips:,} flips: counts in hover only"
    _base_layout(
        fig, title=_title("Lock-in map: state of every position at every step", trace, row,
                          canvas, note),
    )
    fig.update_yaxes(title_text="position in canvas", autorange="reversed", showgrid=False)
    fig.update_layout(height=_position_height(trace.canvas_length), margin=dict(b=120))
    _timeline(fig, trace, steps)
    # legend a fixed 75 px below the plot area, clear of the x-axis title at any figure height
    layout = fig.layout
    plot_px = max(layout.height - layout.margin.t - layout.margin.b, 1)
    fig.update_layout(legend=dict(orientation="h", yanchor="top", y=-75 / plot_px, x=0))
    return fig


# ============================================================================ curves
def _canvas_lock_fraction(trace: Trace, row: int, steps: np.ndarray) -> np.ndarray:
    """Fraction of the step's canvas already holding its final token, per step."""
    canv = trace.step_canvas[steps]
    lock = trace.lock_in[row][canv]  # [n, L]
    return (steps[:, None] >= lock).mean(axis=1)


def convergence_curve(trace: Trace, row: int = 0, canvas: int | None = None) -> go.Figure:
    """Fraction of the canvas that already holds its final token, against step (lock-in).

    Also drawn, to show that they differ: the fraction the sampler *accepted* at that step, and
    the fraction *stable* (draft unchanged since the step before). Stable or accepted is not
    settled: a position can be accepted with a token it later loses.
    """
    _check_row(trace, row)
    _need_steps(trace)
    steps = _steps(trace, canvas)
    active = trace.active[row, steps]
    locked = _canvas_lock_fraction(trace, row, steps)
    accepted = trace.accepted[row, steps].mean(axis=1).astype(np.float64)
    draft = trace.draft[row, steps]
    canv = trace.step_canvas[steps]
    stable = np.full(steps.size, np.nan)
    same = np.r_[False, canv[1:] == canv[:-1]]
    stable[1:] = (draft[1:] == draft[:-1]).mean(axis=1)
    stable[~same] = np.nan
    for arr in (locked, accepted, stable):
        arr[~active] = np.nan
    remaining = _remaining_text(trace, steps)
    fig = go.Figure()
    for y, name, color, dash in (
        (locked, "holds its final token (lock-in)", palette.STATE_COLORS[FINAL], "solid"),
        (accepted, "accepted by the sampler this step", palette.STATE_COLORS[NEW], "dash"),
        (stable, "stable (draft same as the step before)", "#0072B2", "dot"),
    ):
        x, y, custom = _gapped(trace, steps, y, np.array(remaining, dtype=object))
        fig.add_trace(
            go.Scatter(
                x=x, y=y, name=name, mode="lines+markers", customdata=custom,
                line=dict(color=color, width=3 if dash == "solid" else 2, dash=dash),
                marker=dict(size=4),
                hovertemplate="step %{x} · %{customdata}<br>" + name
                + ": %{y:.1%}<extra></extra>",
            )
        )
    _base_layout(
        fig, title=_title("Convergence: share of the canvas already final", trace, row, canvas),
        legend=dict(orientation="h", yanchor="top", y=-0.22, x=0),
    )
    fig.update_layout(margin=dict(b=120))
    fig.update_yaxes(title_text="share of canvas positions", tickformat=".0%", range=[-0.02, 1.02])
    _timeline(fig, trace, steps)
    return fig


def accepted_per_step(trace: Trace, row: int = 0, canvas: int | None = None) -> go.Figure:
    """Positions accepted per step (new vs kept), and tokens per forward pass so far.

    Top: stacked bars, positions the sampler accepted at each step, split into newly accepted
    and accepted again. Bottom: final tokens so far (positions already holding their final
    token, all canvases, padding not counted) divided by forward passes so far, on a log axis;
    it ends at the dashed line, transformers' ``tokens_per_forward`` for the run.
    """
    from plotly.subplots import make_subplots

    _check_row(trace, row)
    _need_steps(trace)
    steps = _steps(trace, canvas)
    active = trace.active[row, steps]
    acc = trace.accepted[row, steps] & active[:, None]
    # states NEW/KEPT/FINAL overlap with accepted; split accepted by whether it was accepted
    # the step before (the sampler's view, independent of lock-in).
    prev_full = np.zeros_like(trace.accepted[row])
    prev_full[1:] = trace.accepted[row, :-1]
    first = trace.canvas_bounds[:, 0]
    prev_full[first] = False
    prev = prev_full[steps] & acc
    new = (acc & ~prev).sum(axis=1)
    again = prev.sum(axis=1)
    # tokens per forward so far: positions holding their final token in every canvas so far,
    # padding left out as transformers does for `tokens_per_forward`.
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
    tpf = tpf[steps]
    tpf[~active] = np.nan
    remaining = _remaining_text(trace, steps)
    fig = make_subplots(
        rows=2, cols=1, shared_xaxes=True, row_heights=[0.6, 0.4], vertical_spacing=0.08,
    )
    for y, name, color in (
        (new, "newly accepted", palette.STATE_COLORS[NEW]),
        (again, "accepted again (also the step before)", palette.STATE_COLORS[KEPT]),
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
            line=dict(color=_INK, dash="dash", width=1.5),
            name=f"run: {recorded:.2f} tokens / forward (transformers)",
            hovertemplate=f"tokens_per_forward {recorded:.3f}<extra></extra>",
        ),
        row=2, col=1,
    )
    _base_layout(
        fig, barmode="stack",
        title=_title(
            "Accepted per step and tokens per forward pass", trace, row, canvas,
            f"{trace.forward_passes(row)} forward passes",
        ),
        legend=dict(orientation="h", yanchor="top", y=-0.16, x=0, traceorder="normal"),
        bargap=0.1,
    )
    fig.update_layout(margin=dict(b=120))
    top = int(max((new + again).max(), 1))
    fig.update_yaxes(title_text="positions accepted", rangemode="tozero", tickformat="d",
                     dtick=1 if top <= 8 else None, row=1, col=1)
    # log scale: early steps (few forwards, many settled tokens) would squash the end
    finite = tpf[np.isfinite(tpf) & (tpf > 0)]
    lo = min(float(finite.min()) if finite.size else recorded, recorded)
    hi = max(float(finite.max()) if finite.size else recorded, recorded)
    ticks = [v for v in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)
             if lo / 2 <= v <= hi * 2]
    fig.update_yaxes(title_text="tokens / forward (log)", type="log", tickmode="array",
                     tickvals=ticks, ticktext=[f"{v:g}" for v in ticks], row=2, col=1)
    _timeline(fig, trace, steps, row=2, col=1, top_axis=True, label_canvases=True)
    fig.update_xaxes(showgrid=False, row=1, col=1)
    for c in np.unique(trace.step_canvas[steps])[1:]:
        _boundary(fig, int(trace.canvas_bounds[c, 0]) - 0.5, row=1, col=1)
    return fig


def sampler_explainer(trace: Trace, step: int | None = None, row: int = 0) -> go.Figure:
    """Why the entropy-bound sampler accepted what it did at one step.

    Bars: every position's entropy, sorted (lowest first), coloured accepted / re-noised as
    recorded. Line: the sampler's criterion ``sum(entropy_1..k) - max(entropy_1..k)`` for the k
    lowest; it accepts while that stays under ``entropy_bound`` (dashed). The top panel shows
    every position; the bottom one zooms on the bound, where the decision is made. ``step`` is
    a global step (default: step 0).
    """
    from plotly.subplots import make_subplots

    _check_row(trace, row)
    _need_steps(trace)
    if step is None:
        step = 0
    if not 0 <= step < trace.num_steps:
        raise IndexError(f"step {step} out of range: this trace has {trace.num_steps} steps.")
    ex = trace.sampler_explainer(step, row=row)
    order = ex["order"]
    rank = np.arange(order.size)
    acc = np.asarray(ex["accepted"], dtype=bool)
    crit = np.asarray(ex["criterion"], dtype=np.float64)
    sorted_ent = np.asarray(ex["sorted_entropy"], dtype=np.float64)
    bound = float(ex["bound"])
    tokens = _texts(trace, trace.draft[row, step][order])
    colors = np.where(acc, palette.STATE_COLORS[NEW], palette.STATE_COLORS[RENOISED]).tolist()
    custom = np.stack([order, crit], axis=-1)
    zoom_top = 3 * bound if math.isfinite(bound) else None
    fig = make_subplots(
        rows=2, cols=1, row_heights=[0.5, 0.5], vertical_spacing=0.16,
        subplot_titles=(
            "all positions",
            f"zoom on the decision: entropies up to {zoom_top:g} nats, ranks around the cut"
            if zoom_top else "",
        ),
    )
    for r in (1, 2):
        fig.add_trace(
            go.Bar(
                x=rank, y=sorted_ent, marker_color=colors, name="entropy", showlegend=False,
                text=tokens, customdata=custom, textposition="none",
                hovertemplate=(
                    "rank %{x} · position %{customdata[0]}<br>draft %{text}<br>"
                    "entropy %{y:.4f} nats<br>criterion %{customdata[1]:.4f}<extra></extra>"
                ),
            ),
            row=r, col=1,
        )
        fig.add_trace(
            go.Scatter(
                x=rank, y=crit, mode="lines+markers", name="criterion: Σ entropy − max",
                line=dict(color=_INK, width=2), marker=dict(size=4), showlegend=r == 1,
                hovertemplate="k=%{x}: Σ−max = %{y:.4f}<extra></extra>",
            ),
            row=r, col=1,
        )
        if math.isfinite(bound):
            fig.add_hline(
                y=bound, line=dict(color="#D55E00", dash="dash", width=2), row=r, col=1,
                annotation_text=f"entropy_bound {bound:g}", annotation_position="top right",
                annotation_font=dict(color="#D55E00"),
            )
    for i in (NEW, RENOISED):  # legend entries for the two bar colours
        fig.add_trace(
            go.Scatter(x=[None], y=[None], mode="markers",
                       name=f"entropy of a position: {STATE_NAMES[i]}",
                       marker=dict(symbol="square", size=12, color=palette.STATE_COLORS[i]))
        )
    n_acc = int(acc.sum())
    temp = float(trace.temperature[step])
    note = (
        f"step {step} (canvas {int(trace.step_canvas[step])}, "
        f"{_BUDGET_LEFT}: {int(trace.step_remaining[step])}) · accepted {n_acc} of {acc.size}"
        + (f" · temperature {temp:.2f}" if math.isfinite(temp) else "")
        + ("" if trace.active[row, step] else " · row had stopped")
    )
    sampler = trace.settings.get("sampler", "EntropyBoundSampler")
    if sampler != "EntropyBoundSampler":
        note += f" · recorded with {sampler}: the entropy-bound rule shown may not be its rule"
    ymax = float(np.nanmax(sorted_ent)) if order.size else 1.0
    _base_layout(
        fig, title=_title("Sampler explainer: entropy-bound acceptance", trace, row, None, note),
        legend=dict(orientation="h", yanchor="top", y=-0.14, x=0), bargap=0.05,
    )
    fig.update_layout(margin=dict(b=110, t=125), title_pad_b=34)  # room for panel titles
    fig.update_xaxes(title_text="positions sorted by entropy (rank, lowest first)", row=2, col=1)
    fig.update_yaxes(title_text="nats", range=[0, 1.1 * max(ymax, 1e-6)], row=1, col=1)
    if zoom_top:
        # ranks around where the criterion crosses the bound (the cut), at least 24 wide
        over = np.flatnonzero(crit > bound)
        cut = int(over[0]) if over.size else order.size
        first = max(0, cut - 16)
        last = min(order.size - 1, max(cut + 8, first + 24))
        fig.update_yaxes(title_text="nats", range=[0, zoom_top], row=2, col=1)
        fig.update_xaxes(range=[first - 0.5, last + 0.5], row=2, col=1)
    for a in fig.layout.annotations:
        if a.text == "all positions" or str(a.text).startswith("zoom on"):
            a.update(x=0, xanchor="left", font=dict(size=12, color="#555555"))
    return fig


# ============================================================================ routing
def _top1(ids: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Top-1 expert id along the last axis (highest weight)."""
    best = np.argmax(weights.astype(np.float32), axis=-1)[..., None]
    return np.take_along_axis(ids, best, axis=-1)[..., 0].astype(np.int64)


def expert_weights(
    trace: Trace, step: int | None = None, layer: int = 0, row: int = 0
) -> go.Figure:
    """Router weights at one step and decoder layer: position x expert (blank: not chosen)."""
    _need_routing(trace)
    _check_row(trace, row)
    _need_steps(trace)
    step = 0 if step is None else step
    n_layers = trace.expert_ids.shape[2]
    if not 0 <= step < trace.num_steps:
        raise IndexError(f"step {step} out of range: this trace has {trace.num_steps} steps.")
    if not 0 <= layer < n_layers:
        raise IndexError(f"layer {layer} out of range: this trace has {n_layers} routed layers.")
    n_exp = _num_experts(trace)
    length = trace.canvas_length
    ids = trace.expert_ids[row, step, layer].astype(np.int64)  # [L, k]
    w = trace.expert_weights[row, step, layer].astype(np.float32)
    z = np.full((length, n_exp), np.nan)
    rank = np.full((length, n_exp), -1)
    pos = np.repeat(np.arange(length), ids.shape[1])
    z[pos, ids.ravel()] = w.ravel()
    rank[pos, ids.ravel()] = np.tile(np.arange(ids.shape[1]), length)
    tokens = _texts(trace, trace.canvas_in[row, step])
    text = np.broadcast_to(tokens[:, None], z.shape)
    fig = go.Figure(
        go.Heatmap(
            z=z, x=np.arange(n_exp), y=np.arange(length), text=text, customdata=rank + 1,
            colorscale=palette.LOAD_SCALE, zmin=0, zmax=1, xgap=1,
            ygap=1 if length <= 40 else 0,
            colorbar=dict(title=dict(text="router weight"), thickness=14),
            hovertemplate=(
                "position %{y} · token read %{text}<br>expert %{x} (choice %{customdata})"
                "<br>weight %{z:.3f}<extra></extra>"
            ),
            hoverongaps=False,
        )
    )
    note = (
        f"decoder layer {layer} · step {step} (canvas {int(trace.step_canvas[step])}, "
        f"{_BUDGET_LEFT}: {int(trace.step_remaining[step])}) · top-{ids.shape[1]} of {n_exp} "
        "experts"
    )
    _base_layout(fig, title=_title("Expert weights per position", trace, row, None, note),
                 plot_bgcolor="#F4F4F4")
    fig.update_xaxes(title_text="expert", showgrid=False)
    fig.update_yaxes(title_text="position in canvas", autorange="reversed", showgrid=False)
    fig.update_layout(height=_position_height(trace.canvas_length))
    return fig


def expert_load(
    trace: Trace, row: int = 0, canvas: int | None = None, weighted: bool = False
) -> go.Figure:
    """How often each decoder layer sent a token to each expert over the run: layer x expert.

    Counts every (active step, position, choice): each layer's row sums to
    ``active steps x positions x k``. ``weighted=True`` sums router weights instead.
    """
    _need_routing(trace)
    _check_row(trace, row)
    _need_steps(trace)
    steps = _steps(trace, canvas)
    steps = steps[trace.active[row, steps]]
    n_exp = _num_experts(trace)
    ids = trace.expert_ids[row, steps].astype(np.int64)  # [n, N, L, k]
    n_layers = ids.shape[1]
    ids_l = np.moveaxis(ids, 1, 0).reshape(n_layers, -1)
    if weighted:
        w = np.moveaxis(trace.expert_weights[row, steps].astype(np.float64), 1, 0)
        w = w.reshape(n_layers, -1)
    else:
        w = np.ones(ids_l.shape)
    load = np.zeros((n_layers, n_exp))
    for n in range(n_layers):
        load[n] = np.bincount(ids_l[n], weights=w[n], minlength=n_exp)[:n_exp]
    share = load / np.maximum(load.sum(axis=1, keepdims=True), 1e-12)
    k = ids.shape[-1]
    unit = "summed weight" if weighted else "token choices"
    fig = go.Figure(
        go.Heatmap(
            z=load, x=np.arange(n_exp), y=np.arange(n_layers), customdata=share,
            colorscale=palette.LOAD_SCALE, zmin=0, zmax=max(float(load.max()), 1e-9),
            xgap=1, ygap=1, colorbar=dict(title=dict(text=unit), thickness=14),
            hovertemplate=(
                "layer %{y} · expert %{x}<br>" + unit + " %{z:.4~g}"
                "<br>%{customdata:.1%} of the layer<extra></extra>"
            ),
        )
    )
    note = (
        f"{steps.size} steps × {trace.canvas_length} positions × top-{k} = "
        f"{steps.size * trace.canvas_length * k:,} choices per layer · uniform = "
        f"{1 / n_exp:.1%} each"
    )
    _base_layout(fig, title=_title("Expert load: decoder layer × expert", trace, row, canvas,
                                   note))
    fig.update_xaxes(title_text="expert", showgrid=False)
    fig.update_yaxes(title_text="decoder layer", autorange="reversed", showgrid=False)
    _int_axis(fig, n_layers)
    if n_exp <= 32:
        _int_axis(fig, n_exp, "x")
    return fig


def expert_churn(
    trace: Trace, row: int = 0, canvas: int | None = None, by: str = "step",
    max_cells: int | None = None,
) -> go.Figure:
    """How often positions change their top-1 expert between consecutive steps.

    ``by="step"``: layer x step, the share of the canvas whose top-1 expert differs from the
    step before (blank on a canvas's first step). ``by="position"``: layer x output position,
    how many times that position's top-1 expert changed during its canvas.
    """
    _need_routing(trace)
    _check_row(trace, row)
    _need_steps(trace)
    if by not in ("step", "position"):
        raise ValueError(f"by must be 'step' or 'position' (got {by!r}).")
    steps = _steps(trace, canvas)
    top1 = _top1(trace.expert_ids[row], trace.expert_weights[row])  # [S, N, L]
    active = trace.active[row]
    changed = np.zeros(top1.shape, dtype=bool)
    changed[1:] = top1[1:] != top1[:-1]
    valid = np.zeros(trace.num_steps, dtype=bool)
    valid[1:] = (trace.step_canvas[1:] == trace.step_canvas[:-1]) & active[1:] & active[:-1]
    n_layers = top1.shape[1]
    length = trace.canvas_length
    if by == "step":
        z = changed.mean(axis=2).T.astype(np.float64)  # [N, S]
        z[:, ~valid] = np.nan
        z = z[:, steps]
        fig = go.Figure(
            go.Heatmap(
                z=z, x=steps, y=np.arange(n_layers),
                customdata=_step_custom(trace, steps, n_layers),
                colorscale=palette.LOAD_SCALE, zmin=0, zmax=1,
                colorbar=dict(title=dict(text="share changed"), tickformat=".0%",
                              thickness=14),
                hovertemplate=("layer %{y} · " + _step_hover(False) + "<br>"
                               "%{z:.1%} of positions changed top-1 expert<extra></extra>"),
                hoverongaps=False,
            )
        )
        _base_layout(
            fig, title=_title("Expert churn: share of positions whose top-1 expert changed",
                              trace, row, canvas, "blank: a canvas's first step"),
        )
        fig.update_yaxes(title_text="decoder layer", autorange="reversed", showgrid=False)
        _int_axis(fig, n_layers)
        _timeline(fig, trace, steps)
        return fig
    canvases = np.unique(trace.step_canvas[steps])
    counts = np.zeros((n_layers, canvases.size * length))
    for i, c in enumerate(canvases):
        cs = trace.canvas_steps(c)
        counts[:, i * length:(i + 1) * length] = (changed[cs] & valid[cs][:, None, None]).sum(
            axis=0
        )
    x = (canvases[:, None] * length + np.arange(length)[None]).ravel()
    final = _texts(trace, trace.final_tokens[row, canvases].ravel())
    max_cells = MAX_CELLS if max_cells is None else max_cells
    factor, keep = _step_bins(x.size, n_layers, max_cells)
    pnote = ""
    if factor > 1:
        pnote = (
            f"every {_nth(factor)} position shown ({x.size}×{n_layers} cells > {max_cells:,})"
        )
        x, final, counts = x[keep], final[keep], counts[:, keep]
    fig = go.Figure(
        go.Heatmap(
            z=counts, x=x, y=np.arange(n_layers),
            text=np.broadcast_to(final[None], counts.shape),
            colorscale=palette.LOAD_SCALE, zmin=0, zmax=max(float(counts.max()), 1.0),
            colorbar=dict(title=dict(text="changes"), thickness=14),
            hovertemplate=("layer %{y} · output position %{x} (final %{text})<br>"
                           "top-1 expert changed %{z} times<extra></extra>"),
        )
    )
    _base_layout(fig, title=_title("Expert churn per position: top-1 expert changes", trace,
                                   row, canvas, pnote))
    fig.update_xaxes(title_text="output position (canvas × length + position)", showgrid=False)
    fig.update_yaxes(title_text="decoder layer", autorange="reversed", showgrid=False)
    _int_axis(fig, n_layers)
    for c in canvases[1:]:
        _boundary(fig, c * length - 0.5)
    return fig


def router_entropy(trace: Trace, row: int = 0, canvas: int | None = None) -> go.Figure:
    """Mean router entropy (nats) over the canvas, per decoder layer and step.

    Low: the router is sure which experts a token needs; ``ln(experts)`` is the most it can be.
    """
    _need_routing(trace)
    _check_row(trace, row)
    _need_steps(trace)
    if trace.router_entropy is None:
        raise ValueError("This trace has routing but no router entropy recorded.")
    steps = _steps(trace, canvas)
    z = trace.router_entropy[row, steps].astype(np.float64).mean(axis=-1).T  # [N, n]
    z[:, ~trace.active[row, steps]] = np.nan
    n_exp = _num_experts(trace)
    n_layers = z.shape[0]
    finite = z[np.isfinite(z)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if hi - lo < 1e-3:
        lo, hi = lo - 0.01, hi + 0.01
    fig = go.Figure(
        go.Heatmap(
            z=z, x=steps, y=np.arange(n_layers),
            customdata=_step_custom(trace, steps, n_layers),
            colorscale=palette.ENTROPY_SCALE, zmin=lo, zmax=hi,
            colorbar=dict(title=dict(text="nats"), thickness=14),
            hovertemplate=("layer %{y} · " + _step_hover(False) + "<br>"
                           "mean router entropy %{z:.3f} nats<extra></extra>"),
            hoverongaps=False,
        )
    )
    _base_layout(fig, title=_title(
        "Router entropy over steps (mean over positions)", trace, row, canvas,
        f"colour range = the data's; at most ln {n_exp} = {math.log(n_exp):.2f} nats (uniform)",
    ))
    fig.update_yaxes(title_text="decoder layer", autorange="reversed", showgrid=False)
    _int_axis(fig, n_layers)
    _timeline(fig, trace, steps)
    return fig


def _expert_colors(n_exp: int) -> tuple[list[list[Any]], str]:
    colors = [palette.expert_color(e) for e in range(n_exp)]
    note = ""
    if n_exp > len(palette.EXPERT_COLORS):
        note = f"colours repeat every {len(palette.EXPERT_COLORS)} experts: hover for the id"
    return _discrete_scale(colors), note


def expert_map(
    trace: Trace, layer: int = 0, row: int = 0, canvas: int | None = None,
    max_cells: int | None = None,
) -> go.Figure:
    """Top-1 expert of every position at every step, for one decoder layer (position x step)."""
    _need_routing(trace)
    _check_row(trace, row)
    _need_steps(trace)
    n_layers = trace.expert_ids.shape[2]
    if not 0 <= layer < n_layers:
        raise IndexError(f"layer {layer} out of range: this trace has {n_layers} routed layers.")
    steps = _steps(trace, canvas)
    n_exp = _num_experts(trace)
    length = trace.canvas_length
    top1 = _top1(trace.expert_ids[row, steps, layer], trace.expert_weights[row, steps, layer])
    z = top1.astype(np.float64)  # [n, L]
    z[~trace.active[row, steps]] = np.nan
    texts = _texts(trace, trace.canvas_in[row, steps])
    max_cells = MAX_CELLS if max_cells is None else max_cells
    factor, starts = _step_bins(steps.size, length, max_cells)
    note = ""
    x = steps
    if factor > 1:
        ends = np.minimum(starts + factor, steps.size) - 1
        x, z, texts = steps[ends], z[ends], texts[ends]
        note = f"every {_nth(factor)} step shown ({length}×{steps.size} cells > {max_cells:,})"
    scale, cnote = _expert_colors(n_exp)
    note = " · ".join(p for p in (f"decoder layer {layer}", note, cnote) if p)
    fig = go.Figure(
        go.Heatmap(
            z=z.T.astype(np.float32), x=x, y=np.arange(length), text=texts.T,
            customdata=_step_custom(trace, x, length),
            colorscale=scale, zmin=-0.5, zmax=n_exp - 0.5, showscale=n_exp <= 32,
            colorbar=dict(title=dict(text="top-1 expert"), thickness=14,
                          tickvals=list(range(n_exp)) if n_exp <= 16 else None),
            hovertemplate=(_step_hover(False) + "<br>position %{y} · token read %{text}"
                           "<br>top-1 expert %{z}<extra></extra>"),
            hoverongaps=False,
        )
    )
    _base_layout(fig, title=_title("Top-1 expert per position and step", trace, row, canvas,
                                   note))
    fig.update_yaxes(title_text="position in canvas", autorange="reversed", showgrid=False)
    fig.update_layout(height=_position_height(trace.canvas_length))
    _timeline(fig, trace, steps)
    return fig


def encoder_routing(trace: Trace, row: int = 0, max_cells: int | None = None) -> go.Figure:
    """Top-1 expert of every token the encoder read (prompt, then finished canvases) per layer.

    Beyond ``max_cells`` cells, every n-th token is shown (and the subtitle says so)."""
    _need_routing(trace, encoder=True)
    _check_row(trace, row)
    ids = trace.encoder_expert_ids[row].astype(np.int64)  # [T, N, k]
    w = trace.encoder_expert_weights[row]
    top1 = _top1(ids, w)  # [T, N]
    top_w = np.max(w.astype(np.float32), axis=-1)
    n_tok, n_layers = top1.shape
    n_exp = _num_experts(trace)
    prompt = trace.prompt_ids[row]
    read = np.concatenate([prompt, trace.output_ids[row]])[:n_tok]
    texts = _texts(trace, read)
    if read.size < n_tok:
        texts = np.concatenate([texts, np.array(["?"] * (n_tok - read.size), dtype=object)])
    ent = (
        trace.encoder_router_entropy[row].astype(np.float32)
        if trace.encoder_router_entropy is not None else np.full((n_tok, n_layers), np.nan)
    )
    max_cells = MAX_CELLS if max_cells is None else max_cells
    factor, keep = _step_bins(n_tok, n_layers, max_cells)
    snote = f"every {_nth(factor)} token shown ({n_tok}×{n_layers} cells > {max_cells:,})"
    custom = np.stack([top_w, ent], axis=-1)[keep].transpose(1, 0, 2)  # [N, T', 2]
    scale, cnote = _expert_colors(n_exp)
    show_ids = n_tok <= 60 and n_layers <= 40
    fig = go.Figure(
        go.Heatmap(
            z=top1[keep].T, x=keep, y=np.arange(n_layers),
            text=np.broadcast_to(texts[keep][None], (n_layers, keep.size)), customdata=custom,
            colorscale=scale, zmin=-0.5, zmax=n_exp - 0.5, xgap=1 if n_tok <= 80 else 0,
            ygap=1, showscale=n_exp <= 32,
            colorbar=dict(title=dict(text="top-1 expert"), thickness=14,
                          tickvals=list(range(n_exp)) if n_exp <= 16 else None),
            hovertemplate=("encoder token %{x}: %{text}<br>layer %{y} · top-1 expert %{z} "
                           "(weight %{customdata[0]:.3f})<br>router entropy "
                           "%{customdata[1]:.3f} nats<extra></extra>"),
        )
    )
    # Segment boundaries: the prompt, then each finished canvas the encoder read.
    p = prompt.size
    bounds = [(0, min(p, n_tok), "prompt")]
    c = 0
    while bounds[-1][1] < n_tok:
        lo = bounds[-1][1]
        bounds.append((lo, min(lo + trace.canvas_length, n_tok), f"canvas {c}"))
        c += 1
    for lo, hi, label in bounds:
        if lo > 0:
            _boundary(fig, lo - 0.5)
        fig.add_annotation(x=(lo + hi - 1) / 2, y=1, yref="paper", yanchor="bottom",
                           text=label, showarrow=False, font=dict(size=11, color="#555555"))
    if show_ids:
        ticks = np.arange(n_tok)
        fig.update_xaxes(tickmode="array", tickvals=ticks.tolist(),
                         ticktext=[str(t) for t in texts], tickangle=-60,
                         tickfont=dict(family="DejaVu Sans Mono, monospace", size=10))
    note = " · ".join(
        q for q in (f"{n_tok} tokens read, {n_layers} layers", snote if factor > 1 else "", cnote)
        if q
    )
    _base_layout(fig, title=_title("Encoder routing: top-1 expert per token read", trace, row,
                                   None, note))
    fig.update_xaxes(title_text="token the encoder read" if show_ids else "encoder token index",
                     showgrid=False)
    fig.update_yaxes(title_text="encoder layer", autorange="reversed", showgrid=False)
    _int_axis(fig, n_layers)
    return fig


# ============================================================================ all at once
def all_figures(trace: Trace, row: int = 0) -> dict[str, go.Figure]:
    """Every figure for one row, with default choices (step, layer), keyed by a short name."""
    figs: dict[str, go.Figure] = {
        "confidence": confidence_heatmap(trace, row),
        "entropy": entropy_heatmap(trace, row),
        "lock_in": lock_in_map(trace, row),
        "convergence": convergence_curve(trace, row),
        "accepted": accepted_per_step(trace, row),
        "sampler": sampler_explainer(trace, _explainer_step(trace, row), row),
    }
    if trace.has_routing:
        mid = int(trace.canvas_steps(0)[len(trace.canvas_steps(0)) // 2])
        figs["expert_weights"] = expert_weights(trace, mid, 0, row)
        figs["expert_load"] = expert_load(trace, row)
        figs["expert_churn"] = expert_churn(trace, row)
        figs["expert_churn_position"] = expert_churn(trace, row, by="position")
        figs["router_entropy"] = router_entropy(trace, row)
        figs["expert_map"] = expert_map(trace, 0, row)
    if trace.encoder_expert_ids is not None:
        figs["encoder_routing"] = encoder_routing(trace, row)
    return figs


def _explainer_step(trace: Trace, row: int) -> int:
    """A telling step: in the first canvas, the active step whose accepted count is nearest to
    half the canvas (the sampler had most to decide), the earliest such."""
    steps = trace.canvas_steps(0)
    steps = steps[trace.active[row, steps]] if trace.active[row, steps].any() else steps
    counts = trace.accepted[row, steps].sum(axis=1)
    return int(steps[np.argmin(np.abs(counts - trace.canvas_length / 2))])


# ============================================================================ exports
def save_figure(
    fig: go.Figure, path: str | Path, *, width: int | None = None, height: int | None = None,
    scale: float | None = None,
) -> Path:
    """Write a figure as a static image; the suffix chooses the format (.png, .svg, .pdf...).

    Uses plotly's kaleido, which drives a Chrome/Chromium: ``pip install 'dgviz[export]'`` and
    a Chrome or Chromium (Debian: ``apt-get install chromium``; kaleido finds it on ``PATH`` or
    through ``BROWSER_PATH``). ``.html`` works without either.
    """
    path = Path(path)
    fmt = path.suffix.lower().lstrip(".")
    if not fmt:
        raise ValueError(f"{path} has no suffix: say .png, .svg, .pdf or .html.")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt in ("html", "htm"):
        fig.write_html(str(path), include_plotlyjs=True)
        return path
    try:
        import kaleido  # noqa: F401
    except ImportError as err:
        raise ImportError(
            "Saving figures as PNG/SVG needs kaleido: pip install 'dgviz[export]' (and a Chrome "
            "or Chromium, e.g. Debian's `apt-get install chromium`)."
        ) from err
    try:
        fig.write_image(str(path), format=fmt, width=width, height=height, scale=scale)
    except Exception as err:
        msg = str(err)
        first_line = next((ln.strip() for ln in msg.splitlines() if ln.strip()), repr(err))
        if "chrom" in msg.lower() or "browser" in msg.lower() or type(err).__name__ in (
            "ChromeNotFoundError", "BrowserFailedError",
        ):
            raise RuntimeError(
                f"Could not export {path.name}: kaleido needs a Chrome or Chromium browser "
                "(Debian: `apt-get install chromium`; or set BROWSER_PATH to one), with "
                f"`pip install 'dgviz[export]'`. (kaleido: {first_line})"
            ) from err
        raise
    return path


def _load_font(size: int, bold: bool = False) -> Any:
    from PIL import ImageFont

    names = (
        ["DejaVuSansMono-Bold.ttf", "DejaVuSans-Bold.ttf"] if bold else
        ["DejaVuSansMono.ttf", "DejaVuSans.ttf"]
    )
    dirs = ["", "/usr/share/fonts/truetype/dejavu/", "/usr/share/fonts/dejavu/",
            "/Library/Fonts/", "C:/Windows/Fonts/"]
    for name in names:
        for d in dirs:
            try:
                return ImageFont.truetype(d + name, size)
            except OSError:
                continue
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1
        return ImageFont.load_default()


def _fit(draw: Any, text: str, font: Any, width: float) -> str:
    if draw.textlength(text, font=font) <= width:
        return text
    while text and draw.textlength(text + "…", font=font) > width:
        text = text[:-1]
    return text + "…"


def _hex(color: str) -> tuple[int, int, int]:
    return tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


def _gif_palette() -> np.ndarray:
    """One fixed palette for every frame: the state colours, text colours and the anti-aliasing
    shades between them (uint8 ``[K, 3]``). A shared palette lets the GIF store only what
    changed between frames."""
    pairs = [("#FFFFFF", _INK), ("#FFFFFF", "#555555")]
    pairs += list(zip(palette.STATE_COLORS, palette.STATE_TEXT_COLORS, strict=True))
    colors: list[tuple[int, ...]] = []
    for bg, fg in pairs:
        a, b = _hex(bg), _hex(fg)
        for t in np.linspace(0, 1, 8):
            c = tuple(round(x + (y - x) * t) for x, y in zip(a, b, strict=True))
            if c not in colors:
                colors.append(c)
    return np.array(colors, dtype=np.uint8)


class _Paletter:
    """RGB image -> "P" image on a fixed palette, each colour to its nearest entry; exact colours
    stay exact, which Pillow's own quantizer does not promise. Colours seen once are cached in
    a 2^24 lookup table, so each frame costs one table lookup per pixel."""

    def __init__(self, pal: np.ndarray):
        self.pal = pal.astype(np.int32)
        self.lut = np.full(1 << 24, 255, dtype=np.uint8)
        self.flat = pal.ravel().tolist()

    def __call__(self, img: Any) -> Any:
        from PIL import Image

        rgb = np.asarray(img, dtype=np.uint8)
        r, g, b = (rgb[..., i].astype(np.int32) for i in range(3))
        packed = (r << 16) | (g << 8) | b
        index = self.lut[packed]
        unknown = index == 255
        if unknown.any():
            new = np.unique(packed[unknown])
            cols = np.stack([(new >> 16) & 255, (new >> 8) & 255, new & 255], axis=-1)
            dist = ((cols[:, None, :] - self.pal[None]) ** 2).sum(-1)
            self.lut[new] = dist.argmin(axis=1).astype(np.uint8)
            index = self.lut[packed]
        out = Image.frombytes("P", (packed.shape[1], packed.shape[0]), index.tobytes())
        out.putpalette(self.flat)
        return out


def canvas_gif(
    trace: Trace,
    path: str | Path,
    row: int = 0,
    canvas: int | None = None,
    *,
    columns: int | None = None,
    cell_width: int | None = None,
    font_size: int = 15,
    ms_per_step: int = 400,
    hold_last_ms: int = 2000,
    title: str | None = None,
) -> Path:
    """Write an animated GIF of the canvas evolving: one frame per step, for slides.

    Each frame shows the canvas after that step (the draft tokens, whitespace made visible) in
    the widget's state colours, with the step counter (global step, canvas, steps left in the
    budget)
    and how many positions were accepted and already final. ``canvas=None`` plays every canvas
    in turn. ``columns`` / ``cell_width`` default to fit the canvas length and the longest
    token; ``title`` adds a line of your own (e.g. the prompt). The last frame is held
    ``hold_last_ms``. Needs Pillow (``dgviz[export]``).
    """
    try:
        from PIL import Image, ImageDraw
    except ImportError as err:
        raise ImportError("canvas_gif needs Pillow: pip install 'dgviz[export]'.") from err
    _check_row(trace, row)
    _need_steps(trace)
    steps = _steps(trace, canvas)
    length = trace.canvas_length
    cols = columns or (16 if length >= 64 else 8 if length > 8 else length)
    rows_n = math.ceil(length / cols)
    font = _load_font(font_size)
    small = _load_font(max(10, font_size - 3))
    bold = _load_font(font_size + 1, bold=True)
    texts = _texts(trace, trace.draft[row, steps])
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    if cell_width is None:
        longest = max((probe.textlength(str(t), font=font) for t in np.unique(texts)),
                      default=10.0)
        cell_width = int(min(120, max(40, longest + 16)))
    pad, gap = 16, 4
    cell_h = font_size + 16
    head_h = 2 * font_size + 28
    legend_h = font_size + 10
    heads = []
    for s in steps:
        c = int(trace.step_canvas[s])
        heads.append(f"step {s} · canvas {c} · {_BUDGET_LEFT}: {int(trace.step_remaining[s])} "
                     f"(step {s - int(trace.canvas_bounds[c, 0]) + 1} of the canvas)")
    head_w = max(probe.textlength(h, font=bold) for h in heads)
    width = max(2 * pad + cols * cell_width + (cols - 1) * gap, 640, 2 * pad + math.ceil(head_w))
    grid_end = head_h + pad + rows_n * (cell_h + gap) - gap
    height = grid_end + 2 * gap + legend_h + pad
    states = trace.states[row]
    label = title or ""
    to_p = _Paletter(_gif_palette())
    frames = []
    for i, s in enumerate(steps):
        img = Image.new("RGB", (width, height), "#FFFFFF")
        draw = ImageDraw.Draw(img)
        st = states[s]
        draw.text((pad, pad), heads[i], fill=_INK, font=bold)
        sub = (
            f"steps 0–{trace.num_steps - 1}, canvases 0–{trace.num_canvases - 1} · "
            f"accepted {int(trace.accepted[row, s].sum())}/{length} · final "
            f"{int((st == FINAL).sum())}/{length}"
            + ("" if trace.active[row, s] else " · row stopped")
        )
        if label:
            sub += " · " + label.replace("\n", " ↵ ")
        draw.text((pad, pad + font_size + 8), _fit(draw, sub, small, width - 2 * pad),
                  fill="#555555", font=small)
        for p in range(length):
            r, q = divmod(p, cols)
            x0 = pad + q * (cell_width + gap)
            y0 = head_h + pad + r * (cell_h + gap)
            k = int(st[p])
            draw.rounded_rectangle(
                (x0, y0, x0 + cell_width, y0 + cell_h), radius=4,
                fill=palette.STATE_COLORS[k],
            )
            t = _fit(draw, str(texts[i, p]), font, cell_width - 8)
            tw = draw.textlength(t, font=font)
            draw.text((x0 + (cell_width - tw) / 2, y0 + 7), t,
                      fill=palette.STATE_TEXT_COLORS[k], font=font)
        ly = grid_end + 2 * gap + 4
        lx = pad
        for k, name in enumerate(STATE_NAMES):
            draw.rectangle((lx, ly, lx + 14, ly + 14), fill=palette.STATE_COLORS[k])
            draw.text((lx + 20, ly - 1), name, fill=_INK, font=small)
            lx += 28 + int(draw.textlength(name, font=small)) + 12
        frames.append(to_p(img))
    durations = [ms_per_step] * len(frames)
    durations[-1] = max(ms_per_step, hold_last_ms)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(
        path, format="GIF", save_all=True, append_images=frames[1:], duration=durations,
        loop=0, optimize=False, disposal=1,
    )
    return path
