"""Checks of text storage from the file's own bytes: global heaps, and the stored lengths of variable-length values.

HDF5 trusts both, and hangs or allocates gigabytes when they are damaged, so they are checked before HDF5 reads any
text. Chunks of variable-length datasets are read and decoded with the matrix engine's raw chunk I/O and filter
pipeline.
"""

from __future__ import annotations

import contextlib
import os
import struct
import sys
from collections.abc import Iterator
from functools import partial
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np

from scanpy_loomio._guards.boundary import hdf5_object
from scanpy_loomio._guards.problems import file_error
from scanpy_loomio._matrix.chunks import same_file_descriptor, stored_chunks
from scanpy_loomio._matrix.costs import elements
from scanpy_loomio._matrix.deflate import inflate_at_most, inflate_errors, unfilter

if TYPE_CHECKING:
    from pathlib import Path

    from scanpy_loomio._errors import LoomFormatError
    from scanpy_loomio._guards.structure import DatasetInfo


@contextlib.contextmanager
def _raw_bytes(file: h5py.File, path: Path) -> Iterator[Any]:
    """A binary file object on the very file HDF5 has open, even if ``path`` was replaced since it was opened."""
    with os.fdopen(same_file_descriptor(file, path), "rb") as handle:
        yield handle


#: A global heap collection (where HDF5 keeps variable-length strings) starts with this signature and version 1.
GCOL_SIGNATURE = b"GCOL\x01\x00\x00\x00"
#: Collections larger than this are walked by compiled code even when numba is not loaded yet (a Python loop takes
#: about half a second per million values; loading numba about a quarter of a second, once).
COMPILED_WALK_BYTES = 2**20
#: Files up to this size are searched whole for collections (about a second per 2 GB); in larger ones only the
#: collections that datasets' text points to are checked.
WHOLE_SCAN_BYTES = 512 * 2**20
#: The whole-file search reads the file this many bytes at a time into one buffer: its memory stays this small
#: whatever the file's size (a map of the whole file would count every page searched as the process's memory).
SCAN_WINDOW_BYTES = 8 * 2**20


def _heap_problem(image: Any, start: int, sizeof_size: int, file_size: int) -> str | None:
    """Why HDF5 would loop forever or run off the collection parsing the global heap at ``start``, or ``None``.

    HDF5 walks a collection's objects by their sizes; an object that takes no room makes it loop forever, and one
    larger than the collection makes it read past the end. Collections HDF5 would reject with an error are left to it.
    """
    header = len(GCOL_SIGNATURE) + sizeof_size
    object_header = 8 + sizeof_size
    if start + header > file_size or bytes(image[start : start + len(GCOL_SIGNATURE)]) != GCOL_SIGNATURE:
        return None  # not a collection: HDF5 reports that itself
    size = int.from_bytes(image[start + 8 : start + header], "little")
    end = start + size
    if size < header or end > file_size:
        return None  # HDF5 reports these itself
    walk = first_misfit_object if size > COMPILED_WALK_BYTES or "numba" in sys.modules else misfit_object_python
    position, index, length = walk(np.frombuffer(image, dtype=np.uint8), start + header, end, sizeof_size)
    if position < 0:
        return None
    return _misfit(index, position - start, length & (2**64 - 1), object_header, size)  # the size as stored: unsigned


def first_misfit_object(image: np.ndarray, position: int, end: int, sizeof_size: int) -> tuple[int, int, int]:
    """:func:`~scanpy_loomio._guards.heap_walk.first_misfit_object`, compiled (numba is imported on first use)."""
    from scanpy_loomio._guards import heap_walk

    return heap_walk.first_misfit_object(image, position, end, sizeof_size)


def misfit_object_python(image: np.ndarray, position: int, end: int, sizeof_size: int) -> tuple[int, int, int]:
    """:func:`first_misfit_object` in Python, for small collections while numba is not loaded."""
    object_header = 8 + sizeof_size
    unpack = struct.Struct("<H6x" + {2: "H", 4: "I", 8: "Q"}[sizeof_size]).unpack_from  # index, …, size
    while position < end:
        if position + object_header > end:
            break  # a tail too small for an object header is free space
        index, length = unpack(image, position)
        need = object_header + ((length + 7) & ~7) if index else length
        if need < object_header or need > end - position:
            return position, index, length
        position += need
    return -1, 0, 0


def _misfit(index: int, at: int, length: int, object_header: int, size: int) -> str:
    """What is wrong with the object ``index`` at byte ``at`` of a collection of ``size`` bytes."""
    need = object_header + ((length + 7) & ~7) if index else length
    if need:
        return f"object {index} at byte {at} of {need} bytes in a collection of {size} bytes"
    return f"object {index} at byte {at} taking no room"


def _heap_error(path: Path, address: int, problem: str) -> LoomFormatError:
    return file_error(
        path,
        f"global heap at byte {address}",
        f"a damaged collection of text values ({problem})",
        "objects that fill the collection exactly",
        "HDF5 would hang or read past it, so it is not read. The file is damaged; copy or download it again.",
    )


def check_global_heaps(file: h5py.File, path: Path, checked: set[int] | None = None) -> None:
    """Refuse global heap collections that would make HDF5 loop forever or read past them.

    HDF5 itself hangs on a collection whose object sizes are damaged (an object taking no room is walked over
    forever), so collections are checked here, from the file's bytes, before HDF5 reads any text. Files up to
    :data:`WHOLE_SCAN_BYTES` are searched whole, which covers text in attributes too; :func:`check_vlen_datasets`
    checks the collections datasets point to in files of any size.

    Raises
    ------
    LoomFormatError
        Naming the byte offset of the damaged collection.
    """
    _sizeof_addr, sizeof_size = file.id.get_create_plist().get_sizes()
    with _raw_bytes(file, path) as handle:
        file_size = os.fstat(handle.fileno()).st_size
        if file_size == 0 or file_size > WHOLE_SCAN_BYTES:
            return
        for start in _signature_positions(handle, file_size):
            problem = _collection_problem(handle, start, sizeof_size, file_size)
            if problem:
                raise _heap_error(path, start, problem)
            if checked is not None:
                checked.add(start)


def _signature_positions(handle: Any, file_size: int) -> Iterator[int]:
    """The offsets of every collection signature in the file, which is read one window at a time.

    Windows overlap by a signature's length less one byte, so a signature across two windows is found, and once.
    """
    window = SCAN_WINDOW_BYTES
    buffer = bytearray(window + len(GCOL_SIGNATURE) - 1)
    for offset in range(0, file_size, window):
        filled = _read_into(handle, offset, buffer)
        found = buffer.find(GCOL_SIGNATURE, 0, filled)
        while 0 <= found < window:  # one starting in the overlap is the next window's
            yield offset + found
            found = buffer.find(GCOL_SIGNATURE, found + 1, filled)


def _read_into(handle: Any, offset: int, buffer: bytearray) -> int:
    """Fill ``buffer`` with the file's bytes from ``offset`` on; the bytes read (fewer at the end of the file)."""
    handle.seek(offset)
    view = memoryview(buffer)
    filled = 0
    while filled < len(buffer):
        got = handle.readinto(view[filled:])
        if not got:
            break
        filled += got
    return filled


def _collection_problem(handle: Any, start: int, sizeof_size: int, file_size: int) -> str | None:
    """What is wrong with the collection at byte ``start`` (see :func:`_heap_problem`), read from the file alone."""
    handle.seek(start)
    header = handle.read(len(GCOL_SIGNATURE) + sizeof_size)
    if len(header) < len(GCOL_SIGNATURE) + sizeof_size or not header.startswith(GCOL_SIGNATURE):
        return None  # HDF5 reports a missing collection itself
    size = int.from_bytes(header[len(GCOL_SIGNATURE) :], "little")
    if size > file_size - start:
        return None  # HDF5 reports a collection running past the end of the file itself
    handle.seek(start)
    image = handle.read(size)
    return _heap_problem(image, 0, sizeof_size, len(image))


def _check_heaps_at(
    handle: Any, path: Path, addresses: set[int], base: int, sizeof_size: int, file_size: int, checked: set[int]
) -> None:
    """Check the collections at these addresses (relative to the superblock at ``base``) not ``checked`` yet."""
    for address in sorted(addresses):
        start = base + address
        if start in checked:
            continue
        problem = _collection_problem(handle, start, sizeof_size, file_size)
        if problem:
            raise _heap_error(path, start, problem)


def _vlen_base_size(dset: h5py.Dataset) -> int | None:
    """Bytes per item of a variable-length dataset's values (1 for text), or ``None`` when it is not one."""
    tid = dset.id.get_type()
    if isinstance(tid, h5py.h5t.TypeStringID) and tid.is_variable_str():
        return 1
    if tid.get_class() == h5py.h5t.VLEN:
        return max(1, tid.get_super().get_size())
    return None


def _descriptor_problem(values: np.ndarray, base_size: int, file_size: int) -> str | None:
    nbytes = values["length"].astype(np.uint64) * np.uint64(base_size)
    bad = (nbytes > file_size) | ((values["length"] > 0) & (values["address"] >= file_size))
    if not bad.any():
        return None
    i = int(np.argmax(bad))
    return f"value {i} of a block claiming {int(nbytes[i]):,} bytes at byte {int(values['address'][i]):,}"


def _descriptor_blocks(handle: Any, dset: h5py.Dataset, file_size: int, itemsize: int) -> list[bytes | memoryview]:
    """The stored descriptors (length, address, index) of a variable-length dataset, block by block, as bytes.

    Contiguous data is read at its offset in the file (which HDF5 gives counting the user block); chunks are decoded
    with the matrix engine's filter pipeline, a chunk with another filter or a damaged stream left to HDF5.
    """
    dcpl = dset.id.get_create_plist()
    layout = dcpl.get_layout()
    blocks: list[bytes | memoryview] = []
    if layout == h5py.h5d.CONTIGUOUS:
        offset = dset.id.get_offset()
        if offset is not None:
            handle.seek(offset)
            blocks.append(handle.read(min(dset.id.get_storage_size(), file_size)))
    elif layout == h5py.h5d.CHUNKED and hasattr(dset.id, "chunk_iter"):
        filters = [dcpl.get_filter(i)[0] for i in range(dcpl.get_nfilters())]
        expected = elements(dset.chunks) * itemsize
        inflate = partial(inflate_at_most, size=expected)  # never more than a chunk's worth
        for skipped, raw in stored_chunks(dset.id):
            try:
                data = unfilter(bytes(raw), filters, skipped, itemsize, inflate)
            except inflate_errors():
                continue  # damaged: HDF5 reports it when it reads the chunk
            if data is not None:
                blocks.append(data[:expected])
    return blocks


def check_vlen_datasets(
    file: h5py.File, path: Path, datasets: list[DatasetInfo], checked: set[int] | None = None
) -> None:
    """Refuse variable-length values (text) whose stored lengths or addresses lie beyond the end of the file.

    HDF5 allocates and fills the memory a stored length claims before it finds the address invalid, so one damaged
    length makes it spend gigabytes and many seconds per value. The stored descriptors of contiguous and chunked
    (deflate, shuffle, fletcher32) datasets are checked here from the file's bytes; compact datasets and attributes
    are small and left to HDF5.

    Raises
    ------
    LoomFormatError
        Naming the dataset and the first impossible value.
    """
    plist = file.id.get_create_plist()
    sizeof_addr, sizeof_size = plist.get_sizes()
    base = plist.get_userblock()
    record = np.dtype([("length", "<u4"), ("address", f"<u{sizeof_addr}"), ("index", "<u4")])
    heaps: set[int] = set()
    with _raw_bytes(file, path) as handle:
        file_size = os.fstat(handle.fileno()).st_size
        for info in datasets:
            dset = info.dataset
            with hdf5_object(dset):
                base_size = _vlen_base_size(dset)
                if base_size is None or dset.id.get_storage_size() == 0:
                    continue
                blocks = _descriptor_blocks(handle, dset, file_size, record.itemsize)
            for data in blocks:
                values = np.frombuffer(data[: len(data) // record.itemsize * record.itemsize], dtype=record)
                problem = _descriptor_problem(values, base_size, file_size)
                heaps.update(np.unique(values["address"][values["length"] > 0]).tolist())
                if problem:
                    raise file_error(
                        path,
                        info.name,
                        f"variable-length data with an impossible length or address ({problem})",
                        f"values stored inside the file ({file_size:,} bytes)",
                        "HDF5 would allocate that much before failing. The file is damaged; copy or download it again.",
                    )
        # the collections that text points to (in large files the only ones checked)
        _check_heaps_at(handle, path, heaps, base, sizeof_size, file_size, checked if checked is not None else set())
