"""Baysor's segmentation_counts.loom, in both orientations its builds write /matrix."""

from __future__ import annotations

import warnings
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pytest
from helpers import assert_same_as_h5ad

from scanpy_loomio import LoomReadWarning, concat_loom, read_loom_full, validate_loom, write_loom_full
from scanpy_loomio._read.reader import LoomReader, ReadOptions

PER_CELL = ("x", "y", "area", "density", "elongation", "avg_confidence", "lifespan")


def baysor_file(path: Path, *, transposed: bool, n_cells: int = 9, n_genes: int = 6, seed: int = 0) -> dict:
    """A file laid out as Baysor writes ``segmentation_counts.loom``; returns what it holds, cells × genes."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(0, 5, size=(n_cells, n_genes)).astype(np.float64)
    truth = {
        "counts": counts,
        "genes": [f"Gene{j}" for j in range(n_genes)],
        "CellID": np.arange(1, n_cells + 1, dtype=np.float64),
        **{k: rng.normal(size=n_cells) for k in PER_CELL},
        "n_transcripts": counts.sum(1).astype(np.int64),
        "cluster": rng.integers(1, 4, size=n_cells),
    }
    with h5py.File(path, "w") as f:
        f["matrix"] = counts if transposed else counts.T
        f.create_group("layers")
        f["row_attrs/Name"] = np.array([g.encode() for g in truth["genes"]])
        for key in ("CellID", *PER_CELL, "n_transcripts", "cluster"):
            f[f"col_attrs/{key}"] = truth[key]
        f.create_group("col_graphs")
        f.create_group("row_graphs")
    return truth


@pytest.mark.parametrize("transposed", [False, True])
def test_reads_baysor_layout(tmp_path: Path, transposed: bool) -> None:
    path = tmp_path / "segmentation_counts.loom"
    truth = baysor_file(path, transposed=transposed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        adata = read_loom_full(path)
    turned = [w for w in caught if issubclass(w.category, LoomReadWarning) and "cells × genes" in str(w.message)]
    assert len(turned) == (1 if transposed else 0)
    assert adata.shape == truth["counts"].shape
    np.testing.assert_array_equal(adata.X.toarray(), truth["counts"])
    assert list(adata.var_names) == truth["genes"]
    assert adata.obs["CellID"].dtype == np.float64  # kept as a column, not a float index
    np.testing.assert_array_equal(adata.obs["CellID"].to_numpy(), truth["CellID"])
    assert list(adata.obs_names) == [str(i) for i in range(adata.n_obs)]
    for key in (*PER_CELL, "n_transcripts", "cluster"):
        np.testing.assert_array_equal(adata.obs[key].to_numpy(), truth[key])
    np.testing.assert_array_equal(adata.obsm["spatial"], np.column_stack([truth["x"], truth["y"]]))
    with h5py.File(path) as f:
        assert LoomReader(f, path, ReadOptions()).convention.name == "baysor"
    # written the loom way, it reads back exactly
    write_loom_full(tmp_path / "fixed.loom", adata)
    assert_same_as_h5ad(adata, read_loom_full(tmp_path / "fixed.loom"))


@pytest.mark.parametrize("fmt", [False, True])
def test_dense_read_of_a_turned_file(tmp_path: Path, fmt: bool) -> None:
    truth = baysor_file(tmp_path / "t.loom", transposed=True)
    with pytest.warns(LoomReadWarning, match="cells × genes"):
        adata = read_loom_full(tmp_path / "t.loom", sparse=fmt)
    x = adata.X.toarray() if fmt else adata.X
    np.testing.assert_array_equal(x, truth["counts"])
    if not fmt:
        assert x.flags.c_contiguous


def test_validate_reports_the_orientation(tmp_path: Path) -> None:
    baysor_file(tmp_path / "t.loom", transposed=True)
    baysor_file(tmp_path / "n.loom", transposed=False)
    turned = [p for p in validate_loom(tmp_path / "t.loom").problems if p.severity == "error"]
    assert [p.where for p in turned] == ["/matrix"]
    assert "cells × genes" in turned[0].message
    assert not [p for p in validate_loom(tmp_path / "n.loom").problems if p.severity == "error"]


def test_square_files_are_not_turned(tmp_path: Path) -> None:
    truth = baysor_file(tmp_path / "sq.loom", transposed=False, n_cells=6, n_genes=6)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LoomReadWarning)
        adata = read_loom_full(tmp_path / "sq.loom")
    np.testing.assert_array_equal(adata.X.toarray(), truth["counts"])


def test_concat_both_orientations(tmp_path: Path) -> None:
    files = [tmp_path / "a.loom", tmp_path / "b.loom"]
    baysor_file(files[0], transposed=False, seed=1)
    baysor_file(files[1], transposed=True, n_cells=140, seed=2)  # more cells than one band of chunks
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        concat_loom(files, tmp_path / "both.loom", keys=["a", "b"], index_unique="-", label="patch", merge="same")
        expected = ad.concat(
            [read_loom_full(f) for f in files], keys=["a", "b"], index_unique="-", label="patch", merge="same"
        )
    back = read_loom_full(tmp_path / "both.loom")
    assert_same_as_h5ad(expected, back)
