"""Reading a selection of cells and genes: only the chunks that hold it are read and inflated.

The cells asked for fall into some chunk columns and the genes into some chunk rows; only the chunks where both
meet are located (:mod:`scanpy_loomio._matrix.chunk_index`), read and inflated, in worker threads like the full
reader. Each chunk column then yields the selected cells' non-zeros with the same compiled kernels: straight from
the tiles when every gene is asked for (a lazy read's band of cells), else from a small dense block gathered from
the tiles (the selected genes × the selected cells of that column). Datasets the fast path does not decode are read
through h5py a band of cells at a time, only the bands that hold selected cells.
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy import sparse

from scanpy_loomio._matrix.assembler import CompressedAssembler
from scanpy_loomio._matrix.chunk_index import selection_layout
from scanpy_loomio._matrix.chunk_reader import ChunkReader, check_stop
from scanpy_loomio._matrix.pool import TASK_BYTES, gc_paused, ordered_map, progress_bar, resolve_threads
from scanpy_loomio._matrix.reader import MatrixFormat
from scanpy_loomio._matrix.tiles import (
    BAND_BYTES,
    INDEX32_MAX,
    kernel_dtype_ok,
    load_kernels,
    sparse_result_dtype,
    tiles_to_nonzeros,
)

if TYPE_CHECKING:
    import h5py
    import numpy.typing as npt

    from scanpy_loomio._matrix.chunks import ChunkLayout
    from scanpy_loomio._matrix.pool import ProgressBar


def read_selection(
    dataset: h5py.Dataset,
    rows: np.ndarray | None = None,
    cols: np.ndarray | None = None,
    *,
    format: MatrixFormat = "csr",
    n_threads: int | None = None,
    progress: bool = False,
    lock: AbstractContextManager | None = None,
) -> np.ndarray | sparse.csr_matrix | sparse.csc_matrix:
    """Rows ``rows`` (genes) and columns ``cols`` (cells) of a genes × cells loom dataset, as cells × genes.

    Parameters
    ----------
    dataset
        A 2-dimensional loom layer.
    rows, cols
        Increasing positions without repeats, or ``None`` for all.
    format
        ``"csr"``, ``"csc"`` or ``"dense"``.
    n_threads
        Threads inflating chunks; ``None`` uses every core available to the process.
    progress
        Show a progress bar when reading takes more than a couple of seconds.
    lock
        Held whenever HDF5 is called, for callers reading in several threads at once (threads opening one file
        and reading stored chunks through h5py at the same time crash). Reading and inflating the chunks' bytes
        happens outside it.

    Returns
    -------
    A ``len(cols)`` × ``len(rows)`` matrix equal to the same part of what
    :func:`~scanpy_loomio._matrix.read_matrix` gives for the whole dataset: same dtype, sorted indices, no explicit
    zeros.

    Examples
    --------
    >>> import h5py
    >>> import numpy as np
    >>> from scanpy_loomio._matrix import write_matrix
    >>> x = np.arange(300 * 200, dtype=np.float32).reshape(300, 200) % 7
    >>> with h5py.File("selection.loom", "w") as f:
    ...     _ = write_matrix(f, "matrix", x)
    >>> cells, genes = np.array([3, 150, 299]), np.array([0, 64, 199])
    >>> with h5py.File("selection.loom", "r") as f:
    ...     part = read_selection(f["matrix"], rows=genes, cols=cells)
    >>> np.array_equal(part.toarray(), x[np.ix_(cells, genes)])
    True
    """
    pending = prepare_selection(dataset, rows, cols, format=format, n_threads=n_threads, progress=progress, lock=lock)
    return pending.read()


def prepare_selection(
    dataset: h5py.Dataset,
    rows: np.ndarray | None = None,
    cols: np.ndarray | None = None,
    *,
    format: MatrixFormat = "csr",
    n_threads: int | None = None,
    progress: bool = False,
    lock: AbstractContextManager | None = None,
    stop: threading.Event | None = None,
) -> PendingSelection:
    """What :func:`read_selection` reads, located: the HDF5 calls it needs are made, the chunks are not read yet.

    Where :attr:`PendingSelection.needs_hdf5` is false, :meth:`PendingSelection.read` reads the file's bytes only
    and so can run in one thread while another reads the file through h5py. Setting ``stop`` makes a read under way
    raise :class:`ReadStopped` within a task of chunks (so that a thread reading it can be let go of).
    """
    lock = nullcontext() if lock is None else lock
    with lock:
        reader = _prepare(dataset, rows, cols, format)
    return PendingSelection(reader, format, resolve_threads(n_threads), progress, lock, stop)


@dataclass(frozen=True)
class PendingSelection:
    """A selection located in its file (:func:`prepare_selection`), or already read through h5py."""

    reader: _SelectionReader | npt.NDArray[Any] | sparse.csr_matrix | sparse.csc_matrix
    fmt: MatrixFormat
    n_threads: int
    progress: bool
    lock: AbstractContextManager
    stop: threading.Event | None = None

    @property
    def needs_hdf5(self) -> bool:
        """Whether reading calls HDF5 (the file has no descriptor of its own to read the chunks' bytes through)."""
        return isinstance(self.reader, _SelectionReader) and self.reader.source.fd is None

    def read(self) -> np.ndarray | sparse.csr_matrix | sparse.csc_matrix:
        """The selection, cells × genes, in the format asked for."""
        reader = self.reader
        if not isinstance(reader, _SelectionReader):
            return reader  # read through h5py when prepared
        bar = progress_bar(self.progress, reader.layout.byte_offsets.shape[1], f"reading {reader.where[1]}")
        try:
            with gc_paused(), self.lock if self.needs_hdf5 else nullcontext():
                result = reader.read(self.fmt, self.n_threads, bar, self.stop)
        finally:
            bar.close()
            reader.close()
        if self.fmt == "csc":
            assert isinstance(result, sparse.csr_matrix)  # the reader assembles CSR, dense only for "dense"
            return result.tocsc()
        return result


def _prepare(
    dataset: h5py.Dataset, rows: np.ndarray | None, cols: np.ndarray | None, format: str
) -> _SelectionReader | npt.NDArray[Any] | sparse.csr_matrix | sparse.csc_matrix:
    """The reader of the selection's chunks, or the selection itself where the fast path does not apply."""
    if format not in ("csr", "csc", "dense"):
        msg = f"{dataset.file.filename}: {dataset.name}: got format={format!r}; pass 'csr', 'csc' or 'dense'"
        raise ValueError(msg)
    n_genes, n_cells = dataset.shape
    cells = np.arange(n_cells, dtype=np.int64) if cols is None else np.asarray(cols, dtype=np.int64)
    genes = None if rows is None or len(rows) == n_genes else np.asarray(rows, dtype=np.int64)
    n_out_genes = n_genes if genes is None else genes.shape[0]
    dtype = dataset.dtype
    layout = None
    if kernel_dtype_ok(dtype) and dtype.kind != "b" and cells.shape[0] > 0 and n_out_genes > 0:
        chunk_rows, chunk_cols = dataset.chunks or (1, 1)
        columns = np.unique(cells // chunk_cols)
        layout = selection_layout(dataset, None if genes is None else np.unique(genes // chunk_rows), columns)
    if layout is None:
        return _read_with_h5py(dataset, genes, cells, format)
    return _SelectionReader(dataset, layout, genes, cells)


class _SelectionReader(ChunkReader):
    """Decodes the chunks of a sub-grid layout and extracts the selected cells and genes, a chunk column at a time."""

    def __init__(self, dataset: h5py.Dataset, layout: ChunkLayout, genes: np.ndarray | None, cells: np.ndarray) -> None:
        super().__init__(dataset, layout)
        self.genes = genes
        self.cells = cells
        self.n_out_genes = self.n_genes if genes is None else genes.shape[0]
        assert layout.col_ids is not None  # a selection's layout names its chunk columns
        self.col_ids = layout.col_ids
        starts = self.col_ids * self.tw
        # output cells of sub-grid column k: cells[self.bounds[k]:self.bounds[k + 1]]
        self.bounds = np.append(np.searchsorted(cells, starts), cells.shape[0])
        if genes is not None:
            assert layout.row_ids is not None  # and its chunk rows when genes are selected
            grid_row = np.searchsorted(layout.row_ids, genes // self.th)
            self.gene_row, self.gene_offset = grid_row, genes % self.th
            # a tile's genes are its rows: it is needed only up to the last gene selected in it
            last = np.zeros(layout.row_ids.shape[0], dtype=np.int64)
            np.maximum.at(last, grid_row, self.gene_offset)
            self.wanted_bytes = (last + 1) * self.tw * self.itemsize
        index_dtype = np.dtype(np.int32 if self.n_out_genes <= INDEX32_MAX else np.int64)
        self.index_dtype = index_dtype

    def read(
        self, fmt: str, n_threads: int, bar: ProgressBar, stop: threading.Event | None = None
    ) -> npt.NDArray[Any] | sparse.csr_matrix:
        """The selection, cells × genes: dense (``fmt`` ``"dense"``) or CSR.

        Once ``stop`` is set, :class:`ReadStopped` is raised after the task at hand (tasks not started are dropped).
        """
        n_columns = self.layout.byte_offsets.shape[1]
        unit_bytes = max(1, self.layout.byte_offsets.shape[0]) * self.tile_bytes
        per_task = max(1, TASK_BYTES // unit_bytes)
        tasks = [(k, min(k + per_task, n_columns)) for k in range(0, n_columns, per_task)]
        n_cells = self.cells.shape[0]
        if fmt == "dense":
            self.out = np.empty((n_cells, self.n_out_genes), dtype=self.dtype)
            for (first, last), _ in zip(tasks, ordered_map(self._dense_columns, tasks, n_threads), strict=True):
                bar.update(last - first)
                check_stop(stop)
            return self.out
        assembler = CompressedAssembler(n_cells, self.n_out_genes, sparse_result_dtype(self.dtype), self.index_dtype)
        for (first, last), pieces in zip(tasks, ordered_map(self._sparse_columns, tasks, n_threads), strict=True):
            for start, counts, indices, data in pieces:
                assembler.append(start, counts, indices, data.view(self.dtype))
            bar.update(last - first)
            check_stop(stop)
        return assembler.finish("csr")

    def _local_cells(self, k: int) -> tuple[int, np.ndarray, int]:
        """First output position, positions within the chunk column, and width of sub-grid column ``k``."""
        first, last = int(self.bounds[k]), int(self.bounds[k + 1])
        start = int(self.col_ids[k]) * self.tw
        return first, self.cells[first:last] - start, min(self.tw, self.n_cells - start)

    def _gathered(self, tiles: np.ndarray, slots: np.ndarray, local: np.ndarray) -> np.ndarray:
        """The selected genes × the selected cells of one chunk column (loom orientation, unsigned view)."""
        slot = slots[self.gene_row]
        present = slot >= 0
        block = np.zeros((self.n_out_genes, local.shape[0]), dtype=self.unsigned)
        block[present] = tiles[slot[present], self.gene_offset[present]][:, local]
        return block

    def _sparse_columns(self, units: tuple[int, int]) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
        kernels = load_kernels()
        pieces = []
        for k in range(*units):
            first, local, width = self._local_cells(k)
            if local.shape[0] == 0:
                continue
            tiles, slots = self.band_tiles(k, by_column=True)
            if self.genes is None:
                counts, indices, data = tiles_to_nonzeros(
                    kernels, tiles, slots, self.mask, self.n_genes, width, self.index_dtype, True
                )
                if local.shape[0] < width:
                    counts, indices, data = _rows_of(counts, indices, data, local)
            else:
                block = self._gathered(tiles, slots, local)[np.newaxis]
                counts, indices, data = tiles_to_nonzeros(
                    kernels, block, np.zeros(1, dtype=np.int64), self.mask, self.n_out_genes, local.shape[0],
                    self.index_dtype, True,
                )  # fmt: skip
            pieces.append((first, counts, indices, data))
        return pieces

    def _dense_columns(self, units: tuple[int, int]) -> None:
        kernels = load_kernels()
        out = self.out.view(self.unsigned)
        for k in range(*units):
            first, local, width = self._local_cells(k)
            if local.shape[0] == 0:
                continue
            tiles, slots = self.band_tiles(k, by_column=True)
            if self.genes is None:
                band = np.empty((width, self.n_genes), dtype=self.unsigned)
                kernels.tiles_to_dense(tiles, slots, self.n_genes, width, band)
                out[first : first + local.shape[0]] = band[local]
            else:
                out[first : first + local.shape[0]] = self._gathered(tiles, slots, local).T


def _rows_of(
    counts: np.ndarray, indices: np.ndarray, data: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows ``rows`` (increasing) of compressed rows given as per-row counts, indices and data."""
    ends = np.cumsum(counts)
    starts = ends - counts
    kept = counts[rows]
    total = int(kept.sum())
    # positions of the kept entries: each kept row's run, back to back
    offsets = np.repeat(starts[rows] - (np.cumsum(kept) - kept), kept) + np.arange(total)
    return kept, indices[offsets], data[offsets]


def _read_with_h5py(
    dataset: h5py.Dataset, genes: np.ndarray | None, cells: np.ndarray, fmt: str
) -> npt.NDArray[Any] | sparse.csr_matrix | sparse.csc_matrix:
    """Read through h5py the bands of cells that hold the selection (layouts and dtypes the fast path skips)."""
    n_genes, n_cells = dataset.shape
    dtype = dataset.dtype
    native = dtype.newbyteorder("=") if dtype.byteorder not in "=|" else dtype
    sparse_dtype = sparse_result_dtype(dtype) if dtype.kind in "iuf" else native
    n_out_genes = n_genes if genes is None else genes.shape[0]
    chunk = (dataset.chunks[1] if dataset.chunks else 64) or 64
    per_cell = max(1, n_out_genes * dtype.itemsize)
    band = max(chunk, BAND_BYTES // per_cell // chunk * chunk)
    out = np.zeros((cells.shape[0], n_out_genes), dtype=native) if fmt == "dense" else None
    blocks = []
    if n_out_genes > 0 and cells.shape[0] > 0 and n_cells > 0:
        windows = cells // band
        edges = np.flatnonzero(np.diff(windows)) + 1
        for first, last in zip(np.r_[0, edges], np.r_[edges, cells.shape[0]], strict=True):
            lo = int(windows[first]) * band
            hi = min(n_cells, lo + band)
            values = dataset[:, lo:hi] if genes is None else dataset[genes.tolist(), lo:hi]
            values = np.asarray(values, dtype=native)[:, cells[first:last] - lo].T
            if out is not None:
                out[first:last] = values
            else:
                blocks.append(sparse.csr_matrix(values.astype(sparse_dtype, copy=False)))
    if out is not None:
        return out
    if not blocks:
        result = sparse.csr_matrix((cells.shape[0], n_out_genes), dtype=sparse_dtype)
    else:
        result = sparse.vstack(blocks, format="csr", dtype=sparse_dtype)
    return result.tocsc() if fmt == "csc" else result
