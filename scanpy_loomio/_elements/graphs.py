"""``obsp``/``varp`` ⇄ loom graphs (``/col_graphs/<name>/{a,b,w}``, edge lists)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import sparse

from scanpy_loomio._matrix.rows import DeflatedRows
from scanpy_loomio._matrix.stream import backed_sparse_format, stand_in
from scanpy_loomio._record.tags import GraphTag, MatrixTag, write_tag

if TYPE_CHECKING:
    from collections.abc import Iterator

    import h5py

#: Weight dtypes the loom spec allows.
WEIGHT_DTYPES = frozenset(np.dtype(t) for t in ("float16", "float32", "float64"))


def weights_exact_as_float(values: np.ndarray) -> bool:
    """Whether non-float weights survive a trip through float64."""
    if values.dtype in WEIGHT_DTYPES or values.dtype == bool:
        return True
    if values.dtype.kind not in "iu":
        return False
    return values.size == 0 or (np.abs(values.astype(np.float64)).max() < 2**53 and values.dtype.itemsize <= 8)


#: Edges converted at a time when writing a CSR or CSC graph: the int64 ``a``/``b`` copies of a whole kNN graph of a
#: million cells would take hundreds of megabytes.
GRAPH_BLOCK_EDGES = 2**18


@dataclass(frozen=True)
class CompressedGraph:
    """A CSR or CSC graph's arrays, in memory or on disk, and what reading it into memory gives (its tag).

    On disk (anndata's backed sparse datasets, as ``.h5ad`` conversion keeps them), ``indices`` and ``data`` are the
    file's datasets, read a block of edges at a time; ``indptr`` is read whole (one integer per cell or gene).
    """

    format: str
    shape: tuple[int, int]
    indptr: np.ndarray
    indices: Any
    data: Any
    tag: MatrixTag

    @property
    def n_edges(self) -> int:
        return int(self.indptr[-1])

    @property
    def dtype(self) -> np.dtype[Any]:
        return np.dtype(self.data.dtype)


def compressed_graph(matrix: Any) -> CompressedGraph | None:
    """The arrays of a CSR/CSC matrix or of anndata's backed CSR/CSC dataset; ``None`` for any other matrix.

    A :class:`CompressedGraph` comes back as it is (a write plan keeps the arrays it found).

    Examples
    --------
    >>> graph = compressed_graph(sparse.csr_matrix(np.eye(3, dtype=np.float32)))
    >>> graph.format, graph.n_edges, graph.tag.container
    ('csr', 3, 'csr_matrix')
    >>> compressed_graph(np.eye(3)) is None
    True
    """
    if isinstance(matrix, CompressedGraph):
        return matrix
    if sparse.issparse(matrix):
        # scipy-stubs narrow issparse to an abstract base class without the attributes CSR and CSC have
        fmt: str | None = matrix.format  # type: ignore[attr-defined]
        if fmt not in ("csr", "csc"):
            return None
        arrays = (matrix.indptr, matrix.indices, matrix.data)  # type: ignore[attr-defined]
        return CompressedGraph(fmt, matrix.shape, *arrays, MatrixTag.of(matrix))  # type: ignore[attr-defined]
    fmt = backed_sparse_format(matrix)
    if fmt is None:
        return None
    group = matrix.group
    shape = (int(matrix.shape[0]), int(matrix.shape[1]))
    indptr = np.asarray(group["indptr"][...])
    return CompressedGraph(fmt, shape, indptr, group["indices"], group["data"], MatrixTag.of(stand_in(matrix)))


def graph_weights_exact(graph: CompressedGraph) -> bool:
    """:func:`weights_exact_as_float` for a graph's weights, read a block at a time when they are integers."""
    if graph.dtype.kind not in "iu":
        return weights_exact_as_float(np.empty(0, dtype=graph.dtype))
    blocks = range(0, graph.n_edges, GRAPH_BLOCK_EDGES)
    return all(weights_exact_as_float(np.asarray(graph.data[lo : lo + GRAPH_BLOCK_EDGES])) for lo in blocks)


def write_graph(
    group: h5py.Group,
    name: str,
    matrix: Any,
    *,
    index_base: int | tuple[int, int] = 0,
    n_threads: int | None = None,
) -> None:
    """Write a square matrix as the edge list ``group/name/{a,b,w}``; ``index_base`` is 0 or 1, for ``a`` and ``b``.

    Edges are stored in the matrix's own order (row by row for CSR, column by column for CSC), CSR and CSC a block of
    rows or columns at a time; ``n_threads`` deflate them (default: every core).
    """
    base_a, base_b = (index_base, index_base) if isinstance(index_base, int) else index_base
    graph = compressed_graph(matrix)
    if graph is not None:
        n_edges, data_dtype, tag = graph.n_edges, graph.dtype, graph.tag
    else:
        is_sparse = sparse.issparse(matrix)
        coo = sparse.coo_matrix(matrix) if is_sparse else sparse.coo_matrix(np.asarray(matrix))
        if not is_sparse:
            keep = coo.data != 0
            coo = sparse.coo_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=coo.shape)
        n_edges, data_dtype, tag = coo.nnz, coo.data.dtype, MatrixTag.of(matrix)
    weight_dtype = data_dtype if data_dtype in WEIGHT_DTYPES else np.dtype(np.float64)
    g = group.create_group(name)
    columns = {
        key: DeflatedRows(
            g.create_dataset(
                key,
                shape=(n_edges,),
                dtype=dtype,
                maxshape=(None,),  # growable, as loompy makes them
                chunks=(max(1, min(n_edges, 65536)),),
                # kNN graphs are a large part of a file; gzip level 2 as for the matrices
                **({"compression": "gzip", "compression_opts": 2} if n_edges > 1024 else {}),
            ),
            n_threads=n_threads,
        )
        for key, dtype in (("a", np.int64), ("b", np.int64), ("w", weight_dtype))
    }
    blocks = _edge_blocks(graph) if graph is not None else [(coo.row, coo.col, coo.data)]
    for rows, cols, weights in blocks:
        columns["a"].append(rows.astype(np.int64) + base_a)
        columns["b"].append(cols.astype(np.int64) + base_b)
        columns["w"].append(weights.astype(weight_dtype, copy=False))
    for column in columns.values():
        column.close()
    write_tag(g, GraphTag(tag, (base_a, base_b)))


def _edge_blocks(graph: CompressedGraph) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """``(rows, columns, weights)`` of a CSR or CSC graph, about :data:`GRAPH_BLOCK_EDGES` at a time."""
    indptr = graph.indptr
    by_rows = graph.format == "csr"
    n_major = graph.shape[0] if by_rows else graph.shape[1]
    lo = 0
    while lo < n_major:
        # the next block ends where about GRAPH_BLOCK_EDGES more edges are reached (at least one row or column)
        hi = max(lo + 1, int(np.searchsorted(indptr, indptr[lo] + GRAPH_BLOCK_EDGES, side="right")) - 1)
        hi = min(hi, n_major)
        first, last = int(indptr[lo]), int(indptr[hi])
        major = np.repeat(np.arange(lo, hi, dtype=np.int64), np.diff(indptr[lo : hi + 1]))
        minor = np.asarray(graph.indices[first:last])
        weights = np.asarray(graph.data[first:last])
        yield (major, minor, weights) if by_rows else (minor, major, weights)
        lo = hi


def build_matrix(a: np.ndarray, b: np.ndarray, w: np.ndarray, n: int | tuple[int, int], kind: MatrixTag | None) -> Any:
    """Assemble an ``n × n`` matrix (or one of shape ``n``) from 0-based edges, in the recorded container if known."""
    fmt = (kind.format if kind else None) or "csr"
    dtype = np.dtype((kind.dtype if kind else None) or w.dtype)
    data = w.astype(dtype) if dtype != w.dtype else w
    coo = sparse.coo_matrix((data, (a, b)), shape=(n, n) if isinstance(n, int) else n)
    if fmt == "dense":
        return coo.toarray()
    out = coo.tocsc() if fmt == "csc" else coo.tocsr()
    out.sort_indices()
    if kind is not None and kind.is_sparse_array:
        return sparse.csc_array(out) if fmt == "csc" else sparse.csr_array(out)
    return out
