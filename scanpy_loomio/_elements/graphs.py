"""``obsp``/``varp`` ⇄ loom graphs (``/col_graphs/<name>/{a,b,w}``, edge lists)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import sparse

from scanpy_loomio._record.tags import GraphTag, MatrixTag, write_tag

if TYPE_CHECKING:
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


def write_graph(group: h5py.Group, name: str, matrix: Any, *, index_base: int | tuple[int, int] = 0) -> None:
    """Write a square matrix as the edge list ``group/name/{a,b,w}``; ``index_base`` is 0 or 1, for ``a`` and ``b``."""
    base_a, base_b = (index_base, index_base) if isinstance(index_base, int) else index_base
    is_sparse = sparse.issparse(matrix)
    coo = sparse.coo_matrix(matrix) if is_sparse else sparse.coo_matrix(np.asarray(matrix))
    if not is_sparse:
        keep = coo.data != 0
        coo = sparse.coo_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=coo.shape)
    weights = coo.data if coo.data.dtype in WEIGHT_DTYPES else coo.data.astype(np.float64)
    g = group.create_group(name)
    edges = {"a": coo.row.astype(np.int64) + base_a, "b": coo.col.astype(np.int64) + base_b, "w": weights}
    for key, values in edges.items():
        # growable, as loompy makes them
        g.create_dataset(
            key,
            data=values,
            maxshape=(None,),
            chunks=(max(1, min(len(values), 65536)),),
            # kNN graphs are a large part of a file; gzip level 2 as for the matrices
            **({"compression": "gzip", "compression_opts": 2} if len(values) > 1024 else {}),
        )
    write_tag(g, GraphTag(MatrixTag.of(matrix), (base_a, base_b)))


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
