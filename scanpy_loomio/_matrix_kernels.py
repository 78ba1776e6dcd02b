"""Compiled inner loops of the matrix engine.

Every kernel works on raw bit patterns (unsigned integers of the element's width), so one compiled
version serves all dtypes of that width, float16 included. A value counts as non-zero when its bits
differ from zero after masking: for floats the mask drops the sign bit, so ``-0.0`` is a zero, as in
numpy's ``!= 0``. All kernels release the GIL so worker threads run them in parallel.

This module imports numba; :mod:`scanpy_loomio._matrix` imports it only when a kernel is first needed.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(nogil=True, cache=True)
def sparse_to_tiles(indptr, indices, data, minor_block, minor_offset, major_is_column, tiles, filled):
    """Scatter one band of compressed rows into chunk tiles.

    ``indptr`` is the band's slice of the index pointer (``len(indptr) - 1`` major rows); ``indices`` and
    ``data`` are the matching slices, starting at position ``indptr[0]``. ``tiles`` has shape
    ``(row blocks, column blocks, chunk rows, chunk columns)`` in loom orientation (genes × cells), starts
    zeroed and has its origin at the band's first major index. When ``major_is_column`` the major axis is
    the loom column axis (cells: CSR input), otherwise the loom row axis (genes: CSC input).
    ``minor_block[q]`` and ``minor_offset[q]`` are the chunk and the position inside it of minor index ``q``
    (tables instead of a division per value). ``filled[bi, bj]`` is set for every tile that receives a
    non-zero bit pattern.

    Returns ``False`` (leaving the work undone) when the arrays are inconsistent: an index outside the
    minor axis, a decreasing ``indptr``, or fewer indices or values than ``indptr`` promises.
    """
    n_minor = minor_block.shape[0]
    major_chunk = tiles.shape[3] if major_is_column else tiles.shape[2]
    base = indptr[0]
    for local in range(indptr.shape[0] - 1):
        if indptr[local + 1] < indptr[local]:
            return False
    if indptr[indptr.shape[0] - 1] - base > min(indices.shape[0], data.shape[0]):
        return False
    for p in range(indices.shape[0]):
        if indices[p] < 0 or indices[p] >= n_minor:
            return False
    for local in range(indptr.shape[0] - 1):
        major_block = local // major_chunk
        major_offset = local - major_block * major_chunk
        start = indptr[local] - base
        stop = indptr[local + 1] - base
        if major_is_column:
            for p in range(start, stop):
                q = indices[p]
                value = data[p]
                tiles[minor_block[q], major_block, minor_offset[q], major_offset] = value
                if value != 0:
                    filled[minor_block[q], major_block] = True
        else:
            for p in range(start, stop):
                q = indices[p]
                value = data[p]
                tiles[major_block, minor_block[q], major_offset, minor_offset[q]] = value
                if value != 0:
                    filled[major_block, minor_block[q]] = True
    return True


@numba.njit(nogil=True, cache=True)
def clear_sparse_tiles(indptr, indices, minor_block, minor_offset, major_is_column, tiles):
    """Zero again exactly the positions :func:`sparse_to_tiles` wrote (same arguments, already validated)."""
    major_chunk = tiles.shape[3] if major_is_column else tiles.shape[2]
    base = indptr[0]
    for local in range(indptr.shape[0] - 1):
        major_block = local // major_chunk
        major_offset = local - major_block * major_chunk
        for p in range(indptr[local] - base, indptr[local + 1] - base):
            q = indices[p]
            if major_is_column:
                tiles[minor_block[q], major_block, minor_offset[q], major_offset] = 0
            else:
                tiles[major_block, minor_block[q], major_offset, minor_offset[q]] = 0


@numba.njit(nogil=True, cache=True)
def dense_to_tiles(src, src_is_cells_by_genes, tiles, filled):
    """Copy a dense block into chunk tiles (same layout as :func:`sparse_to_tiles`).

    ``src`` is C-contiguous; when ``src_is_cells_by_genes`` it is a band of AnnData rows (cells × genes)
    and is transposed on the way, otherwise it already is in loom orientation (genes × cells).
    """
    th = tiles.shape[2]
    tw = tiles.shape[3]
    if src_is_cells_by_genes:
        n_cells, n_genes = src.shape
        for col in range(n_cells):
            bj = col // tw
            j = col - bj * tw
            for bi in range(tiles.shape[0]):
                row0 = bi * th
                row1 = min(row0 + th, n_genes)
                any_set = False
                for row in range(row0, row1):
                    value = src[col, row]
                    tiles[bi, bj, row - row0, j] = value
                    if value != 0:
                        any_set = True
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


@numba.njit(nogil=True, cache=True)
def count_tile_nonzeros(tiles, slots, mask, n_rows, n_cols, by_column, counts):
    """Count non-zeros per output row of one band of tiles.

    The band is a run of tiles ``tiles[slots[t]]`` stacked along loom rows (``by_column``: a column of
    chunks, output rows are loom columns, i.e. cells) or along loom columns (a row of chunks, output rows
    are loom rows, i.e. genes). ``slots[t] < 0`` marks an absent tile of zeros. ``n_rows`` and ``n_cols``
    are the valid extents of the band in loom orientation; tile parts beyond them are padding.
    """
    th = tiles.shape[1]
    tw = tiles.shape[2]
    m = mask[0]
    for t in range(slots.shape[0]):
        s = slots[t]
        if s < 0:
            continue
        if by_column:
            rows = min(th, n_rows - t * th)
            for i in range(rows):
                for j in range(n_cols):  # branch-free so the loop vectorises
                    counts[j] += (tiles[s, i, j] & m) != 0
        else:
            cols = min(tw, n_cols - t * tw)
            for i in range(n_rows):
                row_count = 0
                for j in range(cols):
                    row_count += (tiles[s, i, j] & m) != 0
                counts[i] += row_count


@numba.njit(nogil=True, cache=True)
def fill_tile_nonzeros(tiles, slots, mask, n_rows, n_cols, by_column, positions, indices, data):
    """Emit the non-zeros counted by :func:`count_tile_nonzeros`, sorted by index within each output row.

    ``positions[r]`` is where output row ``r`` starts in ``indices``/``data``; it is advanced in place.
    """
    th = tiles.shape[1]
    tw = tiles.shape[2]
    m = mask[0]
    for t in range(slots.shape[0]):
        s = slots[t]
        if s < 0:
            continue
        if by_column:
            rows = min(th, n_rows - t * th)
            cols = n_cols
        else:
            rows = n_rows
            cols = min(tw, n_cols - t * tw)
        for i in range(rows):
            for j in range(cols):
                value = tiles[s, i, j]
                if value & m:
                    if by_column:
                        p = positions[j]
                        indices[p] = t * th + i
                        positions[j] = p + 1
                    else:
                        p = positions[i]
                        indices[p] = t * tw + j
                        positions[i] = p + 1
                    data[p] = value


@numba.njit(nogil=True, cache=True)
def tiles_to_dense(tiles, slots, n_genes, n_cells, out):
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


def unsigned_view_dtype(itemsize: int) -> np.dtype:
    """The unsigned integer dtype the kernels use for elements of ``itemsize`` bytes."""
    return np.dtype(f"u{itemsize}")
