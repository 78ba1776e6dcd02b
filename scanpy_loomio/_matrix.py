"""The matrix engine: loom layers (genes × cells, dense, chunked) ⇄ AnnData matrices (cells × genes).

Loom keeps every layer dense and transposed. Both directions work one band of cells at a time, so the
whole dense layer never exists in memory.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np
from scipy import sparse

if TYPE_CHECKING:
    import h5py

MatrixFormat = Literal["csr", "csc", "dense"]

#: loompy's own chunk shape and gzip level; files written with them are what every loom reader expects.
DEFAULT_CHUNKS: tuple[int, int] = (64, 64)
DEFAULT_COMPRESSION_LEVEL = 2
#: Upper bound on the dense band built while converting, in bytes.
BAND_BYTES = 64 * 2**20


def _band_width(n_genes: int, itemsize: int, chunk_cols: int) -> int:
    """Number of cells per band: a multiple of the chunk width that keeps the band under BAND_BYTES."""
    per_cell = max(1, n_genes * itemsize)
    width = max(1, BAND_BYTES // per_cell)
    return max(chunk_cols, width - width % chunk_cols)


def write_matrix(
    group: h5py.Group,
    name: str,
    matrix: np.ndarray | sparse.spmatrix | sparse.sparray | None,
    *,
    shape: tuple[int, int] | None = None,
    dtype: np.dtype | None = None,
    chunks: tuple[int, int] = DEFAULT_CHUNKS,
    compression_level: int = DEFAULT_COMPRESSION_LEVEL,
    n_threads: int | None = None,
    progress: bool = False,
) -> h5py.Dataset:
    """Write a cells × genes matrix as the genes × cells loom dataset ``group[name]``.

    Parameters
    ----------
    group
        The HDF5 group to create the dataset in (the file root for ``/matrix``, or ``/layers``).
    name
        Dataset name inside ``group``.
    matrix
        Dense array or scipy sparse matrix/array, cells × genes, of a dtype loom allows.
        ``None`` writes an all-zero dataset of ``shape`` and ``dtype`` without storing any chunk.
    shape, dtype
        Cells × genes shape and dtype, required when ``matrix`` is ``None``.
    chunks
        HDF5 chunk shape of the genes × cells dataset.
    compression_level
        gzip level, 0 to 9.
    n_threads
        Threads for compression; ``None`` uses every available core.
    progress
        Show a progress bar.
    """
    del n_threads, progress  # the simple engine is single-threaded and quiet
    if matrix is not None:
        shape = matrix.shape
        dtype = matrix.dtype
    if shape is None or dtype is None:
        msg = "write_matrix needs `shape` and `dtype` when `matrix` is None"
        raise TypeError(msg)
    n_cells, n_genes = shape
    dset_chunks = (max(1, min(chunks[0], n_genes)), max(1, min(chunks[1], n_cells)))
    dset = group.create_dataset(
        name,
        shape=(n_genes, n_cells),
        dtype=dtype,
        chunks=dset_chunks if n_genes and n_cells else None,
        compression="gzip" if n_genes and n_cells else None,
        compression_opts=compression_level if n_genes and n_cells else None,
        fillvalue=0,
    )
    if matrix is None or n_cells == 0 or n_genes == 0:
        return dset
    if sparse.issparse(matrix) and matrix.format != "csr":
        matrix = sparse.csr_matrix(matrix)
    band = _band_width(n_genes, np.dtype(dtype).itemsize, dset_chunks[1])
    for start in range(0, n_cells, band):
        stop = min(n_cells, start + band)
        block = matrix[start:stop]
        if sparse.issparse(block):
            if block.nnz == 0:
                continue  # unwritten chunks read back as the fill value, 0
            block = block.toarray()
        dset[:, start:stop] = np.asarray(block).T
    return dset


def read_matrix(
    dataset: h5py.Dataset,
    *,
    format: MatrixFormat = "csr",  # noqa: A002 - the name scipy and anndata use
    n_threads: int | None = None,
    progress: bool = False,
) -> np.ndarray | sparse.csr_matrix | sparse.csc_matrix:
    """Read the genes × cells loom dataset as a cells × genes matrix in ``format``.

    The result has the dataset's dtype. Sparse results are built band by band, so memory stays near the
    size of the result.
    """
    del n_threads, progress
    n_genes, n_cells = dataset.shape
    dtype = dataset.dtype
    if format == "dense":
        out = np.empty((n_cells, n_genes), dtype=dtype)
    else:
        blocks = []
    chunk_cols = dataset.chunks[1] if dataset.chunks else 64
    band = _band_width(n_genes, dtype.itemsize, chunk_cols)
    for start in range(0, n_cells, band):
        stop = min(n_cells, start + band)
        tile = dataset[:, start:stop].T
        if format == "dense":
            out[start:stop] = tile
        else:
            blocks.append(sparse.csr_matrix(tile))
    if format == "dense":
        return out
    if not blocks:
        result = sparse.csr_matrix((n_cells, n_genes), dtype=dtype)
    else:
        result = sparse.vstack(blocks, format="csr", dtype=dtype)
    return result.tocsc() if format == "csc" else result
