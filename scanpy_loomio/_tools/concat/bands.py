"""The output matrices, streamed: each band of output cells built from windows of the inputs' stored cells."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any, TypedDict

import h5py
import numpy as np

from scanpy_loomio import _matrix
from scanpy_loomio._record.tags import AbsentMatrixTag, MatrixTag, write_tag
from scanpy_loomio._tools.concat.inputs import fill_values

if TYPE_CHECKING:
    from scanpy_loomio._tools.concat.inputs import Input


class WriteOptions(TypedDict):
    """How every output matrix is written: the keywords of the matrix engine's ``write_matrix``."""

    chunks: tuple[int, int]
    compression_level: int
    n_threads: int | None
    progress: bool


class Window:
    """Cells of one input layer as dense rows of the result dtype, read a chunk-aligned window at a time."""

    def __init__(
        self,
        dset: h5py.Dataset,
        codec_dtype: np.dtype | None,
        dtype: np.dtype,
        *,
        transposed: bool = False,
        n_threads: int | None = None,
    ) -> None:
        self.dset = dset
        self.codec_dtype = codec_dtype
        self.dtype = dtype
        self.transposed = transposed  # stored cells × genes
        self.n_threads = n_threads
        self.bands: _matrix.CellBands | None = None
        self.n_genes, self.n_cells = dset.shape[::-1] if transposed else dset.shape
        self.chunk = (dset.chunks[0 if transposed else 1] if dset.chunks else 64) or 64
        self.width = _matrix.band_width(self.n_genes, max(dtype.itemsize, dset.dtype.itemsize), self.chunk)
        self.start = self.stop = 0
        self.values = np.empty((0, self.n_genes), dtype=dtype)

    def _cells(self, selection: slice | np.ndarray) -> np.ndarray:
        """Stored values of cells ``selection`` (a slice or increasing positions), cells × genes."""
        if self.transposed:
            return self.dset[selection, :]
        if isinstance(selection, slice):
            if self.bands is None:
                self.bands = _matrix.CellBands(self.dset, self.n_threads)
            return self.bands.read(selection.start, selection.stop)
        return self.dset[:, selection].T

    def close(self) -> None:
        """Free the window and the fast path's file descriptor (reading again reopens them)."""
        if self.bands is not None:
            self.bands.close()
            self.bands = None
        self.values = np.empty((0, self.n_genes), dtype=self.dtype)
        self.start = self.stop = 0

    def _convert(self, raw: np.ndarray) -> np.ndarray:
        # as reading gives it (the recorded dtype), then as anndata.concat casts it
        values = np.ascontiguousarray(raw)
        if self.codec_dtype is not None and values.dtype != self.codec_dtype:
            values = values.astype(self.codec_dtype)
        return values.astype(self.dtype, copy=False)

    def rows(self, index: np.ndarray) -> np.ndarray:
        """Cells ``index`` (input positions) as a ``len(index)`` × genes array."""
        if index.size == 0:
            return np.empty((0, self.n_genes), dtype=self.dtype)
        lo, hi = int(index.min()), int(index.max()) + 1
        if hi - lo > max(self.width, 4 * index.size):  # scattered cells: read just those
            unique, inverse = np.unique(index, return_inverse=True)
            return self._convert(self._cells(unique))[inverse]
        if not (self.start <= lo and hi <= self.stop):
            start = lo - lo % self.chunk
            stop = max(hi, start + self.width)
            stop = min(self.n_cells, -(-stop // self.chunk) * self.chunk)
            del self.values  # free the old window first
            self.values = self._convert(self._cells(slice(start, stop)))
            self.start, self.stop = start, stop
        if index[-1] - index[0] + 1 == index.size and (index.size < 2 or bool(np.all(np.diff(index) == 1))):
            return self.values[lo - self.start : hi - self.start]
        return self.values[index - self.start]

    def raw_chunks(self, start: int, stop: int, target: h5py.Dataset, shift: int) -> list | None:
        """Stored chunks of cells ``start:stop``, when they can be copied into ``target`` as they are."""
        if self.transposed or (self.codec_dtype is not None and self.codec_dtype != self.dset.dtype):
            return None
        if self.dtype != self.dset.dtype:
            return None
        if self.bands is None:
            self.bands = _matrix.CellBands(self.dset, self.n_threads)
        return self.bands.raw_chunks(start, stop, target, shift)


class ConcatBands:
    """The concatenated matrix, built one band of output cells at a time when sliced (``matrix[lo:hi]``)."""

    def __init__(
        self,
        axis: int,
        parts: list[tuple[Window | None, np.ndarray, Any]],
        sizes: list[int],
        shape: tuple[int, int],
        dtype: np.dtype,
    ) -> None:
        # parts: per input, (window, or None when the input lacks the layer; positions of the other axis's output
        # entries in the input, -1 where absent; fill value of those). sizes: the inputs' lengths along ``axis``.
        self.axis = axis
        self.parts = parts
        self.shape = shape
        self.ndim = 2
        self.result_dtype = dtype
        self.dtype = stored_dtype(dtype)
        self.lock = threading.Lock()
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    def task_boundaries(self) -> list[int]:
        """Where one input's cells end and the next one's begin (the writer does not let a task straddle them)."""
        return [int(x) for x in self.offsets[1:-1]] if self.axis == 0 else []

    def raw_chunks(self, lo: int, hi: int, target: h5py.Dataset) -> list | None:
        """Output cells ``lo:hi`` as stored chunks of one input, copied without inflating; ``None`` if impossible.

        Possible when one input holds them all, with the output's genes in its order, stored as the output is.
        """
        if self.axis != 0:
            return None
        i = int(np.searchsorted(self.offsets, lo, side="right")) - 1
        if i >= len(self.parts) or hi > self.offsets[i + 1]:
            return None
        window, positions, _ = self.parts[i]
        if (
            window is None
            or positions.size != window.n_genes
            or not np.array_equal(positions, np.arange(positions.size))
        ):
            return None
        with self.lock:
            offset = int(self.offsets[i])
            return window.raw_chunks(lo - offset, hi - offset, target, offset)

    def __getitem__(self, key: slice) -> np.ndarray:
        lo, hi, _ = key.indices(self.shape[0])
        with self.lock:
            return self._band(lo, hi).astype(self.dtype, copy=False)

    def _band(self, lo: int, hi: int) -> np.ndarray:
        n_genes = self.shape[1]
        if self.axis == 0:
            blocks = []
            for i, (window, positions, fill) in enumerate(self.parts):
                a, b = max(lo, int(self.offsets[i])), min(hi, int(self.offsets[i + 1]))
                if b <= lo and window is not None:
                    window.close()  # done with this input: free its window
                if a >= b:
                    continue
                local = np.arange(a - self.offsets[i], b - self.offsets[i])
                blocks.append(self._placed(window, local, positions, fill, n_genes))
            if len(blocks) == 1:
                return blocks[0]
            return np.concatenate(blocks, axis=0) if blocks else np.empty((0, n_genes), dtype=self.result_dtype)
        out = np.empty((hi - lo, n_genes), dtype=self.result_dtype)
        for i, (window, positions, fill) in enumerate(self.parts):
            g0, g1 = int(self.offsets[i]), int(self.offsets[i + 1])
            cells = positions[lo:hi]
            present = cells >= 0
            block = out[:, g0:g1]
            if window is None or not present.all():
                block[...] = fill
            if window is not None and present.any():
                block[present] = window.rows(cells[present])
        return out

    def _placed(
        self, window: Window | None, cells: np.ndarray, positions: np.ndarray, fill: Any, n_genes: int
    ) -> np.ndarray:
        if window is None:
            return np.full((cells.size, n_genes), fill, dtype=self.result_dtype)
        rows = window.rows(cells)
        if positions.size == rows.shape[1] and np.array_equal(positions, np.arange(positions.size)):
            return rows
        out = np.full((cells.size, n_genes), fill, dtype=self.result_dtype)
        present = positions >= 0
        out[:, present] = rows[:, positions[present]]
        return out


def stored_dtype(dtype: np.dtype) -> np.dtype:
    """The dtype a matrix of ``dtype`` is stored with: bool as uint8."""
    return np.dtype(np.uint8) if np.dtype(dtype).kind == "b" else np.dtype(dtype)


def write_concat(
    group: h5py.Group,
    name: str,
    key: str | None,
    template: Any,
    inputs: list[Input],
    positions: list[np.ndarray],
    axis: int,
    shape: tuple[int, int],
    options: WriteOptions,
) -> None:
    """Write one output matrix (``key`` ``None``: ``X``) band by band; ``template`` is its concatenated stand-in."""
    if template is None:
        dset = _matrix.write_matrix(group, name, None, shape=shape, dtype=np.dtype(np.float32), **options)
        write_tag(dset, AbsentMatrixTag())
        return
    dtype = np.dtype(template.dtype)
    fills = fill_values(template, inputs, key, positions, axis)
    parts = []
    for inp, pos, fill in zip(inputs, positions, fills, strict=True):
        window = None
        if key in inp.sources and key not in inp.absent:
            window = Window(
                inp.sources[key],
                inp.codec_dtype(key),
                dtype,
                transposed=inp.reader.transposed,
                n_threads=options.get("n_threads"),
            )
        parts.append((window, pos, fill))
    sizes = [inp.shell.shape[axis] for inp in inputs]
    bands = ConcatBands(axis, parts, sizes, shape, dtype)
    try:
        dset = _matrix.write_matrix(group, name, bands, **options)
    finally:
        for window, _, _ in parts:
            if window is not None:
                window.close()
    write_tag(dset, MatrixTag.of(template))
