"""Attributes and graph edges deflated in worker threads and inflated by libdeflate: the same values, chunks and
filters as h5py writes and reads."""

from __future__ import annotations

import zlib

import h5py
import numpy as np
import pytest
from helpers import knn_graph, stored_chunks

from scanpy_loomio._elements.graphs import write_graph
from scanpy_loomio._matrix import deflate
from scanpy_loomio._matrix.rows import DeflatedRows, deflates_rows, read_rows

RNG = np.random.default_rng(7)


def _dataset(f: h5py.File, name: str, values: np.ndarray, chunk_rows: int, **storage) -> h5py.Dataset:
    return f.create_dataset(
        name, shape=values.shape, dtype=values.dtype, chunks=(chunk_rows, *values.shape[1:]), **storage
    )


VALUES = {
    "float64": RNG.random(10_000),
    "int32": RNG.integers(-5, 5, 9_999, dtype=np.int32),
    "bool": RNG.random(5_000) < 0.3,
    "fixed text": np.array([f"cell-{i}" for i in range(6_001)], dtype="S"),
    "2-D float32": RNG.random((5_000, 7), dtype=np.float32),
}


@pytest.mark.parametrize("kind", sorted(VALUES))
@pytest.mark.parametrize("threads", [1, 3])
def test_rows_read_back_and_chunks_are_deflated_tiles(tmp_path, kind, threads):
    """Appended in uneven pieces: h5py reads the values back, and every stored chunk inflates to its rows."""
    values = VALUES[kind]
    path = tmp_path / "rows.h5"
    with h5py.File(path, "w") as f:
        dset = _dataset(f, "v", values, 1024, compression="gzip", compression_opts=2)
        assert deflates_rows(dset)
        with DeflatedRows(dset, n_threads=threads) as rows:
            for lo, hi in [(0, 1), (1, 1500), (1500, 1500), (1500, 4700), (4700, values.shape[0])]:
                rows.append(values[lo:hi])
    with h5py.File(path, "r") as f:
        back = f["v"][()]
    np.testing.assert_array_equal(back, values)
    assert back.dtype == values.dtype
    chunks = stored_chunks(path, "v")
    assert len(chunks) == -(-values.shape[0] // 1024)
    row_bytes = values[:1].nbytes
    for offset, payload in chunks.items():
        rows_here = values[offset[0] : offset[0] + 1024]
        inflated = zlib.decompress(payload)
        assert len(inflated) == 1024 * row_bytes  # whole chunks, the last one padded
        assert inflated[: rows_here.nbytes] == rows_here.tobytes()


def test_same_chunks_whatever_the_number_of_threads(tmp_path):
    values = RNG.integers(0, 50, 100_000).astype(np.int64)
    stored = []
    for threads in (1, 2, 4):
        path = tmp_path / f"{threads}.h5"
        with h5py.File(path, "w") as f:
            dset = _dataset(f, "v", values, 4096, compression="gzip", compression_opts=2)
            with DeflatedRows(dset, n_threads=threads) as rows:
                rows.append(values)
        stored.append(stored_chunks(path, "v"))
    assert stored[0] == stored[1] == stored[2]


@pytest.mark.parametrize(
    ("values", "storage"),
    [
        (np.array(["a", "bé", "c"] * 1000, dtype=object), {"compression": "gzip"}),  # text of variable length
        (RNG.random(5000), {"compression": "gzip", "shuffle": True}),  # another filter too
        (RNG.random(5000), {}),  # not compressed
        (RNG.random(5000).astype(">f8"), {"compression": "gzip"}),  # not in the machine's byte order
    ],
    ids=["vlen text", "shuffle", "uncompressed", "big-endian"],
)
def test_other_datasets_go_through_h5py(tmp_path, values, storage):
    path = tmp_path / "rows.h5"
    with h5py.File(path, "w") as f:
        dtype = h5py.string_dtype() if values.dtype == object else values.dtype
        dset = f.create_dataset("v", shape=values.shape, dtype=dtype, chunks=(1000,), **storage)
        assert not deflates_rows(dset)
        with DeflatedRows(dset, n_threads=2) as rows:
            rows.append(values[:1234])
            rows.append(values[1234:])
    with h5py.File(path, "r") as f:
        back = f["v"].asstr()[()] if values.dtype == object else f["v"][()]
    np.testing.assert_array_equal(back, values)


def test_missing_rows_are_an_error_naming_the_dataset(tmp_path):
    with h5py.File(tmp_path / "rows.h5", "w") as f:
        dset = f.create_dataset("w", shape=(5000,), dtype="f4", chunks=(1000,), compression="gzip")
        rows = DeflatedRows(dset, n_threads=2)
        rows.append(np.ones(4000, dtype=np.float32))
        with pytest.raises(ValueError, match=r"/w: 4000 rows were written, 5000 expected"):
            rows.close()


def test_graph_edges_equal_what_h5py_writes(tmp_path):
    """A kNN graph's edge lists through the worker threads hold what HDF5's own deflate stores."""
    knn = knn_graph(20_000, 9, RNG)  # 180,000 edges: three chunks of 65,536 and a partial one
    with h5py.File(tmp_path / "g.h5", "w") as f:
        write_graph(f, "knn", knn, n_threads=2)
    coo = knn.tocoo()
    with h5py.File(tmp_path / "g.h5", "r") as f:
        group = f["knn"]
        assert [group[k].compression for k in "abw"] == ["gzip"] * 3
        assert group["a"].chunks == (65536,)
        np.testing.assert_array_equal(group["a"][()], coo.row)
        np.testing.assert_array_equal(group["b"][()], coo.col)
        np.testing.assert_array_equal(group["w"][()], coo.data)
        assert group["w"].dtype == np.float32


@pytest.mark.parametrize(
    ("n_values", "chunk", "threads", "used_threads", "held_chunks"),
    [
        (10_000, 4096, 64, 1, 3),  # 80 kB, an annotation column: deflated in this thread, every chunk at once
        (10**6, 4096, 64, 8, 32),  # 8 MB: at most 8 threads; rounds of 1 MiB of 32 kB chunks
        (10**6, 4096, 2, 2, 32),
        (10**6, 2**19, 2, 2, 2),  # 4 MiB chunks: one per thread
    ],
)
def test_rows_held_back_are_bounded(tmp_path, n_values, chunk, threads, used_threads, held_chunks):
    """Rounds of about 1 MiB of whole chunks wait to be deflated, at least one per thread, at most the dataset's; at
    most 8 threads, and none for a dataset under 4 MiB (starting them would cost more than they save)."""
    with h5py.File(tmp_path / "rows.h5", "w") as f:
        dset = f.create_dataset("v", shape=(n_values,), dtype="f8", chunks=(chunk,), compression="gzip")
        rows = DeflatedRows(dset, n_threads=threads)
        assert rows.threads == used_threads
        assert rows.stage.shape[0] == held_chunks * chunk
        values = np.arange(n_values, dtype=np.float64)
        rows.append(values)
        rows.close()
        np.testing.assert_array_equal(dset[()], values)


# -- reading --------------------------------------------------------------------------------------------------------
@pytest.fixture
def with_libdeflate():
    if deflate.libdeflate() is None:
        pytest.skip("libdeflate is not installed here")


@pytest.mark.parametrize("kind", sorted(VALUES))
@pytest.mark.parametrize("level", [1, 4, 9])
def test_rows_read_equal_what_h5py_reads(tmp_path, with_libdeflate, kind, level):
    values = VALUES[kind]
    path = tmp_path / "rows.h5"
    with h5py.File(path, "w") as f:  # HDF5's own zlib at several levels, the last chunk partly outside the extent
        f.create_dataset("v", data=values, chunks=(1000, *values.shape[1:]), compression="gzip", compression_opts=level)
    n = values.shape[0]
    with h5py.File(path, "r") as f:
        dset = f["v"]
        for start, stop in [(0, None), (0, n), (1, 999), (999, 1001), (2500, 4321), (n - 3, n + 50), (1000, 3000)]:
            got = read_rows(dset, start, stop)
            want = dset[start:stop]
            assert got is not None and got.dtype == want.dtype and np.array_equal(got, want), (start, stop)


def test_rows_read_none_where_h5py_must_read(tmp_path, with_libdeflate, monkeypatch):
    path = tmp_path / "rows.h5"
    values = np.arange(5_000, dtype=np.int64)
    with h5py.File(path, "w") as f:
        f.create_dataset("shuffled", data=values, chunks=(1000,), compression="gzip", shuffle=True)
        f.create_dataset("lzf", data=values, chunks=(1000,), compression="lzf")
        f.create_dataset("text", data=values.astype(str).astype(object), dtype=h5py.string_dtype(), chunks=(1000,),
                         compression="gzip")  # fmt: skip
        sparse_chunks = f.create_dataset("unwritten", shape=(5_000,), dtype="i8", chunks=(1000,), compression="gzip")
        sparse_chunks[:1000] = 1  # the other chunks are not stored: HDF5 gives the fill value
        f.create_dataset("plain", data=values, chunks=(1000,), compression="gzip")
    with h5py.File(path, "r") as f:
        for name in ("shuffled", "lzf", "text", "unwritten"):
            assert read_rows(f[name]) is None, name
        assert np.array_equal(read_rows(f["plain"]), values)
        monkeypatch.setattr(deflate, "libdeflate", lambda: None)
        assert read_rows(f["plain"]) is None
    with h5py.File(path, "r+") as f:  # chunks may still be in HDF5's cache
        monkeypatch.undo()
        assert read_rows(f["plain"]) is None


def test_a_damaged_chunk_is_left_to_h5py(tmp_path, with_libdeflate):
    from scanpy_loomio._guards import read_values

    path = tmp_path / "rows.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("v", data=np.arange(5_000.0), chunks=(1000,), compression="gzip")
    with h5py.File(path, "r") as f:
        info = f["v"].id.get_chunk_info(2)
    with open(path, "r+b") as handle:
        handle.seek(info.byte_offset + 10)
        handle.write(b"\xff" * 20)
    with h5py.File(path, "r") as f:
        assert read_rows(f["v"]) is None
        assert np.array_equal(read_rows(f["v"], 0, 2000), np.arange(2000.0))  # chunks before the damaged one
        with pytest.raises(OSError, match="filter"):
            read_values(f["v"])  # h5py reads it and HDF5 names the problem
