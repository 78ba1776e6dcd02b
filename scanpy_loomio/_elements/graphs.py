"""``obsp``/``varp`` ⇄ loom graphs (``/col_graphs/<name>/{a,b,w}``, edge lists)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import sparse

from scanpy_loomio._record.record import CODEC_ATTR, dump_codec

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


def matrix_kind(matrix: Any) -> dict[str, str]:
    """Describe a matrix's container so it can be restored: format (csr/csc/dense), class, dtype."""
    if sparse.issparse(matrix):
        # scipy-stubs narrow to an abstract base class that declares none of the attributes every container has
        return {"format": matrix.format, "type": type(matrix).__name__, "dtype": str(matrix.dtype)}  # type: ignore[attr-defined]
    return {"format": "dense", "type": "ndarray", "dtype": str(np.asarray(matrix).dtype)}


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
    base = {"index_base": [base_a, base_b]} if (base_a, base_b) != (0, 0) else {}
    g.attrs[CODEC_ATTR] = dump_codec({"type": "graph", **matrix_kind(matrix), **base})


def recorded_index_base(codec: dict[str, Any] | None) -> list[int]:
    """The ``[a, b]`` index bases a graph was written with (``[0, 0]`` unless its codec records others)."""
    bases = (codec or {}).get("index_base", [0, 0])
    if isinstance(bases, list) and len(bases) == 2 and all(b in (0, 1) for b in bases):
        return [int(b) for b in bases]
    return [0, 0]


def build_matrix(a: np.ndarray, b: np.ndarray, w: np.ndarray, n: int, kind: dict[str, str] | None) -> Any:
    """Assemble an ``n × n`` matrix from 0-based edges, in the recorded container when ``kind`` is given."""
    fmt = (kind or {}).get("format", "csr")
    dtype = np.dtype((kind or {}).get("dtype", w.dtype))
    data = w.astype(dtype) if dtype != w.dtype else w
    coo = sparse.coo_matrix((data, (a, b)), shape=(n, n))
    if fmt == "dense":
        return coo.toarray()
    out = coo.tocsc() if fmt == "csc" else coo.tocsr()
    out.sort_indices()
    if (kind or {}).get("type", "").endswith("_array"):
        return sparse.csc_array(out) if fmt == "csc" else sparse.csr_array(out)
    return out
