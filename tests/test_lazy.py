"""Lazy reads: ``read_loom_lazy`` gives dask arrays split along cells that compute to exactly what
``read_loom_full`` reads, from a graph that pickles and runs on dask.distributed workers."""

from __future__ import annotations

import pickle
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from anndata import AnnData
from helpers import assert_reads_equal, knn_graph, layer_keys, write_loom_as_anndata_did
from scipy import sparse
from test_subset import FOREIGN, ROOT, rich

from scanpy_loomio import LoomFormatError, LoomReadWarning, read_loom_full, read_loom_lazy, write_loom_full
from scanpy_loomio.conventions import CONVENTIONS

da = pytest.importorskip("dask.array")


@pytest.fixture(scope="module")
def rich_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("lazy") / "rich.loom"
    write_loom_full(path, rich(), chunks=(16, 8))
    return path


@pytest.fixture(scope="module")
def full(rich_file):
    return read_loom_full(rich_file)


def matrices(adata):
    return {None: adata.X} | {key: adata.layers[key] for key in layer_keys(adata)}


def test_computes_to_the_full_read(rich_file, full):
    lazy = read_loom_lazy(rich_file, chunks=20)
    assert lazy.obsm.keys() == full.obsm.keys() and lazy.obsp.keys() == full.obsp.keys()
    for key, value in matrices(lazy).items():
        assert isinstance(value, da.Array), key
        assert value.shape == full.shape
        assert value.chunks[1] == (full.n_vars,)  # split along cells only
        assert set(value.chunks[0][:-1]) == {24}  # 20 rounded up to a multiple of the chunk width, 8
        block = value.blocks[1].compute()
        expected = matrices(full)[key]
        assert type(block) is type(expected) and block.dtype == expected.dtype, key
    assert_reads_equal(full, lazy.to_memory())


def test_default_blocks_are_whole_chunk_columns(rich_file):
    x = read_loom_lazy(rich_file).X
    assert x.chunks[0] == (150,)  # a small file is one block
    with h5py.File(rich_file) as f:
        width = f["matrix"].chunks[1]
    big = read_loom_lazy(rich_file, chunks=1).X
    assert set(big.chunks[0][:-1]) == {width}


@pytest.mark.parametrize("chunks", [0, -5, True, 2.5, "auto"])
def test_chunks_must_be_a_number_of_cells(rich_file, chunks):
    with pytest.raises(ValueError, match="positive number of cells"):
        read_loom_lazy(rich_file, chunks=chunks)


def test_graph_pickles_and_holds_no_open_file(rich_file, full):
    lazy = read_loom_lazy(rich_file, chunks=40)
    for value in matrices(lazy).values():
        graph = dict(value.__dask_graph__())
        pickle.loads(pickle.dumps(graph))  # an h5py object in the graph would refuse to pickle
    back = pickle.loads(pickle.dumps(lazy.X))
    assert (back.compute() != full.X).nnz == 0


def test_selection_at_read_time(rich_file, full):
    obs, var = full.obs["cell_type"] == "a", [80, 2, 2, 45]
    lazy = read_loom_lazy(rich_file, obs=obs, var=var, chunks=8)
    assert lazy.n_obs == int(obs.sum()) and lazy.n_vars == 4
    assert_reads_equal(full[obs, var].copy(), lazy.to_memory())


def test_subsetting_the_lazy_anndata(rich_file, full):
    lazy = read_loom_lazy(rich_file, chunks=16)
    for obs, var in [(slice(10, 100, 3), slice(5, 40)), ([149, 0, 77], ["gene3", "gene1"]), (slice(None), 7)]:
        part, expected = lazy[obs, var], full[obs, var]
        assert_reads_equal(expected.copy(), part.to_memory())


@pytest.mark.parametrize("name", list(CONVENTIONS))
def test_every_convention(tmp_path, name):
    path = tmp_path / f"{name}.loom"
    write_loom_full(
        path,
        rich(70, 50, extras=CONVENTIONS[name].sidecar, seed=5),
        convention=name,
        fill_missing_layers=True,
        chunks=(8, 16),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LoomReadWarning)
        assert_reads_equal(read_loom_full(path), read_loom_lazy(path, chunks=16).to_memory())


@pytest.mark.skipif(not FOREIGN, reason=f"fixtures not found under {ROOT} (../shared beside the repo)")
@pytest.mark.parametrize("path", FOREIGN, ids=lambda p: p.name)
def test_other_tools_files(tmp_path, path):
    copy = tmp_path / path.name
    shutil.copyfile(path, copy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LoomReadWarning)
        assert_reads_equal(read_loom_full(copy), read_loom_lazy(copy, chunks=1).to_memory())


def test_damaged_chunk_fails_in_the_task_naming_the_file(tmp_path):
    path = tmp_path / "damaged.loom"
    x = sparse.random(300, 100, density=0.3, format="csr", dtype=np.float32, random_state=0)
    write_loom_full(path, AnnData(x))
    with h5py.File(path) as f:
        info = f["matrix"].id.get_chunk_info_by_coord((64, 256))
    with open(path, "r+b") as handle:
        handle.seek(info.byte_offset)
        handle.write(b"\x00" * info.size)
    lazy = read_loom_lazy(path, chunks=64)  # annotations are fine
    lazy.X.blocks[0].compute()  # so are the first cells
    with pytest.raises(LoomFormatError, match=rf"{path.name}: the chunk at \(64, 256\) of /matrix"):
        lazy.X.compute()


def test_file_changed_since(tmp_path):
    path = tmp_path / "changing.loom"
    write_loom_full(path, AnnData(np.ones((100, 20), dtype=np.float32)))
    lazy = read_loom_lazy(path)
    write_loom_full(path, AnnData(np.ones((50, 20), dtype=np.float32)))
    with pytest.raises(LoomFormatError, match="changed since"):
        lazy.X.compute()
    lazy = read_loom_lazy(path)
    write_loom_full(path, AnnData(np.full((50, 20), 2, dtype=np.float32)))  # the same shape, other values
    with pytest.raises(LoomFormatError, match="changed since"):
        lazy.X.compute()


def test_without_dask_says_what_to_install(rich_file):
    code = (
        "import sys\n"
        "sys.modules['dask'] = sys.modules['dask.array'] = None  # as if it were not installed\n"
        "import scanpy_loomio\n"
        f"scanpy_loomio.read_loom_lazy({str(rich_file)!r})\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode != 0
    assert "ImportError: read_loom_lazy needs dask" in result.stderr
    assert "pip install 'scanpy-loomio[dask]'" in result.stderr


def test_progress_with_dask_diagnostics(rich_file, capsys):
    from dask.diagnostics import ProgressBar

    lazy = read_loom_lazy(rich_file, chunks=8)
    with ProgressBar(minimum=0):
        lazy.layers["dense"].sum(axis=0).compute()
    assert "100%" in capsys.readouterr().out


@pytest.mark.slow
def test_runs_on_distributed_workers(rich_file, full):
    distributed = pytest.importorskip("distributed")
    lazy = read_loom_lazy(rich_file, chunks=32)
    with (
        distributed.LocalCluster(processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None) as cluster,
        distributed.Client(cluster) as client,
        distributed.get_task_stream(client) as stream,
    ):
        computed = client.compute([lazy.X, lazy.layers["dense"], lazy.layers["array"]], sync=True)
        workers = set(client.scheduler_info()["workers"])
    assert (computed[0] != full.X).nnz == 0
    assert np.array_equal(computed[1], full.layers["dense"])
    assert type(computed[2]) is sparse.csr_array and (computed[2] != full.layers["array"]).nnz == 0
    reads = [task for task in stream.data if "read-loom-" in str(task["key"])]
    assert len(reads) >= 3 * 5  # five blocks of each matrix, read by the workers
    assert {task["worker"] for task in reads} <= workers


@pytest.mark.parametrize("options", [{"sparse": False}, {"X_name": "spliced", "dtype": "float64"}, {"cleanup": True}])
def test_reading_options_as_the_full_read(tmp_path, options):
    rng = np.random.default_rng(4)
    counts = sparse.random(130, 40, density=0.3, format="csr", dtype=np.float32, random_state=4)
    adata = AnnData(counts, layers={"spliced": counts * 2, "unspliced": counts})
    adata.obs["batch"] = "one"  # constant: cleanup moves it to uns
    adata.obs["depth"] = rng.random(130)
    path = write_loom_as_anndata_did(tmp_path / "loompy.loom", adata)  # no record: options decide
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LoomReadWarning)
        whole = read_loom_full(path, **options)
        lazy = read_loom_lazy(path, chunks=64, **options)
    if not options.get("sparse", True):
        assert isinstance(lazy.X.blocks[0].compute(), np.ndarray)
    assert_reads_equal(whole, lazy.to_memory())


def test_empty_and_absent(tmp_path):
    path = tmp_path / "empty.loom"
    write_loom_full(path, AnnData(sparse.csr_matrix((0, 12), dtype=np.float32)))
    lazy = read_loom_lazy(path)
    assert lazy.shape == (0, 12) and lazy.X.compute().shape == (0, 12)
    path = tmp_path / "no_x.loom"
    adata = AnnData(obs=pd.DataFrame(index=[f"c{i}" for i in range(5)]), var=pd.DataFrame(index=["g0", "g1"]))
    write_loom_full(path, adata)
    lazy = read_loom_lazy(path)
    assert lazy.X is None
    assert_reads_equal(read_loom_full(path), lazy.to_memory())


def test_many_threads_read_at_once(tmp_path):
    """A dask worker's threads read blocks at the same time (HDF5 itself must only be entered by one of them)."""
    x = sparse.random(2000, 300, density=0.2, format="csr", dtype=np.float32, random_state=0)
    path = tmp_path / "threads.loom"
    write_loom_full(path, AnnData(x, layers={"a": x, "b": x}), chunks=(32, 32))
    lazy = read_loom_lazy(path, chunks=32)
    for _ in range(5):
        for value in (lazy.X, lazy.layers["a"], lazy.layers["b"]):
            assert (value.compute(scheduler="threads", num_workers=4) != x).nnz == 0


def test_a_selection_builds_graphs_from_the_selected_edges_only(tmp_path, monkeypatch):
    """A lazy read of a few cells does not build the whole kNN graph: less memory than the graph's arrays."""
    import tracemalloc

    monkeypatch.setattr("scanpy_loomio._read.graphs.GRAPH_BLOCK", 2**14)
    n_obs, k = 40_000, 30
    rng = np.random.default_rng(3)
    knn = knn_graph(n_obs, k, rng)
    adata = AnnData(sparse.random(n_obs, 20, density=0.01, format="csr", dtype=np.float32, random_state=0))
    adata.obsp["distances"] = knn
    write_loom_full(tmp_path / "knn.loom", adata, progress=False)
    cells = np.sort(rng.choice(n_obs, 400, replace=False))
    tracemalloc.start()
    try:
        lazy = read_loom_lazy(tmp_path / "knn.loom", obs=cells)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < knn.data.nbytes + knn.indices.nbytes, peak
    assert (lazy.obsp["distances"] != knn[cells][:, cells]).nnz == 0
    assert_reads_equal(read_loom_full(tmp_path / "knn.loom")[cells].copy(), lazy.to_memory())
