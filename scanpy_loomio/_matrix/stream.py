"""Band sources: matrices that are not in memory, written to loom one band of cells at a time.

:func:`~scanpy_loomio._matrix.write_matrix` takes any array-like that gives rows (``matrix[lo:hi]``), asks for
them in increasing order, never lets one of its tasks straddle a position ``matrix.task_boundaries()`` names, and
copies the chunks ``matrix.raw_chunks(lo, hi, target)`` returns as they are. A :class:`BandSource` is such an
array-like over

- a dask array (``dask.array.Array`` of numpy or scipy.sparse blocks, any chunking): consecutive blocks are grouped
  into bands of about :data:`BAND_BYTES`, and each band is computed with the active dask scheduler while the
  engine's threads compress the chunks of the one before. Bands follow the blocks, so no block is computed twice.
- the same with a ``dask.distributed`` client active: each band becomes a task that computes the band on a worker,
  builds its dense chunk tiles and deflates them there (:func:`encode_band`), and returns the compressed chunks.
  The process writing the file only places them, in order. Rows of a chunk column that two bands share are sent
  back as they are and encoded by the writer.
- an on-disk array (an h5py or zarr dataset, anndata's backed sparse datasets): read a band at a time in the
  writing thread.

At most a few bands are held at once (the one being written, the one being computed, and results of tasks in
flight), so memory does not grow with the number of cells.
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
from collections import deque
from functools import cache
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np
from scipy import sparse

from scanpy_loomio._matrix.encode import BandResult, as_rows, encode_band
from scanpy_loomio._matrix.writer import DEFAULT_CHUNKS, DEFAULT_COMPRESSION_LEVEL, is_sparse, write_matrix

if TYPE_CHECKING:
    from collections.abc import Iterator

#: Dense bytes of one band (the chunk tiles the engine builds from it); a band is at least one chunk column high.
#: Sparse bands hold only their non-zeros, a tenth of this or less at the usual densities.
BAND_BYTES = 64 * 2**20
#: Bands a distributed write keeps in flight per worker thread.
TASKS_PER_THREAD = 2


# --------------------------------------------------------------------------------------------------
# what is streamed


def _module_of(value: Any) -> str:
    return type(value).__module__.split(".", 1)[0]


def is_dask_array(value: Any) -> bool:
    """Whether ``value`` is a ``dask.array.Array`` (without importing dask)."""
    array_module = sys.modules.get("dask.array")
    return array_module is not None and isinstance(value, array_module.Array)


def is_streamed(value: Any) -> bool:
    """Whether ``value`` is a matrix written band by band: a dask array, or an array on disk.

    On-disk arrays are h5py and zarr datasets and anndata's backed sparse datasets (``anndata.abc.CSRDataset``,
    ``CSCDataset``), as backed mode and :func:`anndata.io.sparse_dataset` give them.

    Examples
    --------
    >>> import numpy as np
    >>> is_streamed(np.zeros((2, 3)))
    False
    """
    if isinstance(value, np.ndarray) or sparse.issparse(value):
        return False
    if is_dask_array(value) or isinstance(value, h5py.Dataset):
        return True
    if _module_of(value) == "zarr" and hasattr(value, "shape") and hasattr(value, "dtype"):
        return True
    return backed_sparse_format(value) is not None


def backed_sparse_format(value: Any) -> str | None:
    """``"csr"``/``"csc"`` for anndata's backed sparse datasets, else ``None``."""
    if _module_of(value) != "anndata":
        return None
    fmt = getattr(value, "format", None)
    return fmt if fmt in ("csr", "csc") and hasattr(value, "to_memory") else None


def stand_in(value: Any) -> np.ndarray | sparse.spmatrix | sparse.sparray:
    """An all-zero matrix of the shape, dtype and container that computing ``value`` gives, costing no memory.

    Dense stand-ins are a broadcast zero (no storage); sparse ones hold no values. Planning a write needs only
    these; the values come from the band source.

    Examples
    --------
    >>> import h5py
    >>> with h5py.File("stand_in.h5", "w") as f:
    ...     dset = f.create_dataset("x", shape=(1000, 30), dtype="f4")
    ...     s = stand_in(dset)
    >>> s.shape, s.dtype == np.float32, s.strides
    ((1000, 30), True, (0, 0))
    """
    shape = tuple(int(s) for s in value.shape)
    dtype = np.dtype(value.dtype)
    cls = _sparse_class(value)
    if cls is None:
        return np.broadcast_to(np.zeros((), dtype=dtype), shape)
    return cls(shape, dtype=dtype)


def _sparse_class(value: Any) -> type | None:
    """The scipy.sparse class computing ``value`` gives, or ``None`` for dense results."""
    if is_dask_array(value):
        meta = getattr(value, "_meta", None)
        return type(meta) if sparse.issparse(meta) else None
    fmt = backed_sparse_format(value)
    if fmt is None:
        return None
    # anndata's backed datasets give their own in-memory class when sliced
    empty = value[0:0] if fmt == "csr" else value[:, 0:0]
    return type(empty) if sparse.issparse(empty) else (sparse.csr_matrix if fmt == "csr" else sparse.csc_matrix)


def in_memory(value: Any) -> Any:
    """``value`` computed or read into memory (for the small elements a streamed write keeps in memory)."""
    if is_dask_array(value):
        return value.compute()
    if backed_sparse_format(value) is not None:
        return value.to_memory()
    if is_streamed(value):
        return np.asarray(value[()])
    return value


# --------------------------------------------------------------------------------------------------
# bands


@cache
def _malloc_trim() -> Any:
    """Glibc's ``malloc_trim``, or ``None`` elsewhere."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # not glibc (musl has no malloc_trim)
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_freed_memory() -> None:
    """Give the memory of freed bands back to the system.

    glibc keeps freed blocks of a few MiB in its per-thread arenas for reuse; with the writer's threads, the
    compressing threads and dask's each filling their own, the process would grow by several bands' worth that is
    free but still resident. ``malloc_trim`` returns it; elsewhere this does nothing.
    """
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def _stored_dtype(dtype: np.dtype) -> np.dtype:
    """Loom has no bool: bool matrices are stored as uint8, as the in-memory writer stores them."""
    dtype = np.dtype(dtype)
    return np.dtype(np.uint8) if dtype.kind == "b" else dtype


def _band_rows(n_genes: int, itemsize: int, chunk_cells: int) -> int:
    """Cells per band: a multiple of the chunk width under :data:`BAND_BYTES`, at least one chunk column."""
    rows = BAND_BYTES // max(1, n_genes * itemsize)
    return max(chunk_cells, rows - rows % chunk_cells)


def _grouped_bounds(block_rows: tuple[int, ...], target: int) -> list[tuple[int, int]]:
    """Consecutive blocks grouped into bands of at least ``target`` rows (the last may be shorter)."""
    bounds = []
    start = stop = 0
    for rows in block_rows:
        stop += int(rows)
        if stop - start >= target:
            bounds.append((start, stop))
            start = stop
    if stop > start or not bounds:
        bounds.append((start, stop))
    return bounds


def _stack(parts: list[Any]) -> Any:
    if len(parts) == 1:
        return parts[0]
    if sparse.issparse(parts[0]):
        return sparse.vstack([sparse.csr_matrix(p) for p in parts], format="csr")
    return np.concatenate([np.asarray(p.toarray() if is_sparse(p) else p) for p in parts], axis=0)


class BandSource:
    """A matrix that is not in memory, as the rows the matrix engine asks for (cells × genes).

    Parameters
    ----------
    value
        A dask array, an h5py or zarr dataset, or an anndata backed sparse dataset, cells × genes.
    name
        What to call the matrix in messages (``X``, ``layers['counts']``).

    Examples
    --------
    >>> import h5py
    >>> import numpy as np
    >>> x = np.arange(300 * 20, dtype=np.int32).reshape(300, 20)
    >>> with h5py.File("source.h5", "w") as f:
    ...     f["x"] = x
    ...     source = BandSource(f["x"])
    ...     with h5py.File("band.loom", "w") as out:
    ...         _ = write_streamed(out, "matrix", source)
    >>> with h5py.File("band.loom", "r") as out:
    ...     np.array_equal(out["matrix"][:].T, x)
    True
    """

    def __init__(self, value: Any, name: str = "matrix") -> None:
        self.value = value
        self.name = name
        self.shape = tuple(int(s) for s in value.shape)
        if len(self.shape) != 2:
            msg = f"{name}: a matrix of shape {self.shape}; a loom layer needs a 2-dimensional (cells × genes) matrix"
            raise ValueError(msg)
        self.ndim = 2
        self.source_dtype = np.dtype(value.dtype)
        self.dtype = _stored_dtype(self.source_dtype)
        self.is_dask = is_dask_array(value)
        self.client: Any = None
        self.chunk_shape: tuple[int, int] = DEFAULT_CHUNKS
        self.level = DEFAULT_COMPRESSION_LEVEL
        self.bounds: list[tuple[int, int]] = []
        self._results: Iterator[BandResult] | None = None
        self._current: deque[BandResult] = deque()
        self._covered = 0
        self._closers: list[Any] = []
        #: Chunks placed as workers compressed them, and cells handed to the engine as rows (the writer encodes).
        self.placed_chunks = 0
        self.served_cells = 0

    # -- set-up -----------------------------------------------------------------------------------------
    def prepare(self, chunks: tuple[int, int], level: int) -> None:
        """Fix the file's chunk shape (as the engine clips it) and gzip level, and plan the bands."""
        n_cells, n_genes = self.shape
        self.chunk_shape = (min(int(chunks[0]), max(n_genes, 1)), min(int(chunks[1]), max(n_cells, 1)))
        self.level = int(level)
        chunk_cells = self.chunk_shape[1]
        target = _band_rows(n_genes, self.dtype.itemsize, chunk_cells)
        if self.is_dask:
            self.bounds = _grouped_bounds(self.value.chunks[0], target)
            self.client = _active_client(self.value)
        else:
            self.bounds = [(lo, min(lo + target, n_cells)) for lo in range(0, n_cells, target)] or [(0, 0)]

    def task_boundaries(self) -> list[int]:
        """Band edges: the engine gives the chunk column holding one a task of its own."""
        return [stop for _, stop in self.bounds[:-1]]

    # -- the engine's protocol ----------------------------------------------------------------------------
    def __getitem__(self, key: slice) -> Any:
        if not isinstance(key, slice):
            msg = f"{self.name}: a band source gives runs of rows (matrix[lo:hi]), got {key!r}"
            raise TypeError(msg)
        lo, hi, _ = key.indices(self.shape[0])
        self._advance(lo, hi)
        parts = []
        for result in self._current:
            for start, stop, rows in result.pieces:
                if start < hi and lo < stop:
                    parts.append(rows[max(lo, start) - start : min(hi, stop) - start])
        covered = sum(p.shape[0] for p in parts)
        if covered != hi - lo:
            msg = f"{self.name}: cells {lo}..{hi - 1} were asked for out of order; a band source reads forwards"
            raise RuntimeError(msg)
        self.served_cells += covered
        return _stack(parts)

    def compressed_rows(self, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Cells ``lo:hi`` as views of one CSR band's ``indptr``, ``indices`` and ``data``, else ``None``.

        No copy of the non-zeros, where slicing the band (``matrix[lo:hi]``) copies them; ``indptr`` keeps the band's
        offsets (the engine's kernels take an ``indptr`` that starts anywhere). ``None`` when the rows span two
        pieces or are not CSR: the engine then slices.
        """
        self._advance(lo, hi)
        for result in self._current:
            for start, stop, rows in result.pieces:
                if start <= lo and hi <= stop and isinstance(rows, sparse.csr_matrix | sparse.csr_array):
                    indptr = rows.indptr[lo - start : hi - start + 1]
                    first, last = int(indptr[0]), int(indptr[-1])
                    self.served_cells += hi - lo
                    return indptr, rows.indices[first:last], rows.data[first:last]
        return None

    def raw_chunks(self, lo: int, hi: int, target: h5py.Dataset) -> list | None:
        """Compressed chunks of cells ``lo:hi`` when workers made them, else ``None`` (the rows are then sliced)."""
        if self.client is None:
            return None
        if target.chunks != self.chunk_shape or target.dtype != self.dtype:
            msg = f"{self.name}: chunks were made for {self.chunk_shape} {self.dtype}, the file has {target.chunks}"
            raise RuntimeError(msg)
        self._advance(lo, hi)
        for result in self._current:
            a, b = result.encoded
            if a <= lo and hi <= b:
                chunks = result.take_chunks(lo, hi)
                self.placed_chunks += len(chunks)
                return chunks
        return None

    def _advance(self, lo: int, hi: int) -> None:
        """Drop results before ``lo``; fetch results until cells up to ``hi`` are there."""
        dropped = False
        while self._current and self._current[0].stop <= lo:
            self._current.popleft()
            dropped = True
        if dropped:
            release_freed_memory()
        if self._results is None:
            self._results = self._start()
        while self._covered < hi:
            try:
                result = next(self._results)
            except StopIteration:
                break
            self._current.append(result)
            self._covered = result.stop

    def close(self) -> None:
        """Stop computing bands (cancels tasks in flight) and free what is held."""
        for closer in reversed(self._closers):
            closer()
        self._closers.clear()
        self._current.clear()
        self._results = None
        self._covered = 0

    # -- producing bands ----------------------------------------------------------------------------------
    def _start(self) -> Iterator[BandResult]:
        if self.client is not None:
            return self._distributed()
        if self.is_dask:
            return self._computed()
        return self._read()

    def _read(self) -> Iterator[BandResult]:
        """Bands of an on-disk array, read in the calling (writing) thread: HDF5 serialises its calls anyway."""
        n_genes = self.shape[1]
        for lo, hi in self.bounds:
            if hi > lo:
                rows = as_rows(self.value[lo:hi], hi - lo, n_genes, self.name)
                yield BandResult(lo, hi, [(lo, hi, rows)])

    def _computed(self) -> Iterator[BandResult]:
        """Bands of a dask array, computed with the active scheduler in the writing thread.

        Not ahead in another thread: dask graphs that read HDF5 files (``read_lazy``, ``read_elem_lazy``) open and
        close them in their tasks, and HDF5 calls from other threads while this one writes chunks corrupt the
        library's state (seen as failed reads and a crashed process). The engine's threads keep compressing the
        chunks of the previous band meanwhile.
        """
        import dask  # optional dependency: only reached with a dask array in hand

        n_genes = self.shape[1]
        for lo, hi in self.bounds:
            if hi > lo:
                (block,) = dask.compute(self.value[lo:hi])
                yield BandResult(lo, hi, [(lo, hi, as_rows(block, hi - lo, n_genes, self.name))])

    def _distributed(self) -> Iterator[BandResult]:
        """Bands as tasks on the cluster that return their compressed chunks; results come back in band order."""
        import dask  # optional dependency: only reached with a dask array in hand

        client = self.client
        n_cells = self.shape[0]
        window = max(2, TASKS_PER_THREAD * sum(client.nthreads().values()))
        pending: deque = deque()
        self._closers.append(lambda: _cancel_remote(client, pending))
        bands = iter([b for b in self.bounds if b[1] > b[0]])
        options = (n_cells, self.chunk_shape, self.dtype.str, self.level)

        def submit(lo: int, hi: int) -> None:
            task = dask.delayed(encode_band, pure=True)(self.value[lo:hi], lo, *options)
            pending.append(client.compute(task, priority=-lo))

        for band in bands:
            submit(*band)
            if len(pending) >= window:
                break
        while pending:
            result = pending[0].result()
            pending.popleft()
            for band in bands:
                submit(*band)
                break
            yield result


def _cancel_remote(client: Any, pending: deque) -> None:
    futures = list(pending)
    pending.clear()
    if futures:
        with contextlib.suppress(Exception):  # the cluster may be gone already; nothing left to free then
            client.cancel(futures)


def _active_client(value: Any) -> Any:
    """The ``dask.distributed`` client dask would compute ``value`` with, or ``None`` (local schedulers)."""
    if "distributed" not in sys.modules:
        return None  # a client exists only once distributed was imported
    from dask.base import get_scheduler  # optional dependency, present with a dask array

    scheduler = get_scheduler(collections=[value])
    owner = getattr(scheduler, "__self__", None)
    client_class = getattr(sys.modules["distributed"], "Client", None)
    return owner if client_class is not None and isinstance(owner, client_class) else None


# --------------------------------------------------------------------------------------------------
# writing


def write_streamed(
    group: h5py.Group,
    name: str,
    source: BandSource,
    *,
    chunks: tuple[int, int] = DEFAULT_CHUNKS,
    compression_level: int = DEFAULT_COMPRESSION_LEVEL,
    n_threads: int | None = None,
    progress: bool = False,
) -> h5py.Dataset:
    """Write a band source as the genes × cells loom dataset ``group[name]``; see :func:`write_matrix`.

    The source is closed afterwards (also when writing fails or is interrupted: tasks still in flight are
    cancelled).
    """
    try:
        source.prepare(chunks, compression_level)
        return write_matrix(
            group,
            name,
            source,
            chunks=chunks,
            compression_level=compression_level,
            n_threads=n_threads,
            progress=progress,
        )
    finally:
        source.close()
