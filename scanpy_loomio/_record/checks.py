"""Whether the record and the tags of a file can be used: every check of them, in one place.

The reader calls these in raise mode (:func:`check_tags`, :func:`usable_metadata`); ``validate_loom`` collects
the same problems (:func:`tag_problems`, :func:`record_problem`) instead of raising.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from scanpy_loomio._errors import LoomFormatError, LoomReadWarning
from scanpy_loomio._record.record import METADATA_KEY, Metadata
from scanpy_loomio._record.tags import (
    CODEC_ATTR,
    TagError,
    parse_graph_tag,
    parse_matrix_tag,
    stored_tag_text,
)
from scanpy_loomio._spec.facts import ATTR_GROUPS, NUMERIC_KINDS, is_text_dtype

_TAG_FIX = (
    f"Delete the attribute (with h5py: del f[{{where!r}}].attrs[{CODEC_ATTR!r}]) to read the values as plain loom."
)
_NEWER_FIX = "Upgrade scanpy-loomio (pip install -U scanpy-loomio) to read this file."


def tagged_matrices(file: h5py.File) -> Iterator[tuple[str, Any, bool]]:
    """``(HDF5 path, object, is a graph)`` of the matrix, layers and graphs: the tags that decide what is built."""
    if isinstance(file.get("matrix"), h5py.Dataset):
        yield "/matrix", file["matrix"], False
    for group_name, graph in (("layers", False), ("col_graphs", True), ("row_graphs", True)):
        group = file.get(group_name)
        if isinstance(group, h5py.Group):
            for name, obj in group.items():
                if obj is not None:
                    yield f"{group.name.rstrip('/')}/{name}", obj, graph


def tag_problem(obj: Any, *, graph: bool) -> TagError | None:
    """The problem of ``obj``'s tag (malformed or newer), or ``None`` when it has a usable one or none."""
    text = stored_tag_text(obj)
    if text is None:
        return None
    try:
        parse_graph_tag(text) if graph else parse_matrix_tag(text)
    except TagError as err:
        return err
    return None


def tag_error(path: Path, where: str, err: TagError) -> LoomFormatError:
    """The error for a tag this release cannot use, naming the file, the HDF5 object and the fix."""
    fix = _NEWER_FIX if err.newer else _TAG_FIX.format(where=where)
    return LoomFormatError(
        f"{path}: {where}: found a {CODEC_ATTR} attribute with {err}; expected the description this package "
        f"writes. {fix}"
    )


def check_tags(file: h5py.File, path: Path) -> None:
    """Check the tags of the matrix, layers and graphs.

    Raises
    ------
    LoomFormatError
        Naming the dataset or graph whose tag is malformed or from a newer release.
    """
    for where, obj, graph in tagged_matrices(file):
        problem = tag_problem(obj, graph=graph)
        if problem is not None:
            raise tag_error(path, where, problem)


def record_error(path: Path, err: TagError) -> LoomFormatError:
    """The error for a record written by a newer release."""
    return LoomFormatError(f"{path}: /attrs/{METADATA_KEY}: found a record with {err}. {_NEWER_FIX}")


def _text_or_numbers(dtype: np.dtype) -> bool:
    return dtype.kind in NUMERIC_KINDS or is_text_dtype(dtype)


def file_problem(metadata: Metadata, file: h5py.File) -> str | None:
    """Where the record points, the file must still hold what it says (another tool may have replaced it)."""
    for axis, group in ATTR_GROUPS.items():
        record = getattr(metadata, axis)

        def found(attr: str | None, *, text_or_numbers: bool = True, group: str = group) -> str | None:
            dset = file.get(f"{group}/{attr}") if attr else None
            if not isinstance(dset, h5py.Dataset):
                return None  # deleted by another tool: the reader goes without it
            if dset.ndim == 1 and (not text_or_numbers or _text_or_numbers(dset.dtype)):
                return None
            return f"/{group}/{attr}, a {dset.ndim}-D dataset of dtype {dset.dtype}"

        problem = found(record.index_attr)
        if problem:
            return f"{axis} names are recorded in {problem}"
        for key, attr in record.columns:
            problem = found(attr, text_or_numbers=False)
            if problem:
                return f"{axis}[{key!r}] is recorded in {problem}"
        for key, entry in record.multi.items():
            if entry.storage != "columns":
                continue  # one attribute: a matrix, or records with a field per component (SCope)
            for attr in entry.attrs:
                problem = found(attr)
                if problem:
                    return f"{axis}m[{key!r}] is recorded in {problem}"
    return None


def record_problem(metadata: Metadata, file: h5py.File | None = None) -> str | None:
    """What makes the record unusable (its entries, or what they point to in ``file``), or ``None``."""
    return metadata.problem() or (file_problem(metadata, file) if file is not None else None)


def usable_metadata(metadata: Metadata | None, path: Path, file: h5py.File | None = None) -> Metadata | None:
    """The record when its entries make sense (and fit ``file``); otherwise ``None`` (plain loom) with a warning."""
    if metadata is None:
        return None
    problem = record_problem(metadata, file)
    if problem is None:
        return metadata
    warnings.warn(
        f"{path}: the scanpy_loomio record in the global attributes is inconsistent ({problem}); reading the file "
        "as plain loom. Exact dtypes and index names may not be restored.",
        LoomReadWarning,
        stacklevel=4,
    )
    return None
