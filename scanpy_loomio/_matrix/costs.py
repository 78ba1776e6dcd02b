"""The cost model: how much memory reading a stored matrix, or any dataset, needs, from what the file declares.

Nothing is read: shapes, dtypes, chunk shapes, the number of stored chunks and the codec attribute decide. The safety
checks compare these costs with the memory limit (:mod:`scanpy_loomio._guards.budget`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import h5py

#: Bytes counted per text value (a Python ``str`` object and its pointer).
TEXT_VALUE_BYTES = 64
#: Bytes per chunk position of the fast matrix reader's chunk table (offset, size and filter mask, int64 each).
CHUNK_TABLE_BYTES = 24


@dataclass(frozen=True)
class Cost:
    """Memory one part of the read needs."""

    where: str
    nbytes: int
    what: str


def elements(shape: tuple[int, ...]) -> int:
    """Number of elements of ``shape``, exact however large (``1`` for a scalar)."""
    return int(np.prod(shape, dtype=object)) if shape else 1


def value_bytes(dtype: np.dtype) -> int:
    """Bytes one value of ``dtype`` takes once read (text values as Python objects)."""
    return TEXT_VALUE_BYTES if dtype.kind == "O" else max(1, dtype.itemsize)


def stored_elements(dset: h5py.Dataset) -> int:
    """Upper bound on the elements a dataset has data for (allocated chunks × chunk size, or all if contiguous)."""
    total = elements(dset.shape)
    if dset.chunks is None:
        return total if dset.id.get_storage_size() > 0 or total == 0 else 0
    try:
        n_chunks = dset.id.get_num_chunks()
    except (AttributeError, RuntimeError, OSError, ValueError):
        return total  # HDF5 too old to count chunks: assume everything is stored
    return min(total, n_chunks * elements(dset.chunks))


@dataclass(frozen=True)
class MatrixRead:
    """Reading one stored (genes × cells) matrix into ``format`` (``"csr"``, ``"csc"`` or ``"dense"``) and ``dtype``."""

    dataset: h5py.Dataset
    format: str
    dtype: np.dtype

    @property
    def elements(self) -> int:
        """Elements the dataset declares."""
        return elements(self.dataset.shape)

    @property
    def declared_bytes(self) -> int:
        """Bytes of the whole matrix, dense, in the larger of the stored and the result dtype."""
        return self.elements * max(self.dataset.dtype.itemsize, self.dtype.itemsize)

    @property
    def chunk_positions(self) -> int | None:
        """Positions of the chunk grid (stored chunks or not); ``None`` when the dataset is not chunked."""
        dset = self.dataset
        if dset.chunks is None:
            return None
        return elements(tuple(-(-n // c) for n, c in zip(dset.shape, dset.chunks, strict=True)))

    @property
    def chunk_bytes(self) -> int | None:
        """Bytes of one chunk, decompressed; ``None`` when the dataset is not chunked."""
        dset = self.dataset
        return None if dset.chunks is None else elements(dset.chunks) * dset.dtype.itemsize

    def costs(self, where: str) -> list[Cost]:
        """What the read allocates, known before reading: the chunk table, a dense result, the fill values.

        The non-zeros of a sparse result are not known before reading and are not counted.
        """
        dset = self.dataset
        costs: list[Cost] = []
        grid = self.chunk_positions
        if grid is not None:
            costs.append(Cost(where, grid * CHUNK_TABLE_BYTES, f"a table of {grid:,} chunk positions {dset.chunks}"))
        if self.format == "dense":
            what = f"a dense {dset.shape[1]} × {dset.shape[0]} {self.dtype} matrix"
            return [*costs, Cost(where, self.declared_bytes, what)]
        fill = dset.fillvalue
        if fill is not None and np.any(np.asarray(fill) != 0):
            # every element not stored reads as the fill value: a sparse result holding all of them
            per_value = dset.dtype.itemsize + 8
            shown = fill.item() if isinstance(fill, np.generic) else fill
            costs.append(Cost(where, self.elements * per_value, f"{self.elements:,} non-zeros (fill value {shown!r})"))
        return costs
