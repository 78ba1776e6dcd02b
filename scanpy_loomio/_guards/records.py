"""Checks of this package's own record (the JSON in the global attributes) and of the codec attributes on datasets.

A record whose entries do not make sense, or no longer fit the file, is dropped with a warning and the file is read
as plain loom; a malformed codec attribute on a matrix, layer or graph is refused.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from scanpy_loomio._codecs.text import is_text_dtype
from scanpy_loomio._errors import LoomReadWarning
from scanpy_loomio._guards.problems import file_error, join_path
from scanpy_loomio._guards.structure import NUMERIC_KINDS
from scanpy_loomio._record.record import CODEC_ATTR, Metadata, load_codec

if TYPE_CHECKING:
    from pathlib import Path

#: Matrix formats a codec attribute may name.
MATRIX_FORMATS = frozenset({"csr", "csc", "dense"})
#: Original dtypes a record may name for an embedding stored in another dtype.
RECORD_DTYPES = frozenset(
    {None, "bool", "float16", "float32", "float64", *(f"{u}int{b}" for u in ("", "u") for b in (8, 16, 32, 64))}
)


def record_problem(metadata: Metadata) -> str | None:
    for axis in ("obs", "var"):
        record = getattr(metadata, axis)
        for key, entry in record.multi.items():
            storage = entry.get("storage")
            attrs = entry.get("attrs", [])
            if storage not in ("matrix", "columns", "compound", "pair", "sidecar"):
                return (
                    f"{axis}m[{key!r}] has storage {storage!r}, expected 'matrix', 'columns', 'compound', 'pair' or "
                    "'sidecar'"
                )
            if not isinstance(attrs, list) or not all(isinstance(a, str) for a in attrs):
                return f"{axis}m[{key!r}] lists attributes {attrs!r}, expected a list of names"
            if storage == "matrix" and len(attrs) != 1:
                return f"{axis}m[{key!r}] is stored as one attribute but lists {len(attrs)}"
            if storage == "columns" and not attrs:
                return f"{axis}m[{key!r}] is stored as columns but lists none"
            fields = entry.get("fields")
            if storage == "pair" and (
                len(attrs) != 2 or not isinstance(fields, list) or len(fields) != 1 or not isinstance(fields[0], str)
            ):
                return (
                    f"{axis}m[{key!r}] is stored as one field of two records but lists {attrs!r} and fields {fields!r}"
                )
            if storage == "compound" and (
                len(attrs) != 1
                or not isinstance(fields, list)
                or not fields
                or not all(isinstance(f, str) for f in fields)
            ):
                return f"{axis}m[{key!r}] is stored as one record attribute but lists {len(attrs)} attributes and fields {fields!r}"
            shape = entry.get("shape", [])
            if not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape):
                return f"{axis}m[{key!r}] has shape {shape!r}, expected a list of sizes"
            if "dtype" in entry and entry["dtype"] not in RECORD_DTYPES:
                return f"{axis}m[{key!r}] has dtype {entry['dtype']!r}, expected 'bool', a numeric dtype or none"
    return None


def file_problem(metadata: Metadata, file: h5py.File) -> str | None:
    """Where the record points, the file must still hold what it says (another tool may have replaced it)."""
    for axis, group in (("obs", "col_attrs"), ("var", "row_attrs")):
        record = getattr(metadata, axis)

        def found(attr: str | None, *, ndim: set[int], text_or_numbers: bool = True, group: str = group) -> str | None:
            dset = file.get(f"{group}/{attr}") if attr else None
            if not isinstance(dset, h5py.Dataset):
                return None  # deleted by another tool: the reader goes without it
            if dset.ndim in ndim and (not text_or_numbers or _text_or_numbers(dset.dtype)):
                return None
            return f"/{group}/{attr}, a {dset.ndim}-D dataset of dtype {dset.dtype}"

        problem = found(record.index_attr, ndim={1})
        if problem:
            return f"{axis} names are recorded in {problem}"
        for key, attr in record.columns:
            problem = found(attr, ndim={1}, text_or_numbers=False)
            if problem:
                return f"{axis}[{key!r}] is recorded in {problem}"
        for key, entry in record.multi.items():
            if entry.get("storage") != "columns":
                continue  # one attribute: a matrix, or records with a field per component (SCope)
            for attr in entry.get("attrs", []):
                problem = found(attr, ndim={1})
                if problem:
                    return f"{axis}m[{key!r}] is recorded in {problem}"
    return None


def _text_or_numbers(dtype: np.dtype) -> bool:
    return dtype.kind in NUMERIC_KINDS or is_text_dtype(dtype)


def usable_metadata(metadata: Metadata | None, path: Path, file: h5py.File | None = None) -> Metadata | None:
    """The record when its entries make sense (and fit ``file``); otherwise ``None`` (plain loom) with a warning."""
    if metadata is None:
        return None
    problem = record_problem(metadata) or (file_problem(metadata, file) if file is not None else None)
    if problem is None:
        return metadata
    warnings.warn(
        f"{path}: the scanpy_loomio record in the global attributes is inconsistent ({problem}); reading the file "
        "as plain loom. Exact dtypes and index names may not be restored.",
        LoomReadWarning,
        stacklevel=4,
    )
    return None


def codec_problem(codec: dict[str, Any], *, graph: bool) -> str | None:
    kind = codec.get("type")
    if not isinstance(kind, str):
        return f"type {kind!r} (not a string)"
    if kind == "absent" and not graph:
        return None
    fmt = codec.get("format")
    if fmt is not None and fmt not in MATRIX_FORMATS:
        return f"format {fmt!r} (known: {', '.join(sorted(MATRIX_FORMATS))})"
    if "dtype" in codec:
        try:
            dtype = np.dtype(codec["dtype"])
        except (TypeError, ValueError):
            return f"dtype {codec['dtype']!r} (not a numpy dtype)"
        if dtype.kind not in NUMERIC_KINDS:
            return f"dtype {dtype} (not a number or bool dtype)"
    return None


def check_codecs(file: h5py.File, path: Path) -> None:
    """Check the codec attributes of the matrix, layers and graphs (the ones that decide how much is built).

    Raises
    ------
    LoomFormatError
        Naming the dataset or graph whose codec attribute is malformed.
    """
    candidates: list[tuple[str, Any, bool]] = []
    if isinstance(file.get("matrix"), h5py.Dataset):
        candidates.append(("/matrix", file["matrix"], False))
    for group_name, graph in (("layers", False), ("col_graphs", True), ("row_graphs", True)):
        group = file.get(group_name)
        if isinstance(group, h5py.Group):
            candidates.extend((join_path(group.name, n), obj, graph) for n, obj in group.items() if obj is not None)
    for where, obj, graph in candidates:
        codec = load_codec(obj)
        problem = None if codec is None else codec_problem(codec, graph=graph)
        if problem:
            raise file_error(
                path,
                where,
                f"a {CODEC_ATTR} attribute with {problem}",
                "the description this package writes",
                f"Delete the attribute (with h5py: del f[{where!r}].attrs[{CODEC_ATTR!r}]) to read the values as plain loom.",
            )
