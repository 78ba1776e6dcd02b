"""The compiled walk over a global heap collection's objects (collections of large text columns hold millions).

This module imports numba; :mod:`scanpy_loomio._guards.heaps` imports it only for large collections, or when the
matrix engine has loaded numba already.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numba

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


@numba.njit(nogil=True, cache=True)
def first_misfit_object(
    image: npt.NDArray[np.uint8], position: int, end: int, sizeof_size: int
) -> tuple[int, int, int]:
    """The first object from ``position`` on that takes no room or runs past ``end``.

    Returns its byte position, heap index and stored size, or a position of -1 when every object fits. Objects are
    laid out back to back: a 2-byte index, 6 bytes not needed here, a ``sizeof_size``-byte little-endian size, then
    the data padded to 8 bytes; index 0 is the free space, whose size covers its header too. Sizes are compared as
    unsigned 64-bit numbers, so a damaged size near 2**64 cannot wrap round into a plausible one.
    """
    object_header = 8 + sizeof_size
    while position < end:
        if position + object_header > end:
            break  # a tail too small for an object header is free space
        index = int(image[position]) | (int(image[position + 1]) << 8)
        size = 0
        for k in range(sizeof_size):
            size |= int(image[position + 8 + k]) << (8 * k)
        room = end - position
        # size is below 2**63 unless damaged: reinterpreted as int64, a damaged one is negative or too large
        if size < 0 or size > room:
            return position, index, size
        need = object_header + ((size + 7) & ~7) if index else size
        if need < object_header or need > room:
            return position, index, size
        position += need
    return -1, 0, 0
