"""dgviz.plots: figure structure and values against a recorded tiny trace, and the exports."""

from __future__ import annotations

import dataclasses
import math
import os
import sys

import numpy as np
import plotly.graph_objects as go
import pytest

import dgviz
from dgviz import palette, plots
from dgviz.testing import tiny_model
from dgviz.trace import FINAL, NEW, RENOISED, visible

IN_CI = os.environ.get("CI", "").lower() == "true"


@pytest.fixture(scope="module")
def trace() -> dgviz.Trace:
    model, tok = tiny_model()
    return dgviz.record(model, tok, "the cat sat", seed=0, max_new_tokens=48,
                        max_denoising_steps=8)


@pytest.fixture(scope="module")
def no_routing(trace) -> dgviz.Trace:
    return dataclasses.replace(
        trace, expert_ids=None, expert_weights=None, router_entropy=None,
        encoder_expert_ids=None, encoder_expert_weights=None, encoder_router_entropy=None,
    )


def _heatmap(fig: go.Figure) -> go.Heatmap:
    maps = [t for t in fig.data if isinstance(t, go.Heatmap)]
    assert len(maps) == 1
    return maps[0]


def _vlines(fig: go.Figure) -> list[float]:
    return sorted({float(s.x0) for s in fig.layout.shapes if s.type == "line"})


def _top1(ids, weights):
    best = np.argmax(weights.astype(np.float32), axis=-1)[..., None]
    return np.take_along_axis(ids, best, axis=-1)[..., 0]


def test_trace_is_multi_canvas_with_routing(trace):
    # the rest of the file relies on this shape of run
    assert trace.num_canvases == 3
    assert trace.canvas_length == 16
    assert trace.num_steps == 24
    assert trace.has_routing
    assert trace.encoder_expert_ids is not None
    assert trace.active.all()


# ------------------------------------------------------------------ confidence / entropy
@pytest.mark.parametrize(("fn", "field"), [
    (plots.confidence_heatmap, "confidence"), (plots.entropy_heatmap, "entropy"),
])
def test_value_heatmap_whole_run(trace, fn, field):
    fig = fn(trace)
    hm = _heatmap(fig)
    z = np.asarray(hm.z, dtype=np.float64)
    np.testing.assert_allclose(z, getattr(trace, field)[0].T.astype(np.float64), rtol=1e-6)
    np.testing.assert_array_equal(np.asarray(hm.x), np.arange(trace.num_steps))
    # hover text is the visible draft token at that step
    text = np.asarray(hm.text)
    assert text.shape == (16, 24)
    assert text[5, 7] == visible(trace.tokens([trace.draft[0, 7, 5]])[0])
    # top axis: transformers' count down, the steps left in the budget
    top = fig.layout.xaxis99
    assert top.side == "top"
    assert top.overlaying == "x"
    for v, t in zip(top.tickvals, top.ticktext, strict=False):
        assert int(t) == trace.step_remaining[int(v)]
    # canvas boundaries on the global timeline
    assert _vlines(fig) == [7.5, 15.5]
    assert {a.text for a in fig.layout.annotations} >= {"canvas 0", "canvas 1", "canvas 2"}


def test_confidence_heatmap_one_canvas_and_scale(trace):
    fig = plots.confidence_heatmap(trace, canvas=1)
    hm = _heatmap(fig)
    steps = trace.canvas_steps(1)
    np.testing.assert_array_equal(np.asarray(hm.x), steps)
    np.testing.assert_allclose(np.asarray(hm.z), trace.confidence[0, steps].T, rtol=1e-6)
    assert (hm.zmin, hm.zmax) == (0.0, 1.0)
    assert _vlines(fig) == []  # no boundary inside one canvas
    assert "canvas 1 (canvases 0–2)" in fig.layout.title.text
    with pytest.raises(IndexError, match="canvas 3 out of range"):
        plots.confidence_heatmap(trace, canvas=3)
    with pytest.raises(IndexError, match="row 1 out of range"):
        plots.entropy_heatmap(trace, row=1)


def test_big_heatmap_averages_steps_and_says_so(trace):
    fig = plots.confidence_heatmap(trace, max_cells=16 * 8)  # 16x24 cells -> 3 steps a column
    hm = _heatmap(fig)
    z = np.asarray(hm.z)
    assert z.shape == (16, 8)
    np.testing.assert_allclose(z[:, 0], trace.confidence[0, 0:3].mean(axis=0), rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(hm.x), np.arange(0, 24, 3))
    assert "mean of 3 steps" in fig.layout.title.text


def test_inactive_steps_are_blank(trace):
    active = trace.active.copy()
    active[0, 20:] = False
    stopped = dataclasses.replace(trace, active=active)
    z = np.asarray(_heatmap(plots.confidence_heatmap(stopped)).z)
    assert np.isnan(z[:, 20:]).all()
    assert not np.isnan(z[:, :20]).any()


# ------------------------------------------------------------------ lock-in, convergence
def test_lock_in_map_matches_trace(trace):
    fig = plots.lock_in_map(trace)
    hm = _heatmap(fig)
    np.testing.assert_array_equal(np.asarray(hm.z), trace.states[0].T)
    # the state colours are the widget's
    scale_colors = [c for _, c in hm.colorscale]
    assert scale_colors[::2] == list(palette.STATE_COLORS[:4])  # a DiffusionGemma run's four
    assert list(hm.colorbar.tickvals) == [0, 1, 2, 3]
    lock = next(t for t in fig.data if t.name and t.name.startswith("lock-in"))
    x = np.asarray(lock.x) + 0.5
    assert (trace.lock_in[0] > trace.canvas_bounds[:, :1]).all()  # so every position is marked
    np.testing.assert_array_equal(x, trace.lock_in[0].ravel())
    np.testing.assert_array_equal(np.asarray(lock.y), np.tile(np.arange(16), 3))
    flips = next(t for t in fig.data if t.name and t.name.startswith("flip"))
    assert len(flips.x) == trace.flips[0].sum()
    # each flip marker sits where the draft changed from the step before, in one canvas
    for s, p in zip(flips.x, flips.y, strict=False):
        assert trace.step_canvas[s] == trace.step_canvas[s - 1]
        assert trace.draft[0, s, p] != trace.draft[0, s - 1, p]


def test_lock_in_bar_only_where_the_final_token_came_later(trace):
    draft = trace.draft.copy()
    draft[0, 0:8, 3] = draft[0, 7, 3]  # canvas 0, position 3: final token from step 0 on
    settled = dataclasses.replace(trace, draft=draft)
    assert settled.lock_in[0, 0, 3] == 0
    fig = plots.lock_in_map(settled, canvas=0)
    lock = next(t for t in fig.data if t.name and t.name.startswith("lock-in"))
    assert 3 not in list(lock.y)
    assert len(lock.y) == 15
    z = np.asarray(_heatmap(fig).z)
    assert (z[3] == FINAL).all()


def test_lock_in_map_drops_markers_beyond_limit(trace, monkeypatch):
    monkeypatch.setattr(plots, "MAX_MARKERS", 3)
    fig = plots.lock_in_map(trace)
    assert not any(t.name and t.name.startswith("flip") for t in fig.data)
    assert f"{trace.flips[0].sum():,} flips" in fig.layout.title.text


def test_convergence_curve_is_lock_in_not_accepted(trace):
    fig = plots.convergence_curve(trace)
    lines = {}
    for t in fig.data:
        if t.name:
            x = np.asarray(t.x, float)
            whole = x == np.round(x)  # the x.5 points are the gaps between canvases
            assert np.isnan(np.asarray(t.y, float)[~whole]).all()
            assert sorted(x[~whole]) == [7.5, 15.5]
            lines[t.name.split(" (")[0].split(" by")[0]] = np.asarray(t.y, float)[whole]
    locked = lines["holds its final token"]
    steps = np.arange(trace.num_steps)
    expect = (steps[:, None] >= trace.lock_in[0][trace.step_canvas]).mean(axis=1)
    np.testing.assert_allclose(locked, expect)
    assert locked[trace.canvas_bounds[:, 1] - 1].tolist() == [1.0, 1.0, 1.0]
    np.testing.assert_allclose(lines["accepted"], trace.accepted[0].mean(axis=1))
    stable = lines["stable"]
    assert np.isnan(stable[[0, 8, 16]]).all()
    np.testing.assert_allclose(stable[1], (trace.draft[0, 1] == trace.draft[0, 0]).mean())


def test_accepted_per_step_sums_and_tokens_per_forward(trace):
    fig = plots.accepted_per_step(trace)
    bars = [t for t in fig.data if isinstance(t, go.Bar)]
    assert len(bars) == 2
    total = np.sum([np.asarray(b.y) for b in bars], axis=0)
    np.testing.assert_array_equal(total, trace.accepted[0].sum(axis=1))
    assert sum(total) == trace.accepted[0].sum()
    assert bars[0].marker.color == palette.STATE_COLORS[NEW]
    # "accepted again" = accepted at this step and the step before, in the same canvas
    again = np.asarray(bars[1].y)
    assert again[0] == 0
    assert again[8] == 0
    np.testing.assert_array_equal(
        again[1:8], (trace.accepted[0, 1:8] & trace.accepted[0, :7]).sum(axis=1)
    )
    tpf = next(t for t in fig.data if isinstance(t, go.Scatter) and t.name
               and t.name.startswith("final tokens"))
    y = np.asarray(tpf.y, float)
    # at the end every position holds its final token: 48 tokens / 24 forward passes
    assert y[-1] == pytest.approx(48 / 24)
    assert y[-1] == pytest.approx(float(trace.tokens_per_forward[0]))
    assert "24 forward passes" in fig.layout.title.text


def test_sampler_explainer_figure(trace):
    step = 9
    ex = trace.sampler_explainer(step)
    fig = plots.sampler_explainer(trace, step)
    bar = next(t for t in fig.data if isinstance(t, go.Bar))
    np.testing.assert_allclose(np.asarray(bar.y), ex["sorted_entropy"], rtol=1e-6)
    colors = np.asarray(bar.marker.color)
    np.testing.assert_array_equal(colors == palette.STATE_COLORS[NEW], ex["accepted"])
    assert (colors[~ex["accepted"]] == palette.STATE_COLORS[RENOISED]).all()
    np.testing.assert_array_equal(np.asarray(bar.customdata)[:, 0], ex["order"])
    crit = next(t for t in fig.data if t.name and t.name.startswith("criterion"))
    np.testing.assert_allclose(np.asarray(crit.y), ex["criterion"], rtol=1e-9)
    hline = [s for s in fig.layout.shapes if s.y0 == s.y1]
    assert [s.y0 for s in hline] == [pytest.approx(0.1)] * 2  # entropy_bound, both panels
    assert tuple(fig.layout.yaxis2.range) == (0, pytest.approx(0.3))  # the zoom panel
    title = fig.layout.title.text
    assert "step 9 (canvas 1, steps left in the budget: 7)" in title
    assert f"accepted {int(ex['accepted'].sum())} of 16" in title
    with pytest.raises(IndexError):
        plots.sampler_explainer(trace, 24)


def test_lock_in_map_outlines_highlighted_positions(trace):
    fig = plots.lock_in_map(trace, canvas=0, highlight=[5, 2, 5])
    outlines = [s for s in fig.layout.shapes if s.type == "rect"]
    assert [(s.y0, s.y1) for s in outlines] == [(1.5, 2.5), (4.5, 5.5)]  # sorted, once each
    steps = trace.canvas_steps(0)
    assert all((s.x0, s.x1) == (steps[0] - 0.5, steps[-1] + 0.5) for s in outlines)
    assert any(t.name == "highlighted: positions 2, 5" for t in fig.data)
    assert not [s for s in plots.lock_in_map(trace).layout.shapes if s.type == "rect"]
    with pytest.raises(ValueError, match="highlight"):
        plots.lock_in_map(trace, highlight=[trace.canvas_length])


def test_sampler_explainer_zooms_on_a_log_axis_when_entropies_are_tiny(trace):
    """A sure model's entropies near the cut can be a few thousandths of a nat: on the zoom's
    linear 0..3x bound axis they would not show."""
    sure = dataclasses.replace(trace, entropy=(trace.entropy * 1e-3).astype(trace.entropy.dtype))
    fig = plots.sampler_explainer(sure, 9)
    axis = fig.layout.yaxis2
    assert axis.type == "log"
    low, high = axis.range
    shown = np.sort(sure.entropy[0, 9])
    assert 10**low <= shown[shown > 0].min()  # every bar of the window shows
    assert 10**high == pytest.approx(0.3)  # and the bound, with room for the criterion
    assert "log scale" in str([a.text for a in fig.layout.annotations])


# ------------------------------------------------------------------ routing
def test_expert_weights_figure(trace):
    step, layer = 5, 1
    fig = plots.expert_weights(trace, step, layer)
    z = np.asarray(_heatmap(fig).z, dtype=np.float64)
    assert z.shape == (16, 8)
    ids = trace.expert_ids[0, step, layer]
    w = trace.expert_weights[0, step, layer].astype(np.float64)
    assert (np.sum(~np.isnan(z), axis=1) == 2).all()  # top-2 per position
    for p in range(16):
        np.testing.assert_allclose(z[p, ids[p]], w[p], rtol=1e-3)
    np.testing.assert_allclose(np.nansum(z, axis=1), w.sum(axis=1), rtol=1e-3)
    assert "decoder layer 1 · step 5" in fig.layout.title.text


def test_expert_load_sums_to_tokens_times_k(trace):
    fig = plots.expert_load(trace)
    z = np.asarray(_heatmap(fig).z)
    n_layers, k = trace.expert_ids.shape[2], trace.expert_ids.shape[4]
    assert z.shape == (n_layers, 8)
    np.testing.assert_array_equal(z.sum(axis=1), [trace.num_steps * 16 * k] * n_layers)
    for layer in range(n_layers):
        expect = np.bincount(trace.expert_ids[0, :, layer].ravel(), minlength=8)
        np.testing.assert_array_equal(z[layer], expect)
    one = np.asarray(_heatmap(plots.expert_load(trace, canvas=2)).z)
    assert one.sum() == n_layers * 8 * 16 * k
    weighted = np.asarray(_heatmap(plots.expert_load(trace, weighted=True)).z)
    np.testing.assert_allclose(
        weighted.sum(axis=1),
        trace.expert_weights[0].astype(np.float64).sum(axis=(0, 2, 3)), rtol=1e-6,
    )


def test_expert_churn(trace):
    top1 = _top1(trace.expert_ids[0], trace.expert_weights[0])  # [S, N, L]
    fig = plots.expert_churn(trace)
    z = np.asarray(_heatmap(fig).z, dtype=np.float64)  # [N, S]
    assert np.isnan(z[:, [0, 8, 16]]).all()
    np.testing.assert_allclose(z[:, 3], (top1[3] != top1[2]).mean(axis=1))
    assert _vlines(fig) == [7.5, 15.5]
    byp = plots.expert_churn(trace, by="position")
    zp = np.asarray(_heatmap(byp).z)
    assert zp.shape == (top1.shape[1], 48)
    np.testing.assert_array_equal(zp[:, 16 + 4], (top1[9:16, :, 4] != top1[8:15, :, 4]).sum(0))
    assert np.nansum(z * 16) == pytest.approx(zp.sum())
    with pytest.raises(ValueError, match="by must be"):
        plots.expert_churn(trace, by="layer")


def test_router_entropy_and_expert_map(trace):
    z = np.asarray(_heatmap(plots.router_entropy(trace)).z)
    np.testing.assert_allclose(
        z, trace.router_entropy[0].astype(np.float64).mean(axis=-1).T, rtol=1e-6
    )
    assert (z <= math.log(8) + 1e-3).all()
    hm = _heatmap(plots.expert_map(trace, layer=1, canvas=0))
    top1 = _top1(trace.expert_ids[0, :8, 1], trace.expert_weights[0, :8, 1])
    np.testing.assert_array_equal(np.asarray(hm.z), top1.T)
    assert [c for _, c in hm.colorscale][::2] == [palette.expert_color(e) for e in range(8)]


def test_encoder_routing(trace):
    fig = plots.encoder_routing(trace)
    hm = _heatmap(fig)
    top1 = _top1(trace.encoder_expert_ids[0], trace.encoder_expert_weights[0])  # [T, N]
    np.testing.assert_array_equal(np.asarray(hm.z), top1.T)
    # the encoder read the prompt, then canvases 0 and 1
    labels = [a.text for a in fig.layout.annotations]
    assert labels == ["prompt", "canvas 0", "canvas 1"]
    assert _vlines(fig) == [2.5, 18.5]
    assert list(fig.layout.xaxis.ticktext[:3]) == ["the", "cat", "sat"]


def test_routing_figures_need_routing(no_routing):
    calls = [
        lambda: plots.expert_weights(no_routing, 0),
        lambda: plots.expert_load(no_routing),
        lambda: plots.expert_churn(no_routing),
        lambda: plots.router_entropy(no_routing),
        lambda: plots.expert_map(no_routing),
        lambda: plots.encoder_routing(no_routing),
        lambda: plots.routing_similarity(no_routing),
    ]
    for call in calls:
        with pytest.raises(ValueError, match=r"routing=True"):
            call()
    # the other figures still work, and all_figures leaves routing out
    assert set(plots.all_figures(no_routing)) == {
        "confidence", "entropy", "lock_in", "convergence", "accepted", "sampler",
    }


def test_all_figures_serialise(trace):
    figs = plots.all_figures(trace)
    assert len(figs) == 14
    for name, fig in figs.items():
        assert isinstance(fig, go.Figure), name
        assert fig.layout.title.text, name
        spec = fig.to_plotly_json()
        assert spec["data"], name
        fig.to_json()  # valid JSON (no numpy leftovers plotly cannot encode)


# ------------------------------------------------------------------ exports
def test_canvas_gif(trace, tmp_path):
    from PIL import Image

    path = plots.canvas_gif(trace, tmp_path / "run.gif", ms_per_step=100, hold_last_ms=900)
    with Image.open(path) as im:
        assert im.format == "GIF"
        assert im.n_frames == trace.num_steps
        assert im.is_animated
        size = im.size
        durations = []
        for i in range(im.n_frames):
            im.seek(i)
            durations.append(im.info["duration"])
        # cells take the state colours: at step 0 nothing is final yet, at the canvas's last
        # step (7) every position is (the legend swatch is there in both)
        final = tuple(int(palette.STATE_COLORS[FINAL][k:k + 2], 16) for k in (1, 3, 5))
        grey = tuple(int(palette.STATE_COLORS[RENOISED][k:k + 2], 16) for k in (1, 3, 5))
        counts = {}
        for i in (0, 7):
            im.seek(i)
            colors = dict((c, n) for n, c in im.convert("RGB").getcolors(1 << 16))
            counts[i] = (colors.get(final, 0), colors.get(grey, 0))
    assert durations[:-1] == [100] * (trace.num_steps - 1)
    assert durations[-1] == 900
    assert size[0] >= 560
    assert size[1] > 100
    assert trace.lock_in[0, 0].min() == 7  # the tiny model settles only at the last step
    assert counts[7][0] > 10 * counts[0][0]
    assert counts[0][1] > 10 * counts[7][1]
    one = trace.to_gif(tmp_path / "c1.gif", canvas=1)
    with Image.open(one) as im:
        assert im.n_frames == len(trace.canvas_steps(1))


def test_save_figure_png_and_svg(trace, tmp_path):
    fig = plots.expert_load(trace)
    try:
        png = plots.save_figure(fig, tmp_path / "load.png", width=500, height=300)
    except (ImportError, RuntimeError) as err:
        if IN_CI:
            raise
        pytest.skip(f"static export unavailable here: {err}")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    with Image.open(png) as im:
        assert im.size == (500, 300)
    svg = plots.save_figure(fig, tmp_path / "load.svg", width=500, height=300)
    import xml.etree.ElementTree as ET

    root = ET.parse(svg).getroot()
    assert root.tag.endswith("svg")
    assert "Expert load" in svg.read_text()


def test_save_figure_errors(trace, tmp_path, monkeypatch):
    fig = plots.expert_load(trace)
    with pytest.raises(ValueError, match="no suffix"):
        plots.save_figure(fig, tmp_path / "noext")
    html = plots.save_figure(fig, tmp_path / "load.html")  # needs neither kaleido nor Chrome
    assert "plotly" in html.read_text()[:5000].lower()
    monkeypatch.setenv("BROWSER_PATH", "/nonexistent/chromium")  # kaleido finds no browser
    with pytest.raises(RuntimeError, match=r"needs a Chrome or Chromium.*apt-get install chromium"):
        plots.save_figure(fig, tmp_path / "x.png")
    monkeypatch.setitem(sys.modules, "kaleido", None)
    with pytest.raises(ImportError, match=r"dgviz\[export\].*Chromium"):
        plots.save_figure(fig, tmp_path / "x.png")


def test_tokens_per_forward_leaves_padding_out(trace):
    out = trace.output_ids[0]
    pad = int(out[-1])  # pretend the last token's id is padding
    meta = {**trace.meta, "settings": {**trace.settings, "pad_token_id": pad}}
    padded = dataclasses.replace(trace, meta=meta)
    fig = plots.accepted_per_step(padded)
    tpf = next(t for t in fig.data if t.name and t.name.startswith("final tokens"))
    assert tpf.y[-1] == pytest.approx((out != pad).sum() / trace.forward_passes())
    assert (out == pad).sum() >= 1


def _two_rows(trace: dgviz.Trace) -> dgviz.Trace:
    """Row 0 as recorded; row 1 the same run with halved confidence and a stopped tail."""
    kwargs = {}
    per_run = ("step_canvas", "step_remaining", "temperature", "step_seconds")
    for f in dataclasses.fields(trace):
        value = getattr(trace, f.name)
        if f.name in ("token_text", "meta") or value is None or f.name in per_run:
            kwargs[f.name] = value
        else:
            kwargs[f.name] = np.concatenate([value, value], axis=0)
    kwargs["confidence"][1] *= 0.5
    kwargs["active"][1, 20:] = False
    kwargs["meta"] = {**trace.meta, **{key: trace.meta[key] * 2 for key in ("text", "prompt_text")
                                        if key in trace.meta}}
    return dgviz.Trace(**kwargs)


def test_row_selects_the_batch_row(trace):
    two = _two_rows(trace)
    z0 = np.asarray(_heatmap(plots.confidence_heatmap(two, row=0)).z)
    z1 = np.asarray(_heatmap(plots.confidence_heatmap(two, row=1)).z)
    np.testing.assert_allclose(z1[:, :20], z0[:, :20] * 0.5, rtol=1e-6)
    assert np.isnan(z1[:, 20:]).all()
    fig = plots.convergence_curve(two, row=1)
    assert "row 1" in fig.layout.title.text
    x, y = np.asarray(fig.data[0].x, float), np.asarray(fig.data[0].y, float)
    assert np.isnan(y[x >= 20]).all()
    assert not np.isnan(y[(x < 20) & (x == np.round(x))]).any()
    load = np.asarray(_heatmap(plots.expert_load(two, row=1)).z)
    assert load.sum(axis=1)[0] == 20 * 16 * 2  # only the 20 active steps count
    with pytest.raises(IndexError, match="row 2 out of range"):
        plots.lock_in_map(two, row=2)


def test_big_trace_builds_every_figure(monkeypatch):
    """The benchmark's 4 canvases x 256 positions x 48 steps x 8 layers trace: every figure
    builds, and the heatmaps stay under the cell limit."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parents[1] / "benchmarks" / "plots_build.py"
    spec = importlib.util.spec_from_file_location("plots_build", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    big = bench.synthetic_trace()
    assert big.num_canvases == 4
    assert big.canvas_in.shape == (1, 192, 256)
    figs = plots.all_figures(big)  # its time is benchmarks/plots_build.py's business
    assert len(figs) == 14
    for name, fig in figs.items():
        for tr in fig.data:
            if isinstance(tr, go.Heatmap):
                assert np.asarray(tr.z).size <= plots.MAX_CELLS, name
    # random drafts flip a lot: markers give way to a note in the title
    assert "flips: counts in hover only" in figs["lock_in"].layout.title.text
    monkeypatch.setattr(plots, "MAX_CELLS", 20_000)
    small = plots.confidence_heatmap(big)
    assert np.asarray(small.data[0].z).shape == (256, 64)  # 3 steps a column
    assert "mean of 3 steps" in small.layout.title.text


def test_interrupted_trace_still_plots(trace):
    """A run stopped halfway through canvas 1 (12 of 24 steps): every figure still builds."""
    per_step = {"canvas_in", "sampled", "draft", "accepted", "confidence", "entropy",
                "topk_ids", "topk_probs", "active", "stop", "expert_ids", "expert_weights",
                "router_entropy"}
    per_run_steps = {"step_canvas", "step_remaining", "temperature", "step_seconds"}
    kwargs = {}
    for f in dataclasses.fields(trace):
        value = getattr(trace, f.name)
        if f.name in per_step:
            value = value[:, :12]
        elif f.name in per_run_steps:
            value = value[:12]
        kwargs[f.name] = value
    kwargs["meta"] = {**trace.meta, "complete": False}
    cut = dgviz.Trace(**kwargs)
    assert cut.num_canvases == 2
    figs = plots.all_figures(cut)
    assert len(figs) == 14
    assert "INCOMPLETE" in figs["confidence"].layout.title.text
    z = np.asarray(_heatmap(figs["confidence"]).z)
    assert z.shape == (16, 12)
    # the unfinished canvas's "final" tokens are its latest draft
    lock = np.asarray(_heatmap(figs["lock_in"]).z)
    assert (lock[:, 11] == FINAL).all()


def test_sampler_explainer_says_when_another_sampler_ran(trace):
    meta = {**trace.meta, "settings": {**trace.settings, "sampler": "DDIMSampler"}}
    fig = plots.sampler_explainer(dataclasses.replace(trace, meta=meta), 2)
    assert "recorded with DDIMSampler" in fig.layout.title.text


@pytest.mark.browser
def test_hover_shows_token_and_values_in_a_browser(trace, tmp_path):
    """plotly.js renders our hover templates (numeric customdata decoded from binary)."""
    from pathlib import Path

    chromium = os.environ.get("DGVIZ_CHROMIUM", "/usr/bin/chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        if IN_CI:
            raise
        pytest.skip("needs playwright")
    if not Path(chromium).exists():
        if IN_CI:
            pytest.fail(f"no chromium at {chromium}")
        pytest.skip(f"no chromium at {chromium}")
    step, pos = 9, 5
    token = visible(trace.tokens([trace.draft[0, step, pos]])[0])
    read = visible(trace.tokens([trace.canvas_in[0, step, pos]])[0])
    left = int(trace.step_remaining[step])
    expect = {
        "confidence": (plots.confidence_heatmap(trace),
                       [f"step {step} (canvas 1, steps left in the budget: {left})",
                        f"position {pos}",
                        f"draft {token}", f"confidence {trace.confidence[0, step, pos]:.3f}"]),
        "lock_in": (plots.lock_in_map(trace),
                    [f"draft {token}", f"locked in at step {trace.lock_in[0, 1, pos]}",
                     f"flips {trace.flips[0, 1, pos]}"]),
        "expert_map": (plots.expert_map(trace, layer=1),
                       [f"token read {read}", "top-1 expert"]),
    }
    args = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=args)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 700})
            for name, (fig, parts) in expect.items():
                html = tmp_path / f"{name}.html"
                fig.write_html(str(html), include_plotlyjs=True)
                page.goto(html.as_uri())
                page.wait_for_selector(".plotly .main-svg")
                text = page.evaluate(
                    """([x, y]) => { const gd = document.querySelector('.js-plotly-plot');
                    Plotly.Fx.hover(gd, {xval: x, yval: y});
                    return document.querySelector('.hoverlayer').textContent; }""",
                    [step, pos],
                )
                for part in parts:
                    assert part in text, (name, part, text)
        finally:
            browser.close()


def test_encoder_and_churn_sample_beyond_the_cell_limit(trace):
    enc = plots.encoder_routing(trace, max_cells=2 * 12)  # 35 tokens x 2 layers -> every 3rd
    hm = _heatmap(enc)
    np.testing.assert_array_equal(np.asarray(hm.x), np.arange(0, 35, 3))
    top1 = _top1(trace.encoder_expert_ids[0], trace.encoder_expert_weights[0])
    np.testing.assert_array_equal(np.asarray(hm.z), top1[::3].T)
    assert "every 3rd token shown" in enc.layout.title.text
    churn = plots.expert_churn(trace, by="position", max_cells=2 * 24)  # 48 positions -> /2
    assert np.asarray(_heatmap(churn).z).shape == (2, 24)
    assert "every 2nd position shown" in churn.layout.title.text


# ------------------------------------------------------------------ the package
PUBLIC = ["MAX_CELLS", "MAX_MARKERS", "accepted_per_step", "all_figures", "canvas_gif",
          "confidence_heatmap", "convergence_curve", "encoder_routing", "entropy_heatmap",
          "expert_churn", "expert_load", "expert_map", "expert_weights", "lock_in_map",
          "router_entropy", "routing_similarity", "sampler_explainer", "save_figure"]


def test_public_names_are_where_they_were():
    assert sorted(plots.__all__) == PUBLIC
    for name in PUBLIC:
        assert hasattr(plots, name), name
    from dgviz.comparison import label_color

    assert label_color(0) == palette.label_color(0)


def test_importing_plots_needs_no_torch_and_no_pillow():
    """dgviz.plots imports numpy, plotly, dgviz.trace and dgviz.palette only (Pillow inside the
    GIF functions). dgviz/__init__ is bypassed: it imports the recorder, which needs torch."""
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "dgviz"
    code = (
        "import sys, types\n"
        f"pkg = types.ModuleType('dgviz'); pkg.__path__ = [{str(root)!r}]\n"
        "sys.modules['dgviz'] = pkg\n"
        "import dgviz.plots, dgviz.plots.comparison, dgviz.plots.gif\n"
        "top = {m.split('.')[0] for m in sys.modules}\n"
        "print(sorted(top & {'torch', 'transformers', 'diffusers', 'PIL', 'pandas'}))\n"
        "print(sorted(m for m in sys.modules if m.startswith('dgviz.') and"
        " not m.startswith('dgviz.plots')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    heavy, others = done.stdout.splitlines()
    assert heavy == "[]"
    assert others == "['dgviz.palette', 'dgviz.trace', 'dgviz.trace_checks']"


def test_comparison_methods_are_the_plots_functions():
    from dgviz.comparison import compare
    from dgviz.plots import comparison as figures

    runs = compare({"a": _one_canvas_run(0), "b": _one_canvas_run(1)}, score=lambda text: 1.0)
    for method, fn in ((runs.convergence_figure, figures.convergence_figure),
                       (runs.accepted_figure, figures.accepted_figure),
                       (runs.pareto_figure, figures.pareto_figure)):
        assert method().to_json() == fn(runs).to_json()
    with pytest.raises(ValueError, match="x must be"):
        runs.convergence_figure(x="steps")


def _one_canvas_run(seed: int) -> dgviz.Trace:
    model, tok = tiny_model()
    return dgviz.record(model, tok, "the cat sat", seed=seed, max_new_tokens=16,
                        max_denoising_steps=4, routing=False)


# ------------------------------------------------------------------ legible at a notebook's size
# JupyterLab's output area is about 800 px wide and gives a figure without a height ~360 px: every
# figure sets its own height, with room for its titles, axes and legend (docs: gallery).
CHAR_PX = 7.5  # a 13 px DejaVu Sans character, about


def _legend_entries(fig: go.Figure) -> int:
    return sum(1 for t in fig.data if not isinstance(t, go.Heatmap) and t.showlegend is not False)


def _comparison(n_labels: int):
    from dgviz.comparison import compare

    model, tok = tiny_model()
    runs = {}
    for i in range(n_labels):
        runs[f"schedule number {i}, a long label"] = dgviz.record(
            model, tok, "the cat sat", seed=i, max_new_tokens=16, max_denoising_steps=2 + i % 4,
            routing=False)
    return compare(runs, score=lambda text: len(text) % 3 / 2)


@pytest.fixture(scope="module")
def every_figure(trace) -> dict[str, go.Figure]:
    figs = dict(plots.all_figures(trace))
    figs["lock_in one canvas"] = plots.lock_in_map(trace, canvas=1)
    comparison = _comparison(13)
    figs["comparison convergence"] = comparison.convergence_figure()
    figs["comparison accepted"] = comparison.accepted_figure()
    figs["comparison pareto"] = comparison.pareto_figure()
    return figs


def test_every_figure_sets_its_height_with_room_for_the_plot(every_figure):
    for name, fig in every_figure.items():
        lay = fig.layout
        assert lay.height, name
        plot_px = lay.height - lay.margin.t - lay.margin.b
        assert plot_px >= 200, (name, plot_px)
        assert lay.margin.l >= 60, name  # the y axis title beside its tick labels
        assert lay.margin.b >= 60, name  # x tick labels and the x axis title
        if "xaxis99" in lay and lay.xaxis99.side == "top":  # the budget axis: title above it
            assert lay.margin.t >= 140, name
            assert lay.title.pad.b >= 62, name


def test_legends_stand_outside_the_plot_with_room_for_every_entry(every_figure):
    for name, fig in every_figure.items():
        n = _legend_entries(fig)
        if n == 0:
            continue
        lay, leg = fig.layout, fig.layout.legend
        plot_px = lay.height - lay.margin.t - lay.margin.b
        if leg.yref == "container":  # below: one column, on the figure's bottom edge
            assert leg.orientation == "v", name
            assert (leg.y, leg.yanchor) == (0, "bottom"), name
            assert lay.margin.b >= 60 + 22 * n, (name, n, lay.margin.b)
        else:  # right of the plot, as tall as the plot at most
            assert leg.x >= 1, name
            assert leg.xanchor == "left", name
            assert 34 + 24 * n <= plot_px, (name, n, plot_px)


def test_stacked_panels_keep_their_axis_titles_and_captions_apart(every_figure):
    for name in ("accepted", "sampler"):
        lay = every_figure[name].layout
        plot_px = lay.height - lay.margin.t - lay.margin.b
        top, bottom = lay.yaxis.domain, lay.yaxis2.domain
        assert top[0] > bottom[1], name
        # the y axis titles, each centred on its panel, do not reach each other
        gap = ((top[0] + top[1]) / 2 - (bottom[0] + bottom[1]) / 2) * plot_px
        half = (len(lay.yaxis.title.text) + len(lay.yaxis2.title.text)) / 2 * CHAR_PX
        assert gap >= half, (name, gap, half)
    # the explainer: between its panels, the top one's tick labels and the zoom panel's caption
    lay = every_figure["sampler"].layout
    plot_px = lay.height - lay.margin.t - lay.margin.b
    assert (lay.yaxis.domain[0] - lay.yaxis2.domain[1]) * plot_px >= 60


def test_pareto_labels_are_not_clipped_and_lines_are_not_pale_yellow(every_figure):
    pareto = every_figure["comparison pareto"]
    labels = pareto.layout.annotations  # boxed: the front's dashed line passes behind them
    assert labels
    assert all(a.bgcolor and a.showarrow is False for a in labels)
    assert pareto.layout.yaxis.range[1] >= 1.1  # room above a score of 1 for its label
    pale = {"#F0E442", "#DDCC77"}
    assert not pale & set(palette.LABEL_COLORS)
    assert list(palette.LABEL_COLORS[:7]) == [c for c in palette.EXPERT_COLORS[:8]
                                              if c not in pale]  # Okabe-Ito, yellow left out
    for name in ("comparison convergence", "comparison accepted", "comparison pareto"):
        colors = {t.line.color or t.marker.color for t in every_figure[name].data}
        assert not pale & colors, name
