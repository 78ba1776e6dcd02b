"""Placing compressed chunks: HDF5's H5Dwrite_chunk called from compiled code, checked against h5py's own call."""

from __future__ import annotations

import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import stored_chunks, write_with_switch

from scanpy_loomio._matrix.placement import ChunkBatch, ChunkPlacer

WRITE = """
import sys
import h5py, numpy as np
from scipy import sparse
from scanpy_loomio import _matrix
from scanpy_loomio._matrix.placement import _direct_write
x = sparse.random(700, 450, density=0.2, format="csr", dtype=np.float32, random_state=3)
x.data = np.round(x.data * 20)
with h5py.File(sys.argv[1], "w") as f:
    _matrix.write_matrix(f, "matrix", x, chunks=(32, 48), n_threads=2)
print(_direct_write() is not None)
"""


def test_direct_placement_stores_what_h5py_stores(tmp_path: Path) -> None:
    """The same matrix written with HDF5 called directly and through h5py: the same chunks, byte for byte."""
    runs = write_with_switch(WRITE, tmp_path, "SCANPY_LOOMIO_DIRECT_WRITE")
    # this machine's h5py has its HDF5 library as a shared library
    assert {value: printed for value, (_, printed) in runs.items()} == {"1": "True", "0": "False"}
    direct, through_h5py = stored_chunks(runs["1"][0]), stored_chunks(runs["0"][0])
    assert len(direct) > 100
    assert direct == through_h5py


def test_placer_stores_a_batch_readable_by_h5py(tmp_path: Path) -> None:
    tiles = {(0, 0): np.arange(64, dtype=np.float32), (8, 8): np.full(64, 2.5, dtype=np.float32)}
    batch = ChunkBatch.from_payloads(list(tiles), [zlib.compress(t.tobytes(), 2) for t in tiles.values()])
    with h5py.File(tmp_path / "a.h5", "w") as f:
        dset = f.create_dataset("m", shape=(16, 16), chunks=(8, 8), dtype=np.float32, compression="gzip")
        ChunkPlacer(dset).place(batch)
        np.testing.assert_array_equal(dset[0:8, 0:8].ravel(), tiles[(0, 0)])
        np.testing.assert_array_equal(dset[8:16, 8:16].ravel(), tiles[(8, 8)])
        assert not dset[0:8, 8:16].any()


def test_placer_reports_what_hdf5_refuses(tmp_path: Path) -> None:
    """A chunk HDF5 does not take (not at a chunk boundary) fails with h5py's error, as before."""
    batch = ChunkBatch.from_payloads([(0, 0), (3, 0)], [zlib.compress(bytes(256)), zlib.compress(bytes(256))])
    with h5py.File(tmp_path / "a.h5", "w") as f:
        dset = f.create_dataset("m", shape=(16, 16), chunks=(8, 8), dtype=np.float32, compression="gzip")
        with pytest.raises((ValueError, RuntimeError, OSError)):
            ChunkPlacer(dset).place(batch)
