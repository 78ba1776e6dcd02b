"""Elements loom has no native place for, kept in anndata's own element encoding.

They live in one extra top-level group (:data:`~scanpy_loomio._record.record.SIDECAR_GROUP`), written and read with
``anndata.io.write_elem``/``read_elem`` so any anndata-aware tool can read them too.
"""

from __future__ import annotations

from typing import Any

import h5py
from anndata import io as anndata_io

from scanpy_loomio._compat import quiet_anndata
from scanpy_loomio._guards.boundary import hdf5_object
from scanpy_loomio._record.record import SIDECAR_GROUP

__all__ = ["can_encode", "read_elem", "sidecar_get", "sidecar_put", "write_elem"]


def read_elem(elem: Any) -> Any:
    """``anndata.io.read_elem``, without anndata 0.13's warning about a pandas option."""
    with quiet_anndata():
        return anndata_io.read_elem(elem)


def write_elem(store: Any, key: str, value: Any) -> None:
    """``anndata.io.write_elem``, without anndata 0.13's warning about a pandas option."""
    with quiet_anndata():
        anndata_io.write_elem(store, key, value)


def sidecar_put(file: h5py.File, path: str, value: Any) -> None:
    """Write ``value`` at ``/<sidecar>/<path>`` in anndata's element encoding."""
    parent_path, _, name = f"{SIDECAR_GROUP}/{path}".rpartition("/")
    parent = file.require_group(parent_path)
    write_elem(parent, name, value)


def sidecar_get(file: h5py.File, path: str) -> Any | None:
    """Read the element at ``/<sidecar>/<path>``, or ``None`` when it is absent."""
    full = f"{SIDECAR_GROUP}/{path}"
    if full not in file:
        return None
    with hdf5_object(f"/{full}"):
        return read_elem(file[full])


def can_encode(value: Any) -> bool:
    """Whether anndata's element encoding can store ``value`` and read it back (tried in memory, no file touched).

    Reading back matters: anndata writes ``bytes`` that are not UTF-8 into text datasets it then cannot read.
    """
    with h5py.File("probe.h5", "w", driver="core", backing_store=False) as probe:
        try:
            write_elem(probe, "x", value)
            read_elem(probe["x"])
        except Exception:  # noqa: BLE001 - anndata raises many types for unsupported values; all mean "no"
            return False
    return True
