"""Rules of the loom format that the reader enforces and the validator reports, each written once.

Each rule yields :class:`Violation` entries. The reader raises the first one (:meth:`Violation.error`);
``validate_loom`` collects them all as problems (:meth:`Violation.message`). The validator checks more than these
(dtypes, text encodings, vertex ranges), where the reader is deliberately lenient.

>>> import h5py, numpy as np
>>> with h5py.File("rules.loom", "w") as f:
...     _ = f.create_dataset("matrix", data=np.zeros((3, 2)))
...     _ = f.create_dataset("layers", data=np.zeros(2))
...     [v.message() for v in group_violations(f)]
['a Dataset; expected a group']
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py

from scanpy_loomio._errors import LoomFormatError
from scanpy_loomio._spec.facts import NUMERIC_KINDS

#: Groups that must be groups when present (the old ``*_edges`` graph groups included).
GROUPS = ("col_attrs", "row_attrs", "layers", "col_graphs", "row_graphs", "col_edges", "row_edges")
#: Groups of graphs, current and old.
GRAPH_GROUP_NAMES = ("col_graphs", "row_graphs", "col_edges", "row_edges")


@dataclass(frozen=True)
class Violation:
    """One object that breaks a rule."""

    where: str
    """The HDF5 path."""
    found: str
    expected: str

    def message(self) -> str:
        """As a validation problem: what was found and what was expected."""
        return f"{self.found}; expected {self.expected}"

    def error(self, path: Path) -> LoomFormatError:
        """As a read error, naming the file and the object."""
        return LoomFormatError(f"{path}: {self.where}: found {self.found}; expected {self.expected}.")


def _kind(obj: object) -> str:
    return f"a {type(obj).__name__}"


def group_violations(file: h5py.File) -> Iterator[Violation]:
    """The loom groups that exist but are not groups."""
    for name in GROUPS:
        obj = file.get(name)
        if obj is not None and not isinstance(obj, h5py.Group):
            yield Violation(f"/{name}", _kind(obj), "a group")


def layer_violations(file: h5py.File, shape: tuple[int, ...] | None = None) -> Iterator[Violation]:
    """Layers that are not datasets, or (given the shape of ``/matrix``) not of its shape."""
    layers = file.get("layers")
    if not isinstance(layers, h5py.Group):
        return
    for name, obj in layers.items():
        where = f"/layers/{name}"
        if not isinstance(obj, h5py.Dataset):
            yield Violation(where, _kind(obj), "a 2-D dataset (a layer)")
        elif shape is not None and obj.shape != shape:
            yield Violation(where, f"shape {obj.shape}", f"the shape of /matrix {shape}")


def edge_list_violations(where: str, graph: h5py.Group) -> Iterator[Violation]:
    """Parts ``a``, ``b``, ``w`` of a graph that are not 1-D datasets of numbers (missing ones are not looked at)."""
    for part in ("a", "b", "w"):
        obj = graph.get(part)
        if obj is None:
            continue
        if isinstance(obj, h5py.Dataset) and obj.ndim == 1 and obj.dtype.kind in NUMERIC_KINDS:
            continue
        found = f"a {obj.ndim}-D dataset of dtype {obj.dtype}" if isinstance(obj, h5py.Dataset) else _kind(obj)
        yield Violation(f"{where}/{part}", found, "a 1-D dataset of numbers (an edge list column)")


def graph_violations(file: h5py.File) -> Iterator[Violation]:
    """:func:`edge_list_violations` of every graph in the file (entries that are not groups are not graphs)."""
    for group_name in GRAPH_GROUP_NAMES:
        group = file.get(group_name)
        if not isinstance(group, h5py.Group):
            continue
        for name, graph in group.items():
            if isinstance(graph, h5py.Group):
                yield from edge_list_violations(f"/{group_name}/{name}", graph)


def raise_first(violations: Iterator[Violation], path: Path) -> None:
    """Raise the first violation as a read error.

    Raises
    ------
    LoomFormatError
        Naming the file, the object, what was found and what was expected.
    """
    for violation in violations:
        raise violation.error(path)
