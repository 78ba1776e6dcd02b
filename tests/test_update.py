"""``update_loom_full``: rewrite the annotations of an existing loom file, keep its matrices, atomically."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from anndata import AnnData
from helpers import assert_same_as_h5ad
from scipy import sparse

import scanpy_loomio._tools.update
from scanpy_loomio import LossyWriteError, read_loom_full, update_loom_full, write_loom_full
from scanpy_loomio.conventions import CONVENTIONS

N_OBS, N_VAR = 40, 25


def make_adata() -> AnnData:
    rng = np.random.default_rng(0)
    counts = sparse.random(N_OBS, N_VAR, density=0.3, format="csr", random_state=0, dtype=np.float32)
    adata = AnnData(
        X=counts, layers={"counts": (counts * 10).astype(np.int32), "dense": rng.normal(size=(N_OBS, N_VAR))}
    )
    adata.obs_names = [f"cell{i}" for i in range(N_OBS)]
    adata.var_names = [f"gene{i}" for i in range(N_VAR)]
    adata.obs["batch"] = pd.Categorical(rng.choice(["a", "b"], N_OBS))
    adata.var["gene_ids"] = [f"ENSG{i}" for i in range(N_VAR)]
    adata.obsm["X_pca"] = rng.normal(size=(N_OBS, 3))
    adata.uns["title"] = "before"
    return adata


def annotate(adata: AnnData) -> AnnData:
    """What an analysis step adds and changes: clusters, an embedding, a graph, uns; a column and a key removed."""
    rng = np.random.default_rng(1)
    adata.obs["leiden"] = pd.Categorical(rng.choice(["0", "1", "2"], adata.n_obs))
    adata.obs["score"] = rng.normal(size=adata.n_obs)
    del adata.obs["batch"]
    adata.var["highly_variable"] = rng.random(adata.n_vars) > 0.5
    adata.obsm["X_umap"] = rng.normal(size=(adata.n_obs, 2))
    del adata.obsm["X_pca"]
    adata.varm["PCs"] = rng.normal(size=(adata.n_vars, 3))
    adata.obsp["connectivities"] = sparse.random(adata.n_obs, adata.n_obs, density=0.1, format="csr", random_state=2)
    adata.uns["title"] = "after"
    adata.uns["leiden"] = {"params": {"resolution": 1.0}}
    return adata


def raw_chunks(dset: h5py.Dataset) -> list[tuple[tuple[int, ...], bytes]]:
    """The stored (compressed) chunks of a dataset, as bytes: equal means not rewritten."""
    out = []
    for i in range(dset.id.get_num_chunks()):
        offset = dset.id.get_chunk_info(i).chunk_offset
        out.append((offset, dset.id.read_direct_chunk(offset)[1]))
    return out


def matrices(path: Path) -> dict[str, list]:
    with h5py.File(path, "r") as f:
        return {"matrix": raw_chunks(f["matrix"]), **{f"layers/{n}": raw_chunks(d) for n, d in f["layers"].items()}}


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def written(tmp_path) -> Path:
    path = tmp_path / "a.loom"
    # chunks and compression that differ from the defaults: a rewrite would show
    write_loom_full(path, make_adata(), chunks=(16, 8), compression_level=1)
    return path


def test_update_reads_back_exactly_and_keeps_the_matrices(written):
    before = matrices(written)
    adata = annotate(read_loom_full(written))
    update_loom_full(written, adata)
    assert_same_as_h5ad(adata, read_loom_full(written))
    assert matrices(written) == before
    with h5py.File(written, "r") as f:
        assert f["matrix"].chunks == (16, 8)
        assert f["matrix"].compression_opts == 1


def test_update_twice_and_removals_do_not_linger(written):
    adata = annotate(read_loom_full(written))
    update_loom_full(written, adata)
    del adata.obsm["X_umap"], adata.obsp["connectivities"], adata.uns["leiden"], adata.obs["score"]
    update_loom_full(written, adata)
    back = read_loom_full(written)
    assert_same_as_h5ad(adata, back)
    with h5py.File(written, "r") as f:
        assert "X_umap" not in f["col_attrs"] and "score" not in f["col_attrs"]
        assert "connectivities" not in f["col_graphs"]


def test_new_layers_are_written_and_dropped_ones_left_out(written):
    before = matrices(written)
    adata = read_loom_full(written)
    adata.layers["log"] = np.log1p(adata.layers["dense"] ** 2)
    del adata.layers["dense"]
    update_loom_full(written, adata)
    assert_same_as_h5ad(adata, read_loom_full(written))
    after = matrices(written)
    assert after["matrix"] == before["matrix"]
    assert after["layers/counts"] == before["layers/counts"]
    assert "layers/dense" not in after
    with h5py.File(written, "r") as f:
        assert f["layers/log"].chunks == (16, 8)  # new layers take the file's chunking


def test_creation_date_is_kept_and_last_modified_moves(written):
    with h5py.File(written, "r") as f:
        created, modified = f["attrs/CreationDate"][()], f["attrs/last_modified"][()]
    update_loom_full(written, annotate(read_loom_full(written)))
    with h5py.File(written, "r") as f:
        assert f["attrs/CreationDate"][()] == created
        assert f["attrs/last_modified"][()] != modified


# -- refusals: the file is left as it was ----------------------------------------------------------------------------
def _renamed(adata: AnnData) -> AnnData:
    adata.obs_names = [*adata.obs_names[:5], "someone_else", *adata.obs_names[6:]]
    return adata


def _reordered_genes(adata: AnnData) -> AnnData:
    return adata[:, ::-1].copy()


def _fewer_cells(adata: AnnData) -> AnnData:
    return adata[:-1].copy()


def _x_as_float64(adata: AnnData) -> AnnData:
    adata.X = adata.X.astype(np.float64)
    return adata


def _layer_made_dense(adata: AnnData) -> AnnData:
    adata.layers["counts"] = adata.layers["counts"].toarray()
    return adata


def _x_removed(adata: AnnData) -> AnnData:
    adata.X = None
    return adata


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            _renamed,
            r"obs_names differ from the file's from position 5: the file has 'cell5', the AnnData 'someone_else'",
        ),
        (_reordered_genes, r"var_names differ .* position 0: the file has 'gene0', the AnnData 'gene24'"),
        (_fewer_cells, r"/matrix holds 25 genes × 40 cells, the AnnData has 39 cells × 25 genes"),
        (_x_as_float64, r"X is a csr_matrix of float64, /matrix holds a csr_matrix of float32"),
        (_layer_made_dense, r"layers\['counts'\] is a ndarray of int32, /layers/counts holds a csr_matrix of int32"),
        (_x_removed, r"X is no matrix, /matrix holds a csr_matrix of float32"),
    ],
    ids=["renamed_cell", "reordered_genes", "fewer_cells", "x_dtype", "layer_container", "x_removed"],
)
def test_mismatch_is_refused_and_the_file_left_alone(written, change, message):
    adata = change(read_loom_full(written))
    before = digest(written)
    with pytest.raises(ValueError, match=message) as err:
        update_loom_full(written, adata)
    assert str(written) in str(err.value) and "write_loom_full" in str(err.value)
    assert digest(written) == before
    assert list(written.parent.iterdir()) == [written]  # no temporary file left behind


def test_lossy_refusal_leaves_the_file(tmp_path):
    name = next(n for n, c in CONVENTIONS.items() if not c.sidecar)
    path = tmp_path / "a.loom"
    write_loom_full(path, make_adata(), convention=name)
    adata = read_loom_full(path)
    adata.raw = adata.copy()
    before = digest(path)
    with pytest.raises(LossyWriteError, match="raw"):
        update_loom_full(path, adata)
    assert digest(path) == before


def test_failure_while_writing_leaves_the_old_file(written, monkeypatch):
    """A write that dies half-way (here: after the annotations) never replaces the file."""

    def dies(file, plan, **kwargs):
        file.create_group("col_attrs")
        raise OSError("disk full")

    monkeypatch.setattr(scanpy_loomio._tools.update, "write_annotations", dies)
    before = digest(written)
    with pytest.raises(OSError, match="disk full"):
        update_loom_full(written, annotate(read_loom_full(written)))
    assert digest(written) == before
    assert list(written.parent.iterdir()) == [written]


def test_missing_file_and_swapped_arguments(tmp_path):
    with pytest.raises(FileNotFoundError):
        update_loom_full(tmp_path / "nothing.loom", make_adata())
    assert not list(tmp_path.iterdir())
    with pytest.raises(TypeError, match="first argument is an AnnData"):
        update_loom_full(make_adata(), tmp_path / "a.loom")


# -- conventions -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(CONVENTIONS))
def test_the_file_convention_is_kept(tmp_path, name):
    path = tmp_path / "a.loom"
    write_loom_full(path, make_adata(), convention=name, fill_missing_layers=True)
    with h5py.File(path, "r") as f:
        groups, cells = set(f), set(f["col_attrs"])
    adata = read_loom_full(path)
    adata.obs["leiden"] = pd.Categorical(np.arange(N_OBS) % 3)
    update_loom_full(path, adata)
    assert_same_as_h5ad(adata, read_loom_full(path))
    with h5py.File(path, "r") as f:
        assert set(f) == groups
        assert set(f["col_attrs"]) == cells | {"leiden"}
        assert set(CONVENTIONS[name].required_layers) <= set(f["layers"])


def test_another_convention_on_request(tmp_path):
    path = tmp_path / "a.loom"
    write_loom_full(path, make_adata())
    adata = read_loom_full(path)
    before = matrices(path)
    update_loom_full(path, adata, convention="seuratdisk")
    assert_same_as_h5ad(adata, read_loom_full(path))
    assert matrices(path) == before
    with h5py.File(path, "r") as f:
        assert f["col_attrs/X_pca_1"].ndim == 1 and "X_pca" not in f["col_attrs"]


def test_accessor_updates(written):
    adata = annotate(read_loom_full(written))
    adata.loom.update(written)
    assert_same_as_h5ad(adata, read_loom_full(written))


def test_foreign_file_becomes_ours_without_rewriting_its_matrix(real_fixtures, tmp_path):
    """A file written by anndata's legacy writer (three int64 velocity layers): annotate it and update in place."""
    path = tmp_path / "velocity.loom"
    shutil.copy(real_fixtures / "fgp_anndata_velocity_simulation_20.loom", path)
    before = matrices(path)
    adata = read_loom_full(path)
    adata.obs["group"] = pd.Categorical(np.arange(adata.n_obs) % 2)
    adata.obsm["X_umap"] = np.zeros((adata.n_obs, 2))
    update_loom_full(path, adata)
    assert_same_as_h5ad(adata, read_loom_full(path))
    assert matrices(path) == before


def test_filled_layer_stays_filled_until_the_real_one_comes(tmp_path):
    name = next(n for n, c in CONVENTIONS.items() if c.required_layers)
    required = CONVENTIONS[name].required_layers
    adata = make_adata()
    for layer in required[:-1]:
        adata.layers[layer] = adata.layers["counts"].copy()
    path = tmp_path / "a.loom"
    write_loom_full(path, adata, convention=name, fill_missing_layers=True)
    adata = read_loom_full(path)
    assert required[-1] not in adata.layers
    update_loom_full(path, adata)  # still filled, without being asked again
    assert_same_as_h5ad(adata, read_loom_full(path))
    adata.layers[required[-1]] = adata.layers["counts"].copy()
    update_loom_full(path, adata)
    back = read_loom_full(path)
    assert_same_as_h5ad(adata, back)
    with h5py.File(path, "r") as f:
        assert f["layers"][required[-1]][()].any()
