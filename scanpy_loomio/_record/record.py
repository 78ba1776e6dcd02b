"""The package's own record in a loom file: which attributes hold the indices, the index names, key mappings.

The record is one JSON text stored as the global attribute ``scanpy_loomio`` (``/attrs/scanpy_loomio`` in spec 3,
a root attribute in spec 2), so any HDF5 tool can read it. Values never live here: the loom datasets are the source
of truth, and exact dtypes are described by a tag on each dataset (:mod:`scanpy_loomio._record.tags`).

This module is the only one that reads or writes the record's JSON: :meth:`Metadata.from_json` parses it into the
dataclasses below and checks every entry, so the rest of the package works with typed objects.

>>> record = Metadata(obs=AxisRecord("CellID"), var=AxisRecord("Gene"))
>>> Metadata.from_json(record.to_json()) == record
True
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from scanpy_loomio._record.tags import ENCODING_TYPE, ENCODING_VERSION, TagError, check_version
from scanpy_loomio.conventions import DEFAULT_CONVENTION

#: Name of the global attribute holding the record.
METADATA_KEY = "scanpy_loomio"
#: ``encoding-type`` of the record.
RECORD_TYPE = "scanpy_loomio-record"
#: ``encoding-version`` this release writes.
RECORD_VERSION = "0.2.0"
#: Versions this release reads: ``0.1.0`` is the record of scanpy-loomio 0.1.0 (``"encoder"``/``"version": 1``).
RECORD_VERSIONS = frozenset({"0.1.0", RECORD_VERSION})
#: Top-level HDF5 group holding elements loom has no native place for, in anndata's element encoding.
SIDECAR_GROUP = "scanpy_loomio"
#: Global attributes the writer manages itself; uns keys with these names are kept in the sidecar.
RESERVED_GLOBALS = frozenset({"LOOM_SPEC_VERSION", "CreationDate", "last_modified", METADATA_KEY})

Storage = Literal["matrix", "columns", "compound", "pair", "sidecar"]
STORAGES: tuple[str, ...] = ("matrix", "columns", "compound", "pair", "sidecar")
#: Original dtypes a record may name for an embedding stored in another dtype.
EMBEDDING_DTYPES = frozenset(
    {"bool", "float16", "float32", "float64", *(f"{u}int{b}" for u in ("", "u") for b in (8, 16, 32, 64))}
)


@dataclass(frozen=True)
class EmbeddingEntry:
    """Where one ``obsm``/``varm`` entry lives."""

    storage: Storage
    """``"matrix"`` (one attribute), ``"columns"`` (one attribute per component), ``"compound"`` (one record
    attribute, a field per component), ``"pair"`` (one field of each of two record attributes, SCope's
    ``Embeddings_X``/``Embeddings_Y``) or ``"sidecar"``."""
    attrs: tuple[str, ...] = ()
    """Loom attribute names used (none for the sidecar)."""
    ndim: int | None = None
    """Dimensions of the stored value (not for the sidecar)."""
    dtype: str | None = None
    """Original dtype when the stored one differs (bool stored as uint8, float32 in SCope's float64 records)."""
    fields: tuple[str, ...] = ()
    """Record field names of the ``"compound"`` and ``"pair"`` storages, in component order."""
    shape: tuple[int, ...] | None = None
    """Trailing shape of an array of more than two dimensions that was flattened to components."""
    store: str | None = None
    """HDF5 path of the 2-D dataset holding the values when the attributes are virtual views of it."""
    invalid: str | None = field(default=None, compare=False)
    """What was malformed in the stored entry (then it is unusable)."""

    def problem(self) -> str | None:
        """What makes this entry unusable, or ``None``."""
        attrs, fields = self.attrs, self.fields
        if self.storage not in STORAGES:
            return f"has storage {self.storage!r}, expected 'matrix', 'columns', 'compound', 'pair' or 'sidecar'"
        if self.invalid:
            return self.invalid
        if self.storage == "matrix" and len(attrs) != 1:
            return f"is stored as one attribute but lists {len(attrs)}"
        if self.storage == "columns" and not attrs:
            return "is stored as columns but lists none"
        if self.storage == "pair" and (len(attrs) != 2 or len(fields) != 1):
            return f"is stored as one field of two records but lists {list(attrs)!r} and fields {list(fields)!r}"
        if self.storage == "compound" and (len(attrs) != 1 or not fields):
            return f"is stored as one record attribute but lists {len(attrs)} attributes and fields {list(fields)!r}"
        if self.dtype is not None and self.dtype not in EMBEDDING_DTYPES:
            return f"has dtype {self.dtype!r}, expected 'bool', a numeric dtype or none"
        return None

    def to_dict(self) -> dict[str, Any]:
        """The entry as stored in the record."""
        out: dict[str, Any] = {"storage": self.storage, "attrs": list(self.attrs)}
        optional = {
            "ndim": self.ndim,
            "dtype": self.dtype,
            "fields": list(self.fields) or None,
            "shape": None if self.shape is None else list(self.shape),
            "store": self.store,
        }
        return out | {k: v for k, v in optional.items() if v is not None}

    @classmethod
    def from_dict(cls, entry: Any) -> EmbeddingEntry:
        """Parse a stored entry; what is malformed is kept in :attr:`invalid` for :meth:`problem` to report."""
        if not isinstance(entry, dict):
            msg = f"expected a mapping, found {entry!r}"
            raise TypeError(msg)
        attrs, fields, shape = entry.get("attrs", []), entry.get("fields", []), entry.get("shape")
        invalid = None
        if not isinstance(attrs, list) or not all(isinstance(a, str) for a in attrs):
            invalid, attrs = f"lists attributes {attrs!r}, expected a list of names", []
        if not isinstance(fields, list) or not all(isinstance(f, str) for f in fields):
            invalid, fields = invalid or f"lists fields {fields!r}, expected a list of names", []
        if shape is not None and (not isinstance(shape, list) or not all(isinstance(s, int) and s >= 0 for s in shape)):
            invalid, shape = invalid or f"has shape {shape!r}, expected a list of sizes", None
        ndim, dtype, store = entry.get("ndim"), entry.get("dtype"), entry.get("store")
        if store is not None and not isinstance(store, str):
            invalid, store = invalid or f"has store {store!r}, expected an HDF5 path", None
        return cls(
            storage=entry.get("storage"),  # type: ignore[arg-type]  # checked by problem()
            attrs=tuple(attrs),
            ndim=ndim if isinstance(ndim, int) else None,
            dtype=dtype if dtype is None else str(dtype),
            fields=tuple(fields),
            shape=None if shape is None else tuple(shape),
            store=store,
            invalid=invalid,
        )


@dataclass
class AxisRecord:
    """Where one axis (``obs`` = loom columns, ``var`` = loom rows) is stored."""

    index_attr: str | None
    """Loom attribute holding the names (``None``: names were a range index and are not stored)."""
    index_name: str | None = None
    """``adata.obs.index.name``."""
    columns: list[tuple[str, str]] = field(default_factory=list)
    """``(AnnData column, loom attribute)`` in column order."""
    multi: dict[str, EmbeddingEntry] = field(default_factory=dict)
    """``obsm``/``varm`` keys and where each lives."""
    graphs: dict[str, str] = field(default_factory=dict)
    """``obsp``/``varp`` keys and their graph names (``""``: in the sidecar)."""
    empty_text: dict[str, Any] = field(default_factory=dict)
    """Axes of no entries only: whether the names (``"names"``) and each text column (``"columns"``) were pandas'
    ``str`` or ``object``, which pandas otherwise infers from the values (``{}``: not recorded)."""

    def to_dict(self) -> dict[str, Any]:
        """The axis as stored in the record."""
        out = asdict(self)
        out["columns"] = [list(pair) for pair in self.columns]
        out["multi"] = {k: v.to_dict() for k, v in self.multi.items()}
        if not self.empty_text:
            del out["empty_text"]  # files of cells and genes keep the record as before
        return out

    @classmethod
    def from_dict(cls, data: Any) -> AxisRecord:
        """Parse a stored axis."""
        multi = {str(k): EmbeddingEntry.from_dict(v) for k, v in data.get("multi", {}).items()}
        return cls(
            index_attr=_opt_str(data["index_attr"]),
            index_name=_opt_str(data.get("index_name")),
            columns=[(str(k), str(a)) for k, a in data.get("columns", [])],
            multi=multi,
            graphs={str(k): str(v) for k, v in data.get("graphs", {}).items()},
            empty_text=_empty_text(data.get("empty_text")),
        )

    def problem(self, axis: str) -> str | None:
        """What makes an entry of this axis unusable, or ``None``."""
        for key, entry in self.multi.items():
            problem = entry.problem()
            if problem:
                return f"{axis}m[{key!r}] {problem}"
        return None


@dataclass
class Metadata:
    """The whole record."""

    obs: AxisRecord
    var: AxisRecord
    convention: str = DEFAULT_CONVENTION
    layers: list[tuple[str, str]] = field(default_factory=list)
    """``(AnnData layer key, loom layer name)`` in order."""
    uns_keys: list[str] = field(default_factory=list)
    """All ``uns`` keys, in order (values live in global attributes or the sidecar)."""
    uns_globals: dict[str, str] = field(default_factory=dict)
    """``uns`` keys stored as loom global attributes, with a type tag restoring their Python type."""
    uns_record: dict[str, list] = field(default_factory=dict)
    """``uns`` values kept in this record, as ``[type tag, value]`` (keys named like a managed global attribute)."""
    raw: bool = False
    writer: dict[str, str] = field(default_factory=dict)
    tool_globals: list[str] = field(default_factory=list)
    """Global attributes written for the target tool (not ``uns``), such as LoomExperiment's ``ReducedDimsName1``."""
    tool_attrs: list[str] = field(default_factory=list)
    """Attributes written for the target tool only, whose values the record restores from others (SCope's
    ``col_attrs/Clusterings``); reading passes over them."""
    version: str = RECORD_VERSION
    """The ``encoding-version`` the record was read with (always written as :data:`RECORD_VERSION`)."""

    def to_json(self) -> str:
        """Serialize for the global attribute."""
        body = {
            "convention": self.convention,
            "obs": self.obs.to_dict(),
            "var": self.var.to_dict(),
            "layers": [list(pair) for pair in self.layers],
            "uns_keys": self.uns_keys,
            "uns_globals": self.uns_globals,
            "uns_record": self.uns_record,
            "raw": self.raw,
            "writer": self.writer,
            "tool_globals": self.tool_globals,
            "tool_attrs": self.tool_attrs,
        }
        header = {ENCODING_TYPE: RECORD_TYPE, ENCODING_VERSION: RECORD_VERSION}
        return json.dumps(header | body, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Metadata:
        """Parse a stored record.

        Raises
        ------
        TagError
            When the text is not a record of a version this package reads; the message says why, and
            ``newer`` is set for a record written by a later release.
        """
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, TypeError) as err:
            msg = f"not valid JSON ({err})"
            raise TagError(msg) from None
        if not isinstance(data, dict):
            raise TagError("not a scanpy_loomio record (not a JSON object)")
        if data.get(ENCODING_TYPE) == RECORD_TYPE:
            version = check_version("record", data.get(ENCODING_VERSION), RECORD_VERSIONS)
        elif data.get("encoder") == METADATA_KEY:  # the record of scanpy-loomio 0.1.0
            old_version = data.get("version")
            if old_version != 1:
                newer = isinstance(old_version, int) and old_version > 1
                reads = "written by a newer scanpy-loomio" if newer else "this release reads version 1"
                raise TagError(f"record version {old_version!r}, {reads}", newer=newer)
            version = "0.1.0"
        else:
            raise TagError(f"not a scanpy_loomio record (no {ENCODING_TYPE!r} field)")
        try:
            record = cls(
                obs=AxisRecord.from_dict(data["obs"]),
                var=AxisRecord.from_dict(data["var"]),
                convention=str(data.get("convention", DEFAULT_CONVENTION)),
                layers=[(str(k), str(n)) for k, n in data.get("layers", [])],
                uns_keys=[str(k) for k in data.get("uns_keys", [])],
                uns_globals={str(k): str(v) for k, v in data.get("uns_globals", {}).items()},
                uns_record={str(k): [str(v[0]), v[1]] for k, v in data.get("uns_record", {}).items()},
                raw=bool(data.get("raw", False)),
                writer={str(k): str(v) for k, v in data.get("writer", {}).items()},
                tool_globals=[str(k) for k in data.get("tool_globals", [])],
                tool_attrs=[str(k) for k in data.get("tool_attrs", [])],
                version=version,
            )
        except (KeyError, IndexError, TypeError, ValueError, AttributeError) as err:
            msg = f"malformed record ({type(err).__name__}: {err})"
            raise TagError(msg) from None
        return record

    def problem(self) -> str | None:
        """What makes an entry unusable (the file is then read as plain loom), or ``None``."""
        return self.obs.problem("obs") or self.var.problem("var")


def _empty_text(value: Any) -> dict[str, Any]:
    """The recorded text types of an axis of no entries; anything else (another tool's edits) is left out."""
    if not isinstance(value, dict):
        return {}
    kinds = ("str", "object")
    out: dict[str, Any] = {}
    if value.get("names") in kinds:
        out["names"] = value["names"]
    columns = value.get("columns")
    if isinstance(columns, dict):
        out["columns"] = {str(k): v for k, v in columns.items() if v in kinds}
    return out


def _opt_str(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        msg = f"expected a string or null, found {value!r}"
        raise TypeError(msg)
    return value
