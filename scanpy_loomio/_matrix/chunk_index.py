"""Where the chunks of a selection lie, read from the dataset's chunk index without visiting every chunk.

HDF5's own ways of listing chunks visit all of them (``H5Dchunk_iter`` takes about a second for the 366,000
chunks of a 50,000 × 30,000 layer) or look each one up at a cost of tens of microseconds. A read of a few cells
and genes needs a small part of the index: this module walks the version 1 B-tree that indexes the chunks of
datasets written with HDF5's default file format (h5py's, loompy's and this package's files) and descends only into
the nodes covering the chunks wanted, reading the nodes with ``pread``.

Anything it does not recognise (another index type, a node that does not check out) makes it give up, and the
caller falls back to HDF5's chunk listing, which raises HDF5's own errors for a damaged file.
"""

from __future__ import annotations

import ctypes
import os
import struct

import h5py
import numpy as np

from scanpy_loomio._matrix.chunks import ChunkLayout
from scanpy_loomio._matrix.pool import gc_paused

_MSG_LAYOUT = 0x0008
_MSG_CONTINUATION = 0x0010
_BTREE_RAW_DATA = 1
_NODE_HEADER = 24  # "TREE", type, level, entries used, left and right sibling addresses
_MAX_DEPTH = 64
_FIRST_READ = 4096
#: B-tree nodes read and parsed together.
_NODES_PER_BATCH = 256
#: Object headers are a few kilobytes; these bound what a damaged one can make the parser read.
_MAX_HEADER_BLOCKS = 64
_MAX_HEADER_BYTES = 2**20


class _Unparsable(Exception):
    """The index is not one this module reads; use HDF5's chunk listing instead."""


def selection_layout(dataset: h5py.Dataset, rows: np.ndarray | None, cols: np.ndarray | None) -> ChunkLayout | None:
    """The layout of chunk rows ``rows`` × chunk columns ``cols`` (sorted; ``None``: all), or ``None``.

    ``None`` when the fast path cannot decode the dataset (as :meth:`ChunkLayout.inspect`).
    """
    filters = ChunkLayout.fast_filters(dataset)
    if filters is None:
        return None
    try:
        records = _btree_records(dataset, rows, cols)
    except (_Unparsable, OSError, struct.error, ValueError, IndexError):
        records = None
    if records is None:
        layout = ChunkLayout.inspect(dataset)
        return None if layout is None else _subgrid(layout, rows, cols)
    return ChunkLayout.from_records(dataset, filters, records, rows, cols)


def _subgrid(layout: ChunkLayout, rows: np.ndarray | None, cols: np.ndarray | None) -> ChunkLayout:
    select = (slice(None) if rows is None else rows, slice(None) if cols is None else cols)
    grid = np.ix_(*(np.arange(n)[s] for n, s in zip(layout.byte_offsets.shape, select, strict=True)))
    return ChunkLayout(
        layout.chunk_rows,
        layout.chunk_cols,
        layout.filters,
        layout.byte_offsets[grid],
        layout.sizes[grid],
        layout.filter_masks[grid],
        rows,
        cols,
    )


def _btree_records(dataset: h5py.Dataset, rows: np.ndarray | None, cols: np.ndarray | None) -> np.ndarray | None:
    """Index entries ``(row offset, column offset, address, size, filter mask)`` covering the selection.

    ``None`` when the file cannot be read directly (not a plain file on disk).
    """
    h5file = dataset.file
    path = h5file.filename
    if h5file.driver not in ("sec2", "stdio") or not os.path.isfile(path) or not hasattr(os, "pread"):
        return None
    if h5file.mode != "r":
        return None  # nodes still in HDF5's cache are not on disk yet
    plist = h5file.id.get_create_plist()
    if plist.get_sizes() != (8, 8):
        raise _Unparsable
    base = plist.get_userblock()
    header = _header_address(dataset)
    chunk_rows, chunk_cols = dataset.chunks
    n_genes, n_cells = dataset.shape
    n_col_blocks = -(-n_cells // chunk_cols)
    wanted = _wanted(rows, cols, -(-n_genes // chunk_rows), n_col_blocks)
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        reader = _Nodes(fd, base, os.fstat(fd).st_size)
        root, ndims = _layout_btree(reader, header, dataset)
        with gc_paused():
            return _walk(reader, root, ndims, (chunk_rows, chunk_cols), n_col_blocks, wanted)
    finally:
        os.close(fd)


def _header_address(dataset: h5py.Dataset) -> int:
    """The file address of the dataset's object header.

    Not from ``h5o.get_info``: it also sums the size of the chunk index, walking all of it (3 s for the 7.3 million
    chunks of a million cells) on every call, and each task of a lazy read asks. ``H5Gget_objinfo`` gives the
    address alone, as ``objno`` (a C ``unsigned long`` pair: the address, and its high half where ``long`` is 32-bit).
    """
    low, high = h5py.h5g.get_objinfo(dataset.id).objno
    return int(low) | (int(high) << (8 * ctypes.sizeof(ctypes.c_ulong)))


def _wanted(rows: np.ndarray | None, cols: np.ndarray | None, n_rows: int, n_cols: int) -> np.ndarray:
    """Sorted linear positions ``row * n_cols + col`` of the chunks wanted."""
    rows = np.arange(n_rows, dtype=np.int64) if rows is None else np.asarray(rows, dtype=np.int64)
    cols = np.arange(n_cols, dtype=np.int64) if cols is None else np.asarray(cols, dtype=np.int64)
    return (rows[:, None] * n_cols + cols[None, :]).ravel()


class _Nodes:
    """Reads pieces of the file at HDF5 addresses (relative to the superblock's base address)."""

    def __init__(self, fd: int, base: int, size: int) -> None:
        self.fd, self.base, self.size = fd, base, size

    def read(self, address: int, length: int) -> bytes:
        start = address + self.base
        if address < 0 or length < 0 or start + length > self.size:
            raise _Unparsable
        data = os.pread(self.fd, length, start)
        if len(data) != length:
            raise _Unparsable
        return data


def _layout_btree(reader: _Nodes, header: int, dataset: h5py.Dataset) -> tuple[int, int]:
    """Address of the B-tree root and the number of dimensions of its keys, from the data layout message."""
    for mtype, body in _messages(reader, header):
        if mtype != _MSG_LAYOUT:
            continue
        version = body[0]
        if version in (1, 2):
            ndims, layout_class = body[1], body[2]
            at = 8
        elif version == 3:
            layout_class = body[1]
            if layout_class != 2:
                raise _Unparsable
            ndims, at = body[2], 3
        else:
            raise _Unparsable  # version 4: other chunk index types
        if layout_class != 2 or ndims != dataset.ndim + 1:
            raise _Unparsable
        (address,) = struct.unpack_from("<Q", body, at)
        dims = struct.unpack_from(f"<{ndims}I", body, at + 8)
        if tuple(dims[:-1]) != tuple(dataset.chunks):
            raise _Unparsable
        return address, ndims
    raise _Unparsable


def _messages(reader: _Nodes, header: int) -> list[tuple[int, bytes]]:
    """``(type, body)`` of every message of the object header at ``header`` (versions 1 and 2)."""
    first = reader.read(header, 16)
    if first[:4] == b"OHDR":
        if first[4] != 2:
            raise _Unparsable
        flags = first[5]
        at = 6 + (16 if flags & 0x20 else 0) + (4 if flags & 0x10 else 0)
        width = 1 << (flags & 0x03)
        size = int.from_bytes(reader.read(header + at, width), "little")
        # message header: type (1 byte), size (2), flags (1), creation order (2, when tracked)
        head, fmt, version = 4 + (2 if flags & 0x04 else 0), "<BH", 2
        blocks = [(header + at + width, size, False)]
    elif first[0] == 1:
        (size,) = struct.unpack_from("<I", first, 8)
        head, fmt, version = 8, "<HH", 1  # type (2), size (2), flags (1), reserved (3)
        blocks = [(header + 16, size, False)]
    else:
        raise _Unparsable
    out: list[tuple[int, bytes]] = []
    for _ in range(_MAX_HEADER_BLOCKS):
        if not blocks:
            return out
        start, size, continued = blocks.pop(0)
        if size > _MAX_HEADER_BYTES:
            raise _Unparsable
        data = reader.read(start, size)
        at, end = 0, len(data)
        if version == 2 and continued:  # "OCHK", the messages, a checksum
            if data[:4] != b"OCHK":
                raise _Unparsable
            at, end = 4, end - 4
        while at + head <= end:
            mtype, msize = struct.unpack_from(fmt, data, at)
            body = data[at + head : at + head + msize]
            at += head + msize
            out.append((mtype, body))
            if mtype == _MSG_CONTINUATION:
                offset, length = struct.unpack_from("<QQ", body)
                blocks.append((offset, length, True))
    raise _Unparsable


def _walk(
    reader: _Nodes, root: int, ndims: int, chunks: tuple[int, int], n_cols: int, wanted: np.ndarray
) -> np.ndarray:
    """Entries of the wanted chunks, descending level by level from ``root`` to the leaves that hold them.

    Each entry is a key (chunk size, filter mask, ``ndims`` offsets) and a child address: ``ndims + 2`` words of
    8 bytes. A level's nodes are read and parsed a batch at a time, so memory follows the chunks wanted, not the
    size of the index.
    """
    nodes = [(root, 0, np.iinfo(np.int64).max)]  # address, and the linear positions it covers: [lo, hi)
    level: int | None = None
    for _ in range(_MAX_DEPTH):
        found: list[np.ndarray] = []
        children: list[tuple[int, int, int]] = []
        for first in range(0, len(nodes), _NODES_PER_BATCH):
            batch = nodes[first : first + _NODES_PER_BATCH]
            words, counts, level = _read_nodes(reader, batch, ndims + 2, level)
            rows, cols = words[:, 1], words[:, 2]
            if np.any(rows % chunks[0]) or np.any(cols % chunks[1]):
                raise _Unparsable
            starts = (rows // chunks[0] * n_cols + cols // chunks[1]).astype(np.int64)
            if level == 0:
                found.append(_leaf_entries(words, starts, wanted, reader.base))
            else:
                children += _children(words, starts, counts, batch, wanted)
        assert level is not None  # set by the level's first node
        if level == 0:
            return np.concatenate(found)
        if not children:
            return np.zeros((0, 5), dtype=np.int64)
        nodes, level = children, level - 1
    raise _Unparsable


def _read_nodes(
    reader: _Nodes, nodes: list[tuple[int, int, int]], width: int, level: int | None
) -> tuple[np.ndarray, list[int], int]:
    """The entries (``width`` words each) of these nodes, their number per node, and the nodes' level."""
    bodies, counts = [], []
    for address, _lo, _hi in nodes:
        data = reader.read(address, min(_FIRST_READ, reader.size - reader.base - address))
        if data[:4] != b"TREE" or data[4] != _BTREE_RAW_DATA:
            raise _Unparsable
        node_level = data[5]
        (n,) = struct.unpack_from("<H", data, 6)
        if (level is not None and node_level != level) or n == 0:
            raise _Unparsable
        level = node_level
        need = _NODE_HEADER + n * 8 * width
        if len(data) < need:
            data = reader.read(address, need)
        bodies.append(data[_NODE_HEADER:need])
        counts.append(n)
    assert level is not None  # nodes is never empty
    return np.frombuffer(b"".join(bodies), dtype="<u8").reshape(-1, width), counts, level


def _leaf_entries(words: np.ndarray, starts: np.ndarray, wanted: np.ndarray, base: int) -> np.ndarray:
    """``(row offset, column offset, address, size, filter mask)`` of the wanted chunks among leaf entries."""
    at = np.minimum(np.searchsorted(wanted, starts), max(wanted.shape[0] - 1, 0))
    words = words[wanted[at] == starts] if wanted.shape[0] else words[:0]
    table = np.empty((words.shape[0], 5), dtype=np.int64)
    # file offsets, as HDF5's chunk listing gives them: addresses count from the superblock (the user block)
    table[:, 0], table[:, 1], table[:, 2] = words[:, 1], words[:, 2], words[:, -1] + np.uint64(base)
    table[:, 3] = words[:, 0] & 0xFFFFFFFF  # chunk size, then the filter mask in the high half
    table[:, 4] = words[:, 0] >> 32
    return table


def _children(
    words: np.ndarray, starts: np.ndarray, counts: list[int], nodes: list[tuple[int, int, int]], wanted: np.ndarray
) -> list[tuple[int, int, int]]:
    """The children of these internal nodes whose ranges of linear positions hold wanted chunks."""
    node_of = np.repeat(np.arange(len(nodes)), counts)
    bounds = np.array([(lo, hi) for _, lo, hi in nodes], dtype=np.int64).reshape(-1, 2)
    last = np.cumsum(counts) - 1
    stops = np.empty_like(starts)
    stops[:-1] = starts[1:]
    stops[last] = bounds[:, 1]  # a node's last child reaches as far as the node does
    if np.any(stops <= starts):
        raise _Unparsable
    # children cover disjoint parts of their parent's range: each level visits at most one node per chunk wanted
    starts = np.maximum(starts, bounds[node_of, 0])
    stops = np.minimum(stops, bounds[node_of, 1])
    hit = np.searchsorted(wanted, starts) < np.searchsorted(wanted, stops)
    children = words[hit, -1].astype(np.int64)
    return list(zip(children.tolist(), starts[hit].tolist(), stops[hit].tolist(), strict=True))
