"""Trace files: exact round trips, old files, and damage of every kind (property-based).

Every damaged file must either raise `TraceFormatError` or load into a trace that fully works
(offline HTML, the DataFrame, the widget payload), each within a time limit: never another
exception, never a hang, never an allocation the file's size does not justify.
"""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

import dgviz
from dgviz.payload import canvas_payload, run_payload
from dgviz.trace import Trace, TraceFormatError
from dgviz.tracefile import FORMAT_VERSION, digest, load_trace

FUZZ = settings(max_examples=40, deadline=20_000, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


@pytest.fixture(scope="module")
def saved(tiny, tmp_path_factory):
    model, tok = tiny
    trace = dgviz.record(model, tok, "the cat sat", seed=0, max_new_tokens=32,
                         max_denoising_steps=3)
    path = trace.save(tmp_path_factory.mktemp("trace") / "run.dgtrace")
    return trace, path.read_bytes()


def _split(raw: bytes) -> tuple[dict, bytes]:
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def _join(header: dict, data: bytes) -> bytes:
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data


def _works(trace: Trace, tmp_path) -> None:
    """Everything a user does with a loaded trace."""
    trace.to_html(tmp_path / "out.html")
    frame = trace.to_dataframe()
    assert len(frame) == trace.batch_size * trace.num_steps * trace.canvas_length
    for row in range(trace.batch_size):
        run_payload(trace, row)
        for canvas in range(trace.num_canvases):
            canvas_payload(trace, row, canvas)
    trace.states, trace.lock_in, trace.flips  # noqa: B018 - the derived arrays build


def _load_or_refuse(raw: bytes, tmp_path) -> None:
    path = tmp_path / "damaged.dgtrace"
    path.write_bytes(raw)
    try:
        trace = load_trace(path)
    except TraceFormatError:
        return
    _works(trace, tmp_path)


def test_round_trip_is_exact(saved, tmp_path):
    trace, _ = saved
    back = load_trace(trace.save(tmp_path / "again.dgtrace"))
    for name in ("canvas_in", "sampled", "draft", "accepted", "confidence", "entropy",
                 "topk_ids", "topk_probs", "expert_ids", "expert_weights", "router_entropy",
                 "encoder_expert_ids", "step_canvas", "prompt_ids", "output_ids"):
        np.testing.assert_array_equal(getattr(back, name), getattr(trace, name), err_msg=name)
        assert getattr(back, name).dtype == getattr(trace, name).dtype, name
    assert back.token_text == trace.token_text
    assert back.meta == json.loads(json.dumps(trace.meta, default=repr))


def test_files_store_the_narrowest_dtypes(saved):
    header, _ = _split(saved[1])
    assert header["canvas_in"]["dtype"] == "U16"  # 64 tokens fit 16 bits
    assert header["expert_ids"]["dtype"] == "U8"  # 8 experts fit 8 bits
    assert int(header["__metadata__"]["version"]) == FORMAT_VERSION
    assert "sha256" in header["__metadata__"]


def test_format_1_files_still_load(saved, tmp_path):
    """What dgviz 0.1 wrote: int32 ids, int16 expert ids, no checksum, JSON token text."""
    trace, _ = saved
    from dataclasses import fields

    tensors = {f.name: np.ascontiguousarray(getattr(trace, f.name)) for f in fields(trace)
               if isinstance(getattr(trace, f.name), np.ndarray)}
    tensors["topk_probs"] = tensors["topk_probs"].astype(np.float32)
    header = {"format": "dgviz-trace", "version": "1", "meta": json.dumps(trace.meta),
              "token_text": json.dumps(trace.token_text)}
    save_file(tensors, str(tmp_path / "v1.dgtrace"), metadata=header)
    back = load_trace(tmp_path / "v1.dgtrace")
    np.testing.assert_array_equal(back.draft, trace.draft)
    assert back.token_text == trace.token_text


@FUZZ
@given(data=st.data())
def test_truncated_files_are_refused(saved, tmp_path, data):
    raw = saved[1]
    cut = data.draw(st.integers(0, len(raw) - 1))
    path = tmp_path / "cut.dgtrace"
    path.write_bytes(raw[:cut])
    with pytest.raises(TraceFormatError):
        load_trace(path)


@FUZZ
@given(data=st.data())
def test_flipped_bits_anywhere(saved, tmp_path, data):
    raw = bytearray(saved[1])
    for _ in range(data.draw(st.integers(1, 4))):
        bit = data.draw(st.integers(0, 8 * len(raw) - 1))
        raw[bit // 8] ^= 1 << (bit % 8)
    _load_or_refuse(bytes(raw), tmp_path)


@FUZZ
@given(data=st.data())
def test_flipped_bits_in_the_arrays_fail_the_checksum(saved, tmp_path, data):
    header, body = _split(saved[1])
    body = bytearray(body)
    bit = data.draw(st.integers(0, 8 * len(body) - 1))
    body[bit // 8] ^= 1 << (bit % 8)
    path = tmp_path / "flipped.dgtrace"
    path.write_bytes(_join(header, bytes(body)))
    with pytest.raises(TraceFormatError, match="checksum"):
        load_trace(path)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)


@FUZZ
@given(data=st.data())
def test_edited_metadata(saved, tmp_path, data):
    _, raw = saved
    header, body = _split(raw)
    meta = json.loads(header["__metadata__"]["meta"])
    keys = [("text",), ("prompt_text",), ("complete",), ("num_experts",), ("settings",),
            ("settings", "entropy_bound"), ("settings", "forward_passes"), ("model",),
            ("model", "vocab_size"), ("model", "canvas_length"), ("versions",)]
    target = data.draw(st.sampled_from(keys))
    value = data.draw(JSON)
    holder = meta
    for key in target[:-1]:
        holder = holder[key]
    holder[target[-1]] = value
    which = data.draw(st.sampled_from(["meta", "version", "encodings", "token_text_zlib"]))
    if which == "meta":
        header["__metadata__"]["meta"] = json.dumps(meta)
    else:
        header["__metadata__"][which] = data.draw(st.text(max_size=12) | JSON.map(json.dumps))
    _load_or_refuse(_join(header, body), tmp_path)


def _resave(trace: Trace, path, changes: dict, token_text: dict | None = None) -> None:
    """A file with changed arrays (None: left out) and a checksum that matches them: what a
    bug, not a bit flip, would write."""
    from dataclasses import fields

    tensors = {f.name: np.ascontiguousarray(getattr(trace, f.name)) for f in fields(trace)
               if isinstance(getattr(trace, f.name), np.ndarray)}
    tensors.update(changes)
    tensors = {k: v for k, v in tensors.items() if v is not None}
    table = trace.token_text if token_text is None else token_text
    header = {"format": "dgviz-trace", "version": str(FORMAT_VERSION),
              "meta": json.dumps(trace.meta), "token_text": json.dumps(table),
              "sha256": digest(tensors)}
    save_file(tensors, str(path), metadata=header)


VALUE_DAMAGE = {
    "phantom canvases": lambda t: {"step_canvas": np.where(
        np.arange(t.num_steps) == t.num_steps - 1, 2**30, t.step_canvas).astype(np.int32)},
    "canvas gap": lambda t: {"step_canvas": (t.step_canvas * 2).astype(np.int32)},
    "canvases out of order": lambda t: {"step_canvas": t.step_canvas[::-1].copy()},
    "id past the vocabulary": lambda t: {"draft": np.full_like(t.draft, 10_000)},
    "negative id": lambda t: {"sampled": np.full_like(t.sampled, -1)},
    "probability above 1": lambda t: {"confidence": np.full_like(t.confidence, 3.0)},
    "NaN probability": lambda t: {"topk_probs": np.full_like(t.topk_probs, np.nan)},
    "negative entropy": lambda t: {"entropy": np.full_like(t.entropy, -1.0)},
    "expert past the count": lambda t: {"expert_ids": np.full_like(t.expert_ids, 99)},
    "wrong shape": lambda t: {"accepted": t.accepted[:, :-1].copy()},
    "missing array": lambda t: {"stop": None},
    "partial routing": lambda t: {"expert_weights": None},
    "infinite weight": lambda t: {"expert_weights": np.full_like(t.expert_weights, np.inf)},
}


@pytest.mark.parametrize("case", list(VALUE_DAMAGE), ids=list(VALUE_DAMAGE))
def test_values_out_of_range_are_refused(saved, tmp_path, case):
    trace, _ = saved
    _resave(trace, tmp_path / "bad.dgtrace", VALUE_DAMAGE[case](trace))
    with pytest.raises(TraceFormatError):
        load_trace(tmp_path / "bad.dgtrace")


def test_an_id_without_token_text_is_refused(saved, tmp_path):
    trace, _ = saved
    drop = int(trace.draft[0, -1, 0])
    table = {k: v for k, v in trace.token_text.items() if k != drop}
    _resave(trace, tmp_path / "bad.dgtrace", {}, token_text=table)
    with pytest.raises(TraceFormatError, match="no entry in token_text"):
        load_trace(tmp_path / "bad.dgtrace")


def test_a_newer_format_says_to_upgrade(saved, tmp_path):
    header, body = _split(saved[1])
    header["__metadata__"]["version"] = str(FORMAT_VERSION + 1)
    path = tmp_path / "new.dgtrace"
    path.write_bytes(_join(header, body))
    with pytest.raises(TraceFormatError, match="pip install -U dgviz"):
        load_trace(path)


def test_a_trace_built_by_hand_gets_the_same_checks(saved):
    trace, _ = saved
    from dataclasses import fields

    kwargs = {f.name: getattr(trace, f.name) for f in fields(trace)}
    kwargs["step_canvas"] = np.full_like(trace.step_canvas, 5)
    with pytest.raises(TraceFormatError, match="step_canvas"):
        Trace(**kwargs)
