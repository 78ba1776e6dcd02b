"""Reading text from HDF5 without losing characters.

Loom files carry text as variable-length UTF-8 (spec 3), fixed-length bytes (spec 2, R writers) or ASCII.
Everything is decoded as UTF-8, so non-ASCII text survives (loompy itself drops it).
"""

from __future__ import annotations

import codecs

import h5py
import numpy as np


def vlen_str_dtype() -> np.dtype:
    """HDF5 variable-length UTF-8 string dtype."""
    return h5py.string_dtype("utf-8")


def unstorable_text_reason(text: str) -> str | None:
    """Why HDF5 cannot hold ``text`` as UTF-8 (a NUL character, a lone surrogate), or None when it can.

    Examples
    --------
    >>> unstorable_text_reason("CD3E") is None
    True
    >>> unstorable_text_reason("CD3E" + chr(0))
    'contains a NUL character, which HDF5 text cannot hold'
    """
    if "\x00" in text:
        return "contains a NUL character, which HDF5 text cannot hold"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        return f"contains the lone surrogate {text[error.start]!r}, which is not UTF-8 text"
    return None


def decode_text(values: np.ndarray, *, where: str = "") -> np.ndarray:
    """Turn an array of ``bytes``/``str`` read from HDF5 into an object array of ``str``.

    Bytes that are not valid UTF-8 raise :class:`UnicodeDecodeError` with ``where`` in the reason, so callers can
    turn it into a format error naming the dataset.
    """
    values = np.asarray(values)
    if values.dtype.kind == "U":
        return values.astype(object)
    flat = values.ravel()
    out = np.empty(flat.shape, dtype=object)
    items = flat.tolist()  # bytes and str objects, no numpy scalars
    try:
        try:  # all bytes (what h5py reads): decoded as UTF-8 without a Python frame per value
            out[:] = list(map(bytes.decode, items))
        except TypeError:  # some are str already
            out[:] = [value.decode("utf-8") if isinstance(value, bytes) else str(value) for value in items]
    except UnicodeDecodeError as err:
        err.reason = f"{err.reason} in {where}" if where else err.reason
        raise
    return out.reshape(values.shape)


def looks_like_bytes_repr(values: np.ndarray) -> bool:
    """Whether every non-empty value is the text ``"b'...'"`` that loompy 3 writes for Python ``bytes``."""
    sample = [v for v in values[:1000] if v]
    return bool(sample) and all(v.startswith(("b'", 'b"')) and v.endswith(("'", '"')) and len(v) >= 3 for v in sample)


def repair_bytes_repr(values: np.ndarray) -> np.ndarray:
    """Undo loompy 3's ``"b'...'"`` text for values that carry it."""
    out = values.copy()
    for i, v in enumerate(values):
        if isinstance(v, str) and v.startswith(("b'", 'b"')) and len(v) >= 3:
            raw, _ = codecs.escape_decode(v[2:-1].encode("utf-8"))
            out[i] = raw.decode("utf-8", errors="replace")
    return out
