"""The work of one band on a ``dask.distributed`` worker: its chunks, compressed as the matrix engine stores them.

:class:`BandResult` is what a band gives the writing process; :func:`encode_band` makes it on a worker.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np
from scipy import sparse

from scanpy_loomio._matrix.writer import is_sparse, write_matrix


def as_rows(block: Any, n_rows: int, n_genes: int, where: str) -> Any:
    """A computed band as CSR or a 2-d numpy array, checked against the rows it should hold."""
    if is_sparse(block):
        block = block.tocsr() if block.format != "csr" else block
    else:
        block = np.asarray(block)
    if block.shape != (n_rows, n_genes):
        msg = f"{where}: a band of {n_rows} cells came back with shape {block.shape}, expected {(n_rows, n_genes)}"
        raise ValueError(msg)
    return block


@dataclass
class BandResult:
    """What one band gives the writer: rows as they are, and chunks already compressed (distributed writes).

    ``pieces`` are ``(start, stop, rows)`` in cell order. ``chunks`` are ``(offset, bytes)`` in file order for cells
    ``encoded[0]:encoded[1]``, the band's whole chunk columns.
    """

    start: int
    stop: int
    pieces: list[tuple[int, int, Any]] = field(default_factory=list)
    encoded: tuple[int, int] = (0, 0)
    chunks: list[tuple[tuple[int, int], bytes]] = field(default_factory=list)
    _cells: np.ndarray | None = field(default=None, repr=False)

    def take_chunks(self, lo: int, hi: int) -> list[tuple[tuple[int, int], bytes]]:
        """The chunks of cells ``lo:hi`` (whole chunk columns inside :attr:`encoded`)."""
        if self._cells is None or self._cells.shape[0] != len(self.chunks):
            self._cells = np.array([offset[1] for offset, _ in self.chunks], dtype=np.int64)
        first, last = np.searchsorted(self._cells, [lo, hi])
        return self.chunks[int(first) : int(last)]


def encode_band(
    block: Any, start: int, n_cells: int, chunk_shape: tuple[int, int], dtype: str, level: int
) -> BandResult:
    """Compress the whole chunk columns of one band of cells, as the matrix engine writes them.

    Runs on a ``dask.distributed`` worker. ``block`` holds cells ``start:start + len(block)`` of a matrix of
    ``n_cells`` cells. The band's whole chunk columns are written with :func:`write_matrix` into an HDF5 file in
    memory, with the target's chunk shape, dtype and gzip level, and its stored chunks are returned with their
    offsets in the target: the same bytes the engine would store. Rows of a chunk column the band shares with
    its neighbour are returned as they are.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.eye(100, 70, dtype=np.float32)
    >>> result = encode_band(x[10:], 10, 100, (64, 64), "<f4", 2)  # the last band: cells 10 to 100
    >>> result.encoded, [(a, b) for a, b, _ in result.pieces], [offset for offset, _ in result.chunks]
    ((64, 100), [(10, 64)], [(64, 64)])
    """
    n_rows = block.shape[0]
    stop = start + n_rows
    th, tw = chunk_shape
    first = -(-start // tw) * tw  # first whole chunk column
    last = stop if stop == n_cells else stop - stop % tw
    block = as_rows(block, n_rows, block.shape[1], "encode_band")
    if last <= first:
        return BandResult(start, stop, [(start, stop, block)], (stop, stop))
    pieces = []
    if first > start:
        pieces.append((start, first, block[: first - start]))
    if last < stop:
        pieces.append((last, stop, block[last - start :]))
    inner = block[first - start : last - start]
    padding = -(last - first) % tw  # a last, narrower column is stored as a whole chunk, zeros beyond the end
    if padding:
        inner = _padded(inner, padding)
    name = f"band-{uuid.uuid4().hex}.h5"
    with h5py.File(name, "w", driver="core", backing_store=False) as scratch:
        dset = write_matrix(
            scratch, "band", inner, dtype=np.dtype(dtype), chunks=(th, tw), compression_level=level, n_threads=1
        )
        chunks = _stored_chunks(dset, first)
    return BandResult(start, stop, pieces, (first, last), chunks)


def _padded(rows: Any, padding: int) -> Any:
    if is_sparse(rows):
        return sparse.vstack([rows, sparse.csr_matrix((padding, rows.shape[1]), dtype=rows.dtype)], format="csr")
    return np.concatenate([rows, np.zeros((padding, rows.shape[1]), dtype=rows.dtype)], axis=0)


def _stored_chunks(dset: h5py.Dataset, shift: int) -> list[tuple[tuple[int, int], bytes]]:
    """Every stored chunk of ``dset`` as ``(offset with cells moved by shift, bytes)``, cells first, then genes."""
    offsets: list[tuple[int, int]] = []
    dsid = dset.id
    if hasattr(dsid, "chunk_iter"):
        dsid.chunk_iter(lambda info: offsets.append(tuple(info.chunk_offset)))
    else:  # HDF5 before 1.14: one query per chunk
        offsets = [tuple(dsid.get_chunk_info(i).chunk_offset) for i in range(dsid.get_num_chunks())]
    offsets.sort(key=lambda offset: (offset[1], offset[0]))
    chunks = []
    for gene, cell in offsets:
        mask, payload = dsid.read_direct_chunk((gene, cell))
        if mask:  # a filter was skipped: this chunk cannot be placed as it is; never made by write_matrix
            msg = f"encode_band: chunk {(gene, cell)} was stored with filter mask {mask}"
            raise RuntimeError(msg)
        chunks.append(((int(gene), int(cell) + shift), bytes(payload)))
    return chunks
