"""What every figure shares: the one preamble (`view`), step thinning (`thin`), the title and
base layout, and the step-axis furniture (budget axis on top, canvas boundaries).

Private to `dgviz.plots`; the names here have no leading underscore because the module has one.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import plotly.graph_objects as go

from ..trace import Trace, visible

FONT = dict(family="DejaVu Sans, Arial, sans-serif", size=13)
MONO = "DejaVu Sans Mono, monospace"
INK = "#222222"
MUTED = "#555555"
# transformers' count down of a canvas's denoising steps (`Trace.step_remaining`, N … 1, the
# current step included); the widget (js/src/view.js) words it the same way
BUDGET_LEFT = "steps left in the budget"


def setting(name: str) -> Any:
    """A package-level setting (``dgviz.plots.MAX_CELLS``, ``MAX_MARKERS``), read at call time so
    that assigning it on the package takes effect."""
    return getattr(sys.modules[__package__], name)


# ============================================================================ the preamble
@dataclass(frozen=True)
class View:
    """The part of a trace one figure shows: a batch row and its steps (the run, or a canvas)."""

    trace: Trace
    row: int
    canvas: int | None
    steps: np.ndarray  # global step indices shown, in order

    @property
    def active(self) -> np.ndarray:
        """bool ``[n]``: the row was still denoising at each step shown."""
        return self.trace.active[self.row, self.steps]

    def title(self, main: str, note: str = "") -> dict:
        """The figure title: ``main`` in bold, below it where the view is and ``note``."""
        return title(main, self.trace, self.row, self.canvas, note)

    def layout(self, fig: go.Figure, main: str, note: str = "", **kwargs: Any) -> go.Figure:
        """`base_layout` with this view's title."""
        return base_layout(fig, title=self.title(main, note), **kwargs)


def view(
    trace: Trace, row: int = 0, canvas: int | None = None, *, routing: bool = False,
    encoder: bool = False, steps: bool = True,
) -> View:
    """Check what a figure needs and select its steps.

    In this order: the routing it draws (``routing``; the encoder's with ``encoder``), the
    batch ``row``, that the trace has steps (unless ``steps=False``), then ``canvas``.
    """
    if routing or encoder:
        need_routing(trace, encoder=encoder)
    trace.check_row(row)
    if not steps:
        return View(trace, row, canvas, np.arange(0))
    if trace.num_steps == 0:
        raise ValueError("This trace has no steps (the run was interrupted before the first).")
    return View(trace, row, canvas, select_steps(trace, canvas))


def select_steps(trace: Trace, canvas: int | None) -> np.ndarray:
    """Global step indices shown: the whole run, or one canvas."""
    if canvas is None:
        return np.arange(trace.num_steps)
    if not 0 <= canvas < trace.num_canvases:
        raise IndexError(
            f"canvas {canvas} out of range: this trace has {trace.num_canvases} canvas(es)."
        )
    return trace.canvas_steps(canvas)


def need_routing(trace: Trace, encoder: bool = False) -> None:
    arr = trace.encoder_expert_ids if encoder else trace.expert_ids
    if arr is None:
        part = "encoder (prompt) routing" if encoder else "MoE routing"
        raise ValueError(
            f"This trace has no {part}: record it with "
            "`dgviz.record(model, tokenizer, prompt, routing=True, ...)` (the default) to get "
            "routing figures."
        )


def check_step(trace: Trace, step: int) -> None:
    if not 0 <= step < trace.num_steps:
        raise IndexError(f"step {step} out of range: this trace has {trace.num_steps} steps.")


def check_layer(trace: Trace, layer: int) -> None:
    n_layers = trace.expert_ids.shape[2]
    if not 0 <= layer < n_layers:
        raise IndexError(f"layer {layer} out of range: this trace has {n_layers} routed layers.")


# ============================================================================ thinning
@dataclass(frozen=True)
class Thinning:
    """Which of ``n`` heatmap columns to keep so that ``per_col * columns <= limit``: columns
    are cut into bins of ``factor``; a figure averages each bin, or keeps its first or last."""

    n: int
    factor: int
    limit: int

    @property
    def thinned(self) -> bool:
        return self.factor > 1

    @property
    def starts(self) -> np.ndarray:
        """First index of each bin."""
        return np.arange(0, self.n, self.factor)

    @property
    def ends(self) -> np.ndarray:
        """Last index of each bin."""
        return np.minimum(self.starts + self.factor, self.n) - 1

    def shown_note(self, unit: str, cells: str) -> str:
        """``every 3rd step shown (88×300 cells > 120,000)``, or ``""`` when nothing is thinned."""
        if not self.thinned:
            return ""
        return f"every {nth(self.factor)} {unit} shown ({cells} cells > {self.limit:,})"

    def mean_note(self, cells: str) -> str:
        if not self.thinned:
            return ""
        return f"each column = mean of {self.factor} steps ({cells} cells > {self.limit:,} limit)"


def thin(n: int, per_col: int, max_cells: int | None) -> Thinning:
    """The thinning of ``n`` columns of ``per_col`` cells under ``max_cells`` (default:
    ``dgviz.plots.MAX_CELLS``)."""
    limit = setting("MAX_CELLS") if max_cells is None else max_cells
    factor = max(1, math.ceil(per_col * n / max(1, limit)))
    return Thinning(n=n, factor=factor, limit=limit)


def nth(n: int) -> str:
    """2 -> '2nd', 3 -> '3rd', 11 -> '11th'."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def bin_mean(values: np.ndarray, starts: np.ndarray, axis: int = -1) -> np.ndarray:
    """nan-mean of ``values`` over bins starting at ``starts`` along ``axis``."""
    values = np.moveaxis(np.asarray(values, dtype=np.float64), axis, -1)
    ok = ~np.isnan(values)
    sums = np.add.reduceat(np.where(ok, values, 0.0), starts, axis=-1)
    counts = np.add.reduceat(ok.astype(np.int64), starts, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    return np.moveaxis(out, -1, axis)


# ============================================================================ title and layout
def where_text(trace: Trace, row: int, canvas: int | None) -> str:
    parts = []
    if trace.batch_size > 1:
        parts.append(f"row {row}")
    if canvas is not None:
        parts.append(f"canvas {canvas} (canvases 0–{trace.num_canvases - 1})")
    elif trace.num_canvases > 1:
        parts.append(f"{trace.num_canvases} canvases")
    return " · ".join(parts)


def title(main: str, trace: Trace, row: int, canvas: int | None, note: str = "") -> dict:
    sub = where_text(trace, row, canvas)
    if not trace.complete:
        sub = (sub + " · " if sub else "") + "INCOMPLETE run"
    if note:
        sub = (sub + " · " if sub else "") + note
    text = f"<b>{main}</b>" + (f"<br><sup>{sub}</sup>" if sub else "")
    return dict(text=text, x=0.01, xref="container", xanchor="left", y=1, yref="paper",
                yanchor="bottom", pad=dict(b=22), font=dict(size=16))


# Vertical room, in px, so that nothing overlaps at a notebook's width (JupyterLab's output area
# is about 800 px wide) with the figure's own height:
AXIS_BELOW = 60  # under the plot area: x tick labels and the x axis title
TIMELINE_BELOW = 80  # the same with the canvas names of a step timeline between them
LEGEND_ROW = 22  # one legend entry in a one-column legend (13 px font)


def size(fig: go.Figure, plot_px: int, *, below: int = AXIS_BELOW, legend: int = 0) -> go.Figure:
    """Give the figure its own height: ``plot_px`` for the plot area, the top margin as set, and
    a bottom margin of ``below`` px for the x axis plus, with ``legend`` entries, a one-column
    legend under it. The legend is anchored to the figure's bottom edge (``yref="container"``),
    so it keeps its distance from the axis title whatever height the figure is shown at, and one
    entry per row needs no width: nothing wraps into the axis on a narrow screen either."""
    bottom = below + (legend * LEGEND_ROW + 10 if legend else 0)
    fig.update_layout(margin_b=bottom)
    if legend:
        fig.update_layout(showlegend=True, legend=dict(
            orientation="v", x=0, xanchor="left", xref="paper", y=0, yanchor="bottom",
            yref="container",
        ))
    fig.update_layout(height=int((fig.layout.margin.t or 0) + bottom + plot_px))
    return fig


def legend_entries(fig: go.Figure) -> int:
    """How many entries the figure's legend has (traces not hidden from it; heatmaps have none)."""
    return sum(
        1 for t in fig.data
        if t.type not in ("heatmap", "histogram2d") and t.showlegend is not False
    )


def base_layout(fig: go.Figure, **kwargs: Any) -> go.Figure:
    fig.update_layout(
        template="plotly_white",
        font=FONT,
        hoverlabel=dict(font=dict(family=MONO, size=12)),
        margin=dict(l=70, r=30, t=90, b=60),
        **kwargs,
    )
    return fig


# ============================================================================ cells and hovers
def texts(trace: Trace, ids: np.ndarray) -> np.ndarray:
    """Visible token text of every id, same shape (object array)."""
    ids = np.asarray(ids)
    uniq, inv = np.unique(ids, return_inverse=True)
    lut = np.array([visible(t) for t in trace.tokens(uniq)] or [""], dtype=object)
    return lut[inv.reshape(ids.shape)] if ids.size else np.empty(ids.shape, dtype=object)


def discrete_scale(colors: Sequence[str]) -> list[list[Any]]:
    """A colourscale of flat bands, one per colour (for categorical heatmaps)."""
    n = len(colors)
    scale: list[list[Any]] = []
    for i, c in enumerate(colors):
        scale.append([i / n, c])
        scale.append([(i + 1) / n, c])
    return scale


def step_custom(trace: Trace, last: np.ndarray, rows: int) -> np.ndarray:
    """int32 ``[rows, n, 3]`` hover data per column: canvas, steps left in the budget, last step.

    Numbers, not strings: plotly ships numeric arrays as compact binary."""
    last = np.asarray(last)
    cols = np.stack([trace.step_canvas[last], trace.step_remaining[last], last], axis=-1)
    return np.ascontiguousarray(np.broadcast_to(cols[None], (rows, *cols.shape)), np.int32)


def step_hover(binned: bool) -> str:
    if binned:
        return "steps %{x}–%{customdata[2]} (canvas %{customdata[0]})"
    return f"step %{{x}} (canvas %{{customdata[0]}}, {BUDGET_LEFT}: %{{customdata[1]}})"


def remaining_text(trace: Trace, steps: np.ndarray) -> list[str]:
    return [
        f"canvas {int(trace.step_canvas[s])} · {BUDGET_LEFT}: {int(trace.step_remaining[s])}"
        for s in steps
    ]


def gapped(trace: Trace, steps: np.ndarray, *ys: Any) -> tuple[np.ndarray, ...]:
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


# ============================================================================ axes
def timeline(
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
        _budget_axis(fig, trace, steps)
    canvases = np.unique(trace.step_canvas[steps])
    bounds = trace.canvas_bounds
    for c in canvases:
        lo, hi = (int(v) for v in bounds[c])
        if c != canvases[0]:
            boundary(fig, lo - 0.5, **where)
        if label_canvases and canvases.size > 1:
            fig.add_annotation(
                x=(lo + hi - 1) / 2, y=0, yref="paper", yanchor="top", yshift=-22,
                text=f"canvas {c}", showarrow=False, font=dict(size=11, color=MUTED),
            )


def _budget_axis(fig: go.Figure, trace: Trace, steps: np.ndarray) -> None:
    """The axis on top: transformers' count down, the steps left in the budget."""
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
            title=dict(text=f"{BUDGET_LEFT}, this one included ({counter(trace)} counts down)",
                       font=dict(size=11)),
            showgrid=False, zeroline=False, tickfont=dict(size=10),
        )
    )


def counter(trace: Trace) -> str:
    """The library whose step count the budget axis shows."""
    return "transformers" if trace.meta.get("source", "transformers") == "transformers" \
        else "the diffusers pipeline"


def boundary(fig: go.Figure, x: float, **where: Any) -> None:
    """A canvas boundary readable on any background: white under a dark dotted line."""
    fig.add_vline(x=x, line=dict(color="#FFFFFF", width=4), **where)
    fig.add_vline(x=x, line=dict(color=INK, width=2, dash="dot"), **where)


def position_px(length: int) -> int:
    """Plot-area height for a position axis: 4 px a position (a row you can point at), 250–800
    px (a 256-token canvas: 3.1 px a row)."""
    return int(min(800, max(250, 4 * length)))


def layer_px(n_layers: int) -> int:
    """Plot-area height for a layer axis: 28 px a layer, 220–640 px."""
    return int(min(640, max(220, 28 * n_layers)))


def int_axis(fig: go.Figure, n: int, axis: str = "y") -> None:
    """Whole-number ticks for a small categorical axis (layers)."""
    if n <= 32:
        getattr(fig, f"update_{axis}axes")(tickmode="linear", tick0=0, dtick=1 if n <= 16 else 2)
