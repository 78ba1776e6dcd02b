"""Column codecs: one encode/decode pair per pandas dtype, for ``obs``/``var`` columns.

Every codec turns a column into values loom tools can read as they are (a categorical becomes its labels, a boolean
becomes 0/1), plus what is needed to get the exact pandas dtype back: a small JSON description stored as an HDF5
attribute on the loom dataset itself, and auxiliary arrays (categories, missing-value masks) stored beside the loom
datasets. Because the description lives on the dataset, a tool that rewrites the dataset (loompy replaces datasets
wholesale) also removes it, and the new values are then read as plain loom values rather than decoded with stale
information.

Contract, for every column ``s`` that :func:`encode_column` accepts::

    decode_column(*encode_column(s, key)) == s  # values, dtype, categories, missing values
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from pandas.core.arrays.integer import IntegerDtype  # Int8 ... UInt64; pandas has no public name for it

from scanpy_loomio._codecs.text import decode_text, unstorable_text_reason
from scanpy_loomio._errors import LossyWriteError
from scanpy_loomio._record.tags import ColumnTag
from scanpy_loomio._spec.facts import NUMERIC_DTYPES

#: dtypes a loom attribute may hold as they are (the loom validator's list).
NATIVE_DTYPES = NUMERIC_DTYPES


@dataclass
class EncodedColumn:
    """A column as it goes to disk."""

    values: np.ndarray
    """What the loom attribute dataset holds."""
    codec: ColumnTag | None = None
    """How to restore the pandas dtype; ``None`` when the values are already exact."""
    aux: dict[str, np.ndarray] = field(default_factory=dict)
    """Arrays kept beside the loom datasets (e.g. ``categories``, ``mask``)."""


def _mask_aux(mask: np.ndarray) -> dict[str, np.ndarray]:
    return {"mask": mask.astype(bool)} if mask.any() else {}


def _bytes_as_text(values: np.ndarray, key: str) -> np.ndarray:
    """Text given as ``bytes`` decoded as UTF-8: ``write_h5ad`` stores such values as text and reads them as ``str``."""
    if not any(isinstance(v, bytes) for v in values):
        return values
    decoded = values.astype(object)
    for i, value in enumerate(decoded):
        if isinstance(value, bytes):
            try:
                decoded[i] = value.decode("utf-8")
            except UnicodeDecodeError:
                msg = (
                    f"{key}: the value {value!r} is bytes that are not UTF-8 text, which an HDF5 text attribute "
                    "cannot hold. Decode the column with the right encoding (e.g. .str.decode('latin-1')) first."
                )
                raise LossyWriteError(msg) from None
    return decoded


def storable_values(values: np.ndarray, key: str) -> np.ndarray:
    """Values of a native dtype, or text, ready for loom."""
    if values.dtype in NATIVE_DTYPES:
        return values
    if values.dtype == bool:
        return values.astype(np.uint8)
    if values.dtype.kind in "OUS":
        if not all(isinstance(v, str) for v in values):
            values = _bytes_as_text(values, key)
        if not all(isinstance(v, str) for v in values):
            bad = next(v for v in values if not isinstance(v, str))
            msg = (
                f"{key}: found a value of type {type(bad).__name__} ({bad!r}) in a text column; "
                "loom stores text, integers and floats. Convert the column with .astype(str) or to a categorical."
            )
            raise LossyWriteError(msg)
        with_nul = next((v for v in values if "\x00" in v), None)
        if with_nul is not None:
            msg = f"{key}: the value {with_nul!r} contains a NUL character, which HDF5 text cannot hold. Remove it."
            raise LossyWriteError(msg)
        try:
            "".join(values).encode("utf-8")
        except UnicodeEncodeError:  # find the value, to name it
            bad = next(v for v in values if unstorable_text_reason(v) is not None)
            msg = f"{key}: the value {bad!r} {unstorable_text_reason(bad)}. Remove or replace the character."
            raise LossyWriteError(msg) from None
        return values.astype(object)
    msg = (
        f"{key}: dtype {values.dtype} cannot be stored in a loom attribute; expected an integer, float, bool, "
        "text, categorical or nullable pandas dtype. Convert the column before writing."
    )
    raise LossyWriteError(msg)


def _encode_categorical(series: pd.Series, key: str) -> EncodedColumn:
    cat = series.array
    categories = np.asarray(cat.categories)
    codes = np.asarray(cat.codes)
    mask = codes < 0
    stored_categories = storable_values(categories, f"{key} (categories)")
    if stored_categories.dtype == object:
        labels = np.empty(len(codes), dtype=object)
        labels[:] = ""
        if len(categories):
            labels[~mask] = stored_categories[codes[~mask]]
    else:
        labels = np.zeros(len(codes), dtype=stored_categories.dtype)
        labels[~mask] = stored_categories[codes[~mask]]
    codec = ColumnTag("categorical", ordered=bool(cat.ordered), categories_dtype=str(categories.dtype))
    return EncodedColumn(labels, codec, {"categories": categories, **_mask_aux(mask)})


def _encode_nullable(series: pd.Series, dtype: pd.BooleanDtype | IntegerDtype) -> EncodedColumn:
    array = series.array
    mask = np.asarray(array.isna(), dtype=bool)
    if isinstance(dtype, pd.BooleanDtype):
        tag, numpy_dtype = ColumnTag("nullable-boolean", dtype=str(dtype)), np.dtype(np.uint8)
    else:
        tag, numpy_dtype = ColumnTag("nullable-integer", dtype=str(dtype)), _numpy_dtype(dtype)
    values = np.asarray(array.to_numpy(dtype=numpy_dtype, na_value=0))
    return EncodedColumn(values, tag, _mask_aux(mask))


def _numpy_dtype(dtype: IntegerDtype) -> np.dtype:
    """The numpy dtype behind a nullable integer dtype: ``int64`` for ``Int64``."""
    return dtype.numpy_dtype  # type: ignore[attr-defined]  # pandas-stubs leaves out BaseMaskedDtype.numpy_dtype


def _is_default_text(dtype: Any) -> bool:
    """Pandas 3's default ``str`` dtype (NaN for missing), which plain text read back takes, as with ``.h5ad``."""
    return isinstance(dtype, pd.StringDtype) and dtype.na_value is np.nan


def text_kind(dtype: Any) -> str | None:
    """``"str"`` (pandas 3's default text) or ``"object"`` for plain text of no values, else ``None``.

    pandas infers the type of text from its values: with none, it is what ``.h5ad`` keeps and loom needs recorded.
    Other text types (``string``, categoricals) are restored by their codecs.
    """
    if pd.api.types.is_object_dtype(dtype):
        return "object"
    return "str" if _is_default_text(dtype) else None


def text_type(kind: str | None) -> Any:
    """The dtype of plain text of no values recorded as ``kind``: ``object``, or the type pandas gives text now."""
    return np.dtype(object) if kind == "object" else pd.Index(["text"]).dtype


def _encode_text(series: pd.Series, key: str) -> EncodedColumn:
    """Object or pandas string columns; missing values are kept in a mask."""
    values = np.asarray(series.array, dtype=object)
    mask = np.asarray(pd.isna(series), dtype=bool)
    if _is_default_text(series.dtype) and not mask.any():
        return EncodedColumn(storable_values(values, key))  # plain text reads back in the stack's text dtype
    if isinstance(series.dtype, pd.StringDtype):
        stored = values.copy()
        stored[mask] = ""
        codec = ColumnTag("string", dtype=str(series.dtype))
        return EncodedColumn(storable_values(stored, key), codec, _mask_aux(mask))
    if not mask.any():
        return EncodedColumn(storable_values(values, key))
    missing = {type(v).__name__ for v in values[mask]}
    if missing - {"float", "NoneType"} or len(missing) > 1:
        msg = f"{key}: missing values of several kinds ({sorted(missing)}); expected one kind (NaN or None)."
        raise LossyWriteError(msg)
    stored = values.copy()
    stored[mask] = ""
    codec = ColumnTag("string", na="None" if missing == {"NoneType"} else "nan")
    return EncodedColumn(storable_values(stored, key), codec, _mask_aux(mask))


def encode_column(series: pd.Series, key: str) -> EncodedColumn:
    """Encode one ``obs``/``var`` column for a loom attribute dataset.

    Parameters
    ----------
    series
        The column.
    key
        Its AnnData key (e.g. ``obs['louvain']``), used in error messages.

    Raises
    ------
    LossyWriteError
        When the column has a dtype loom plus this package's metadata cannot store exactly.
    """
    dtype = series.dtype
    if isinstance(dtype, pd.CategoricalDtype):
        return _encode_categorical(series, key)
    if isinstance(dtype, pd.BooleanDtype | IntegerDtype):
        return _encode_nullable(series, dtype)
    if isinstance(dtype, pd.StringDtype) or (isinstance(dtype, np.dtype) and dtype.kind == "O"):
        return _encode_text(series, key)
    if isinstance(dtype, np.dtype):
        values = series.to_numpy()
        if dtype.kind == "b":
            return EncodedColumn(values.astype(np.uint8), ColumnTag("bool"))
        if dtype.kind == "S":  # numpy bytes (e.g. read from a loom file with h5py): stored as text, read as bytes
            return EncodedColumn(storable_values(values, key), ColumnTag("bytes"))
        return EncodedColumn(storable_values(values, key))
    msg = (
        f"{key}: pandas dtype {dtype} is not supported; expected numeric, bool, text, categorical or nullable "
        "Int/UInt/boolean/string. Convert the column before writing."
    )
    raise LossyWriteError(msg)


class CodecMismatch(ValueError):
    """The stored values do not fit the codec description (the dataset was edited by another tool)."""


def _apply_mask(values: np.ndarray, aux: dict[str, np.ndarray]) -> np.ndarray | None:
    mask = aux.get("mask")
    if mask is None:
        return None
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != values.shape[:1]:
        msg = f"mask of length {mask.shape[0]} for {values.shape[0]} values"
        raise CodecMismatch(msg)
    return mask


def plain_values(values: np.ndarray, *, where: str = "") -> np.ndarray:
    """Loom attribute values as they are, with text decoded to ``str``."""
    if values.dtype.kind in "SO":
        return decode_text(values, where=where)
    return values


def decode_column(values: np.ndarray, codec: ColumnTag | None, aux: dict[str, np.ndarray]) -> Any:
    """Restore a column from its loom values, tag and auxiliary arrays.

    Raises
    ------
    CodecMismatch
        When the values do not fit the description; the caller then reads the plain values instead.
    """
    if codec is None:
        return plain_values(values)
    kind = codec.kind
    mask = _apply_mask(values, aux)
    if kind == "bool":
        if values.dtype.kind not in "iu" or (values.size and values.max(initial=0) > 1):
            msg = "expected 0/1 values for a bool column"
            raise CodecMismatch(msg)
        return values.astype(bool)
    if kind == "categorical":
        categories = pd.Index(plain_values(np.asarray(aux["categories"])))
        # text categories take the stack's text dtype, as anndata reads them; others their recorded dtype
        is_text = pd.api.types.is_string_dtype(categories.dtype)
        if not is_text and codec.categories_dtype and str(categories.dtype) != codec.categories_dtype:
            categories = categories.astype(codec.categories_dtype)
        if not categories.is_unique:
            msg = "the recorded categories are not unique"
            raise CodecMismatch(msg)
        labels = plain_values(values)
        if categories.dtype == bool:
            labels = labels.astype(bool)
        codes = categories.get_indexer(labels) if len(categories) else np.full(len(labels), -1)
        codes = np.asarray(codes, dtype=np.int64)
        if mask is not None:
            codes[mask] = -1
        unknown = (codes < 0) & ~(mask if mask is not None else np.zeros(len(codes), dtype=bool))
        if unknown.any():
            msg = f"label {labels[unknown][0]!r} is not among the recorded categories"
            raise CodecMismatch(msg)
        return pd.Categorical.from_codes(codes, categories=categories, ordered=codec.ordered)
    if kind == "nullable-integer":
        dtype = pd.api.types.pandas_dtype(codec.dtype)
        if not isinstance(dtype, IntegerDtype):
            msg = f"{codec.dtype!r} is not a nullable integer dtype"
            raise CodecMismatch(msg)
        no_mask = np.zeros(len(values), dtype=bool)
        return pd.arrays.IntegerArray(values.astype(_numpy_dtype(dtype)), mask if mask is not None else no_mask)
    if kind == "bytes":  # as read_h5ad gives a numpy bytes column: bytes objects
        encoded = np.empty(len(values), dtype=object)
        encoded[:] = [text.encode("utf-8") for text in plain_values(values)]
        return encoded
    if kind == "nullable-boolean":
        return pd.arrays.BooleanArray(values.astype(bool), mask if mask is not None else np.zeros(len(values), bool))
    if kind == "string":
        text = plain_values(values)
        if codec.dtype is not None:
            array: Any = pd.array(text, dtype=codec.dtype)  # type: ignore[call-overload]  # a pandas string dtype
            if mask is not None:
                array[mask] = pd.NA
            return array
        if mask is not None:
            text[mask] = None if codec.na == "None" else np.nan
        return text
    msg = f"unknown codec type {kind!r}"
    raise CodecMismatch(msg)
