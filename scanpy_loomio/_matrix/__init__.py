"""The matrix engine: loom layers (genes × cells, dense, chunked) ⇄ AnnData matrices (cells × genes).

Loom keeps every layer dense and transposed. Both directions work one band of chunks at a time, so the whole dense
layer never exists in memory. The modules:

- :mod:`~scanpy_loomio._matrix.writer`: :func:`write_matrix`, building and deflating chunk tiles in worker threads;
- :mod:`~scanpy_loomio._matrix.reader`: :func:`read_matrix`, with the h5py paths for what the fast reader cannot
  decode, and :func:`prepare_matrix`, which locates a matrix so that another thread can read it;
  :mod:`~scanpy_loomio._matrix.chunk_reader`, the fast reader itself;
- :mod:`~scanpy_loomio._matrix.bands`: :class:`CellBands`, dense bands of cells for streaming (concatenation);
- :mod:`~scanpy_loomio._matrix.assembler`: the sparse result, collected band by band;
- :mod:`~scanpy_loomio._matrix.chunks`: the chunk index and the raw (still encoded) chunk bytes;
- :mod:`~scanpy_loomio._matrix.rows`: attributes and graph edge lists, their chunks deflated in worker threads too;
- :mod:`~scanpy_loomio._matrix.deflate`: the compression backends (zlib, ISA-L, libdeflate) and filter pipeline;
- :mod:`~scanpy_loomio._matrix.pool`: worker threads, interpreter tuning, progress bars;
- :mod:`~scanpy_loomio._matrix.tiles`: dtypes, tiles and bands the kernels work on;
- :mod:`~scanpy_loomio._matrix.kernels`: the compiled kernels (numba, imported on first use);
- :mod:`~scanpy_loomio._matrix.numpy_kernels`: the writer's kernels in numpy, for streaming writes in processes that
  have not loaded numba (the same bytes, without numba's memory);
- :mod:`~scanpy_loomio._matrix.costs`: the memory a read of a stored matrix needs.

Tunables (``BAND_BYTES``, ``TASK_BYTES``, ``SEGMENT_ELEMENTS``) are read from the module that defines them: change
them there, not on the names re-exported here.
"""

from scanpy_loomio._matrix.bands import CellBands
from scanpy_loomio._matrix.pool import available_threads
from scanpy_loomio._matrix.reader import MatrixFormat, PendingMatrix, empty_like_read, prepare_matrix, read_matrix
from scanpy_loomio._matrix.tiles import BAND_BYTES, band_width
from scanpy_loomio._matrix.writer import (
    DEFAULT_CHUNKS,
    DEFAULT_COMPRESSION_LEVEL,
    check_matrix_options,
    write_matrix,
)

__all__ = [
    "BAND_BYTES",
    "DEFAULT_CHUNKS",
    "DEFAULT_COMPRESSION_LEVEL",
    "CellBands",
    "MatrixFormat",
    "PendingMatrix",
    "available_threads",
    "band_width",
    "check_matrix_options",
    "empty_like_read",
    "prepare_matrix",
    "read_matrix",
    "write_matrix",
]
