"""The one binary codec between Python and the widget's JS (``js/src/codec.js``).

An array travels as ``{"dtype": str, "shape": [int, ...], "data": memoryview}``: Jupyter widgets
send the memoryview as a binary buffer (no JSON lists of numbers, no base64), the JS side wraps it
in a typed array of the declared dtype. The offline HTML page stores the same structure with
``"b64"`` (base64 of the same bytes) in place of ``"data"``.

Every array is converted to an explicit little-endian dtype from `DTYPES` and made C-contiguous;
float16 is widened to float32 on the JS side.
"""

from __future__ import annotations

import base64
from typing import Any

import numpy as np

# dtypes the JS decoder knows (js/src/codec.js CTORS + float16).
DTYPES = ("int8", "uint8", "int16", "uint16", "int32", "uint32", "float16", "float32", "float64")


def encode(array: Any, dtype: str) -> dict[str, Any]:
    """``array`` as ``dtype`` (one of `DTYPES`), ready for a binary widget trait.

    Integers must fit the target dtype: silently wrapping a token or expert id would show the
    wrong token, so out-of-range values raise ``ValueError``.
    """
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} is not one the widget decodes; use one of {DTYPES}.")
    src = np.asarray(array)
    target = np.dtype(dtype).newbyteorder("<")
    if target.kind in "iu" and src.size and src.dtype.kind in "iub":
        info = np.iinfo(target)
        lo, hi = int(src.min()), int(src.max())
        if lo < info.min or hi > info.max:
            raise ValueError(f"values {lo}..{hi} do not fit {dtype} ({info.min}..{info.max}).")
    out = np.ascontiguousarray(src, dtype=target)
    data = memoryview(out.reshape(-1).view(np.uint8))
    return {"dtype": dtype, "shape": [int(n) for n in out.shape], "data": data}


def decode(obj: dict[str, Any]) -> np.ndarray:
    """Inverse of `encode` (also reads the ``"b64"`` form of `to_base64`)."""
    dtype = np.dtype(obj["dtype"]).newbyteorder("<")
    raw = base64.b64decode(obj["b64"]) if "b64" in obj else obj["data"]
    return np.frombuffer(raw, dtype=dtype).reshape(obj["shape"])


def nbytes(tree: Any) -> int:
    """Binary bytes in a tree of dicts / lists holding encoded arrays."""
    if isinstance(tree, dict):
        if "dtype" in tree and "data" in tree:
            return memoryview(tree["data"]).nbytes
        return sum(nbytes(v) for v in tree.values())
    if isinstance(tree, list | tuple):
        return sum(nbytes(v) for v in tree)
    return 0


def to_base64(tree: Any) -> Any:
    """The same tree with each array's ``"data"`` replaced by ``"b64"`` (for JSON / HTML)."""
    if isinstance(tree, dict):
        if "dtype" in tree and "data" in tree:
            return {"dtype": tree["dtype"], "shape": tree["shape"],
                    "b64": base64.b64encode(memoryview(tree["data"]).tobytes()).decode("ascii")}
        return {k: to_base64(v) for k, v in tree.items()}
    if isinstance(tree, list | tuple):
        return [to_base64(v) for v in tree]
    return tree


def id_dtype(max_id: int) -> str:
    """Narrowest unsigned dtype for token ids (the real vocabulary needs more than 16 bits)."""
    return "uint16" if max_id < 2**16 else "int32"
