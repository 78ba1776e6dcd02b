"""loompy, the format's reference implementation, as an independent judge of the files this package writes."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from anndata import AnnData
from helpers import assert_same_as_h5ad
from scipy import sparse

from scanpy_loomio import read_loom_full, write_loom_full

loompy = pytest.importorskip("loompy", reason="loompy is the test oracle; install the 'test' extra")


@pytest.fixture
def adata() -> AnnData:
    rng = np.random.default_rng(1)
    a = AnnData(
        X=sparse.random(30, 20, density=0.3, format="csr", dtype=np.float32, random_state=1),
        obs=pd.DataFrame(
            {
                "louvain": pd.Categorical(rng.choice(["0", "1", "2"], 30)),
                "n_genes": rng.integers(0, 100, 30),
                "is_doublet": rng.random(30) > 0.8,
                "sample": pd.array(rng.choice(["a", "b"], 30), dtype="string"),
            },
            index=[f"cell{i}" for i in range(30)],
        ),
        var=pd.DataFrame({"gene_ids": [f"ENSG{i:03d}" for i in range(20)]}, index=[f"G{i}" for i in range(20)]),
    )
    a.layers["counts"] = a.X.copy()
    a.obsm["X_umap"] = rng.random((30, 2))
    a.obsp["connectivities"] = sparse.random(30, 30, density=0.1, format="csr", random_state=2)
    a.uns["neighbors"] = {"params": {"n_neighbors": 15}}
    return a


def test_loompy_validator_speconly(tmp_path, adata):
    write_loom_full(tmp_path / "a.loom", adata)
    validator = loompy.LoomValidator()
    ok = validator.validate(str(tmp_path / "a.loom"), strictness="speconly")
    assert ok, validator.errors


def test_pbmc_validates(tmp_path):
    write_loom_full(tmp_path / "a.loom", sc.datasets.pbmc68k_reduced())
    validator = loompy.LoomValidator()
    assert validator.validate(str(tmp_path / "a.loom"), strictness="speconly"), validator.errors


def test_loompy_reads_values_where_tools_look(tmp_path, adata):
    write_loom_full(tmp_path / "a.loom", adata)
    with loompy.connect(str(tmp_path / "a.loom"), "r") as ds:  # validation on
        assert ds.shape == (20, 30)
        np.testing.assert_array_equal(ds[:, :], adata.X.toarray().T)
        np.testing.assert_array_equal(ds.layers["counts"][:, :], adata.layers["counts"].toarray().T)
        assert list(ds.ca.CellID) == list(adata.obs_names)
        assert list(ds.ra.Gene) == list(adata.var_names)
        assert list(ds.ra.Accession) == list(adata.var["gene_ids"])
        assert list(ds.ca.louvain) == list(adata.obs["louvain"].astype(str))
        # one 1-D attribute per component, as R readers need
        np.testing.assert_array_equal(ds.ca.X_umap_1, adata.obsm["X_umap"][:, 0])
        np.testing.assert_array_equal(ds.ca.X_umap_2, adata.obsm["X_umap"][:, 1])
        graph = ds.col_graphs["connectivities"]
        np.testing.assert_allclose(graph.toarray(), adata.obsp["connectivities"].toarray())
        assert ds.attrs["LOOM_SPEC_VERSION"] == "3.0.0"


def _edit_with_loompy(path, edit):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with loompy.connect(str(path), "r+", validate=False) as ds:
            edit(ds)


def test_column_added_by_loompy_is_read(tmp_path, adata):
    write_loom_full(tmp_path / "a.loom", adata)
    _edit_with_loompy(tmp_path / "a.loom", lambda ds: ds.ca.__setattr__("score", np.arange(30, dtype=np.float64)))
    back = read_loom_full(tmp_path / "a.loom")
    np.testing.assert_array_equal(back.obs["score"], np.arange(30))
    assert list(back.obs.columns) == [*adata.obs.columns, "score"]
    back.obs = back.obs.drop(columns="score")
    assert_same_as_h5ad(adata, back)


def test_column_changed_by_loompy_is_read_with_the_change(tmp_path, adata):
    write_loom_full(tmp_path / "a.loom", adata)
    new_labels = np.array(["x", "y", "z"] * 10, dtype=object)
    _edit_with_loompy(tmp_path / "a.loom", lambda ds: ds.ca.__setattr__("louvain", new_labels))
    back = read_loom_full(tmp_path / "a.loom")
    assert list(back.obs["louvain"]) == list(new_labels)  # the new values, not stale categories
    assert list(back.obs.columns) == list(adata.obs.columns)  # still in its place


def test_column_deleted_by_loompy_is_gone(tmp_path, adata):
    write_loom_full(tmp_path / "a.loom", adata)
    _edit_with_loompy(tmp_path / "a.loom", lambda ds: ds.ca.__delattr__("n_genes"))
    back = read_loom_full(tmp_path / "a.loom")
    assert "n_genes" not in back.obs
    assert list(back.obs.columns) == ["louvain", "is_doublet", "sample"]


def test_layer_changed_by_loompy_is_read(tmp_path, adata):
    path = tmp_path / "a.loom"
    write_loom_full(path, adata)
    replacement = np.ones((20, 30), dtype=np.float64)

    def edit(ds):
        del ds.layers["counts"]
        ds.layers["counts"] = replacement

    _edit_with_loompy(path, edit)
    back = read_loom_full(path)
    counts = back.layers["counts"]
    np.testing.assert_array_equal(counts.toarray() if sparse.issparse(counts) else counts, replacement.T)
    assert counts.dtype == np.float64


def test_file_combined_by_loompy_reads_back(tmp_path, adata):
    """loompy.combine grows every dataset; the values come back, and kept elements of the old shape are left out."""
    adata.raw = adata
    adata.obsm["frame"] = pd.DataFrame({"x": np.arange(30)}, index=adata.obs_names)
    write_loom_full(tmp_path / "a.loom", adata)
    shutil.copy(tmp_path / "a.loom", tmp_path / "b.loom")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        loompy.combine([str(tmp_path / "a.loom"), str(tmp_path / "b.loom")], str(tmp_path / "c.loom"))
    with pytest.warns(UserWarning, match="another tool"):
        back = read_loom_full(tmp_path / "c.loom")
    assert back.raw is None
    assert "frame" not in back.obsm
    np.testing.assert_array_equal(back.obsm["X_umap"], np.vstack([adata.obsm["X_umap"]] * 2))
    assert back.shape == (60, 20)
    assert list(back.var_names) == list(adata.var_names)
    assert list(back.obs_names[:30]) == list(adata.obs_names)
