"""The figures of a `dgviz.comparison.Comparison` (its ``convergence_figure``,
``accepted_figure`` and ``pareto_figure`` methods call these).

`dgviz.comparison` is imported inside the functions: it imports the recording side (torch), which
``import dgviz.plots`` must not.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np
import plotly.graph_objects as go

from ..palette import label_color
from ._common import AXIS_BELOW, FONT, INK, MONO, legend_entries

if TYPE_CHECKING:
    from ..comparison import Comparison


def convergence_figure(comparison: Comparison, x: str = "forward_passes",
                       seeds: Iterable | None = None, basis: str = "draft") -> go.Figure:
    """Share of positions holding their final token against forward passes, one line per run
    (see `Comparison.convergence_figure`)."""
    from ..comparison import lock_fraction_curve

    if x not in ("forward_passes", "normalized"):
        raise ValueError('x must be "forward_passes" or "normalized".')
    fig = go.Figure()
    wanted = None if seeds is None else set(seeds)
    labels = comparison.labels
    shown = set()
    for run in comparison.runs:
        if wanted is not None and run.seed not in wanted:
            continue
        xs, ys = lock_fraction_curve(run.trace, basis=basis)
        if x == "normalized" and xs[-1] > 0:
            xs = xs / xs[-1]
        fig.add_trace(go.Scatter(
            x=xs, y=ys, mode="lines", name=run.label, legendgroup=run.label,
            showlegend=run.label not in shown,
            line=dict(color=label_color(labels.index(run.label)), width=1.5, shape="hv"),
            opacity=0.7,
            hovertemplate=f"{html.escape(run.label)} · seed {run.seed}<br>"
            + ("%{x:.0f} forward passes" if x == "forward_passes" else "%{x:.0%} of the run")
            + "<br>%{y:.0%} final<extra></extra>",
        ))
        shown.add(run.label)
    _layout(fig, "Convergence: share of positions already holding their final token"
            + (" (top-1 prediction)" if basis == "prediction" else ""),
            "forward passes (all canvases)" if x == "forward_passes"
            else "share of the run's forward passes")
    fig.update_yaxes(title_text="share of positions final", tickformat=".0%",
                     range=[-0.02, 1.02])
    if x == "normalized":
        fig.update_xaxes(tickformat=".0%")
    return fig


def accepted_figure(comparison: Comparison, seed: Any = "first") -> go.Figure:
    """Positions the sampler accepted at each step, one line per schedule (see
    `Comparison.accepted_figure`)."""
    fig = go.Figure()
    labels = comparison.labels
    shown = set()
    for run in comparison.runs:
        if seed == "first":
            if run.label in shown:
                continue
        elif seed is not None and run.seed != seed:
            continue
        t = run.trace
        if t.num_steps == 0:
            continue
        acc = (t.accepted[0] & t.active[0][:, None]).sum(axis=1)
        xs = (np.arange(t.num_steps) + 1) / t.num_steps
        fig.add_trace(go.Scatter(
            x=xs, y=acc, mode="lines+markers", name=run.label, legendgroup=run.label,
            showlegend=run.label not in shown,
            line=dict(color=label_color(labels.index(run.label)), width=2),
            marker=dict(size=4), customdata=np.arange(t.num_steps),
            hovertemplate=f"{html.escape(run.label)} · seed {run.seed}<br>step %{{customdata}}"
            "<br>%{y} accepted<extra></extra>",
        ))
        shown.add(run.label)
    _layout(fig, "Accepted per step", "share of the run's steps")
    fig.update_xaxes(tickformat=".0%")
    fig.update_yaxes(title_text="positions accepted", rangemode="tozero")
    return fig


def pareto_figure(comparison: Comparison, cost: str = "forward_passes_per_canvas",
                  quality: str = "score") -> go.Figure:
    """Quality against cost, every run and every schedule's mean, with the Pareto front of the
    means (see `Comparison.pareto_figure`)."""
    from ..comparison import SUMMARY_COLUMNS, pareto_mask

    df = comparison.summary
    if cost not in df or quality not in df:
        raise ValueError(f"cost and quality must be summary columns: {list(SUMMARY_COLUMNS)}")
    if df[quality].isna().all():
        raise ValueError(
            f"No {quality} values: give sweep(..., score=callable(text) -> float) or call "
            "comparison.rescore(score); or pick quality='agreement'."
        )
    table = comparison.table
    front = pareto_mask(table[cost].to_numpy(), table[quality].to_numpy())
    # Front means at the same point (equal cost and quality: neither dominates) share one label,
    # "a / b", on the first of them; separate labels there would be drawn over each other.
    texts: dict[int, str] = {}
    at_point: dict[tuple[float, float], int] = {}
    for i, label in enumerate(comparison.labels):
        if front[i]:
            point = (float(table.loc[label, cost]), float(table.loc[label, quality]))
            first = at_point.setdefault(point, i)
            texts[first] = f"{texts[first]} / {label}" if first in texts else label
    fig = go.Figure()
    # The front's line goes first, under the markers; last in the legend.
    order = np.argsort(table[cost].to_numpy()[front], kind="stable")
    fig.add_trace(go.Scatter(
        x=table[cost].to_numpy()[front][order], y=table[quality].to_numpy()[front][order],
        mode="lines", name="Pareto front (schedule means)", legendrank=1001,
        line=dict(color=INK, width=1.5, dash="dash", shape="hv"), hoverinfo="skip",
    ))
    for i, label in enumerate(comparison.labels):
        color = label_color(i)
        sub = df[df["label"] == label]
        fig.add_trace(go.Scatter(
            x=sub[cost], y=sub[quality], mode="markers", name=label, legendgroup=label,
            showlegend=False, marker=dict(color=color, size=7, opacity=0.45),
            customdata=sub["seed"],
            hovertemplate=f"{html.escape(label)} · seed %{{customdata}}<br>{cost} %{{x:.2f}}"
            f"<br>{quality} %{{y:.3f}}<extra></extra>",
        ))
        row = table.loc[label]
        fig.add_trace(go.Scatter(
            x=[row[cost]], y=[row[quality]], mode="markers",
            name=label + (" (Pareto)" if front[i] else ""), legendgroup=label,
            marker=dict(color=color, size=15, symbol="diamond" if front[i] else "circle",
                        line=dict(color=INK, width=1.5 if front[i] else 0.5)),
            cliponaxis=False,  # a diamond on the plot's edge is drawn whole
            hovertemplate=f"<b>{html.escape(label)}</b> (mean of {int(row['runs'])} seeds)<br>"
            f"{cost} %{{x:.2f}}<br>{quality} %{{y:.3f}}<extra></extra>",
        ))
    _layout(fig, f"Quality vs cost: {quality} against {cost.replace('_', ' ')}",
            cost.replace("_", " "))
    fig.update_yaxes(title_text=quality.replace("_", " "))
    values = df[quality].dropna()
    if values.min() >= 0 and values.max() <= 1:  # shares and pass/fail scores
        fig.update_yaxes(range=[-0.05, 1.12])
    log_x = _spread(df[cost]) > 20
    fig.update_xaxes(type="log" if log_x else "linear")
    for i, text in texts.items():  # boxed labels: the front's line rises through where they sit
        x = float(table.loc[comparison.labels[i], cost])
        fig.add_annotation(
            x=math.log10(x) if log_x and x > 0 else x, y=table.loc[comparison.labels[i], quality],
            text=html.escape(text), showarrow=False, xanchor="left", yanchor="bottom", xshift=8,
            yshift=6, font=dict(size=12), bgcolor="rgba(255,255,255,0.85)", borderpad=2,
        )
    return fig


def _spread(values) -> float:
    v = np.asarray(values, float)
    v = v[np.isfinite(v) & (v > 0)]
    return float(v.max() / v.min()) if v.size else 1.0


_TOP = 70
_PLOT_PX = 340  # at least
_LEGEND_TITLE_PX = 34
_LEGEND_ENTRY_PX = 24  # one schedule: its entry (20 px) and the gap between groups


def _layout(fig: go.Figure, title: str, xtitle: str) -> None:
    """Title, axes and size. The legend (one entry per schedule) stands right of the plot, as
    tall as it needs: the figure grows with the schedules so that none is cut or scrolls."""
    entries = legend_entries(fig)
    legend_px = _LEGEND_TITLE_PX + entries * _LEGEND_ENTRY_PX
    fig.update_layout(
        template="plotly_white", font=FONT,
        title=dict(text=f"<b>{title}</b>", x=0.01, xanchor="left", font=dict(size=16)),
        margin=dict(l=70, r=30, t=_TOP, b=AXIS_BELOW),
        legend=dict(title_text="schedule", tracegroupgap=4, x=1.02, xanchor="left", y=1,
                    yanchor="top"),
        hoverlabel=dict(font=dict(family=MONO, size=12)),
        height=_TOP + AXIS_BELOW + max(_PLOT_PX, legend_px),
    )
    fig.update_xaxes(title_text=xtitle)
