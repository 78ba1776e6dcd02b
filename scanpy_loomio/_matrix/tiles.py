"""Values, tiles and bands: what the writer and the readers share about the data the compiled kernels work on.

A chunk's values are handled as their unsigned bit patterns (a *tile*); a *band* is a run of whole chunk columns
(cells) or rows (genes). The kernels themselves live in :mod:`scanpy_loomio._matrix.kernels` (compiled) and, for
the writer without numba, :mod:`scanpy_loomio._matrix.numpy_kernels`.
"""

from __future__ import annotations

import sys
from functools import cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from types import ModuleType

#: Upper bound on the dense band the h5py paths build while converting, in bytes.
BAND_BYTES = 32 * 2**20
INDEX32_MAX = np.iinfo(np.int32).max
#: Return codes of the kernels' ``check_compressed``.
COMPRESSED_OK = 0
COMPRESSED_MALFORMED = 1
COMPRESSED_NOT_CANONICAL = 2


@cache
def load_kernels() -> ModuleType:
    """Import the compiled kernels on first use (importing numba takes a moment)."""
    from scanpy_loomio._matrix import kernels as _matrix_kernels  # numba: imported on first use

    return _matrix_kernels


def write_kernels(*, streaming: bool) -> ModuleType:
    """The kernels a matrix write uses: compiled (numba) ones, or numpy's for streaming writes without numba.

    A write that reads its input band by band from disk (a conversion, a backed or lazy AnnData) is paced by that
    read; in a process that has not loaded numba it uses :mod:`~scanpy_loomio._matrix.numpy_kernels`, which write
    the same bytes as fast there without numba's 90–190 MiB. In-memory matrices, and any write once numba is loaded
    (scanpy loads it), use the compiled kernels, faster where the input costs nothing to read.
    """
    if streaming and "numba" not in sys.modules:
        from scanpy_loomio._matrix import numpy_kernels

        return numpy_kernels
    return load_kernels()


def native(dtype: np.dtype) -> np.dtype:
    return dtype.newbyteorder("=") if dtype.byteorder not in "=|" else dtype


def kernel_dtype_ok(dtype: np.dtype) -> bool:
    """Whether the bit-pattern kernels handle ``dtype``."""
    return dtype.kind in "biuf" and dtype.itemsize in (1, 2, 4, 8)


def nonzero_mask(dtype: np.dtype) -> np.ndarray:
    """Bit mask whose overlap with a value's bits is zero exactly when the value equals zero."""
    unsigned = np.dtype(f"u{dtype.itemsize}")
    if dtype.kind == "f":
        return np.array([(1 << (8 * dtype.itemsize - 1)) - 1], dtype=unsigned)  # ignore the sign bit: -0.0 == 0
    return np.array([np.iinfo(unsigned).max], dtype=unsigned)


def sparse_result_dtype(dtype: np.dtype) -> np.dtype:
    """scipy.sparse has no float16; such layers come back as float32, which holds every float16 exactly."""
    dtype = native(dtype)
    return np.dtype(np.float32) if dtype == np.float16 else dtype


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def band_width(n_other: int, itemsize: int, chunk: int) -> int:
    """Number of rows per band: a multiple of the chunk size that keeps the band under BAND_BYTES."""
    per_row = max(1, n_other * itemsize)
    width = max(1, BAND_BYTES // per_row)
    return max(chunk, width - width % chunk)


def tiles_to_nonzeros(
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
    bits = np.empty((tiles.shape[0], tiles.shape[1], ceil_div(tiles.shape[2], 64)), dtype=np.uint64)
    kernels.mark_tile_nonzeros(tiles, slots, mask, n_rows, n_cols, by_column, counts, bits)
    positions = np.zeros_like(counts)
    np.cumsum(counts[:-1], out=positions[1:])
    nnz = int(positions[-1] + counts[-1]) if counts.shape[0] else 0
    indices = np.empty(nnz, dtype=index_dtype)
    data = np.empty(nnz, dtype=tiles.dtype)
    kernels.emit_tile_nonzeros(tiles, slots, bits, n_rows, by_column, positions, indices, data)
    return counts, indices, data
