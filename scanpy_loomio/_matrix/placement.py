"""Placing finished compressed chunks in the file, without holding the GIL while HDF5 stores them.

h5py's ``write_direct_chunk`` holds the GIL for the whole HDF5 call, so the threads building and deflating the next
chunks wait while one thread stores. Here a task's chunks are stored in one call of a compiled loop that calls
``H5Dwrite_chunk`` of the HDF5 library h5py itself loaded and releases the GIL meanwhile. h5py's own lock is held
during that loop: HDF5 is not thread-safe, and h5py calls from other threads wait for it as they wait for each other.
The first chunk a placer stores is read back through h5py; where anything does not check out (no loaded HDF5 found,
another version than h5py's, a read-back that differs), chunks are stored through h5py as before.
"""

from __future__ import annotations

import ctypes
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from scanpy_loomio._matrix.tiles import load_kernels
from scanpy_loomio._settings import switched_off

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType

try:
    from h5py._objects import phil as _h5py_lock  # not public: the lock h5py holds around each HDF5 call
except ImportError:
    _h5py_lock = None

#: HDF5's shared library as wheels (``libhdf5-8c29085d.so.310.5.1``) and distributions (``libhdf5.so.310``) name it
_LIBRARY_NAME = re.compile(r"libhdf5(-[0-9a-f]+)?\.(so(\.[0-9]+)*|([0-9]+\.)*dylib)")


@dataclass(frozen=True)
class ChunkBatch:
    """Compressed chunks in the order they are stored.

    Chunk ``k`` starts at element ``offsets[k]`` (genes, cells) of the dataset and is stored as
    ``packed[starts[k]:starts[k] + lengths[k]]``.

    Examples
    --------
    >>> batch = ChunkBatch.from_payloads([(0, 0), (0, 64)], [b"ab", b"cde"])
    >>> len(batch), [(offset, bytes(payload)) for offset, payload in batch.items()]
    (2, [((0, 0), b'ab'), ((0, 64), b'cde')])
    """

    offsets: np.ndarray
    packed: np.ndarray
    starts: np.ndarray
    lengths: np.ndarray

    @classmethod
    def from_payloads(cls, offsets: Sequence[tuple[int, int]] | np.ndarray, payloads: Sequence[bytes]) -> ChunkBatch:
        lengths = np.fromiter(map(len, payloads), dtype=np.int64, count=len(payloads))
        starts = np.zeros_like(lengths)
        np.cumsum(lengths[:-1], out=starts[1:])
        packed = np.frombuffer(b"".join(payloads), dtype=np.uint8)
        return cls(np.ascontiguousarray(np.reshape(offsets, (-1, 2)), dtype=np.uint64), packed, starts, lengths)

    @classmethod
    def from_ends(cls, offsets: np.ndarray, out: np.ndarray, ends: np.ndarray) -> ChunkBatch:
        """Chunks stored back to back in ``out``, chunk ``k`` ending at ``out[ends[k]]`` (copied out of ``out``)."""
        lengths = np.diff(ends, prepend=0)
        packed = out[: int(ends[-1])].copy() if ends.shape[0] else out[:0].copy()
        return cls(np.ascontiguousarray(offsets, dtype=np.uint64), packed, ends - lengths, lengths)

    def __len__(self) -> int:
        return int(self.lengths.shape[0])

    def items(self) -> Iterator[tuple[tuple[int, int], memoryview]]:
        """``(offset, payload)`` of each chunk."""
        view = memoryview(self.packed)
        rows = zip(self.offsets.tolist(), self.starts.tolist(), self.lengths.tolist(), strict=True)
        for (row, col), start, length in rows:
            yield (row, col), view[start : start + length]


@cache
def _direct_write() -> Any | None:
    """``H5Dwrite_chunk`` of the HDF5 library h5py loaded, as a ctypes function; ``None`` when it cannot be checked.

    Needs h5py's lock and exactly one HDF5 library of h5py's version mapped into the process.

    ``SCANPY_LOOMIO_DIRECT_WRITE=0`` in the environment stores every chunk through h5py.
    """
    if switched_off("SCANPY_LOOMIO_DIRECT_WRITE"):
        return None
    if _h5py_lock is None:
        return None
    path = _loaded_hdf5()
    if path is None:
        return None
    try:
        lib = ctypes.CDLL(path)
        version = [ctypes.c_uint() for _ in range(3)]
        if lib.H5get_libversion(*(ctypes.byref(v) for v in version)) < 0:
            return None
        if tuple(v.value for v in version) != tuple(h5py.version.hdf5_version_tuple[:3]):
            return None
        write_chunk = lib.H5Dwrite_chunk
    except (OSError, AttributeError):
        return None
    # herr_t H5Dwrite_chunk(hid_t dset, hid_t dxpl, uint32_t filters, const hsize_t *offset, size_t size, const void *buf)
    write_chunk.argtypes = [ctypes.c_int64, ctypes.c_int64, ctypes.c_uint32]
    write_chunk.argtypes += [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    write_chunk.restype = ctypes.c_int
    return write_chunk


def _loaded_hdf5() -> str | None:
    """Path of the one HDF5 library mapped into this process (h5py's), from ``/proc/self/maps``; else ``None``."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as maps:
            paths = {line.split(maxsplit=5)[-1].strip() for line in maps if "libhdf5" in line}
    except OSError:
        return None
    found = {path for path in paths if path.startswith("/") and _LIBRARY_NAME.fullmatch(os.path.basename(path))}
    return found.pop() if len(found) == 1 else None


class ChunkPlacer:
    """Stores the compressed chunks of one dataset, batch by batch, in the order they are given."""

    def __init__(self, dataset: h5py.Dataset, kernels: Callable[[], ModuleType] = load_kernels) -> None:
        """``kernels`` gives the kernels whose ``write_chunks`` stores a batch (see ``tiles.write_kernels``)."""
        self.dataset = dataset
        self.kernels = kernels
        self.hdf5_write_chunk = _direct_write()
        self.checked = False

    def place(self, batch: ChunkBatch) -> None:
        if len(batch) == 0:
            return
        if self.hdf5_write_chunk is None:
            self._through_h5py(batch)
            return
        with _h5py_lock:
            failed = self.kernels().write_chunks(
                self.hdf5_write_chunk, self.dataset.id.id, batch.packed, batch.starts, batch.lengths, batch.offsets
            )
        if failed >= 0:  # HDF5 said no: store the rest through h5py, which raises HDF5's error
            self._through_h5py(batch, first=failed)
            return
        if not self.checked:
            self.checked = True
            offset, payload = next(batch.items())
            if self.dataset.id.read_direct_chunk(offset)[1] != payload:
                self.hdf5_write_chunk = None  # not the library h5py uses after all: store again the h5py way
                self._through_h5py(batch)

    def _through_h5py(self, batch: ChunkBatch, first: int = 0) -> None:
        write_chunk = self.dataset.id.write_direct_chunk
        for k, (offset, payload) in enumerate(batch.items()):
            if k >= first:
                write_chunk(offset, payload)


__all__ = ["ChunkBatch", "ChunkPlacer"]
