"""The matrix engine: loom layers (genes × cells, dense, chunked) ⇄ AnnData matrices (cells × genes).

Loom keeps every layer dense and transposed. Both directions work one band of chunks at a time, so the
whole dense layer never exists in memory.

Writing builds the dense chunk tiles of a band straight from the sparse (or dense) input, deflates them
in worker threads and hands the finished chunks to HDF5 (``write_direct_chunk``), in file order. Chunks
that hold only zeros are not stored: HDF5 returns the fill value, 0, for them.

Reading asks HDF5 once where every chunk lies, reads the compressed bytes itself, inflates them in worker
threads (with libdeflate from compiled code when it is installed) and turns each band of tiles straight into
sorted sparse non-zeros with compiled kernels, which go once into the final CSR (bands of cells) or CSC
(bands of genes) arrays. Datasets the fast path cannot decode (other filters, contiguous or compact layout,
unusual dtypes) are read through h5py band by band.

The compiled kernels live in :mod:`scanpy_loomio._matrix.kernels`.
"""

from __future__ import annotations

import gc
import os
import sys
import threading
import zlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from scipy import sparse

from scanpy_loomio._errors import LoomFormatError

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterable, Iterator
    from types import ModuleType

    import h5py

MatrixFormat = Literal["csr", "csc", "dense"]

#: loompy's own chunk shape and gzip level; files written with them are what every loom reader expects.
DEFAULT_CHUNKS: tuple[int, int] = (64, 64)
DEFAULT_COMPRESSION_LEVEL = 2
#: Upper bound on the dense band the h5py paths build while converting, in bytes.
BAND_BYTES = 32 * 2**20
#: Uncompressed bytes of chunk tiles one worker task handles; bounds memory per task in flight.
TASK_BYTES = 8 * 2**20
#: Elements per segment of a sparse result when the system refuses to reserve room for all of it at once.
SEGMENT_ELEMENTS = 2**24

_FILTER_DEFLATE = 1
_FILTER_SHUFFLE = 2
_FAST_FILTERS = frozenset({_FILTER_DEFLATE, _FILTER_SHUFFLE})
_INDEX32_MAX = np.iinfo(np.int32).max
#: GIL switch interval (seconds) during chunk loops.
_SWITCH_INTERVAL = 0.0005
#: Chunks closer than this in the file are read with one call, the bytes between them read and dropped.
_READ_GAP = 64 * 2**10


# --------------------------------------------------------------------------------------------------
# shared helpers


def available_threads() -> int:
    """Number of CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def _resolve_threads(n_threads: int | None) -> int:
    if n_threads is None:
        return available_threads()
    if isinstance(n_threads, bool) or not isinstance(n_threads, int | np.integer) or n_threads < 1:
        msg = f"n_threads must be a positive integer or None (all available cores), got {n_threads!r}"
        raise ValueError(msg)
    return int(n_threads)


@cache
def _kernels() -> ModuleType:
    """Import the compiled kernels on first use (importing numba takes a moment)."""
    from scanpy_loomio._matrix import kernels as _matrix_kernels

    return _matrix_kernels


@cache
def _fast_zlib() -> ModuleType | None:
    """ISA-L's zlib-compatible module when installed: same deflate format, 2–3× faster."""
    try:
        from isal import isal_zlib
    except ImportError:
        return None
    return isal_zlib


def _compressor(level: int) -> Callable[[object], bytes]:
    """A function deflating one chunk into a zlib stream, the format of HDF5's gzip filter.

    With ISA-L installed, levels 2 and 3 use its level 1, which on count tiles is about three times as fast
    as zlib's level 2 and about 8 % smaller; level 1 uses ISA-L's fastest level (another 1.5× faster,
    about 25 % larger than zlib's level 2). Level 0 stores blocks uncompressed and levels 4–9 use zlib at
    that level, trading time for size as zlib does.
    """
    fast = _fast_zlib()
    if fast is not None and 1 <= level <= 3:
        compress = fast.compress
        fast_level = 0 if level == 1 else 1
        return lambda buffer: compress(buffer, fast_level)
    return lambda buffer: zlib.compress(buffer, level)


def _inflater() -> Callable[[object, int, int], bytes]:
    """``decompress(stream, wbits, expected_size)`` for zlib streams (ISA-L's when installed: about 2× zlib)."""
    fast = _fast_zlib()
    return fast.decompress if fast is not None else zlib.decompress


@dataclass(frozen=True)
class _Libdeflate:
    """libdeflate's whole-buffer zlib decompressor, called from compiled code (no GIL, no copies)."""

    alloc: Callable[[], int]
    free: Callable[[int], None]
    zlib_decompress: Callable


@cache
def _libdeflate() -> _Libdeflate | None:
    """Libdeflate from the system or the environment, when present and working; ``None`` otherwise.

    Optional: it inflates about 25 % faster than ISA-L and straight into the tile buffer. Set the environment
    variable ``SCANPY_LOOMIO_LIBDEFLATE=0`` to read without it.
    """
    if os.environ.get("SCANPY_LOOMIO_LIBDEFLATE", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    import ctypes
    import ctypes.util

    candidates = [ctypes.util.find_library("deflate")]
    for prefix in dict.fromkeys((sys.prefix, os.environ.get("CONDA_PREFIX", ""))):
        if prefix:
            candidates += [os.path.join(prefix, "lib", name) for name in ("libdeflate.so", "libdeflate.dylib")]
            candidates.append(os.path.join(prefix, "Library", "bin", "deflate.dll"))
    for candidate in candidates:
        if not candidate:
            continue
        try:
            lib = ctypes.CDLL(candidate)
            alloc = lib.libdeflate_alloc_decompressor
            free = lib.libdeflate_free_decompressor
            decompress = lib.libdeflate_zlib_decompress
        except (OSError, AttributeError):
            continue
        alloc.argtypes, alloc.restype = [], ctypes.c_void_p
        free.argtypes, free.restype = [ctypes.c_void_p], None
        decompress.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
        decompress.argtypes += [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
        decompress.restype = ctypes.c_int
        found = _Libdeflate(alloc, free, decompress)
        if _libdeflate_works(found):
            return found
    return None


def _libdeflate_works(lib: _Libdeflate) -> bool:
    """Inflate a known stream with ``lib`` and compare (guards against an incompatible library)."""
    import ctypes

    expected = bytes(range(256)) * 64
    stream = zlib.compress(expected, 6)
    out = ctypes.create_string_buffer(len(expected))
    actual = ctypes.c_size_t(0)
    handle = lib.alloc()
    if not handle:
        return False
    try:
        status = lib.zlib_decompress(handle, stream, len(stream), out, len(expected), ctypes.byref(actual))
    finally:
        lib.free(handle)
    return status == 0 and actual.value == len(expected) and out.raw == expected


@cache
def _inflate_errors() -> tuple[type[Exception], ...]:
    """Exceptions the inflate functions raise for damaged streams."""
    errors: tuple[type[Exception], ...] = (zlib.error,)
    fast = _fast_zlib()
    if fast is not None:
        errors += (fast.error,)
    return errors


def _ordered_map(func: Callable, items: Iterable, n_threads: int) -> Iterator:
    """``map(func, items)`` on ``n_threads`` worker threads, yielding results in order.

    At most ``2 * n_threads`` items are in flight, which bounds the memory held by finished results.
    """
    if n_threads <= 1:
        yield from map(func, items)
        return
    window = 2 * n_threads
    with ThreadPoolExecutor(n_threads, thread_name_prefix="loom-matrix") as pool:
        pending: deque = deque()
        try:
            for item in items:
                pending.append(pool.submit(func, item))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


@contextmanager
def _gc_paused() -> Generator[None, None, None]:
    """Tune the interpreter for a chunk loop, and restore it afterwards.

    The cyclic garbage collector is paused: the loops create many short-lived containers but no reference
    cycles, and each of the collector's frequent runs would also walk every object of the user's session. The
    GIL switch interval is shortened to 0.5 ms: worker threads coming back from deflate (which runs without
    the GIL) then wait less for the thread handing chunks to HDF5.
    """
    enabled = gc.isenabled()
    interval = sys.getswitchinterval()
    gc.disable()
    sys.setswitchinterval(min(interval, _SWITCH_INTERVAL))
    try:
        yield
    finally:
        sys.setswitchinterval(interval)
        if enabled:
            gc.enable()


class _NoProgress:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(enabled: bool, total: int, description: str) -> object:
    """A tqdm bar that appears only when the work lasts longer than a couple of seconds."""
    if not enabled:
        return _NoProgress()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit="chunk", unit_scale=True, delay=2, leave=False)


def _native(dtype: np.dtype) -> np.dtype:
    return dtype.newbyteorder("=") if dtype.byteorder not in "=|" else dtype


def _kernel_dtype_ok(dtype: np.dtype) -> bool:
    """Whether the bit-pattern kernels handle ``dtype``."""
    return dtype.kind in "biuf" and dtype.itemsize in (1, 2, 4, 8)


def _nonzero_mask(dtype: np.dtype) -> np.ndarray:
    """Bit mask whose overlap with a value's bits is zero exactly when the value equals zero."""
    unsigned = np.dtype(f"u{dtype.itemsize}")
    if dtype.kind == "f":
        return np.array([(1 << (8 * dtype.itemsize - 1)) - 1], dtype=unsigned)  # ignore the sign bit: -0.0 == 0
    return np.array([np.iinfo(unsigned).max], dtype=unsigned)


def _sparse_result_dtype(dtype: np.dtype) -> np.dtype:
    """scipy.sparse has no float16; such layers come back as float32, which holds every float16 exactly."""
    dtype = _native(dtype)
    return np.dtype(np.float32) if dtype == np.float16 else dtype


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


# --------------------------------------------------------------------------------------------------
# writing


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
        elif sparse.issparse(matrix) and matrix.format not in ("csr", "csc"):
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
    threads = _resolve_threads(n_threads)
    dtype = _native(np.dtype(dtype))
    n_cells, n_genes = (int(s) for s in shape)
    non_empty = n_genes > 0 and n_cells > 0
    storage: dict = {}
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
    if _kernel_dtype_ok(dtype):
        _ChunkWriter(dset, matrix, int(compression_level)).run(threads, progress=progress)
    else:
        _write_simple(dset, matrix)
    return dset


class _ChunkWriter:
    """Builds, deflates and stores the chunks of one dataset, a band of chunks per worker task."""

    def __init__(self, dset: h5py.Dataset, matrix: object, level: int) -> None:
        self.dset = dset
        self.n_genes, self.n_cells = dset.shape
        self.chunk_rows, self.chunk_cols = dset.chunks
        self.row_blocks = _ceil_div(self.n_genes, self.chunk_rows)
        self.col_blocks = _ceil_div(self.n_cells, self.chunk_cols)
        self.dtype = dset.dtype
        self.unsigned = np.dtype(f"u{self.dtype.itemsize}")
        self.compress = _compressor(level)
        self.matrix = matrix
        if sparse.issparse(matrix):
            self.kind = "sparse"
            # CSC input (cells × genes) is CSR of the loom orientation: band over genes.
            self.by_cells = matrix.format == "csr"
        elif isinstance(matrix, np.ndarray):
            self.kind = "dense"
            self.by_cells = not (matrix.flags.f_contiguous and not matrix.flags.c_contiguous)
        else:
            self.kind = "other"  # array-likes: sliced by rows, converted per band
            self.by_cells = True
        unit_tiles = self.row_blocks if self.by_cells else self.col_blocks
        unit_bytes = unit_tiles * self.chunk_rows * self.chunk_cols * self.dtype.itemsize
        self.units_per_task = max(1, TASK_BYTES // unit_bytes)
        self.unit_tiles = unit_tiles
        minor_chunk = self.chunk_rows if self.by_cells else self.chunk_cols
        minor = np.arange(self.n_genes if self.by_cells else self.n_cells, dtype=np.int64)
        self._minor_tables = (minor // minor_chunk, minor % minor_chunk)
        self._local = threading.local()

    def run(self, n_threads: int, *, progress: bool) -> None:
        n_units = self.col_blocks if self.by_cells else self.row_blocks
        tasks = self._tasks(n_units)
        write_chunk = self.dset.id.write_direct_chunk
        bar = _progress_bar(progress, n_units * self.unit_tiles, f"writing {self.dset.name}")
        try:
            with _gc_paused():
                work = self._with_bands(tasks) if self.kind == "other" else tasks
                for (start, stop), chunks in zip(tasks, _ordered_map(self._task, work, n_threads), strict=True):
                    for offset, payload in chunks:
                        write_chunk(offset, payload)
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
                cuts.update({min(n_units, cell // self.chunk_cols), min(n_units, _ceil_div(cell, self.chunk_cols))})
        edges = sorted(cuts)
        return [
            (u, min(u + self.units_per_task, stop))
            for start, stop in zip(edges[:-1], edges[1:], strict=True)
            for u in range(start, stop, self.units_per_task)
        ]

    def _with_bands(self, tasks: list[tuple[int, int]]) -> Iterator[tuple[int, int, Any]]:
        """Tasks with their input rows, read in the calling thread.

        Array-likes backed by HDF5 (h5py datasets, other loom files) must not be read from worker threads while
        this thread writes chunks.
        """
        raw_chunks = getattr(self.matrix, "raw_chunks", None) if self.by_cells else None
        for start, stop in tasks:
            lo, hi = start * self.chunk_cols, min(stop * self.chunk_cols, self.n_cells)
            copied = raw_chunks(lo, hi, self.dset) if raw_chunks is not None else None
            yield start, stop, _RawChunks(copied) if copied is not None else self._band(lo, hi)

    def _task(self, units: tuple[int, ...]) -> list[tuple[tuple[int, int], bytes]]:
        """Build the tiles of chunk columns (or rows) ``units`` and return the deflated non-empty chunks.

        ``units`` is ``(start, stop)``, or ``(start, stop, band)`` with the input rows already read.
        """
        start, stop = units[:2]
        kernels = _kernels()
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
            return list(band)
        if not isinstance(band, _SparseBand):
            tiles = np.zeros(shape, dtype=self.unsigned)
            kernels.dense_to_tiles(band, self.by_cells, tiles, filled)
            return self._deflate(tiles, filled, start)
        indptr, indices, data = band
        n_minor = self.n_genes if self.by_cells else self.n_cells
        status = kernels.check_compressed(indptr, indices, data, n_minor)
        if status == kernels.COMPRESSED_NOT_CANONICAL:  # sort and sum duplicates, this band only
            block = self._canonical_block(lo, hi)
            indptr, indices, data = self._sparse_arrays(block.indptr, block.indices, block.data)
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

    def _deflate(self, tiles: np.ndarray, filled: np.ndarray, start: int) -> list[tuple[tuple[int, int], bytes]]:
        """Deflate the filled tiles of one task, in file order, with their chunk offsets."""
        row0 = 0 if self.by_cells else start
        col0 = start if self.by_cells else 0
        # Column-major within a band of cells, row-major within a band of genes: the file order follows the
        # bands, so a reader going band by band reads the file front to back.
        order = np.argwhere(filled.T)[:, ::-1] if self.by_cells else np.argwhere(filled)
        compress = self.compress
        th, tw = self.chunk_rows, self.chunk_cols
        return [(((row0 + bi) * th, (col0 + bj) * tw), compress(tiles[bi, bj])) for bi, bj in order.tolist()]

    def _band(self, lo: int, hi: int) -> tuple | np.ndarray:
        """The input rows (cells ``lo:hi``) or columns (genes ``lo:hi``) as kernel-ready arrays.

        Sparse bands come back as ``(indptr, indices, data)`` (tagged by a tuple subclass); dense bands as a
        C-contiguous unsigned view, cells × genes for bands of cells, genes × cells for bands of genes.
        """
        matrix = self.matrix
        if self.kind == "other":
            block = matrix[lo:hi]
            if sparse.issparse(block):
                block = sparse.csr_matrix(block)
                block.sum_duplicates()
                return self._sparse_arrays(block.indptr, block.indices, block.data)
            return self._dense_view(np.asarray(block))
        if self.kind == "dense":
            block = matrix[lo:hi] if self.by_cells else matrix[:, lo:hi].T
            return self._dense_view(block)
        indptr = matrix.indptr[lo : hi + 1]
        first, last = int(indptr[0]), int(indptr[-1])
        return self._sparse_arrays(indptr, matrix.indices[first:last], matrix.data[first:last])

    def _canonical_block(self, lo: int, hi: int) -> sparse.spmatrix:
        """Rows (cells) or columns (genes) ``lo:hi`` of the input, sorted and with duplicates summed."""
        if self.by_cells:
            block = sparse.csr_matrix(self.matrix[lo:hi], copy=True)
        else:
            block = sparse.csc_matrix(self.matrix[:, lo:hi], copy=True)
        block.sum_duplicates()
        return block

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


def _write_simple(dset: h5py.Dataset, matrix: object) -> None:
    """Write through h5py one band of cells at a time (for dtypes the kernels do not handle)."""
    n_genes, n_cells = dset.shape
    if sparse.issparse(matrix) and matrix.format != "csr":
        matrix = sparse.csr_matrix(matrix)
    band = _band_width(n_genes, dset.dtype.itemsize, dset.chunks[1] if dset.chunks else 64)
    for start in range(0, n_cells, band):
        stop = min(n_cells, start + band)
        block = matrix[start:stop]
        if sparse.issparse(block):
            if block.nnz == 0:
                continue  # unwritten chunks read back as the fill value, 0
            block = block.toarray()
        dset[:, start:stop] = np.asarray(block, dtype=dset.dtype).T


def _band_width(n_other: int, itemsize: int, chunk: int) -> int:
    """Number of rows per band: a multiple of the chunk size that keeps the band under BAND_BYTES."""
    per_row = max(1, n_other * itemsize)
    width = max(1, BAND_BYTES // per_row)
    return max(chunk, width - width % chunk)


# --------------------------------------------------------------------------------------------------
# reading


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
    >>> x = sparse.random(100, 300, density=0.1, format="csr", dtype=np.float32, random_state=0)
    >>> with h5py.File("example.loom", "w") as f:
    ...     _ = write_matrix(f, "matrix", x)
    >>> with h5py.File("example.loom", "r") as f:
    ...     back = read_matrix(f["matrix"], format="csr")
    >>> back.shape, back.dtype, (back != x).nnz
    ((100, 300), dtype('float32'), 0)
    """
    if format not in ("csr", "csc", "dense"):
        msg = f"{dataset.file.filename}: {dataset.name}: got format={format!r}; pass 'csr', 'csc' or 'dense'"
        raise ValueError(msg)
    threads = _resolve_threads(n_threads)
    if dataset.ndim != 2:
        msg = (
            f"{dataset.file.filename}: {dataset.name} has shape {dataset.shape}; a loom layer is "
            "2-dimensional (genes × cells). Rewrite the file with a 2-dimensional layer."
        )
        raise ValueError(msg)
    n_genes, n_cells = dataset.shape
    dtype = dataset.dtype
    if not _kernel_dtype_ok(dtype) or dtype.kind == "b":
        return _read_simple(dataset, format=format)
    if n_genes == 0 or n_cells == 0:
        return _empty_result(n_cells, n_genes, dtype, format)
    layout = _ChunkLayout.inspect(dataset)
    if layout is None:
        return _read_banded(dataset, format=format, progress=progress)
    return _ChunkReader(dataset, layout).run(format, threads, progress=progress)


def empty_like_read(dataset: h5py.Dataset, shape: tuple[int, int], *, format: MatrixFormat = "csr") -> Any:
    """An all-zero matrix of ``shape`` of the container and dtype :func:`read_matrix` gives for ``dataset``."""
    dtype = dataset.dtype
    if format == "dense":
        return np.zeros(shape, dtype=_native(dtype))
    sparse_dtype = _sparse_result_dtype(dtype) if dtype.kind in "iuf" else _native(dtype)
    cls = sparse.csr_matrix if format == "csr" else sparse.csc_matrix
    return cls(shape, dtype=sparse_dtype)


def _empty_result(n_cells: int, n_genes: int, dtype: np.dtype, fmt: str) -> np.ndarray | sparse.spmatrix:
    if fmt == "dense":
        return np.zeros((n_cells, n_genes), dtype=_native(dtype))
    cls = sparse.csr_matrix if fmt == "csr" else sparse.csc_matrix
    return cls((n_cells, n_genes), dtype=_sparse_result_dtype(dtype))


def _read_simple(dataset: h5py.Dataset, *, format: MatrixFormat = "csr") -> np.ndarray | sparse.spmatrix:
    """Read through h5py one band of cells at a time, converting with scipy (the reference path)."""
    n_genes, n_cells = dataset.shape
    dtype = dataset.dtype
    if format == "dense":
        out = np.empty((n_cells, n_genes), dtype=_native(dtype))
    blocks = []
    chunk_cols = dataset.chunks[1] if dataset.chunks else 64
    band = _band_width(n_genes, dtype.itemsize, chunk_cols)
    sparse_dtype = _sparse_result_dtype(dtype) if dtype.kind in "iuf" else dtype
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


class _CompressedAssembler:
    """Collects the non-zeros of consecutive bands into a CSR (or CSC) matrix of unknown final size.

    The first segment reserves address space for every non-zero that could come (at most the physical memory
    size). Untouched pages of a reservation cost no memory, and shrinking it to the final size at the end
    copies nothing, so the non-zeros are written exactly once and the peak is the size of the result. Where
    the system refuses the reservation or counts reserved space as used (Linux's strict overcommit mode),
    fixed-size segments are used instead and copied into the final arrays at the end, each released as soon
    as it has been copied.
    """

    def __init__(self, n_major: int, n_minor: int, dtype: np.dtype, index_dtype: np.dtype) -> None:
        self.n_major = n_major
        self.n_minor = n_minor
        self.dtype = dtype
        self.index_dtype = index_dtype
        self.counts = np.zeros(n_major + 1, dtype=np.int64)
        self.remaining_capacity = n_major * n_minor  # more non-zeros than this cannot come
        self.segments: list[tuple[np.ndarray, np.ndarray]] = []
        self.used = 0  # elements used in the last segment
        self.nnz = 0

    def _new_segment(self) -> None:
        size = max(1, min(SEGMENT_ELEMENTS, self.remaining_capacity))
        if not self.segments and _overcommit_allowed():
            per_element = self.dtype.itemsize + self.index_dtype.itemsize
            reserve = max(1, min(self.remaining_capacity, _physical_memory() // per_element))
            try:
                pair = (np.empty(reserve, dtype=self.index_dtype), np.empty(reserve, dtype=self.dtype))
            except MemoryError:
                pass  # strict overcommit: fall back to segments
            else:
                self.segments.append(pair)
                self.remaining_capacity -= reserve
                self.used = 0
                return
        self.remaining_capacity -= size
        self.segments.append((np.empty(size, dtype=self.index_dtype), np.empty(size, dtype=self.dtype)))
        self.used = 0

    def append(self, major_start: int, counts: np.ndarray, indices: np.ndarray, data: np.ndarray) -> None:
        self.counts[1 + major_start : 1 + major_start + counts.shape[0]] = counts
        done = 0
        n = indices.shape[0]
        while done < n:
            if not self.segments or self.used == self.segments[-1][0].shape[0]:
                self._new_segment()
            seg_indices, seg_data = self.segments[-1]
            take = min(n - done, seg_indices.shape[0] - self.used)
            seg_indices[self.used : self.used + take] = indices[done : done + take]
            seg_data[self.used : self.used + take] = data[done : done + take]
            self.used += take
            done += take
        self.nnz += n

    def finish(self, fmt: str) -> sparse.csr_matrix | sparse.csc_matrix:
        nnz = self.nnz
        if len(self.segments) == 1:
            indices, data = self.segments.pop()
            # Shrink in place (the unused tail was never touched): no copy, no second peak.
            indices.resize(nnz, refcheck=False)
            data.resize(nnz, refcheck=False)
        else:
            indices = np.empty(nnz, dtype=self.index_dtype)
            data = np.empty(nnz, dtype=self.dtype)
            pos = 0
            self.segments.reverse()
            while self.segments:
                seg_indices, seg_data = self.segments.pop()
                take = min(seg_indices.shape[0], nnz - pos)
                indices[pos : pos + take] = seg_indices[:take]
                data[pos : pos + take] = seg_data[:take]
                pos += take
                del seg_indices, seg_data
        index_dtype = np.dtype(np.int64) if nnz > _INDEX32_MAX else self.index_dtype
        indptr = np.cumsum(self.counts, dtype=np.int64).astype(index_dtype, copy=False)
        cls = sparse.csr_matrix if fmt == "csr" else sparse.csc_matrix
        shape = (self.n_major, self.n_minor) if fmt == "csr" else (self.n_minor, self.n_major)
        result = cls((data, indices, indptr), shape=shape, copy=False)
        result.has_sorted_indices = True
        result.has_canonical_format = True
        return result


@cache
def _overcommit_allowed() -> bool:
    """Whether reserving address space costs nothing until it is touched (not Linux's strict accounting mode)."""
    try:
        with open("/proc/sys/vm/overcommit_memory") as setting:
            return setting.read().strip() != "2"
    except OSError:
        return True


@cache
def _physical_memory() -> int:
    """Bytes of RAM, or a conservative 4 GiB where the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 4 * 2**30


@dataclass
class _ChunkLayout:
    """Where the chunks of a dataset lie and how to decode them.

    The grid covers every chunk of the dataset, or (``row_ids``/``col_ids`` set) only the chunk rows and columns a
    selection needs: grid position ``(i, j)`` is then chunk ``(row_ids[i], col_ids[j])``.
    """

    chunk_rows: int
    chunk_cols: int
    filters: tuple[int, ...]  # filter codes in pipeline (write) order
    byte_offsets: np.ndarray  # (row blocks, column blocks) int64, -1 where the chunk is not stored
    sizes: np.ndarray  # (row blocks, column blocks) int64
    filter_masks: np.ndarray  # (row blocks, column blocks) int64, bit i set: filter i was skipped
    row_ids: np.ndarray | None = None
    col_ids: np.ndarray | None = None
    n_outside: int = 0  # index entries beyond the dataset's extent

    def chunk_offset(self, bi: int, bj: int) -> tuple[int, int]:
        """Element offset in the dataset of the chunk at grid position ``(bi, bj)``."""
        if self.row_ids is not None:
            bi = self.row_ids[bi]
        if self.col_ids is not None:
            bj = self.col_ids[bj]
        return int(bi) * self.chunk_rows, int(bj) * self.chunk_cols

    @staticmethod
    def fast_filters(dataset: h5py.Dataset) -> tuple[int, ...] | None:
        """The filter pipeline when the fast path can decode the dataset's chunks, else ``None``."""
        import h5py

        if dataset.chunks is None:
            return None  # contiguous, compact or virtual
        dsid = dataset.id
        plist = dsid.get_create_plist()
        if plist.get_layout() != h5py.h5d.CHUNKED:
            return None
        filters = tuple(plist.get_filter(i)[0] for i in range(plist.get_nfilters()))
        if not set(filters) <= _FAST_FILTERS or not hasattr(dsid, "chunk_iter"):
            return None
        return filters

    @classmethod
    def inspect(cls, dataset: h5py.Dataset) -> _ChunkLayout | None:
        """The layout when the fast path can decode the dataset, else ``None``."""
        filters = cls.fast_filters(dataset)
        if filters is None:
            return None
        records: list[tuple[int, int, int, int, int]] = []
        append = records.append

        def visit(info: object) -> None:
            offset = info.chunk_offset
            append((offset[0], offset[1], info.byte_offset, info.size, info.filter_mask))

        with _gc_paused():
            dataset.id.chunk_iter(visit)
        layout = cls.from_records(dataset, filters, records)
        # HDF5 1.14 lists the chunks of some index types (files written with libver="latest") at wrong offsets,
        # most beyond the extent; such datasets are read through h5py (as are the rare ones really shrunk).
        return None if layout.n_outside else layout

    @classmethod
    def from_records(
        cls,
        dataset: h5py.Dataset,
        filters: tuple[int, ...],
        records: list[tuple[int, ...]] | np.ndarray,
        rows: np.ndarray | None = None,
        cols: np.ndarray | None = None,
    ) -> _ChunkLayout:
        """The layout from chunk index entries ``(row offset, column offset, address, size, filter mask)``.

        ``rows``/``cols``: sorted chunk rows/columns to keep (``None``: all); entries elsewhere are dropped.
        """
        chunk_rows, chunk_cols = dataset.chunks
        n_genes, n_cells = dataset.shape
        full = (_ceil_div(n_genes, chunk_rows), _ceil_div(n_cells, chunk_cols))
        grid = (full[0] if rows is None else len(rows), full[1] if cols is None else len(cols))
        byte_offsets = np.full(grid, -1, dtype=np.int64)
        sizes = np.zeros(grid, dtype=np.int64)
        masks = np.zeros(grid, dtype=np.int64)
        n_outside = 0
        if len(records):
            table = _checked_chunk_table(dataset, records, chunk_rows * chunk_cols)
            del records
            bi = table[:, 0] // chunk_rows
            bj = table[:, 1] // chunk_cols
            inside = (bi < full[0]) & (bj < full[1])  # chunks beyond the extent hold no data
            n_outside = int(inside.shape[0] - np.count_nonzero(inside))
            for ids, position in ((rows, bi), (cols, bj)):
                if ids is not None:  # keep the selected chunks, at their positions in the sub-grid
                    at = np.minimum(np.searchsorted(ids, position), max(len(ids) - 1, 0))
                    inside &= (ids[at] == position) if len(ids) else False
                    position[:] = at
            bi, bj, table = bi[inside], bj[inside], table[inside]
            byte_offsets[bi, bj] = table[:, 2]
            sizes[bi, bj] = table[:, 3]
            masks[bi, bj] = table[:, 4]
        return cls(chunk_rows, chunk_cols, filters, byte_offsets, sizes, masks, rows, cols, n_outside)


def _checked_chunk_table(dataset: h5py.Dataset, records: list[tuple[int, ...]], chunk_size: int) -> np.ndarray:
    """The chunk index as an array, refusing entries outside the file or far larger than a chunk.

    The fast path reads these bytes itself, so a damaged index must neither send it past the end of the file nor make
    it allocate gigabytes for one chunk.
    """
    file_size = dataset.file.id.get_filesize()
    largest = 2 * chunk_size * dataset.dtype.itemsize + 4096  # compressed data is never much larger than a chunk
    try:
        table = np.asarray(records, dtype=np.int64)
        bad = (table[:, 2] < 0) | (table[:, 3] > largest) | (table[:, 2] > file_size - table[:, 3])
    except OverflowError:  # an address beyond any file
        table, bad = None, None
    if table is not None and not bad.any():
        return table
    row = records[int(np.argmax(bad))] if bad is not None else max(records, key=lambda r: r[2])
    msg = (
        f"{dataset.file.filename}: {dataset.name}: found a chunk index entry at {(row[0], row[1])} of {row[3]} bytes "
        f"at byte {row[2]}; expected chunks inside the file ({file_size} bytes) of at most {largest} bytes. The file "
        "is damaged; copy or download it again."
    )
    raise LoomFormatError(msg)


class _RawChunkSource:
    """Fetches the stored (still encoded) bytes of chunks.

    Reads the file directly at the addresses HDF5 reported when the file is a plain file on disk; otherwise
    (in-memory or file-object drivers, or when the addresses do not check out) asks HDF5 chunk by chunk.
    """

    def __init__(self, dataset: h5py.Dataset, layout: _ChunkLayout) -> None:
        self.dsid = dataset.id
        self.layout = layout
        self.fd: int | None = None
        self.base = 0
        h5file = dataset.file
        if h5file.mode != "r":
            h5file.flush()  # chunks still in HDF5's cache are not on disk yet
        path = h5file.filename
        if h5file.driver in ("sec2", "stdio") and os.path.isfile(path) and hasattr(os, "pread"):
            self.fd = _same_file_descriptor(h5file, path)
            if not self._addresses_check_out(h5file):
                os.close(self.fd)
                self.fd = None

    def _addresses_check_out(self, h5file: h5py.File) -> bool:
        """Compare one chunk read at its address with HDF5's own copy; try the user block as base."""
        stored = np.argwhere(self.layout.byte_offsets >= 0)
        if stored.shape[0] == 0:
            return True
        bi, bj = stored[0]
        expected = self.dsid.read_direct_chunk(self.layout.chunk_offset(bi, bj))[1]
        address = int(self.layout.byte_offsets[bi, bj])
        size = int(self.layout.sizes[bi, bj])
        userblock = h5file.id.get_create_plist().get_userblock()
        for base in dict.fromkeys((0, userblock)):
            if _pread_exact(self.fd, size, address + base) == expected:
                self.base = base
                return True
        return False

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def fetch_packed(self, block_rows: np.ndarray, block_cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Encoded bytes of the chunks at ``(block_rows[k], block_cols[k])`` packed into one array.

        Returns ``(packed, offsets, lengths)``: chunk ``k`` is ``packed[offsets[k]:offsets[k] + lengths[k]]``.
        Needs a file descriptor (``self.fd``). Runs of nearby chunks are read with one call each.
        """
        addresses = self.layout.byte_offsets[block_rows, block_cols] + self.base
        lengths = self.layout.sizes[block_rows, block_cols]
        if addresses.shape[0] == 0:
            return np.zeros(0, dtype=np.uint8), addresses, lengths
        order = np.argsort(addresses, kind="stable")
        starts = addresses[order]
        reach = np.maximum.accumulate(starts + lengths[order])
        breaks = np.flatnonzero(starts[1:] > reach[:-1] + _READ_GAP) + 1
        run_first = np.concatenate([[0], breaks])
        run_last = np.concatenate([breaks, [starts.shape[0]]])
        run_starts = starts[run_first]
        run_sizes = reach[run_last - 1] - run_starts
        run_positions = np.concatenate([[0], np.cumsum(run_sizes)[:-1]])
        packed = bytearray(int(run_sizes.sum()))
        view = memoryview(packed)
        for position, start, size in zip(run_positions.tolist(), run_starts.tolist(), run_sizes.tolist(), strict=True):
            _preadv_exact(self.fd, view[position : position + size], start)
        run_of = np.repeat(np.arange(run_first.shape[0]), run_last - run_first)
        offsets = np.empty_like(addresses)
        offsets[order] = starts - run_starts[run_of] + run_positions[run_of]
        return np.frombuffer(packed, dtype=np.uint8), offsets, lengths

    def fetch(self, block_rows: np.ndarray, block_cols: np.ndarray) -> list[bytes | memoryview]:
        """Encoded bytes of the stored chunks at grid positions ``(block_rows[k], block_cols[k])``, in order."""
        if block_rows.shape[0] == 0:
            return []
        if self.fd is None:
            read, offset = self.dsid.read_direct_chunk, self.layout.chunk_offset
            return [read(offset(bi, bj))[1] for bi, bj in zip(block_rows.tolist(), block_cols.tolist(), strict=True)]
        addresses = self.layout.byte_offsets[block_rows, block_cols] + self.base
        lengths = self.layout.sizes[block_rows, block_cols]
        # Read runs of nearby chunks with one call each (this package's files keep a band's chunks together;
        # other files may spread them), then hand out slices in the order asked for.
        order = np.argsort(addresses, kind="stable")
        starts = addresses[order]
        ends = starts + lengths[order]
        reach = np.maximum.accumulate(ends)
        breaks = np.flatnonzero(starts[1:] > reach[:-1] + _READ_GAP) + 1
        run_first = np.concatenate([[0], breaks])
        run_last = np.concatenate([breaks, [starts.shape[0]]])
        pieces: list[memoryview | None] = [None] * starts.shape[0]
        fd = self.fd
        sorted_lengths = lengths[order]
        for first, last in zip(run_first.tolist(), run_last.tolist(), strict=True):
            run_start = int(starts[first])
            view = memoryview(_pread_exact(fd, int(reach[last - 1]) - run_start, run_start))
            offsets = (starts[first:last] - run_start).tolist()
            for k, offset, length in zip(
                order[first:last].tolist(), offsets, sorted_lengths[first:last].tolist(), strict=True
            ):
                pieces[k] = view[offset : offset + length]
        return pieces


def _same_file_descriptor(h5file: h5py.File, path: str) -> int:
    """A descriptor on the file HDF5 has open: ``path`` may name another file by now (replaced by a writer)."""
    if h5file.driver == "sec2":  # its handle is a POSIX file descriptor
        try:
            return os.dup(h5file.id.get_vfd_handle())
        except (AttributeError, OSError, RuntimeError, TypeError, ValueError):
            pass
    return os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))


def _preadv_exact(fd: int, into: memoryview, offset: int) -> None:
    """Fill ``into`` with the file's bytes from ``offset`` on."""
    if not hasattr(os, "preadv"):
        into[:] = _pread_exact(fd, len(into), offset)
        return
    done = 0
    size = len(into)
    while done < size:
        n = os.preadv(fd, [into[done:]], offset + done)
        if n <= 0:
            msg = f"unexpected end of file reading {size} bytes at offset {offset}"
            raise OSError(msg)
        done += n


def _pread_exact(fd: int, size: int, offset: int) -> bytes:
    data = os.pread(fd, size, offset)
    while len(data) < size:  # a short read: ask for the rest
        more = os.pread(fd, size - len(data), offset + len(data))
        if not more:
            msg = f"unexpected end of file reading {size} bytes at offset {offset}"
            raise OSError(msg)
        data += more
    return data


class _ChunkReader:
    """Reads a chunked deflate/shuffle dataset: parallel inflate, per-band conversion to non-zeros."""

    def __init__(self, dataset: h5py.Dataset, layout: _ChunkLayout) -> None:
        self.dataset = dataset
        self.layout = layout
        self.n_genes, self.n_cells = dataset.shape
        self.th, self.tw = layout.chunk_rows, layout.chunk_cols
        self.row_blocks, self.col_blocks = layout.byte_offsets.shape
        file_dtype = dataset.dtype
        self.swap = not file_dtype.isnative and file_dtype.itemsize > 1
        self.dtype = _native(file_dtype)
        self.itemsize = file_dtype.itemsize
        self.unsigned = np.dtype(f"u{self.itemsize}")
        self.mask = _nonzero_mask(self.dtype)
        self.tile_bytes = self.th * self.tw * self.itemsize
        self.inflate = _inflater()
        self.libdeflate = _libdeflate()
        self._local = threading.local()
        self.plain_deflate = layout.filters == (_FILTER_DEFLATE,)
        fill = np.zeros((), dtype=file_dtype)
        fill[()] = dataset.fillvalue if dataset.fillvalue is not None else 0
        self.fill_tile = None
        if fill.view(self.unsigned) != 0:  # stored as bits, so a fill of -0.0 is kept too
            self.fill_tile = np.full((self.th, self.tw), fill, dtype=file_dtype).tobytes()

    def run(self, fmt: str, n_threads: int, *, progress: bool) -> np.ndarray | sparse.spmatrix:
        by_column = fmt != "csc"
        n_units = self.col_blocks if by_column else self.row_blocks
        unit_tiles = self.row_blocks if by_column else self.col_blocks
        per_task = max(1, TASK_BYTES // (unit_tiles * self.tile_bytes))
        tasks = [(u, min(u + per_task, n_units)) for u in range(0, n_units, per_task)]
        self.source = _RawChunkSource(self.dataset, self.layout)
        bar = _progress_bar(progress, n_units * unit_tiles, f"reading {self.dataset.name}")
        try:
            with _gc_paused():
                return self._collect(fmt, tasks, unit_tiles, n_threads, bar, by_column=by_column)
        finally:
            bar.close()
            self.source.close()

    def _collect(
        self, fmt: str, tasks: list[tuple[int, int]], unit_tiles: int, n_threads: int, bar: object, *, by_column: bool
    ) -> np.ndarray | sparse.spmatrix:
        if fmt == "dense":
            self.out = np.empty((self.n_cells, self.n_genes), dtype=self.dtype)
            for (start, stop), _ in zip(tasks, _ordered_map(self._dense_task, tasks, n_threads), strict=True):
                bar.update((stop - start) * unit_tiles)
            return self.out
        n_major, n_minor = (self.n_cells, self.n_genes) if by_column else (self.n_genes, self.n_cells)
        index_dtype = np.dtype(np.int32 if n_minor <= _INDEX32_MAX else np.int64)
        self.index_dtype = index_dtype
        assembler = _CompressedAssembler(n_major, n_minor, _sparse_result_dtype(self.dtype), index_dtype)
        task = self._csr_task if by_column else self._csc_task
        for (start, stop), pieces in zip(tasks, _ordered_map(task, tasks, n_threads), strict=True):
            for major_start, counts, indices, data in pieces:
                assembler.append(major_start, counts, indices, data.view(self.dtype))
            bar.update((stop - start) * unit_tiles)
        return assembler.finish(fmt)

    def _band_tiles(self, index: int, *, by_column: bool) -> tuple[np.ndarray, np.ndarray]:
        """Decoded tiles of chunk column (``by_column``) or chunk row ``index``, as ``(tiles, slots)``."""
        layout = self.layout
        if by_column:
            offsets = layout.byte_offsets[:, index]
            present = np.flatnonzero(offsets >= 0)
            block_rows, block_cols = present, np.full(present.shape[0], index)
        else:
            offsets = layout.byte_offsets[index, :]
            present = np.flatnonzero(offsets >= 0)
            block_rows, block_cols = np.full(present.shape[0], index), present
        masks = layout.filter_masks[block_rows, block_cols]
        size = self.tile_bytes
        n_tiles = offsets.shape[0]
        materialise_fill = self.fill_tile is not None and present.shape[0] < n_tiles
        n_slots = n_tiles if materialise_fill else present.shape[0]
        scratch = self._scratch(n_slots * size)
        if materialise_fill:  # absent chunks hold a non-zero fill value
            slots = np.arange(n_tiles, dtype=np.int64)
            targets = present.tolist()
            for position in np.flatnonzero(offsets < 0).tolist():
                scratch[position * size : (position + 1) * size] = self.fill_tile
        else:
            slots = np.full(n_tiles, -1, dtype=np.int64)
            slots[present] = np.arange(present.shape[0])
            targets = range(present.shape[0])
        plain = self.plain_deflate and not masks.any()
        if plain and self.libdeflate is not None and self.source.fd is not None:
            packed, starts, lengths = self.source.fetch_packed(block_rows, block_cols)
            self._inflate_packed(
                packed, starts, lengths, np.asarray(targets, dtype=np.int64), scratch, block_rows, block_cols
            )
        elif plain:
            raw = self.source.fetch(block_rows, block_cols)
            inflate = self.inflate
            j = 0
            try:
                for j, (k, buf) in enumerate(zip(targets, raw, strict=True)):
                    tile = inflate(buf, 15, size)
                    if len(tile) != size:
                        self._damaged(block_rows[j], block_cols[j], len(tile))
                    scratch[k * size : (k + 1) * size] = tile
            except _inflate_errors() as err:
                self._damaged(block_rows[j], block_cols[j], None, err)
        else:
            raw = self.source.fetch(block_rows, block_cols)
            rows, cols = block_rows.tolist(), block_cols.tolist()
            for j, (k, buf, skipped) in enumerate(zip(targets, raw, masks.tolist(), strict=True)):
                scratch[k * size : (k + 1) * size] = self._decode(buf, skipped, rows[j], cols[j])
        tiles = np.frombuffer(scratch, dtype=self.unsigned, count=n_slots * self.th * self.tw)
        tiles = tiles.reshape(n_slots, self.th, self.tw)
        if self.swap:
            tiles.byteswap(inplace=True)
        return tiles, slots

    def _inflate_packed(
        self,
        packed: np.ndarray,
        starts: np.ndarray,
        lengths: np.ndarray,
        targets: np.ndarray,
        scratch: memoryview,
        block_rows: np.ndarray,
        block_cols: np.ndarray,
    ) -> None:
        """Inflate packed chunks into their tile slots of ``scratch`` with libdeflate, in compiled code."""
        lib = self.libdeflate
        handle = lib.alloc()
        if not handle:
            raise MemoryError("libdeflate could not allocate a decompressor")
        try:
            out = np.frombuffer(scratch, dtype=np.uint8)
            actual = np.zeros(1, dtype=np.uint64)
            bad = _kernels().inflate_chunks(
                lib.zlib_decompress, handle, packed, starts, lengths, targets, out, self.tile_bytes, actual
            )
        finally:
            lib.free(handle)
        if bad >= 0:
            self._damaged(block_rows[bad], block_cols[bad], None)

    def _scratch(self, nbytes: int) -> memoryview:
        """A reusable buffer for decoded tiles, one per thread (reuse avoids page faults on every band)."""
        buffer = getattr(self._local, "buffer", None)
        if buffer is None or len(buffer) < nbytes:
            buffer = self._local.buffer = memoryview(bytearray(nbytes))
        return buffer

    def _decode(self, payload: bytes | memoryview, skipped: int, bi: int, bj: int) -> bytes:
        """Undo the filter pipeline for one chunk, last filter first."""
        for position in range(len(self.layout.filters) - 1, -1, -1):
            if skipped & (1 << position):
                continue
            code = self.layout.filters[position]
            if code == _FILTER_DEFLATE:
                try:
                    payload = self.inflate(payload, 15, self.tile_bytes)
                except _inflate_errors() as err:
                    self._damaged(bi, bj, None, err)
            elif code == _FILTER_SHUFFLE and self.itemsize > 1 and len(payload) == self.tile_bytes:
                payload = np.frombuffer(payload, dtype=np.uint8).reshape(self.itemsize, -1).T.tobytes()
        if len(payload) != self.tile_bytes:
            self._damaged(bi, bj, len(payload))
        return payload

    def _damaged(self, bi: int, bj: int, got: int | None, cause: Exception | None = None) -> None:
        found = "a damaged deflate stream" if got is None else f"{got} bytes"
        if cause is not None:
            found += f" ({cause})"
        msg = (
            f"{self.dataset.file.filename}: the chunk at {self.layout.chunk_offset(bi, bj)} of "
            f"{self.dataset.name} decodes to {found}, expected {self.tile_bytes} bytes; the file is damaged. "
            "Re-create it from its source."
        )
        raise LoomFormatError(msg) from cause

    def _csr_task(self, units: tuple[int, int]) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
        kernels = _kernels()
        pieces = []
        for bj in range(*units):
            tiles, slots = self._band_tiles(bj, by_column=True)
            start = bj * self.tw
            width = min(self.tw, self.n_cells - start)
            pieces.append((start, *self._nonzeros(kernels, tiles, slots, self.n_genes, width, by_column=True)))
        return pieces

    def _csc_task(self, units: tuple[int, int]) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
        kernels = _kernels()
        pieces = []
        for bi in range(*units):
            tiles, slots = self._band_tiles(bi, by_column=False)
            start = bi * self.th
            height = min(self.th, self.n_genes - start)
            pieces.append((start, *self._nonzeros(kernels, tiles, slots, height, self.n_cells, by_column=False)))
        return pieces

    def _nonzeros(
        self, kernels: ModuleType, tiles: np.ndarray, slots: np.ndarray, n_rows: int, n_cols: int, *, by_column: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return _tiles_to_nonzeros(kernels, tiles, slots, self.mask, n_rows, n_cols, self.index_dtype, by_column)

    def _dense_task(self, units: tuple[int, int]) -> None:
        kernels = _kernels()
        out = self.out.view(self.unsigned)
        for bj in range(*units):
            tiles, slots = self._band_tiles(bj, by_column=True)
            start = bj * self.tw
            width = min(self.tw, self.n_cells - start)
            kernels.tiles_to_dense(tiles, slots, self.n_genes, width, out[start : start + width])


class CellBands:
    """Reads bands of cells (every gene) of one loom dataset as dense cells × genes arrays.

    Chunked deflate/shuffle datasets go through the fast path (compressed bytes read directly, inflated in worker
    threads); others through h5py. Call :meth:`close` when done.

    Examples
    --------
    >>> import h5py
    >>> import numpy as np
    >>> x = np.arange(200 * 30, dtype=np.float32).reshape(200, 30)
    >>> with h5py.File("bands.loom", "w") as f:
    ...     _ = write_matrix(f, "matrix", x)
    >>> with h5py.File("bands.loom", "r") as f:
    ...     bands = CellBands(f["matrix"])
    ...     np.array_equal(bands.read(70, 150), x[70:150])
    True
    """

    def __init__(self, dataset: h5py.Dataset, n_threads: int | None = None) -> None:
        self.dataset = dataset
        self.n_genes, self.n_cells = dataset.shape
        self.threads = _resolve_threads(n_threads)
        dtype = dataset.dtype
        layout = None
        if _kernel_dtype_ok(dtype) and dtype.kind != "b" and self.n_genes > 0 and self.n_cells > 0:
            layout = _ChunkLayout.inspect(dataset)
        self.reader: _ChunkReader | None = None
        if layout is not None:
            self.reader = _ChunkReader(dataset, layout)
            self.reader.source = _RawChunkSource(dataset, layout)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Cells ``start:stop`` as a C-contiguous cells × genes array of the dataset's (native) dtype."""
        reader = self.reader
        if reader is None:
            return np.ascontiguousarray(self.dataset[:, start:stop].T, dtype=_native(self.dataset.dtype))
        tw = reader.tw
        first, last = start // tw, _ceil_div(stop, tw)
        origin = first * tw
        out = np.empty((min(last * tw, self.n_cells) - origin, self.n_genes), dtype=reader.dtype)
        view = out.view(reader.unsigned)
        kernels = _kernels()

        def task(bj: int) -> None:
            tiles, slots = reader._band_tiles(bj, by_column=True)
            lo = bj * tw
            width = min(tw, self.n_cells - lo)
            kernels.tiles_to_dense(tiles, slots, self.n_genes, width, view[lo - origin : lo - origin + width])

        for _ in _ordered_map(task, range(first, last), self.threads):
            pass
        return out[start - origin : stop - origin]

    def raw_chunks(self, start: int, stop: int, target: h5py.Dataset, shift: int) -> list | None:
        """The stored chunks of cells ``start:stop`` as ``[(offset in target, bytes)]``, or ``None``.

        ``target``'s cells are this dataset's moved by ``shift``. ``None`` when the chunks cannot be copied as they
        are: another chunk shape, filters or dtype, not whole chunk columns, or chunks stored with a filter skipped.
        """
        reader = self.reader
        if reader is None or self.dataset.dtype != target.dtype or self.dataset.chunks != target.chunks:
            return None
        if reader.fill_tile is not None or target.fillvalue != 0:
            return None  # chunks that are not stored read as the fill value
        layout = reader.layout
        tw, th = reader.tw, reader.th
        ends_together = stop == self.n_cells and stop + shift == target.shape[1]
        if start % tw or shift % tw or (stop % tw and not ends_together) or target.shape[0] != self.n_genes:
            return None
        plist = target.id.get_create_plist()
        target_filters = tuple(plist.get_filter(i)[0] for i in range(plist.get_nfilters()))
        if target_filters != layout.filters:
            return None
        columns = np.arange(start // tw, _ceil_div(stop, tw))
        block_rows, block_cols = np.nonzero(layout.byte_offsets[:, columns].T >= 0)[::-1]
        block_cols = columns[block_cols]
        if layout.filter_masks[block_rows, block_cols].any():
            return None
        payloads = reader.source.fetch(block_rows, block_cols)
        return [
            ((int(bi) * th, int(bj) * tw + shift), bytes(payload))
            for bi, bj, payload in zip(block_rows.tolist(), block_cols.tolist(), payloads, strict=True)
        ]

    @property
    def chunk_cells(self) -> int:
        """Cells per chunk column."""
        return self.dataset.chunks[1] if self.dataset.chunks else 64

    def close(self) -> None:
        """Release the file descriptor of the fast path."""
        if self.reader is not None:
            self.reader.source.close()


def _tiles_to_nonzeros(
    kernels: ModuleType,
    tiles: np.ndarray,
    slots: np.ndarray,
    mask: np.ndarray,
    n_rows: int,
    n_cols: int,
    index_dtype: np.dtype,
    by_column: bool,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-output-row counts, indices and data (unsigned view) of one band of tiles."""
    counts = np.zeros(n_cols if by_column else n_rows, dtype=np.int64)
    bits = np.empty((tiles.shape[0], tiles.shape[1], _ceil_div(tiles.shape[2], 64)), dtype=np.uint64)
    kernels.mark_tile_nonzeros(tiles, slots, mask, n_rows, n_cols, by_column, counts, bits)
    positions = np.zeros_like(counts)
    np.cumsum(counts[:-1], out=positions[1:])
    nnz = int(positions[-1] + counts[-1]) if counts.shape[0] else 0
    indices = np.empty(nnz, dtype=index_dtype)
    data = np.empty(nnz, dtype=tiles.dtype)
    kernels.emit_tile_nonzeros(tiles, slots, bits, n_rows, by_column, positions, indices, data)
    return counts, indices, data


def _read_banded(dataset: h5py.Dataset, *, format: MatrixFormat, progress: bool) -> np.ndarray | sparse.spmatrix:
    """Read through h5py a band at a time (layouts and filters the fast path does not decode).

    HDF5 decodes; the kernels still turn each band straight into non-zeros, so memory stays bounded.
    """
    kernels = _kernels()
    n_genes, n_cells = dataset.shape
    file_dtype = dataset.dtype
    dtype = _native(file_dtype)
    unsigned = np.dtype(f"u{dtype.itemsize}")
    mask = _nonzero_mask(dtype)
    chunk_rows, chunk_cols = dataset.chunks or (1, 1)
    by_column = format != "csc"
    if by_column:
        width = _band_width(n_genes, dtype.itemsize, chunk_cols)
        n_major, n_minor = n_cells, n_genes
    else:
        width = _band_width(n_cells, dtype.itemsize, chunk_rows)
        n_major, n_minor = n_genes, n_cells
    bands = [(start, min(start + width, n_major)) for start in range(0, n_major, width)]
    bar = _progress_bar(progress, len(bands), f"reading {dataset.name}")
    if format == "dense":
        out = np.empty((n_cells, n_genes), dtype=dtype)
    else:
        index_dtype = np.dtype(np.int32 if n_minor <= _INDEX32_MAX else np.int64)
        assembler = _CompressedAssembler(n_major, n_minor, _sparse_result_dtype(dtype), index_dtype)
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
                counts, indices, data = _tiles_to_nonzeros(
                    kernels, tiles, slots, mask, n_rows, n_cols, index_dtype, by_column
                )
                assembler.append(start, counts, indices, data.view(dtype))
            bar.update(1)
    finally:
        bar.close()
    return out if format == "dense" else assembler.finish(format)


# Public within the package: the selection reader (scanpy_loomio._matrix.subset) builds on these.
ChunkLayout = _ChunkLayout
ChunkReader = _ChunkReader
RawChunkSource = _RawChunkSource
CompressedAssembler = _CompressedAssembler
INDEX32_MAX = _INDEX32_MAX
gc_paused = _gc_paused
kernel_dtype_ok = _kernel_dtype_ok
load_kernels = _kernels
nonzero_mask = _nonzero_mask
ordered_map = _ordered_map
progress_bar = _progress_bar
resolve_threads = _resolve_threads
sparse_result_dtype = _sparse_result_dtype
tiles_to_nonzeros = _tiles_to_nonzeros
