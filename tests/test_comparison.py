"""Schedules and comparisons: every schedule kind records, pairing by seed, summary numbers by
hand, interrupted sweeps, bundles, the synced view."""

from __future__ import annotations

import itertools
import json
import math
import warnings

import numpy as np
import pytest
import torch
from conftest import needs_diffusers

import dgviz
from dgviz.comparison import (
    Comparison,
    compare,
    load_comparison,
    lock_fraction_curve,
    pareto_mask,
    prediction_lock_in,
    sweep,
)
from dgviz.schedules import (
    CosineSampler,
    FixedRateSampler,
    Schedule,
    as_schedule,
    diffusers_unavailable,
    presets,
)
from dgviz.testing import tiny_model
from dgviz.trace import Trace

try:
    import diffusers
except ImportError:
    diffusers = None

PROMPT = [{"role": "user", "content": "the cat sat"}]
L = 16  # tiny_model's canvas length


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny models run ~10x faster on one thread when the CPU is shared."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tiny():
    return tiny_model()


# ---------------------------------------------------------------------------- every kind records
def test_transformers_settings_record_and_apply(tiny):
    model, tok = tiny
    no_stop = Schedule.transformers("no stop", steps=3, entropy_bound=0.5, t_min=0.2, t_max=0.9,
                                    adaptive_stop=False)
    trace = no_stop.record(model, tok, PROMPT, seed=1, max_new_tokens=32)
    assert trace.complete
    assert trace.num_canvases == 2
    assert trace.num_steps == 6  # no adaptive stop: every canvas takes all its steps
    s = trace.settings
    assert s["max_denoising_steps"] == 3
    assert (s["entropy_bound"], s["t_min"], s["t_max"]) == (0.5, 0.2, 0.9)
    assert s["stability_threshold"] is None
    assert s["confidence_threshold"] is None
    np.testing.assert_allclose(trace.temperature[:3], [0.9, 0.2 + 0.7 * 2 / 3, 0.2 + 0.7 / 3],
                               rtol=1e-6)
    assert trace.meta["schedule"]["kind"] == "transformers"
    # a plain dict of generate settings is a schedule too; entropy_bound becomes sampler_config
    sched = as_schedule("d", {"max_denoising_steps": 2, "entropy_bound": 3.0})
    trace = sched.record(model, tok, PROMPT, seed=1, max_new_tokens=16)
    assert trace.settings["entropy_bound"] == 3.0
    assert trace.num_steps <= 2


@pytest.mark.parametrize("k", [3, 16])
def test_fixed_rate_sampler_commits_k_per_step_and_keeps_them(tiny, k):
    model, tok = tiny
    sched = Schedule.fixed_rate("fixed", tokens_per_step=k, adaptive_stop=False)
    trace = sched.record(model, tok, PROMPT, seed=0, max_new_tokens=32)
    steps = math.ceil(L / k)
    assert trace.num_steps == 2 * steps
    assert trace.settings["max_denoising_steps"] == steps
    assert trace.settings["sampler"] == "FixedRateSampler"
    assert trace.settings["tokens_per_step"] == k
    for c in range(2):
        idx = trace.canvas_steps(c)
        acc = trace.accepted[0, idx]
        np.testing.assert_array_equal(acc.sum(axis=1), [min(L, k * (i + 1)) for i in range(steps)])
        assert (acc[1:] >= acc[:-1]).all()  # commits are never taken back
        for a, b in itertools.pairwise(idx):
            prev = trace.accepted[0, a - 1] if a != idx[0] else np.zeros(L, bool)
            new = trace.accepted[0, a] & ~prev
            # kept commits stay on the canvas; new ones put the sampled token there
            np.testing.assert_array_equal(trace.canvas_in[0, b][prev], trace.canvas_in[0, a][prev])
            np.testing.assert_array_equal(trace.canvas_in[0, b][new], trace.sampled[0, a][new])
        # the first commits of a canvas are its lowest-entropy positions
        new, ent = trace.accepted[0, idx[0]], trace.entropy[0, idx[0]]
        if (~new).any():
            assert ent[new].max() <= ent[~new].min()


def test_cosine_sampler_follows_the_cosine_budget(tiny):
    model, tok = tiny
    trace = Schedule.cosine("cos", steps=4, adaptive_stop=False).record(
        model, tok, PROMPT, seed=0, max_new_tokens=16)
    budget = [math.ceil(L * (1 - math.cos(math.pi / 2 * i / 4)) - 1e-9) for i in range(1, 5)]
    assert budget == [2, 5, 10, 16]
    np.testing.assert_array_equal(trace.accepted[0].sum(axis=1), budget)
    assert trace.settings["sampler"] == "CosineSampler"


def test_custom_samplers_work_with_record_directly(tiny):
    model, tok = tiny
    for factory in (FixedRateSampler.factory(4), CosineSampler.factory()):
        trace = dgviz.record(model, tok, PROMPT, seed=3, sampler=factory, max_new_tokens=16,
                             max_denoising_steps=4, routing=False)
        assert trace.accepted[0, -1].all() or trace.stop[0].any()
    with pytest.raises(ValueError, match="tokens_per_step"):
        FixedRateSampler.factory(0)


SCHEDULERS = {
    "entropy bound": lambda: diffusers.EntropyBoundScheduler(entropy_bound=0.5),
    "ddim": lambda: diffusers.DiscreteDDIMScheduler(),
    "ddim + corrector": lambda: diffusers.DiscreteDDIMScheduler(corrector_steps=1),
    "block refinement": lambda: diffusers.BlockRefinementScheduler(threshold=0.9),
}


@needs_diffusers
@pytest.mark.parametrize("name", sorted(SCHEDULERS))
def test_each_diffusers_scheduler_records(tiny, name):
    model, tok = tiny
    made = SCHEDULERS[name]()
    sched = Schedule.diffusers(name, made, steps=3)
    trace = sched.record(model, tok, PROMPT, seed=5, max_new_tokens=32)
    assert trace.complete
    assert trace.meta["source"] == "diffusers"
    assert trace.settings["sampler"] == type(made).__name__
    assert trace.settings["gen_length"] == 32
    assert trace.num_steps >= 1
    assert sched.kind == "diffusers"
    assert sched.to_dict()["scheduler"] == type(made).__name__

    fp = trace.forward_passes()
    if name == "ddim + corrector":
        assert fp > trace.num_steps  # corrector sweeps are forward passes too
    else:
        assert fp == trace.num_steps
    # each run gets a fresh scheduler: recording twice gives the same output
    again = sched.record(model, tok, PROMPT, seed=5, max_new_tokens=32)
    np.testing.assert_array_equal(again.output_ids, trace.output_ids)


def test_presets_really_differ_and_all_record(tiny):
    model, tok = tiny
    ps = presets(steps=4)
    kinds = {"transformers", "sampler"} | ({"diffusers"} if diffusers_unavailable() is None
                                          else set())
    assert {s.kind for s in ps.values()} == kinds
    assert len({repr(s).split(":", 1)[1] for s in ps.values()}) == len(ps)  # no two alike
    comp = sweep(model, tok, PROMPT, {k: ps[k] for k in ps if k != "default"}, seeds=[0],
                 max_new_tokens=16, progress=False)
    assert comp.complete
    assert len(comp) == len(ps) - 1
    df = comp.summary
    assert df["forward_passes"].nunique() > 3  # the presets do not all cost the same


# ---------------------------------------------------------------------------- pairing by seed
def test_pairing_by_seed(tiny):
    model, tok = tiny
    schedules = {"few": {"max_denoising_steps": 2}, "fixed": Schedule.fixed_rate(tokens_per_step=8),
                 "bound": Schedule.transformers(steps=3, entropy_bound=2.0)}
    a = sweep(model, tok, PROMPT, schedules, seeds=[0, 1], max_new_tokens=16, progress=False)
    b = sweep(model, tok, PROMPT, schedules, seeds=[1], max_new_tokens=16, progress=False)
    assert [(r.label, r.seed) for r in a] == [("few", 0), ("fixed", 0), ("bound", 0),
                                              ("few", 1), ("fixed", 1), ("bound", 1)]
    for run in a:
        assert run.trace.settings["seed"] == run.seed
    # same seed + same schedule => identical run, even in another sweep
    for label in schedules:
        np.testing.assert_array_equal(a[label, 1].trace.output_ids, b[label, 1].trace.output_ids)
        np.testing.assert_array_equal(a[label, 1].trace.canvas_in, b[label, 1].trace.canvas_in)
    # paired runs start from the same noise; other seeds from other noise
    for seed in (0, 1):
        first = [a[label, seed].trace.canvas_in[0, 0] for label in schedules]
        for other in first[1:]:
            np.testing.assert_array_equal(other, first[0])
    assert not np.array_equal(a["few", 0].trace.canvas_in[0, 0], a["few", 1].trace.canvas_in[0, 0])
    # agreement is against the reference schedule's run with the same seed
    df = a.summary
    assert (df.loc[df.label == "few", "agreement"] == 1.0).all()


# ---------------------------------------------------------------------------- numbers by hand
def hand_trace(outputs=(11, 12, 13, 21, 22, 23), seed=7) -> Trace:
    """As tests/test_trace.py::hand_trace: 1 row, canvases of 3 positions taking 4 and 2 steps;
    lock_in is [1, 0, 2] (canvas 0) and [5, 4, 4] (canvas 1)."""
    draft = np.array([[10, 12, 13], [11, 12, 14], [11, 12, 13], [11, 12, 13],
                      [20, 22, 23], [21, 22, 23]])[None]
    accepted = np.array([[0, 1, 0], [1, 1, 0], [1, 0, 1], [1, 1, 1],
                         [0, 0, 1], [1, 1, 1]], bool)[None]
    s, length = 6, 3
    conf = np.array([[.1, .2, .3], [.4, .5, .6], [.5, .5, .5], [.6, .7, .8],
                     [.2, .2, .2], [.9, .6, .3]], np.float32)[None]
    return Trace(
        canvas_in=np.zeros((1, s, length)), sampled=draft, draft=draft, accepted=accepted,
        confidence=conf, entropy=np.ones((1, s, length)),
        topk_ids=np.stack([draft, draft + 1], axis=-1),
        topk_probs=np.stack([conf, conf / 2], axis=-1),
        active=np.ones((1, s), bool), stop=np.zeros((1, s), bool),
        step_canvas=np.array([0, 0, 0, 0, 1, 1]), step_remaining=np.array([4, 3, 2, 1, 4, 3]),
        temperature=np.linspace(0.8, 0.4, s), step_seconds=np.full(s, 0.01),
        prompt_ids=np.array([[1, 2]]), output_ids=np.array([list(outputs)]),
        tokens_per_forward=np.array([1.0]), token_text={i: f"t{i}" for i in range(30)},
        meta={"settings": {"seed": seed, "sampler": "Hand"}, "text": ["out"],
              "prompt_text": ["in"]},
    )


def test_summary_matches_hand_computed_values():
    ref = hand_trace()
    other = hand_trace(outputs=(11, 0, 13, 21, 22, 0))  # 4 of 6 tokens agree
    comp = compare([ref, other], labels=["ref", "other"], score=lambda text: 0.25)
    df = comp.summary.set_index("label")
    r = df.loc["ref"]
    assert r["seed"] == 7
    assert r["canvases"] == 2
    assert r["steps"] == 6
    assert r["forward_passes"] == 6
    assert r["forward_passes_per_canvas"] == 3.0
    assert r["tokens_per_forward"] == 1.0
    assert r["wall_seconds"] == pytest.approx(0.06)  # compare(): the recorded step times
    # last steps of the canvases are 3 and 5: mean of [.6 .7 .8 .9 .6 .3]
    assert r["mean_final_confidence"] == pytest.approx(0.65)
    # steps each position needs (lock_in - canvas start + 1): canvas 0 [2,1,3], canvas 1 [2,1,1]
    # 50% = 2nd smallest: 2 and 1; 90% and 100% = 3rd: 3 and 2
    assert (r["steps_to_50"], r["steps_to_90"], r["steps_to_100"]) == (1.5, 2.5, 2.5)
    assert r["agreement"] == 1.0
    assert df.loc["other", "agreement"] == pytest.approx(4 / 6)
    assert r["score"] == 0.25
    xs, ys = lock_fraction_curve(ref)
    np.testing.assert_array_equal(xs, [0, 1, 2, 3, 4, 5, 6])
    np.testing.assert_allclose(ys, [0, 1 / 6, 2 / 6, 3 / 6, 3 / 6, 5 / 6, 1])
    table = comp.table
    assert list(table.index) == ["ref", "other"]
    assert table.loc["ref", "runs"] == 1
    assert table["pareto"].tolist() == [True, True]  # equal cost and score: neither dominates


def test_prediction_lock_in_by_hand_and_on_transformers(tiny):
    t = hand_trace()  # top-1 is the draft: the same as lock_in
    np.testing.assert_array_equal(prediction_lock_in(t), t.lock_in[0])
    t.topk_ids[0, 0, 0, 0] = 11  # step 0 already predicted pos 0's final token
    t.topk_ids[0, 3, 2, 0] = 99  # and the last step of canvas 0 no longer predicts pos 2's
    np.testing.assert_array_equal(prediction_lock_in(t), [[0, 0, 4], [5, 4, 4]])
    _, ys = lock_fraction_curve(t, basis="prediction")
    np.testing.assert_allclose(ys, [0, 2 / 6, 2 / 6, 2 / 6, 2 / 6, 5 / 6, 1])
    # transformers' draft is the argmax, so both bases agree on a real recording
    model, tok = tiny
    trace = dgviz.record(model, tok, PROMPT, seed=2, max_new_tokens=32, max_denoising_steps=4,
                         routing=False)
    np.testing.assert_array_equal(prediction_lock_in(trace), trace.lock_in[0])


def test_pareto_mask_by_hand():
    cost = np.array([1.0, 2.0, 2.0, 3.0, 4.0, np.nan])
    quality = np.array([0.2, 0.5, 0.4, 0.5, 0.9, 1.0])
    np.testing.assert_array_equal(pareto_mask(cost, quality),
                                  [True, True, False, False, True, False])


def test_figures_from_a_comparison():
    comp = compare({"a": hand_trace(), "b": hand_trace(outputs=(0,) * 6, seed=7)},
                   score=lambda text: 1.0)
    conv = comp.convergence_figure()
    assert len(conv.data) == 2
    assert list(conv.data[0].y) == pytest.approx(
        [0, 1 / 6, 2 / 6, 3 / 6, 3 / 6, 5 / 6, 1])
    assert list(comp.convergence_figure(x="normalized").data[0].x)[-1] == 1.0
    acc = comp.accepted_figure()
    assert list(acc.data[0].y) == [1, 2, 2, 3, 1, 3]
    pareto = comp.pareto_figure()
    front_line = [t for t in pareto.data if t.name.startswith("Pareto front")]
    assert len(front_line) == 1
    assert front_line[0] is pareto.data[0]  # drawn first: under the markers
    # both means at one point (equal cost and score): one shared label, not two drawn over each
    # other
    assert [a.text for a in pareto.layout.annotations] == ["a / b"]
    assert [t.name for t in pareto.data if t.name.endswith("(Pareto)")] == ["a (Pareto)",
                                                                           "b (Pareto)"]
    with pytest.raises(ValueError, match="score"):
        compare([hand_trace()]).pareto_figure()
    assert compare([hand_trace()]).pareto_figure(quality="agreement") is not None


# ---------------------------------------------------------------------------- interrupts
class _InterruptAfter:
    """A sampler factory whose sampler raises KeyboardInterrupt in its n-th run (as Ctrl-C
    would)."""

    def __init__(self, n):
        self.calls, self.n = 0, n

    def __call__(self, generation_config, model):
        self.calls += 1
        sampler = FixedRateSampler(generation_config, model, tokens_per_step=8)
        if self.calls >= self.n:
            def boom(*args, **kwargs):
                raise KeyboardInterrupt
            sampler.accept_canvas = boom
        return sampler


def test_interrupt_keeps_finished_runs(tiny):
    model, tok = tiny
    flaky = Schedule("flaky", kwargs={"max_denoising_steps": 2}, sampler=_InterruptAfter(2))
    schedules = {"few": {"max_denoising_steps": 2}, "flaky": flaky}
    with pytest.warns(UserWarning, match="Sweep interrupted: keeping the 3 finished"):
        comp = sweep(model, tok, PROMPT, schedules, seeds=[0, 1, 2], max_new_tokens=16,
                     progress=False)
    assert not comp.complete
    assert "INTERRUPTED" in repr(comp)
    assert [(r.label, r.seed) for r in comp] == [("few", 0), ("flaky", 0), ("few", 1)]
    assert all(r.trace.complete for r in comp)
    assert len(comp.summary) == 3


def test_interrupt_outside_recording_keeps_finished_runs(tiny):
    model, tok = tiny
    calls = []

    def score(text):
        calls.append(text)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return 1.0

    with pytest.warns(UserWarning, match="keeping the 1 finished"):
        comp = sweep(model, tok, PROMPT, {"a": {"max_denoising_steps": 1}}, seeds=[0, 1, 2],
                     score=score, max_new_tokens=16, progress=False)
    assert len(comp) == 1
    assert comp[0].score == 1.0


def test_errors_keep_finished_runs_on_the_exception(tiny):
    model, tok = tiny

    def score(text):
        if score.calls:
            raise RuntimeError("scorer broke")
        score.calls += 1
        return 0.5

    score.calls = 0
    with pytest.raises(RuntimeError, match="scorer broke") as info:
        sweep(model, tok, PROMPT, {"a": {"max_denoising_steps": 1}}, seeds=[0, 1],
              score=score, max_new_tokens=16, progress=False)
    partial = info.value.partial_comparison
    assert len(partial) == 1
    assert partial[0].score == 0.5
    assert not partial.complete


# ---------------------------------------------------------------------------- bundles
def test_bundle_round_trip(tiny, tmp_path):
    model, tok = tiny
    cosine = Schedule.cosine(steps=3)
    comp = sweep(model, tok, PROMPT, {"few": {"max_denoising_steps": 2}, "cosine": cosine},
                 seeds=[3, 4], score=lambda text: len(text) / 10, max_new_tokens=16,
                 reference="cosine", progress=False)
    path = comp.save(tmp_path / "bundle")
    index = json.loads((path / "index.json").read_text())
    assert index["format"] == "dgviz-comparison"
    assert len(index["runs"]) == 4
    assert all(p.suffix in (".dgtrace", ".json") for p in path.iterdir())
    back = load_comparison(path)
    assert back.reference == "cosine"
    assert back.complete
    assert back.labels == ["few", "cosine"]
    assert back.summary.equals(comp.summary)
    for a, b in zip(comp, back, strict=True):
        np.testing.assert_array_equal(a.trace.draft, b.trace.draft)
        assert a.schedule == b.schedule
    # an index that points outside its folder is refused
    index["runs"][0]["file"] = "../elsewhere.dgtrace"
    (path / "index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="outside"):
        load_comparison(path)


# ---------------------------------------------------------------------------- the synced view
def test_widget_stacks_one_synced_timeline_per_run():
    from dgviz.widget import Timeline

    comp = compare({"a": hand_trace(), "b": hand_trace(outputs=(0,) * 6)})
    box = comp.widget(sync_mode="forward_passes")
    view, table = box.children
    timelines = [c for c in view.children if isinstance(c, Timeline)]
    assert len(timelines) == 2
    assert len({t.sync for t in timelines}) == 1
    assert timelines[0].sync
    assert all(t.compact and t.sync_mode == "forward_passes" for t in timelines)
    assert [t.label for t in timelines] == [f"{r.label} · seed {r.seed}" for r in comp.runs]
    assert "forward_passes" in table.value
    assert "<td>a</td>" in table.value


# ---------------------------------------------------------------------------- errors
def test_errors_say_what_to_do(tiny):
    model, tok = tiny
    with pytest.raises(ValueError, match="at least one schedule"):
        sweep(model, tok, PROMPT, {}, seeds=[0])
    with pytest.raises(ValueError, match="reference"):
        sweep(model, tok, PROMPT, {"a": None}, seeds=[0], reference="b")
    with pytest.raises(ValueError, match="not both"):
        Schedule("x", sampler=FixedRateSampler.factory(2), scheduler=object())
    with pytest.raises(ValueError, match="seeds are given"):
        Schedule("x", kwargs={"seed": 1})
    with pytest.raises(TypeError, match="Schedule"):
        as_schedule("x", 3)
    with pytest.raises(TypeError, match="Traces"):
        compare(["not a trace"])
    assert isinstance(compare([]), Comparison)


def test_multirow_traces_become_one_run_per_row(tiny):
    model, tok = tiny
    trace = dgviz.record(model, tok, ["the cat", "the mat sat"], seed=0, max_new_tokens=16,
                         max_denoising_steps=2, routing=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        comp = compare([trace], labels=["batch"])
    assert [r.label for r in comp] == ["batch[0]", "batch[1]"]
    assert comp.summary["forward_passes"].tolist() == [trace.forward_passes(0),
                                                       trace.forward_passes(1)]


# ---------------------------------------------------------------------------- offline page
def test_offline_html_is_the_synced_timeline_page(tmp_path):
    hostile = hand_trace()
    hostile.token_text[11] = "</script><script>window.__pwned=1</script>"
    comp = compare({"<b>a</b>": hostile, "b": hand_trace(outputs=(0,) * 6)})
    text = comp.to_html(tmp_path / "compare.html").read_text()
    assert text.count('type="application/json" id="dgviz-data') == 2  # one data block per run
    assert "<script>window.__pwned" not in text
    assert "<b>a</b>" not in text
