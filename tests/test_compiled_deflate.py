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
from scanpy_loomio._matrix.deflate import deflate_room, fast_zlib, isal_buffers, isal_deflate
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


def deflated(tiles: np.ndarray, out_bytes: int) -> tuple[int, list[bytes]]:
    """Deflate ``tiles`` (tiles × bytes) in one call into ``out_bytes`` of output: what failed, and the streams."""
    found = isal_deflate(2)
    assert found is not None
    tile_bytes = tiles.shape[1]
    out = np.zeros(out_bytes + 100, dtype=np.uint8)
    guard = out[-100:].copy()
    ends = np.zeros(tiles.shape[0], dtype=np.int64)
    stream, level_buffer = isal_buffers(found)
    starts = np.arange(tiles.shape[0], dtype=np.int64) * tile_bytes
    args = (found.init, found.deflate, *stream, found.level, level_buffer, tiles.reshape(-1), starts, tile_bytes)
    failed = load_kernels().deflate_tiles(*args, deflate_room(tile_bytes), out[:-100], ends)
    assert np.array_equal(out[-100:], guard)  # nothing written past the room it was given
    done = tiles.shape[0] if failed < 0 else failed
    bounds = [0, *ends[:done].tolist()]
    return failed, [out[start:end].tobytes() for start, end in zip(bounds[:-1], bounds[1:], strict=True)]


def as_bytes(*tiles: np.ndarray) -> np.ndarray:
    return np.stack(tiles).view(np.uint8).reshape(len(tiles), -1)


def test_a_full_output_buffer_is_reported_not_overrun() -> None:
    tiles = as_bytes(*np.random.default_rng(1).random((3, 64, 64)).astype(np.float32))
    failed, streams = deflated(tiles, deflate_room(tiles.shape[1]) + 50)  # room for one chunk, not two
    assert failed == 1  # the second chunk did not fit
    assert [zlib.decompress(s) for s in streams] == [tiles[0].tobytes()]


def test_a_chunk_deflates_to_the_same_bytes_wherever_it_lands() -> None:
    """ISA-L writes a constant tile shorter when its output room is tight: each tile gets the same room instead."""
    rng = np.random.default_rng(2)
    counts = ((rng.random((64, 64)) < 0.1) * rng.integers(1, 30, (64, 64))).astype(np.float32)
    zeros = np.zeros((64, 64), np.float32)
    tiles = as_bytes(counts, zeros, counts, zeros)
    alone = [deflated(tiles[k : k + 1], 2**20)[1][0] for k in range(4)]
    room = deflate_room(tiles.shape[1])
    # after the first two streams only a few bytes more than a constant tile's stream are left
    for spare in range(0, 80, 3):
        failed, streams = deflated(tiles, len(alone[0]) + len(alone[1]) + len(alone[2]) + spare)
        assert streams == alone[: len(streams)]
        assert failed == -1 or len(streams) < 4
    _, streams = deflated(tiles, 4 * room)
    assert streams == alone


def test_writing_in_threads_reads_back(tmp_path: Path) -> None:
    x = sparse.random(2000, 300, density=0.1, format="csr", dtype=np.float32, random_state=0)
    with h5py.File(tmp_path / "m.loom", "w") as f:
        write_matrix(f, "matrix", x, n_threads=2)
    with h5py.File(tmp_path / "m.loom", "r") as f:
        back = read_matrix(f["matrix"], format="csr")
    assert (back != x).nnz == 0


def test_the_stored_bytes_do_not_depend_on_the_threads(tmp_path: Path) -> None:
    """Counts with empty stretches (constant chunks) and dense noise: one thread and two store the same bytes."""
    rng = np.random.default_rng(5)
    x = ((rng.random((900, 300)) < 0.05) * rng.integers(1, 40, (900, 300))).astype(np.float32)
    x[200:500] = 0
    x[600:650] = rng.random((50, 300))
    stored = []
    for n_threads in (1, 2):
        with h5py.File(tmp_path / f"{n_threads}.loom", "w") as f:
            write_matrix(f, "matrix", sparse.csr_matrix(x), chunks=(16, 32), n_threads=n_threads)
        stored.append(stored_chunks(tmp_path / f"{n_threads}.loom"))
    assert len(stored[0]) > 300
    assert stored[0] == stored[1]
