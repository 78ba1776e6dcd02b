"""The package's own record in a loom file: which attributes hold the indices, the index names, key mappings.

The record is one JSON text stored as the global attribute ``scanpy_loomio`` (``/attrs/scanpy_loomio`` in spec 3,
a root attribute in spec 2), so any HDF5 tool can read it. Values never live here: the loom datasets are the source
of truth, and exact dtypes are described by a codec attribute on each dataset (see :mod:`scanpy_loomio._codecs.columns`).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from scanpy_loomio.conventions import DEFAULT_CONVENTION

#: Name of the global attribute holding the record.
METADATA_KEY = "scanpy_loomio"
#: Version of the record's layout; a reader refuses records from a newer major version.
METADATA_VERSION = 1
#: Top-level HDF5 group holding elements loom has no native place for, in anndata's element encoding.
SIDECAR_GROUP = "scanpy_loomio"
#: HDF5 attribute on loom datasets/groups describing how to restore their exact AnnData form (JSON).
CODEC_ATTR = "scanpy_loomio_codec"
#: Global attributes the writer manages itself; uns keys with these names are kept in the sidecar.
RESERVED_GLOBALS = frozenset({"LOOM_SPEC_VERSION", "CreationDate", "last_modified", METADATA_KEY})


@dataclass
class AxisRecord:
    """Where one axis (``obs`` = loom columns, ``var`` = loom rows) is stored."""

    index_attr: str | None
    """Loom attribute holding the names (``None``: names were a range index and are not stored)."""
    index_name: str | None = None
    """``adata.obs.index.name``."""
    columns: list[tuple[str, str]] = field(default_factory=list)
    """``(AnnData column, loom attribute)`` in column order."""
    multi: dict[str, dict[str, Any]] = field(default_factory=dict)
    """``obsm``/``varm`` keys and where each lives."""
    graphs: dict[str, str] = field(default_factory=dict)
    """``obsp``/``varp`` keys and their graph names."""


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
    version: int = METADATA_VERSION

    def to_json(self) -> str:
        """Serialize for the global attribute."""
        return json.dumps({"encoder": METADATA_KEY, **asdict(self)}, ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str) -> Metadata:
        """Parse a stored record.

        Raises
        ------
        ValueError
            When the text is not a record of a version this package reads; the message says why.
        """
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, TypeError) as err:
            msg = f"not valid JSON ({err})"
            raise ValueError(msg) from None
        if not isinstance(data, dict) or data.get("encoder") != METADATA_KEY:
            msg = "not a scanpy_loomio record (no 'encoder' field)"
            raise ValueError(msg)
        version = data.get("version")
        if not isinstance(version, int) or version > METADATA_VERSION or version < 1:
            msg = f"record version {version!r}, this release reads versions 1 to {METADATA_VERSION}"
            raise ValueError(msg)
        try:
            obs, var = (
                AxisRecord(
                    index_attr=_opt_str(data[ax]["index_attr"]),
                    index_name=_opt_str(data[ax].get("index_name")),
                    columns=[(str(k), str(a)) for k, a in data[ax].get("columns", [])],
                    multi={str(k): dict(v) for k, v in data[ax].get("multi", {}).items()},
                    graphs={str(k): str(v) for k, v in data[ax].get("graphs", {}).items()},
                )
                for ax in ("obs", "var")
            )
            return cls(
                obs=obs,
                var=var,
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
            raise ValueError(msg) from None


def _opt_str(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        msg = f"expected a string or null, found {value!r}"
        raise TypeError(msg)
    return value


def dump_codec(codec: dict[str, Any]) -> str:
    """Serialize a codec description for :data:`CODEC_ATTR`."""
    return json.dumps(codec, ensure_ascii=False)


def load_codec(obj: Any) -> dict[str, Any] | None:
    """The codec description of an HDF5 dataset or group, or ``None`` when absent or unreadable."""
    raw = obj.attrs.get(CODEC_ATTR)
    if raw is None:
        return None
    if isinstance(raw, bytes):
        raw = raw.decode("utf-8", errors="replace")
    try:
        codec = json.loads(str(raw))
    except json.JSONDecodeError:
        return None
    return codec if isinstance(codec, dict) else None
