"""The trace file: safetensors arrays + JSON metadata, checksummed, never pickle.

Format 3 (this dgviz writes it; formats 1 and 2 still load):

- every array in the narrowest dtype that holds its values (token ids as uint16 when the
  vocabulary fits, expert ids as uint8 with at most 256 experts);
- the routing floats (``expert_weights``, ``router_entropy`` and the encoder's) quantised to
  uint8 with a float32 offset and step per layer (the array ``<name>.q8``, ``[N, 2]``): a value
  read back differs from the recorded float16 by at most ``(max - min of its layer) / 510``
  (`QUANTISATION_ERROR`), plus float16 rounding;
- arrays of 4 kB and more zlib-compressed, after two filters: in the per-step integer arrays
  each step XOR the one before (a position's tokens and routing often stay from one step to
  the next), and the bytes of multi-byte values grouped by significance;
- the token text table as two arrays: ``token_text.ids`` (the sorted ids, as gaps) and
  ``token_text.json`` (their texts, a JSON list), both compressed;
- a header entry ``encodings`` says, per array, what was done (format 2 wrote a dtype name
  there; format 3 writes ``{"dtype", "shape", "codecs"}``), and `load_trace` undoes it back to
  the `Trace`'s dtypes;
- ``sha256``: a digest of every stored array's name, dtype, shape and bytes and of the
  ``encodings`` entry, checked on load, so a flipped bit there is an error, not a silently wrong
  trace.

Format 2 kept the token text in the header (``token_text_zlib``: zlib, base64), format 1 as JSON.

Everything read is then checked by `dgviz.trace_checks` before a `Trace` is returned.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import math
import os
import threading
import zlib
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from .trace import REQUIRED_ARRAYS, Trace
from .trace_checks import TraceFormatError

FORMAT_NAME = "dgviz-trace"
FORMAT_VERSION = 3

_TOKEN_IDS = ("canvas_in", "sampled", "draft", "topk_ids", "prompt_ids", "output_ids")
_EXPERT_IDS = ("expert_ids", "encoder_expert_ids")
# routing floats stored as uint8 codes, with an offset and a step per layer (axis 2)
_QUANTISED = ("expert_weights", "router_entropy", "encoder_expert_weights",
              "encoder_router_entropy")
_LAYER_AXIS = 2
QUANTISATION_ERROR = 1 / 510
"""A quantised value read back is off by at most this times its layer's range (max - min),
plus the float16 rounding of the value read back (2**-11 of it): codes are 0..255 and a value
is rounded to the nearest."""
_COMPRESS_FROM = 4096  # bytes; smaller arrays are stored as they are
# arrays [B, S, ...] whose values often repeat from one step to the next
_STEPWISE = ("canvas_in", "sampled", "draft", "accepted", "topk_ids", "active", "stop",
             "expert_ids", "expert_weights", "router_entropy")
_TEXT_IDS, _TEXT_JSON = "token_text.ids", "token_text.json"
_ZLIB_LEVEL = 6
_MAX_RATIO = 1100  # zlib inflates at most ~1032:1: a claim beyond that is damage
_DTYPES = ("bool", "uint8", "uint16", "uint32", "int16", "int32", "int64", "float16", "float32",
           "float64")


def _disk_dtype(name: str, value: np.ndarray) -> np.dtype:
    """The narrowest dtype that holds ``value`` without loss."""
    if name in _TOKEN_IDS + _EXPERT_IDS and value.size:
        low, high = int(value.min()), int(value.max())
        if low >= 0 and high < 2**8 and name in _EXPERT_IDS:
            return np.dtype(np.uint8)
        if low >= 0 and high < 2**16:
            return np.dtype(np.uint16)
    return value.dtype


def digest(tensors: dict[str, np.ndarray], encodings: str | None = None) -> str:
    """sha256 over every array's name, dtype, shape and bytes, in name order, then over the
    ``encodings`` header entry when given (format 3)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        h.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        h.update(memoryview(array.reshape(-1).view(np.uint8)))
    if encodings is not None:
        h.update(b"encodings|" + encodings.encode())
    return h.hexdigest()


def save_trace(trace: Trace, path: str | Path) -> Path:
    """Write ``trace`` to ``path`` (format 3); see `Trace.save`."""
    from safetensors.numpy import save

    arrays = {f.name: getattr(trace, f.name) for f in fields(trace)
              if isinstance(getattr(trace, f.name), np.ndarray)}
    arrays.update(text_arrays(trace.token_text))
    tensors, encodings = {}, {}
    for name, value in arrays.items():
        stored, spec = _encode(name, value)
        tensors.update(stored)
        if spec is not None:
            encodings[name] = spec
    encoded = json.dumps(encodings)
    header = {
        "format": FORMAT_NAME,
        "version": str(FORMAT_VERSION),
        "meta": json.dumps(trace.meta, default=_json_default),
        "encodings": encoded,
        "sha256": digest(tensors, encoded),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written here, not by safetensors' save_file: that creates files only their owner can read
    # (mode 600), and a trace is made to be shared. Through a temporary file in the same folder,
    # so an interrupted save never leaves a torn file in place of a good one.
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        temporary.write_bytes(save(tensors, metadata=header))
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def text_arrays(token_text: dict[int, str]) -> dict[str, np.ndarray]:
    """The token text table as format 3 stores it (before compression): the sorted ids as gaps
    (``token_text.ids``, uint32) and their texts as a JSON list (``token_text.json``, UTF-8)."""
    ids = np.array(sorted(int(i) for i in token_text), dtype=np.int64)
    texts = json.dumps([token_text[i] for i in ids.tolist()], ensure_ascii=False)
    return {_TEXT_IDS: np.diff(ids, prepend=0).astype(np.uint32),  # gaps: small numbers
            _TEXT_JSON: np.frombuffer(texts.encode(), np.uint8)}


def _encode(name: str, value: np.ndarray) -> tuple[dict[str, np.ndarray], Any]:
    """The arrays stored for one field and its ``encodings`` entry (None: stored as it is)."""
    value = np.ascontiguousarray(value)
    stored: dict[str, np.ndarray] = {}
    codecs = []
    disk = _disk_dtype(name, value)
    data = value.astype(disk, copy=False)
    if name in _QUANTISED and data.ndim > _LAYER_AXIS and data.size \
            and np.isfinite(data).all():
        data, stored[f"{name}.q8"] = _quantise(data)
        codecs.append("q8")
    if data.nbytes >= _COMPRESS_FROM:
        stepwise = name in _STEPWISE and data.ndim >= 2 and data.shape[1] > 1
        packed, filters = _compress(data, stepwise)
        if len(packed) < 0.9 * data.nbytes:
            spec = {"dtype": data.dtype.name, "shape": list(data.shape),
                    "codecs": [*codecs, *filters, "zlib"]}
            stored[name] = np.frombuffer(packed, np.uint8)
            return stored, spec
    stored[name] = data
    if codecs:
        return stored, {"dtype": data.dtype.name, "shape": list(data.shape), "codecs": codecs}
    return stored, (disk.name if disk != value.dtype else None)


def _quantise(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 codes and ``[N, 2]`` (offset, step) per layer (axis 2), rounding to nearest."""
    v = np.moveaxis(values.astype(np.float64), _LAYER_AXIS, 0)
    flat = v.reshape(v.shape[0], -1)
    low, high = flat.min(axis=1), flat.max(axis=1)
    step = ((high - low) / 255).astype(np.float32).astype(np.float64)
    low = low.astype(np.float32).astype(np.float64)  # as stored: codes round against these
    safe = np.where(step > 0, step, 1.0)
    codes = np.rint((flat - low[:, None]) / safe[:, None]).clip(0, 255).astype(np.uint8)
    codes = np.moveaxis(codes.reshape(v.shape), 0, _LAYER_AXIS)
    return np.ascontiguousarray(codes), np.stack([low, step], axis=1).astype(np.float32)


def _compress(data: np.ndarray, stepwise: bool) -> tuple[bytes, list[str]]:
    """zlib of the array after its filters, chosen by kind (trying both with and without the
    step filter doubled a real-shape save's time and picked the same, or within 1%)."""
    filters = ["xor_prev"] if stepwise else []
    raw = _filter(data, filters)
    if data.itemsize > 1:
        filters.append("shuffle")
        raw = _shuffle(raw)
    return zlib.compress(memoryview(raw), _ZLIB_LEVEL), filters


def _bits(data: np.ndarray) -> np.ndarray:
    """The same bytes as unsigned integers of the same width (bool as uint8)."""
    return data.view(f"u{data.itemsize}")


def _filter(data: np.ndarray, filters: list[str]) -> np.ndarray:
    if "xor_prev" not in filters:
        return data
    bits = _bits(data)
    out = bits.copy()
    out[:, 1:] ^= bits[:, :-1]  # each step (axis 1) XOR the one before
    return out.view(data.dtype)


def _shuffle(data: np.ndarray) -> np.ndarray:
    """Bytes grouped by significance: all first bytes, then all second bytes, ..."""
    return np.ascontiguousarray(data.reshape(-1).view(np.uint8).reshape(-1, data.itemsize).T)


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return repr(value)


def load_trace(path: str | Path) -> Trace:
    """Read a trace written by `Trace.save` (any format up to this dgviz's), checking all of it.

    Raises `TraceFormatError` saying what is wrong for anything that is not a whole, consistent
    trace: not a trace, truncated, a checksum mismatch, arrays that do not fit together, values
    out of range, metadata of the wrong type, or a format newer than this dgviz reads. Never
    unpickles anything.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"No trace file at {path}.")
    try:
        with safe_open(str(path), framework="numpy") as f:
            header = f.metadata() or {}
            arrays = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (safe_open API)
    except (SafetensorError, OSError, ValueError, OverflowError, MemoryError) as err:
        raise TraceFormatError(
            f"{path} is not a readable dgviz trace ({err}). Traces are written by Trace.save(); "
            "if this one was, the file is damaged or truncated: record the run again."
        ) from err
    try:
        return _from_file(header, arrays)
    except TraceFormatError as err:
        raise TraceFormatError(f"{path}: {err}") from err


def _from_file(header: dict[str, str], arrays: dict[str, np.ndarray]) -> Trace:
    if header.get("format") != FORMAT_NAME:
        raise TraceFormatError(f"a safetensors file but not a dgviz trace (no '{FORMAT_NAME}' "
                               "header).")
    try:
        version = int(header.get("version", "0"))
    except ValueError:
        raise TraceFormatError("the format version is damaged.") from None
    if version > FORMAT_VERSION:
        raise TraceFormatError(
            f"written in trace format {version} by a newer dgviz; this dgviz reads format "
            f"{FORMAT_VERSION} and older. Upgrade dgviz (pip install -U dgviz) to read it.")
    covered = header.get("encodings") if version >= 3 else None
    if "sha256" in header and digest(arrays, covered) != header["sha256"]:
        raise TraceFormatError("the arrays do not match their checksum: the file is damaged "
                               "(a changed or truncated byte). Record the run again.")
    known = {f.name for f in fields(Trace)}
    missing = sorted(n for n in REQUIRED_ARRAYS if n not in arrays)
    if missing:
        raise TraceFormatError(f"the arrays {missing} are missing: the file is damaged.")
    meta = _json_field(header, "meta", dict)
    encodings = _json_field(header, "encodings", dict)
    for name, spec in encodings.items():
        if isinstance(spec, dict) and version >= 3:
            arrays[name] = _decode(name, spec, arrays)
        elif name not in arrays or str(arrays[name].dtype) != spec:
            raise TraceFormatError(f"the array {name!r} is not stored as {spec!r} as its "
                                   "header says: the file is damaged.")
    token_text = _text_arrays(arrays) if version >= 3 else _token_text(header)
    try:
        return Trace(**{k: v for k, v in arrays.items() if k in known},
                     token_text=token_text, meta=meta)
    except TraceFormatError:
        raise
    except (ValueError, TypeError, OverflowError) as err:
        raise TraceFormatError(f"the arrays do not form a trace ({err}).") from err


def _json_field(header: dict[str, str], key: str, kind: type) -> Any:
    try:
        value = json.loads(header.get(key, "{}"))
    except (json.JSONDecodeError, RecursionError) as err:
        raise TraceFormatError(f"its {key!r} metadata is damaged ({err}).") from None
    if not isinstance(value, kind):
        raise TraceFormatError(f"its {key!r} metadata is not a {kind.__name__}.")
    return value


def _token_text(header: dict[str, str]) -> dict:
    if "token_text_zlib" not in header:  # format 1
        return _json_field(header, "token_text", dict)
    try:
        packed = base64.b64decode(header["token_text_zlib"], validate=True)
        # bounded: a damaged stream must not inflate into more memory than the file justifies
        inflate = zlib.decompressobj()
        raw = inflate.decompress(packed, max(2**24, 64 * len(packed)))
        if inflate.unconsumed_tail or not inflate.eof:
            raise ValueError("it inflates beyond what its size allows, or is cut short")
    except (binascii.Error, zlib.error, ValueError) as err:
        raise TraceFormatError(f"its token text is damaged ({err}).") from None
    return _json_field({"token_text": raw.decode("utf-8", errors="replace")}, "token_text", dict)


def _decode(name: str, spec: dict, arrays: dict[str, np.ndarray]) -> np.ndarray:
    """Undo a format-3 ``encodings`` entry; every inconsistency is a `TraceFormatError`."""
    dtype, shape, codecs = spec.get("dtype"), spec.get("shape"), spec.get("codecs")
    known = ("q8", "xor_prev", "shuffle", "zlib")
    if (name not in arrays or dtype not in _DTYPES or not isinstance(shape, list)
            or len(shape) > 8 or not all(type(n) is int and n >= 0 for n in shape)
            or not isinstance(codecs, list) or codecs != [c for c in known if c in codecs]
            or ("shuffle" in codecs and "zlib" not in codecs)):
        raise TraceFormatError(f"the encoding of {name!r} is damaged ({spec!r}).")
    stored = arrays[name]
    dtype = np.dtype(dtype)
    size = math.prod(shape) * dtype.itemsize
    if "zlib" in codecs:
        if stored.dtype != np.uint8 or stored.ndim != 1 or size > _MAX_RATIO * stored.size + 64:
            raise TraceFormatError(f"the compressed array {name!r} is damaged.")
        raw = _inflate(name, stored.tobytes(), size)
    else:
        if stored.dtype != dtype or list(stored.shape) != shape:
            raise TraceFormatError(f"the array {name!r} is not stored as its header says.")
        raw = None
    if raw is not None:
        if "shuffle" in codecs:
            if dtype.itemsize == 1:
                raise TraceFormatError(f"the encoding of {name!r} is damaged ({spec!r}).")
            raw = np.frombuffer(raw, np.uint8).reshape(dtype.itemsize, -1).T.copy().tobytes()
        data = np.frombuffer(raw, dtype).reshape(shape)
    else:
        data = stored
    if "xor_prev" in codecs:
        if data.ndim < 2:
            raise TraceFormatError(f"the encoding of {name!r} is damaged ({spec!r}).")
        data = np.bitwise_xor.accumulate(_bits(data), axis=1).view(dtype)
    if "q8" in codecs:
        data = _dequantise(name, data, arrays.pop(f"{name}.q8", None))
    return data if data.flags.writeable else data.copy()  # arrays of a Trace are writable


def _inflate(name: str, packed: bytes, size: int) -> bytes:
    inflate = zlib.decompressobj()
    try:
        raw = inflate.decompress(packed, size)  # never more than the header's shape allows
    except zlib.error as err:
        raise TraceFormatError(f"the compressed array {name!r} is damaged ({err}).") from None
    if len(raw) != size or inflate.unconsumed_tail or not inflate.eof or inflate.unused_data:
        raise TraceFormatError(f"the compressed array {name!r} does not inflate to the size "
                               "its header says: the file is damaged.")
    return raw


def _dequantise(name: str, codes: np.ndarray, ranges: np.ndarray | None) -> np.ndarray:
    layers = codes.shape[_LAYER_AXIS] if codes.ndim > _LAYER_AXIS else -1
    if (codes.dtype != np.uint8 or ranges is None or ranges.dtype != np.float32
            or ranges.shape != (layers, 2) or not np.isfinite(ranges).all()):
        raise TraceFormatError(f"the quantised array {name!r} or its ranges ({name}.q8) are "
                               "damaged.")
    shape = [1] * codes.ndim
    shape[_LAYER_AXIS] = layers
    low, step = ranges[:, 0].reshape(shape), ranges[:, 1].reshape(shape)
    with np.errstate(over="ignore", invalid="ignore"):  # damage becomes inf: checks refuse it
        return low + codes.astype(np.float32) * step


def _text_arrays(arrays: dict[str, np.ndarray]) -> dict[int, str]:
    """The token text table of a format-3 file (``token_text.ids`` gaps, ``token_text.json``)."""
    gaps, raw = arrays.get(_TEXT_IDS), arrays.get(_TEXT_JSON)
    if gaps is None or raw is None or gaps.dtype != np.uint32 or gaps.ndim != 1 \
            or raw.dtype != np.uint8 or raw.ndim != 1 or (gaps[1:] == 0).any():
        raise TraceFormatError("its token text is missing or damaged.")
    texts = _json_field({_TEXT_JSON: raw.tobytes().decode("utf-8", errors="replace")},
                        _TEXT_JSON, list)
    if len(texts) != gaps.size or not all(isinstance(t, str) for t in texts):
        raise TraceFormatError("its token text does not match its token ids: it is damaged.")
    ids = np.cumsum(gaps, dtype=np.int64)
    return dict(zip(ids.tolist(), texts, strict=True))
