"""Deflate for HDF5 chunks: the compression backends (zlib, ISA-L, libdeflate) and the filter pipeline.

HDF5's gzip filter stores each chunk as a zlib stream. Chunks are deflated with ISA-L when it is installed (zlib
otherwise) and inflated with libdeflate from compiled code, ISA-L or zlib, whichever is present, in that order.
:func:`unfilter` undoes a chunk's whole filter pipeline (deflate, shuffle, fletcher32); the matrix readers and the
safety checks of variable-length data both decode chunks with it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import zlib
from dataclasses import dataclass, replace
from functools import cache, partial
from typing import TYPE_CHECKING

import numpy as np

from scanpy_loomio._settings import switched_off

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import ModuleType

    from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12 on

#: HDF5 filter identifiers.
FILTER_DEFLATE = 1
FILTER_SHUFFLE = 2
FILTER_FLETCHER32 = 3


@cache
def fast_zlib() -> ModuleType | None:
    """ISA-L's zlib-compatible module when installed: same deflate format, 2–3× faster."""
    try:
        from isal import isal_zlib  # optional dependency
    except ImportError:
        return None
    return isal_zlib


def compressor(level: int) -> Callable[[Buffer], bytes]:
    """A function deflating one chunk into a zlib stream, the format of HDF5's gzip filter.

    With ISA-L installed, levels 2 and 3 use its level 1, which on count tiles is about three times as fast
    as zlib's level 2 and about 8 % smaller; level 1 uses ISA-L's fastest level (another 1.5× faster,
    about 25 % larger than zlib's level 2). Level 0 stores blocks uncompressed and levels 4–9 use zlib at
    that level, trading time for size as zlib does.
    """
    fast = fast_zlib()
    # partial objects of the C functions: no Python frame per chunk (called hundreds of thousands of times)
    if fast is not None and 1 <= level <= 3:
        return partial(fast.compress, level=0 if level == 1 else 1)
    return partial(zlib.compress, level=level)


#: Where the fields :func:`~scanpy_loomio._matrix.kernels.deflate_tiles` sets lie in ISA-L's ``struct isal_zstream``
#: (igzip_lib.h) on 64-bit platforms, and bytes reserved for the whole struct (about 82 KiB in ISA-L 2.31).
ISAL_STREAM_BYTES = 256 * 2**10
#: ISA-L's ``ISAL_DEF_LVL1_LARGE``: the level buffer python-isal gives level 1 (the output depends on its size).
ISAL_LEVEL1_BUFFER_BYTES = 4 * 2**10 + 2 * 32 * 2**10 + 4 * 64 * 2**10


@dataclass(frozen=True)
class IsalDeflate:
    """ISA-L's one-shot deflate (``isal_deflate_stateless``) from python-isal's own extension, for compiled code.

    Called for a whole task of tiles from :func:`~scanpy_loomio._matrix.kernels.deflate_tiles`, it deflates without
    the GIL and without allocating per chunk, where python-isal's ``compress`` holds the GIL while it allocates its
    buffers (so threads wait for each other) and allocates a third of a megabyte per chunk. The streams are those
    of ``isal_zlib.compress`` at the same level, except that a chunk that does not compress is stored as it is
    rather than grown, and all-zero chunks may differ by a few bytes.
    """

    init: Callable[[int], None]
    deflate: Callable[[int], int]
    level: int
    """ISA-L's level (0 or 1)."""
    level_buffer_bytes: int


@cache
def isal_deflate(level: int) -> IsalDeflate | None:
    """The compiled-code deflate for loom's ``level`` when :func:`compressor` deflates it with ISA-L, else ``None``.

    ``None`` too on 32-bit platforms, with an ISA-L other than version 2, when python-isal's extension does not
    export ISA-L's functions, or when sample tiles do not come back from the streams it makes or do not deflate to
    the same bytes each time.
    ``SCANPY_LOOMIO_COMPILED_DEFLATE=0`` in the environment turns it off.
    """
    if switched_off("SCANPY_LOOMIO_COMPILED_DEFLATE"):
        return None
    fast = fast_zlib()
    if fast is None or not 1 <= level <= 3 or sys.maxsize < 2**32 or sys.byteorder != "little":
        return None
    import isal

    if getattr(isal, "ISAL_MAJOR_VERSION", None) != 2:  # the struct layout below is ISA-L 2's
        return None
    isal_level = 0 if level == 1 else 1
    try:
        lib = ctypes.CDLL(fast.__file__)
        init, deflate = lib.isal_deflate_stateless_init, lib.isal_deflate_stateless
    except (OSError, AttributeError, TypeError):
        return None
    init.argtypes, init.restype = [ctypes.c_void_p], None
    deflate.argtypes, deflate.restype = [ctypes.c_void_p], ctypes.c_int
    found = IsalDeflate(init, deflate, isal_level, ISAL_LEVEL1_BUFFER_BYTES if isal_level else 0)
    return found if _isal_deflate_works(found) else None


def _isal_deflate_works(found: IsalDeflate) -> bool:
    """Whether ``found`` turns sample tiles into zlib streams that inflate back to them, the same bytes each time.

    The tiles are deflated with fresh buffers, then again in the opposite order with the used ones: a file's bytes
    must not depend on which thread deflated a chunk or what it deflated before.
    """
    rng = np.random.default_rng(0)
    counts = (rng.random((64, 64)) < 0.06) * rng.integers(1, 30, (64, 64))
    samples = [counts.astype(np.float32), np.zeros((64, 64), np.float32), rng.random((64, 64)).astype(np.float32)]
    samples.append(np.tile(counts[:8], (8, 1)).astype(np.float32))
    tiles = np.stack(samples).view(np.uint8).reshape(len(samples), -1)
    buffers = isal_buffers(found)
    first = _deflate_samples(found, tiles, buffers)
    again = _deflate_samples(found, tiles[::-1].copy(), buffers)
    if first is None or again is None or first != again[::-1]:
        return False
    try:
        return [zlib.decompress(stream) for stream in first] == [tile.tobytes() for tile in tiles]
    except zlib.error:
        return False


def _deflate_samples(
    found: IsalDeflate, tiles: np.ndarray, buffers: tuple[tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray]
) -> list[bytes] | None:
    """The rows of ``tiles`` deflated in one call, or ``None`` when ISA-L refuses one.

    Through the numpy kernel, which makes the compiled kernel's calls: checking ISA-L does not load numba.
    """
    from scanpy_loomio._matrix import numpy_kernels

    n, tile_bytes = tiles.shape
    (stream, level_buffer), room = buffers, deflate_room(tile_bytes)
    starts = np.arange(n, dtype=np.int64) * tile_bytes
    ends = np.zeros(n, dtype=np.int64)
    out = np.zeros(n * room, dtype=np.uint8)
    args = (found.init, found.deflate, *stream, found.level, level_buffer, tiles.reshape(-1), starts, tile_bytes)
    if numpy_kernels.deflate_tiles(*args, room, out, ends) >= 0:
        return None
    return [part.tobytes() for part in np.split(out[: ends[-1]], ends[:-1])]


def deflate_room(tile_bytes: int) -> int:
    """Output room given to every tile deflated from compiled code: the tile, stored-block and zlib framing."""
    return tile_bytes + tile_bytes // 8 + 1024


def isal_buffers(found: IsalDeflate) -> tuple[tuple[np.ndarray, np.ndarray, np.ndarray], np.ndarray]:
    """A zeroed ``struct isal_zstream`` as 64-, 32- and 16-bit views, and a level buffer, for one thread."""
    stream = np.zeros(ISAL_STREAM_BYTES // 8, dtype=np.uint64)
    return (stream, stream.view(np.uint32), stream.view(np.uint16)), np.zeros(found.level_buffer_bytes, np.uint8)


def inflater() -> Callable[[Buffer, int, int], bytes]:
    """``decompress(stream, wbits, expected_size)`` for zlib streams (ISA-L's when installed: about 2× zlib)."""
    fast = fast_zlib()
    return fast.decompress if fast is not None else zlib.decompress


def inflate_at_most(stream: bytes | memoryview, size: int) -> bytes:
    """Inflate a zlib stream, stopping after ``size + 1`` bytes: a damaged stream cannot make it allocate more."""
    return zlib.decompressobj().decompress(stream, size + 1)


#: libdeflate's status when the room given is too small (``LIBDEFLATE_INSUFFICIENT_SPACE``).
INSUFFICIENT_SPACE = 3
#: DEFLATE's longest match: room beyond the bytes wanted that lets an inflate cut short keep all of them.
LONGEST_MATCH = 258


@dataclass(frozen=True)
class Libdeflate:
    """libdeflate's whole-buffer zlib decompressor, called from compiled code (no GIL, no copies)."""

    alloc: Callable[[], int]
    free: Callable[[int], None]
    zlib_decompress: Callable[..., int]
    stops_in_order: bool = False
    """Whether, given too little room for a Huffman block, it leaves all it wrote up to the last match in place
    (checked on sample streams): the subset reads then inflate chunks only as far as the rows they need."""


@cache
def libdeflate() -> Libdeflate | None:
    """Libdeflate from the system or the environment, when present and working; ``None`` otherwise.

    Optional: it inflates about 25 % faster than ISA-L and straight into the tile buffer. Set the environment
    variable ``SCANPY_LOOMIO_LIBDEFLATE=0`` to read without it.
    """
    if switched_off("SCANPY_LOOMIO_LIBDEFLATE"):
        return None
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
        found = Libdeflate(alloc, free, decompress)
        if _libdeflate_works(found):
            return replace(found, stops_in_order=_libdeflate_stops_in_order(found))
    return None


def _libdeflate_works(lib: Libdeflate) -> bool:
    """Inflate a known stream with ``lib`` and compare (guards against an incompatible library)."""
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


def _libdeflate_stops_in_order(lib: Libdeflate) -> bool:
    """Whether inflating sample streams into too little room leaves every byte before the last match's reach.

    The samples are count tiles deflated by zlib at levels 1, 6 and 9 (one final dynamic Huffman block each, with
    literals and matches), cut short at several points.
    """
    rng = np.random.default_rng(0)
    counts = (rng.random((64, 64)) < 0.1) * rng.integers(1, 40, (64, 64))
    expected = counts.astype(np.float32).tobytes()
    actual = ctypes.c_size_t(0)
    handle = lib.alloc()
    if not handle:
        return False
    try:
        for level in (1, 6, 9):
            stream = zlib.compress(expected, level)
            for room in (LONGEST_MATCH + 1, 1000, len(expected) // 2, len(expected) - LONGEST_MATCH - 1):
                out = ctypes.create_string_buffer(room)
                status = lib.zlib_decompress(handle, stream, len(stream), out, room, ctypes.byref(actual))
                kept = room - LONGEST_MATCH
                if status != INSUFFICIENT_SPACE or out.raw[:kept] != expected[:kept]:
                    return False
    finally:
        lib.free(handle)
    return True


@cache
def inflate_errors() -> tuple[type[Exception], ...]:
    """Exceptions the inflate functions raise for damaged streams."""
    errors: tuple[type[Exception], ...] = (zlib.error,)
    fast = fast_zlib()
    if fast is not None:
        errors += (fast.error,)
    return errors


def unfilter(
    payload: bytes | memoryview,
    filters: tuple[int, ...] | list[int],
    skipped: int,
    itemsize: int,
    inflate: Callable[[bytes | memoryview], bytes],
) -> bytes | memoryview | None:
    """Undo a chunk's filter pipeline, last filter first; ``None`` when it uses a filter other than these three.

    ``filters`` are the filter codes in pipeline (write) order and bit ``i`` of ``skipped`` is set when filter ``i``
    was not applied to this chunk. ``inflate`` undoes deflate; the errors of a damaged stream (:func:`inflate_errors`)
    pass through. Shuffled data whose length is not a whole number of items is left as it is.
    """
    for position in range(len(filters) - 1, -1, -1):
        if skipped & (1 << position):
            continue
        code = filters[position]
        if code == FILTER_DEFLATE:
            payload = inflate(payload)
        elif code == FILTER_SHUFFLE:
            if itemsize > 1 and len(payload) % itemsize == 0:
                payload = np.frombuffer(payload, dtype=np.uint8).reshape(itemsize, -1).T.tobytes()
        elif code == FILTER_FLETCHER32:
            payload = payload[:-4]
        else:
            return None
    return payload
