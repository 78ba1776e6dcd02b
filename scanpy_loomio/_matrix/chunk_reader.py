"""The fast reader of one chunked deflate/shuffle dataset: chunks inflated in worker threads into tiles.

The compressed bytes are read directly (:mod:`scanpy_loomio._matrix.chunks`), inflated with libdeflate from
compiled code when it is installed (ISA-L or zlib otherwise), and each band of tiles is turned straight into sorted
sparse non-zeros, or copied into the dense result, by the compiled kernels.
"""

from __future__ import annotations

import threading
from functools import partial
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np
from scipy import sparse

from scanpy_loomio._errors import LoomFormatError
from scanpy_loomio._matrix import (
    deflate,  # deflate.libdeflate is looked up at run time (tests switch it off)
    pool,  # pool.TASK_BYTES is read at run time (tests shrink it)
)
from scanpy_loomio._matrix.assembler import CompressedAssembler, Pieces, PlacementChain
from scanpy_loomio._matrix.chunks import ChunkLayout, RawChunkSource
from scanpy_loomio._matrix.deflate import FILTER_DEFLATE, LONGEST_MATCH, inflate_errors, inflater, unfilter
from scanpy_loomio._matrix.pool import gc_paused, ordered_map, progress_bar
from scanpy_loomio._matrix.tiles import (
    INDEX32_MAX,
    load_kernels,
    native,
    nonzero_mask,
    sparse_result_dtype,
    tiles_to_nonzeros,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from types import ModuleType

    import h5py
    import numpy.typing as npt

    from scanpy_loomio._matrix.pool import ProgressBar


class ReadStopped(Exception):
    """A read was stopped: its ``stop`` event was set while it ran (the thread waiting for it has given up)."""


def check_stop(stop: threading.Event | None) -> None:
    """Raise :class:`ReadStopped` once ``stop`` is set."""
    if stop is not None and stop.is_set():
        raise ReadStopped


#: ``wanted`` of reads that inflate every chunk whole (not looked at with a negative margin).
_WHOLE = np.zeros(0, dtype=np.int64)


class ChunkReader:
    """Reads a chunked deflate/shuffle dataset: parallel inflate, per-band conversion to non-zeros."""

    def __init__(self, dataset: h5py.Dataset, layout: ChunkLayout) -> None:
        # no reference to ``dataset`` is kept: a reader handed to another thread must not free h5py objects there
        self.where = (dataset.file.filename, dataset.name)  # for errors raised where HDF5 must not be called
        self.layout = layout
        self.n_genes, self.n_cells = dataset.shape
        self.th, self.tw = layout.chunk_rows, layout.chunk_cols
        self.row_blocks, self.col_blocks = layout.byte_offsets.shape
        file_dtype = dataset.dtype
        self.swap = not file_dtype.isnative and file_dtype.itemsize > 1
        self.dtype = native(file_dtype)
        self.itemsize = file_dtype.itemsize
        self.unsigned = np.dtype(f"u{self.itemsize}")
        self.mask = nonzero_mask(self.dtype)
        self.tile_bytes = self.th * self.tw * self.itemsize
        self.inflate = inflater()
        self.libdeflate = deflate.libdeflate()
        self._local = threading.local()
        #: bytes of each tile that are needed, by chunk row of the layout (``None``: all); set by subset reads
        self.wanted_bytes: np.ndarray | None = None
        self.plain_deflate = layout.filters == (FILTER_DEFLATE,)
        fill = np.zeros((), dtype=file_dtype)
        fill[()] = dataset.fillvalue if dataset.fillvalue is not None else 0
        self.fill_tile: bytes | None = None
        if fill.view(self.unsigned) != 0:  # stored as bits, so a fill of -0.0 is kept too
            self.fill_tile = np.full((self.th, self.tw), fill, dtype=file_dtype).tobytes()
        # the last HDF5 calls: from here on, the chunks are read through the file's own descriptor where it has one
        self.source = RawChunkSource(dataset, layout)

    def close(self) -> None:
        """Let go of the file's descriptor."""
        self.source.close()

    def run(
        self, fmt: str, n_threads: int, *, progress: bool, stop: threading.Event | None = None
    ) -> npt.NDArray[Any] | sparse.csr_matrix | sparse.csc_matrix:
        """The whole dataset as a cells × genes matrix in ``fmt``; the reader is closed afterwards.

        Once ``stop`` is set, :class:`ReadStopped` is raised after the task at hand (tasks not started are dropped).
        """
        by_column = fmt != "csc"
        n_units = self.col_blocks if by_column else self.row_blocks
        unit_tiles = self.row_blocks if by_column else self.col_blocks
        per_task = max(1, pool.TASK_BYTES // (unit_tiles * self.tile_bytes))
        tasks = [(u, min(u + per_task, n_units)) for u in range(0, n_units, per_task)]
        bar = progress_bar(progress, n_units * unit_tiles, f"reading {self.where[1]}")
        try:
            with gc_paused():
                return self._collect(fmt, tasks, unit_tiles, n_threads, bar, stop, by_column=by_column)
        finally:
            bar.close()
            self.close()

    def _collect(
        self,
        fmt: str,
        tasks: list[tuple[int, int]],
        unit_tiles: int,
        n_threads: int,
        bar: ProgressBar,
        stop: threading.Event | None,
        *,
        by_column: bool,
    ) -> npt.NDArray[Any] | sparse.csr_matrix | sparse.csc_matrix:
        check_stop(stop)  # a read queued behind one that failed: nothing to do
        if fmt == "dense":
            self.out = np.empty((self.n_cells, self.n_genes), dtype=self.dtype)
            for (first, last), _ in zip(tasks, ordered_map(self._dense_task, tasks, n_threads), strict=True):
                bar.update((last - first) * unit_tiles)
                check_stop(stop)
            return self.out
        n_major, n_minor = (self.n_cells, self.n_genes) if by_column else (self.n_genes, self.n_cells)
        index_dtype = np.dtype(np.int32 if n_minor <= INDEX32_MAX else np.int64)
        self.index_dtype = index_dtype
        assembler = CompressedAssembler(n_major, n_minor, sparse_result_dtype(self.dtype), index_dtype)
        task = self._csr_task if by_column else self._csc_task
        # with worker threads, each places its task's non-zeros into the result itself where there is room for all
        capacity = assembler.reserve() if n_threads > 1 else 0
        chain = PlacementChain(assembler, capacity) if capacity else None
        results: Iterator[Pieces | None]
        if chain is None:
            results = ordered_map(task, tasks, n_threads)
        else:
            results = ordered_map(partial(self._settled, task, chain), enumerate(tasks), n_threads)
        for index, ((first, last), pieces) in enumerate(zip(tasks, results, strict=True)):
            result = pieces if chain is None else chain.outcome(index)
            if isinstance(result, int):
                assembler.placed(result)
            elif result is not None:  # pieces the collecting thread appends
                for major_start, counts, indices, data in result:
                    assembler.append(major_start, counts, indices, data.view(self.dtype))
            bar.update((last - first) * unit_tiles)
            check_stop(stop)
        return assembler.finish(fmt)

    def _settled(
        self, task: Callable[[tuple[int, int]], Pieces], chain: PlacementChain, numbered: tuple[int, tuple[int, int]]
    ) -> None:
        """Run ``task`` and hand its non-zeros (in the result's dtype) to ``chain``, which places them."""
        index, units = numbered
        chain.settle(index, [(m, c, i, d.view(self.dtype)) for m, c, i, d in task(units)])

    def band_tiles(self, index: int, *, by_column: bool) -> tuple[np.ndarray, np.ndarray]:
        """Decoded tiles of chunk column (``by_column``) or chunk row ``index``, as ``(tiles, slots)``."""
        layout = self.layout
        if by_column:
            offsets = layout.byte_offsets[:, index]
            present = np.flatnonzero(offsets >= 0)
            block_rows, block_cols = present, np.full(present.shape[0], index)
        else:
            offsets = layout.byte_offsets[index, :]
            present = np.flatnonzero(offsets >= 0)
            block_rows, block_cols = np.full(present.shape[0], index), present
        masks = layout.filter_masks[block_rows, block_cols]
        size = self.tile_bytes
        n_tiles = offsets.shape[0]
        # set when some chunks are absent and hold a non-zero fill value: their tiles are filled with it
        fill_tile = self.fill_tile if present.shape[0] < n_tiles else None
        n_slots = n_tiles if fill_tile is not None else present.shape[0]
        scratch = self._scratch(n_slots * size)
        targets: Sequence[int]
        if fill_tile is not None:
            slots = np.arange(n_tiles, dtype=np.int64)
            targets = present.tolist()
            for position in np.flatnonzero(offsets < 0).tolist():
                scratch[position * size : (position + 1) * size] = fill_tile
        else:
            slots = np.full(n_tiles, -1, dtype=np.int64)
            slots[present] = np.arange(present.shape[0])
            targets = range(present.shape[0])
        plain = self.plain_deflate and not masks.any()
        if plain and self.libdeflate is not None and self.source.fd is not None:
            packed, starts, lengths = self.source.fetch_packed(block_rows, block_cols)
            wanted = None if self.wanted_bytes is None or not by_column else self.wanted_bytes[block_rows]
            self._inflate_packed(
                packed, starts, lengths, np.asarray(targets, dtype=np.int64), scratch, block_rows, block_cols, wanted
            )
        elif plain:
            raw = self.source.fetch(block_rows, block_cols)
            inflate = self.inflate
            j = 0
            try:
                for j, (k, buf) in enumerate(zip(targets, raw, strict=True)):
                    tile = inflate(buf, 15, size)
                    if len(tile) != size:
                        self._damaged(block_rows[j], block_cols[j], len(tile))
                    scratch[k * size : (k + 1) * size] = tile
            except inflate_errors() as err:
                self._damaged(block_rows[j], block_cols[j], None, err)
        else:
            raw = self.source.fetch(block_rows, block_cols)
            rows, cols = block_rows.tolist(), block_cols.tolist()
            for j, (k, buf, skipped) in enumerate(zip(targets, raw, masks.tolist(), strict=True)):
                scratch[k * size : (k + 1) * size] = self._decode(buf, skipped, rows[j], cols[j])
        tiles: npt.NDArray[Any] = np.frombuffer(scratch, dtype=self.unsigned, count=n_slots * self.th * self.tw)
        tiles = tiles.reshape(n_slots, self.th, self.tw)
        if self.swap:
            tiles.byteswap(inplace=True)
        return tiles, slots

    def _inflate_packed(
        self,
        packed: np.ndarray,
        starts: np.ndarray,
        lengths: np.ndarray,
        targets: np.ndarray,
        scratch: memoryview,
        block_rows: np.ndarray,
        block_cols: np.ndarray,
        wanted: np.ndarray | None,
    ) -> None:
        """Inflate packed chunks into their tile slots of ``scratch`` with libdeflate, in compiled code.

        Only the first ``wanted[k]`` bytes of tile ``k`` are needed (``None``: all): where libdeflate stops in
        order, chunks are inflated only that far.
        """
        lib = self.libdeflate
        assert lib is not None  # band_tiles inflates with libdeflate only when it is there
        handle = lib.alloc()
        if not handle:
            raise MemoryError("libdeflate could not allocate a decompressor")
        try:
            out = np.frombuffer(scratch, dtype=np.uint8)
            actual = np.zeros(1, dtype=np.uint64)
            # a negative margin inflates every chunk whole without looking at ``wanted``
            margin = LONGEST_MATCH if lib.stops_in_order and wanted is not None else -1
            wanted = _WHOLE if wanted is None else wanted
            bad = load_kernels().inflate_chunks(
                lib.zlib_decompress, handle, packed, starts, lengths, targets, out, self.tile_bytes, wanted, margin,
                actual,
            )  # fmt: skip
        finally:
            lib.free(handle)
        if bad >= 0:
            self._damaged(block_rows[bad], block_cols[bad], None)

    def _scratch(self, nbytes: int) -> memoryview:
        """A reusable buffer for decoded tiles, one per thread (reuse avoids page faults on every band)."""
        buffer = getattr(self._local, "buffer", None)
        if buffer is None or len(buffer) < nbytes:
            buffer = self._local.buffer = memoryview(bytearray(nbytes))
        return buffer

    def _decode(self, payload: bytes | memoryview, skipped: int, bi: int, bj: int) -> bytes | memoryview:
        """Undo the filter pipeline for one chunk."""
        try:
            decoded = unfilter(payload, self.layout.filters, skipped, self.itemsize, self._inflate_tile)
        except inflate_errors() as err:
            self._damaged(bi, bj, None, err)
        assert decoded is not None  # the layout's filters are among FAST_FILTERS, all of which unfilter undoes
        if len(decoded) != self.tile_bytes:
            self._damaged(bi, bj, len(decoded))
        return decoded

    def _inflate_tile(self, stream: bytes | memoryview) -> bytes:
        return self.inflate(stream, 15, self.tile_bytes)

    def _damaged(self, bi: int, bj: int, got: int | None, cause: Exception | None = None) -> NoReturn:
        found = "a damaged deflate stream" if got is None else f"{got} bytes"
        if cause is not None:
            found += f" ({cause})"
        filename, name = self.where
        msg = (
            f"{filename}: the chunk at {self.layout.chunk_offset(bi, bj)} of {name} decodes to {found}, expected "
            f"{self.tile_bytes} bytes; the file is damaged. Re-create it from its source."
        )
        raise LoomFormatError(msg) from cause

    def _csr_task(self, units: tuple[int, int]) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
        kernels = load_kernels()
        pieces = []
        for bj in range(*units):
            tiles, slots = self.band_tiles(bj, by_column=True)
            start = bj * self.tw
            width = min(self.tw, self.n_cells - start)
            pieces.append((start, *self._nonzeros(kernels, tiles, slots, self.n_genes, width, by_column=True)))
        return pieces

    def _csc_task(self, units: tuple[int, int]) -> list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
        kernels = load_kernels()
        pieces = []
        for bi in range(*units):
            tiles, slots = self.band_tiles(bi, by_column=False)
            start = bi * self.th
            height = min(self.th, self.n_genes - start)
            pieces.append((start, *self._nonzeros(kernels, tiles, slots, height, self.n_cells, by_column=False)))
        return pieces

    def _nonzeros(
        self, kernels: ModuleType, tiles: np.ndarray, slots: np.ndarray, n_rows: int, n_cols: int, *, by_column: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        return tiles_to_nonzeros(kernels, tiles, slots, self.mask, n_rows, n_cols, self.index_dtype, by_column)

    def _dense_task(self, units: tuple[int, int]) -> None:
        kernels = load_kernels()
        out = self.out.view(self.unsigned)
        for bj in range(*units):
            tiles, slots = self.band_tiles(bj, by_column=True)
            start = bj * self.tw
            width = min(self.tw, self.n_cells - start)
            kernels.tiles_to_dense(tiles, slots, self.n_genes, width, out[start : start + width])
