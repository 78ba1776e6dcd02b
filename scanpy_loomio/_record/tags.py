"""The codec attribute: a JSON tag on a dataset or group saying how to restore its exact AnnData form.

This module is the only one that builds or parses a tag. Every tag names its kind and version in the manner of
anndata's element encoding (``encoding-type``, ``encoding-version``), and the other keys never collide with them.
A reader accepts every version it knows (including the untagged form of scanpy-loomio 0.1.0, read as version
``0.1.0``) and refuses a newer one with :class:`TagError` (``newer=True``), so a file from a later release is never
read wrongly.

>>> tag = MatrixTag(format="csr", container="csr_matrix", dtype="float32")
>>> text = tag.to_json()
>>> text
'{"encoding-type": "matrix", "encoding-version": "0.2.0", "format": "csr", "container": "csr_matrix", "dtype": "float32"}'
>>> parse_matrix_tag(text) == tag
True
>>> parse_matrix_tag('{"type": "csr_matrix", "format": "csr", "dtype": "float32"}') == tag  # as 0.1.0 wrote it
True
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from scipy import sparse

from scanpy_loomio._spec.facts import NUMERIC_KINDS

#: HDF5 attribute on loom datasets/groups describing how to restore their exact AnnData form (JSON).
CODEC_ATTR = "scanpy_loomio_codec"
#: Keys naming a tag's kind and version, as in anndata's element encoding.
ENCODING_TYPE = "encoding-type"
ENCODING_VERSION = "encoding-version"
#: The version every tag this release writes carries.
TAG_VERSION = "0.2.0"
#: The version given to the untagged form written by scanpy-loomio 0.1.0.
UNTAGGED_VERSION = "0.1.0"
#: Versions this release reads.
KNOWN_VERSIONS = frozenset({UNTAGGED_VERSION, TAG_VERSION})

MatrixFormat = Literal["dense", "csr", "csc"]
MATRIX_FORMATS: frozenset[str] = frozenset({"dense", "csr", "csc"})
ColumnKind = Literal["bool", "bytes", "categorical", "nullable-integer", "nullable-boolean", "string"]
COLUMN_KINDS: frozenset[str] = frozenset(
    {"bool", "bytes", "categorical", "nullable-integer", "nullable-boolean", "string"}
)


class TagError(ValueError):
    """A tag that is malformed (the message says what was found) or from a newer release (``newer``)."""

    def __init__(self, message: str, *, newer: bool = False) -> None:
        super().__init__(message)
        self.newer = newer


def version_key(version: str) -> tuple[int, ...]:
    """``"0.2.0"`` → ``(0, 2, 0)``; raises :class:`ValueError` for anything else."""
    parts = version.split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        msg = f"version {version!r} (expected major.minor.patch)"
        raise ValueError(msg)
    return tuple(int(p) for p in parts)


def check_version(kind: str, version: object, known: frozenset[str] = KNOWN_VERSIONS) -> str:
    """``version`` when this release reads it; :class:`TagError` otherwise (``newer`` when it is a later one)."""
    if not isinstance(version, str):
        raise TagError(f"{ENCODING_VERSION} {version!r} of {kind!r} (not a version string)")
    try:
        key = version_key(version)
    except ValueError as err:
        raise TagError(f"{ENCODING_VERSION} of {kind!r}: {err}") from None
    if version in known:
        return version
    newest = max(known, key=version_key)
    if key > version_key(newest):
        raise TagError(
            f"{kind!r} tag of {ENCODING_VERSION} {version}, written by a newer scanpy-loomio (this release reads "
            f"up to {newest})",
            newer=True,
        )
    raise TagError(f"{ENCODING_VERSION} {version} of {kind!r} (known: {', '.join(sorted(known))})")


def _load(text: Any) -> dict[str, Any]:
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    try:
        data = json.loads(str(text))
    except json.JSONDecodeError as err:
        raise TagError(f"not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise TagError(f"{type(data).__name__} instead of a JSON object")
    return data


def _kind_and_version(data: dict[str, Any], untagged_kind: str) -> tuple[str, str]:
    """The tag's kind and version; the 0.1.0 form has neither and is read as ``untagged_kind``."""
    if ENCODING_TYPE not in data:
        if "type" not in data:
            raise TagError(f"no {ENCODING_TYPE}")
        return untagged_kind, UNTAGGED_VERSION
    kind = data[ENCODING_TYPE]
    if not isinstance(kind, str):
        raise TagError(f"{ENCODING_TYPE} {kind!r} (not a string)")
    return kind, check_version(kind, data.get(ENCODING_VERSION))


def _dump(kind: str, fields: dict[str, Any]) -> str:
    return json.dumps({ENCODING_TYPE: kind, ENCODING_VERSION: TAG_VERSION, **fields}, ensure_ascii=False)


def _dtype_problem(dtype: object) -> str | None:
    try:
        parsed = np.dtype(dtype)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return f"dtype {dtype!r} (not a numpy dtype)"
    if parsed.kind not in NUMERIC_KINDS:
        return f"dtype {parsed} (not a number or bool dtype)"
    return None


# -- matrices and graphs ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MatrixTag:
    """An AnnData matrix (``X``, a layer, or a graph's matrix): its format, Python container and dtype."""

    format: MatrixFormat | None
    """``None`` only in hand-made tags: the reader's default format applies."""
    container: str
    """Class name: ``ndarray``, ``csr_matrix``, ``csc_matrix``, ``csr_array``, ``csc_array``."""
    dtype: str | None
    """The original numpy dtype (``bool`` for a matrix stored as ``int8``); ``None``: the stored one."""

    @classmethod
    def of(cls, matrix: Any) -> MatrixTag:
        """Describe ``matrix``.

        >>> MatrixTag.of(np.zeros((2, 2), dtype=bool))
        MatrixTag(format='dense', container='ndarray', dtype='bool')
        """
        if sparse.issparse(matrix):
            # scipy-stubs narrow issparse to an abstract base class without the attributes every container has
            return cls(matrix.format, type(matrix).__name__, str(matrix.dtype))  # type: ignore[attr-defined]
        return cls("dense", "ndarray", str(np.asarray(matrix).dtype))

    @property
    def is_sparse_array(self) -> bool:
        """Whether the container is one of scipy's sparse *array* classes (not the matrix classes)."""
        return self.container in ("csr_array", "csc_array")

    def to_json(self) -> str:
        """The tag's text."""
        return _dump("matrix", self._fields())

    def _fields(self) -> dict[str, Any]:
        fields = {"format": self.format, "container": self.container, "dtype": self.dtype}
        return {k: v for k, v in fields.items() if v is not None}

    @classmethod
    def from_fields(cls, data: dict[str, Any], *, untagged: bool) -> MatrixTag:
        """Build from a parsed tag's fields, checking each."""
        fmt = data.get("format")
        if fmt is not None and fmt not in MATRIX_FORMATS:
            raise TagError(f"format {fmt!r} (known: {', '.join(sorted(MATRIX_FORMATS))})")
        container = data.get("type" if untagged else "container")
        if not isinstance(container, str):
            raise TagError(f"type {container!r} (not a string)")
        dtype = data.get("dtype")
        problem = _dtype_problem(dtype) if dtype is not None else None
        if problem:
            raise TagError(problem)
        return cls(fmt, container, None if dtype is None else str(np.dtype(dtype)))


@dataclass(frozen=True)
class AbsentMatrixTag:
    """``adata.X`` was ``None``: ``/matrix`` exists only because loom requires it."""

    def to_json(self) -> str:
        """The tag's text."""
        return _dump("absent-matrix", {})


@dataclass(frozen=True)
class FilledLayerTag:
    """An all-zero layer written only because the target tool needs it; not part of the AnnData."""

    def to_json(self) -> str:
        """The tag's text."""
        return _dump("filled-layer", {})


LayerTag = MatrixTag | AbsentMatrixTag | FilledLayerTag
_UNTAGGED_LAYER_KINDS = {"absent": "absent-matrix", "filled": "filled-layer"}


def parse_matrix_tag(text: Any) -> LayerTag:
    """Parse the tag of ``/matrix`` or a layer.

    Raises
    ------
    TagError
        Malformed, or written by a newer release.
    """
    data = _load(text)
    untagged_type = data.get("type")
    kind, version = _kind_and_version(
        data, _UNTAGGED_LAYER_KINDS.get(untagged_type, "matrix") if isinstance(untagged_type, str) else "matrix"
    )
    untagged = version == UNTAGGED_VERSION
    if untagged and not isinstance(untagged_type, str):
        raise TagError(f"type {untagged_type!r} (not a string)")
    if kind == "absent-matrix":
        return AbsentMatrixTag()
    if kind == "filled-layer":
        return FilledLayerTag()
    if kind == "matrix":
        return MatrixTag.from_fields(data, untagged=untagged)
    raise TagError(f"{ENCODING_TYPE} {kind!r} (expected 'matrix', 'absent-matrix' or 'filled-layer')")


@dataclass(frozen=True)
class GraphTag:
    """An ``obsp``/``varp`` matrix stored as an edge list: the matrix it restores and the index bases of ``a``/``b``."""

    matrix: MatrixTag
    index_base: tuple[int, int] = (0, 0)

    def to_json(self) -> str:
        """The tag's text."""
        base = {"index-base": list(self.index_base)} if self.index_base != (0, 0) else {}
        return _dump("graph", {**self.matrix._fields(), **base})


def parse_graph_tag(text: Any) -> GraphTag:
    """Parse the tag of a ``col_graphs``/``row_graphs`` group.

    Raises
    ------
    TagError
        Malformed, or written by a newer release.
    """
    data = _load(text)
    kind, version = _kind_and_version(data, "graph")
    if kind != "graph":
        raise TagError(f"{ENCODING_TYPE} {kind!r} (expected 'graph')")
    untagged = version == UNTAGGED_VERSION
    if untagged and not isinstance(data.get("type"), str):
        raise TagError(f"type {data.get('type')!r} (not a string)")
    bases = data.get("index_base" if untagged else "index-base", [0, 0])
    if not (isinstance(bases, list) and len(bases) == 2 and all(b in (0, 1) for b in bases)):
        bases = [0, 0]  # written by hand: the loom default
    return GraphTag(MatrixTag.from_fields(data, untagged=untagged), (int(bases[0]), int(bases[1])))


# -- columns ---------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ColumnTag:
    """An ``obs``/``var`` column whose stored values differ from its AnnData form.

    >>> ColumnTag("categorical", ordered=True, categories_dtype="object").to_json()
    '{"encoding-type": "categorical", "encoding-version": "0.2.0", "ordered": true, "categories-dtype": "object"}'
    """

    kind: ColumnKind
    dtype: str | None = None
    """pandas dtype of a nullable or string column."""
    ordered: bool = False
    """Whether a categorical is ordered."""
    categories_dtype: str | None = None
    """dtype of a categorical's categories."""
    na: str | None = None
    """The missing value of an object string column: ``"nan"`` or ``"None"``."""

    def to_json(self) -> str:
        """The tag's text."""
        fields: dict[str, Any] = {}
        if self.dtype is not None:
            fields["dtype"] = self.dtype
        if self.kind == "categorical":
            fields["ordered"] = self.ordered
            fields["categories-dtype"] = self.categories_dtype
        if self.na is not None:
            fields["na"] = self.na
        return _dump(self.kind, fields)


def parse_column_tag(text: Any) -> ColumnTag:
    """Parse the tag of a column attribute.

    Raises
    ------
    TagError
        Malformed, or written by a newer release.
    """
    data = _load(text)
    untagged_kind = data.get("type")
    kind, version = _kind_and_version(data, untagged_kind if isinstance(untagged_kind, str) else "")
    if kind not in COLUMN_KINDS:
        raise TagError(f"column kind {kind!r} (known: {', '.join(sorted(COLUMN_KINDS))})")
    untagged = version == UNTAGGED_VERSION
    dtype, categories_dtype, na = (
        data.get("dtype"),
        data.get("categories_dtype" if untagged else "categories-dtype"),
        data.get("na"),
    )
    for name, value in (("dtype", dtype), ("categories dtype", categories_dtype), ("na", na)):
        if value is not None and not isinstance(value, str):
            raise TagError(f"{name} {value!r} (not a string)")
    if kind in ("nullable-integer", "nullable-boolean") and dtype is None:
        raise TagError(f"a {kind} column without its dtype")
    return ColumnTag(kind, dtype, bool(data.get("ordered", False)), categories_dtype, na)  # type: ignore[arg-type]


# -- reading and writing the attribute ------------------------------------------------------------------------------
def stored_tag_text(obj: Any) -> Any:
    """The raw text of ``obj``'s codec attribute, or ``None``."""
    return obj.attrs.get(CODEC_ATTR)


def write_tag(obj: Any, tag: MatrixTag | AbsentMatrixTag | FilledLayerTag | GraphTag | ColumnTag) -> None:
    """Set ``obj``'s codec attribute to ``tag``."""
    obj.attrs[CODEC_ATTR] = tag.to_json()


def layer_tag(obj: Any) -> LayerTag | None:
    """The tag of a matrix dataset, or ``None`` when it has none.

    Raises
    ------
    TagError
        Malformed or newer (the guards check every matrix tag before reading, so the reader rarely meets one).
    """
    text = stored_tag_text(obj)
    return None if text is None else parse_matrix_tag(text)


def graph_tag(obj: Any) -> GraphTag | None:
    """The tag of a graph group, or ``None`` when it has none (see :func:`layer_tag`)."""
    text = stored_tag_text(obj)
    return None if text is None else parse_graph_tag(text)


def column_tag(obj: Any) -> ColumnTag | None:
    """The tag of a column dataset; ``None`` when it has none or it is malformed (the values are read as plain loom).

    Raises
    ------
    TagError
        Only for a tag written by a newer release.
    """
    text = stored_tag_text(obj)
    if text is None:
        return None
    try:
        return parse_column_tag(text)
    except TagError as err:
        if err.newer:
            raise
        return None
