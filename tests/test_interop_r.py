"""The real R readers (SeuratDisk, LoomExperiment, loomR, SCopeLoomR) on files written in each convention.

Each reader runs in a subprocess through the scripts in ``../shared/clients/readers`` (installed by
``tests/interop/setup_r_clients.sh``), which print what the R object holds as JSON. Without R and the readers these
tests skip with the reason; with ``SCANPY_LOOMIO_REQUIRE_R=1`` (as in CI) they fail instead.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import warnings
from functools import cache
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from helpers import assert_same_as_h5ad
from scipy import sparse

from scanpy_loomio import LoomReadWarning, read_loom_full, write_loom_full

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
READERS = SHARED / "clients" / "readers"
TOOLS = SHARED / "fixtures" / "tools"
R_PACKAGES = ("SeuratDisk", "Seurat", "LoomExperiment", "loomR", "SCopeLoomR", "jsonlite")
N_OBS, N_VARS = 30, 12

# each R reader starts R and loads Seurat or Bioconductor: minutes in all, so the pre-release leg leaves them out
pytestmark = [pytest.mark.interop, pytest.mark.slow]


@cache
def _missing_r_stack() -> str | None:
    """Why the R readers cannot run here, or ``None`` when they can."""
    if shutil.which("Rscript") is None:
        return "Rscript is not installed"
    if not READERS.is_dir():
        return f"the reader scripts are not at {READERS} (../shared beside the repository)"
    probe = "for (p in commandArgs(TRUE)) if (!requireNamespace(p, quietly = TRUE)) cat(p, '')"
    done = subprocess.run(
        ["Rscript", "-e", probe, *R_PACKAGES], capture_output=True, text=True, timeout=300, check=False
    )
    missing = done.stdout.split()
    if done.returncode != 0 or missing:
        return f"R packages missing: {missing or done.stderr.strip()[-200:]}"
    return None


@pytest.fixture(scope="module")
def r_stack() -> None:
    """Skips (or fails, with SCANPY_LOOMIO_REQUIRE_R=1) when R or the readers are missing."""
    why = _missing_r_stack()
    if why is None:
        return
    why += "; install them with tests/interop/setup_r_clients.sh (as root)"
    if os.environ.get("SCANPY_LOOMIO_REQUIRE_R") == "1":
        pytest.fail(f"SCANPY_LOOMIO_REQUIRE_R=1 but {why}")
    pytest.skip(why)


def run_r(script: str, *args: str | Path) -> dict:
    """Run one reader script; its JSON output."""
    done = subprocess.run(
        ["Rscript", str(READERS / script), *map(str, args)], capture_output=True, text=True, timeout=600, check=False
    )
    start = done.stdout.find("{")
    assert start >= 0, f"{script} printed no JSON (exit {done.returncode}): {done.stderr[-2000:]}"
    return json.loads(done.stdout[start:])


def run_r_code(code: str, *args: str | Path) -> dict:
    done = subprocess.run(
        ["Rscript", "-e", code, *map(str, args)], capture_output=True, text=True, timeout=600, check=False
    )
    start = done.stdout.find("{")
    assert start >= 0, f"R printed no JSON (exit {done.returncode}): {done.stderr[-2000:]}"
    return json.loads(done.stdout[start:])


def rich() -> ad.AnnData:
    rng = np.random.default_rng(13)
    adata = ad.AnnData(X=sparse.random(N_OBS, N_VARS, density=0.3, format="csr", random_state=13, dtype=np.float32))
    adata.obs_names = [f"cell{i:03d}" for i in range(N_OBS)]
    adata.var_names = [f"GENE{i:02d}" for i in range(N_VARS)]
    # levels deliberately not in alphabetical order: R must get them in this order where its writer keeps it
    adata.obs["cluster"] = pd.Categorical(rng.choice(["T", "B", "NK"], N_OBS), categories=["T", "B", "NK"])
    adata.obs["is_A"] = rng.random(N_OBS) > 0.5
    adata.obs["n_genes"] = rng.integers(1, 100, N_OBS)
    adata.obs["score"] = rng.random(N_OBS)
    adata.obs["label"] = [f"l{i}" for i in range(N_OBS)]
    adata.obs["maybe"] = pd.array([True, None, False] * (N_OBS // 3), dtype="boolean")
    adata.obs["count"] = pd.array([1, None, 3] * (N_OBS // 3), dtype="Int64")
    adata.var["highly_variable"] = rng.random(N_VARS) > 0.5
    adata.obsm["X_umap"] = rng.random((N_OBS, 2))
    adata.obsm["X_pca"] = rng.random((N_OBS, 5)).astype(np.float32)
    adata.obsp["connectivities"] = sparse.random(N_OBS, N_OBS, density=0.1, format="csr", random_state=1)
    return adata


@pytest.fixture(scope="module")
def written(tmp_path_factory, r_stack) -> tuple[ad.AnnData, dict[str, Path]]:
    """The rich AnnData written in every convention the R readers are for; each reads back exactly."""
    adata = rich()
    folder = tmp_path_factory.mktemp("r")
    paths = {}
    for convention in ("loompy", "seuratdisk", "loomexperiment", "loomr", "scope"):
        paths[convention] = folder / f"{convention}.loom"
        write_loom_full(paths[convention], adata, convention=convention)
        assert_same_as_h5ad(adata, read_loom_full(paths[convention]))
    return adata, paths


def listed(value: object) -> list:
    """A JSON value R printed with ``auto_unbox``: one-element vectors come as scalars."""
    return value if isinstance(value, list) else [value]


def no_raw(classes: dict[str, str]) -> None:
    assert "raw" not in classes.values(), classes


# -- R types going out -------------------------------------------------------------------------------------------


def test_seuratdisk_gets_factors_with_levels_in_order(written):
    adata, paths = written
    out = run_r("r_metadata_check.R", "seuratdisk", paths["seuratdisk"])
    assert out["ok"], out
    classes = out["meta_data_classes"]
    assert classes["cluster"] == "factor"
    assert out["watched"]["cluster"]["levels"] == list(adata.obs["cluster"].cat.categories)
    assert out["watched"]["cluster"]["head"] == list(adata.obs["cluster"].astype(str)[:4])
    assert classes["label"] == "character" and classes["score"] == "numeric"
    no_raw(classes)
    assert "connectivities" in out["graphs"]


def test_loomexperiment_gets_factors_logicals_and_reduced_dims(written):
    adata, paths = written
    out = run_r("r_metadata_check.R", "loomexperiment", paths["loomexperiment"])
    assert out["ok"], out
    classes = out["colData_classes"]
    assert classes["cluster"] == "factor" and classes["is_A"] == "logical"
    assert set(out["watched"]["cluster"]["levels"]) == set(adata.obs["cluster"].cat.categories)
    assert out["watched"]["is_A"]["head"] == ["TRUE" if v else "FALSE" for v in adata.obs["is_A"][:4]]
    assert out["rowData_classes"]["highly_variable"] == "logical"
    no_raw(classes)
    dims = {name.lower(): shape for name, shape in out["reducedDim_dims"].items()}
    assert dims == {"umap": [N_OBS, 2], "pca": [N_OBS, 5]}
    np.testing.assert_allclose(
        out["reducedDim_first_row"]["umap"], adata.obsm["X_umap"][0, :2], atol=1e-4
    )  # printed to 4 digits
    assert out["colGraphs"] == "connectivities" or "connectivities" in out["colGraphs"]


@pytest.mark.parametrize("reader", ["seuratdisk", "loomexperiment"])
def test_default_output_opens_in_readers_that_break_on_2d_attributes(written, reader):
    _, paths = written
    out = run_r("r_metadata_check.R", reader, paths["loompy"])
    assert out["ok"], out
    classes = out["meta_data_classes"] if reader == "seuratdisk" else out["colData_classes"]
    no_raw(classes)
    assert classes["score"] == "numeric"


def test_default_output_in_seuratdisk_and_scopeloomr_by_name(written):
    adata, paths = written
    seurat = run_r("seuratdisk_reads.R", paths["loompy"])
    assert seurat["ok"], seurat
    assert seurat["cells"] == list(adata.obs_names[:3]) and seurat["genes"] == list(adata.var_names[:3])
    scope = run_r("scopeloomr_reads.R", paths["loompy"])
    assert scope["ok"], scope
    assert scope["cells"] == list(adata.obs_names[:3])
    assert "cluster" in scope["cell_annotation_columns"]


def test_loomr_output_has_no_raw_columns(written):
    _, paths = written
    out = run_r("r_metadata_check.R", "loomr", paths["loomr"])
    assert out["ok"], out
    assert out["validates"], out.get("validation_error")
    no_raw(out["attribute_df_classes"])
    assert out["attribute_df_classes"]["is_A"] == "integer"


# -- SCope's layout --------------------------------------------------------------------------------------------------

SCOPE_CHECK = """
suppressPackageStartupMessages({library(SCopeLoomR); library(jsonlite)})
loom <- open_loom(commandArgs(TRUE)[1], mode = "r")
cl <- get_clusterings(loom = loom)
emb <- get_embeddings(loom = loom)
ann <- get_cell_annotation(loom = loom)
md <- get_global_meta_data(loom = loom)
cat(toJSON(list(clusterings = colnames(cl), first = cl[1:4, 1], embeddings = lapply(emb, dim),
                umap_first = unname(emb[[1]][1, ]), annotation = colnames(ann),
                clustering_names = vapply(md$clusterings, function(c) c$name, ""),
                cluster_labels = vapply(md$clusterings[[1]]$clusters, function(c) as.character(c$description), "")),
           auto_unbox = TRUE, digits = NA))
"""


def test_scope_layout_in_scopeloomr(written):
    adata, paths = written
    out = run_r_code(SCOPE_CHECK, paths["scope"])
    assert listed(out["clustering_names"]) == ["cluster"]
    assert out["cluster_labels"] == list(adata.obs["cluster"].cat.categories)
    assert out["first"] == list(adata.obs["cluster"].cat.codes[:4])
    assert out["embeddings"] == {"umap": [N_OBS, 2]}
    np.testing.assert_allclose(out["umap_first"], adata.obsm["X_umap"][0])
    assert {"cluster", "score", "label"} <= set(out["annotation"])


# -- tools' own files back -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "reader", "classes_key"),
    [
        ("seuratdisk_rich", "seuratdisk", "meta_data_classes"),
        ("loomexperiment_rich", "loomexperiment", "colData_classes"),
    ],
)
def test_tools_own_files_read_with_the_types_the_tool_reads(tmp_path, r_stack, name, reader, classes_key):
    """Whatever the tool's own reader gets as a factor or logical, read_loom_full gets as a categorical or bool."""
    if not (TOOLS / f"{name}.loom").is_file():
        pytest.skip(f"tool fixture {name}.loom not found at {TOOLS}")
    path = tmp_path / f"{name}.loom"
    shutil.copyfile(TOOLS / f"{name}.loom", path)
    out = run_r("r_metadata_check.R", reader, path)
    assert out["ok"], out
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LoomReadWarning)
        adata = read_loom_full(path)
    for column, r_class in out[classes_key].items():
        if column not in adata.obs:
            continue  # columns R derives itself (nCount_RNA, orig.ident from Seurat)
        dtype = adata.obs[column].dtype
        if r_class == "factor":
            assert isinstance(dtype, pd.CategoricalDtype), (column, dtype)
        elif r_class == "logical":
            assert pd.api.types.is_bool_dtype(dtype), (column, dtype)
        else:
            assert not isinstance(dtype, pd.CategoricalDtype) and not pd.api.types.is_bool_dtype(dtype), (column, dtype)
    for column, seen in out["watched"].items():
        if seen["levels"] is not None and column in adata.obs:
            assert sorted(adata.obs[column].cat.categories) == sorted(seen["levels"]), column
