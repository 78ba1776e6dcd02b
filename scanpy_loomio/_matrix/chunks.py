"""Raw chunk I/O: where a dataset's chunks lie in the file, and their stored (still encoded) bytes.

HDF5 is asked once for the whole chunk index; the fast readers then read the compressed bytes themselves, straight
from the file with ``pread`` where it is a plain file on disk, and through HDF5 chunk by chunk otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, cast

import h5py
import numpy as np

from scanpy_loomio._errors import LoomFormatError
from scanpy_loomio._matrix.deflate import FILTER_DEFLATE, FILTER_SHUFFLE
from scanpy_loomio._matrix.pool import gc_paused
from scanpy_loomio._matrix.tiles import ceil_div

#: Filters the fast path decodes itself.
FAST_FILTERS = frozenset({FILTER_DEFLATE, FILTER_SHUFFLE})
#: Chunks closer than this in the file are read with one call, the bytes between them read and dropped.
READ_GAP = 64 * 2**10


@dataclass
class ChunkLayout:
    """Where the chunks of a dataset lie and how to decode them.

    The grid covers every chunk of the dataset, or (``row_ids``/``col_ids`` set) only the chunk rows and columns a
    selection needs: grid position ``(i, j)`` is then chunk ``(row_ids[i], col_ids[j])``.
    """

    chunk_rows: int
    chunk_cols: int
    filters: tuple[int, ...]  # filter codes in pipeline (write) order
    byte_offsets: np.ndarray  # (row blocks, column blocks) int64, -1 where the chunk is not stored
    sizes: np.ndarray  # (row blocks, column blocks) int64
    filter_masks: np.ndarray  # (row blocks, column blocks) int64, bit i set: filter i was skipped
    row_ids: np.ndarray | None = None
    col_ids: np.ndarray | None = None
    n_outside: int = 0  # index entries beyond the dataset's extent

    def chunk_offset(self, bi: int, bj: int) -> tuple[int, int]:
        """Element offset in the dataset of the chunk at grid position ``(bi, bj)``."""
        if self.row_ids is not None:
            bi = self.row_ids[bi]
        if self.col_ids is not None:
            bj = self.col_ids[bj]
        return int(bi) * self.chunk_rows, int(bj) * self.chunk_cols

    @staticmethod
    def fast_filters(dataset: h5py.Dataset) -> tuple[int, ...] | None:
        """The filter pipeline when the fast path can decode the dataset's chunks, else ``None``."""
        if dataset.chunks is None:
            return None  # contiguous, compact or virtual
        dsid = dataset.id
        plist = dsid.get_create_plist()
        if plist.get_layout() != h5py.h5d.CHUNKED:
            return None
        filters = tuple(plist.get_filter(i)[0] for i in range(plist.get_nfilters()))
        if not set(filters) <= FAST_FILTERS or not hasattr(dsid, "chunk_iter"):
            return None
        return filters

    @classmethod
    def inspect(cls, dataset: h5py.Dataset) -> ChunkLayout | None:
        """The layout when the fast path can decode the dataset, else ``None``."""
        filters = cls.fast_filters(dataset)
        if filters is None:
            return None
        layout = cls.from_records(dataset, filters, chunk_index(dataset.id))
        # HDF5 1.14 lists the chunks of some index types (files written with libver="latest") at wrong offsets,
        # most beyond the extent; such datasets are read through h5py (as are the rare ones really shrunk).
        return None if layout.n_outside else layout

    @classmethod
    def from_records(
        cls,
        dataset: h5py.Dataset,
        filters: tuple[int, ...],
        records: list[tuple[int, ...]] | np.ndarray,
        rows: np.ndarray | None = None,
        cols: np.ndarray | None = None,
    ) -> ChunkLayout:
        """The layout from chunk index entries ``(row offset, column offset, address, size, filter mask)``.

        ``rows``/``cols``: sorted chunk rows/columns to keep (``None``: all); entries elsewhere are dropped.
        """
        chunk_rows, chunk_cols = dataset.chunks
        n_genes, n_cells = dataset.shape
        full = (ceil_div(n_genes, chunk_rows), ceil_div(n_cells, chunk_cols))
        grid = (full[0] if rows is None else len(rows), full[1] if cols is None else len(cols))
        byte_offsets = np.full(grid, -1, dtype=np.int64)
        sizes = np.zeros(grid, dtype=np.int64)
        masks = np.zeros(grid, dtype=np.int64)
        n_outside = 0
        if len(records):
            table = checked_chunk_table(dataset, records, chunk_rows * chunk_cols)
            del records
            bi = table[:, 0] // chunk_rows
            bj = table[:, 1] // chunk_cols
            inside = (bi < full[0]) & (bj < full[1])  # chunks beyond the extent hold no data
            n_outside = int(inside.shape[0] - np.count_nonzero(inside))
            for ids, position in ((rows, bi), (cols, bj)):
                if ids is not None:  # keep the selected chunks, at their positions in the sub-grid
                    at = np.minimum(np.searchsorted(ids, position), max(len(ids) - 1, 0))
                    inside &= (ids[at] == position) if len(ids) else False
                    position[:] = at
            bi, bj, table = bi[inside], bj[inside], table[inside]
            byte_offsets[bi, bj] = table[:, 2]
            sizes[bi, bj] = table[:, 3]
            masks[bi, bj] = table[:, 4]
        return cls(chunk_rows, chunk_cols, filters, byte_offsets, sizes, masks, rows, cols, n_outside)


class _StoreInfo(Protocol):
    """What ``chunk_iter`` tells of one stored chunk (h5py's ``StoreInfo``)."""

    chunk_offset: tuple[int, ...]
    filter_mask: int
    byte_offset: int
    size: int


def chunk_index(dsid: h5py.h5d.DatasetID) -> list[tuple[int, ...]]:
    """Every stored chunk of a chunked dataset as ``(*chunk offset, byte address, stored size, filter mask)``.

    Asks HDF5 once for its whole chunk index (``chunk_iter``); needs h5py 3.8 or newer.
    """
    records: list[tuple[int, ...]] = []
    append = records.append

    def visit(info: _StoreInfo) -> None:
        append((*info.chunk_offset, info.byte_offset, info.size, info.filter_mask))

    with gc_paused():
        dsid.chunk_iter(visit)
    return records


def stored_chunks(dsid: h5py.h5d.DatasetID) -> Iterator[tuple[int, bytes]]:
    """``(filter mask, encoded bytes)`` of every stored chunk of a chunked dataset, each read through HDF5."""
    for record in chunk_index(dsid):
        yield dsid.read_direct_chunk(record[:-3])


def checked_chunk_table(
    dataset: h5py.Dataset, records: list[tuple[int, ...]] | np.ndarray, chunk_size: int
) -> np.ndarray:
    """The chunk index as an array, refusing entries outside the file or far larger than a chunk.

    The fast path reads these bytes itself, so a damaged index must neither send it past the end of the file nor make
    it allocate gigabytes for one chunk.
    """
    file_size = dataset.file.id.get_filesize()
    largest = 2 * chunk_size * dataset.dtype.itemsize + 4096  # compressed data is never much larger than a chunk
    try:
        table = np.asarray(records, dtype=np.int64)
        bad = (table[:, 2] < 0) | (table[:, 3] > largest) | (table[:, 2] > file_size - table[:, 3])
    except OverflowError:  # an address beyond any file
        table, bad = None, None
    if table is not None and not bad.any():
        return table
    row = records[int(np.argmax(bad))] if bad is not None else max(records, key=lambda r: r[2])
    row = [int(v) for v in row]  # plain numbers in the message (entries may be numpy integers)
    msg = (
        f"{dataset.file.filename}: {dataset.name}: found a chunk index entry at {(row[0], row[1])} of {row[3]} bytes "
        f"at byte {row[2]}; expected chunks inside the file ({file_size} bytes) of at most {largest} bytes. The file "
        "is damaged; copy or download it again."
    )
    raise LoomFormatError(msg)


class RawChunkSource:
    """Fetches the stored (still encoded) bytes of chunks.

    Reads the file directly at the addresses HDF5 reported when the file is a plain file on disk; otherwise
    (in-memory or file-object drivers, or when the addresses do not check out) asks HDF5 chunk by chunk.
    """

    def __init__(self, dataset: h5py.Dataset, layout: ChunkLayout) -> None:
        #: HDF5's identifier of the dataset, kept only where the chunks are read through HDF5 (``fd`` is ``None``)
        self.dsid: h5py.h5d.DatasetID | None = dataset.id
        self.layout = layout
        self.fd: int | None = None
        self.base = 0
        h5file = dataset.file
        if h5file.mode != "r":
            h5file.flush()  # chunks still in HDF5's cache are not on disk yet
        path = h5file.filename
        if h5file.driver in ("sec2", "stdio") and os.path.isfile(path) and hasattr(os, "pread"):
            self.fd = same_file_descriptor(h5file, path)
            if not self._addresses_check_out(h5file):
                os.close(self.fd)
                self.fd = None
        if self.fd is not None:
            # Dropped: freeing an h5py object takes h5py's lock, which a thread waiting for this source's reader (in
            # another thread) may hold; then neither could go on.
            self.dsid = None

    def _addresses_check_out(self, h5file: h5py.File) -> bool:
        """Compare one chunk read at its address with HDF5's own copy; try the user block as base."""
        stored = np.argwhere(self.layout.byte_offsets >= 0)
        if stored.shape[0] == 0:
            return True
        bi, bj = stored[0]
        assert self.dsid is not None  # dropped only after this check
        expected = self.dsid.read_direct_chunk(self.layout.chunk_offset(bi, bj))[1]
        address = int(self.layout.byte_offsets[bi, bj])
        size = int(self.layout.sizes[bi, bj])
        userblock = h5file.id.get_create_plist().get_userblock()
        fd = self.fd
        assert fd is not None  # called right after opening it
        for base in dict.fromkeys((0, userblock)):
            if _pread_exact(fd, size, address + base) == expected:
                self.base = base
                return True
        return False

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def fetch_packed(self, block_rows: np.ndarray, block_cols: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Encoded bytes of the chunks at ``(block_rows[k], block_cols[k])`` packed into one array.

        Returns ``(packed, offsets, lengths)``: chunk ``k`` is ``packed[offsets[k]:offsets[k] + lengths[k]]``.
        Needs a file descriptor (``self.fd``). Runs of nearby chunks are read with one call each.
        """
        addresses = self.layout.byte_offsets[block_rows, block_cols] + self.base
        lengths = self.layout.sizes[block_rows, block_cols]
        if addresses.shape[0] == 0:
            return np.zeros(0, dtype=np.uint8), addresses, lengths
        fd = self.fd
        assert fd is not None  # callers check it
        order = np.argsort(addresses, kind="stable")
        starts = addresses[order]
        reach = np.maximum.accumulate(starts + lengths[order])
        breaks = np.flatnonzero(starts[1:] > reach[:-1] + READ_GAP) + 1
        run_first = np.concatenate([[0], breaks])
        run_last = np.concatenate([breaks, [starts.shape[0]]])
        run_starts = starts[run_first]
        run_sizes = reach[run_last - 1] - run_starts
        run_positions = np.concatenate([[0], np.cumsum(run_sizes)[:-1]])
        packed = bytearray(int(run_sizes.sum()))
        view = memoryview(packed)
        for position, start, size in zip(run_positions.tolist(), run_starts.tolist(), run_sizes.tolist(), strict=True):
            _preadv_exact(fd, view[position : position + size], start)
        run_of = np.repeat(np.arange(run_first.shape[0]), run_last - run_first)
        offsets = np.empty_like(addresses)
        offsets[order] = starts - run_starts[run_of] + run_positions[run_of]
        return np.frombuffer(packed, dtype=np.uint8), offsets, lengths

    def fetch(self, block_rows: np.ndarray, block_cols: np.ndarray) -> list[bytes | memoryview]:
        """Encoded bytes of the stored chunks at grid positions ``(block_rows[k], block_cols[k])``, in order."""
        if block_rows.shape[0] == 0:
            return []
        if self.fd is None:
            assert self.dsid is not None  # kept when there is no descriptor
            read, offset = self.dsid.read_direct_chunk, self.layout.chunk_offset
            return [read(offset(bi, bj))[1] for bi, bj in zip(block_rows.tolist(), block_cols.tolist(), strict=True)]
        addresses = self.layout.byte_offsets[block_rows, block_cols] + self.base
        lengths = self.layout.sizes[block_rows, block_cols]
        # Read runs of nearby chunks with one call each (this package's files keep a band's chunks together;
        # other files may spread them), then hand out slices in the order asked for.
        order = np.argsort(addresses, kind="stable")
        starts = addresses[order]
        ends = starts + lengths[order]
        reach = np.maximum.accumulate(ends)
        breaks = np.flatnonzero(starts[1:] > reach[:-1] + READ_GAP) + 1
        run_first = np.concatenate([[0], breaks])
        run_last = np.concatenate([breaks, [starts.shape[0]]])
        pieces: list[memoryview | None] = [None] * starts.shape[0]
        fd = self.fd
        sorted_lengths = lengths[order]
        for first, last in zip(run_first.tolist(), run_last.tolist(), strict=True):
            run_start = int(starts[first])
            view = memoryview(_pread_exact(fd, int(reach[last - 1]) - run_start, run_start))
            offsets = (starts[first:last] - run_start).tolist()
            for k, offset, length in zip(
                order[first:last].tolist(), offsets, sorted_lengths[first:last].tolist(), strict=True
            ):
                pieces[k] = view[offset : offset + length]
        return cast("list[bytes | memoryview]", pieces)  # every position is set: order is a permutation


def same_file_descriptor(h5file: h5py.File, path: str | os.PathLike[str]) -> int:
    """A descriptor on the file HDF5 has open: ``path`` may name another file by now (replaced by a writer)."""
    if h5file.driver == "sec2":  # its handle is a POSIX file descriptor
        try:
            return os.dup(h5file.id.get_vfd_handle())
        except (AttributeError, OSError, RuntimeError, TypeError, ValueError):
            pass
    return os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))


def _preadv_exact(fd: int, into: memoryview, offset: int) -> None:
    """Fill ``into`` with the file's bytes from ``offset`` on."""
    if not hasattr(os, "preadv"):
        into[:] = _pread_exact(fd, len(into), offset)
        return
    done = 0
    size = len(into)
    while done < size:
        n = os.preadv(fd, [into[done:]], offset + done)
        if n <= 0:
            msg = f"unexpected end of file reading {size} bytes at offset {offset}"
            raise OSError(msg)
        done += n


def _pread_exact(fd: int, size: int, offset: int) -> bytes:
    data = os.pread(fd, size, offset)
    while len(data) < size:  # a short read: ask for the rest
        more = os.pread(fd, size - len(data), offset + len(data))
        if not more:
            msg = f"unexpected end of file reading {size} bytes at offset {offset}"
            raise OSError(msg)
        data += more
    return data
