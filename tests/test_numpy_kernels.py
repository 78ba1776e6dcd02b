"""The writer's numpy kernels against the compiled ones: same results, same stored bytes, and no numba loaded."""

from __future__ import annotations

import json
import subprocess
import sys
import zlib
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pytest
from helpers import stored_chunks
from scipy import sparse

from scanpy_loomio import write_loom_full
from scanpy_loomio._matrix import numpy_kernels
from scanpy_loomio._matrix.deflate import deflate_room, fast_zlib, isal_buffers, isal_deflate
from scanpy_loomio._matrix.placement import ChunkBatch, ChunkPlacer, _direct_write
from scanpy_loomio._matrix.tiles import COMPRESSED_MALFORMED, COMPRESSED_NOT_CANONICAL, COMPRESSED_OK, load_kernels

compiled = load_kernels()


def compressed_band(rng: np.random.Generator, n_major: int, n_minor: int, base: int = 0) -> tuple[np.ndarray, ...]:
    """A canonical CSR band whose arrays start at position ``base`` of the whole matrix, as the writer slices them."""
    x = sparse.random(n_major, n_minor, density=0.3, format="csr", dtype=np.float32, random_state=rng)
    x.data = np.round(x.data * 9) - 3  # zeros stored explicitly, negative values
    x.data[::11] = -0.0  # a zero with its sign bit set
    indptr = x.indptr.astype(np.int64) + base
    return indptr, x.indices.astype(np.int32), x.data.view(np.uint32)


@pytest.mark.parametrize("seed", range(4))
def test_check_compressed_answers_as_the_compiled_kernel(seed: int) -> None:
    rng = np.random.default_rng(seed)
    indptr, indices, data = compressed_band(rng, 40, 30, base=17)
    row = int(np.argmax(np.diff(indptr) >= 3))  # a row with three non-zeros or more
    first = int(indptr[row] - indptr[0])
    unsorted = indices.copy()
    unsorted[first], unsorted[first + 1] = unsorted[first + 1], unsorted[first]
    repeated = indices.copy()
    repeated[first + 1] = repeated[first]
    cases = {
        "canonical": ((indptr, indices, data, 30), COMPRESSED_OK),
        "unsorted": ((indptr, unsorted, data, 30), COMPRESSED_NOT_CANONICAL),
        "repeated": ((indptr, repeated, data, 30), COMPRESSED_NOT_CANONICAL),
        "index too large": ((indptr, indices, data, int(indices.max())), COMPRESSED_MALFORMED),
        "negative index": ((indptr, np.where(indices == indices[0], -1, indices), data, 30), COMPRESSED_MALFORMED),
        "short data": ((indptr, indices, data[:-1], 30), COMPRESSED_MALFORMED),
        "decreasing indptr": ((np.r_[indptr[:3], indptr[1], indptr[4:]], indices, data, 30), COMPRESSED_MALFORMED),
        "empty": ((np.array([5, 5, 5]), indices[:0], data[:0], 30), COMPRESSED_OK),
    }
    for name, (args, expected) in cases.items():
        assert numpy_kernels.check_compressed(*args) == expected, name
        assert compiled.check_compressed(*args) == expected, name


@pytest.mark.parametrize("major_is_column", [True, False])
@pytest.mark.parametrize("chunk", [(64, 64), (7, 5), (1, 3)])
def test_sparse_to_tiles_fills_and_clears_as_the_compiled_kernel(major_is_column: bool, chunk: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(chunk))
    th, tw = chunk
    n_major, n_minor = (3 * tw + 2, 4 * th + 1) if major_is_column else (3 * th + 2, 4 * tw + 1)
    indptr, indices, data = compressed_band(rng, n_major, n_minor, base=9)
    minor_chunk = th if major_is_column else tw
    minor = np.arange(n_minor, dtype=np.int64)
    tables = (minor // minor_chunk, minor % minor_chunk)
    grid = (-(-n_minor // th), -(-n_major // tw)) if major_is_column else (-(-n_major // th), -(-n_minor // tw))
    results = []
    for kernels in (numpy_kernels, compiled):
        tiles = np.zeros((*grid, th, tw), dtype=np.uint32)
        filled = np.zeros(grid, dtype=np.bool_)
        kernels.sparse_to_tiles(indptr, indices, data, *tables, major_is_column, False, tiles, filled)
        results.append((tiles.copy(), filled))
        kernels.sparse_to_tiles(indptr, indices, data, *tables, major_is_column, True, tiles, filled)
        assert not tiles.any()  # cleared exactly where it wrote
    (tiles, filled), (want_tiles, want_filled) = results
    assert np.array_equal(tiles, want_tiles) and np.array_equal(filled, want_filled)
    # the tiles hold the matrix, transposed for bands of cells (loom is genes × cells)
    matrix = sparse.csr_matrix((data.view(np.float32), indices, indptr - indptr[0]), shape=(n_major, n_minor))
    loom = matrix.T.toarray() if major_is_column else matrix.toarray()
    whole = tiles.transpose(0, 2, 1, 3).reshape(grid[0] * th, grid[1] * tw).view(np.float32)
    assert np.array_equal(whole[: loom.shape[0], : loom.shape[1]], loom)


@pytest.mark.parametrize("cells_by_genes", [True, False])
@pytest.mark.parametrize("shape", [(128, 192), (70, 45), (3, 1)])
def test_dense_to_tiles_copies_as_the_compiled_kernel(cells_by_genes: bool, shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(shape[0])
    src = (rng.random(shape) < 0.02) * rng.integers(1, 50, shape).astype(np.float32)
    src[:2, :2] = -0.0
    th, tw = 64, 32
    n_genes, n_cells = shape[::-1] if cells_by_genes else shape
    grid = (-(-n_genes // th), -(-n_cells // tw))
    results = []
    for kernels in (numpy_kernels, compiled):
        tiles = np.zeros((*grid, th, tw), dtype=np.uint32)
        filled = np.zeros(grid, dtype=np.bool_)
        kernels.dense_to_tiles(src.view(np.uint32), cells_by_genes, tiles, filled)
        results.append((tiles, filled))
    (tiles, filled), (want_tiles, want_filled) = results
    assert np.array_equal(tiles, want_tiles) and np.array_equal(filled, want_filled)
    loom = src.T if cells_by_genes else src
    whole = tiles.transpose(0, 2, 1, 3).reshape(grid[0] * th, grid[1] * tw).view(np.float32)
    assert np.array_equal(whole[:n_genes, :n_cells], loom) and not whole[n_genes:].any()


@pytest.mark.skipif(isal_deflate(2) is None, reason="needs ISA-L's functions from python-isal's extension")
@pytest.mark.parametrize("room_for", [None, 2])
def test_deflate_tiles_makes_the_compiled_kernels_bytes(room_for: int | None) -> None:
    """The same zlib streams from the same tiles; with room for two tiles only, both stop at the third."""
    found = isal_deflate(2)
    assert found is not None
    rng = np.random.default_rng(3)
    counts = (rng.random((6, 64, 64)) < 0.06) * rng.integers(1, 30, (6, 64, 64))
    tiles = np.concatenate([counts, np.zeros((1, 64, 64)), rng.random((2, 64, 64))]).astype(np.float32)
    tile_bytes = 64 * 64 * 4
    src = tiles.view(np.uint8).reshape(-1)
    starts = np.arange(tiles.shape[0], dtype=np.int64)[::-1] * tile_bytes  # any order
    room = deflate_room(tile_bytes)
    results = []
    for kernels in (numpy_kernels, compiled):
        out = np.zeros(room * (room_for or tiles.shape[0]), dtype=np.uint8)
        ends = np.zeros(tiles.shape[0], dtype=np.int64)
        stream, level_buffer = isal_buffers(found)
        args = (found.init, found.deflate, *stream, found.level, level_buffer, src, starts, tile_bytes, room)
        failed = kernels.deflate_tiles(*args, out, ends)
        results.append((failed, out, ends))
    (failed, out, ends), (want_failed, want_out, want_ends) = results
    assert failed == want_failed == (-1 if room_for is None else room_for)
    assert np.array_equal(ends, want_ends) and np.array_equal(out, want_out)
    done = tiles.shape[0] if failed < 0 else failed
    bounds = [0, *ends[:done].tolist()]
    for k, (start, end) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        assert zlib.decompress(out[start:end].tobytes()) == src[starts[k] : starts[k] + tile_bytes].tobytes()


def test_write_chunks_stores_what_the_compiled_kernel_stores(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    tiles = {(r, c): rng.integers(0, 3, 64).astype(np.float32) for r in (0, 8) for c in (0, 8, 16)}
    batch = ChunkBatch.from_payloads(list(tiles), [zlib.compress(t.tobytes(), 2) for t in tiles.values()])
    for name, kernels in (("numpy", numpy_kernels), ("compiled", compiled)):
        with h5py.File(tmp_path / f"{name}.h5", "w") as f:
            dset = f.create_dataset("m", shape=(16, 24), chunks=(8, 8), dtype=np.float32, compression="gzip")
            ChunkPlacer(dset, lambda kernels=kernels: kernels).place(batch)
            for (r, c), tile in tiles.items():
                assert np.array_equal(dset[r : r + 8, c : c + 8].ravel(), tile)
    assert stored_chunks(tmp_path / "numpy.h5", "m") == stored_chunks(tmp_path / "compiled.h5", "m")
    refused = ChunkBatch.from_payloads([(0, 0), (3, 0)], [zlib.compress(bytes(256))] * 2)  # (3, 0): no chunk start
    hdf5_write_chunk = _direct_write()
    for name, kernels in (("numpy", numpy_kernels), ("compiled", compiled)):
        with h5py.File(tmp_path / f"refused-{name}.h5", "w") as f:
            dset = f.create_dataset("m", shape=(16, 16), chunks=(8, 8), dtype=np.float32, compression="gzip")
            if hdf5_write_chunk is not None:  # HDF5 called directly refuses the second chunk
                args = (refused.packed, refused.starts, refused.lengths, refused.offsets)
                assert kernels.write_chunks(hdf5_write_chunk, dset.id.id, *args) == 1
            with pytest.raises((ValueError, RuntimeError, OSError)):  # the placer raises h5py's error
                ChunkPlacer(dset, lambda kernels=kernels: kernels).place(refused)


CONVERT = """
import json, sys
from scanpy_loomio.cli import main
status = main(["convert", sys.argv[1], sys.argv[2]])
print(json.dumps({"status": status, "numba": "numba" in sys.modules}))
"""


@pytest.mark.skipif(fast_zlib() is None, reason="the kernels differ only with ISA-L's deflate")
def test_streaming_conversion_stores_the_in_memory_writes_chunks_without_numba(tmp_path: Path) -> None:
    """`.h5ad` → `.loom` in a fresh interpreter: numba is not loaded, and every chunk has the bytes of a
    write of the same AnnData in memory (compiled kernels, this process)."""
    rng = np.random.default_rng(11)
    x = sparse.random(1500, 700, density=0.05, format="csr", dtype=np.float32, random_state=rng)
    x.data = np.round(x.data * 20)
    unsorted = x.copy()  # indices decreasing within each row: the writer sorts each band
    for row in range(unsorted.shape[0]):
        part = slice(unsorted.indptr[row], unsorted.indptr[row + 1])
        unsorted.indices[part], unsorted.data[part] = unsorted.indices[part][::-1], unsorted.data[part][::-1]
    unsorted.has_sorted_indices = False
    layers = {
        "dense": (x.toarray() * 2).astype(np.float64),
        "unsorted": unsorted,
        "int8": x.toarray().astype(np.int8) - 3,  # dense, negative values
        "uint16": x.astype(np.uint16),
        "int64": x.astype(np.int64) * -(2**40),
        "half": x.toarray().astype(np.float16),
        "bool": x.astype(bool),
    }
    names = ["matrix", *(f"layers/{key}" for key in layers)]
    adata = ad.AnnData(x, layers=layers)
    src = tmp_path / "in.h5ad"
    adata.write_h5ad(src)
    done = subprocess.run(
        [sys.executable, "-c", CONVERT, str(src), str(tmp_path / "streamed.loom")],
        capture_output=True,
        text=True,
        check=True,
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == {"status": 0, "numba": False}
    write_loom_full(tmp_path / "memory.loom", ad.read_h5ad(src), n_threads=2)
    for name in names:
        streamed, in_memory = (
            stored_chunks(tmp_path / "streamed.loom", name),
            stored_chunks(tmp_path / "memory.loom", name),
        )
        assert len(streamed) > 20 and streamed == in_memory, name


CHOICE = """
import json, sys
from scanpy_loomio._matrix import tiles
seen = [tiles.write_kernels(streaming=True).__name__, "numba" in sys.modules]
seen += [tiles.write_kernels(streaming=False).__name__, "numba" in sys.modules]
seen += [tiles.write_kernels(streaming=True).__name__]
print(json.dumps(seen))
"""


def test_streaming_writes_use_the_compiled_kernels_once_numba_is_loaded() -> None:
    done = subprocess.run([sys.executable, "-c", CHOICE], capture_output=True, text=True, check=True)
    numpy_name, compiled_name = numpy_kernels.__name__, compiled.__name__
    assert json.loads(done.stdout) == [numpy_name, False, compiled_name, True, compiled_name]
