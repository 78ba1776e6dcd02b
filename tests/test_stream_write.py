"""Streaming writes: write_loom_full of dask, backed and read_lazy matrices, a band of cells at a time."""

from __future__ import annotations

import tracemalloc

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
from anndata.tests.helpers import assert_adata_equal
from helpers import assert_same_as_h5ad, stored_chunks
from scipy import sparse

from scanpy_loomio import LossyWriteError, read_loom_full, write_loom_full
from scanpy_loomio._matrix import pool, stream, write_matrix
from scanpy_loomio._matrix.encode import encode_band
from scanpy_loomio._matrix.stream import BandSource, write_streamed

da = pytest.importorskip("dask.array")

N_OBS, N_VAR = 333, 70
RNG = np.random.default_rng(7)
DTYPES = ["int8", "uint16", "int32", "uint64", "float16", "float32", "float64", "bool"]
CONTAINERS = ["dense", "csr_matrix", "csc_matrix", "csr_array", "csc_array"]


@pytest.fixture(autouse=True)
def small_bands(monkeypatch):
    """Bands of 64 cells, so that these small matrices are written in many bands."""
    monkeypatch.setattr(stream, "BAND_BYTES", 64 * N_VAR)


def values(dtype: str, shape: tuple[int, int] = (N_OBS, N_VAR), density: float = 0.3) -> np.ndarray:
    dense = (RNG.random(shape) < density) * RNG.integers(1, 100, shape)
    return dense.astype(dtype)


def contained(dense: np.ndarray, container: str):
    return dense if container == "dense" else getattr(sparse, container)(dense)


def annotated(X, **layers) -> ad.AnnData:
    n_obs, n_var = X.shape
    obs = pd.DataFrame(
        {"group": pd.Categorical(RNG.choice(["a", "b", "c"], n_obs)), "n": np.arange(n_obs)},
        index=[f"cell{i}" for i in range(n_obs)],
    )
    var = pd.DataFrame({"symbol": [f"G{j}" for j in range(n_var)]}, index=[f"gene{j}" for j in range(n_var)])
    adata = ad.AnnData(X=X, obs=obs, var=var, layers=layers)
    adata.obsm["X_pca"] = RNG.random((n_obs, 3)).astype(np.float32)
    adata.obsp["connectivities"] = sparse.random(n_obs, n_obs, density=0.02, format="csr", random_state=1)
    adata.uns["params"] = {"k": 15}
    return adata


def lazy(matrix, chunks) -> da.Array:
    return da.from_array(matrix, chunks=chunks, asarray=False)


@pytest.mark.parametrize("container", CONTAINERS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_dask_matrices_write_as_the_computed_anndata(tmp_path, dtype, container):
    if dtype == "float16" and container != "dense":
        pytest.skip("scipy.sparse has no float16")
    x = contained(values(dtype), container)
    layer = contained(values(dtype, density=0.05), container)
    computed = annotated(x, counts=layer)
    write_loom_full(tmp_path / "memory.loom", computed, progress=False)
    streamed = computed.copy()
    streamed.X = lazy(x, (50, 70))  # blocks that do not line up with the 64-cell chunks
    streamed.layers["counts"] = lazy(layer, (101, 23))  # and split along genes
    write_loom_full(tmp_path / "streamed.loom", streamed, progress=False)
    back = read_loom_full(tmp_path / "streamed.loom")
    assert_same_as_h5ad(computed, back)
    assert type(back.X) is type(x)
    assert back.X.dtype == np.dtype(dtype)
    assert_adata_equal(read_loom_full(tmp_path / "memory.loom"), back, exact=True)
    for name in ("matrix", "layers/counts"):
        assert stored_chunks(tmp_path / "streamed.loom", name) == stored_chunks(tmp_path / "memory.loom", name)
    assert isinstance(streamed.X, da.Array), "the caller's AnnData is left as it was"


@pytest.mark.parametrize("chunks", [((1,) * 70 + (N_OBS - 70,), N_VAR), (N_OBS, 5), (64, N_VAR), (7, 3)])
def test_any_chunking(tmp_path, chunks):
    x = values("float32")
    write_loom_full(tmp_path / "memory.loom", annotated(x), progress=False)
    write_loom_full(tmp_path / "streamed.loom", annotated(lazy(x, chunks)), progress=False)
    assert stored_chunks(tmp_path / "streamed.loom") == stored_chunks(tmp_path / "memory.loom")


@pytest.mark.parametrize(
    ("convention", "options"),
    [("loompy", {}), ("velocyto", {"fill_missing_layers": True}), ("seuratdisk", {}), ("scope", {})],
)
def test_conventions(tmp_path, convention, options):
    counts = sparse.csr_matrix(values("uint32", density=0.1))
    computed = annotated(counts.astype(np.float32), spliced=counts)
    write_loom_full(tmp_path / "memory.loom", computed, convention=convention, progress=False, **options)
    streamed = computed.copy()
    streamed.X = lazy(computed.X, (90, N_VAR))
    streamed.layers["spliced"] = lazy(counts, (45, N_VAR))
    write_loom_full(tmp_path / "streamed.loom", streamed, convention=convention, progress=False, **options)
    expected = read_loom_full(tmp_path / "memory.loom")
    assert_adata_equal(expected, read_loom_full(tmp_path / "streamed.loom"), exact=True)
    with h5py.File(tmp_path / "memory.loom", "r") as f:
        layers = list(f["layers"])
    assert layers, "the convention writes layers"
    for name in ["matrix", *(f"layers/{layer}" for layer in layers)]:
        assert stored_chunks(tmp_path / "streamed.loom", name) == stored_chunks(tmp_path / "memory.loom", name)


@pytest.mark.parametrize("container", ["dense", "csr_matrix", "csc_matrix"])
def test_backed_anndata(tmp_path, container):
    computed = annotated(contained(values("float32"), container), counts=contained(values("int32"), container))
    computed.raw = computed.copy()
    computed.write_h5ad(tmp_path / "in.h5ad")
    expected_path = tmp_path / "memory.loom"
    write_loom_full(expected_path, ad.read_h5ad(tmp_path / "in.h5ad"), progress=False)
    backed = ad.read_h5ad(tmp_path / "in.h5ad", backed="r")
    assert not isinstance(backed.X, np.ndarray | sparse.spmatrix)
    write_loom_full(tmp_path / "backed.loom", backed, progress=False)
    assert backed.isbacked, "the AnnData stays backed"
    assert_adata_equal(read_loom_full(expected_path), read_loom_full(tmp_path / "backed.loom"), exact=True)
    assert stored_chunks(tmp_path / "backed.loom") == stored_chunks(expected_path)


@pytest.mark.parametrize("store", ["h5ad", "zarr"])
def test_read_lazy_anndata(tmp_path, store):
    pytest.importorskip("xarray")  # read_lazy keeps obs and var in xarray
    computed = annotated(sparse.csr_matrix(values("float32")), dense=values("int16"))
    path = tmp_path / f"in.{store}"
    getattr(computed, f"write_{store}")(path)
    lazy_adata = ad.experimental.read_lazy(path)
    assert isinstance(lazy_adata.X, da.Array)
    write_loom_full(tmp_path / "lazy.loom", lazy_adata, progress=False)
    write_loom_full(tmp_path / "memory.loom", lazy_adata.to_memory(), progress=False)
    assert_adata_equal(read_loom_full(tmp_path / "memory.loom"), read_loom_full(tmp_path / "lazy.loom"), exact=True)


def test_a_failing_task_leaves_the_old_file(tmp_path):
    target = tmp_path / "a.loom"
    target.write_bytes(b"previous content")
    x = lazy(values("float32"), (64, N_VAR))

    def block(values: np.ndarray, block_info=None) -> np.ndarray:
        if block_info[0]["chunk-location"][0] == 3:
            raise RuntimeError("worker lost its input")
        return values

    adata = annotated(x.map_blocks(block, dtype=x.dtype))
    with pytest.raises(RuntimeError, match="worker lost its input"):
        write_loom_full(target, adata, progress=False)
    assert target.read_bytes() == b"previous content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.loom"]


def test_keyboard_interrupt_leaves_no_file(tmp_path):
    target = tmp_path / "a.loom"
    x = lazy(values("float32"), (64, N_VAR))

    def block(values: np.ndarray, block_info=None) -> np.ndarray:
        if block_info[0]["chunk-location"][0] == 2:
            raise KeyboardInterrupt
        return values

    with pytest.raises(KeyboardInterrupt):
        write_loom_full(target, annotated(x.map_blocks(block, dtype=x.dtype)), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_unwritable_dtype_is_refused_before_anything_is_computed(tmp_path):
    computed = []

    def block(values: np.ndarray) -> np.ndarray:
        computed.append(values.shape)
        return values

    x = da.from_array(np.full((N_OBS, N_VAR), "a", dtype=object), chunks=(64, N_VAR))
    x = x.map_blocks(block, meta=np.empty((0, 0), dtype=object))
    with pytest.raises(LossyWriteError, match="X: dtype object cannot be a loom matrix"):
        write_loom_full(tmp_path / "a.loom", annotated(x), progress=False)
    assert computed == []
    assert list(tmp_path.iterdir()) == []


def _peak_of_write(path, n_cells: int) -> int:
    """Bytes numpy allocated at most while writing a lazily generated sparse matrix of ``n_cells`` cells."""

    def random_block(block_info=None):
        (lo, hi), _ = block_info[None]["array-location"]
        rng = np.random.default_rng(lo)
        return sparse.random(hi - lo, 500, density=0.05, format="csr", dtype=np.float32, random_state=rng)

    meta = sparse.csr_matrix((0, 0), dtype=np.float32)
    x = da.map_blocks(random_block, chunks=((1000,) * (n_cells // 1000), (500,)), dtype=np.float32, meta=meta)
    adata = ad.AnnData(X=x, obs=pd.DataFrame(index=[f"c{i}" for i in range(n_cells)]))
    tracemalloc.start()
    try:
        write_loom_full(path, adata, progress=False, n_threads=2)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_does_not_grow_with_the_number_of_cells(tmp_path, monkeypatch):
    monkeypatch.setattr(stream, "BAND_BYTES", 2000 * 500 * 4)  # bands of two blocks
    small = _peak_of_write(tmp_path / "small.loom", 20_000)
    large = _peak_of_write(tmp_path / "large.loom", 80_000)
    one_dense_band = 2000 * 500 * 4
    # each worker thread keeps one task's tiles and deflated chunks; a small write may not have started the second
    one_thread = pool.TASK_BYTES + pool.TASK_BYTES // 8
    assert large < 1.3 * small + one_dense_band + one_thread, (small, large)
    # what the writer holds: per thread one task's chunk tiles and its deflated chunks, and a few bands in flight
    held = 2 * (pool.TASK_BYTES + pool.TASK_BYTES // 8) + 3 * one_dense_band
    assert large < held < 80_000 * 500 * 4 / 4, "a few bands and tasks, far less than the dense matrix"
    back = read_loom_full(tmp_path / "large.loom")
    assert back.X.nnz > 0.04 * 80_000 * 500


def test_encode_band_gives_the_chunks_the_engine_stores(tmp_path):
    x = values("float32", shape=(200, 130))
    with h5py.File(tmp_path / "whole.loom", "w") as f:
        write_streamed(f, "matrix", BandSource(lazy(x, (200, 130))))
    whole = stored_chunks(tmp_path / "whole.loom")
    result = encode_band(x[10:150], 10, 200, (64, 64), "<f4", 2)
    assert result.encoded == (64, 128)
    assert [(a, b) for a, b, _ in result.pieces] == [(10, 64), (128, 150)]
    assert dict(result.chunks) == {k: v for k, v in whole.items() if 64 <= k[1] < 128}
    last = encode_band(x[128:], 128, 200, (64, 64), "<f4", 2)  # the last, narrower column is whole
    assert last.encoded == (128, 200)
    assert dict(last.chunks) == {k: v for k, v in whole.items() if k[1] >= 128}


@pytest.mark.slow
def test_distributed_workers_compress_and_the_owner_places(tmp_path):
    distributed = pytest.importorskip("distributed")
    x = sparse.csr_matrix(values("float32", density=0.1))
    computed = annotated(x, dense=values("int16"))
    write_loom_full(tmp_path / "memory.loom", computed, progress=False)
    streamed = computed.copy()
    streamed.X = lazy(x, (50, N_VAR))
    streamed.layers["dense"] = lazy(computed.layers["dense"], (100, 35))
    wide = values("float32", shape=(2000, 130), density=0.1)
    with h5py.File(tmp_path / "wide-memory.loom", "w") as f:
        write_streamed(f, "matrix", BandSource(lazy(wide, (2000, 130))))

    def fail_on_block_3(values, block_info=None):
        if block_info[0]["chunk-location"][0] == 3:
            raise RuntimeError("band 3 failed")
        return values

    failing = streamed.copy()
    failing.X = streamed.X.map_blocks(fail_on_block_3, dtype=streamed.X.dtype)
    (tmp_path / "failed.loom").write_bytes(b"previous content")
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None)
    try:
        with distributed.Client(cluster) as client:
            workers = client.run(lambda: 1)
            source = BandSource(lazy(wide, (500, 130)))  # band edges at 500, 1000, 1500: inside chunk columns
            with h5py.File(tmp_path / "wide.loom", "w") as f:
                write_streamed(f, "matrix", source)
            write_loom_full(tmp_path / "streamed.loom", streamed, progress=False)
            with pytest.raises(RuntimeError, match="band 3 failed"):
                write_loom_full(tmp_path / "failed.loom", failing, progress=False)
    finally:
        cluster.close()
    assert len(workers) == 2
    # the workers compressed every chunk but those of the three chunk columns two bands share
    expected = stored_chunks(tmp_path / "wide-memory.loom")
    shared = {k for k in expected if k[1] in (448, 960, 1472)}
    assert source.served_cells == 3 * 64
    assert source.placed_chunks == len(expected) - len(shared)
    assert stored_chunks(tmp_path / "wide.loom") == expected
    assert_adata_equal(read_loom_full(tmp_path / "memory.loom"), read_loom_full(tmp_path / "streamed.loom"), exact=True)
    for name in ("matrix", "layers/dense"):
        assert stored_chunks(tmp_path / "streamed.loom", name) == stored_chunks(tmp_path / "memory.loom", name)
    assert (tmp_path / "failed.loom").read_bytes() == b"previous content"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".failed")]


class CompressedRows:
    """A matrix that hands the engine views of a CSR matrix's arrays, as :class:`BandSource` does."""

    def __init__(self, matrix: sparse.csr_matrix) -> None:
        self.matrix, self.shape, self.dtype = matrix, matrix.shape, matrix.dtype

    def __getitem__(self, key: slice):
        return self.matrix[key]

    def compressed_rows(self, lo: int, hi: int):
        indptr = self.matrix.indptr[lo : hi + 1]
        return indptr, self.matrix.indices[indptr[0] : indptr[-1]], self.matrix.data[indptr[0] : indptr[-1]]


def test_unsorted_rows_are_written_sorted_and_left_as_they_are(tmp_path):
    """Rows handed over as views are sorted, and their duplicates summed, in a copy."""
    x = sparse.csr_matrix(values("float32", density=0.2))
    unsorted = x.copy()
    for row in range(unsorted.shape[0]):  # indices decreasing within each row
        part = slice(unsorted.indptr[row], unsorted.indptr[row + 1])
        unsorted.indices[part], unsorted.data[part] = unsorted.indices[part][::-1], unsorted.data[part][::-1]
    row = int(np.argmax(np.diff(x.indptr) >= 2))
    unsorted.indices[x.indptr[row]] = unsorted.indices[x.indptr[row] + 1]  # a duplicate: its values are summed
    unsorted.has_sorted_indices = False
    kept = unsorted.indices.copy(), unsorted.data.copy()
    expected = unsorted.copy()
    expected.sum_duplicates()
    with h5py.File(tmp_path / "a.loom", "w") as f:
        write_matrix(f, "views", CompressedRows(unsorted), chunks=(16, 32), n_threads=2)
        write_matrix(f, "sorted", expected, chunks=(16, 32), n_threads=2)
        assert np.array_equal(f["views"][:], expected.T.toarray())
    assert np.array_equal(unsorted.indices, kept[0]) and np.array_equal(unsorted.data, kept[1])
    assert stored_chunks(tmp_path / "a.loom", "views") == stored_chunks(tmp_path / "a.loom", "sorted")


def test_bands_hand_their_compressed_rows_to_the_engine_without_copies():
    x = sparse.csr_matrix(values("float32"))
    source = BandSource(lazy(x, (128, N_VAR)))
    source.prepare((64, 64), 2)
    indptr, indices, data = source.compressed_rows(64, 128)
    band = source._current[0].pieces[0][2]
    assert np.shares_memory(indices, band.indices) and np.shares_memory(data, band.data)
    rows = sparse.csr_matrix((data, indices, indptr - indptr[0]), shape=(64, N_VAR))
    assert (rows != x[64:128]).nnz == 0
    assert source.compressed_rows(120, 140) is None  # two bands: the engine slices instead
