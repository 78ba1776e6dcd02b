"""Bands of cells of a loom dataset as dense arrays, for streaming one file into another (concatenation)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from scanpy_loomio._matrix.chunk_index import selection_layout
from scanpy_loomio._matrix.chunk_reader import ChunkReader
from scanpy_loomio._matrix.pool import ordered_map, resolve_threads
from scanpy_loomio._matrix.tiles import ceil_div, kernel_dtype_ok, load_kernels, native

if TYPE_CHECKING:
    import h5py


class CellBands:
    """Reads bands of cells (every gene) of one loom dataset as dense cells × genes arrays.

    Chunked deflate/shuffle datasets go through the fast path (compressed bytes read directly, inflated in worker
    threads); others through h5py. Call :meth:`close` when done.

    Examples
    --------
    >>> import h5py
    >>> import numpy as np
    >>> from scanpy_loomio._matrix import write_matrix
    >>> x = np.arange(200 * 30, dtype=np.float32).reshape(200, 30)
    >>> with h5py.File("bands.loom", "w") as f:
    ...     _ = write_matrix(f, "matrix", x)
    >>> with h5py.File("bands.loom", "r") as f:
    ...     bands = CellBands(f["matrix"])
    ...     np.array_equal(bands.read(70, 150), x[70:150])
    True
    """

    def __init__(self, dataset: h5py.Dataset, n_threads: int | None = None) -> None:
        self.dataset = dataset
        self.n_genes, self.n_cells = dataset.shape
        self.threads = resolve_threads(n_threads)
        dtype = dataset.dtype
        layout = None
        if kernel_dtype_ok(dtype) and dtype.kind != "b" and self.n_genes > 0 and self.n_cells > 0:
            layout = selection_layout(dataset, None, None)
        self.reader: ChunkReader | None = None
        if layout is not None:
            self.reader = ChunkReader(dataset, layout)

    def read(self, start: int, stop: int) -> np.ndarray:
        """Cells ``start:stop`` as a C-contiguous cells × genes array of the dataset's (native) dtype."""
        reader = self.reader
        if reader is None:
            return np.ascontiguousarray(self.dataset[:, start:stop].T, dtype=native(self.dataset.dtype))
        tw = reader.tw
        first, last = start // tw, ceil_div(stop, tw)
        origin = first * tw
        out = np.empty((min(last * tw, self.n_cells) - origin, self.n_genes), dtype=reader.dtype)
        view = out.view(reader.unsigned)
        kernels = load_kernels()

        def task(bj: int) -> None:
            tiles, slots = reader.band_tiles(bj, by_column=True)
            lo = bj * tw
            width = min(tw, self.n_cells - lo)
            kernels.tiles_to_dense(tiles, slots, self.n_genes, width, view[lo - origin : lo - origin + width])

        for _ in ordered_map(task, range(first, last), self.threads):
            pass
        return out[start - origin : stop - origin]

    def raw_chunks(self, start: int, stop: int, target: h5py.Dataset, shift: int) -> list | None:
        """The stored chunks of cells ``start:stop`` as ``[(offset in target, bytes)]``, or ``None``.

        ``target``'s cells are this dataset's moved by ``shift``. ``None`` when the chunks cannot be copied as they
        are: another chunk shape, filters or dtype, not whole chunk columns, or chunks stored with a filter skipped.
        """
        reader = self.reader
        if reader is None or self.dataset.dtype != target.dtype or self.dataset.chunks != target.chunks:
            return None
        if reader.fill_tile is not None or target.fillvalue != 0:
            return None  # chunks that are not stored read as the fill value
        layout = reader.layout
        tw, th = reader.tw, reader.th
        ends_together = stop == self.n_cells and stop + shift == target.shape[1]
        if start % tw or shift % tw or (stop % tw and not ends_together) or target.shape[0] != self.n_genes:
            return None
        plist = target.id.get_create_plist()
        target_filters = tuple(plist.get_filter(i)[0] for i in range(plist.get_nfilters()))
        if target_filters != layout.filters:
            return None
        columns = np.arange(start // tw, ceil_div(stop, tw))
        block_rows, block_cols = np.nonzero(layout.byte_offsets[:, columns].T >= 0)[::-1]
        block_cols = columns[block_cols]
        if layout.filter_masks[block_rows, block_cols].any():
            return None
        payloads = reader.source.fetch(block_rows, block_cols)
        return [
            ((int(bi) * th, int(bj) * tw + shift), bytes(payload))
            for bi, bj, payload in zip(block_rows.tolist(), block_cols.tolist(), payloads, strict=True)
        ]

    @property
    def chunk_cells(self) -> int:
        """Cells per chunk column."""
        return self.dataset.chunks[1] if self.dataset.chunks else 64

    def close(self) -> None:
        """Release the file descriptor of the fast path."""
        if self.reader is not None:
            self.reader.close()
