"""The timeline widget's Python side: codec, traits, payload sizes, live mode, offline HTML."""

from __future__ import annotations

import base64
import copy
import json
import re

import numpy as np
import pytest
from ipywidgets.widgets.widget import _remove_buffers

import dgviz
from dgviz import _codec
from dgviz.html import trace_to_html
from dgviz.payload import canvas_payload, chunk_bytes
from dgviz.trace import FINAL, NEW, Trace
from dgviz.widget import Timeline, show

XSS = "<img src=x onerror=window.__pwned=1>"
BREAKOUT = "</script><script>window.__pwned=2</script>"


# ---------------------------------------------------------------------------- codec
@pytest.mark.parametrize("dtype", _codec.DTYPES)
def test_codec_round_trip_keeps_dtype_shape_and_values(dtype):
    rng = np.random.default_rng(0)
    src = rng.integers(0, 100, size=(3, 4, 5)).astype(dtype)
    enc = _codec.encode(src[:, ::2], dtype)  # a non-contiguous view
    assert enc["dtype"] == dtype
    assert enc["shape"] == [3, 2, 5]
    assert isinstance(enc["data"], memoryview)
    assert enc["data"].nbytes == 3 * 2 * 5 * np.dtype(dtype).itemsize
    out = _codec.decode(enc)
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, src[:, ::2])
    # the base64 form (offline HTML) decodes to the same array
    np.testing.assert_array_equal(_codec.decode(_codec.to_base64(enc)), out)


def test_codec_is_little_endian_and_refuses_lossy_ids():
    enc = _codec.encode(np.array([1, 256], dtype=">i4"), "int32")
    assert bytes(enc["data"]) == b"\x01\x00\x00\x00\x00\x01\x00\x00"
    with pytest.raises(ValueError, match="do not fit uint16"):
        _codec.encode(np.array([70000]), "uint16")
    with pytest.raises(ValueError, match="do not fit uint8"):
        _codec.encode(np.array([-1]), "uint8")
    with pytest.raises(ValueError, match="not one the widget decodes"):
        _codec.encode(np.zeros(2), "complex64")
    assert _codec.id_dtype(65535) == "uint16"
    assert _codec.id_dtype(262143) == "int32"


def test_codec_nbytes_counts_nested_buffers():
    tree = {"a": _codec.encode(np.zeros((2, 3)), "float32"),
            "b": [{"c": _codec.encode(np.zeros(5), "uint8")}], "d": "text"}
    assert _codec.nbytes(tree) == 24 + 5


# ---------------------------------------------------------------------------- traits
def _decode_chunk(chunk):
    return {k: _codec.decode(v) for k, v in chunk.items() if isinstance(v, dict)}


def test_timeline_traits_carry_the_trace(tiny_trace):
    w = Timeline(tiny_trace)
    run = w._run
    assert run["shape"] == {"steps": 24, "length": 16, "canvases": 3, "topk": 5, "layers": 2,
                            "k": 2, "experts": 8}
    assert run["transport"]["mode"] == "all"
    assert run["palette"] == dgviz.palette.as_dict()
    assert run["info"]["settings"]["entropy_bound"] == 0.1
    arrays = {k: _codec.decode(v) for k, v in run["arrays"].items()}
    np.testing.assert_array_equal(arrays["step_canvas"], tiny_trace.step_canvas)
    np.testing.assert_array_equal(arrays["lock_in"], tiny_trace.lock_in[0])
    np.testing.assert_array_equal(arrays["final_tokens"], tiny_trace.final_tokens[0])
    assert arrays["prompt_ids"].dtype == np.uint16  # 64-token vocabulary: narrow ids
    assert set(w._chunks) == {"0", "1", "2"}
    for c in range(3):
        lo, hi = tiny_trace.canvas_steps(c)[[0, -1]] + [0, 1]
        chunk = w._chunks[str(c)]
        assert chunk["lo"] == lo
        got = _decode_chunk(chunk)
        assert {k: str(v.dtype) for k, v in got.items()} == {
            "canvas_in": "uint16", "sampled": "uint16", "draft": "uint16", "state": "uint8",
            "accepted": "uint8", "confidence": "float32", "entropy": "float32",
            "topk_ids": "uint16", "topk_probs": "float16", "expert_ids": "uint8",
            "expert_weights": "float16", "router_entropy": "float16"}
        np.testing.assert_array_equal(got["draft"], tiny_trace.draft[0, lo:hi])
        np.testing.assert_array_equal(got["state"], tiny_trace.states[0, lo:hi])
        np.testing.assert_array_equal(got["topk_ids"], tiny_trace.topk_ids[0, lo:hi])
        np.testing.assert_array_equal(got["expert_ids"], tiny_trace.expert_ids[0, lo:hi])
        np.testing.assert_allclose(got["topk_probs"], tiny_trace.topk_probs[0, lo:hi], atol=1e-3)
    # token text for every id the row shows, as JSON strings
    assert w._tokens["5"] == "cat"
    shown = {int(k) for k in w._tokens}
    assert set(np.unique(tiny_trace.draft[0])) <= shown
    assert set(np.unique(tiny_trace.topk_ids[0])) <= shown
    assert w.selection is None
    assert w.status == ""


def test_widget_state_is_binary_not_json_numbers(tiny_trace):
    w = Timeline(tiny_trace)
    state, _paths, buffers = _remove_buffers(w.get_state())
    text = json.dumps({k: v for k, v in state.items() if k not in ("_esm", "_css")})
    # every array became a binary buffer; what stays JSON is small (facts, token text, palette)
    assert len(buffers) == 12 + 4 + 3 * 12  # run arrays, routing between steps, 3 chunks
    assert sum(memoryview(b).nbytes for b in buffers) == w.payload_bytes
    assert len(text) < 12_000
    number_list = r"\[\s*-?\d+(\.\d+)?(\s*,\s*-?\d+(\.\d+)?){15,}"
    assert not re.search(number_list, text), "a numeric JSON list"


def test_payload_sizes_match_the_estimate_and_the_cap(tiny_trace):
    for c in range(tiny_trace.num_canvases):
        assert chunk_bytes(tiny_trace, c) == _codec.nbytes(canvas_payload(tiny_trace, 0, c))
        assert chunk_bytes(tiny_trace, c, routing=False) == _codec.nbytes(
            canvas_payload(tiny_trace, 0, c, routing=False))
    per_canvas = chunk_bytes(tiny_trace, 0)
    assert per_canvas == 8 * (16 * (2 + 2 + 2 + 1 + 1 + 4 + 4) + 16 * 5 * (2 + 2)
                              + 2 * 16 * 2 * (1 + 2) + 2 * 16 * 2)

    # over the cap: only the starting canvas goes out, the others on request, LRU-evicted
    w = Timeline(tiny_trace, step=10, max_bytes=int(per_canvas * 1.5))
    assert w._run["transport"]["mode"] == "on-demand"
    assert w._run["transport"]["total_bytes"] == 3 * per_canvas
    assert list(w._chunks) == ["1"]
    w._on_msg(w, {"kind": "load", "canvas": 2}, [])
    assert list(w._chunks) == ["2"]
    assert _codec.nbytes(w._chunks) <= int(per_canvas * 1.5)
    w2 = Timeline(tiny_trace, max_bytes=2 * per_canvas + 1)
    w2._on_msg(w2, {"kind": "load", "canvas": 1}, [])
    w2._on_msg(w2, {"kind": "load", "canvas": 2}, [])
    assert sorted(w2._chunks) == ["1", "2"]
    w2._on_msg(w2, {"kind": "load", "canvas": 99}, [])  # ignored
    assert sorted(w2._chunks) == ["1", "2"]

    # routing can be left out
    w3 = Timeline(tiny_trace, routing=False)
    assert "expert_ids" not in w3._chunks["0"]
    assert w3._run["shape"]["layers"] == 0
    assert w3.payload_bytes < w.payload_bytes * 3


def test_timeline_rows_and_validation(tiny):
    model, tok = tiny
    trace = dgviz.record(model, tok, ["the cat", "sat on the mat"], seed=1, max_new_tokens=16,
                         max_denoising_steps=4)
    w = Timeline(trace, row=1)
    got = _decode_chunk(w._chunks["0"])
    np.testing.assert_array_equal(got["canvas_in"], trace.canvas_in[1, trace.canvas_steps(0)])
    assert w._run["info"]["row"] == 1
    assert w._run["info"]["prompt_text"] == trace.prompt_text[1]
    with pytest.raises(IndexError, match="out of range"):
        Timeline(trace, row=2)
    with pytest.raises(TypeError, match=r"needs a dgviz\.Trace"):
        Timeline({"not": "a trace"})
    with pytest.raises(ValueError, match="max_bytes"):
        Timeline(trace, max_bytes=0)
    assert "Timeline" in repr(w)
    assert len(repr(w)) < 200


def test_trace_displays_as_the_widget(tiny_trace):
    bundle = tiny_trace._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    assert "application/vnd.jupyter.widget-view+json" in data


def test_the_bundle_is_committed_and_is_an_esm_module():
    from dgviz.payload import STATIC

    js = (STATIC / "widget.js").read_text()
    assert "export" in js
    assert "render" in js
    assert not re.search(r"""(import|from)\s*\(?\s*["']https?:""", js), "no CDN imports"
    assert "innerHTML" not in js
    assert "insertAdjacentHTML" not in js
    assert "outerHTML" not in js
    assert (STATIC / "widget.css").stat().st_size > 500


# ---------------------------------------------------------------------------- live mode
def test_show_fills_the_widget_live_and_returns_the_recorded_trace(tiny):
    model, tok = tiny
    kwargs = dict(seed=3, max_new_tokens=32, max_denoising_steps=6)
    live_updates = []
    w = show(model, tok, "the cat sat", interval=0.0, **kwargs)
    w.observe(lambda ch: live_updates.append(ch["new"].get("lo")), names=["_live"])
    trace = w.wait(timeout=120)
    assert not w.running
    assert w.status.startswith("done: "), (w.status, w.error)
    assert w.error == ""
    assert trace is w.trace
    assert isinstance(trace, Trace)
    assert trace.complete
    expected = dgviz.record(model, tok, "the cat sat", **kwargs)
    for name in ("canvas_in", "sampled", "draft", "accepted", "confidence", "topk_ids",
                 "expert_ids", "output_ids", "step_canvas"):
        np.testing.assert_array_equal(getattr(trace, name), getattr(expected, name), err_msg=name)
    assert trace.text == expected.text
    # the final state is the full widget (all canvases, FINAL states), not the live one
    assert w._live == {}
    assert sorted(w._chunks) == [str(c) for c in range(trace.num_canvases)]
    assert _decode_chunk(w._chunks["0"])["state"].max() == FINAL
    assert w._run["info"]["live"] is False


def test_live_updates_arrive_while_the_model_generates(tiny):
    model, tok = tiny
    seen = []
    w = Timeline()

    missing = []

    def watch(change):  # runs in the recording thread, between steps
        run = change["new"]
        if run.get("shape"):
            seen.append((run["shape"]["steps"], run["info"]["live"], dict(w._live)))
            # every id the browser may show has its text: the table plus the live canvas's own
            known = set(w._tokens) | set(w._live.get("token_text", {}))
            for chunk in [*w._chunks.values(), w._live]:
                for name in ("canvas_in", "sampled", "draft", "topk_ids"):
                    if name in chunk:
                        ids = {str(int(i)) for i in np.unique(_codec.decode(chunk[name]))}
                        missing.extend(ids - known)

    w.observe(watch, names=["_run"])
    w.record(model, tok, "the cat sat", interval=0.0, seed=0, max_new_tokens=32,
          max_denoising_steps=5)
    w.wait(timeout=120)
    live = [s for s in seen if s[1]]
    assert missing == []
    assert [s[0] for s in live] == list(range(1, len(live) + 1))  # one update per step
    assert len(live) == w.trace.num_steps
    first = live[0][2]
    # the canvas in progress travels in _live and has no FINAL position yet
    assert first["canvas"] == 0
    # with its own token text: ids it shows that the token table does not have yet
    assert first["token_text"]
    assert all(int(k) in w.trace.token_text for k in first["token_text"])
    states = _codec.decode(first["state"])
    assert states.shape == (1, 16)
    assert states.max() <= NEW


def test_live_errors_show_in_the_widget(tiny):
    model, tok = tiny
    w = show(model, tok, "", interval=0.0, max_new_tokens=16)
    w.wait(timeout=60)
    assert w.status.startswith("error")
    assert "blank" in w.error
    assert isinstance(w.exception, ValueError)


def test_live_run_can_be_stopped(tiny):
    model, tok = tiny
    w = Timeline()

    def stop_at_step_two(change):
        if change["new"].startswith("running: step 2"):
            w.stop()

    w.observe(stop_at_step_two, names=["status"])
    w.record(model, tok, "the cat sat", interval=0.0, seed=0, max_new_tokens=48,
          max_denoising_steps=8)
    w.wait(timeout=60)
    assert w.status.startswith("stopped"), w.status
    assert w.trace is not None
    assert not w.trace.complete
    assert 2 <= w.trace.num_steps < 24
    assert w._run["shape"]["steps"] == w.trace.num_steps


# ---------------------------------------------------------------------------- offline HTML
def _script_blocks(text):
    return re.findall(r"<script([^>]*)>(.*?)</script>", text, flags=re.S)


def test_html_is_one_self_contained_file(tiny_trace, tmp_path):
    path = tiny_trace.to_html(tmp_path / "run.html")
    assert path == tmp_path / "run.html"
    text = path.read_text(encoding="utf-8")
    assert "Content-Security-Policy" in text
    assert "default-src 'none'" in text
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", text), "no external resources"
    blocks = _script_blocks(text)
    assert [attrs.strip() for attrs, _ in blocks] == [
        'type="application/json" id="dgviz-data"', 'type="application/json" id="dgviz-esm"',
        'type="module"']
    esm = base64.b64decode(json.loads(blocks[1][1]))
    from dgviz.payload import STATIC

    assert esm == (STATIC / "widget.js").read_bytes()
    state = json.loads(blocks[0][1])
    assert set(state["_chunks"]) == {"0", "1", "2"}
    assert state["_run"]["transport"]["offline"] is True
    draft = _codec.decode(state["_chunks"]["1"]["draft"])
    np.testing.assert_array_equal(draft, tiny_trace.draft[0, tiny_trace.canvas_steps(1)])
    assert 40_000 < len(text) < 200_000


def test_html_escapes_hostile_token_text(tiny_trace, tmp_path):
    trace = copy.copy(tiny_trace)
    trace.token_text = dict(tiny_trace.token_text)
    shown = int(tiny_trace.final_tokens[0, 0, 0])
    trace.token_text[shown] = XSS
    trace.token_text[int(tiny_trace.final_tokens[0, 0, 1])] = BREAKOUT
    title = "</title><script>alert(1)</script>"
    text = trace_to_html(trace, tmp_path / "x.html", title=title).read_text()
    assert XSS not in text
    assert BREAKOUT not in text
    assert "<img" not in text
    assert text.count("</script>") == 3  # only our own three blocks close
    assert "&lt;/title&gt;" in text
    state = json.loads(_script_blocks(text)[0][1])
    assert state["_tokens"][str(shown)] == XSS  # data intact, just escaped


def test_html_drops_routing_over_the_cap(tiny_trace, tmp_path):
    no_routing = sum(chunk_bytes(tiny_trace, c, False) for c in range(3))
    with pytest.warns(UserWarning, match="leaves routing out"):
        path = trace_to_html(tiny_trace, tmp_path / "a.html", max_bytes=no_routing + 10)
    state = json.loads(_script_blocks(path.read_text())[0][1])
    assert "expert_ids" not in state["_chunks"]["0"]
    with (pytest.raises(ValueError, match="exceeds max_bytes"),
          pytest.warns(UserWarning, match="leaves routing out")):
        trace_to_html(tiny_trace, tmp_path / "b.html", max_bytes=1000)


# ---------------------------------------------------------------------------- synced replay
def test_sync_compact_label_traits(tiny_trace):
    from traitlets import TraitError

    w = Timeline(tiny_trace)
    assert (w.sync, w.sync_mode, w.compact, w.label) == (None, "normalized", False, None)
    w = Timeline(tiny_trace, sync="g", sync_mode="forward_passes", compact=True, label=XSS)
    assert (w.sync, w.sync_mode, w.compact, w.label) == ("g", "forward_passes", True, XSS)
    state = w.get_state()
    assert state["sync"] == "g"
    assert state["sync_mode"] == "forward_passes"
    assert state["compact"] is True
    assert state["label"] == XSS
    w.sync_mode = "normalized"
    with pytest.raises(TraitError):
        w.sync_mode = "wall_clock"
    with pytest.raises(ValueError, match="sync_mode"):
        Timeline(tiny_trace, sync="g", sync_mode="steps")
    with pytest.raises(ValueError, match="group name"):
        Timeline(tiny_trace, sync="")
    with pytest.raises(TypeError, match="label"):
        Timeline(tiny_trace, label=3)


def test_synced_stacks_timelines_in_one_fresh_group(tiny_trace):
    import ipywidgets

    from dgviz.widget import synced

    box = synced([tiny_trace, tiny_trace, tiny_trace], ["a", "b", "c"], sync_mode="forward_passes")
    assert isinstance(box, ipywidgets.VBox)
    views = list(box.children)
    assert [v.label for v in views] == ["a", "b", "c"]
    assert len({v.sync for v in views}) == 1
    assert views[0].sync
    assert all(v.compact and v.sync_mode == "forward_passes" for v in views)
    other = synced([tiny_trace])
    assert other.children[0].sync != views[0].sync  # two stacks do not move each other
    assert other.children[0].label == "run 1"
    assert synced([tiny_trace], group="mine", compact=False).children[0].compact is False
    with pytest.raises(ValueError, match="labels"):
        synced([tiny_trace, tiny_trace], ["only one"])
    with pytest.raises(ValueError, match="sync_mode"):
        synced([tiny_trace], sync_mode="bogus")
    with pytest.raises(ValueError, match="at least one"):
        synced([])


def test_traces_to_html_embeds_each_run_once_and_the_bundle_once(tiny, tiny_trace, tmp_path):
    from dgviz.html import traces_to_html
    from dgviz.payload import STATIC

    short = dgviz.record(*tiny, "the cat sat", seed=0, max_new_tokens=32, max_denoising_steps=3)
    hostile = copy.copy(tiny_trace)
    hostile.token_text = dict(tiny_trace.token_text)
    hostile.token_text[int(tiny_trace.final_tokens[0, 0, 0])] = XSS
    hostile.token_text[int(tiny_trace.final_tokens[0, 0, 1])] = BREAKOUT
    labels = ["short", BREAKOUT, "<b>x</b> & y"]
    path = traces_to_html([short, hostile, tiny_trace], tmp_path / "c.html", labels=labels,
                          title=XSS)
    text = path.read_text(encoding="utf-8")
    for bad in (XSS, BREAKOUT, "<img", "<b>"):
        assert bad not in text
    assert "default-src 'none'" in text
    blocks = _script_blocks(text)
    assert [attrs.strip() for attrs, _ in blocks] == [
        'type="application/json" id="dgviz-data"', 'type="application/json" id="dgviz-data-1"',
        'type="application/json" id="dgviz-data-2"', 'type="application/json" id="dgviz-esm"',
        'type="module"']
    assert text.count("</script>") == 5
    assert base64.b64decode(json.loads(blocks[3][1])) == (STATIC / "widget.js").read_bytes()
    assert text.count(json.loads(blocks[3][1])) == 1  # one copy of the bundle
    states = [json.loads(b) for _, b in blocks[:3]]
    assert [s["label"] for s in states] == labels  # data intact, just escaped
    assert {s["sync"] for s in states} == {"page"}
    assert all(s["compact"] and s["sync_mode"] == "normalized" for s in states)
    assert [s["_run"]["shape"]["steps"] for s in states] == [
        short.num_steps, tiny_trace.num_steps, tiny_trace.num_steps]
    assert states[1]["_tokens"][str(int(tiny_trace.final_tokens[0, 0, 0]))] == XSS
    assert text.count('data-dgviz-state="') == 3
    # unsynced, full views, forward-pass mode
    free = traces_to_html([short], tmp_path / "d.html", sync=False, compact=False,
                          sync_mode="forward_passes")
    state = json.loads(_script_blocks(free.read_text())[0][1])
    assert (state["sync"], state["compact"], state["label"]) == (None, False, "run 1")
    assert state["sync_mode"] == "forward_passes"
    with pytest.raises(ValueError, match="labels"):
        traces_to_html([short], tmp_path / "e.html", labels=["a", "b"])
    with pytest.raises(ValueError, match="mode"):
        traces_to_html([short], tmp_path / "e.html", sync_mode="wall")
    with pytest.raises(ValueError, match="at least one"):
        traces_to_html([], tmp_path / "e.html")
    with pytest.raises(TypeError):
        traces_to_html([short, "not a trace"], tmp_path / "e.html")


def test_bundle_has_the_sync_registry_and_no_inner_html():
    from dgviz.payload import STATIC

    js = (STATIC / "widget.js").read_text()
    assert "dgviz.sync-groups.v1" in js
    assert "innerHTML" not in js
    assert "insertAdjacentHTML" not in js


# ---------------------------------------------------------------------------- branching
def test_branch_here_records_the_branch_live_below_the_parent(tiny):
    model, tok = tiny
    parent = dgviz.record(model, tok, "the cat sat", seed=4, max_new_tokens=32,
                          max_denoising_steps=6)
    w = Timeline(parent, model=model, tokenizer=tok)
    assert w.can_branch
    assert not Timeline(parent).can_branch  # no model: no branch control
    token = int(parent.topk_ids[0, 2, 5, 1])  # the second alternative at step 2, position 5
    w._on_msg(w, {"kind": "branch", "step": 2, "position": 5, "token": token}, [])
    assert len(w.branches) == 1
    child = w.branches[0]
    trace = child.wait(timeout=120)
    assert child.status.startswith("done: "), (child.status, child.error)
    expected = dgviz.branch(model, tok, parent, 2, {5: token})
    for name in ("canvas_in", "draft", "accepted", "confidence"):
        np.testing.assert_array_equal(getattr(trace, name), getattr(expected, name),
                                      err_msg=name)
    # synced step for step, shown below the parent, the fork in its payload and header
    assert w.sync is not None
    assert child.sync == w.sync
    assert w.sync_mode == "forward_passes"
    assert child.label.startswith("branch at step 3: position 5")
    assert child._run["info"]["fork"]["step"] == 2
    assert w.view_with_branches().children[1].children[0].children[0] is child
    # differing drafts are marked: none before the fork, the edit from the fork on
    differs = _codec.decode(child._chunks["0"]["differs"]).astype(bool)
    assert not differs[:2].any()
    assert differs[2:, 5].all() == (parent.draft[0, 2, 5] != token)
    np.testing.assert_array_equal(
        differs, trace.draft[0, :differs.shape[0]] != parent.draft[0, :differs.shape[0]])


def test_branch_requests_that_fail_show_in_the_widget(tiny, tiny_trace):
    model, tok = tiny
    w = Timeline(tiny_trace, model=model, tokenizer=tok)
    w._on_msg(w, {"kind": "branch", "step": 1, "position": 0, "text": "the cat"}, [])
    assert w.branches == []
    assert "exactly one token" in w.error
    with pytest.raises(TypeError, match="both the model and its tokenizer"):
        Timeline(tiny_trace, model=model)


def test_a_bad_branch_call_raises_before_any_branch_exists(tiny, tiny_trace):
    """Timeline.branch checks its arguments as dgviz.branch does, at once: not in the branch's
    thread, where the error would only reach child.exception."""
    model, tok = tiny
    w = Timeline(tiny_trace, model=model, tokenizer=tok)
    with pytest.raises(ValueError, match="step must be between"):
        w.branch(10**6, {0: 3})
    with pytest.raises(TypeError, match="edits must be a dict"):
        w.branch(1, [(3, "cat")])
    assert w.branches == []


def test_a_custom_sampler_run_branches_from_the_widget_with_its_factory(tiny):
    """The branch button replays the run's own sampler when the view was given its factory;
    without it the refusal says what to pass, in the widget."""
    from dgviz.schedules import FixedRateSampler

    model, tok = tiny
    factory = FixedRateSampler.factory(4)
    parent = dgviz.record(model, tok, "the cat sat", seed=2, max_new_tokens=32,
                          max_denoising_steps=8, sampler=factory)
    bare = Timeline(parent, model=model, tokenizer=tok)
    bare._on_msg(bare, {"kind": "branch", "step": 1, "position": 0, "token": 5}, [])
    assert "pass the same factory as sampler=" in bare.error
    w = show(parent, model=model, tokenizer=tok, sampler=factory)
    w._on_msg(w, {"kind": "branch", "step": 1, "position": 0, "token": 5}, [])
    child = w.branches[0]
    trace = child.wait(timeout=120)
    assert child.status.startswith("done: "), (child.status, child.error)
    np.testing.assert_array_equal(trace.canvas_in[:, :1], parent.canvas_in[:, :1])
    assert trace.settings["sampler"] == parent.settings["sampler"]
    assert child._sampler is factory  # a branch of the branch replays it too
    assert child.label == "branch at step 2: position 0 \u2192 'cat'"  # the sampler is no change


def test_show_a_trace_with_a_model_can_branch(tiny, tiny_trace):
    model, tok = tiny
    w = show(tiny_trace, model=model, tokenizer=tok)
    assert w.trace is tiny_trace
    assert w.can_branch
    bundle = w._repr_mimebundle_()
    view = bundle[0] if isinstance(bundle, tuple) else bundle
    # displayed with its (empty) box of branches under it
    assert view["application/vnd.jupyter.widget-view+json"]["model_id"] == \
        w.view_with_branches().model_id
    with pytest.raises(TypeError, match="takes no prompt"):
        show(tiny_trace, prompt="hello", model=model, tokenizer=tok)


@pytest.mark.parametrize(("name_or_path", "shown"), [
    ("google/diffusiongemma-26B-A4B-it", "google/diffusiongemma-26B-A4B-it"),  # a Hub id
    ("/home/alice/models/my-checkpoint", "my-checkpoint"),
    ("~/models/my-checkpoint", "my-checkpoint"),
    ("./my-checkpoint", "my-checkpoint"),
    ("", "DiffusionGemmaForBlockDiffusion"),  # no name: the class
])
def test_a_local_model_path_is_shown_by_its_folder_name(tiny_trace, name_or_path, shown):
    """The page header names the model; a page is made to be shared, so it does not show where
    a local checkpoint sits on the recording machine (the trace's meta keeps the whole path)."""
    from dgviz.payload import run_payload

    trace = copy.deepcopy(tiny_trace)
    trace.meta["model"]["name_or_path"] = name_or_path
    assert run_payload(trace, 0)["info"]["model_name"] == shown


def test_run_payload_carries_the_cost_and_routing_between_steps(tiny_trace):
    w = Timeline(tiny_trace)
    info = w._run["info"]
    assert info["stats"]["forward_passes"] == tiny_trace.forward_passes(0)
    assert info["stats"]["tokens"] == tiny_trace.stats().iloc[0]["tokens"]
    arrays = w._run["arrays"]
    sim = _codec.decode(arrays["routing_similarity"])
    np.testing.assert_array_equal(sim, tiny_trace.routing_steps["similarity"][0])
    used = _codec.decode(arrays["experts_used"])
    np.testing.assert_array_equal(used, tiny_trace.routing_steps["experts_used"][0])
