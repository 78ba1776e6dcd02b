"""R factors and logicals in loom files, the way R tools' own writers store them (see :class:`RTypes`).

Writing: a categorical with text categories becomes an HDF5 enum (SeuratDisk), or its labels flagged in
``colnames_factor`` (LoomExperiment); a boolean becomes the convention's integer dtype, marked ``storage.mode =
"logical"`` where rhdf5 looks for it. The package's own codec still records the exact pandas dtype, so reading
back stays exact.

Reading a file another tool wrote: enums become categoricals with their names as categories, in code order;
columns flagged as factors become categoricals; marked 0/1 datasets become booleans.

Examples
--------
>>> import numpy as np
>>> from scanpy_loomio._codecs.rtypes import enum_dtype, enum_labels
>>> dtype = enum_dtype(["A", "B"], first_code=1)
>>> enum_labels(np.array([1, 2, 1], dtype=np.uint8), dtype).tolist()
['A', 'B', 'A']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import h5py
import numpy as np
import pandas as pd

from scanpy_loomio._record.tags import ColumnTag
from scanpy_loomio.conventions import CONVENTIONS, Convention, RTypes

__all__ = [
    "enum_categorical",
    "enum_dtype",
    "enum_labels",
    "factor_flag_names",
    "factor_flags",
    "is_marked_logical",
    "mark_logical",
    "marked_bool",
    "to_enum_codes",
]


# -- enums -----------------------------------------------------------------------------------------------------------


def enum_dtype(levels: Sequence[str], *, first_code: int = 1) -> np.dtype:
    """An HDF5 enum dtype naming ``levels`` in order, on the smallest unsigned integer that holds the codes."""
    top = first_code + len(levels)
    base = np.uint8 if top <= 0xFF else np.uint16 if top <= 0xFFFF else np.uint32
    return h5py.enum_dtype({str(level): first_code + i for i, level in enumerate(levels)}, basetype=base)


def enum_mapping(dtype: np.dtype) -> dict[str, int] | None:
    """Name → code of an HDF5 enum dtype; ``None`` for any other dtype."""
    return h5py.check_enum_dtype(dtype)


def enum_labels(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Codes of an enum dataset as an object array of names; codes without a name (missing values) give ``None``."""
    mapping = enum_mapping(dtype) or {}
    by_code = {code: name for name, code in mapping.items()}
    return np.array([by_code.get(int(v)) for v in np.asarray(values).ravel()], dtype=object).reshape(np.shape(values))


def enum_categorical(values: np.ndarray, dtype: np.dtype) -> pd.Categorical[str]:
    """An enum dataset's values as a categorical: the names are the categories, in code order."""
    mapping = enum_mapping(dtype) or {}
    ordered = sorted(mapping.items(), key=lambda item: item[1])
    categories = [name for name, _ in ordered]
    position = {code: i for i, (_, code) in enumerate(ordered)}
    codes = np.array([position.get(int(v), -1) for v in np.asarray(values).ravel()], dtype=np.int64)
    return pd.Categorical.from_codes(codes, categories=pd.Index(categories))


def to_enum_codes(labels: np.ndarray, categories: Sequence[str], mask: np.ndarray | None, rtypes: RTypes) -> np.ndarray:
    """A categorical's labels as enum codes (``0``, no level, where missing), in :func:`enum_dtype`'s dtype."""
    dtype = enum_dtype(categories, first_code=rtypes.enum_first_code)
    position = {str(c): i + rtypes.enum_first_code for i, c in enumerate(categories)}
    codes = np.array([position.get(str(v), 0) for v in labels], dtype=np.int64)
    if mask is not None:
        codes[np.asarray(mask, dtype=bool)] = 0
    return codes.astype(dtype)


# -- logicals --------------------------------------------------------------------------------------------------------


def marked_bool(values: np.ndarray, rtypes: RTypes) -> np.ndarray:
    """0/1 values in the convention's boolean dtype."""
    return np.asarray(values).astype(rtypes.bool_dtype)


def mark_logical(dset: h5py.Dataset, rtypes: RTypes) -> None:
    """Mark a 0/1 dataset as logical the way the tool's writer does (a fixed-length text attribute, as rhdf5)."""
    if rtypes.logical_mark is not None:
        name, value = rtypes.logical_mark
        dset.attrs.create(name, np.array([value.encode()], dtype=f"S{len(value) + 1}"))


def _attr_text(value: object) -> str | None:
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.ravel()[0]
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return value if isinstance(value, str) else None


def _marks(convention: Convention) -> list[tuple[str, str]]:
    marks = [convention.r_types.logical_mark]
    marks += [c.r_types.logical_mark for c in CONVENTIONS.values()]
    return [m for m in dict.fromkeys(marks) if m is not None]


def is_marked_logical(dset: h5py.Dataset, convention: Convention) -> bool:
    """Whether a 1-D integer dataset carries a logical marker of this convention (or any registered one)."""
    if dset.ndim != 1 or dset.dtype.kind not in "iu":
        return False
    return any(_attr_text(dset.attrs.get(name)) == value for name, value in _marks(convention))


def logical_values(values: np.ndarray) -> np.ndarray | pd.arrays.BooleanArray:
    """0/1 values as ``bool``; any other value (R's ``NA``) as a missing value of a nullable boolean."""
    values = np.asarray(values)
    missing = (values != 0) & (values != 1)
    if missing.any():
        return pd.arrays.BooleanArray(values == 1, missing)
    return values.astype(bool)


# -- factor flags ----------------------------------------------------------------------------------------------------


def factor_flag_names(convention: Convention) -> list[str]:
    """Column attributes that may flag factor columns: this convention's, then every registered ``"flags"`` one."""
    out = [c.r_types.factor_flags_attr for c in (convention, *CONVENTIONS.values()) if c.r_types.factors == "flags"]
    return list(dict.fromkeys(out))


def factor_flags(flags: np.ndarray, names: Sequence[str]) -> set[str]:
    """Names of the columns a flags matrix marks as factors.

    ``names`` are the other column attributes in the order the tool's reader lists them (by name); flag ``i`` of the
    first row is the ``i``-th of them. A flags matrix of the wrong width flags nothing.

    Examples
    --------
    >>> import numpy as np
    >>> from scanpy_loomio._codecs.rtypes import factor_flags
    >>> sorted(factor_flags(np.array([[1, 0, 1]] * 4), ["b", "a", "c"]))
    ['a', 'c']
    """
    flags = np.asarray(flags)
    if flags.ndim != 2 or flags.shape[0] == 0 or flags.shape[1] != len(names):
        return set()
    ordered = sorted(names)
    return {name for name, flag in zip(ordered, flags[0], strict=True) if flag}


def flags_matrix(n: int, names: Sequence[str], factors: set[str]) -> np.ndarray:
    """The flags matrix a ``"flags"`` convention writes: ``n`` rows, one int32 column per name in sorted order."""
    row = np.array([1 if name in factors else 0 for name in sorted(names)], dtype=np.int32)
    return np.tile(row, (n, 1))


def flagged_names(group: h5py.Group, exclude: Mapping[str, object] | Sequence[str]) -> list[str]:
    """The datasets of an attribute group that a flags matrix covers: all but ``exclude``, by name."""
    return sorted(name for name, obj in group.items() if isinstance(obj, h5py.Dataset) and name not in exclude)


# -- writing ---------------------------------------------------------------------------------------------------------


def is_text_factor(codec: ColumnTag | None, aux: Mapping[str, np.ndarray]) -> bool:
    """Whether an encoded column is a categorical with text categories (what R can hold as a factor)."""
    if codec is None or codec.kind != "categorical" or "categories" not in aux:
        return False
    categories = np.asarray(aux["categories"])
    return categories.dtype.kind in "OUS" and all(isinstance(c, str) for c in categories)


def r_values(values: np.ndarray, codec: ColumnTag | None, aux: Mapping[str, np.ndarray], rtypes: RTypes) -> np.ndarray:
    """An encoded column's values as the convention's R writer stores them (enum factors, boolean dtype).

    Examples
    --------
    >>> import numpy as np
    >>> from scanpy_loomio._codecs.rtypes import r_values
    >>> from scanpy_loomio._record.tags import ColumnTag
    >>> from scanpy_loomio.conventions import RTypes
    >>> r_values(np.array([1, 0], np.uint8), ColumnTag("bool"), {}, RTypes(bool_dtype="int32")).dtype
    dtype('int32')
    """
    kind = codec.kind if codec else None
    if kind in ("bool", "nullable-boolean"):
        return marked_bool(values, rtypes)
    if rtypes.factors == "enum" and is_text_factor(codec, aux):
        return to_enum_codes(values, [str(c) for c in aux["categories"]], aux.get("mask"), rtypes)
    return values


def is_logical(codec: ColumnTag | None, aux: Mapping[str, np.ndarray]) -> bool:
    """Whether an encoded column is a boolean with no missing value (what a logical marker may mark)."""
    return codec is not None and codec.kind in ("bool", "nullable-boolean") and "mask" not in aux
