"""The writer's kernels in numpy, for processes that have not loaded numba: same arguments, same results, same bytes.

Importing numba and loading its compiled kernels costs 90–190 MiB of resident memory (LLVM, numba's typing and
target contexts), more than the rest of a streaming conversion holds. Where a write streams its input from disk
(``scanpy-loomio convert``, backed and lazy AnnData objects) reading the input sets the pace, and these versions
write as fast: the scatter and the tiling are whole-array numpy operations, and the per-chunk calls into ISA-L and
HDF5 go through ctypes, which releases the GIL while the library works. In-memory writes keep the compiled kernels
(about 1.4× faster with two threads). :func:`~scanpy_loomio._matrix.tiles.write_kernels` chooses.

Every function here has the signature and the effect of the compiled kernel of the same name in
:mod:`scanpy_loomio._matrix.kernels`; the tests compare them on the same inputs, bytes of the deflated chunks
included.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from scanpy_loomio._matrix.tiles import COMPRESSED_MALFORMED, COMPRESSED_NOT_CANONICAL, COMPRESSED_OK

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy.typing as npt

    _Ints = npt.NDArray[np.integer[Any]]
    _Bits = npt.NDArray[np.unsignedinteger[Any]]

__all__ = [
    "COMPRESSED_MALFORMED",
    "COMPRESSED_NOT_CANONICAL",
    "COMPRESSED_OK",
    "check_compressed",
    "deflate_tiles",
    "dense_to_tiles",
    "sparse_to_tiles",
    "write_chunks",
]


def check_compressed(indptr: _Ints, indices: _Ints, data: _Bits, n_minor: int) -> int:
    """See :func:`scanpy_loomio._matrix.kernels.check_compressed`.

    Examples
    --------
    >>> import numpy as np
    >>> indptr, data = np.array([0, 2, 3]), np.ones(3, np.uint32)
    >>> [check_compressed(indptr, np.array(indices), data, 5) for indices in ([1, 4, 0], [4, 1, 0], [1, 5, 0])]
    [0, 2, 1]
    """
    steps = np.diff(indptr)
    if steps.shape[0] and int(steps.min()) < 0:
        return COMPRESSED_MALFORMED
    nnz = int(indptr[-1] - indptr[0])
    if nnz > min(indices.shape[0], data.shape[0]):
        return COMPRESSED_MALFORMED
    if indices.shape[0] and (int(np.min(indices)) < 0 or int(np.max(indices)) >= n_minor):
        return COMPRESSED_MALFORMED
    # Indices must increase within each row; a row's first index may be anything.
    not_increasing = np.flatnonzero(indices[1:nnz] <= indices[: max(nnz - 1, 0)]) + 1
    if not_increasing.shape[0] and not np.isin(not_increasing, indptr[1:-1] - indptr[0]).all():
        return COMPRESSED_NOT_CANONICAL
    return COMPRESSED_OK


def sparse_to_tiles(
    indptr: _Ints,
    indices: _Ints,
    data: _Bits,
    minor_block: _Ints,
    minor_offset: _Ints,
    major_is_column: bool,
    clear: bool,
    tiles: _Bits,
    filled: npt.NDArray[np.bool_],
) -> None:
    """See :func:`scanpy_loomio._matrix.kernels.sparse_to_tiles`."""
    nnz = int(indptr[-1] - indptr[0])
    _, n_block_cols, th, tw = tiles.shape
    major = np.repeat(np.arange(indptr.shape[0] - 1, dtype=np.intp), np.diff(indptr))
    minor = indices[:nnz]
    if major_is_column:  # major: loom columns (cells); minor: loom rows (genes)
        tile = minor_block[minor] * n_block_cols + major // tw
        position = (tile * th + minor_offset[minor]) * tw + major % tw
    else:
        tile = (major // th) * n_block_cols + minor_block[minor]
        position = (tile * th + major % th) * tw + minor_offset[minor]
    flat = tiles.reshape(-1)
    if clear:
        flat[position] = 0
        return
    values = data[:nnz]
    flat[position] = values
    filled.reshape(-1)[tile[values != 0]] = True


def dense_to_tiles(src: _Bits, src_is_cells_by_genes: bool, tiles: _Bits, filled: npt.NDArray[np.bool_]) -> None:
    """See :func:`scanpy_loomio._matrix.kernels.dense_to_tiles`."""
    block_rows, block_cols, th, tw = tiles.shape
    genes_by_cells = src.T if src_is_cells_by_genes else src
    n_genes, n_cells = genes_by_cells.shape
    if (n_genes, n_cells) != (block_rows * th, block_cols * tw):  # the tiles at the edges reach past the band
        padded = np.zeros((block_rows * th, block_cols * tw), dtype=src.dtype)
        padded[:n_genes, :n_cells] = genes_by_cells
        genes_by_cells = padded
    tiles[...] = genes_by_cells.reshape(block_rows, th, block_cols, tw).transpose(0, 2, 1, 3)
    filled |= tiles.any(axis=(2, 3))


def deflate_tiles(
    init: Callable[[int], None],
    deflate: Callable[[int], int],
    stream64: npt.NDArray[np.uint64],
    stream32: npt.NDArray[np.uint32],
    stream16: npt.NDArray[np.uint16],
    level: int,
    level_buffer: npt.NDArray[np.uint8],
    src: npt.NDArray[np.uint8],
    starts: _Ints,
    tile_bytes: int,
    room: int,
    out: npt.NDArray[np.uint8],
    ends: _Ints,
) -> int:
    """See :func:`scanpy_loomio._matrix.kernels.deflate_tiles`: the same ISA-L calls with the same stream settings."""
    address = stream64.ctypes.data
    src_address, out_address = src.ctypes.data, out.ctypes.data
    level_buffer_address, level_buffer_bytes = level_buffer.ctypes.data, level_buffer.shape[0]
    position = 0
    for k, start in enumerate(starts.tolist()):
        if out.shape[0] - position < room:
            return k
        init(address)
        stream64[0] = src_address + start  # next_in
        stream32[2] = tile_bytes  # avail_in
        stream64[2] = out_address + position  # next_out
        stream32[6] = room  # avail_out
        stream32[10] = level
        stream32[11] = level_buffer_bytes  # level_buf_size
        stream64[6] = level_buffer_address  # level_buf
        stream16[28] = 1  # end_of_stream
        stream16[29] = 2  # flush: FULL_FLUSH
        stream16[30] = 3  # gzip_flag: IGZIP_ZLIB
        if deflate(address) != 0:
            return k
        position += int(stream32[7])  # total_out
        ends[k] = position
    return -1


def write_chunks(
    write_chunk: Callable[..., int],
    dataset_id: int,
    packed: npt.NDArray[np.uint8],
    starts: npt.NDArray[np.int64],
    lengths: npt.NDArray[np.int64],
    offsets: npt.NDArray[np.uint64],
) -> int:
    """See :func:`scanpy_loomio._matrix.kernels.write_chunks`."""
    payloads = (packed.ctypes.data + starts).tolist()
    offset_addresses = (offsets.ctypes.data + offsets.strides[0] * np.arange(offsets.shape[0])).tolist()
    for k, (offset, length, payload) in enumerate(zip(offset_addresses, lengths.tolist(), payloads, strict=True)):
        if write_chunk(dataset_id, 0, 0, offset, length, payload) < 0:
            return k
    return -1
