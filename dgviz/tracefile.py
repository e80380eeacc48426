"""The trace file: safetensors arrays + JSON metadata, checksummed, never pickle.

Format 2 (this dgviz writes it; format 1 files still load):

- every array in the narrowest dtype that holds its values (token ids as uint16 when the
  vocabulary fits, expert ids as uint8 with at most 256 experts); a header entry ``encodings``
  says which, and `load_trace` widens them back to the `Trace`'s dtypes;
- ``sha256``: a digest of every array's name, dtype, shape and bytes, checked on load, so a
  flipped bit anywhere in the arrays is an error, not a silently wrong trace;
- the token text table zlib-compressed (``token_text_zlib``, base64).

Everything read is then checked by `dgviz.trace_checks` before a `Trace` is returned.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import zlib
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

from .trace import REQUIRED_ARRAYS, Trace
from .trace_checks import TraceFormatError

FORMAT_NAME = "dgviz-trace"
FORMAT_VERSION = 2

_TOKEN_IDS = ("canvas_in", "sampled", "draft", "topk_ids", "prompt_ids", "output_ids")
_EXPERT_IDS = ("expert_ids", "encoder_expert_ids")


def _disk_dtype(name: str, value: np.ndarray) -> np.dtype:
    """The narrowest dtype that holds ``value`` without loss."""
    if name in _TOKEN_IDS + _EXPERT_IDS and value.size:
        low, high = int(value.min()), int(value.max())
        if low >= 0 and high < 2**8 and name in _EXPERT_IDS:
            return np.dtype(np.uint8)
        if low >= 0 and high < 2**16:
            return np.dtype(np.uint16)
    return value.dtype


def digest(tensors: dict[str, np.ndarray]) -> str:
    """sha256 over every array's name, dtype, shape and bytes, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        array = np.ascontiguousarray(tensors[name])
        h.update(f"{name}|{array.dtype.str}|{array.shape}|".encode())
        h.update(memoryview(array.reshape(-1).view(np.uint8)))
    return h.hexdigest()


def save_trace(trace: Trace, path: str | Path) -> Path:
    """Write ``trace`` to ``path`` (format 2); see `Trace.save`."""
    from safetensors.numpy import save_file

    tensors, encodings = {}, {}
    for f in fields(trace):
        value = getattr(trace, f.name)
        if isinstance(value, np.ndarray):
            disk = _disk_dtype(f.name, value)
            if disk != value.dtype:
                encodings[f.name] = disk.name
            tensors[f.name] = np.ascontiguousarray(value, dtype=disk)
    table = json.dumps(trace.token_text, ensure_ascii=False).encode()
    header = {
        "format": FORMAT_NAME,
        "version": str(FORMAT_VERSION),
        "meta": json.dumps(trace.meta, default=_json_default),
        "token_text_zlib": base64.b64encode(zlib.compress(table, 6)).decode("ascii"),
        "encodings": json.dumps(encodings),
        "sha256": digest(tensors),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=header)
    return path


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
    if "sha256" in header and digest(arrays) != header["sha256"]:
        raise TraceFormatError("the arrays do not match their checksum: the file is damaged "
                               "(a changed or truncated byte). Record the run again.")
    known = {f.name for f in fields(Trace)}
    missing = sorted(n for n in REQUIRED_ARRAYS if n not in arrays)
    if missing:
        raise TraceFormatError(f"the arrays {missing} are missing: the file is damaged.")
    meta = _json_field(header, "meta", dict)
    token_text = _token_text(header)
    encodings = _json_field(header, "encodings", dict)
    for name, dtype in encodings.items():
        if name not in arrays or str(arrays[name].dtype) != dtype:
            raise TraceFormatError(f"the array {name!r} is not stored as {dtype!r} as its "
                                   "header says: the file is damaged.")
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
