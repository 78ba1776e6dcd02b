"""Writing: an AnnData matrix (cells × genes, sparse or dense) as a chunked, deflated loom dataset (genes × cells).

The dense chunk tiles of a band are built straight from the sparse (or dense) input, deflated in worker threads and
handed to HDF5 (``write_direct_chunk``) in file order. Chunks that hold only zeros are not stored: HDF5 returns the
fill value, 0, for them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, cast

import numpy as np
from scipy import sparse

from scanpy_loomio._matrix import pool  # pool.TASK_BYTES is read at run time (tests shrink it)
from scanpy_loomio._matrix.deflate import compressor, deflate_room, isal_buffers, isal_deflate
from scanpy_loomio._matrix.placement import ChunkBatch, ChunkPlacer
from scanpy_loomio._matrix.pool import gc_paused, ordered_map, progress_bar, resolve_threads
from scanpy_loomio._matrix.tiles import band_width, ceil_div, kernel_dtype_ok, native, write_kernels

if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import TypeAlias

    import h5py
    import numpy.typing as npt
    from typing_extensions import TypeIs

    #: The classes :func:`scipy.sparse.issparse` finds. scipy-stubs give none of their common bases all the attributes
    #: the classes share.
    SparseMatrix: TypeAlias = (
        sparse.bsr_array | sparse.bsr_matrix | sparse.coo_array | sparse.coo_matrix | sparse.csc_array
        | sparse.csc_matrix | sparse.csr_array | sparse.csr_matrix | sparse.dia_array | sparse.dia_matrix
        | sparse.dok_array | sparse.dok_matrix | sparse.lil_array | sparse.lil_matrix
    )  # fmt: skip
    #: A sparse input as :func:`write_matrix` hands it on: CSR or CSC.
    _Compressed: TypeAlias = sparse.csr_matrix | sparse.csc_matrix | sparse.csr_array | sparse.csc_array
    #: The input as :func:`write_matrix` hands it on.
    _Input: TypeAlias = npt.NDArray[Any] | _Compressed | "MatrixRows"

#: loompy's own chunk shape and gzip level; files written with them are what every loom reader expects.
DEFAULT_CHUNKS: tuple[int, int] = (64, 64)
DEFAULT_COMPRESSION_LEVEL = 2


class MatrixRows(Protocol):
    """An array-like :func:`write_matrix` reads one band of rows (``matrix[lo:hi]``) at a time.

    h5py and zarr datasets, dask arrays and band sources (:class:`~scanpy_loomio._matrix.stream.BandSource`) are.
    """

    @property
    def shape(self) -> tuple[int, ...]:
        """Cells × genes."""

    @property
    def dtype(self) -> np.dtype[Any]:
        """The values' dtype."""

    def __getitem__(self, key: slice, /) -> Any:
        """Rows (cells) ``key``, as a numpy array or a scipy.sparse matrix."""


def is_sparse(value: object) -> TypeIs[SparseMatrix]:
    """:func:`scipy.sparse.issparse`, telling the type checker which classes it finds.

    scipy-stubs narrow ``issparse`` to an abstract base class that declares none of the attributes every sparse matrix
    has (``format``, ``shape``, ``dtype``, ``tocsr``, ...).
    """
    return sparse.issparse(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool)


def check_matrix_options(*, chunks: Any, compression_level: Any, where: str) -> None:
    """Refuse chunk shapes and gzip levels the writer cannot use, naming ``where`` (the user's file).

    Examples
    --------
    >>> check_matrix_options(chunks=(64, 64), compression_level=2, where="out.loom")
    >>> check_matrix_options(chunks=(64, 64), compression_level=12, where="out.loom")
    Traceback (most recent call last):
    ...
    ValueError: out.loom: got compression_level=12; pass an integer gzip level from 0 to 9
    """
    if not _is_int(compression_level) or not 0 <= compression_level <= 9:
        msg = f"{where}: got compression_level={compression_level!r}; pass an integer gzip level from 0 to 9"
        raise ValueError(msg)
    if not isinstance(chunks, tuple | list) or len(chunks) != 2 or not all(_is_int(c) and c >= 1 for c in chunks):
        msg = f"{where}: got chunks={chunks!r}; pass two positive integers (genes, cells), e.g. (64, 64)"
        raise ValueError(msg)


def write_matrix(
    group: h5py.Group,
    name: str,
    matrix: npt.NDArray[Any] | SparseMatrix | MatrixRows | None,
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
        Other array-likes (h5py datasets, dask arrays) are read one band of rows at a time.
    shape
        Cells × genes shape, required when ``matrix`` is ``None``.
    dtype
        Dtype of the dataset, required when ``matrix`` is ``None``; otherwise the values are cast to it
        (default: the matrix's dtype).
    chunks
        HDF5 chunk shape of the genes × cells dataset, clipped to the dataset's shape.
    compression_level
        gzip level, 0 (stored uncompressed, still gzip format) to 9 (smallest, slowest).
    n_threads
        Threads compressing chunks; ``None`` uses every core available to the process.
    progress
        Show a progress bar when writing takes more than a couple of seconds.

    Returns
    -------
    The new dataset.

    Examples
    --------
    >>> import h5py
    >>> import numpy as np
    >>> from scipy import sparse
    >>> x = sparse.random(100, 300, density=0.1, format="csr", dtype=np.float32, random_state=0)
    >>> with h5py.File("example.loom", "w") as f:
    ...     dset = write_matrix(f, "matrix", x, compression_level=2, n_threads=2)
    ...     dset.shape, dset.chunks, dset.compression
    ((300, 100), (64, 64), 'gzip')
    """
    if matrix is not None:
        if isinstance(matrix, np.matrix):
            matrix = np.asarray(matrix)
        elif is_sparse(matrix) and matrix.format not in ("csr", "csc"):
            matrix = matrix.tocsr()
        shape = tuple(matrix.shape)
        dtype = matrix.dtype if dtype is None else dtype
    where = f"{group.file.filename}: {group.name.rstrip('/')}/{name}"
    if shape is None or dtype is None:
        msg = f"{where}: write_matrix got no matrix and no `shape`/`dtype`; pass both to write an all-zero layer"
        raise TypeError(msg)
    if len(shape) != 2:
        msg = f"{where}: got a matrix of shape {shape}; a loom layer needs a 2-dimensional (cells × genes) matrix"
        raise ValueError(msg)
    check_matrix_options(chunks=chunks, compression_level=compression_level, where=where)
    threads = resolve_threads(n_threads)
    dtype = native(np.dtype(dtype))
    n_cells, n_genes = (int(s) for s in shape)
    non_empty = n_genes > 0 and n_cells > 0
    storage: dict[str, Any] = {}
    if n_genes > 0:
        # Growable along cells, as loompy makes them, so loompy's add_columns works on our files.
        chunk_cols = min(int(chunks[1]), n_cells) if n_cells > 0 else int(chunks[1])
        storage = {
            "chunks": (min(int(chunks[0]), n_genes), chunk_cols),
            "maxshape": (n_genes, None),
            "compression": "gzip",
            "compression_opts": int(compression_level),
        }
    dset = group.create_dataset(name, shape=(n_genes, n_cells), dtype=dtype, fillvalue=0, **storage)
    if matrix is None or not non_empty:
        return dset
    rows = cast("_Input", matrix)  # sparse input is CSR or CSC by now
    if kernel_dtype_ok(dtype):
        _ChunkWriter(dset, rows, int(compression_level)).run(threads, progress=progress)
    else:
        _write_simple(dset, rows)
    return dset


class _ChunkWriter:
    """Builds, deflates and stores the chunks of one dataset, a band of chunks per worker task."""

    def __init__(self, dset: h5py.Dataset, matrix: _Input, level: int) -> None:
        self.dset = dset
        self.n_genes, self.n_cells = dset.shape
        self.chunk_rows, self.chunk_cols = dset.chunks
        self.row_blocks = ceil_div(self.n_genes, self.chunk_rows)
        self.col_blocks = ceil_div(self.n_cells, self.chunk_cols)
        self.dtype = dset.dtype
        self.unsigned = np.dtype(f"u{self.dtype.itemsize}")
        self.compress = compressor(level)
        self.isal = isal_deflate(level)  # the whole task's chunks deflated from compiled code, without the GIL
        self.matrix = matrix
        if is_sparse(matrix):
            self.kind = "sparse"
            # CSC input (cells × genes) is CSR of the loom orientation: band over genes.
            self.by_cells = matrix.format == "csr"
        elif isinstance(matrix, np.ndarray):
            self.kind = "dense"
            self.by_cells = not (matrix.flags.f_contiguous and not matrix.flags.c_contiguous)
        else:
            self.kind = "other"  # array-likes: sliced by rows, converted per band
            self.by_cells = True
        # Chosen again for each task: bytes do not depend on it, and a reader of the input may load numba midway.
        self.choose_kernels = partial(write_kernels, streaming=self.kind == "other")
        unit_tiles = self.row_blocks if self.by_cells else self.col_blocks
        unit_bytes = unit_tiles * self.chunk_rows * self.chunk_cols * self.dtype.itemsize
        self.units_per_task = max(1, pool.TASK_BYTES // unit_bytes)
        self.unit_tiles = unit_tiles
        minor_chunk = self.chunk_rows if self.by_cells else self.chunk_cols
        minor = np.arange(self.n_genes if self.by_cells else self.n_cells, dtype=np.int64)
        self._minor_tables = (minor // minor_chunk, minor % minor_chunk)
        self._local = threading.local()

    def run(self, n_threads: int, *, progress: bool) -> None:
        n_units = self.col_blocks if self.by_cells else self.row_blocks
        tasks = self._tasks(n_units)
        placer = ChunkPlacer(self.dset, self.choose_kernels)
        bar = progress_bar(progress, n_units * self.unit_tiles, f"writing {self.dset.name}")
        try:
            with gc_paused():
                work: Iterable[_Task] = self._with_bands(tasks) if self.kind == "other" else tasks
                for (start, stop), batch in zip(tasks, ordered_map(self._task, work, n_threads), strict=True):
                    placer.place(batch)
                    bar.update((stop - start) * self.unit_tiles)
        finally:
            bar.close()

    def _tasks(self, n_units: int) -> list[tuple[int, int]]:
        """Runs of ``units_per_task`` chunk columns (rows); also cut where the input says its parts meet.

        An array-like with ``task_boundaries()`` (cell positions, e.g. where one concatenated file ends) gets tasks
        that do not straddle them, the chunk column holding a boundary in a task of its own.
        """
        cuts = {0, n_units}
        boundaries = getattr(self.matrix, "task_boundaries", None) if self.by_cells else None
        if boundaries is not None:
            for cell in boundaries():
                cuts.update({min(n_units, cell // self.chunk_cols), min(n_units, ceil_div(cell, self.chunk_cols))})
        edges = sorted(cuts)
        return [
            (u, min(u + self.units_per_task, stop))
            for start, stop in zip(edges[:-1], edges[1:], strict=True)
            for u in range(start, stop, self.units_per_task)
        ]

    def _with_bands(self, tasks: list[tuple[int, int]]) -> Iterator[tuple[int, int, _Band]]:
        """Tasks with their input rows, read in the calling thread.

        Array-likes backed by HDF5 (h5py datasets, other loom files) must not be read from worker threads while
        this thread writes chunks.
        """
        raw_chunks = getattr(self.matrix, "raw_chunks", None) if self.by_cells else None
        for start, stop in tasks:
            lo, hi = start * self.chunk_cols, min(stop * self.chunk_cols, self.n_cells)
            copied = raw_chunks(lo, hi, self.dset) if raw_chunks is not None else None
            yield start, stop, _RawChunks(copied) if copied is not None else self._band(lo, hi)

    def _task(self, units: _Task) -> ChunkBatch:
        """Build the tiles of chunk columns (or rows) ``units`` and return the deflated non-empty chunks.

        ``units`` is ``(start, stop)``, or ``(start, stop, band)`` with the input rows already read.
        """
        start, stop = units[:2]
        kernels = self.choose_kernels()
        if self.by_cells:
            lo, hi = start * self.chunk_cols, min(stop * self.chunk_cols, self.n_cells)
            grid = (self.row_blocks, stop - start)
        else:
            lo, hi = start * self.chunk_rows, min(stop * self.chunk_rows, self.n_genes)
            grid = (stop - start, self.col_blocks)
        shape = (*grid, self.chunk_rows, self.chunk_cols)
        filled = np.zeros(grid, dtype=np.bool_)
        band = units[2] if len(units) > 2 else self._band(lo, hi)
        if isinstance(band, _RawChunks):
            return ChunkBatch.from_payloads([offset for offset, _ in band], [payload for _, payload in band])
        if not isinstance(band, _SparseBand):
            tiles = np.zeros(shape, dtype=self.unsigned)
            kernels.dense_to_tiles(band, self.by_cells, tiles, filled)
            return self._deflate(tiles, filled, start)
        indptr, indices, data = band
        n_minor = self.n_genes if self.by_cells else self.n_cells
        status = kernels.check_compressed(indptr, indices, data, n_minor)
        if status == kernels.COMPRESSED_NOT_CANONICAL:  # sort and sum duplicates, this band only
            indptr, indices, data = self._canonical(indptr, indices, data, hi - lo)
            status = kernels.check_compressed(indptr, indices, data, n_minor)
        if status != kernels.COMPRESSED_OK:
            axis = "rows (cells)" if self.by_cells else "columns (genes)"
            msg = (
                f"{self.dset.file.filename}: {self.dset.name}: the sparse matrix is malformed in {axis} "
                f"{lo}..{hi - 1}: indices outside 0..{n_minor - 1}, or an indptr that does not match indices "
                "and data. Rebuild the matrix (e.g. with scipy.sparse.csr_matrix((data, indices, indptr))) and "
                "check it with its check_format() before writing."
            )
            raise ValueError(msg)
        minor_block, minor_offset = self._minor_tables
        # A zeroed buffer per thread, kept zero by clearing exactly the positions written: cheaper than
        # zeroing (and page-faulting) a whole band of tiles for every task.
        tiles = self._zeroed_tiles(shape)
        try:
            kernels.sparse_to_tiles(
                indptr, indices, data, minor_block, minor_offset, self.by_cells, False, tiles, filled
            )
            chunks = self._deflate(tiles, filled, start)
            kernels.sparse_to_tiles(
                indptr, indices, data, minor_block, minor_offset, self.by_cells, True, tiles, filled
            )
        except BaseException:
            self._local.tiles = None  # possibly not zero any more
            raise
        return chunks

    def _zeroed_tiles(self, shape: tuple[int, ...]) -> np.ndarray:
        size = int(np.prod(shape))
        buffer = getattr(self._local, "tiles", None)
        if buffer is None or buffer.shape[0] < size:
            buffer = self._local.tiles = np.zeros(size, dtype=self.unsigned)
        return buffer[:size].reshape(shape)

    def _deflate(self, tiles: np.ndarray, filled: np.ndarray, start: int) -> ChunkBatch:
        """Deflate the filled tiles of one task, in file order, with their chunk offsets."""
        row0 = 0 if self.by_cells else start
        col0 = start if self.by_cells else 0
        # Column-major within a band of cells, row-major within a band of genes: the file order follows the
        # bands, so a reader going band by band reads the file front to back.
        order = np.argwhere(filled.T)[:, ::-1] if self.by_cells else np.argwhere(filled)
        th, tw = self.chunk_rows, self.chunk_cols
        tile_bytes = th * tw * self.unsigned.itemsize
        offsets = order * (th, tw) + (row0 * th, col0 * tw)
        # tiles are C-contiguous (grid rows, grid columns, th, tw): slices of one byte view, no array per tile
        src = tiles.reshape(-1).view(np.uint8)
        starts = (order[:, 0] * filled.shape[1] + order[:, 1]) * tile_bytes
        if self.isal is not None and starts.shape[0]:
            packed = self._isal_deflate(src, starts, tile_bytes)
            if packed is not None:
                return ChunkBatch.from_ends(offsets, *packed)
        view = memoryview(src)
        payloads = list(map(self.compress, [view[s : s + tile_bytes] for s in starts.tolist()]))
        return ChunkBatch.from_payloads(offsets, payloads)

    def _isal_deflate(
        self, src: np.ndarray, starts: np.ndarray, tile_bytes: int
    ) -> tuple[np.ndarray, np.ndarray] | None:
        """The tiles at ``starts`` deflated back to back, and where each ends; ``None`` if ISA-L refuses one.

        The output goes to a buffer of this thread, grown when the chunks compress less than usual; a chunk that
        does not compress is stored, so it never needs much more room than the tile. Every chunk is given the same
        room, so its bytes do not depend on the thread or on what was deflated before it.
        """
        assert self.isal is not None  # called only when ISA-L deflates from compiled code
        buffers = getattr(self._local, "isal", None)
        if buffers is None:
            buffers = self._local.isal = [*isal_buffers(self.isal), np.empty(0, dtype=np.uint8)]
        stream, level_buffer = buffers[0], buffers[1]
        room = deflate_room(tile_bytes)
        n = starts.shape[0]
        ends = np.empty(n, dtype=np.int64)
        done = position = 0
        while done < n:
            out = buffers[2]
            if out.shape[0] - position < room:  # counts compress tenfold or more: start at a sixteenth, grow
                grown = np.empty(max(2 * out.shape[0], position + room, n * tile_bytes // 16), dtype=np.uint8)
                grown[:position] = out[:position]
                out = buffers[2] = grown
            failed = self.choose_kernels().deflate_tiles(
                self.isal.init, self.isal.deflate, *stream, self.isal.level, level_buffer, src, starts[done:],
                tile_bytes, room, out[position:], ends[done:],
            )  # fmt: skip
            finished = n - done if failed < 0 else failed
            ends[done : done + finished] += position
            if finished == 0:
                return None  # refused with room for the whole chunk: not a matter of space
            done += finished
            position = int(ends[done - 1])
        return buffers[2], ends

    def _band(self, lo: int, hi: int) -> _SparseBand | npt.NDArray[Any]:
        """The input rows (cells ``lo:hi``) or columns (genes ``lo:hi``) as kernel-ready arrays.

        Sparse bands come back as ``(indptr, indices, data)`` (tagged by a tuple subclass); dense bands as a
        C-contiguous unsigned view, cells × genes for bands of cells, genes × cells for bands of genes.
        """
        matrix = self.matrix
        if self.kind == "other":
            compressed_rows = getattr(matrix, "compressed_rows", None)
            arrays = compressed_rows(lo, hi) if compressed_rows is not None and self.by_cells else None
            if arrays is not None:  # views: the kernels never write to them
                return self._sparse_arrays(*arrays)
            block = matrix[lo:hi]
            if is_sparse(block):  # sorted in the task if it needs to be (check_compressed, then _canonical)
                block = sparse.csr_matrix(block)
                return self._sparse_arrays(block.indptr, block.indices, block.data)
            return self._dense_view(np.asarray(block))
        if self.kind == "dense":
            assert isinstance(matrix, np.ndarray)  # what kind "dense" means
            block = matrix[lo:hi] if self.by_cells else matrix[:, lo:hi].T
            return self._dense_view(block)
        compressed = cast("_Compressed", matrix)  # kind "sparse": write_matrix made it CSR or CSC
        indptr = compressed.indptr[lo : hi + 1]
        first, last = int(indptr[0]), int(indptr[-1])
        return self._sparse_arrays(indptr, compressed.indices[first:last], compressed.data[first:last])

    def _canonical(self, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray, n_major: int) -> _SparseBand:
        """A band's arrays sorted and with duplicates summed, in new arrays: the input (views) is never changed.

        ``data`` is the unsigned view the kernels take; duplicates are summed as values of the dataset's dtype.
        """
        n_minor = self.n_genes if self.by_cells else self.n_cells
        values, positions = data.view(self.dtype).copy(), indices.copy()
        block: sparse.csr_matrix | sparse.csc_matrix
        if self.by_cells:
            block = sparse.csr_matrix((values, positions, indptr - indptr[0]), shape=(n_major, n_minor))
        else:
            block = sparse.csc_matrix((values, positions, indptr - indptr[0]), shape=(n_minor, n_major))
        block.sum_duplicates()
        return self._sparse_arrays(block.indptr, block.indices, block.data)

    def _sparse_arrays(self, indptr: np.ndarray, indices: np.ndarray, data: np.ndarray) -> _SparseBand:
        if data.dtype != self.dtype:
            data = data.astype(self.dtype)
        return _SparseBand((indptr, indices, data.view(self.unsigned)))

    def _dense_view(self, block: np.ndarray) -> np.ndarray:
        if block.ndim != 2:
            msg = f"expected 2-dimensional rows of the matrix for {self.dset.name}, got shape {block.shape}"
            raise ValueError(msg)
        block = np.ascontiguousarray(block, dtype=self.dtype)
        return block.view(self.unsigned)


class _RawChunks(list):
    """``[(offset, encoded bytes), ...]``: chunks of one task copied as stored from another dataset."""

    __slots__ = ()


class _SparseBand(tuple):
    """``(indptr, indices, data)`` of one band; a type of its own so it is told apart from dense bands."""

    __slots__ = ()


if TYPE_CHECKING:
    #: The input rows of one task: its chunks copied as stored, or the rows as kernel-ready arrays.
    _Band: TypeAlias = _RawChunks | _SparseBand | npt.NDArray[Any]
    #: Chunk columns (rows) ``start:stop`` of one task, with its input rows when they were read ahead.
    _Task: TypeAlias = tuple[int, int] | tuple[int, int, _Band]


def _write_simple(dset: h5py.Dataset, matrix: _Input) -> None:
    """Write through h5py one band of cells at a time (for dtypes the kernels do not handle)."""
    n_genes, n_cells = dset.shape
    if is_sparse(matrix) and matrix.format != "csr":
        matrix = sparse.csr_matrix(matrix)
    band = band_width(n_genes, dset.dtype.itemsize, dset.chunks[1] if dset.chunks else 64)
    for start in range(0, n_cells, band):
        stop = min(n_cells, start + band)
        block = matrix[start:stop]
        if is_sparse(block):
            if block.nnz == 0:
                continue  # unwritten chunks read back as the fill value, 0
            block = block.toarray()
        dset[:, start:stop] = np.asarray(block, dtype=dset.dtype).T
