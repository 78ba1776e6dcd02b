"""``scanpy-loomio convert`` between .loom, .h5ad and .zarr, a band of cells at a time."""

from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
from anndata.tests.helpers import assert_adata_equal
from helpers import knn_graph, write_loom_as_anndata_did
from scipy import sparse

from scanpy_loomio import LoomFormatError, read_loom_full, write_loom_full
from scanpy_loomio._elements import graphs
from scanpy_loomio._matrix import stream
from scanpy_loomio._read import graphs as read_graphs
from scanpy_loomio._tools import convert
from scanpy_loomio._tools.convert import convert_file, dense_to_csr
from scanpy_loomio.cli import main

REPO = Path(__file__).resolve().parents[1]
N_OBS, N_VAR = 300, 90
RNG = np.random.default_rng(3)


@pytest.fixture(autouse=True)
def small_bands(monkeypatch):
    """Bands of 64 cells (or genes), so that these small files are converted in many bands."""
    monkeypatch.setattr(convert, "BAND_BYTES", 64 * N_VAR)
    monkeypatch.setattr(stream, "BAND_BYTES", 64 * N_VAR)


def counts(dtype="float32", density=0.2, shape=(N_OBS, N_VAR)) -> np.ndarray:
    return ((RNG.random(shape) < density) * RNG.integers(1, 60, shape)).astype(dtype)


def rich_adata() -> ad.AnnData:
    """Every kind of matrix the in-memory path keeps: CSR, CSC, dense, bool, integer; raw, graphs, uns."""
    obs = pd.DataFrame(
        {"cluster": pd.Categorical(RNG.choice(["a", "b"], N_OBS)), "score": RNG.random(N_OBS)},
        index=[f"cell{i}" for i in range(N_OBS)],
    )
    var = pd.DataFrame({"highly_variable": RNG.random(N_VAR) < 0.3}, index=[f"gene{j}" for j in range(N_VAR)])
    adata = ad.AnnData(
        X=sparse.csr_matrix(counts()),
        obs=obs,
        var=var,
        layers={
            "counts": sparse.csr_matrix(counts("int32")),
            "csc": sparse.csc_matrix(counts("float64")),
            "dense": counts("uint16"),
            "flags": counts() > 30,
        },
    )
    adata.obsm["X_umap"] = RNG.random((N_OBS, 2))
    adata.varm["PCs"] = RNG.random((N_VAR, 3))
    adata.obsp["distances"] = sparse.random(N_OBS, N_OBS, density=0.03, format="csr", random_state=2)
    adata.uns["neighbors"] = {"params": {"n_neighbors": 15}}
    adata.raw = adata[:, :40].copy()
    return adata


@pytest.fixture
def files(tmp_path) -> dict[str, Path]:
    adata = rich_adata()
    paths = {"h5ad": tmp_path / "in.h5ad", "zarr": tmp_path / "in.zarr", "loom": tmp_path / "in.loom"}
    adata.write_h5ad(paths["h5ad"])
    adata.write_zarr(paths["zarr"])
    write_loom_full(paths["loom"], adata, progress=False)
    return paths


def old_loom_to_h5ad(loom: Path, target: Path, **options) -> ad.AnnData:
    """What convert wrote before it streamed: read_loom_full, then write_h5ad."""
    read_loom_full(loom, **options).write_h5ad(target)
    return ad.read_h5ad(target)


@pytest.mark.parametrize("kind", ["h5ad", "zarr"])
def test_loom_to_anndata_file_equals_the_in_memory_path(files, tmp_path, kind):
    target = tmp_path / f"out.{kind}"
    report = convert_file(files["loom"], target)
    assert report.shape == (N_OBS, N_VAR)
    assert report.convention is None
    expected = old_loom_to_h5ad(files["loom"], tmp_path / "expected.h5ad")
    back = ad.read_h5ad(target) if kind == "h5ad" else ad.read_zarr(target)
    assert_adata_equal(expected, back, exact=True)
    assert sparse.issparse(back.layers["csc"]) and back.layers["csc"].format == "csc"
    assert back.layers["flags"].dtype == bool
    assert_adata_equal(ad.read_h5ad(files["h5ad"]), back, exact=True)  # and what was written in the first place


@pytest.mark.parametrize("kind", ["h5ad", "zarr"])
def test_anndata_file_to_loom_equals_the_in_memory_path(files, tmp_path, kind):
    report = convert_file(files[kind], tmp_path / "out.loom", convention="loompy")
    assert report.convention == "loompy"
    write_loom_full(tmp_path / "expected.loom", ad.read_h5ad(files["h5ad"]), progress=False)
    assert_adata_equal(read_loom_full(tmp_path / "expected.loom"), read_loom_full(tmp_path / "out.loom"), exact=True)


def test_dense_x_in_h5ad(tmp_path):
    adata = ad.AnnData(counts("float32"), layers={"spliced": counts("uint32")})
    adata.write_h5ad(tmp_path / "dense.h5ad")
    convert_file(tmp_path / "dense.h5ad", tmp_path / "dense.loom", convention="velocyto", fill_missing_layers=True)
    back = read_loom_full(tmp_path / "dense.loom")
    np.testing.assert_array_equal(back.X, adata.X)
    np.testing.assert_array_equal(back.layers["spliced"], adata.layers["spliced"])


def test_files_of_other_tools_and_options(tmp_path):
    adata = ad.AnnData(
        sparse.csr_matrix(counts()),
        obs=pd.DataFrame(index=[f"c{i}" for i in range(N_OBS)]),
        var=pd.DataFrame(index=[f"g{j}" for j in range(N_VAR)]),
        layers={"spliced": sparse.csr_matrix(counts("float32"))},
    )
    loom = write_loom_as_anndata_did(tmp_path / "anndata.loom", adata)
    for options in ({}, {"X_name": "spliced"}):
        target = tmp_path / f"out{len(options)}.h5ad"
        convert_file(loom, target, **options)
        expected = old_loom_to_h5ad(loom, tmp_path / f"expected{len(options)}.h5ad", **options)
        assert_adata_equal(expected, ad.read_h5ad(target), exact=True)


def test_cells_stored_as_rows(tmp_path):
    """A file whose /matrix is cells × genes (read turned round, with a warning) converts as read_loom_full reads it."""
    loom = tmp_path / "transposed.loom"
    x = counts()
    with h5py.File(loom, "w") as f:
        f.create_dataset("matrix", data=x, chunks=(64, 64), compression="gzip")
        f.create_group("layers")
        f.create_group("col_attrs").create_dataset("CellID", data=np.array([f"c{i}" for i in range(N_OBS)], "S"))
        f.create_group("row_attrs").create_dataset("Gene", data=np.array([f"g{j}" for j in range(N_VAR)], "S"))
        f.create_group("col_graphs")
        f.create_group("row_graphs")
    with pytest.warns(Warning, match="turned round"):
        convert_file(loom, tmp_path / "out.h5ad")
    with pytest.warns(Warning, match="turned round"):
        expected = old_loom_to_h5ad(loom, tmp_path / "expected.h5ad")
    assert_adata_equal(expected, ad.read_h5ad(tmp_path / "out.h5ad"), exact=True)
    np.testing.assert_array_equal(ad.read_h5ad(tmp_path / "out.h5ad").X.toarray(), x)


def test_damaged_loom_leaves_no_output_and_keeps_the_old_one(files, tmp_path):
    damaged = tmp_path / "damaged.loom"
    damaged.write_bytes(files["loom"].read_bytes())
    with h5py.File(damaged, "r+") as f:
        dsid = f["layers/counts"].id
        info = dsid.get_chunk_info(dsid.get_num_chunks() - 1)
    with open(damaged, "r+b") as raw:  # the last chunk's deflate stream, overwritten
        raw.seek(info.byte_offset)
        raw.write(b"\xff" * info.size)
    for kind in ("h5ad", "zarr"):
        target = tmp_path / f"old.{kind}"
        convert_file(files["loom"], target)
        before = sorted(p.name for p in tmp_path.iterdir())
        with pytest.raises(LoomFormatError, match="damaged"):
            convert_file(damaged, target)
        assert sorted(p.name for p in tmp_path.iterdir()) == before
        back = ad.read_h5ad(target) if kind == "h5ad" else ad.read_zarr(target)
        assert_adata_equal(ad.read_h5ad(files["h5ad"]), back, exact=True)


def test_damaged_h5ad_leaves_no_loom(tmp_path):
    adata = ad.AnnData(sparse.csr_matrix(counts(shape=(3000, N_VAR), density=0.5)))
    adata.write_h5ad(tmp_path / "in.h5ad", compression="gzip", as_dense=())
    with h5py.File(tmp_path / "in.h5ad", "r") as f:
        dsid = f["X/data"].id
        info = dsid.get_chunk_info(dsid.get_num_chunks() // 2)
    with open(tmp_path / "in.h5ad", "r+b") as raw:
        raw.seek(info.byte_offset)
        raw.write(b"\xff" * info.size)
    with pytest.raises(OSError, match="Can't synchronously read data|filter returned failure|inflate"):
        convert_file(tmp_path / "in.h5ad", tmp_path / "out.loom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.h5ad"]


def _traced_peak(source: Path, target: Path) -> int:
    """Peak traced memory of converting ``source``, after a first conversion (imports and compiled kernels) untraced."""
    convert_file(source, target.with_name(f"warm-up-{target.name}"))
    tracemalloc.start()
    try:
        convert_file(source, target)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("direction", ["loom-h5ad", "h5ad-loom"])
def test_memory_does_not_grow_with_the_number_of_cells(tmp_path, monkeypatch, direction):
    monkeypatch.setattr(convert, "BAND_BYTES", 2**20)
    monkeypatch.setattr(stream, "BAND_BYTES", 2**20)
    peaks = {}
    for n_obs in (8_000, 32_000):
        adata = ad.AnnData(sparse.random(n_obs, 2000, density=0.05, format="csr", dtype=np.float32, random_state=0))
        adata.layers["counts"] = adata.X.copy()
        h5ad, loom = tmp_path / f"{n_obs}.h5ad", tmp_path / f"{n_obs}.loom"
        adata.write_h5ad(h5ad)
        write_loom_full(loom, adata, progress=False)
        source, target = (
            (loom, tmp_path / f"out{n_obs}.h5ad") if direction == "loom-h5ad" else (h5ad, tmp_path / "o.loom")
        )
        peaks[n_obs] = _traced_peak(source, target)
        del adata
    matrices = 2 * 32_000 * 2000 * 0.05 * 8  # X and the layer in memory, at the larger size
    assert peaks[32_000] - peaks[8_000] < 0.2 * matrices, peaks
    assert peaks[32_000] < 0.5 * matrices, peaks


def test_dense_to_csr_matches_scipy():
    for dtype in ("int8", "uint32", "float16", "float32", "float64", "int64"):
        block = counts(dtype, shape=(130, 77))
        block[3, 5] = -0.0 if block.dtype.kind == "f" else 0
        got = dense_to_csr(block)
        want = sparse.csr_matrix(block.astype(np.float32) if dtype == "float16" else block)
        assert got.dtype == want.dtype
        assert got.has_canonical_format
        np.testing.assert_array_equal(got.indptr, want.indptr)
        np.testing.assert_array_equal(got.indices, want.indices)
        np.testing.assert_array_equal(got.data, want.data)


def test_cli_converts_zarr_and_refuses_pairs_without_loom(files, tmp_path, capsys):
    assert main(["convert", str(files["zarr"]), str(tmp_path / "z.loom")]) == 0
    assert (
        capsys.readouterr().out
        == f"{files['zarr']} -> {tmp_path / 'z.loom'} (loompy convention): 300 cells × 90 genes\n"
    )
    assert main(["convert", str(tmp_path / "z.loom"), str(tmp_path / "z.zarr"), "-q"]) == 0
    assert main(["convert", str(tmp_path / "z.loom"), str(tmp_path / "z.zarr"), "-q"]) == 2
    assert "exists; pass --force" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "z.loom"), str(tmp_path / "z.zarr"), "-q", "--force"]) == 0
    assert_adata_equal(ad.read_h5ad(files["h5ad"]), ad.read_zarr(tmp_path / "z.zarr"), exact=True)
    assert main(["convert", str(files["h5ad"]), str(tmp_path / "x.zarr")]) == 2
    assert "neither file is .loom" in capsys.readouterr().err
    assert not (tmp_path / "x.zarr").exists()


def test_convert_does_not_import_scanpy_and_scanpy_still_gets_the_functions(files, tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    code = (
        "import sys\n"
        "from scanpy_loomio.cli import main\n"
        f"assert main(['convert', {str(files['h5ad'])!r}, {str(tmp_path / 'a.loom')!r}, '-q']) == 0\n"
        f"assert main(['convert', {str(tmp_path / 'a.loom')!r}, {str(tmp_path / 'a.h5ad')!r}, '-q']) == 0\n"
        "assert 'scanpy' not in sys.modules, 'convert imported scanpy'\n"
        "import scanpy as sc, scanpy_loomio\n"
        "assert sc.read_loom_full is scanpy_loomio.read_loom_full\n"
        "assert sc.write_loom_full is scanpy_loomio.write_loom_full\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"


def test_h5ad_graphs_are_written_from_disk_a_block_at_a_time(tmp_path, monkeypatch):
    """A kNN graph of many cells is not read whole: the conversion needs less memory than the graph holds."""
    monkeypatch.setattr(graphs, "GRAPH_BLOCK_EDGES", 2**14)
    n_obs, k = 40_000, 30
    knn = knn_graph(n_obs, k, RNG)
    adata = ad.AnnData(sparse.random(n_obs, 20, density=0.01, format="csr", dtype=np.float32, random_state=0))
    adata.obsp["distances"] = knn
    adata.obsp["connectivities"] = knn.T.tocsc()  # a CSC graph too, stored column by column
    adata.write_h5ad(tmp_path / "knn.h5ad")
    peak = _traced_peak(tmp_path / "knn.h5ad", tmp_path / "knn.loom")
    assert peak < knn.data.nbytes + knn.indices.nbytes, peak  # one graph's arrays in memory would exceed it
    back = read_loom_full(tmp_path / "knn.loom")
    assert_adata_equal(ad.read_h5ad(tmp_path / "knn.h5ad"), back, exact=True)
    with h5py.File(tmp_path / "knn.loom", "r") as f:
        assert sorted(f["col_graphs"]) == ["connectivities", "distances"]  # loom graphs, not kept aside


@pytest.mark.parametrize("kind", ["h5ad", "zarr"])
def test_loom_graphs_go_to_anndata_files_in_blocks_as_read_whole(tmp_path, monkeypatch, kind):
    """Every kind of graph, written in many blocks: the same as reading the loom file and writing it."""
    monkeypatch.setattr(read_graphs, "GRAPH_BLOCK", 2**10)
    n_obs = 3000
    adata = ad.AnnData(sparse.random(n_obs, 30, density=0.05, format="csr", dtype=np.float32, random_state=0))
    adata.obsp["knn"] = knn_graph(n_obs, 15, RNG)
    adata.obsp["csc"] = knn_graph(n_obs, 4, RNG).tocsc()
    hub = sparse.lil_matrix((n_obs, n_obs), dtype=np.float64)
    hub[5, :] = RNG.random(n_obs)  # one cell with more edges than a block
    adata.obsp["hub"] = sparse.csr_array(hub.tocsr())
    adata.obsp["counts"] = (knn_graph(n_obs, 2, RNG) * 10).astype(np.int32)
    adata.obsp["huge"] = (knn_graph(n_obs, 2, RNG) * 1e17).astype(np.int64)  # not exact as float: kept aside
    adata.obsp["empty"] = sparse.csr_matrix((n_obs, n_obs), dtype=np.float32)
    adata.varp["genes"] = sparse.random(30, 30, density=0.2, format="csr", random_state=3)
    loom = tmp_path / "graphs.loom"
    write_loom_full(loom, adata, progress=False)
    with h5py.File(loom, "r+") as f:  # another tool's graphs, untagged: integer weights, in and out of order
        coo = knn_graph(n_obs, 3, RNG).tocoo()
        for name, order in (("sorted", np.arange(coo.nnz)), ("shuffled", RNG.permutation(coo.nnz))):
            g = f["col_graphs"].create_group(name)
            g["a"], g["b"] = coo.row[order].astype(np.int64), coo.col[order].astype(np.int64)
            g["w"] = (coo.data[order] * 100).astype(np.int64)
    convert_file(loom, tmp_path / f"out.{kind}")
    expected = old_loom_to_h5ad(loom, tmp_path / "expected.h5ad")
    back = ad.read_h5ad(tmp_path / "out.h5ad") if kind == "h5ad" else ad.read_zarr(tmp_path / "out.zarr")
    assert_adata_equal(expected, back, exact=True)
    assert set(back.obsp) == {"knn", "csc", "hub", "counts", "huge", "empty", "sorted", "shuffled"}
    for key in back.obsp:
        assert type(back.obsp[key]) is type(expected.obsp[key]), key
    assert back.obsp["csc"].format == "csc" and back.obsp["counts"].dtype == np.int32


def test_loom_graphs_are_not_held_whole_when_converting(tmp_path, monkeypatch):
    monkeypatch.setattr(read_graphs, "GRAPH_BLOCK", 2**14)
    n_obs = 40_000
    knn = knn_graph(n_obs, 30, RNG)
    adata = ad.AnnData(sparse.random(n_obs, 20, density=0.01, format="csr", dtype=np.float32, random_state=0))
    adata.obsp["distances"] = knn
    write_loom_full(tmp_path / "knn.loom", adata, progress=False)
    peak = _traced_peak(tmp_path / "knn.loom", tmp_path / "knn.h5ad")
    assert peak < knn.data.nbytes + knn.indices.nbytes, peak  # the graph's arrays in memory would exceed it
    assert_adata_equal(read_loom_full(tmp_path / "knn.loom"), ad.read_h5ad(tmp_path / "knn.h5ad"), exact=True)


def test_h5ad_graphs_of_integers_checked_a_block_at_a_time(tmp_path, monkeypatch):
    """Integer weights read from disk in blocks: exact as float ones become loom graphs, the others are kept aside."""
    monkeypatch.setattr(graphs, "GRAPH_BLOCK_EDGES", 50)
    adata = ad.AnnData(sparse.random(500, 20, density=0.05, format="csr", dtype=np.float32, random_state=0))
    adata.obsp["counts"] = (knn_graph(500, 6, RNG) * 100).astype(np.int32)
    huge = (knn_graph(500, 6, RNG) * 100).astype(np.int64)
    huge.data[-1] = 2**60 + 1  # only the last block holds a weight float64 cannot hold
    adata.obsp["huge"] = huge
    adata.write_h5ad(tmp_path / "ints.h5ad")
    convert_file(tmp_path / "ints.h5ad", tmp_path / "ints.loom")
    assert_adata_equal(ad.read_h5ad(tmp_path / "ints.h5ad"), read_loom_full(tmp_path / "ints.loom"), exact=True)
    with h5py.File(tmp_path / "ints.loom", "r") as f:
        assert list(f["col_graphs"]) == ["counts"]


SCOPE_FILES = [
    REPO.parent / "shared/fixtures/tools/pyscenic_export2loom.loom",
    REPO.parent / "shared/fixtures/real/scopeloomr_2018_example.loom",
]


@pytest.mark.parametrize("path", SCOPE_FILES, ids=lambda p: p.name)
@pytest.mark.parametrize("kind", ["h5ad", "zarr"])
def test_scope_metadata_goes_to_anndata_files_as_its_json_text_and_back(tmp_path, path, kind):
    import json

    if not path.exists():
        pytest.skip(f"{path} not found (../shared beside the repo)")
    target = tmp_path / f"scope.{kind}"
    with pytest.warns(UserWarning, match=r"uns \['MetaData'\] hold lists of records"):
        convert_file(path, target)
    original = read_loom_full(path)
    back = ad.read_h5ad(target) if kind == "h5ad" else ad.read_zarr(target)
    assert json.loads(back.uns["MetaData"]) == original.uns["MetaData"]
    in_memory = original.copy()  # what writing the read file gives, MetaData as its text
    in_memory.uns["MetaData"] = back.uns["MetaData"]
    if kind == "h5ad":
        in_memory.write_h5ad(tmp_path / "expected.h5ad")
        expected = ad.read_h5ad(tmp_path / "expected.h5ad")
    else:
        in_memory.write_zarr(tmp_path / "expected.zarr")
        expected = ad.read_zarr(tmp_path / "expected.zarr")
    assert_adata_equal(expected, back, exact=True)
    # to a SCope loom file again: the same JSON, and the embeddings under the ids it gives them
    convert_file(target, tmp_path / "again.loom", convention="scope")
    with h5py.File(tmp_path / "again.loom", "r") as f:
        assert json.loads(f["attrs/MetaData"][()]) == original.uns["MetaData"]
        ids = {e["name"]: str(e["id"]) for e in original.uns["MetaData"]["embeddings"]}
        fields = f["col_attrs/Embeddings_X"].dtype.names
    assert set(fields) <= set(ids.values())
    again = read_loom_full(tmp_path / "again.loom")
    for key in original.obsm:
        if isinstance(original.obsm[key], np.ndarray):
            np.testing.assert_array_equal(again.obsm[key], original.obsm[key])
