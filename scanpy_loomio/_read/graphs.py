"""Reading the cell and gene graphs: loom edge lists (``a``, ``b``, ``w``) as ``obsp``/``varp`` matrices."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any, Literal

import h5py
import numpy as np

from scanpy_loomio._elements.graphs import build_matrix
from scanpy_loomio._elements.sidecar import sidecar_get
from scanpy_loomio._errors import LoomFormatError, LoomReadWarning
from scanpy_loomio._guards import hdf5_object, read_values
from scanpy_loomio._matrix.rows import read_rows
from scanpy_loomio._read.base import ReaderBase
from scanpy_loomio._read.foreign import graph_index_base
from scanpy_loomio._record.record import AxisRecord
from scanpy_loomio._record.tags import GraphTag, MatrixTag, graph_tag
from scanpy_loomio._spec.facts import AXES

if TYPE_CHECKING:
    from collections.abc import Iterator

#: Edges read at a time when only those between some vertices are kept (a subset read): 6 MiB of int64 a, b, w.
GRAPH_BLOCK = 2**18


class GraphsReader(ReaderBase):
    """Reads the edge lists of ``/col_graphs``, ``/row_graphs`` and other tools' ``*_edges`` groups."""

    def read_graphs(
        self, axis: Literal["obs", "var"], n: int, record: AxisRecord | None, *, keep: np.ndarray | None = None
    ) -> dict[str, Any]:
        """The graphs of one axis by key; ``keep`` (a mask of the ``n`` vertices): only edges between those.

        With ``keep``, a graph is still ``n × n``; it holds what subsetting the whole graph to ``keep`` keeps.
        """
        out: dict[str, Any] = {}
        for key, where, g in self._graph_groups(axis, record):
            with hdf5_object(g):
                out[key] = self._read_graph(where, g, n, keep)
        out |= self._sidecar_graphs(axis, n, record)
        if record:
            order = list(record.graphs)
            out = {k: out[k] for k in order if k in out} | {k: v for k, v in out.items() if k not in order}
        return out

    def graph_parts(
        self, axis: Literal["obs", "var"], n: int, record: AxisRecord | None
    ) -> Iterator[tuple[str, Iterator[Any]]]:
        """The graphs :meth:`read_graphs` reads, each as parts to store one after the other (bounded memory).

        A CSR (CSC) graph whose edges lie in row (column) order comes in blocks of whole rows (columns) built from
        about :data:`GRAPH_BLOCK` edges each: stacked, they are the matrix :meth:`read_graphs` builds. Any other
        graph comes whole, as one part.
        """
        for key, where, g in self._graph_groups(axis, record):
            yield key, self._graph_blocks(where, g, n)
        for key, value in self._sidecar_graphs(axis, n, record).items():
            yield key, iter([value])

    def _graph_groups(self, axis: Literal["obs", "var"], record: AxisRecord | None) -> Iterator[tuple[str, str, Any]]:
        """``(key, HDF5 path, group)`` of each edge list of one axis, keyed as ``obsp``/``varp`` are."""
        loom = AXES[axis]
        recorded = {graph: key for key, graph in record.graphs.items() if graph} if record else {}
        for group_name in (f"{loom}_graphs", f"{loom}_edges"):
            group = self.file.get(group_name)
            if group is None or not isinstance(group, h5py.Group):
                continue
            for name, g in group.items():
                if isinstance(g, h5py.Group):
                    key = recorded.get(name, name) if group_name.endswith("graphs") else name
                    yield key, f"/{group_name}/{name}", g

    def _sidecar_graphs(self, axis: Literal["obs", "var"], n: int, record: AxisRecord | None) -> dict[str, Any]:
        """The graphs kept in anndata's encoding beside the loom elements (weights loom cannot hold)."""
        out = {}
        for key, graph in (record.graphs if record else {}).items():
            if not graph:
                value = self._aligned(sidecar_get(self.file, f"{axis}p/{key}"), n, f"{axis}p[{key!r}]")
                if value is not None:
                    out[key] = value
        return out

    def _graph_blocks(self, where: str, g: h5py.Group, n: int) -> Iterator[Any]:
        """The parts of one graph (see :meth:`graph_parts`): blocks of whole rows or columns, or the whole matrix."""
        with hdf5_object(g):
            edges = [g.get(x) for x in "abw"]
            codec = graph_tag(g)
            fmt = (codec.matrix.format if codec else None) or "csr"
            total = edges[0].shape[0] if isinstance(edges[0], h5py.Dataset) and edges[0].ndim == 1 else -1
            if (
                n == 0
                or fmt not in ("csr", "csc")
                or not all(isinstance(d, h5py.Dataset) and d.shape == (total,) for d in edges)
            ):
                yield self._read_graph(where, g, n)
                return
            blocks = range(0, total, GRAPH_BLOCK)
            a_ends, b_ends = (None, None) if codec else (_extremes(d, blocks) for d in edges[:2])
            bases = self._bases(where, codec, n, a_ends, b_ends, stacklevel=6)
            major = 0 if fmt == "csr" else 1  # the index the matrix is compressed along: a for CSR, b for CSC
            if not self._in_order(where, edges[major], "ab"[major], n, bases[major], blocks):
                yield self._read_graph(where, g, n)
                return
        kind = codec.matrix if codec else None
        done = 0  # rows (columns) of the matrix given so far
        carried = [np.empty(0, dtype=np.int64), np.empty(0, dtype=np.int64), edges[2][:0]]
        for start in blocks:
            a, b, w = self._edge_block(where, g, edges, start, n, bases)
            a, b, w = (np.concatenate([old, new]) for old, new in zip(carried, (a, b, w), strict=True))
            index = (a, b)[major]
            last = start + GRAPH_BLOCK >= total
            # the block's last row (column) may go on in the next block: it is carried over unless this is the end
            stop = n if last else int(index[-1])
            cut = index.shape[0] if last else int(np.searchsorted(index, stop))
            # a part with no edges is not given on its own (a first part sets the chunks the whole graph is stored in)
            if stop > done and (cut > 0 or last):
                part = _graph_part(a[:cut], b[:cut], w[:cut], (done, stop), n, major, kind)
                if done == 0 and total >= np.iinfo(np.int32).max:  # appended parts may take indptr past int32
                    part.indptr = part.indptr.astype(np.int64)
                yield part
                done = stop
            carried = [a[cut:], b[cut:], w[cut:]]
        if total == 0:
            yield _graph_part(carried[0], carried[1], carried[2], (0, n), n, major, kind)

    def _in_order(self, where: str, dset: h5py.Dataset, name: str, n: int, base: int, blocks: range) -> bool:
        """Whether the vertex indices of ``dset`` never decrease (checked, as read, a block at a time)."""
        previous = -1
        for start in blocks:
            values = self._graph_index(where, dset[start : start + GRAPH_BLOCK], name, n, base)
            if values.size:
                if int(values[0]) < previous or bool(np.any(np.diff(values) < 0)):
                    return False
                previous = int(values[-1])
        return True

    def _read_graph(self, where: str, g: h5py.Group, n: int, keep: np.ndarray | None = None) -> Any:
        missing = [x for x in "abw" if x not in g]
        if missing:
            raise self.error(where, f"no {', '.join(missing)}", "datasets a, b and w (an edge list)")
        edges = [g[x] for x in "abw"]
        if keep is not None and all(isinstance(d, h5py.Dataset) and d.shape == (edges[0].shape[0],) for d in edges):
            try:
                return self._kept_edges(where, g, edges, n, keep)
            except LoomFormatError:
                pass  # read whole below, which names the problem as a whole read does
        a, b, w = (read_values(d) for d in edges)
        if not (a.shape == b.shape == w.shape) or a.ndim != 1:
            raise self.error(
                where, f"a, b, w of shapes {a.shape}, {b.shape}, {w.shape}", "three 1-D datasets of one length"
            )
        codec = graph_tag(g)
        bases = self._bases(where, codec, n, a, b, stacklevel=7)
        a, b = self._vertices(where, a, b, n, bases)
        if keep is not None:
            between = keep[a] & keep[b]
            a, b, w = a[between], b[between], w[between]
        return _graph(a, b, w, n, codec)

    def _kept_edges(self, where: str, g: h5py.Group, edges: list[h5py.Dataset], n: int, keep: np.ndarray) -> Any:
        """The edges between the ``keep`` vertices, read a block at a time: memory bounded by what is kept."""
        total = edges[0].shape[0]
        blocks = range(0, total, GRAPH_BLOCK)
        codec = graph_tag(g)
        # another tool's graph: its base follows from the smallest and largest index, found block by block
        a_ends, b_ends = (None, None) if codec else (_extremes(d, blocks) for d in edges[:2])
        bases = self._bases(where, codec, n, a_ends, b_ends, stacklevel=8)
        kept: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for start in blocks:
            a, b, w = self._edge_block(where, g, edges, start, n, bases)
            between = keep[a] & keep[b]
            kept.append((a[between], b[between], w[between]))
        a, b, w = (np.concatenate([part[i] for part in kept]) if kept else edges[i][:0] for i in range(3))
        return _graph(a, b, w, n, codec)

    def _bases(
        self, where: str, codec: GraphTag | None, n: int, a: np.ndarray | None, b: np.ndarray | None, *, stacklevel: int
    ) -> tuple[int, int]:
        """The first vertex index of ``a`` and ``b``: recorded, else the convention's unless the values rule it out.

        ``a``/``b``: the index values, or any array with their smallest and largest (only read without a record).
        """
        if codec is not None:
            return codec.index_base
        bases = [0, 0]
        for i, (values, name) in enumerate(((a, "a"), (b, "b"))):
            assert values is not None  # given whenever there is no record
            bases[i], note = graph_index_base(values, n, self.convention.graph_index_base[i], f"{where}/{name}")
            if note:
                warnings.warn(f"{self.path}: {note}", LoomReadWarning, stacklevel=stacklevel)
        return bases[0], bases[1]

    def _edge_block(
        self, where: str, g: h5py.Group, edges: list[h5py.Dataset], start: int, n: int, bases: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Edges ``start`` to ``start + GRAPH_BLOCK`` of ``edges`` (``a``, ``b``, ``w``), vertices 0-based and checked."""
        with hdf5_object(g):
            a, b, w = (_rows(d, start, start + GRAPH_BLOCK) for d in edges)
        a, b = self._vertices(where, a, b, n, bases)
        return a, b, w

    def _vertices(
        self, where: str, a: np.ndarray, b: np.ndarray, n: int, bases: tuple[int, int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """``a`` and ``b`` as checked 0-based vertex indices."""
        return self._graph_index(where, a, "a", n, bases[0]), self._graph_index(where, b, "b", n, bases[1])

    def _graph_index(self, where: str, values: np.ndarray, name: str, n: int, base: int) -> np.ndarray:
        if values.dtype.kind == "f":
            if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
                raise self.error(f"{where}/{name}", "non-integer or NaN vertex indices", "whole numbers")
        elif values.dtype.kind not in "iu":
            raise self.error(f"{where}/{name}", f"dtype {values.dtype}", "integer vertex indices")
        out: np.ndarray = values.astype(np.int64) - base
        lowest, highest = (int(np.min(out)), int(np.max(out))) if out.size else (0, -1)
        if lowest < 0 or highest >= n:
            raise self.error(
                f"{where}/{name}",
                f"vertex indices from {lowest + base} to {highest + base}",
                f"{base} to {n - 1 + base} for {n} vertices",
            )
        return out


def _extremes(dset: h5py.Dataset, blocks: range) -> np.ndarray:
    """The smallest and largest value of each block of an index array, read a block at a time."""
    ends = []
    for start in blocks:
        part = _rows(dset, start, start + GRAPH_BLOCK)
        if part.size:
            ends += [part.min(), part.max()]
    return np.array(ends)


def _rows(dset: h5py.Dataset, start: int, stop: int) -> np.ndarray:
    """``dset[start:stop]``, inflated by libdeflate where it is installed."""
    values = read_rows(dset, start, stop)
    return dset[start:stop] if values is None else values


def _graph(a: np.ndarray, b: np.ndarray, w: np.ndarray, n: int, codec: GraphTag | None) -> Any:
    """The ``n × n`` matrix of 0-based edges; another tool's integer weights become float32."""
    return build_matrix(a, b, _weights(w, codec is None), n, codec.matrix if codec else None)


def _graph_part(
    a: np.ndarray,
    b: np.ndarray,
    w: np.ndarray,
    span: tuple[int, int],
    n: int,
    major: int,
    kind: MatrixTag | None,
) -> Any:
    """Rows (``major`` 0) or columns (1) ``span`` of an ``n × n`` graph, from its edges there (0-based)."""
    lo, hi = span
    if major == 0:
        return build_matrix(a - lo, b, _weights(w, kind is None), (hi - lo, n), kind)
    return build_matrix(a, b - lo, _weights(w, kind is None), (n, hi - lo), kind)


def _weights(w: np.ndarray, foreign: bool) -> np.ndarray:
    """Another tool's integer weights become float32 (the loom spec's weights are floats); recorded ones stay as they are."""
    return w.astype(np.float32) if foreign and w.dtype.kind not in "f" else w


__all__ = ["GraphsReader"]
