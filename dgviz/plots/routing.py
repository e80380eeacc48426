"""MoE routing figures: router weights at one step, expert load, churn, router entropy, the top-1
expert map, the encoder's routing, and how routing moves between steps."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import plotly.graph_objects as go

from .. import palette
from ..trace import FINAL, KEPT, Trace
from ._common import (
    AXIS_BELOW,
    BUDGET_LEFT,
    MONO,
    MUTED,
    TIMELINE_BELOW,
    View,
    boundary,
    check_layer,
    check_step,
    discrete_scale,
    int_axis,
    layer_px,
    legend_entries,
    position_px,
    size,
    step_custom,
    step_hover,
    texts,
    thin,
    timeline,
    view,
)


def _top1(ids: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Top-1 expert id along the last axis (highest weight)."""
    best = np.argmax(weights.astype(np.float32), axis=-1)[..., None]
    return np.take_along_axis(ids, best, axis=-1)[..., 0].astype(np.int64)


def _expert_colors(n_exp: int) -> tuple[list[list[Any]], str]:
    colors = [palette.expert_color(e) for e in range(n_exp)]
    note = ""
    if n_exp > len(palette.EXPERT_COLORS):
        note = f"colours repeat every {len(palette.EXPERT_COLORS)} experts: hover for the id"
    return discrete_scale(colors), note


def _expert_colorbar(n_exp: int) -> dict:
    return dict(title=dict(text="top-1 expert"), thickness=14,
                tickvals=list(range(n_exp)) if n_exp <= 16 else None)


def _layer_axis(fig: go.Figure, n_layers: int, title: str = "decoder layer") -> None:
    fig.update_yaxes(title_text=title, autorange="reversed", showgrid=False)
    int_axis(fig, n_layers)


# ============================================================================ one step
def expert_weights(
    trace: Trace, step: int | None = None, layer: int = 0, row: int = 0
) -> go.Figure:
    """Router weights at one step and decoder layer: position x expert (blank: not chosen)."""
    v = view(trace, row, routing=True)
    step = 0 if step is None else step
    check_step(trace, step)
    check_layer(trace, layer)
    n_exp = trace.num_experts
    length = trace.canvas_length
    ids = trace.expert_ids[row, step, layer].astype(np.int64)  # [L, k]
    w = trace.expert_weights[row, step, layer].astype(np.float32)
    z = np.full((length, n_exp), np.nan)
    rank = np.full((length, n_exp), -1)
    pos = np.repeat(np.arange(length), ids.shape[1])
    z[pos, ids.ravel()] = w.ravel()
    rank[pos, ids.ravel()] = np.tile(np.arange(ids.shape[1]), length)
    tokens = texts(trace, trace.canvas_in[row, step])
    fig = go.Figure(
        go.Heatmap(
            z=z, x=np.arange(n_exp), y=np.arange(length),
            text=np.broadcast_to(tokens[:, None], z.shape), customdata=rank + 1,
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
        f"{BUDGET_LEFT}: {int(trace.step_remaining[step])}) · top-{ids.shape[1]} of {n_exp} "
        "experts"
    )
    v.layout(fig, "Expert weights per position", note, plot_bgcolor="#F4F4F4")
    fig.update_xaxes(title_text="expert", showgrid=False)
    fig.update_yaxes(title_text="position in canvas", autorange="reversed", showgrid=False)
    return size(fig, position_px(length))


# ============================================================================ over the run
def expert_load(
    trace: Trace, row: int = 0, canvas: int | None = None, weighted: bool = False
) -> go.Figure:
    """How often each decoder layer sent a token to each expert over the run: layer x expert.

    Counts every (active step, position, choice): each layer's row sums to
    ``active steps x positions x k``. ``weighted=True`` sums router weights instead.
    """
    v = view(trace, row, canvas, routing=True)
    steps = v.steps[v.active]
    n_exp = trace.num_experts
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
    v.layout(fig, "Expert load: decoder layer × expert", note)
    fig.update_xaxes(title_text="expert", showgrid=False)
    _layer_axis(fig, n_layers)
    if n_exp <= 32:
        int_axis(fig, n_exp, "x")
    return size(fig, layer_px(n_layers))


def expert_churn(
    trace: Trace, row: int = 0, canvas: int | None = None, by: str = "step",
    max_cells: int | None = None,
) -> go.Figure:
    """How often positions change their top-1 expert between consecutive steps.

    ``by="step"``: layer x step, the share of the canvas whose top-1 expert differs from the
    step before (blank on a canvas's first step). ``by="position"``: layer x output position,
    how many times that position's top-1 expert changed during its canvas.
    """
    v = view(trace, row, canvas, routing=True)
    if by not in ("step", "position"):
        raise ValueError(f"by must be 'step' or 'position' (got {by!r}).")
    top1 = _top1(trace.expert_ids[row], trace.expert_weights[row])  # [S, N, L]
    active = trace.active[row]
    changed = np.zeros(top1.shape, dtype=bool)
    changed[1:] = top1[1:] != top1[:-1]
    valid = np.zeros(trace.num_steps, dtype=bool)
    valid[1:] = (trace.step_canvas[1:] == trace.step_canvas[:-1]) & active[1:] & active[:-1]
    if by == "step":
        return _churn_by_step(v, changed, valid)
    return _churn_by_position(v, changed, valid, max_cells)


def _churn_by_step(v: View, changed: np.ndarray, valid: np.ndarray) -> go.Figure:
    trace, steps = v.trace, v.steps
    n_layers = changed.shape[1]
    z = changed.mean(axis=2).T.astype(np.float64)  # [N, S]
    z[:, ~valid] = np.nan
    z = z[:, steps]
    fig = go.Figure(
        go.Heatmap(
            z=z, x=steps, y=np.arange(n_layers),
            customdata=step_custom(trace, steps, n_layers),
            colorscale=palette.LOAD_SCALE, zmin=0, zmax=1,
            colorbar=dict(title=dict(text="share changed"), tickformat=".0%", thickness=14),
            hovertemplate=("layer %{y} · " + step_hover(False) + "<br>"
                           "%{z:.1%} of positions changed top-1 expert<extra></extra>"),
            hoverongaps=False,
        )
    )
    v.layout(fig, "Expert churn: share of positions whose top-1 expert changed",
             "blank: a canvas's first step")
    _layer_axis(fig, n_layers)
    timeline(fig, trace, steps)
    return size(fig, layer_px(n_layers), below=TIMELINE_BELOW)


def _churn_by_position(
    v: View, changed: np.ndarray, valid: np.ndarray, max_cells: int | None
) -> go.Figure:
    trace, length = v.trace, v.trace.canvas_length
    n_layers = changed.shape[1]
    canvases = np.unique(trace.step_canvas[v.steps])
    counts = np.zeros((n_layers, canvases.size * length))
    for i, c in enumerate(canvases):
        cs = trace.canvas_steps(c)
        counts[:, i * length:(i + 1) * length] = (changed[cs] & valid[cs][:, None, None]).sum(
            axis=0
        )
    x = (canvases[:, None] * length + np.arange(length)[None]).ravel()
    final = texts(trace, trace.final_tokens[v.row, canvases].ravel())
    th = thin(x.size, n_layers, max_cells)
    note = th.shown_note("position", f"{x.size}×{n_layers}")
    if th.thinned:
        keep = th.starts
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
    v.layout(fig, "Expert churn per position: top-1 expert changes", note)
    fig.update_xaxes(title_text="output position (canvas × length + position)", showgrid=False)
    _layer_axis(fig, n_layers)
    for c in canvases[1:]:
        boundary(fig, c * length - 0.5)
    return size(fig, layer_px(n_layers))


def router_entropy(trace: Trace, row: int = 0, canvas: int | None = None) -> go.Figure:
    """Mean router entropy (nats) over the canvas, per decoder layer and step.

    Low: the router is sure which experts a token needs; ``ln(experts)`` is the most it can be.
    """
    v = view(trace, row, canvas, routing=True)
    if trace.router_entropy is None:
        raise ValueError("This trace has routing but no router entropy recorded.")
    steps = v.steps
    z = trace.router_entropy[row, steps].astype(np.float64).mean(axis=-1).T  # [N, n]
    z[:, ~v.active] = np.nan
    n_exp = trace.num_experts
    n_layers = z.shape[0]
    finite = z[np.isfinite(z)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if hi - lo < 1e-3:
        lo, hi = lo - 0.01, hi + 0.01
    fig = go.Figure(
        go.Heatmap(
            z=z, x=steps, y=np.arange(n_layers),
            customdata=step_custom(trace, steps, n_layers),
            colorscale=palette.ENTROPY_SCALE, zmin=lo, zmax=hi,
            colorbar=dict(title=dict(text="nats"), thickness=14),
            hovertemplate=("layer %{y} · " + step_hover(False) + "<br>"
                           "mean router entropy %{z:.3f} nats<extra></extra>"),
            hoverongaps=False,
        )
    )
    v.layout(fig, "Router entropy over steps (mean over positions)",
             f"colour range = the data's; at most ln {n_exp} = {math.log(n_exp):.2f} nats "
             "(uniform)")
    _layer_axis(fig, n_layers)
    timeline(fig, trace, steps)
    return size(fig, layer_px(n_layers), below=TIMELINE_BELOW)


def expert_map(
    trace: Trace, layer: int = 0, row: int = 0, canvas: int | None = None,
    max_cells: int | None = None,
) -> go.Figure:
    """Top-1 expert of every position at every step, for one decoder layer (position x step)."""
    v = view(trace, row, canvas, routing=True)
    check_layer(trace, layer)
    steps = v.steps
    n_exp = trace.num_experts
    length = trace.canvas_length
    top1 = _top1(trace.expert_ids[row, steps, layer], trace.expert_weights[row, steps, layer])
    z = top1.astype(np.float64)  # [n, L]
    z[~v.active] = np.nan
    cells = texts(trace, trace.canvas_in[row, steps])
    th = thin(steps.size, length, max_cells)
    x = steps
    if th.thinned:
        x, z, cells = steps[th.ends], z[th.ends], cells[th.ends]
    scale, cnote = _expert_colors(n_exp)
    note = " · ".join(
        p for p in (f"decoder layer {layer}", th.shown_note("step", f"{length}×{steps.size}"),
                    cnote) if p
    )
    fig = go.Figure(
        go.Heatmap(
            z=z.T.astype(np.float32), x=x, y=np.arange(length), text=cells.T,
            customdata=step_custom(trace, x, length),
            colorscale=scale, zmin=-0.5, zmax=n_exp - 0.5, showscale=n_exp <= 32,
            colorbar=_expert_colorbar(n_exp),
            hovertemplate=(step_hover(False) + "<br>position %{y} · token read %{text}"
                           "<br>top-1 expert %{z}<extra></extra>"),
            hoverongaps=False,
        )
    )
    v.layout(fig, "Top-1 expert per position and step", note)
    fig.update_yaxes(title_text="position in canvas", autorange="reversed", showgrid=False)
    timeline(fig, trace, steps)
    return size(fig, position_px(length), below=TIMELINE_BELOW)


# ============================================================================ encoder
def encoder_routing(trace: Trace, row: int = 0, max_cells: int | None = None) -> go.Figure:
    """Top-1 expert of every token the encoder read (prompt, then finished canvases) per layer.

    Beyond ``max_cells`` cells, every n-th token is shown (and the subtitle says so)."""
    v = view(trace, row, encoder=True, steps=False)
    ids = trace.encoder_expert_ids[row].astype(np.int64)  # [T, N, k]
    w = trace.encoder_expert_weights[row]
    top1 = _top1(ids, w)  # [T, N]
    top_w = np.max(w.astype(np.float32), axis=-1)
    n_tok, n_layers = top1.shape
    n_exp = trace.num_experts
    labels = _encoder_token_texts(trace, row, n_tok)
    ent = (
        trace.encoder_router_entropy[row].astype(np.float32)
        if trace.encoder_router_entropy is not None else np.full((n_tok, n_layers), np.nan)
    )
    th = thin(n_tok, n_layers, max_cells)
    keep = th.starts
    custom = np.stack([top_w, ent], axis=-1)[keep].transpose(1, 0, 2)  # [N, T', 2]
    scale, cnote = _expert_colors(n_exp)
    show_ids = n_tok <= 60 and n_layers <= 40
    fig = go.Figure(
        go.Heatmap(
            z=top1[keep].T, x=keep, y=np.arange(n_layers),
            text=np.broadcast_to(labels[keep][None], (n_layers, keep.size)), customdata=custom,
            colorscale=scale, zmin=-0.5, zmax=n_exp - 0.5, xgap=1 if n_tok <= 80 else 0,
            ygap=1, showscale=n_exp <= 32, colorbar=_expert_colorbar(n_exp),
            hovertemplate=("encoder token %{x}: %{text}<br>layer %{y} · top-1 expert %{z} "
                           "(weight %{customdata[0]:.3f})<br>router entropy "
                           "%{customdata[1]:.3f} nats<extra></extra>"),
        )
    )
    for lo, hi, label in _encoder_segments(trace, row, n_tok):
        if lo > 0:
            boundary(fig, lo - 0.5)
        fig.add_annotation(x=(lo + hi - 1) / 2, y=1, yref="paper", yanchor="bottom",
                           text=label, showarrow=False, font=dict(size=11, color=MUTED))
    if show_ids:
        fig.update_xaxes(tickmode="array", tickvals=np.arange(n_tok).tolist(),
                         ticktext=[str(t) for t in labels], tickangle=-60,
                         tickfont=dict(family=MONO, size=10))
    note = " · ".join(
        q for q in (f"{n_tok} tokens read, {n_layers} layers",
                    th.shown_note("token", f"{n_tok}×{n_layers}"), cnote) if q
    )
    v.layout(fig, "Encoder routing: top-1 expert per token read", note)
    # the segment names sit on the plot's top edge: the title goes higher
    fig.update_layout(title_pad_b=42, margin_t=110)
    fig.update_xaxes(title_text="token the encoder read" if show_ids else "encoder token index",
                     showgrid=False)
    _layer_axis(fig, n_layers, "encoder layer")
    # tokens as tick labels, turned 60°: about 6 px a character (10 px monospace) times sin 60°
    longest = max((len(str(t)) for t in labels), default=0) if show_ids else 0
    return size(fig, layer_px(n_layers), below=AXIS_BELOW + min(160, math.ceil(5.3 * longest)))


def _encoder_token_texts(trace: Trace, row: int, n_tok: int) -> np.ndarray:
    """Visible text of the ``n_tok`` tokens the encoder read: the prompt, then the output."""
    read = np.concatenate([trace.prompt_ids[row], trace.output_ids[row]])[:n_tok]
    out = texts(trace, read)
    if read.size < n_tok:
        out = np.concatenate([out, np.array(["?"] * (n_tok - read.size), dtype=object)])
    return out


def _encoder_segments(trace: Trace, row: int, n_tok: int) -> list[tuple[int, int, str]]:
    """``(first, end, label)`` of what the encoder read: the prompt, then each finished canvas."""
    bounds = [(0, min(trace.prompt_ids[row].size, n_tok), "prompt")]
    c = 0
    while bounds[-1][1] < n_tok:
        lo = bounds[-1][1]
        bounds.append((lo, min(lo + trace.canvas_length, n_tok), f"canvas {c}"))
        c += 1
    return bounds


# ============================================================================ between steps
def routing_similarity(trace: Trace, row: int = 0, canvas: int | None = None) -> go.Figure:
    """How much each step's routing resembles the step before's, and whether it settles before
    the tokens do.

    Top: layer x step, the weighted Jaccard similarity of each position's expert weights with
    the step before's, averaged over positions (1: the same experts with the same weights;
    hover: distinct experts the step used). Bottom, averaged over layers: the similarity at
    positions whose token (the one the decoder read) changed since the step before and at those
    whose token stayed, beside the share of positions already holding their final token
    (lock-in). See `Trace.routing_steps`.
    """
    from plotly.subplots import make_subplots

    v = view(trace, row, canvas, routing=True)
    steps = v.steps
    rs = trace.routing_steps
    sim = rs["similarity"][row, steps].astype(np.float64).T  # [N, n]
    used = rs["experts_used"][row, steps].T
    n_layers = sim.shape[0]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.55, 0.45],
                        vertical_spacing=0.1)
    custom = np.concatenate([step_custom(trace, steps, n_layers), used[..., None]], axis=-1)
    fig.add_trace(go.Heatmap(
        z=sim, x=steps, y=np.arange(n_layers), customdata=custom,
        colorscale=palette.LOAD_SCALE, zmin=0, zmax=1,
        colorbar=dict(title=dict(text="similarity"), thickness=14, len=0.55, y=1,
                      yanchor="top"),
        hovertemplate=("layer %{y} · " + step_hover(False) + "<br>similarity to the step "
                       "before %{z:.2f}<br>distinct experts used %{customdata[3]}<extra></extra>"),
        hoverongaps=False, showlegend=False,
    ), row=1, col=1)
    locked = (steps[None, :] >= trace.lock_in[row][trace.step_canvas[steps]].T).mean(axis=0)
    lines = (
        (rs["similarity_changed"][row, steps], "routing similarity: token changed", MUTED,
         "dot"),
        (rs["similarity_stayed"][row, steps], "routing similarity: token stayed",
         palette.STATE_COLORS[KEPT], "solid"),
        (locked, "tokens settled (share holding their final token)",
         palette.STATE_COLORS[FINAL], "dash"),
    )
    for y, name, color, dash in lines:
        y = np.asarray(y, dtype=np.float64)
        if y.ndim == 2:  # [n, N] -> mean over the layers that have a value
            count = np.isfinite(y).sum(-1)
            y = np.where(count > 0, np.nansum(y, axis=-1) / np.maximum(count, 1), np.nan)
        y = np.where(v.active, y, np.nan)
        fig.add_trace(go.Scatter(
            x=steps, y=y, name=name, mode="lines+markers", connectgaps=False,
            line=dict(color=color, width=2.5, dash=dash), marker=dict(size=4),
            hovertemplate="step %{x}<br>" + name + ": %{y:.2f}<extra></extra>",
        ), row=2, col=1)
    v.layout(fig, "Routing between steps: similarity to the step before",
             "blank: a canvas's first step (no step before)")
    fig.update_yaxes(title_text="decoder layer", autorange="reversed", showgrid=False,
                     tickmode="linear" if n_layers <= 16 else None, dtick=1, row=1, col=1)
    fig.update_yaxes(title_text="mean over layers", range=[0, 1.05], row=2, col=1)
    timeline(fig, trace, steps, row=2, col=1, top_axis=True, label_canvases=True)
    fig.update_xaxes(showgrid=False, row=1, col=1)
    for c in np.unique(trace.step_canvas[steps])[1:]:
        boundary(fig, int(trace.canvas_bounds[c, 0]) - 0.5, row=1, col=1)
    return size(fig, layer_px(n_layers) + 220, below=TIMELINE_BELOW,
                legend=legend_entries(fig))
