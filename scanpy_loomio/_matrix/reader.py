"""Reading: a loom dataset (genes × cells) as an AnnData matrix (cells × genes), CSR, CSC or dense.

Chunked deflate/shuffle datasets go through the fast reader (:mod:`scanpy_loomio._matrix.chunk_reader`). Datasets
it cannot decode (other filters, contiguous or compact layout) are read through h5py band by band, still turned into
non-zeros by the compiled kernels; dtypes the kernels do not handle go through the simple reference path.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from scipy import sparse

from scanpy_loomio._matrix.assembler import CompressedAssembler
from scanpy_loomio._matrix.chunk_index import selection_layout
from scanpy_loomio._matrix.chunk_reader import ChunkReader
from scanpy_loomio._matrix.pool import progress_bar, resolve_threads
from scanpy_loomio._matrix.tiles import (
    INDEX32_MAX,
    band_width,
    kernel_dtype_ok,
    load_kernels,
    native,
    nonzero_mask,
    sparse_result_dtype,
    tiles_to_nonzeros,
)

if TYPE_CHECKING:
    import threading
    from collections.abc import Callable

    import h5py
    import numpy.typing as npt

MatrixFormat = Literal["csr", "csc", "dense"]


def read_matrix(
    dataset: h5py.Dataset,
    *,
    format: MatrixFormat = "csr",
    n_threads: int | None = None,
    progress: bool = False,
) -> np.ndarray | sparse.csr_matrix | sparse.csc_matrix:
    """Read the genes × cells loom dataset as a cells × genes matrix in ``format``.

    Parameters
    ----------
    dataset
        A 2-dimensional loom layer (``/matrix`` or ``/layers/<name>``).
    format
        ``"csr"`` or ``"csc"`` for a scipy sparse matrix, ``"dense"`` for a numpy array.
    n_threads
        Threads inflating chunks; ``None`` uses every core available to the process.
    progress
        Show a progress bar when reading takes more than a couple of seconds.

    Returns
    -------
    The matrix with the dataset's dtype (in native byte order). scipy.sparse has no float16, so sparse
    results of a float16 layer are float32 (exact). Sparse results have sorted indices and no explicit zeros.

    Examples
    --------
    >>> import h5py
    >>> import numpy as np
    >>> from scipy import sparse
    >>> from scanpy_loomio._matrix import write_matrix
    >>> x = sparse.random(100, 300, density=0.1, format="csr", dtype=np.float32, random_state=0)
    >>> with h5py.File("example.loom", "w") as f:
    ...     _ = write_matrix(f, "matrix", x)
    >>> with h5py.File("example.loom", "r") as f:
    ...     back = read_matrix(f["matrix"], format="csr")
    >>> back.shape, back.dtype, (back != x).nnz
    ((100, 300), dtype('float32'), 0)
    """
    return prepare_matrix(dataset, format=format, n_threads=n_threads, progress=progress).read()


@dataclass(frozen=True)
class PendingMatrix:
    """A matrix located in its file by :func:`prepare_matrix`: ``read()`` reads it (once), cells × genes.

    Where ``needs_hdf5`` is false, ``read()`` reads the file's bytes through its own descriptor without calling
    HDF5, so it can run in one thread while another reads the same file through h5py.
    """

    read: Callable[[], Any]
    needs_hdf5: bool


def prepare_matrix(
    dataset: h5py.Dataset,
    *,
    format: MatrixFormat = "csr",
    n_threads: int | None = None,
    progress: bool = False,
    stop: threading.Event | None = None,
) -> PendingMatrix:
    """What :func:`read_matrix` reads, located: the HDF5 calls it needs are made, the chunks are not read yet.

    Setting ``stop`` makes a read of chunks under way raise
    :class:`~scanpy_loomio._matrix.chunk_reader.ReadStopped` within a task of chunks, so that a thread waiting
    for it can be let go of. Parameters as for :func:`read_matrix`.
    """
    if format not in ("csr", "csc", "dense"):
        msg = f"{dataset.file.filename}: {dataset.name}: got format={format!r}; pass 'csr', 'csc' or 'dense'"
        raise ValueError(msg)
    threads = resolve_threads(n_threads)
    if dataset.ndim != 2:
        msg = (
            f"{dataset.file.filename}: {dataset.name} has shape {dataset.shape}; a loom layer is "
            "2-dimensional (genes × cells). Rewrite the file with a 2-dimensional layer."
        )
        raise ValueError(msg)
    n_genes, n_cells = dataset.shape
    dtype = dataset.dtype
    if not kernel_dtype_ok(dtype) or dtype.kind == "b":
        return PendingMatrix(partial(read_simple, dataset, format=format), needs_hdf5=True)
    if n_genes == 0 or n_cells == 0:
        empty = _empty_result(n_cells, n_genes, dtype, format)
        return PendingMatrix(lambda: empty, needs_hdf5=False)
    # the index read from the B-tree directly when possible: HDF5's listing holds the GIL a second per 366,000 chunks
    layout = selection_layout(dataset, None, None)
    if layout is None:
        return PendingMatrix(partial(_read_banded, dataset, format=format, progress=progress), needs_hdf5=True)
    reader = ChunkReader(dataset, layout)
    run = partial(reader.run, format, threads, progress=progress, stop=stop)
    return PendingMatrix(run, needs_hdf5=reader.source.fd is None)


def empty_like_read(dataset: h5py.Dataset, shape: tuple[int, int], *, format: MatrixFormat = "csr") -> Any:
    """An all-zero matrix of ``shape`` of the container and dtype :func:`read_matrix` gives for ``dataset``."""
    dtype = dataset.dtype
    if format == "dense":
        return np.zeros(shape, dtype=native(dtype))
    sparse_dtype = sparse_result_dtype(dtype) if dtype.kind in "iuf" else native(dtype)
    cls = sparse.csr_matrix if format == "csr" else sparse.csc_matrix
    return cls(shape, dtype=sparse_dtype)


def _empty_result(
    n_cells: int, n_genes: int, dtype: np.dtype, fmt: str
) -> npt.NDArray[Any] | sparse.csr_matrix | sparse.csc_matrix:
    if fmt == "dense":
        return np.zeros((n_cells, n_genes), dtype=native(dtype))
    cls = sparse.csr_matrix if fmt == "csr" else sparse.csc_matrix
    return cls((n_cells, n_genes), dtype=sparse_result_dtype(dtype))


def read_simple(
    dataset: h5py.Dataset, *, format: MatrixFormat = "csr"
) -> npt.NDArray[Any] | sparse.csr_matrix | sparse.csc_matrix:
    """Read through h5py one band of cells at a time, converting with scipy (the reference path)."""
    n_genes, n_cells = dataset.shape
    dtype = dataset.dtype
    if format == "dense":
        out = np.empty((n_cells, n_genes), dtype=native(dtype))
    blocks = []
    chunk_cols = dataset.chunks[1] if dataset.chunks else 64
    band = band_width(n_genes, dtype.itemsize, chunk_cols)
    sparse_dtype = sparse_result_dtype(dtype) if dtype.kind in "iuf" else dtype
    for start in range(0, n_cells, band):
        stop = min(n_cells, start + band)
        tile = dataset[:, start:stop].T
        if format == "dense":
            out[start:stop] = tile
        else:
            blocks.append(sparse.csr_matrix(tile.astype(sparse_dtype, copy=False)))
    if format == "dense":
        return out
    if not blocks:
        result = sparse.csr_matrix((n_cells, n_genes), dtype=sparse_dtype)
    else:
        result = sparse.vstack(blocks, format="csr", dtype=sparse_dtype)
    return result.tocsc() if format == "csc" else result


def _read_banded(
    dataset: h5py.Dataset, *, format: MatrixFormat, progress: bool
) -> npt.NDArray[Any] | sparse.csr_matrix | sparse.csc_matrix:
    """Read through h5py a band at a time (layouts and filters the fast path does not decode).

    HDF5 decodes; the kernels still turn each band straight into non-zeros, so memory stays bounded.
    """
    kernels = load_kernels()
    n_genes, n_cells = dataset.shape
    file_dtype = dataset.dtype
    dtype = native(file_dtype)
    unsigned = np.dtype(f"u{dtype.itemsize}")
    mask = nonzero_mask(dtype)
    chunk_rows, chunk_cols = dataset.chunks or (1, 1)
    by_column = format != "csc"
    if by_column:
        width = band_width(n_genes, dtype.itemsize, chunk_cols)
        n_major, n_minor = n_cells, n_genes
    else:
        width = band_width(n_cells, dtype.itemsize, chunk_rows)
        n_major, n_minor = n_genes, n_cells
    bands = [(start, min(start + width, n_major)) for start in range(0, n_major, width)]
    bar = progress_bar(progress, len(bands), f"reading {dataset.name}")
    if format == "dense":
        out = np.empty((n_cells, n_genes), dtype=dtype)
    else:
        index_dtype = np.dtype(np.int32 if n_minor <= INDEX32_MAX else np.int64)
        assembler = CompressedAssembler(n_major, n_minor, sparse_result_dtype(dtype), index_dtype)
    slots = np.zeros(1, dtype=np.int64)
    try:
        for start, stop in bands:
            block = dataset[:, start:stop] if by_column else dataset[start:stop, :]
            block = np.ascontiguousarray(block, dtype=dtype)
            if format == "dense":
                out[start:stop] = block.T
            else:
                tiles = block.view(unsigned)[np.newaxis]
                n_rows, n_cols = block.shape
                counts, indices, data = tiles_to_nonzeros(
                    kernels, tiles, slots, mask, n_rows, n_cols, index_dtype, by_column
                )
                assembler.append(start, counts, indices, data.view(dtype))
            bar.update(1)
    finally:
        bar.close()
    return out if format == "dense" else assembler.finish(format)
