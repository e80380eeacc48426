"""The Trace data model: derived quantities by hand, file format, dataframe."""

from __future__ import annotations

import json

import numpy as np
import pytest

import dgviz
from dgviz.testing import tiny_model
from dgviz.trace import FINAL, KEPT, NEW, RENOISED, Trace, TraceFormatError
from dgviz.tracefile import load_trace


def hand_trace() -> Trace:
    """One row, two canvases of 3 positions; canvas 0 has 4 steps, canvas 1 has 2."""
    draft = np.array(
        [
            # canvas 0: pos0 flips a->b->b->b, pos1 stays c, pos2 d->e->d->d
            [10, 12, 13], [11, 12, 14], [11, 12, 13], [11, 12, 13],
            # canvas 1: pos0 x->y, pos1 z, pos2 w->w
            [20, 22, 23], [21, 22, 23],
        ]
    )[None]
    accepted = np.array(
        [
            [0, 1, 0], [1, 1, 0], [1, 0, 1], [1, 1, 1],
            [0, 0, 1], [1, 1, 1],
        ],
        dtype=bool,
    )[None]
    s, length = 6, 3
    conf = np.full((1, s, length), 0.5, np.float32)
    topk_ids = np.stack([draft, draft + 1], axis=-1)
    return Trace(
        canvas_in=np.zeros((1, s, length)),
        sampled=draft,
        draft=draft,
        accepted=accepted,
        confidence=conf,
        entropy=np.ones((1, s, length)),
        topk_ids=topk_ids,
        topk_probs=np.stack([conf, conf / 2], axis=-1),
        active=np.ones((1, s), bool),
        stop=np.zeros((1, s), bool),
        step_canvas=np.array([0, 0, 0, 0, 1, 1]),
        step_remaining=np.array([4, 3, 2, 1, 4, 3]),
        temperature=np.linspace(0.8, 0.4, s),
        step_seconds=np.full(s, 0.01),
        prompt_ids=np.array([[1, 2]]),
        output_ids=np.array([[11, 12, 13, 21, 22, 23]]),
        tokens_per_forward=np.array([1.0]),
        token_text={i: f"t{i}" for i in range(30)},
        meta={"settings": {"entropy_bound": 0.5}, "text": ["out"], "prompt_text": ["in"]},
    )


def test_derived_quantities_by_hand():
    t = hand_trace()
    assert t.num_canvases == 2
    assert t.num_steps == 6
    assert t.canvas_length == 3
    np.testing.assert_array_equal(t.final_tokens[0], [[11, 12, 13], [21, 22, 23]])
    # pos0 holds 11 from step 1; pos1 always 12; pos2 holds 13 from step 2 (it was 13 at step 0
    # too, but lost it at step 1: lock-in means "from here on")
    np.testing.assert_array_equal(t.lock_in[0, 0], [1, 0, 2])
    np.testing.assert_array_equal(t.lock_in[0, 1], [5, 4, 4])
    np.testing.assert_array_equal(t.flips[0, 0], [1, 0, 2])
    np.testing.assert_array_equal(t.flips[0, 1], [1, 0, 0])
    np.testing.assert_array_equal(t.first_accepted[0, 0], [1, 0, 2])
    np.testing.assert_array_equal(t.first_accepted[0, 1], [5, 5, 4])
    expected_states = np.array(
        [
            [RENOISED, FINAL, RENOISED],
            [FINAL, FINAL, RENOISED],
            [FINAL, FINAL, FINAL],
            [FINAL, FINAL, FINAL],
            [RENOISED, FINAL, FINAL],
            [FINAL, FINAL, FINAL],
        ]
    )
    np.testing.assert_array_equal(t.states[0], expected_states)
    assert t.forward_passes() == 6
    np.testing.assert_array_equal(t.canvas_steps(1), [4, 5])


def test_states_distinguish_new_from_kept_before_lock_in():
    t = hand_trace()
    t.draft[0, 3, 0] = 15  # pos0 now changes at the last step of canvas 0: never locked early
    t = Trace(**{f: getattr(t, f) for f in t.__dataclass_fields__})
    assert t.lock_in[0, 0, 0] == 3
    # accepted at steps 1, 2, 3: new, kept, then final at its lock-in step
    np.testing.assert_array_equal(t.states[0, :4, 0], [RENOISED, NEW, KEPT, FINAL])


def test_inactive_rows_freeze_their_last_state():
    t = hand_trace()
    t.active[0, 3] = False  # the row stopped after step 2
    t = Trace(**{f: getattr(t, f) for f in t.__dataclass_fields__})
    assert t.last_active_step[0, 0] == 2
    np.testing.assert_array_equal(t.final_tokens[0, 0], t.draft[0, 2])
    np.testing.assert_array_equal(t.states[0, 3], t.states[0, 2])


def test_sampler_explainer_sorts_and_accumulates():
    t = hand_trace()
    t.entropy[0, 2] = [0.3, 0.1, 0.2]
    ex = t.sampler_explainer(2)
    np.testing.assert_array_equal(ex["order"], [1, 2, 0])
    np.testing.assert_allclose(ex["cumulative"], [0.1, 0.3, 0.6], rtol=1e-6)
    np.testing.assert_allclose(ex["criterion"], [0.0, 0.1, 0.3], rtol=1e-6)
    assert ex["bound"] == 0.5
    np.testing.assert_array_equal(ex["accepted"], t.accepted[0, 2][[1, 2, 0]])


def test_save_load_round_trip(tmp_path):
    model, tok = tiny_model()
    trace = dgviz.record(model, tok, "the cat sat", seed=2, max_new_tokens=32,
                         max_denoising_steps=4)
    path = trace.save(tmp_path / "run.dgtrace")
    back = dgviz.load_trace(path)
    for name in trace.__dataclass_fields__:
        a, b = getattr(trace, name), getattr(back, name)
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype, name
            np.testing.assert_array_equal(a, b, err_msg=name)
        else:
            assert a == b, name
    np.testing.assert_array_equal(back.lock_in, trace.lock_in)
    assert repr(back) == repr(trace)


def test_load_rejects_a_newer_format(tmp_path):
    from safetensors.numpy import load_file, save_file

    path = hand_trace().save(tmp_path / "t.dgtrace")
    arrays = load_file(str(path))
    save_file(arrays, str(path), metadata={"format": "dgviz-trace", "version": "99",
                                           "meta": "{}", "token_text": "{}"})
    with pytest.raises(TraceFormatError, match="newer dgviz"):
        load_trace(path)


def test_load_rejects_damaged_and_foreign_files(tmp_path):
    path = hand_trace().save(tmp_path / "t.dgtrace")
    data = path.read_bytes()
    (tmp_path / "cut.dgtrace").write_bytes(data[: len(data) // 2])
    with pytest.raises(TraceFormatError, match="damaged or truncated"):
        load_trace(tmp_path / "cut.dgtrace")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(TraceFormatError, match="not a readable dgviz trace"):
        load_trace(tmp_path / "notes.txt")
    from safetensors.numpy import save_file

    save_file({"x": np.zeros(3)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(TraceFormatError, match="not a dgviz trace"):
        load_trace(tmp_path / "other.safetensors")
    with pytest.raises(FileNotFoundError, match="No trace file"):
        load_trace(tmp_path / "missing.dgtrace")


def test_saved_file_holds_no_pickle(tmp_path):
    path = hand_trace().save(tmp_path / "t.dgtrace")
    header_len = int.from_bytes(path.read_bytes()[:8], "little")
    header = json.loads(path.read_bytes()[8 : 8 + header_len])
    assert header["__metadata__"]["format"] == "dgviz-trace"
    assert b"\x80\x04" not in path.read_bytes()[:16]  # not a pickle stream


def test_to_dataframe_has_one_row_per_row_step_position():
    t = hand_trace()
    df = t.to_dataframe()
    assert len(df) == 1 * 6 * 3
    row = df[(df.step == 5) & (df.position == 0)].iloc[0]
    assert row.canvas == 1
    assert row.canvas_step == 1
    assert row.remaining == 3
    assert row.draft_text == "t21"
    assert bool(row.locked)
    assert not bool(df[(df.step == 4) & (df.position == 0)].iloc[0].locked)


def test_shape_mismatch_is_a_clear_error():
    t = hand_trace()
    fields = {f: getattr(t, f) for f in t.__dataclass_fields__}
    with pytest.raises(TraceFormatError, match=r"Trace\.entropy has shape"):
        Trace(**{**fields, "entropy": np.ones((1, 2, 3))})
