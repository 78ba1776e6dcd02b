"""One dataset under several names: the name attributes of every reader, as HDF5 hard links.

Readers look for cell and gene names under different attributes (``CellID``/``Gene``, ``colnames``/``rownames``,
``cell_names``/``gene_names``). A convention with :attr:`~scanpy_loomio.conventions.Convention.link_names` writes the
names once, under its first name attribute, and gives that dataset its other names as hard links: every name is the
same HDF5 object, so nothing is stored twice, and every reader finds the name it wants.

Reading: the record lists the links among the attributes written for tools only (``tool_attrs``), so they are not
read as columns; without the record, :func:`other_names` recognizes them as the same HDF5 object as the names.

Examples
--------
>>> import h5py, numpy as np
>>> from scanpy_loomio._elements.aliases import link_names, other_names
>>> with h5py.File("aliases.h5", "w", driver="core", backing_store=False) as f:
...     f["CellID"] = np.array([b"a", b"b"])
...     link_names(f, "CellID", ("colnames", "cell_names"))
...     sorted(other_names(dict(f.items()), "CellID"))
['cell_names', 'colnames']
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Literal

import h5py

from scanpy_loomio.conventions import Convention

__all__ = ["link_names", "linked_names", "linked_paths", "other_names"]

Axis = Literal["obs", "var"]
_GROUP = {"obs": "col_attrs", "var": "row_attrs"}


def linked_names(convention: Convention, axis: Axis) -> tuple[str, ...]:
    """The name attributes written as hard links to the names for ``axis`` (none unless the convention links them)."""
    return convention.names(axis)[1:] if convention.link_names else ()


def linked_paths(convention: Convention) -> list[str]:
    """The links as ``col_attrs/<name>``/``row_attrs/<name>``, as the record lists attributes written for tools."""
    return [f"{_GROUP[axis]}/{name}" for axis in ("obs", "var") for name in linked_names(convention, axis)]


def link_names(group: h5py.Group, target: str, names: Iterable[str]) -> None:
    """Give the dataset ``group[target]`` the further ``names`` (hard links: the same object, stored once)."""
    for name in names:
        group[name] = group[target]


def other_names(datasets: Mapping[str, h5py.Dataset], name: str) -> set[str]:
    """The other names under which ``datasets`` holds the very HDF5 object ``datasets[name]`` (its hard links)."""
    target = datasets[name]
    return {other for other, dset in datasets.items() if other != name and dset == target}
