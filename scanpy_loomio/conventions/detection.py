"""What detection looks at in a file, and what a convention says to look for: :class:`FileSummary`, :class:`Markers`.

Import these from :mod:`scanpy_loomio.conventions`.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

__all__ = ["MARKER_SCORE", "NAME_SCORE", "VALUE_MARKER_SCORE", "FileSummary", "Markers"]


_V = TypeVar("_V")


def _empty() -> Mapping[str, _V]:
    return MappingProxyType({})


@dataclass(frozen=True)
class FileSummary:
    """What detection looks at: names of things in a loom file, read without touching the matrix.

    Parameters
    ----------
    col_attrs, row_attrs
        Attribute names, including nested ones as ``group/name`` (``GRanges/rownames``).
    text_col_attrs, text_row_attrs
        The 1-D text attributes among them (the only ones that can hold names).
    layers
        Layer names.
    globals
        Global attributes (root HDF5 attributes and ``/attrs`` datasets) with text values as ``str``; other values
        as read.
    groups
        Every group path in the file below the root, without a leading ``/`` (``col_graphs/KNN``).
    """

    col_attrs: frozenset[str] = frozenset()
    row_attrs: frozenset[str] = frozenset()
    text_col_attrs: frozenset[str] = frozenset()
    text_row_attrs: frozenset[str] = frozenset()
    layers: frozenset[str] = frozenset()
    globals: Mapping[str, object] = field(default_factory=_empty)
    groups: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Markers:
    """Things in a file that point to the tool that wrote it; each one found adds to :meth:`Convention.score`.

    Names may be shell-style patterns (``*_cell_embeddings``).

    Parameters
    ----------
    col_attrs, row_attrs
        Column/row attribute names.
    layers
        Layer names.
    globals
        Global attribute names.
    global_values
        Global attribute name → text its value starts with (``CreatedWith`` → ``LoomExperiment``); a strong marker.
    groups
        Group paths (``col_edges``, ``row_attrs/GRanges``).
    """

    col_attrs: tuple[str, ...] = ()
    row_attrs: tuple[str, ...] = ()
    layers: tuple[str, ...] = ()
    globals: tuple[str, ...] = ()
    global_values: Mapping[str, str] = field(default_factory=_empty)
    groups: tuple[str, ...] = ()

    def __hash__(self) -> int:
        return hash(
            (self.col_attrs, self.row_attrs, self.layers, self.globals, self.groups, *self.global_values.items())
        )

    def found(self, summary: FileSummary) -> list[str]:
        """The markers present in a file, as readable strings."""
        out: list[str] = []
        for kind, patterns, names in (
            ("col_attrs", self.col_attrs, summary.col_attrs),
            ("row_attrs", self.row_attrs, summary.row_attrs),
            ("layers", self.layers, summary.layers),
            ("globals", self.globals, frozenset(summary.globals)),
            ("groups", self.groups, summary.groups),
        ):
            out += [f"{kind}/{p}" for p in patterns if any(fnmatch.fnmatchcase(n, p) for n in names)]
        for name, start in self.global_values.items():
            value = summary.globals.get(name)
            if isinstance(value, str) and value.startswith(start):
                out.append(f"globals/{name}={start}…")
        return out


#: Score of a convention's name attribute (any read candidate) present as text, per axis.
NAME_SCORE = 3
#: Score of each marker found; a marker on a global attribute's value counts :data:`VALUE_MARKER_SCORE`.
MARKER_SCORE = 1
VALUE_MARKER_SCORE = 3
