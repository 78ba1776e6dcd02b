"""Real loom files written by other tools read as ``shared/fixtures/real/MANIFEST.md`` says, never change, and become
lossless after one read."""

from __future__ import annotations

import hashlib
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import assert_same_as_h5ad, layer_keys
from scipy import sparse

from scanpy_loomio import LoomReadWarning, read_loom_full, write_loom_full

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "real"
FILES = sorted(p.name for p in FIXTURES.glob("*.loom")) if FIXTURES.is_dir() else []
needs_fixtures = pytest.mark.skipif(
    not FILES, reason=f"real fixtures not found at {FIXTURES} (../shared beside the repo)"
)


@pytest.fixture
def fixture_copy(tmp_path):
    """Copy a fixture into tmp_path (writable, as a user's file would be) and return the copy's path."""

    def copy(name: str) -> Path:
        target = tmp_path / name
        shutil.copyfile(FIXTURES / name, target)
        return target

    return copy


def read_quietly(path: Path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LoomReadWarning)
        return read_loom_full(path, **kwargs)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fixtures_are_all_known():
    if not FILES:
        pytest.skip(f"real fixtures not found at {FIXTURES}")
    assert set(FILES) == {
        "fgp_anndata_velocity_simulation_20.loom",
        "kb_python_anndata_genes.loom",
        "loomexperiment_0.99_rle_example.loom",
        "loomexperiment_1.3.3_L1_DRG_20.loom",
        "loompy_v2_test.loom",
        "loompy_v3_test.loom",
        "scopeloomr_2018_example.loom",
    }, "a fixture was added or removed: give it a test of what reading it right means"


@needs_fixtures
@pytest.mark.parametrize("name", FILES)
def test_reading_never_writes(name, fixture_copy):
    path = fixture_copy(name)
    before, mtime = digest(path), path.stat().st_mtime_ns
    read_quietly(path)
    read_quietly(path, convention="loomr", matrices=False)
    assert digest(path) == before
    assert path.stat().st_mtime_ns == mtime


@needs_fixtures
@pytest.mark.parametrize("name", FILES)
def test_one_read_makes_it_lossless(name, fixture_copy, tmp_path):
    first = read_quietly(fixture_copy(name))
    write_loom_full(tmp_path / "again.loom", first)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LoomReadWarning)  # our own file needs no interpretation
        second = read_loom_full(tmp_path / "again.loom")
    assert_same_as_h5ad(first, second)


# -- what reading each one right means (MANIFEST.md) ------------------------------------------------------------------


@needs_fixtures
def test_loompy_v3(fixture_copy):
    with pytest.warns(LoomReadWarning, match=r"var names from /row_attrs/Gene are not unique.*var\['Gene'\]"):
        adata = read_loom_full(fixture_copy("loompy_v3_test.loom"))
    assert adata.shape == (200, 20)
    assert list(adata.obs_names[:3]) == ["0", "1", "2"]  # no guess from the int column Cell
    assert adata.obs["Cell"].dtype.kind == "i"
    assert adata.var_names.is_unique
    assert adata.var["Gene"].duplicated().any()  # the originals, repeats and all
    assert (adata.var_names.str.split("-").str[0] == adata.var["Gene"]).all()
    assert isinstance(adata.uns["CreationDate"], str)
    assert adata.uns["LOOM_SPEC_VERSION"] == "3.0.0"


@needs_fixtures
def test_loompy_v2(fixture_copy):
    adata = read_quietly(fixture_copy("loompy_v2_test.loom"))
    assert adata.shape == (100, 1000)
    assert list(adata.obs_names[:2]) == ["0", "1"]
    assert adata.obs["c_id"].dtype == np.int64
    assert adata.var["g_id"].dtype == np.int64
    for key in ("CreationDate", "LOOM_SPEC_VERSION", "last_modified"):
        assert type(adata.uns[key]) is str, key
    assert adata.uns["LOOM_SPEC_VERSION"] == "2.0.1"


@needs_fixtures
def test_loomexperiment_l1(fixture_copy):
    path = fixture_copy("loomexperiment_1.3.3_L1_DRG_20.loom")
    adata = read_quietly(path)
    assert adata.obs_names[0] == "10X43_2_ACTCGAGTTCAG-"
    assert list(adata.var_names[:3]) == ["Nnat", "Rasl10a", "A3galt2"]
    assert adata.obs.shape[1] == 103  # 104 attributes, one of them the names
    assert set(adata.obsp) == {"KNN", "MKNN"}
    for key in ("KNN", "MKNN"):
        graph = adata.obsp[key]
        assert sparse.issparse(graph) and graph.shape == (20, 20)
    assert adata.obsp["KNN"].nnz == 282
    text = [c for c in adata.obs.columns if pd.api.types.is_string_dtype(adata.obs[c].dtype)]  # object or str
    assert text and all(isinstance(v, str) for c in text for v in adata.obs[c])
    assert all(isinstance(v, str) for v in adata.uns.values())
    by_accession = read_quietly(path, var_names="Accession")
    assert by_accession.var_names[0].startswith("ENSMUSG")


@needs_fixtures
def test_loomexperiment_rle(fixture_copy):
    adata = read_quietly(fixture_copy("loomexperiment_0.99_rle_example.loom"))
    assert list(adata.obs_names) == ["A", "B", "C", "D", "E", "F"]
    assert list(adata.var_names[:3]) == ["1", "2", "3"]  # from GRanges/rownames
    assert {"seqnames", "start", "end", "strand", "width", "feature_id"} <= set(adata.var.columns)
    assert adata.var["seqnames"].iloc[0] == "chr1"
    assert adata.var["start"].dtype == np.int32
    assert adata.obs["Treatment"].iloc[0] == "ChIP"


@needs_fixtures
def test_scopeloomr(fixture_copy):
    adata = read_quietly(fixture_copy("scopeloomr_2018_example.loom"))
    assert adata.obs_names[0] == "cell_1" and adata.var_names[0] == "gene_1"
    embedding = adata.obsm["Embedding"]
    assert isinstance(embedding, np.ndarray) and embedding.shape == (100, 2) and embedding.dtype == np.float64
    assert not any(adata.obs[c].dtype == object and isinstance(adata.obs[c].iloc[0], np.void) for c in adata.obs)
    meta = adata.uns["MetaData"]
    assert isinstance(meta, dict) and meta["embeddings"][0]["name"] == "t-SNE on full expression matrix"
    assert adata.uns["Genome"] == "Mouse"


@needs_fixtures
def test_kb_python_anndata(fixture_copy):
    adata = read_quietly(fixture_copy("kb_python_anndata_genes.loom"))
    assert adata.obs_names[0] == "AACTCAGAGAGTCGGT"
    assert adata.var_names[0].startswith("ENSMUSG")
    assert "obs_names" not in adata.obs.columns and "var_names" not in adata.var.columns


@needs_fixtures
def test_fgp_velocity(fixture_copy):
    path = fixture_copy("fgp_anndata_velocity_simulation_20.loom")
    adata = read_quietly(path)
    import h5py

    with h5py.File(path, "r") as f:
        matrix = f["matrix"][()].T
    assert adata.X.dtype == np.float32
    np.testing.assert_array_equal(adata.X.toarray(), matrix)  # /matrix, not spliced
    assert set(layer_keys(adata)) == {"spliced", "unspliced", "ambiguous"}
    assert all(adata.layers[k].dtype == np.int64 for k in layer_keys(adata))
    assert list(adata.obs_names[:2]) == ["0", "1"]
    assert "obs_names" not in adata.obs.columns
    assert isinstance(adata.obs, pd.DataFrame) and list(adata.obs.columns) == ["celltype", "time"]
