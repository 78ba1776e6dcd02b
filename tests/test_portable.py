"""The ``portable`` convention: one file that every reader opens, with nothing stored twice.

The first tests need nothing but this package, h5py, loompy and anndata: the names are one HDF5 object under each
name a reader looks for, embeddings are stored once, the file reads back exactly and loompy's validator accepts it.
The others run each real reader on a portable file: velocyto.py and scVelo through the clients' environment
(``tests/interop/setup_clients.sh``), pySCENIC through its own (``tests/interop/setup_pyscenic.sh``), and the R readers
(SeuratDisk, LoomExperiment, loomR, SCopeLoomR, and velocyto.R's reading code) through the scripts that print what
the R object holds. Without a reader they skip and say how to install it; in CI (where the variables below are set)
they fail instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import warnings
from functools import cache
from pathlib import Path
from typing import Any

import anndata
import h5py
import loompy
import numpy as np
import pandas as pd
import pytest
from anndata import AnnData
from helpers import assert_same_as_h5ad
from scipy import sparse
from test_interop import CLIENT_MISSING, CLIENT_SCRIPT, run_client
from test_interop_r import listed, no_raw, run_r
from test_interop_r import r_stack as r_stack  # a fixture: the R readers are there, else skip (or fail in CI)

from scanpy_loomio import LoomReadWarning, read_loom_full, update_loom_full, validate_loom, write_loom_full
from scanpy_loomio.conventions import get_convention

REPO = Path(__file__).resolve().parents[1]
VELOCYTO_R = Path(__file__).resolve().parent / "interop" / "velocyto_r_reads.R"
PYSCENIC_ENV = "SCANPY_LOOMIO_PYSCENIC_PYTHON"
N_OBS, N_VARS = 30, 12
LAYERS = ("spliced", "unspliced", "ambiguous")
PORTABLE = get_convention("portable")


def portable_adata() -> AnnData:
    """Counts with velocity layers, typed columns on both axes, embeddings on both axes, a graph and ``uns``."""
    rng = np.random.default_rng(2)
    counts = {
        name: sparse.csr_matrix(rng.poisson(lam, (N_OBS, N_VARS)).astype(np.uint32))
        for name, lam in zip(LAYERS, (4.0, 2.0, 0.5), strict=True)
    }
    adata = AnnData(X=sum(counts.values()).astype(np.float32), layers=counts)
    adata.obs_names = [f"cell{i:03d}" for i in range(N_OBS)]
    adata.var_names = [f"GENE{i:02d}" for i in range(N_VARS)]
    # levels not in alphabetical order
    adata.obs["cluster"] = pd.Categorical(rng.choice(["T", "B", "NK"], N_OBS), categories=["T", "B", "NK"])
    adata.obs["is_A"] = rng.random(N_OBS) > 0.5
    adata.obs["maybe"] = pd.array([True, None, False] * (N_OBS // 3), dtype="boolean")
    adata.obs["count"] = pd.array([1, None, 3] * (N_OBS // 3), dtype="Int64")
    adata.obs["n_genes"] = rng.integers(1, 100, N_OBS)
    adata.obs["score"] = rng.random(N_OBS)
    adata.obs["label"] = [f"l{i}" for i in range(N_OBS)]
    adata.obs["note"] = pd.array(["x", None] * (N_OBS // 2), dtype="string")
    adata.var["gene_ids"] = [f"ENSG{i:011d}" for i in range(N_VARS)]
    adata.var["highly_variable"] = rng.random(N_VARS) > 0.5
    adata.obsm["X_umap"] = rng.normal(size=(N_OBS, 2))
    adata.obsm["X_pca"] = rng.normal(size=(N_OBS, 5)).astype(np.float32)
    adata.obsm["X_draw_graph_fa"] = rng.normal(size=(N_OBS, 2))
    adata.varm["PCs"] = rng.normal(size=(N_VARS, 5))
    # every cell has neighbours on both sides (SeuratDisk sizes a graph by its largest index)
    ring = np.arange(N_OBS)
    rows, cols = np.r_[ring, ring], np.r_[(ring + 1) % N_OBS, (ring - 1) % N_OBS]
    adata.obsp["connectivities"] = sparse.csr_matrix((rng.random(2 * N_OBS), (rows, cols)), shape=(N_OBS, N_OBS))
    adata.uns["title"] = "portable"
    adata.uns["params"] = {"n_neighbors": 2, "method": "umap"}
    return adata


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> tuple[AnnData, Path]:
    adata = portable_adata()
    path = tmp_path_factory.mktemp("portable") / "portable.loom"
    write_loom_full(path, adata, convention="portable")
    return adata, path


def stored_bytes(path: Path, *, outside: str = "attrs") -> dict[str, int]:
    """Bytes of data stored in the file by dataset, each HDF5 object under one name, global attributes left out."""
    sizes: dict[str, int] = {}

    def add(name: str, obj: Any) -> None:
        # visititems visits each object once, however many names (hard links) it has
        # a virtual dataset stores nothing itself: its source is counted
        if isinstance(obj, h5py.Dataset) and not obj.is_virtual and not name.startswith(f"{outside}/"):
            sizes[name] = obj.id.get_storage_size()

    with h5py.File(path, "r") as file:
        file.visititems(add)
    return sizes


# -- the file itself -------------------------------------------------------------------------------------------------


def test_round_trip_is_exact(written):
    adata, path = written
    assert_same_as_h5ad(adata, read_loom_full(path))


def test_pbmc68k_reduced_round_trip_is_exact(tmp_path):
    import scanpy as sc

    adata = sc.datasets.pbmc68k_reduced()
    adata.varm["PCs"] = np.nan_to_num(adata.varm["PCs"], nan=-1.0)  # NaN != NaN would fail any exact check
    write_loom_full(tmp_path / "pbmc.loom", adata, convention="portable")
    assert_same_as_h5ad(adata, read_loom_full(tmp_path / "pbmc.loom"))


def test_edge_cases_round_trip_exactly(tmp_path):
    """Columns named as the other name attributes, embeddings of one and of 3-D components, names LoomExperiment
    would split, and no cells at all."""
    adata = AnnData(X=np.ones((4, 3), np.float32))
    adata.obs_names, adata.var_names = list("abcd"), list("xyz")
    adata.obs["colnames"] = list("pqrs")
    adata.obs["cell_names"] = list("abcd")
    adata.obsm["X_3d"] = np.arange(24.0).reshape(4, 3, 2)
    adata.obsm["X_one"] = np.arange(4.0).reshape(4, 1)
    adata.obsm["X_a_b"] = np.ones((4, 2))
    adata.obsm["X_a.b"] = np.zeros((4, 2))
    path = tmp_path / "4.loom"
    write_loom_full(path, adata, convention="portable")
    assert_same_as_h5ad(adata, read_loom_full(path))
    with h5py.File(path, "r") as f:
        assert sorted(f["scanpy_loomio"]) == [
            "reducedDims_3d",
            "reducedDims_a.b",
            "reducedDims_a.b.2",
            "reducedDims_one",
        ]
        assert f["col_attrs/colnames"] == f["col_attrs/CellID"] != f["col_attrs/obs_colnames"]


def test_no_cells_round_trip_exactly(tmp_path):
    adata = AnnData(X=np.ones((4, 3), np.float32))
    adata.obs_names, adata.var_names = list("abcd"), list("xyz")
    adata.obs["colnames"] = list("pqrs")
    adata.obsm["X_3d"] = np.arange(24.0).reshape(4, 3, 2)
    empty = adata[:0].copy()
    write_loom_full(tmp_path / "0.loom", empty, convention="portable")
    assert_same_as_h5ad(empty, read_loom_full(tmp_path / "0.loom"))


def test_every_name_attribute_is_the_same_object(written):
    adata, path = written
    with h5py.File(path, "r") as f:
        for group, names, values in (
            ("col_attrs", ("CellID", "colnames", "cell_names"), adata.obs_names),
            ("row_attrs", ("Gene", "rownames", "gene_names"), adata.var_names),
        ):
            first = f[group][names[0]]
            assert list(first.asstr()[()]) == list(values)
            for name in names[1:]:
                assert f[group][name] == first, (group, name)  # the same HDF5 object, not an equal copy
            visited: list[str] = []
            f[group].visit(visited.append)  # visits each object once
            assert len(set(names) & set(visited)) == 1


def test_embeddings_are_stored_once_and_read_as_columns(written):
    adata, path = written
    with h5py.File(path, "r") as f:
        listed_globals = {f["attrs"][k].asstr()[()] for k in f["attrs"] if k.startswith("ReducedDimsName")}
        assert listed_globals == {
            "/scanpy_loomio/reducedDims_umap",
            "/scanpy_loomio/reducedDims_pca",
            "/scanpy_loomio/reducedDims_draw.graph.fa",  # LoomExperiment splits the path at "_"
        }
        for key, name in (("X_umap", "umap"), ("X_pca", "pca")):
            store = f[f"scanpy_loomio/reducedDims_{name}"]
            assert not store.is_virtual
            np.testing.assert_array_equal(store[()], adata.obsm[key])
            for i in range(adata.obsm[key].shape[1]):
                column = f[f"col_attrs/{key}_{i + 1}"]
                assert column.is_virtual and column.ndim == 1
                (source,) = column.virtual_sources()
                assert (source.file_name, source.dset_name) == (".", store.name)
                np.testing.assert_array_equal(column[()], adata.obsm[key][:, i])
        # varm: no reader wants 2-D gene attributes here, so plain columns
        assert not f["row_attrs/PCs_1"].is_virtual


def test_nothing_is_stored_twice(written, tmp_path):
    """The portable file stores exactly the bytes the default output stores (which has one name attribute per axis
    and the embeddings as plain columns), though it has three name attributes per axis and every embedding twice."""
    adata, _ = written
    path, default = tmp_path / "portable.loom", tmp_path / "default.loom"  # fresh files: other tests change written
    write_loom_full(path, adata, convention="portable")
    write_loom_full(default, adata)
    portable, plain = stored_bytes(path), stored_bytes(default)
    # what both files store is stored alike, and what only one of them stores takes the same bytes
    assert {k: v for k, v in portable.items() if k in plain} == {k: v for k, v in plain.items() if k in portable}
    assert sum(portable.values()) == sum(plain.values()), (portable, plain)
    assert path.stat().st_size < default.stat().st_size * 1.1


def test_read_loom_full_reads_no_name_twice(written, tmp_path):
    adata, path = written
    back = read_loom_full(path)
    assert not {"colnames", "cell_names", "CellID"} & set(back.obs.columns)
    assert not {"rownames", "gene_names", "Gene"} & set(back.var.columns)
    # without the record (deleted by another tool) the links are recognized as the names themselves
    stripped = tmp_path / "stripped.loom"
    shutil.copyfile(path, stripped)
    with h5py.File(stripped, "r+") as f:
        del f["attrs/scanpy_loomio"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LoomReadWarning)
        plain = read_loom_full(stripped)
    assert list(plain.obs_names) == list(adata.obs_names)
    assert list(plain.var_names) == list(adata.var_names)
    assert not {"colnames", "cell_names", "CellID"} & set(plain.obs.columns)
    assert not {"rownames", "gene_names", "Gene"} & set(plain.var.columns)
    np.testing.assert_array_equal(plain.obsm["X_umap"], adata.obsm["X_umap"])
    assert list(plain.var["gene_ids"]) == list(adata.var["gene_ids"])


def test_update_keeps_the_layout(written, tmp_path):
    adata, path = written
    target = tmp_path / "updated.loom"
    shutil.copyfile(path, target)
    changed = read_loom_full(target)
    changed.obsm["X_umap"] = changed.obsm["X_umap"] * 2
    update_loom_full(target, changed)
    with h5py.File(target, "r") as f:
        assert f["col_attrs/colnames"] == f["col_attrs/CellID"]
        assert f["col_attrs/X_umap_1"].is_virtual
        np.testing.assert_array_equal(f["scanpy_loomio/reducedDims_umap"][()], adata.obsm["X_umap"] * 2)
    assert_same_as_h5ad(changed, read_loom_full(target))


def test_validate_loom_reports_no_problem(written):
    _, path = written
    assert [p for p in validate_loom(path).problems if p.severity != "info"] == []


# -- Python readers in the test environment --------------------------------------------------------------------------


@pytest.mark.interop
def test_loompy_validator_and_connect(written):
    adata, path = written
    validator = loompy.LoomValidator()
    assert validator.validate(str(path), strictness="speconly"), validator.errors
    with loompy.connect(str(path), "r") as ds:  # validates, as loompy does by default
        assert list(ds.ca.CellID) == list(adata.obs_names) == list(ds.ca.colnames) == list(ds.ca.cell_names)
        assert list(ds.ra.Gene) == list(adata.var_names) == list(ds.ra.rownames) == list(ds.ra.gene_names)
        np.testing.assert_array_equal(ds[:, :], adata.X.T.toarray())
        np.testing.assert_array_equal(ds.layers["unspliced"][:, :], adata.layers["unspliced"].T.toarray())


@pytest.mark.interop
def test_anndata_read_loom(written):
    adata, path = written
    read_loom = getattr(anndata, "io", anndata).read_loom
    mapping = {key: [f"{key}_{i + 1}" for i in range(value.shape[1])] for key, value in adata.obsm.items()}
    back = read_loom(path, X_name="", obsm_mapping=mapping)
    assert list(back.obs_names) == list(adata.obs_names)
    assert list(back.var_names) == list(adata.var_names)
    np.testing.assert_array_equal(back.X.toarray(), adata.X.toarray())
    assert list(back.obs["cluster"]) == list(adata.obs["cluster"].astype(str))  # labels, not codes
    np.testing.assert_array_equal(back.obs["is_A"], adata.obs["is_A"].astype(int))
    for key, value in adata.obsm.items():
        np.testing.assert_array_equal(back.obsm[key], value)
    assert set(back.layers) >= set(LAYERS)


@pytest.mark.interop
def test_velocyto_reads_names_and_layers(written):
    adata, path = written
    seen = run_client("velocyto", [path])[str(path)]
    assert seen["ok"], seen.get("error")
    assert seen["cells"] == list(adata.obs_names)
    assert seen["genes"] == list(adata.var_names)
    for key, layer in zip("SUA", LAYERS, strict=True):
        shape, total = seen[key]
        assert shape == [N_VARS, N_OBS]
        assert total == adata.layers[layer].sum()


@pytest.mark.interop
def test_scvelo_reads_names_and_layers_and_runs(written):
    adata, path = written
    seen = run_client("scvelo", [path])[str(path)]
    assert seen["ok"], seen.get("error")
    assert seen["obs_names"] == list(adata.obs_names)
    assert seen["var_names"] == list(adata.var_names)
    for layer in ("spliced", "unspliced"):
        assert seen["totals"][layer] == adata.layers[layer].sum()
    assert seen["moments"] == ["Ms", "Mu"]


# -- pySCENIC, in its own environment --------------------------------------------------------------------------------


def pyscenic_python() -> tuple[str | None, bool]:
    """pySCENIC's Python, and whether the caller said it is there (then its absence is a failure)."""
    told = os.environ.get(PYSCENIC_ENV)
    if told:
        return told, True
    local = REPO / ".venv-pyscenic" / "bin" / "python"
    return (str(local) if local.exists() else None), False


@cache
def _run_pyscenic(path: str) -> dict[str, Any] | str:
    python, _ = pyscenic_python()
    if python is None or not Path(python).exists():
        return f"no pySCENIC environment ({python or REPO / '.venv-pyscenic'} does not exist)"
    proc = subprocess.run(
        [python, str(CLIENT_SCRIPT), "pyscenic", path], capture_output=True, text=True, timeout=900, check=False
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode == CLIENT_MISSING:
        return f"pyscenic cannot be imported by {python} ({json.loads(lines[-1])['missing']})"
    if proc.returncode != 0 or not lines:
        pytest.fail(f"pyscenic client exited with {proc.returncode}:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])[path]


@pytest.mark.interop
@pytest.mark.slow
def test_pyscenic_loads_the_matrix_and_its_aucell_output_reads_back(written, tmp_path):
    """pySCENIC's loader gets names and values; ``aucell``'s loom output (a copy pySCENIC changes with loompy) still
    reads back as the AnnData, now with the regulon activities."""
    adata, path = written
    copy = tmp_path / "for_pyscenic.loom"
    shutil.copyfile(path, copy)
    seen = _run_pyscenic(str(copy))
    if isinstance(seen, str):
        python, told = pyscenic_python()
        if told:
            pytest.fail(f"{PYSCENIC_ENV}={python} is set, but {seen}")
        pytest.skip(f"{seen}; install it with tests/interop/setup_pyscenic.sh (or set {PYSCENIC_ENV})")
    assert seen["ok"], seen.get("error")
    assert seen["cells"] == list(adata.obs_names)
    assert seen["genes"] == list(adata.var_names)
    assert seen["total"] == pytest.approx(float(adata.X.sum()))
    back = read_loom_full(seen["aucell_loom"])
    assert list(back.obs_names) == list(adata.obs_names)
    assert list(back.obsm["RegulonsAUC"].columns) == seen["regulons"]
    np.testing.assert_array_equal(back.obsm["X_umap"], adata.obsm["X_umap"])
    assert list(back.obs["cluster"]) == list(adata.obs["cluster"])
    assert list(back.obs["cluster"].cat.categories) == list(adata.obs["cluster"].cat.categories)


# -- R readers -------------------------------------------------------------------------------------------------------


def head(values) -> list[str]:
    return [str(v) for v in list(values)[:3]]


@pytest.mark.interop
@pytest.mark.slow
def test_seuratdisk(written, r_stack):
    adata, path = written
    seen = run_r("seuratdisk_reads.R", path)
    assert seen["ok"], seen
    assert seen["cells"] == head(adata.obs_names) and seen["genes"] == head(adata.var_names)
    out = run_r("r_metadata_check.R", "seuratdisk", path)
    assert out["ok"], out
    classes = out["meta_data_classes"]
    no_raw(classes)
    assert classes["cluster"] == "character" and classes["label"] == "character"
    assert classes["is_A"] == "integer" and classes["score"] == "numeric"
    assert out["watched"]["cluster"]["head"] == list(adata.obs["cluster"].astype(str)[:4])
    assert {"X_umap_1", "X_umap_2"} <= set(out["embedding_like_meta_columns"])
    assert "connectivities" in listed(out["graphs"])


@pytest.mark.interop
@pytest.mark.slow
def test_loomexperiment(written, r_stack):
    adata, path = written
    seen = run_r("loomexperiment_reads.R", path)
    assert seen["ok"], seen
    assert seen["cells"] == head(adata.obs_names) and seen["genes"] == head(adata.var_names)
    out = run_r("r_metadata_check.R", "loomexperiment", path)
    assert out["ok"], out
    no_raw(out["colData_classes"])
    no_raw(out["rowData_classes"])
    assert out["colData_classes"]["is_A"] == "logical"
    assert out["rowData_classes"]["highly_variable"] == "logical"
    assert out["colData_classes"]["cluster"] == "character"
    assert out["watched"]["is_A"]["head"] == ["TRUE" if v else "FALSE" for v in adata.obs["is_A"][:4]]
    assert out["reducedDim_dims"] == {"umap": [N_OBS, 2], "pca": [N_OBS, 5], "draw.graph.fa": [N_OBS, 2]}
    np.testing.assert_allclose(out["reducedDim_first_row"]["pca"], adata.obsm["X_pca"][0, :3], atol=1e-4)
    assert out["reducedDim_rownames_head"]["umap"] == head(adata.obs_names)[:2]
    assert "connectivities" in listed(out["colGraphs"])


@pytest.mark.interop
@pytest.mark.slow
def test_loomr_with_skip_validate(written, r_stack):
    """loomR finds its own name attributes; it validates no spec-3 file (the trade-off the convention documents)."""
    adata, path = written
    seen = run_r("loomr_reads.R", path)
    assert seen["ok"], seen
    assert seen["cells"] == head(adata.obs_names) and seen["genes"] == head(adata.var_names)
    assert not seen["validates"] and "groups" in seen["validation_error"]
    out = run_r("r_metadata_check.R", "loomr", path)
    assert out["ok"], out
    assert out["cell_attr"] == "cell_names"
    no_raw(out["attribute_df_classes"])
    assert out["attribute_df_classes"]["cluster"] == "character"


@pytest.mark.interop
@pytest.mark.slow
def test_scopeloomr(written, r_stack):
    adata, path = written
    seen = run_r("scopeloomr_reads.R", path)
    assert seen["ok"], seen
    assert seen["cells"] == head(adata.obs_names) and seen["genes"] == head(adata.var_names)
    assert "cell_annotation_error" not in seen, seen
    assert {"cluster", "is_A", "X_umap_1", "X_umap_2"} <= set(seen["cell_annotation_columns"])


@pytest.mark.interop
@pytest.mark.slow
def test_velocyto_r_reading_code(written, r_stack):
    adata, path = written
    done = subprocess.run(["Rscript", str(VELOCYTO_R), str(path)], capture_output=True, text=True, timeout=600)
    seen = json.loads(done.stdout[done.stdout.find("{") :])
    assert seen["ok"], seen
    assert seen["cells"] == head(adata.obs_names) and seen["genes"] == head(adata.var_names)
    assert (seen["n_genes"], seen["n_cells"]) == (N_VARS, N_OBS)
    assert seen["sums"] == {name: int(adata.layers[name].sum()) for name in LAYERS}
