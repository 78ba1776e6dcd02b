"""``obsp``/``varp`` ⇄ loom graphs (``/col_graphs/<name>/{a,b,w}``, edge lists)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import sparse

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


def write_graph(group: h5py.Group, name: str, matrix: Any, *, index_base: int | tuple[int, int] = 0) -> None:
    """Write a square matrix as the edge list ``group/name/{a,b,w}``; ``index_base`` is 0 or 1, for ``a`` and ``b``.

    Edges are stored in the matrix's own order (row by row for CSR, column by column for CSC), CSR and CSC a block of
    rows or columns at a time.
    """
    base_a, base_b = (index_base, index_base) if isinstance(index_base, int) else index_base
    is_sparse = sparse.issparse(matrix)
    compressed = is_sparse and matrix.format in ("csr", "csc")
    if compressed:
        n_edges, data_dtype = int(matrix.indptr[-1]), matrix.data.dtype
    else:
        coo = sparse.coo_matrix(matrix) if is_sparse else sparse.coo_matrix(np.asarray(matrix))
        if not is_sparse:
            keep = coo.data != 0
            coo = sparse.coo_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=coo.shape)
        n_edges, data_dtype = coo.nnz, coo.data.dtype
    weight_dtype = data_dtype if data_dtype in WEIGHT_DTYPES else np.dtype(np.float64)
    g = group.create_group(name)
    datasets = {
        key: g.create_dataset(
            key,
            shape=(n_edges,),
            dtype=dtype,
            maxshape=(None,),  # growable, as loompy makes them
            chunks=(max(1, min(n_edges, 65536)),),
            # kNN graphs are a large part of a file; gzip level 2 as for the matrices
            **({"compression": "gzip", "compression_opts": 2} if n_edges > 1024 else {}),
        )
        for key, dtype in (("a", np.int64), ("b", np.int64), ("w", weight_dtype))
    }
    blocks = _edge_blocks(matrix) if compressed else [(0, coo.row, coo.col, coo.data)]
    for start, rows, cols, weights in blocks:
        stop = start + weights.shape[0]
        if stop > start:
            datasets["a"][start:stop] = rows.astype(np.int64) + base_a
            datasets["b"][start:stop] = cols.astype(np.int64) + base_b
            datasets["w"][start:stop] = weights.astype(weight_dtype, copy=False)
    write_tag(g, GraphTag(MatrixTag.of(matrix), (base_a, base_b)))


def _edge_blocks(matrix: Any) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """``(first edge, rows, columns, weights)`` of a CSR or CSC matrix, about :data:`GRAPH_BLOCK_EDGES` at a time."""
    indptr = matrix.indptr
    by_rows = matrix.format == "csr"
    n_major = matrix.shape[0] if by_rows else matrix.shape[1]
    lo = 0
    while lo < n_major:
        # the next block ends where about GRAPH_BLOCK_EDGES more edges are reached (at least one row or column)
        hi = max(lo + 1, int(np.searchsorted(indptr, indptr[lo] + GRAPH_BLOCK_EDGES, side="right")) - 1)
        hi = min(hi, n_major)
        first, last = int(indptr[lo]), int(indptr[hi])
        major = np.repeat(np.arange(lo, hi, dtype=np.int64), np.diff(indptr[lo : hi + 1]))
        minor = matrix.indices[first:last]
        weights = matrix.data[first:last]
        yield (first, major, minor, weights) if by_rows else (first, minor, major, weights)
        lo = hi


def build_matrix(a: np.ndarray, b: np.ndarray, w: np.ndarray, n: int, kind: MatrixTag | None) -> Any:
    """Assemble an ``n × n`` matrix from 0-based edges, in the recorded container when ``kind`` is given."""
    fmt = (kind.format if kind else None) or "csr"
    dtype = np.dtype((kind.dtype if kind else None) or w.dtype)
    data = w.astype(dtype) if dtype != w.dtype else w
    coo = sparse.coo_matrix((data, (a, b)), shape=(n, n))
    if fmt == "dense":
        return coo.toarray()
    out = coo.tocsc() if fmt == "csc" else coo.tocsr()
    out.sort_indices()
    if kind is not None and kind.is_sparse_array:
        return sparse.csc_array(out) if fmt == "csc" else sparse.csr_array(out)
    return out
