"""Trace files: round trips (exact, but for the quantised routing floats, within their stated
error), old files (formats 1 and 2), size, and damage of every kind (property-based).

Every damaged file must either raise `TraceFormatError` or load into a trace that fully works
(offline HTML, the DataFrame, the widget payload), each within a time limit: never another
exception, never a hang, never an allocation the file's size does not justify. The damage tests
run on a small file (arrays stored as they are) and on one whose big arrays are compressed.
"""

from __future__ import annotations

import importlib.util
import json
import stat
import struct
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

import dgviz
from dgviz.payload import canvas_payload, run_payload
from dgviz.testing import tiny_model
from dgviz.trace import Trace, TraceFormatError
from dgviz.tracefile import (
    FORMAT_VERSION,
    QUANTISATION_ERROR,
    digest,
    load_trace,
    save_trace,
    text_arrays,
)

FUZZ = settings(max_examples=40, deadline=20_000, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])


QUANTISED = ("expert_weights", "router_entropy", "encoder_expert_weights",
             "encoder_router_entropy")
FORMAT_2 = Path(__file__).parent / "data" / "format2.dgtrace"  # written by dgviz at 84741a5


@pytest.fixture(scope="module")
def saved(tiny, tmp_path_factory):
    model, tok = tiny
    trace = dgviz.record(model, tok, "the cat sat", seed=0, max_new_tokens=32,
                         max_denoising_steps=3)
    path = trace.save(tmp_path_factory.mktemp("trace") / "run.dgtrace")
    return trace, path.read_bytes()


@pytest.fixture(scope="module")
def saved_compressed(tmp_path_factory):
    """A trace whose routing, top-k and token text arrays pass the compression threshold."""
    model, tok = tiny_model(canvas_length=64, vocab_size=512)
    trace = dgviz.record(model, tok, "the cat sat", seed=1, max_new_tokens=128,
                         max_denoising_steps=8)
    path = trace.save(tmp_path_factory.mktemp("trace") / "big.dgtrace")
    return trace, path.read_bytes()


@pytest.fixture(params=["small", "compressed"])
def either(request, saved, saved_compressed):
    return saved if request.param == "small" else saved_compressed


def _assert_same(back: Trace, trace: Trace) -> None:
    """Every array equal, dtypes too; the quantised ones within their stated error."""
    for f in fields(trace):
        a, b = getattr(trace, f.name), getattr(back, f.name)
        if not isinstance(a, np.ndarray):
            continue
        assert b.dtype == a.dtype, f.name
        if f.name in QUANTISED:
            _assert_within_quantisation(b, a, f.name)
        else:
            np.testing.assert_array_equal(b, a, err_msg=f.name)


def _assert_within_quantisation(back: np.ndarray, original: np.ndarray, name: str) -> float:
    """|back - original| <= QUANTISATION_ERROR x the layer's range + float16 rounding; returns
    the largest error."""
    a, b = original.astype(np.float64), back.astype(np.float64)
    layers = np.moveaxis(a, 2, 0).reshape(a.shape[2], -1)
    span = (layers.max(axis=1) - layers.min(axis=1)).reshape([1, 1, -1] + [1] * (a.ndim - 3))
    # float16 rounding of the value read back: half an ulp (and float16's subnormal step)
    rounding = np.maximum(np.abs(a), np.abs(b)) * 2.0**-11 + 2.0**-25
    err = np.abs(b - a)
    assert (err <= QUANTISATION_ERROR * span * (1 + 1e-6) + rounding).all(), name
    return float(err.max())


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


def test_round_trip_is_exact_but_for_the_quantised_floats(either, tmp_path):
    trace, _ = either
    back = load_trace(trace.save(tmp_path / "again.dgtrace"))
    _assert_same(back, trace)
    assert back.token_text == trace.token_text
    assert back.meta == json.loads(json.dumps(trace.meta, default=repr))


def test_big_arrays_are_compressed(saved_compressed):
    trace, raw = saved_compressed
    header, _ = _split(raw)
    encodings = json.loads(header["__metadata__"]["encodings"])
    for name in ("expert_ids", "expert_weights", "topk_ids"):
        assert "zlib" in encodings[name]["codecs"], name
        assert header[name]["dtype"] == "U8", name
        assert len(header[name]["shape"]) == 1, name
    assert encodings["expert_ids"]["codecs"] == ["xor_prev", "zlib"]  # step to step
    assert encodings["expert_weights"]["codecs"][0] == "q8"
    narrow = sum(getattr(trace, f.name).nbytes for f in fields(trace)
                 if isinstance(getattr(trace, f.name), np.ndarray))
    assert len(raw) < 0.6 * narrow


def _wide_routing_trace(seed: int = 0) -> Trace:
    """A hand-made trace whose routing floats span wide ranges (recorded tiny models' weights
    sit near 1/k, where quantising to 256 levels is exact after float16 rounding)."""
    rng = np.random.default_rng(seed)
    b, s, n, length, k, e, kk = 1, 6, 3, 40, 4, 16, 3
    ids = rng.integers(0, 64, (b, s, length))
    return Trace(
        canvas_in=ids, sampled=ids, draft=ids, accepted=rng.random((b, s, length)) < 0.3,
        confidence=rng.random((b, s, length)), entropy=rng.uniform(0, 4, (b, s, length)),
        topk_ids=rng.integers(0, 64, (b, s, length, kk)),
        topk_probs=np.sort(rng.random((b, s, length, kk)), -1)[..., ::-1] / kk,
        active=np.ones((b, s), bool), stop=np.zeros((b, s), bool),
        step_canvas=np.zeros(s, np.int32), step_remaining=np.arange(s, 0, -1),
        temperature=np.full(s, np.nan), step_seconds=np.full(s, 0.01),
        prompt_ids=np.array([[1, 2]]), output_ids=ids[:, -1],
        tokens_per_forward=np.array([1.0]), token_text={i: f"t{i}" for i in range(64)},
        meta={"num_experts": e, "model": {"vocab_size": 64}},
        expert_ids=rng.integers(0, e, (b, s, n, length, k)),
        expert_weights=rng.uniform(-0.5, 3.0, (b, s, n, length, k)) * [[[[[1]], [[0.01]],
                                                                         [[40]]]]],
        router_entropy=rng.uniform(0, np.log(e), (b, s, n, length)),
        encoder_expert_ids=rng.integers(0, e, (b, 5, n, k)),
        encoder_expert_weights=rng.uniform(0, 1, (b, 5, n, k)),
        encoder_router_entropy=rng.uniform(0, 2, (b, 5, n)),
    )


def test_quantised_routing_is_within_the_stated_error(tmp_path):
    trace = _wide_routing_trace()
    back = load_trace(trace.save(tmp_path / "wide.dgtrace"))
    _assert_same(back, trace)  # the quantised ones within the bound, the rest exact
    worst = {name: _assert_within_quantisation(getattr(back, name), getattr(trace, name), name)
             for name in QUANTISED}
    assert all(err > 0 for err in worst.values())  # they were quantised
    # per layer: the layer with a range of 0.035 keeps its small values to 1e-4
    small = np.abs(back.expert_weights[:, :, 1].astype(float)
                   - trace.expert_weights[:, :, 1].astype(float)).max()
    assert small < 1e-4
    assert QUANTISATION_ERROR == 1 / 510


def test_non_finite_routing_is_stored_as_it_is(tmp_path):
    """No quantisation range fits a NaN: such a (live, unchecked) trace keeps float16."""
    trace = _wide_routing_trace()
    weights = trace.expert_weights.copy()
    weights[0, 0, 0, 0, 0] = np.nan
    from dgviz.tracefile import _encode

    stored, spec = _encode("expert_weights", weights)
    assert "expert_weights.q8" not in stored
    assert spec is None or "q8" not in spec["codecs"]


def test_files_store_the_narrowest_dtypes(saved):
    header, _ = _split(saved[1])
    assert header["canvas_in"]["dtype"] == "U16"  # 64 tokens fit 16 bits
    assert header["expert_ids"]["dtype"] == "U8"  # 8 experts fit 8 bits
    assert int(header["__metadata__"]["version"]) == FORMAT_VERSION
    assert "sha256" in header["__metadata__"]


def test_a_saved_trace_is_readable_like_any_new_file(saved, tmp_path):
    """Saved with the permissions any file the user writes gets (the umask's), not safetensors'
    owner-only 600: traces are made to be shared. No temporary file stays behind, and saving
    over an existing trace replaces it."""
    original = tmp_path / "original.dgtrace"
    original.write_bytes(saved[1])
    trace = dgviz.load_trace(original)
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    path = trace.save(tmp_path / "out" / "run.dgtrace")
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE(plain.stat().st_mode)
    trace.save(path)
    assert sorted(p.name for p in path.parent.iterdir()) == ["run.dgtrace"]
    _assert_same(dgviz.load_trace(path), trace)


def test_format_1_files_still_load(saved, tmp_path):
    """What dgviz 0.1 wrote: int32 ids, int16 expert ids, no checksum, JSON token text."""
    trace, _ = saved
    tensors = {f.name: np.ascontiguousarray(getattr(trace, f.name)) for f in fields(trace)
               if isinstance(getattr(trace, f.name), np.ndarray)}
    tensors["topk_probs"] = tensors["topk_probs"].astype(np.float32)
    header = {"format": "dgviz-trace", "version": "1", "meta": json.dumps(trace.meta),
              "token_text": json.dumps(trace.token_text)}
    save_file(tensors, str(tmp_path / "v1.dgtrace"), metadata=header)
    back = load_trace(tmp_path / "v1.dgtrace")
    np.testing.assert_array_equal(back.draft, trace.draft)
    assert back.token_text == trace.token_text


def test_format_2_files_still_load(tmp_path):
    """A file the format-2 writer wrote (narrow dtypes, checksum over the arrays only, token
    text in the header): every array widened back, and saved again in format 3 unchanged."""
    from safetensors.numpy import load_file

    header, _ = _split(FORMAT_2.read_bytes())
    assert header["__metadata__"]["version"] == "2"
    assert "token_text_zlib" in header["__metadata__"]
    back = load_trace(FORMAT_2)
    stored = load_file(str(FORMAT_2))
    for name in ("canvas_in", "topk_ids", "expert_ids", "expert_weights", "router_entropy"):
        np.testing.assert_array_equal(getattr(back, name), stored[name], err_msg=name)
    assert stored["canvas_in"].dtype == np.uint16
    assert back.canvas_in.dtype == np.int32
    assert back.complete
    assert back.num_steps == 10
    assert len(back.text) == 1
    assert set(np.unique(back.draft)) <= set(back.token_text)
    again = load_trace(save_trace(back, tmp_path / "v3.dgtrace"))
    _assert_same(again, back)
    assert again.token_text == back.token_text


@FUZZ
@given(data=st.data())
def test_truncated_files_are_refused(either, tmp_path, data):
    raw = either[1]
    cut = data.draw(st.integers(0, len(raw) - 1))
    path = tmp_path / "cut.dgtrace"
    path.write_bytes(raw[:cut])
    with pytest.raises(TraceFormatError):
        load_trace(path)


@FUZZ
@given(data=st.data())
def test_flipped_bits_anywhere(either, tmp_path, data):
    raw = bytearray(either[1])
    for _ in range(data.draw(st.integers(1, 4))):
        bit = data.draw(st.integers(0, 8 * len(raw) - 1))
        raw[bit // 8] ^= 1 << (bit % 8)
    _load_or_refuse(bytes(raw), tmp_path)


@FUZZ
@given(data=st.data())
def test_flipped_bits_in_the_arrays_fail_the_checksum(either, tmp_path, data):
    header, body = _split(either[1])
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
def test_edited_metadata(either, tmp_path, data):
    _, raw = either
    header, body = _split(raw)
    meta = json.loads(header["__metadata__"]["meta"])
    keys = [("text",), ("prompt_text",), ("complete",), ("num_experts",), ("settings",),
            ("settings", "entropy_bound"), ("settings", "forward_passes"),
            ("settings", "step_passes"), ("model",),
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


SPEC_DAMAGE = st.sampled_from(["shape", "dtype", "codecs", "drop codec", "add codec",
                                "drop ranges", "swap", "not a dict"])


@FUZZ
@given(data=st.data())
def test_damaged_encodings_with_a_matching_checksum(saved_compressed, tmp_path, data):
    """An ``encodings`` entry a bug wrote wrong (the checksum covers it, so a bit flip is caught
    there): refused, or loaded into a trace that works; never another error, never memory the
    file does not justify."""
    from safetensors.numpy import load_file

    _, raw = saved_compressed
    path = tmp_path / "in.dgtrace"
    path.write_bytes(raw)
    tensors = load_file(str(path))
    header, _ = _split(raw)
    meta = header["__metadata__"]
    encodings = json.loads(meta["encodings"])
    name = data.draw(st.sampled_from(sorted(n for n, v in encodings.items()
                                            if isinstance(v, dict))))
    spec = encodings[name]
    how = data.draw(SPEC_DAMAGE)
    if how == "shape":
        axis = data.draw(st.integers(0, len(spec["shape"]) - 1))
        spec["shape"][axis] = data.draw(st.sampled_from([0, 1, 2**31, spec["shape"][axis] + 1]))
    elif how == "dtype":
        spec["dtype"] = data.draw(st.sampled_from(["uint16", "float64", "bool", "int8", "<f4"]))
    elif how == "codecs":
        spec["codecs"] = data.draw(st.lists(st.sampled_from(
            ["q8", "xor_prev", "shuffle", "zlib", "gzip"]), max_size=4))
    elif how == "drop codec" and spec["codecs"]:
        spec["codecs"].pop(data.draw(st.integers(0, len(spec["codecs"]) - 1)))
    elif how == "add codec":
        spec["codecs"] = [data.draw(st.sampled_from(["q8", "xor_prev", "shuffle"])),
                          *spec["codecs"]]
    elif how == "drop ranges":
        tensors.pop(f"{name}.q8", None)
    elif how == "swap":
        other = data.draw(st.sampled_from(sorted(encodings)))
        encodings[name], encodings[other] = encodings[other], encodings[name]
    else:
        encodings[name] = data.draw(st.sampled_from([[], "uint8", 3, None]))
    meta["encodings"] = json.dumps(encodings)
    meta["sha256"] = digest(tensors, meta["encodings"])
    save_file(tensors, str(path), metadata=meta)
    _load_or_refuse(path.read_bytes(), tmp_path)


def test_real_shape_canvas_is_at_most_6_mb(tmp_path):
    """One canvas at the 26B-A4B's shape (256 positions x 48 steps, 30 layers x top-8 of 128,
    top-5 of 262,144 tokens), made up by benchmarks/real_scale.py: positions locking in one by
    one: at most 6 MB; every value random at every step (the least compressible): 6.5 MB."""
    spec = importlib.util.spec_from_file_location(
        "real_scale", Path(__file__).parents[1] / "benchmarks" / "real_scale.py")
    real_scale = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(real_scale)
    for kind, limit in (("lock-in", 6e6), ("random", 6.5e6)):
        trace = real_scale.synthetic_trace(kind)
        path = trace.save(tmp_path / f"{kind}.dgtrace")
        assert path.stat().st_size <= limit, (kind, path.stat().st_size)
        assert real_scale.format2_bytes(trace) > 10e6  # what format 2 wrote
        back = load_trace(path)
        _assert_same(back, trace)


def _resave(trace: Trace, path, changes: dict, token_text: dict | None = None) -> None:
    """A file with changed arrays (None: left out) and a checksum that matches them: what a
    bug, not a bit flip, would write."""
    tensors = {f.name: np.ascontiguousarray(getattr(trace, f.name)) for f in fields(trace)
               if isinstance(getattr(trace, f.name), np.ndarray)}
    tensors.update(text_arrays(trace.token_text if token_text is None else token_text))
    tensors.update(changes)
    tensors = {k: v for k, v in tensors.items() if v is not None}
    header = {"format": "dgviz-trace", "version": str(FORMAT_VERSION),
              "meta": json.dumps(trace.meta), "sha256": digest(tensors)}
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
    kwargs = {f.name: getattr(trace, f.name) for f in fields(trace)}
    kwargs["step_canvas"] = np.full_like(trace.step_canvas, 5)
    with pytest.raises(TraceFormatError, match="step_canvas"):
        Trace(**kwargs)
