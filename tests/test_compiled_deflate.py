"""Deflating chunks with ISA-L from compiled code: valid zlib streams, the same data as python-isal's, any input."""

from __future__ import annotations

import sys
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers import stored_chunks, write_with_switch
from scipy import sparse

from scanpy_loomio._matrix import read_matrix, write_matrix
from scanpy_loomio._matrix.deflate import fast_zlib, isal_buffers, isal_deflate
from scanpy_loomio._matrix.tiles import load_kernels

# python-isal's Linux wheels export ISA-L's functions; elsewhere the writer deflates through python-isal instead
pytestmark = pytest.mark.skipif(
    fast_zlib() is None or not sys.platform.startswith("linux"), reason="needs python-isal's extension on Linux"
)

WRITE = """
import sys
import h5py, numpy as np
from scipy import sparse
from scanpy_loomio import _matrix
from scanpy_loomio._matrix.deflate import isal_deflate
rng = np.random.default_rng(7)
x = sparse.random(700, 450, density=0.2, format="csr", dtype=np.float32, random_state=3)
x.data = np.round(x.data * 20)
noise = rng.random((300, 450)).astype(np.float32)  # does not compress: stored blocks, the output buffer grows
with h5py.File(sys.argv[1], "w") as f:
    _matrix.write_matrix(f, "counts", x, chunks=(32, 48), n_threads=2)
    _matrix.write_matrix(f, "noise", noise, chunks=(32, 48), n_threads=2)
print(isal_deflate(2) is not None)
"""


@pytest.mark.parametrize("level", [1, 2, 3])
def test_found_for_the_levels_isal_deflates(level: int) -> None:
    found = isal_deflate(level)
    assert found is not None
    assert found.level == (0 if level == 1 else 1)
    assert isal_deflate(4) is None and isal_deflate(0) is None  # zlib's levels


def test_files_hold_the_same_data_as_with_python_isal(tmp_path: Path) -> None:
    """The same matrices written with the compiled deflate and with python-isal's: chunk by chunk, equal data."""
    runs = write_with_switch(WRITE, tmp_path, "SCANPY_LOOMIO_COMPILED_DEFLATE")
    assert {value: printed for value, (_, printed) in runs.items()} == {"1": "True", "0": "False"}
    for name in ("counts", "noise"):
        compiled, python = stored_chunks(runs["1"][0], name), stored_chunks(runs["0"][0], name)
        assert compiled.keys() == python.keys() and len(compiled) > 50
        for offset, stream in compiled.items():
            assert zlib.decompress(stream) == zlib.decompress(python[offset]), (name, offset)
        if name == "noise":  # stored rather than grown: never larger than the chunk and its framing
            assert max(map(len, compiled.values())) <= 32 * 48 * 4 + 64
    with h5py.File(runs["1"][0], "r") as f:
        noise = np.random.default_rng(7).random((300, 450)).astype(np.float32)
        assert np.array_equal(read_matrix(f["noise"], format="dense"), noise)


def test_a_full_output_buffer_is_reported_not_overrun() -> None:
    found = isal_deflate(2)
    assert found is not None
    tiles = np.random.default_rng(1).random((3, 64, 64)).astype(np.float32).view(np.uint8).reshape(-1)
    tile_bytes = tiles.shape[0] // 3
    out = np.zeros(tile_bytes + 4096 + 100, dtype=np.uint8)  # room for one stored chunk, not two
    guard = out[-100:].copy()
    ends = np.zeros(3, dtype=np.int64)
    stream, level_buffer = isal_buffers(found)
    starts = np.arange(3, dtype=np.int64) * tile_bytes
    args = (found.init, found.deflate, *stream, found.level, level_buffer, tiles, starts, tile_bytes)
    failed = load_kernels().deflate_tiles(*args, out[:-100], ends)
    assert failed == 1  # the second chunk did not fit
    assert zlib.decompress(out[: ends[0]].tobytes()) == tiles[:tile_bytes].tobytes()
    assert np.array_equal(out[-100:], guard)  # nothing written past the room it was given


def test_writing_in_threads_reads_back(tmp_path: Path) -> None:
    x = sparse.random(2000, 300, density=0.1, format="csr", dtype=np.float32, random_state=0)
    with h5py.File(tmp_path / "m.loom", "w") as f:
        write_matrix(f, "matrix", x, n_threads=2)
    with h5py.File(tmp_path / "m.loom", "r") as f:
        back = read_matrix(f["matrix"], format="csr")
    assert (back != x).nnz == 0
