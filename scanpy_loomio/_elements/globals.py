"""Loom global attributes: ``/attrs/<name>`` datasets (spec 3) or root-group HDF5 attributes (spec 2).

Simple ``uns`` values (text and numbers) are written here, where loom tools read them (SCope reads ``title``,
``Genome``, ``MetaData``); a small type tag in the metadata record restores their exact Python type.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np

from scanpy_loomio._codecs.text import decode_text, vlen_str_dtype
from scanpy_loomio._guards.boundary import hdf5_object, read_values

if TYPE_CHECKING:
    import h5py

GLOBALS_GROUP = "attrs"


def scalar_tag(value: Any) -> str | None:
    """Type tag for a value that can be a plain global attribute, or ``None``."""
    if isinstance(value, bool | np.bool_):
        return None  # loom readers expect text or numbers
    if type(value) in (str, int, float):
        if type(value) is int and not -(2**63) <= value < 2**63:
            return None
        return type(value).__name__
    if isinstance(value, np.str_):
        return "np:str"
    if isinstance(value, np.integer | np.floating):
        return f"np:{value.dtype}"
    return None


def json_tag(value: Any) -> str | None:
    """``"json"`` when ``value`` survives a JSON round trip exactly (dicts/lists of text, numbers, bools, None)."""
    try:
        return "json" if json.loads(json.dumps(value, allow_nan=False)) == value else None
    except (TypeError, ValueError):
        return None


def encode_global(value: Any, tag: str) -> Any:
    """What to store for a tagged value."""
    if tag == "json":
        return json.dumps(value, ensure_ascii=False)
    return value


def decode_global(value: Any, tag: str | None) -> Any:
    """Restore a tagged value; unknown tags or values that do not fit come back as read."""
    try:
        if tag == "json":
            return json.loads(value)
        if tag == "str":
            return str(value)
        if tag == "int":
            return int(value)
        if tag == "float":
            return float(value)
        if tag == "np:str":
            return np.str_(value)
        if tag and tag.startswith("np:"):
            return np.dtype(tag[3:]).type(value)
    except (TypeError, ValueError, json.JSONDecodeError):
        return value
    return value


def write_globals(file: h5py.File, values: dict[str, Any], *, layout: str) -> None:
    """Write global attributes in the given layout (``"datasets"`` or ``"root"``)."""
    if layout == "root":
        for name, value in values.items():
            file.attrs.create(name, value, dtype=vlen_str_dtype() if isinstance(value, str) else None)
        return
    group = file.require_group(GLOBALS_GROUP)
    for name, value in values.items():
        if isinstance(value, str):
            group.create_dataset(name, data=value, dtype=vlen_str_dtype())
        else:
            group.create_dataset(name, data=value)


def _clean(value: Any, where: str) -> Any:
    """Text as ``str``, 0-d arrays as scalars."""
    if isinstance(value, bytes | np.bytes_):
        return decode_text(np.array([value], dtype=object), where=where)[0]
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "SO":
            value = decode_text(value, where=where)
        if value.ndim == 0:
            return value[()]
        if value.dtype == object and value.size == 1:
            return value.ravel()[0]
    return value


def read_globals(file: h5py.File) -> dict[str, Any]:
    """All global attributes: root HDF5 attributes first, then ``/attrs`` datasets (which win on a clash)."""
    out: dict[str, Any] = {}
    with hdf5_object(file):
        for name in file.attrs:
            with hdf5_object(file, attribute=name):
                value = file.attrs[name]
            out[name] = _clean(value, f"{file.filename}: root attribute {name!r}")
        group = file.get(GLOBALS_GROUP, getlink=False)
    if group is not None and hasattr(group, "keys"):
        with hdf5_object(group):
            for name, obj in group.items():
                if hasattr(obj, "shape"):
                    out[name] = _clean(read_values(obj), f"{file.filename}: /attrs/{name}")
    return out
