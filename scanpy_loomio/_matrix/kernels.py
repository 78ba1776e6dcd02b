"""Compiled inner loops of the matrix engine.

Every kernel works on raw bit patterns (unsigned integers of the element's width), so one compiled
version serves all dtypes of that width, float16 included. A value counts as non-zero when its bits
differ from zero after masking: for floats the mask drops the sign bit, so ``-0.0`` is a zero, as in
numpy's ``!= 0``. All kernels release the GIL so worker threads run them in parallel.

Writing scatters the non-zeros of a band of rows into zeroed 64 × 64 tiles (:func:`sparse_to_tiles`, which
also sets them back to zero after deflating) or copies a dense band (:func:`dense_to_tiles`). Reading marks
the non-zeros of each tile row in a 64-bit word (:func:`mark_tile_nonzeros`, a branch-free loop that
vectorises), then visits only the set bits to emit sorted indices and values (:func:`emit_tile_nonzeros`).

This module imports numba; :mod:`scanpy_loomio._matrix` imports it only when a kernel is first needed. The writer's
kernels have numpy twins in :mod:`scanpy_loomio._matrix.numpy_kernels` (same arguments, same results) for streaming
writes in processes that have not loaded numba.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numba
import numpy as np

from scanpy_loomio._matrix.deflate import INSUFFICIENT_SPACE
from scanpy_loomio._matrix.tiles import COMPRESSED_MALFORMED, COMPRESSED_NOT_CANONICAL, COMPRESSED_OK

if TYPE_CHECKING:
    from collections.abc import Callable

    import numpy.typing as npt

    #: Integer arrays: index pointers, indices, slots, counts, positions.
    _Ints = npt.NDArray[np.integer[Any]]
    #: Arrays of raw bit patterns (unsigned integers of the element's width).
    _Bits = npt.NDArray[np.unsignedinteger[Any]]


@numba.njit(nogil=True, cache=True)
def check_compressed(indptr: _Ints, indices: _Ints, data: _Bits, n_minor: int) -> int:
    """Check one band of compressed rows before scattering it.

    ``indptr`` is the band's slice of the index pointer; ``indices`` and ``data`` the matching slices,
    starting at position ``indptr[0]``. Returns :data:`COMPRESSED_MALFORMED` for arrays that would make the
    scatter write out of bounds (a decreasing ``indptr``, fewer indices or values than it promises, an index
    outside ``0..n_minor - 1``), :data:`COMPRESSED_NOT_CANONICAL` when indices do not increase strictly
    within a row (unsorted, or duplicates that must be summed), else :data:`COMPRESSED_OK`.
    """
    base = indptr[0]
    for local in range(indptr.shape[0] - 1):
        if indptr[local + 1] < indptr[local]:
            return COMPRESSED_MALFORMED
    if indptr[indptr.shape[0] - 1] - base > min(indices.shape[0], data.shape[0]):
        return COMPRESSED_MALFORMED
    for p in range(indices.shape[0]):
        if indices[p] < 0 or indices[p] >= n_minor:
            return COMPRESSED_MALFORMED
    for local in range(indptr.shape[0] - 1):
        for p in range(indptr[local] - base + 1, indptr[local + 1] - base):
            if indices[p] <= indices[p - 1]:
                return COMPRESSED_NOT_CANONICAL
    return COMPRESSED_OK


@numba.njit(nogil=True, cache=True)
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
    """Scatter one band of canonical compressed rows into chunk tiles (or zero those positions again).

    The arguments are those of :func:`check_compressed`, which must have returned :data:`COMPRESSED_OK`.
    ``tiles`` has shape ``(row blocks, column blocks, chunk rows, chunk columns)`` in loom orientation
    (genes × cells), starts zeroed and has its origin at the band's first major index. When
    ``major_is_column`` the major axis is the loom column axis (cells: CSR input), otherwise the loom row
    axis (genes: CSC input). ``minor_block[q]`` and ``minor_offset[q]`` are the chunk of minor index ``q``
    and its position in it (tables instead of a division per value). ``filled[bi, bj]`` is set for every
    tile that receives a non-zero bit pattern. With ``clear``, the same positions are set back to zero.
    """
    base = indptr[0]
    n_major = indptr.shape[0] - 1
    if major_is_column:
        # Rows are cells, and each cell's genes spread over every tile of the band: fill one row of tiles
        # at a time (a cursor per cell) so the tile being written stays in cache.
        th = tiles.shape[2]
        tw = tiles.shape[3]
        cursor = np.empty(n_major, dtype=np.int64)
        for local in range(n_major):
            cursor[local] = indptr[local] - base
        for bi in range(tiles.shape[0]):
            limit = (bi + 1) * th
            for local in range(n_major):
                bj = local // tw
                j = local - bj * tw
                p = cursor[local]
                stop = indptr[local + 1] - base
                while p < stop and indices[p] < limit:
                    i = minor_offset[indices[p]]
                    if clear:
                        tiles[bi, bj, i, j] = 0
                    else:
                        value = data[p]
                        tiles[bi, bj, i, j] = value
                        if value != 0:
                            filled[bi, bj] = True
                    p += 1
                cursor[local] = p
    else:
        # Rows are genes; consecutive cells of a gene land next to each other, tile after tile.
        th = tiles.shape[2]
        for local in range(n_major):
            bi = local // th
            i = local - bi * th
            for p in range(indptr[local] - base, indptr[local + 1] - base):
                q = indices[p]
                if clear:
                    tiles[bi, minor_block[q], i, minor_offset[q]] = 0
                else:
                    value = data[p]
                    tiles[bi, minor_block[q], i, minor_offset[q]] = value
                    if value != 0:
                        filled[bi, minor_block[q]] = True


@numba.njit(nogil=True, cache=True)
def dense_to_tiles(src: _Bits, src_is_cells_by_genes: bool, tiles: _Bits, filled: npt.NDArray[np.bool_]) -> None:
    """Copy a dense block into chunk tiles (same layout as :func:`sparse_to_tiles`).

    ``src`` is C-contiguous; when ``src_is_cells_by_genes`` it is a band of AnnData rows (cells × genes)
    and is transposed on the way, otherwise it already is in loom orientation (genes × cells).
    """
    th = tiles.shape[2]
    tw = tiles.shape[3]
    if src_is_cells_by_genes:
        # One tile at a time (it stays in cache), reading a short run of each source row into its columns.
        n_cells, n_genes = src.shape
        for bi in range(tiles.shape[0]):
            row0 = bi * th
            row1 = min(row0 + th, n_genes)
            for col in range(n_cells):
                bj = col // tw
                j = col - bj * tw
                any_set = False
                for row in range(row0, row1):
                    value = src[col, row]
                    tiles[bi, bj, row - row0, j] = value
                    any_set |= value != 0
                if any_set:
                    filled[bi, bj] = True
    else:
        n_genes, n_cells = src.shape
        for row in range(n_genes):
            bi = row // th
            i = row - bi * th
            for bj in range(tiles.shape[1]):
                col0 = bj * tw
                col1 = min(col0 + tw, n_cells)
                any_set = False
                for col in range(col0, col1):
                    value = src[row, col]
                    tiles[bi, bj, i, col - col0] = value
                    if value != 0:
                        any_set = True
                if any_set:
                    filled[bi, bj] = True


#: Position of the lowest set bit, looked up from ``((x & -x) * DE_BRUIJN_64) >> 58``.
DE_BRUIJN_64 = np.uint64(0x03F79D71B4CB0A89)
LOWEST_BIT_POSITION = np.array(
    [0, 1, 48, 2, 57, 49, 28, 3, 61, 58, 50, 42, 38, 29, 17, 4, 62, 55, 59, 36, 53, 51, 43, 22, 45, 39, 33, 30, 24, 18,
     12, 5, 63, 47, 56, 27, 60, 41, 37, 16, 54, 35, 52, 21, 44, 32, 23, 11, 46, 26, 40, 15, 34, 20, 31, 10, 25, 14, 19,
     9, 13, 8, 7, 6],
    dtype=np.int64,
)  # fmt: skip


@numba.njit(nogil=True, cache=True)
def mark_tile_nonzeros(
    tiles: _Bits,
    slots: _Ints,
    mask: _Bits,
    n_rows: int,
    n_cols: int,
    by_column: bool,
    counts: _Ints,
    bits: npt.NDArray[np.uint64],
) -> None:
    """Count non-zeros per output row of one band of tiles and record where they are.

    The band is a run of tiles ``tiles[slots[t]]`` stacked along loom rows (``by_column``: a column of
    chunks, output rows are loom columns, i.e. cells) or along loom columns (a row of chunks, output rows
    are loom rows, i.e. genes). ``slots[t] < 0`` marks an absent tile of zeros. ``n_rows`` and ``n_cols``
    are the valid extents of the band in loom orientation; tile parts beyond them are padding.
    ``bits[s, i, w]`` receives the non-zero positions of tile row ``i``, 64 columns per word ``w``.
    """
    th = tiles.shape[1]
    tw = tiles.shape[2]
    m = mask[0]
    n_words = bits.shape[2]
    for t in range(slots.shape[0]):
        s = slots[t]
        if s < 0:
            continue
        if by_column and n_words == 1:  # the usual case, chunks at most 64 cells wide: the simplest loop
            for i in range(min(th, n_rows - t * th)):
                word = np.uint64(0)
                for j in range(n_cols):  # branch-free so the loop vectorises
                    nonzero = (tiles[s, i, j] & m) != 0
                    counts[j] += nonzero
                    word |= np.uint64(nonzero) << np.uint64(j)
                bits[s, i, 0] = word
        elif by_column:
            for i in range(min(th, n_rows - t * th)):
                for w in range(n_words):
                    j0 = w * 64
                    word = np.uint64(0)
                    for j in range(j0, min(n_cols, j0 + 64)):  # branch-free so the loop vectorises
                        nonzero = (tiles[s, i, j] & m) != 0
                        counts[j] += nonzero
                        word |= np.uint64(nonzero) << np.uint64(j - j0)
                    bits[s, i, w] = word
        elif n_words == 1:
            cols = min(tw, n_cols - t * tw)
            for i in range(n_rows):
                row_count = 0
                word = np.uint64(0)
                for j in range(cols):
                    nonzero = (tiles[s, i, j] & m) != 0
                    row_count += nonzero
                    word |= np.uint64(nonzero) << np.uint64(j)
                bits[s, i, 0] = word
                counts[i] += row_count
        else:
            cols = min(tw, n_cols - t * tw)
            for i in range(n_rows):
                row_count = 0
                for w in range(n_words):
                    j0 = w * 64
                    word = np.uint64(0)
                    for j in range(j0, min(cols, j0 + 64)):
                        nonzero = (tiles[s, i, j] & m) != 0
                        row_count += nonzero
                        word |= np.uint64(nonzero) << np.uint64(j - j0)
                    bits[s, i, w] = word
                counts[i] += row_count


@numba.njit(nogil=True, cache=True)
def emit_tile_nonzeros(
    tiles: _Bits,
    slots: _Ints,
    bits: npt.NDArray[np.uint64],
    n_rows: int,
    by_column: bool,
    positions: _Ints,
    indices: _Ints,
    data: _Bits,
) -> None:
    """Emit the non-zeros found by :func:`mark_tile_nonzeros`, sorted by index within each output row.

    Visits only the set bits. ``positions[r]`` is where output row ``r`` starts in ``indices``/``data``; it is
    advanced in place.
    """
    th = tiles.shape[1]
    tw = tiles.shape[2]
    zero = np.uint64(0)
    one = np.uint64(1)
    for t in range(slots.shape[0]):
        s = slots[t]
        if s < 0:
            continue
        rows = min(th, n_rows - t * th) if by_column else n_rows
        for i in range(rows):
            for w in range(bits.shape[2]):
                word = bits[s, i, w]
                while word != zero:
                    lowest = word & (~word + one)
                    j = w * 64 + LOWEST_BIT_POSITION[(lowest * DE_BRUIJN_64) >> np.uint64(58)]
                    if by_column:
                        p = positions[j]
                        indices[p] = t * th + i
                        positions[j] = p + 1
                    else:
                        p = positions[i]
                        indices[p] = t * tw + j
                        positions[i] = p + 1
                    data[p] = tiles[s, i, j]
                    word ^= lowest


@numba.njit(nogil=True, cache=True)
def inflate_chunks(
    decompress: Callable[..., int],
    decompressor: int,
    src: npt.NDArray[np.uint8],
    offsets: _Ints,
    lengths: _Ints,
    targets: _Ints,
    out: npt.NDArray[np.uint8],
    tile_bytes: int,
    wanted: _Ints,
    margin: int,
    actual: npt.NDArray[np.uint64],
) -> int:
    """Inflate zlib streams ``src[offsets[k]:offsets[k] + lengths[k]]`` into ``out`` at tile slot ``targets[k]``.

    ``decompress`` is libdeflate's ``libdeflate_zlib_decompress`` (a ctypes function) and ``decompressor`` a
    handle from ``libdeflate_alloc_decompressor``. Only the first ``wanted[k]`` bytes of tile ``k`` are needed:
    when that is less than the tile by more than ``margin`` (negative: never) and the stream is one final Huffman
    block, libdeflate is given ``wanted[k] + margin`` bytes of room and stops when it runs out. A Huffman block is
    written in order and libdeflate stops only before a literal or match that does not fit (a match is at most
    ``margin`` = 258 bytes), so at least ``wanted[k]`` bytes are then in place; a stored block, which is copied
    whole or not at all, is never cut short. Returns the index of the first stream that is damaged or does not
    inflate to exactly ``tile_bytes`` bytes (to more than its room, when cut short), or -1 when all are fine.
    """
    for k in range(offsets.shape[0]):
        start = offsets[k]
        target = targets[k] * tile_bytes
        room = tile_bytes
        if 0 <= margin and wanted[k] + margin < tile_bytes and lengths[k] > 2:
            header = src[start + 2]  # the first block's header bits, after the 2-byte zlib header
            single_huffman_block = (header & 1) == 1 and (header >> 1) & 3 in (1, 2)
            if single_huffman_block and src[start + 1] & 0x20 == 0:  # no preset dictionary
                room = wanted[k] + margin
        status = decompress(
            decompressor,
            src[start:].ctypes.data,
            lengths[k],
            out[target:].ctypes.data,
            room,
            actual.ctypes.data,
        )
        if room < tile_bytes:
            if status != INSUFFICIENT_SPACE:
                return k
        elif status != 0 or actual[0] != tile_bytes:
            return k
    return -1


@numba.njit(nogil=True, cache=True)
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
    """Deflate tiles ``src[starts[k]:starts[k] + tile_bytes]`` into zlib streams back to back in ``out``.

    ``init``/``deflate`` are ISA-L's ``isal_deflate_stateless_init``/``isal_deflate_stateless`` (ctypes functions);
    ``stream64``/``stream32``/``stream16`` are views of one buffer holding a ``struct isal_zstream``, whose public
    fields are set by their positions on 64-bit platforms. Stream ``k`` ends at ``out[ends[k]]``. Every tile is
    given exactly ``room`` bytes of output: ISA-L's stream depends on the room it is given (a constant tile becomes
    a shorter stream when room is tight), so the same tile deflates to the same bytes wherever it lands. Returns
    the index of the first tile that found less than ``room`` left in ``out`` or that ISA-L refused, or -1 when all
    are deflated.
    """
    address = stream64.ctypes.data
    position = 0
    for k in range(starts.shape[0]):
        if out.shape[0] - position < room:
            return k
        init(address)
        stream64[0] = src[starts[k] :].ctypes.data  # next_in
        stream32[2] = tile_bytes  # avail_in
        stream64[2] = out[position:].ctypes.data  # next_out
        stream32[6] = room  # avail_out
        stream32[10] = level
        stream32[11] = level_buffer.shape[0]  # level_buf_size
        stream64[6] = level_buffer.ctypes.data  # level_buf
        stream16[28] = 1  # end_of_stream
        stream16[29] = 2  # flush: FULL_FLUSH, as python-isal's compress
        stream16[30] = 3  # gzip_flag: IGZIP_ZLIB, the zlib stream of HDF5's gzip filter
        if deflate(address) != 0:
            return k
        position += stream32[7]  # total_out
        ends[k] = position
    return -1


@numba.njit(nogil=True, cache=True)
def write_chunks(
    write_chunk: Callable[..., int],
    dataset_id: int,
    packed: npt.NDArray[np.uint8],
    starts: npt.NDArray[np.int64],
    lengths: npt.NDArray[np.int64],
    offsets: npt.NDArray[np.uint64],
) -> int:
    """Store chunk ``k`` (``packed[starts[k]:starts[k] + lengths[k]]``) at element ``offsets[k]`` of a dataset.

    ``write_chunk`` is HDF5's ``H5Dwrite_chunk`` (a ctypes function), ``dataset_id`` the dataset's HDF5 identifier.
    Returns the index of the first chunk HDF5 refused, or -1 when all are stored.
    """
    for k in range(starts.shape[0]):
        status = write_chunk(dataset_id, 0, 0, offsets[k].ctypes.data, lengths[k], packed[starts[k] :].ctypes.data)
        if status < 0:
            return k
    return -1


@numba.njit(nogil=True, cache=True)
def tiles_to_dense(tiles: _Bits, slots: _Ints, n_genes: int, n_cells: int, out: _Bits) -> None:
    """Write one column of chunks (cells ``0:n_cells`` of the band) into ``out`` (cells × genes), transposed.

    Absent tiles (``slots[t] < 0``) write zeros.
    """
    th = tiles.shape[1]
    for t in range(slots.shape[0]):
        s = slots[t]
        row0 = t * th
        rows = min(th, n_genes - row0)
        if s < 0:
            for j in range(n_cells):
                for i in range(rows):
                    out[j, row0 + i] = 0
        else:
            for j in range(n_cells):
                for i in range(rows):
                    out[j, row0 + i] = tiles[s, i, j]
