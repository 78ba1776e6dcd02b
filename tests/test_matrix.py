"""The matrix engine against h5py's own reading, the simple reference path and loompy."""

from __future__ import annotations

import shutil
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest
from scipy import sparse

from scanpy_loomio import LoomFormatError
from scanpy_loomio._matrix import assembler as assembler_module
from scanpy_loomio._matrix import deflate, pool, read_matrix, write_matrix
from scanpy_loomio._matrix.assembler import CompressedAssembler
from scanpy_loomio._matrix.chunk_reader import ChunkReader
from scanpy_loomio._matrix.chunks import ChunkLayout, RawChunkSource
from scanpy_loomio._matrix.pool import NoProgress, progress_bar
from scanpy_loomio._matrix.reader import read_simple

FIXTURES = Path(__file__).parents[1].parent / "shared/fixtures/real"

INT_DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"]
FLOAT_DTYPES = ["float16", "float32", "float64"]
SHAPES = [(0, 7), (7, 0), (1, 1), (1, 150), (150, 1), (70, 130), (64, 64), (129, 65)]


@pytest.fixture(autouse=True, params=["libdeflate", "isal-or-zlib"])
def inflate_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run every test with both ways of inflating chunks: libdeflate from compiled code, and the Python modules."""
    if request.param == "isal-or-zlib":
        monkeypatch.setattr(deflate, "libdeflate", lambda: None)
    elif deflate.libdeflate() is None:
        pytest.skip("libdeflate is not installed here")
    return request.param


def random_values(rng: np.random.Generator, shape: tuple[int, int], dtype: str, density: float = 0.2) -> np.ndarray:
    """Cells × genes values with zeros, extremes and (for floats) -0.0, NaN and infinities."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        values = rng.standard_normal(shape).astype(dtype) * 100
        specials = np.array([np.nan, np.inf, -np.inf, -0.0, np.finfo(dtype).max, np.finfo(dtype).tiny], dtype=dtype)
    elif dtype.kind == "b":
        values = rng.random(shape) < 0.5
        specials = np.array([True], dtype=dtype)
    else:
        info = np.iinfo(dtype)
        values = rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
        specials = np.array([info.min, info.max, 1], dtype=dtype)
    values[rng.random(shape) >= density] = 0
    if values.size:
        flat = values.reshape(-1)
        spots = rng.choice(flat.size, size=min(flat.size, specials.size), replace=False)
        flat[spots] = specials[: spots.size]
    return values


def reference(dataset: h5py.Dataset) -> np.ndarray:
    """What h5py itself reads, as cells × genes."""
    return dataset[()].T


def assert_same_bits(actual: np.ndarray, expected: np.ndarray) -> None:
    assert actual.shape == expected.shape
    assert actual.dtype == expected.dtype.newbyteorder("=")
    expected = expected.astype(actual.dtype)
    assert np.array_equal(actual.view(f"u{actual.dtype.itemsize}"), expected.view(f"u{actual.dtype.itemsize}"))


def strictly_sorted_per_row(matrix: sparse.spmatrix) -> bool:
    """Indices increase strictly within every row (column for CSC): sorted and free of duplicates."""
    steps = np.diff(matrix.indices.astype(np.int64))
    first_of_row = np.zeros(matrix.indices.shape[0], dtype=bool)
    starts = matrix.indptr[:-1]
    first_of_row[starts[starts < matrix.indices.shape[0]]] = True
    return bool(np.all((steps > 0) | first_of_row[1:]))


def assert_sparse_matches(result: sparse.spmatrix, expected: np.ndarray, fmt: str) -> None:
    """A canonical sparse matrix of ``fmt`` holding exactly the non-zeros of ``expected``."""
    assert sparse.issparse(result)
    assert result.format == fmt
    assert result.shape == expected.shape
    want_dtype = np.dtype(np.float32) if expected.dtype == np.float16 else expected.dtype.newbyteorder("=")
    assert result.dtype == want_dtype
    assert strictly_sorted_per_row(result)  # checked directly: the reader sets scipy's flag itself
    assert np.all(result.data != 0)  # no explicit zeros (NaN counts as non-zero)
    assert result.nnz == np.count_nonzero(expected)
    np.testing.assert_array_equal(result.toarray(), expected.astype(want_dtype))


def assert_same_sparse(actual: sparse.spmatrix, expected: sparse.spmatrix) -> None:
    """Same format, structure and value bits (NaN-safe, unlike ``!=``)."""
    assert actual.format == expected.format
    assert actual.shape == expected.shape
    assert actual.dtype == expected.dtype
    expected = expected.copy()
    expected.sort_indices()
    np.testing.assert_array_equal(actual.indptr, expected.indptr)
    np.testing.assert_array_equal(actual.indices, expected.indices)
    assert_same_bits(actual.data, expected.data)


def check_all_formats(dataset: h5py.Dataset, n_threads: int | None = None) -> None:
    """read_matrix in every format agrees with h5py and with the simple reference path."""
    expected = reference(dataset)
    dense = read_matrix(dataset, format="dense", n_threads=n_threads)
    assert_same_bits(dense, expected)
    for fmt in ("csr", "csc"):
        result = read_matrix(dataset, format=fmt, n_threads=n_threads)
        assert_sparse_matches(result, expected, fmt)
        if dataset.dtype != np.float16:  # scipy.sparse cannot hold float16, so the simple path cannot either
            assert_same_sparse(result, read_simple(dataset, format=fmt))
    assert_same_bits(read_simple(dataset, format="dense"), expected)


def write_and_check(path: Path, matrix: object, expected: np.ndarray | None = None, **kwargs: object) -> None:
    """Write ``matrix``; the file must hold ``expected`` (default: the matrix's values) and read back right."""
    if expected is None:
        expected = matrix.toarray() if sparse.issparse(matrix) else np.asarray(matrix)
    with h5py.File(path, "w") as f:
        dset = write_matrix(f, "matrix", matrix, **kwargs)
        assert dset.shape == expected.T.shape
    with h5py.File(path, "r") as f:
        assert_same_bits(reference(f["matrix"]), expected)
        check_all_formats(f["matrix"], n_threads=kwargs.get("n_threads"))


# --------------------------------------------------------------------------------------------------
# round trips through this package's writer


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("kind", ["csr", "csc", "dense-c", "dense-f"])
def test_shapes_and_inputs(tmp_path: Path, shape: tuple[int, int], kind: str) -> None:
    rng = np.random.default_rng(sum(shape))
    values = random_values(rng, shape, "float32")
    matrix = {
        "csr": lambda: sparse.csr_matrix(values),
        "csc": lambda: sparse.csc_matrix(values),
        "dense-c": lambda: np.ascontiguousarray(values),
        "dense-f": lambda: np.asfortranarray(values),
    }[kind]()
    write_and_check(tmp_path / "m.loom", matrix, chunks=(16, 8), n_threads=2)


@pytest.mark.parametrize("dtype", [*INT_DTYPES, *FLOAT_DTYPES, "bool"])
def test_every_dtype(tmp_path: Path, dtype: str) -> None:
    rng = np.random.default_rng(3)
    values = random_values(rng, (83, 141), dtype)
    write_and_check(tmp_path / "dense.loom", values, values, chunks=(32, 16))
    if dtype != "float16":  # scipy.sparse has no float16
        write_and_check(tmp_path / "csr.loom", sparse.csr_matrix(values), chunks=(32, 16))
        write_and_check(tmp_path / "csc.loom", sparse.csc_matrix(values), chunks=(32, 16))


@pytest.mark.parametrize("chunks", [(64, 64), (1, 64), (64, 1), (7, 300), (300, 3), (1, 1)])
def test_chunk_shapes(tmp_path: Path, chunks: tuple[int, int]) -> None:
    rng = np.random.default_rng(5)
    values = random_values(rng, (90, 110), "int32", density=0.3)
    write_and_check(tmp_path / "m.loom", sparse.csr_matrix(values), values, chunks=chunks)
    with h5py.File(tmp_path / "m.loom", "r") as f:
        assert f["matrix"].chunks == (min(chunks[0], 110), min(chunks[1], 90))


@pytest.mark.filterwarnings("ignore:the matrix subclass:PendingDeprecationWarning")
def test_sparse_arrays_coo_and_matrix_types(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    values = random_values(rng, (100, 77), "float64")
    for i, matrix in enumerate(
        [sparse.csr_array(values), sparse.csc_array(values), sparse.coo_matrix(values), np.asmatrix(values)]
    ):
        write_and_check(tmp_path / f"{i}.loom", matrix)


def test_uncanonical_sparse_input_sums_duplicates(tmp_path: Path) -> None:
    rows = np.array([0, 0, 2, 2, 2, 5])
    cols = np.array([3, 3, 1, 0, 1, 9])
    data = np.array([1.0, 2.0, 5.0, 7.0, -5.0, 4.0], dtype=np.float32)
    for fmt in ("csr", "csc"):
        matrix = sparse.coo_matrix((data, (rows, cols)), shape=(6, 10)).asformat(fmt)
        matrix.has_canonical_format = False
        if fmt == "csr":  # put the row's indices out of order and keep duplicates
            matrix = sparse.csr_matrix((data, cols, np.array([0, 2, 2, 5, 5, 5, 6])), shape=(6, 10))
        expected = np.zeros((6, 10), dtype=np.float32)
        np.add.at(expected, (rows, cols), data)
        write_and_check(tmp_path / f"{fmt}.loom", matrix, expected)


def test_explicit_zeros_all_zero_and_fully_dense(tmp_path: Path) -> None:
    explicit = sparse.csr_matrix((np.zeros(3, np.float32), ([0, 1, 2], [0, 1, 2])), shape=(130, 70))
    write_and_check(tmp_path / "explicit.loom", explicit, np.zeros((130, 70), np.float32))
    with h5py.File(tmp_path / "explicit.loom", "r") as f:
        assert f["matrix"].id.get_num_chunks() == 0  # zero chunks are not stored; HDF5 returns the fill value
    write_and_check(tmp_path / "zero.loom", sparse.csr_matrix((200, 90), dtype=np.int64), np.zeros((200, 90), np.int64))
    full = np.arange(1, 200 * 90 + 1, dtype=np.float32).reshape(200, 90)
    write_and_check(tmp_path / "full.loom", sparse.csr_matrix(full), full)
    write_and_check(tmp_path / "full-dense.loom", full, full)


def test_negative_zero_is_stored_and_read_as_zero_in_sparse(tmp_path: Path) -> None:
    values = np.zeros((10, 10), dtype=np.float32)
    values[3, 4] = -0.0
    values[5, 5] = 2.0
    write_and_check(tmp_path / "m.loom", values, values)
    with h5py.File(tmp_path / "m.loom", "r") as f:
        assert np.signbit(read_matrix(f["matrix"], format="dense")[3, 4])
        assert read_matrix(f["matrix"]).nnz == 1


def test_none_writes_an_empty_dataset(tmp_path: Path) -> None:
    with h5py.File(tmp_path / "m.loom", "w") as f:
        dset = write_matrix(f, "matrix", None, shape=(50, 20), dtype=np.dtype("uint16"))
        assert dset.shape == (20, 50)
        assert dset.dtype == np.uint16
        assert dset.id.get_num_chunks() == 0
        assert read_matrix(dset).nnz == 0
    with h5py.File(tmp_path / "m2.loom", "w") as f, pytest.raises(TypeError, match="shape"):
        write_matrix(f, "matrix", None)


def test_dtype_cast_on_write_and_byte_order(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    values = random_values(rng, (40, 33), "float32").astype(np.float64)
    as_sparse = sparse.csr_matrix(values)
    write_and_check(tmp_path / "cast.loom", as_sparse, as_sparse.toarray().astype(np.float32), dtype=np.float32)
    big_endian = values.astype(">f8")
    write_and_check(tmp_path / "be.loom", big_endian, values)
    with h5py.File(tmp_path / "be.loom", "r") as f:
        assert f["matrix"].dtype == np.dtype("<f8")


@pytest.mark.parametrize("level", [0, 1, 2, 3, 6, 9])
def test_compression_levels(tmp_path: Path, level: int) -> None:
    rng = np.random.default_rng(level)
    values = random_values(rng, (100, 200), "float32")
    write_and_check(tmp_path / "m.loom", sparse.csr_matrix(values), compression_level=level)
    with h5py.File(tmp_path / "m.loom", "r") as f:
        assert f["matrix"].compression == "gzip"
        assert f["matrix"].compression_opts == level


@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_thread_counts_give_identical_files_content(tmp_path: Path, n_threads: int) -> None:
    rng = np.random.default_rng(0)
    values = random_values(rng, (300, 500), "float32", density=0.05)
    write_and_check(tmp_path / "m.loom", sparse.csr_matrix(values), n_threads=n_threads, chunks=(32, 32))


def test_invalid_arguments(tmp_path: Path) -> None:
    values = np.ones((3, 4), dtype=np.float32)
    with h5py.File(tmp_path / "m.loom", "w") as f:
        with pytest.raises(ValueError, match="compression_level"):
            write_matrix(f, "a", values, compression_level=10)
        with pytest.raises(ValueError, match="n_threads"):
            write_matrix(f, "b", values, n_threads=0)
        with pytest.raises(ValueError, match="chunks"):
            write_matrix(f, "c", values, chunks=(0, 4))
        dset = write_matrix(f, "d", values)
        with pytest.raises(ValueError, match="format"):
            read_matrix(dset, format="coo")
        with pytest.raises(ValueError, match="n_threads"):
            read_matrix(dset, n_threads=-1)


def test_malformed_sparse_input_is_refused(tmp_path: Path) -> None:
    bad = sparse.csr_matrix((np.ones(2, np.float32), np.array([0, 9]), np.array([0, 1, 2])), shape=(2, 5), copy=False)
    with h5py.File(tmp_path / "m.loom", "w") as f, pytest.raises(ValueError, match="malformed"):
        write_matrix(f, "matrix", bad)


def test_progress_bar(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    values = sparse.random(200, 100, density=0.1, format="csr", dtype=np.float32, random_state=0)
    with h5py.File(tmp_path / "m.loom", "w") as f:
        write_matrix(f, "matrix", values, progress=True)
        assert (read_matrix(f["matrix"], progress=True) != values).nnz == 0
        progress_bar(True, 10, "demo").close()
    assert isinstance(progress_bar(False, 10, "demo"), NoProgress)


# --------------------------------------------------------------------------------------------------
# files written by other tools and unusual storage


def h5py_dataset(path: Path, values_t: np.ndarray, **kwargs: object) -> None:
    with h5py.File(path, "w") as f:
        f.create_dataset("matrix", data=values_t, **kwargs)


STORAGE = {
    "gzip": {"chunks": (16, 16), "compression": "gzip", "compression_opts": 4},
    "gzip+shuffle": {"chunks": (10, 7), "compression": "gzip", "shuffle": True},
    "shuffle-only": {"chunks": (10, 7), "shuffle": True},
    "lzf": {"chunks": (16, 32), "compression": "lzf"},
    "chunked-plain": {"chunks": (13, 17)},
    "contiguous": {},
    "fletcher32": {"chunks": (16, 16), "compression": "gzip", "fletcher32": True},
    "scaleoffset": {"chunks": (16, 16), "scaleoffset": 0},
}


@pytest.mark.parametrize("storage", list(STORAGE))
@pytest.mark.parametrize("dtype", ["int16", "float32", "uint64"])
def test_files_from_h5py(tmp_path: Path, storage: str, dtype: str) -> None:
    if storage == "scaleoffset" and dtype.startswith("float"):
        pytest.skip("scaleoffset 0 is lossy for floats")
    rng = np.random.default_rng(1)
    values = random_values(rng, (75, 90), dtype)
    h5py_dataset(tmp_path / "m.h5", values.T, **STORAGE[storage])
    with h5py.File(tmp_path / "m.h5", "r") as f:
        if storage == "scaleoffset":
            try:
                f["matrix"][()]
            except OSError as err:  # HDF5 1.14.x fails on the edge chunks of files it wrote itself
                pytest.skip(f"HDF5 {h5py.version.hdf5_version} cannot read its own scale-offset file: {err}")
        # gzip, shuffle and plain chunks are decoded here; other filters and layouts go through h5py
        decoded_here = storage in {"gzip", "gzip+shuffle", "shuffle-only", "chunked-plain"}
        assert (ChunkLayout.inspect(f["matrix"]) is not None) == decoded_here
        check_all_formats(f["matrix"], n_threads=2)


def test_compact_layout(tmp_path: Path) -> None:
    values = np.arange(12, dtype=np.float32).reshape(3, 4)
    with h5py.File(tmp_path / "m.h5", "w") as f:
        space = h5py.h5s.create_simple((4, 3))
        plist = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        plist.set_layout(h5py.h5d.COMPACT)
        dsid = h5py.h5d.create(f.id, b"matrix", h5py.h5t.NATIVE_FLOAT, space, dcpl=plist)
        dsid.write(h5py.h5s.ALL, h5py.h5s.ALL, np.ascontiguousarray(values.T))
    with h5py.File(tmp_path / "m.h5", "r") as f:
        assert f["matrix"].id.get_create_plist().get_layout() == h5py.h5d.COMPACT
        check_all_formats(f["matrix"])


@pytest.mark.parametrize("fill", [7, -0.0, 2.5])
def test_missing_chunks_read_as_fill_value(tmp_path: Path, fill: float) -> None:
    with h5py.File(tmp_path / "m.h5", "w") as f:
        dset = f.create_dataset(
            "matrix", shape=(50, 40), dtype="float32", chunks=(16, 16), compression="gzip", fillvalue=fill
        )
        dset[0:16, 0:16] = 1.0
        dset[40:50, 30:35] = np.arange(50, dtype=np.float32).reshape(10, 5)
        dset[20, 20] = 0.0
    with h5py.File(tmp_path / "m.h5", "r") as f:
        assert f["matrix"].id.get_num_chunks() < 12
        check_all_formats(f["matrix"], n_threads=2)


def test_big_endian_file(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    values = random_values(rng, (40, 70), "float64")
    h5py_dataset(tmp_path / "m.h5", values.T.astype(">f8"), chunks=(8, 8), compression="gzip", shuffle=True)
    with h5py.File(tmp_path / "m.h5", "r") as f:
        assert f["matrix"].dtype == np.dtype(">f8")
        assert ChunkLayout.inspect(f["matrix"]) is not None
        check_all_formats(f["matrix"])


def test_userblock_in_memory_and_open_for_writing(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    values = random_values(rng, (100, 60), "float32")
    with h5py.File(tmp_path / "ub.loom", "w", userblock_size=1024) as f:
        write_matrix(f, "matrix", sparse.csr_matrix(values))
    with h5py.File(tmp_path / "ub.loom", "r") as f:
        layout = ChunkLayout.inspect(f["matrix"])
        source = RawChunkSource(f["matrix"], layout)
        assert source.fd is not None  # chunk addresses checked out: read straight from the file
        source.close()
        check_all_formats(f["matrix"])
    with h5py.File(tmp_path / "mem.loom", "w", driver="core", backing_store=False) as f:
        write_matrix(f, "matrix", values)
        source = RawChunkSource(f["matrix"], ChunkLayout.inspect(f["matrix"]))
        assert source.fd is None  # no file on disk: chunks come through HDF5
        check_all_formats(f["matrix"])
    with h5py.File(tmp_path / "rw.loom", "w") as f:  # read back before anything is flushed
        write_matrix(f, "matrix", values, chunks=(8, 8))
        check_all_formats(f["matrix"])


@pytest.mark.parametrize(
    "stream",
    [
        b"x\x9c" + b"\x03\x00" + b"\x00\x00\x00\x01",  # a valid stream of nothing
        b"x\x9c" + b"\xff" * 40,  # not deflate at all
        zlib.compress(b"\x00" * 64 * 64 * 4)[:-4] + b"\x00\x00\x00\x00",  # wrong checksum
    ],
)
def test_damaged_chunk_is_reported(tmp_path: Path, stream: bytes, inflate_path: str) -> None:
    values = np.ones((64, 130), dtype=np.float32)
    with h5py.File(tmp_path / "m.loom", "w") as f:
        dset = write_matrix(f, "matrix", values, chunks=(64, 64))
        dset.id.write_direct_chunk((64, 0), stream)
    with h5py.File(tmp_path / "m.loom", "r") as f:
        reader = ChunkReader(f["matrix"], ChunkLayout.inspect(f["matrix"]))
        assert (reader.libdeflate is not None) == (inflate_path == "libdeflate")
        for fmt in ("csr", "csc", "dense"):
            with pytest.raises(LoomFormatError, match=r"chunk at \(64, 0\) of /matrix .* damaged"):
                read_matrix(f["matrix"], format=fmt)


def test_non_numeric_dataset_uses_simple_path(tmp_path: Path) -> None:
    values = np.array([[True, False], [False, False], [True, True]])
    h5py_dataset(tmp_path / "m.h5", values.T)
    with h5py.File(tmp_path / "m.h5", "r") as f:
        result = read_matrix(f["matrix"])
        assert result.dtype == bool
        np.testing.assert_array_equal(result.toarray(), values)


def real_fixture_layers() -> list[tuple[str, str]]:
    if not FIXTURES.is_dir():
        return []
    found = []
    for path in sorted(FIXTURES.glob("*.loom")):
        with h5py.File(path, "r") as f:
            names = ["/matrix"] if "matrix" in f else []
            if "layers" in f:
                names += [f"/layers/{k}" for k, v in f["layers"].items() if isinstance(v, h5py.Dataset)]
        found += [(path.name, name) for name in names]
    return found


@pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"real fixture files not found at {FIXTURES}")
@pytest.mark.parametrize(("filename", "layer"), real_fixture_layers())
def test_real_fixture_layers_read_like_h5py(tmp_path: Path, filename: str, layer: str) -> None:
    path = tmp_path / filename
    shutil.copy(FIXTURES / filename, path)
    with h5py.File(path, "r") as f:
        check_all_formats(f[layer])


# --------------------------------------------------------------------------------------------------
# other readers


def test_loompy_reads_what_we_write(tmp_path: Path) -> None:
    loompy = pytest.importorskip("loompy")
    rng = np.random.default_rng(8)
    values = random_values(rng, (150, 90), "float32", density=0.1)
    values[~np.isfinite(values)] = 3
    counts = sparse.random(150, 90, density=0.1, format="csr", dtype=np.float32, random_state=1)
    path = tmp_path / "m.loom"
    with h5py.File(path, "w") as f:
        write_matrix(f, "matrix", sparse.csr_matrix(values))
        write_matrix(f.create_group("layers"), "counts", counts)
        for group in ("row_attrs", "col_attrs", "row_graphs", "col_graphs"):
            f.create_group(group)
        f["row_attrs"]["Gene"] = np.array([f"g{i}" for i in range(90)], dtype=h5py.string_dtype())
        f["col_attrs"]["CellID"] = np.array([f"c{i}" for i in range(150)], dtype=h5py.string_dtype())
        f.create_group("attrs")
        f.attrs["LOOM_SPEC_VERSION"] = "3.0.0"
    validator = loompy.LoomValidator()
    assert validator.validate(str(path), strictness="speconly"), validator.errors
    with loompy.connect(str(path), mode="r") as ds:
        assert ds.shape == (90, 150)
        np.testing.assert_array_equal(ds[:, :], values.T)
        np.testing.assert_array_equal(ds.layers["counts"][:, :], counts.toarray().T)
        np.testing.assert_array_equal(ds.layers[""].sparse().toarray(), values.T)


@pytest.mark.parametrize("n_threads", [1, 2])
def test_many_small_tasks_reuse_buffers_correctly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n_threads: int
) -> None:
    """One chunk column or row per task: each worker reuses its buffers many times, with differing band shapes."""
    monkeypatch.setattr(pool, "TASK_BYTES", 1)
    rng = np.random.default_rng(12)
    values = random_values(rng, (203, 77), "float32", density=0.3)
    values[150:170] = 0  # a band with no chunk at all
    for kind, matrix in [
        ("csr", sparse.csr_matrix(values)),
        ("csc", sparse.csc_matrix(values)),
        ("dense", values),
    ]:
        write_and_check(tmp_path / f"{kind}.loom", matrix, chunks=(16, 10), n_threads=n_threads)


@pytest.mark.parametrize("segment", [1, 7, 1000])
def test_sparse_results_assembled_from_segments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, segment: int) -> None:
    """Where address space cannot be reserved up front, non-zeros go through fixed-size segments."""
    monkeypatch.setattr(assembler_module, "overcommit_allowed", lambda: False)
    monkeypatch.setattr(assembler_module, "SEGMENT_ELEMENTS", segment)
    rng = np.random.default_rng(segment)
    values = random_values(rng, (150, 97), "int16", density=0.1)
    write_and_check(tmp_path / "m.loom", sparse.csr_matrix(values), chunks=(16, 16), n_threads=2)
    with h5py.File(tmp_path / "m.loom", "r") as f:
        assembler = CompressedAssembler(150, 97, np.dtype(np.int16), np.dtype(np.int32))
        assembler.append(0, np.array([2]), np.array([3, 5], np.int32), np.array([1, 2], np.int16))
        assert len(assembler.segments) == (2 if segment == 1 else 1)
        assert read_matrix(f["matrix"]).nnz == np.count_nonzero(values)
