"""Tools' own loom files (``../shared/fixtures/tools``) come back with scanpy's types and names.

Each file is checked against its ``.truth.json``: what the tool's own object held before it wrote the file.
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import assert_same_as_h5ad

from scanpy_loomio import LoomReadWarning, read_loom_full, write_loom_full

TOOLS = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "tools"
TRUTHS = sorted(p.name.removesuffix(".truth.json") for p in TOOLS.glob("*.truth.json")) if TOOLS.is_dir() else []
pytestmark = pytest.mark.skipif(not TRUTHS, reason=f"tool fixtures not found at {TOOLS} (../shared beside the repo)")


def truth(name: str) -> dict:
    return json.loads((TOOLS / f"{name}.truth.json").read_text())


def read(name: str, tmp_path: Path):
    target = tmp_path / f"{name}.loom"
    shutil.copyfile(TOOLS / f"{name}.loom", target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LoomReadWarning)
        return read_loom_full(target)


def as_r_text(values: pd.Series) -> list[str]:
    """Values printed the way the truth JSON has them (R's ``as.character``)."""
    if values.dtype == bool:
        return ["TRUE" if v else "FALSE" for v in values]
    if pd.api.types.is_float_dtype(values.dtype):
        return [repr(float(v)).removesuffix(".0") for v in values]
    return [str(v) for v in values]


def check_columns(frame: pd.DataFrame, classes: dict[str, str], head: dict[str, list[str]]) -> None:
    for column, r_class in classes.items():
        assert column in frame.columns, column
        dtype = frame[column].dtype
        if r_class == "factor":
            assert isinstance(dtype, pd.CategoricalDtype), (column, dtype)
            values = frame[column].astype(str)
        elif r_class == "logical":
            assert pd.api.types.is_bool_dtype(dtype), (column, dtype)
            values = frame[column]
        elif r_class == "integer":
            assert pd.api.types.is_integer_dtype(dtype), (column, dtype)
            values = frame[column]
        elif r_class == "numeric":
            assert pd.api.types.is_numeric_dtype(dtype), (column, dtype)
            values = frame[column]
        else:
            assert pd.api.types.is_string_dtype(dtype) and not isinstance(dtype, pd.CategoricalDtype), (column, dtype)
            values = frame[column]
        expected = head[column]
        if r_class == "numeric":
            np.testing.assert_allclose(values.iloc[: len(expected)].astype(float), [float(v) for v in expected])
        else:
            assert as_r_text(values.iloc[: len(expected)]) == expected, column


def test_every_truth_file_has_a_check():
    assert set(TRUTHS) == {"seuratdisk_rich", "loomexperiment_rich", "pyscenic_export2loom"}


def test_seuratdisk_factors_are_categoricals(tmp_path):
    t, adata = truth("seuratdisk_rich"), read("seuratdisk_rich", tmp_path)
    assert list(adata.obs_names) == t["cells"] and list(adata.var_names) == t["genes"]
    # SeuratDisk writes logicals as plain int32 without a marker: only factors can be told apart
    classes = {k: v for k, v in t["meta_data_classes"].items() if v != "logical"}
    check_columns(adata.obs, classes, t["meta_data_head"])
    assert list(adata.obs["cluster"].cat.categories) == ["A", "B", "C"]
    for graph, info in t["graphs"].items():
        assert adata.obsp[graph].shape == tuple(info["dim"]) and adata.obsp[graph].nnz == info["nnz"]


def test_loomexperiment_markers_restore_types(tmp_path):
    t, adata = truth("loomexperiment_rich"), read("loomexperiment_rich", tmp_path)
    assert list(adata.obs_names) == t["cells"] and list(adata.var_names) == t["genes"]
    check_columns(adata.obs, t["colData_classes"], t["colData_head"])
    assert set(adata.var.columns) == set(t["rowData_classes"])
    # reductions only: no factor flags, no *_colnames leftovers
    assert {key: list(value.shape) for key, value in adata.obsm.items()} == {
        f"X_{name}": shape for name, shape in t["reducedDims"].items()
    }
    np.testing.assert_allclose(adata.obsm["X_PCA"][0], t["pca_first_row"])
    np.testing.assert_allclose(adata.obsm["X_UMAP"][0], t["umap_first_row"])
    assert adata.uns["loom_embedding_components"]["X_PCA"] == [f"PC_{i}" for i in range(1, 6)]
    assert adata.obsp["knn"].nnz == t["colGraphs"]["knn"]["n_edges"]


def test_pyscenic_clusterings_and_embeddings(tmp_path):
    t, adata = truth("pyscenic_export2loom"), read("pyscenic_export2loom", tmp_path)
    assert list(adata.obs_names) == t["cells"] and list(adata.var_names) == t["genes"]
    [clustering] = [c for c in adata.obs if isinstance(adata.obs[c].dtype, pd.CategoricalDtype)]
    assert list(adata.obs[clustering].cat.categories) == t["clusters"]
    assert not {"ClusterID", "Clusterings", "Embedding", "UMAP", "tSNE"} & set(adata.obsm)
    np.testing.assert_allclose(adata.obsm["X_umap"][0], t["umap_first_row"])
    np.testing.assert_allclose(adata.obsm["X_tsne"][0], t["tsne_first_row"])
    assert list(adata.obsm["RegulonsAUC"].columns) == t["regulons"]
    assert list(adata.varm["Regulons"].columns) == t["regulons"]
    assert adata.uns["loom_embedding_names"] == {"X_umap": "UMAP", "X_tsne": "tSNE"}


@pytest.mark.parametrize("name", TRUTHS)
def test_tool_files_round_trip_after_one_read(name, tmp_path):
    first = read(name, tmp_path)
    write_loom_full(tmp_path / "again.loom", first)
    second = read_loom_full(tmp_path / "again.loom")
    assert_same_as_h5ad(first, second)
