"""Attributes and graph edges written front to back and read back, a whole chunk at a time.

h5py hands values to HDF5, which deflates chunk after chunk in the calling thread with zlib. For the larger
attributes and the edge lists of kNN graphs (several megabytes each) that is a serial step around the parallel matrix
write. Here rows are gathered into whole chunks, deflated as the matrix chunks are (ISA-L when installed) in worker
threads, and stored with ``write_direct_chunk``; the file holds the same values in the same chunked, gzip-filtered
datasets. Datasets this cannot store byte for byte (text of variable length, records, other filters) go through h5py.
Reading, :func:`read_rows` takes the stored chunks as they are (``read_direct_chunk``) and inflates them with
libdeflate, about twice as fast as HDF5's zlib, straight into the array it returns.
"""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING

import numpy as np

from scanpy_loomio._matrix import deflate  # deflate.libdeflate is looked up at run time (tests switch it off)
from scanpy_loomio._matrix.deflate import compressor
from scanpy_loomio._matrix.pool import ordered_map, resolve_threads

if TYPE_CHECKING:
    import h5py

#: Kinds of values whose bytes in memory are the bytes HDF5 stores (bool, integers, floats, fixed-length text).
_RAW_KINDS = frozenset("biufS")
#: Threads deflating one dataset at most: its chunks are few and each thread holds one back.
MAX_THREADS = 8
#: Datasets smaller than this are deflated in the calling thread: starting worker threads would cost more (an
#: annotation column of ten thousand cells is 40 kB; SCENIC's files have thousands of them).
PARALLEL_BYTES = 4 * 2**20
#: Rows gathered before they are deflated together (at least a chunk per thread): what starting the threads once a
#: round is spread over, and what a dataset being written holds back.
STAGE_BYTES = 2**20


def deflates_rows(dset: h5py.Dataset) -> bool:
    """Whether :class:`DeflatedRows` can write ``dset``: gzip as its only filter, whole rows per chunk, plain values."""
    dtype = dset.dtype
    return (
        dset.chunks is not None
        and dset.compression == "gzip"
        and dset.id.get_create_plist().get_nfilters() == 1
        and tuple(dset.chunks[1:]) == tuple(dset.shape[1:])
        and dtype.kind in _RAW_KINDS
        and dtype.isnative
        and dtype.names is None
    )


class DeflatedRows:
    """Appends rows to a chunked, gzip-filtered dataset from its first row on; :meth:`close` stores the last chunk.

    Datasets :func:`deflates_rows` refuses are written through h5py, a block of rows at a time.

    Examples
    --------
    >>> import h5py
    >>> import numpy as np
    >>> with h5py.File("rows.h5", "w") as f:
    ...     dset = f.create_dataset("w", shape=(10_000,), dtype="f8", chunks=(4096,), compression="gzip")
    ...     with DeflatedRows(dset, n_threads=2) as rows:
    ...         rows.append(np.arange(6_000.0))
    ...         rows.append(np.arange(4_000.0))
    ...     float(dset[5_999]), float(dset[6_000]), float(dset[-1])
    (5999.0, 0.0, 3999.0)
    """

    def __init__(self, dset: h5py.Dataset, *, n_threads: int | None = None) -> None:
        self.dset = dset
        self.direct = deflates_rows(dset)
        self.threads = resolve_threads(n_threads)
        self.chunk_rows = int(dset.chunks[0]) if dset.chunks else 0
        self.stored = 0  # rows stored so far
        # Whole chunks wait here to be deflated, a round of at least one per thread and about STAGE_BYTES.
        self.stage = np.empty(0, dtype=dset.dtype)
        self.staged = 0
        if self.direct:
            n_chunks = -(-int(dset.shape[0]) // self.chunk_rows)
            self.chunk_bytes = self.chunk_rows * int(np.prod(dset.shape[1:], dtype=np.int64)) * dset.dtype.itemsize
            small = n_chunks * self.chunk_bytes < PARALLEL_BYTES
            self.threads = 1 if small else max(1, min(self.threads, MAX_THREADS, n_chunks))
            round_chunks = max(1, min(n_chunks, max(self.threads, STAGE_BYTES // max(self.chunk_bytes, 1))))
            self.stage = np.zeros((self.chunk_rows * round_chunks, *dset.shape[1:]), dtype=dset.dtype)
            self.compress = compressor(int(dset.compression_opts))

    def __enter__(self) -> DeflatedRows:
        return self

    def __exit__(self, kind: object, *_: object) -> None:
        if kind is None:
            self.close()

    def append(self, values: np.ndarray) -> None:
        """Store ``values`` as the next rows; rows short of a round of whole chunks wait for the next call."""
        values = np.asarray(values, dtype=self.dset.dtype)
        n = values.shape[0]
        if not self.direct:
            if n:
                self.dset[self.stored : self.stored + n] = values
            self.stored += n
            return
        taken = 0
        while taken < n:
            take = min(n - taken, self.stage.shape[0] - self.staged)
            self.stage[self.staged : self.staged + take] = values[taken : taken + take]
            self.staged += take
            taken += take
            if self.staged == self.stage.shape[0]:
                self._store()

    def close(self) -> None:
        """Store what is left, the last chunk padded with zeros (HDF5 reads only the dataset's extent of it)."""
        if self.staged:
            self.stage[self.staged :] = 0
            self._store()
        if self.stored != self.dset.shape[0]:
            where = f"{self.dset.file.filename}: {self.dset.name}"
            msg = f"{where}: {self.stored} rows were written, {self.dset.shape[0]} expected"
            raise ValueError(msg)

    def _store(self) -> None:
        """Deflate the staged chunks in the worker threads and store them."""
        n_chunks = -(-self.staged // self.chunk_rows)
        raw = memoryview(self.stage.reshape(-1).view(np.uint8))
        chunk_bytes = self.chunk_bytes
        views = [raw[k * chunk_bytes : (k + 1) * chunk_bytes] for k in range(n_chunks)]
        tail = (0,) * (len(self.dset.shape) - 1)
        write_chunk = self.dset.id.write_direct_chunk
        for k, payload in enumerate(ordered_map(self.compress, views, min(self.threads, n_chunks))):
            write_chunk((self.stored + k * self.chunk_rows, *tail), payload)
        self.stored += self.staged
        self.staged = 0


def read_rows(dset: h5py.Dataset, start: int = 0, stop: int | None = None) -> np.ndarray | None:
    """Rows ``start:stop`` of a dataset :func:`deflates_rows` accepts, its chunks inflated by libdeflate.

    ``None`` where that is not possible: libdeflate missing, the file open for writing, a chunk not stored or
    stored without its filter, a stream that does not inflate to a whole chunk. The caller then reads through h5py,
    which also names what is wrong with the file.

    Examples
    --------
    >>> import h5py
    >>> import numpy as np
    >>> with h5py.File("read_rows.h5", "w") as f:
    ...     _ = f.create_dataset("a", data=np.arange(10_000), chunks=(4096,), compression="gzip")
    >>> with h5py.File("read_rows.h5", "r") as f:
    ...     rows = read_rows(f["a"], 4_000, 9_000)
    >>> rows is None or np.array_equal(rows, np.arange(4_000, 9_000))
    True
    """
    lib = deflate.libdeflate()
    n = int(dset.shape[0]) if dset.shape else 0
    stop = n if stop is None else min(stop, n)
    start = max(0, start)
    if lib is None or dset.file.mode != "r" or stop <= start or not deflates_rows(dset):
        return None
    per_chunk = int(dset.chunks[0])
    first, last = start // per_chunk, -(-stop // per_chunk)
    out = np.empty(((last - first) * per_chunk, *dset.shape[1:]), dtype=dset.dtype)
    into = out.reshape(-1).view(np.uint8)
    chunk_bytes = into.shape[0] // (last - first)
    tail = (0,) * (len(dset.shape) - 1)
    actual = ctypes.c_size_t(0)
    handle = lib.alloc()
    if not handle:
        return None
    try:
        for j, k in enumerate(range(first, last)):
            try:
                skipped, payload = dset.id.read_direct_chunk((k * per_chunk, *tail))
            except (OSError, KeyError, ValueError, RuntimeError):
                return None  # not stored: HDF5 gives the fill value, h5py reads it
            target = into[j * chunk_bytes :].ctypes.data
            if skipped or lib.zlib_decompress(handle, payload, len(payload), target, chunk_bytes, ctypes.byref(actual)):
                return None
            if actual.value != chunk_bytes:
                return None
    finally:
        lib.free(handle)
    return out[start - first * per_chunk : stop - first * per_chunk]


__all__ = ["DeflatedRows", "deflates_rows", "read_rows"]
