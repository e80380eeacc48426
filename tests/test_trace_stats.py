"""Trace.stats() and Trace.routing_steps: what a run cost and how its routing moved, checked
against values computed by hand from the trace's arrays."""

from __future__ import annotations

import math

import numpy as np
import pytest

import dgviz
from dgviz.trace_stats import STATS_COLUMNS


def test_stats_columns_and_values(tiny_trace):
    t = tiny_trace
    s = t.stats()
    assert tuple(s.columns) == STATS_COLUMNS
    assert len(s) == t.batch_size
    row = s.iloc[0]
    assert row["forward_passes"] == t.active[0].sum() == t.forward_passes(0)
    assert row["tokens"] == t.output_ids.shape[1]  # no pad token id: every token counts
    assert row["tokens_per_forward"] == pytest.approx(row["tokens"] / row["forward_passes"])
    assert row["tokens_per_forward"] == pytest.approx(float(t.tokens_per_forward[0]))
    assert row["wall_seconds"] > 0
    assert row["tokens_per_second"] == pytest.approx(row["tokens"] / row["wall_seconds"])
    assert row["canvases"] == t.num_canvases
    assert row["steps_per_canvas"] == pytest.approx(t.active[0].sum() / t.num_canvases)
    # newly accepted per step, by hand
    new = []
    for lo, hi in t.canvas_bounds:
        prev = np.zeros(t.canvas_length, bool)
        for step in range(lo, hi):
            if t.active[0, step]:
                new.append(int((t.accepted[0, step] & ~prev).sum()))
            prev = t.accepted[0, step]
    assert row["accepted_per_step"] == pytest.approx(np.mean(new))
    assert row["max_accepted_per_step"] == max(new)


def test_stats_of_a_batch_count_padding_out(tiny):
    model, tok = tiny
    trace = dgviz.record(model, tok, ["the cat", "the cat sat on the mat"], seed=2,
                         max_new_tokens=32, max_denoising_steps=4, pad_token_id=0)
    s = trace.stats()
    assert len(s) == 2
    for b in range(2):
        assert s.iloc[b]["tokens"] == int((trace.output_ids[b] != 0).sum())


def test_routing_steps_by_hand(tiny_trace):
    t = tiny_trace
    rs = t.routing_steps
    b, s, n = t.expert_ids.shape[:3]
    for key in ("experts_used", "similarity", "similarity_changed", "similarity_stayed"):
        assert rs[key].shape == (b, s, n)
    step, layer = int(t.canvas_bounds[1, 0]) + 2, 1
    ids, w = t.expert_ids[0, step, layer], t.expert_weights[0, step, layer].astype(np.float64)
    pids, pw = (t.expert_ids[0, step - 1, layer],
                t.expert_weights[0, step - 1, layer].astype(np.float64))
    assert rs["experts_used"][0, step, layer] == len(np.unique(ids))
    jac = []
    for p in range(t.canvas_length):
        a = dict(zip(ids[p].tolist(), w[p].tolist(), strict=True))
        c = dict(zip(pids[p].tolist(), pw[p].tolist(), strict=True))
        keys = set(a) | set(c)
        lo = sum(min(a.get(e, 0), c.get(e, 0)) for e in keys)
        hi = sum(max(a.get(e, 0), c.get(e, 0)) for e in keys)
        jac.append(lo / hi)
    assert rs["similarity"][0, step, layer] == pytest.approx(np.mean(jac), rel=1e-4)
    changed = t.canvas_in[0, step] != t.canvas_in[0, step - 1]
    if changed.any():
        assert rs["similarity_changed"][0, step, layer] == pytest.approx(
            np.mean(np.array(jac)[changed]), rel=1e-4)
    # a canvas's first step has no step before
    for lo in t.canvas_bounds[:, 0]:
        assert math.isnan(rs["similarity"][0, lo, 0])
    assert np.nanmax(rs["similarity"]) <= 1 + 1e-6
    assert np.nanmin(rs["similarity"]) >= 0


def test_routing_steps_need_routing(tiny):
    model, tok = tiny
    trace = dgviz.record(model, tok, "the cat", seed=0, routing=False, max_new_tokens=16,
                         max_denoising_steps=3)
    with pytest.raises(ValueError, match="routing=False"):
        trace.routing_steps  # noqa: B018


def test_routing_similarity_figure(tiny_trace):
    fig = dgviz.plots.routing_similarity(tiny_trace)
    names = [tr.name for tr in fig.data if tr.type == "scatter" and tr.name]
    assert "routing similarity: token stayed" in names
    heat = next(tr for tr in fig.data if tr.type == "heatmap")
    np.testing.assert_allclose(np.asarray(heat.z, dtype=float),
                               tiny_trace.routing_steps["similarity"][0].T, equal_nan=True)
