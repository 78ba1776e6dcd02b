"""``upgrade_loom``: a file written by anndata's legacy ``write_loom`` reads back with its names and categoricals.

The files here are written as anndata's own (deprecated) ``write_loom`` wrote them, through loompy.
"""

from __future__ import annotations

import errno
import hashlib
import shutil
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import anndata
import h5py
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from anndata import AnnData
from helpers import write_loom_as_anndata_did
from scipy import sparse

from scanpy_loomio import LoomReadWarning, read_loom_full, upgrade_loom, write_loom_full


def legacy_write(adata: AnnData, path: Path, **kwargs: bool) -> Path:
    """anndata's own ``write_loom``, as pipelines called it before it was deprecated (and broken, in 0.13)."""
    return write_loom_as_anndata_did(path, adata, **kwargs)


def is_text(column: pd.Series) -> bool:
    """Text, not categorical: ``object`` with pandas 2, ``str`` with pandas 3."""
    return pd.api.types.is_string_dtype(column.dtype) and not isinstance(column.dtype, pd.CategoricalDtype)


def plain_read(path: Path) -> AnnData:
    """anndata's own ``read_loom``, with its defaults."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecation, and its notes about the names it makes up
        return anndata.io.read_loom(path)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def chunk_digests(path: Path) -> dict[str, list[tuple[tuple[int, ...], str]]]:
    """Every stored (compressed) chunk of ``/matrix`` and the layers, hashed: equal means not rewritten."""

    def chunks(dset: h5py.Dataset) -> list[tuple[tuple[int, ...], str]]:
        out = []
        for i in range(dset.id.get_num_chunks()):
            offset = dset.id.get_chunk_info(i).chunk_offset
            out.append((offset, hashlib.sha256(dset.id.read_direct_chunk(offset)[1]).hexdigest()))
        return out

    with h5py.File(path, "r") as f:
        return {"matrix": chunks(f["matrix"]), **{f"layers/{n}": chunks(d) for n, d in f["layers"].items()}}


def h5ad_round_trip(adata: AnnData, tmp_path: Path) -> AnnData:
    """What ``write_h5ad`` stores: the reference for what the upgrade should give."""
    adata.copy().write_h5ad(tmp_path / "reference.h5ad")
    return anndata.read_h5ad(tmp_path / "reference.h5ad")


def small_adata() -> AnnData:
    """Categoricals (one needing natural sort), a text column with repeats, unique text, bools, a spliced layer."""
    rng = np.random.default_rng(0)
    n_obs, n_vars = 30, 12
    counts = sparse.random(n_obs, n_vars, density=0.3, format="csr", random_state=0, dtype=np.float32)
    obs = pd.DataFrame(
        {
            "cluster": pd.Categorical(rng.choice(["cluster 2", "cluster 10", "cluster 1"], n_obs)),
            "batch": pd.Categorical(rng.choice(["b", "a"], n_obs), categories=["a", "b"]),
            "donor": rng.choice(["d1", "d2"], n_obs).astype(object),  # plain text that write_h5ad makes categorical
            "barcode": [f"AC{i:04d}" for i in range(n_obs)],  # every value different: stays text
            "is_doublet": rng.random(n_obs) > 0.8,
            "n_counts": rng.poisson(100, n_obs),
        },
        index=[f"cell{i}" for i in range(n_obs)],
    )
    var = pd.DataFrame(
        {
            "kind": pd.Categorical(rng.choice(["protein_coding", "lncRNA"], n_vars)),
            "gene_ids": [f"G{i}" for i in range(n_vars)],
        },
        index=[f"gene{i}" for i in range(n_vars)],
    )
    adata = AnnData(counts, obs=obs, var=var)
    adata.layers["spliced"] = (counts * 3).astype(np.int32)
    return adata


@pytest.fixture(scope="module")
def pbmc() -> AnnData:
    return sc.datasets.pbmc68k_reduced()


@pytest.fixture(scope="module")
def pbmc_legacy(pbmc: AnnData, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return legacy_write(pbmc, tmp_path_factory.mktemp("legacy") / "pbmc.loom", write_obsm_varm=True)


@pytest.fixture
def pbmc_file(pbmc_legacy: Path, tmp_path: Path) -> Path:
    """A fresh copy of the legacy file, for a test to change."""
    return Path(shutil.copy(pbmc_legacy, tmp_path / "pbmc.loom"))


# -- what comes back -------------------------------------------------------------------------------------------------


def test_pbmc_comes_back_with_names_and_categoricals(pbmc: AnnData, pbmc_file: Path, tmp_path: Path):
    # anndata's own reader loses the names: they are under the index's name, `index`
    before = plain_read(pbmc_file)
    assert not before.obs_names.equals(pbmc.obs_names)
    assert not before.var_names.equals(pbmc.var_names)
    chunks = chunk_digests(pbmc_file)

    result = upgrade_loom(pbmc_file)

    assert result.upgraded and result.path == pbmc_file and result.convention == "anndata"
    assert result.names == {"obs": "index", "var": "index"}
    assert result.index_names == {"obs": "index", "var": "index"}
    assert result.categoricals == {"obs": ("bulk_labels", "louvain", "phase"), "var": ()}
    back = read_loom_full(pbmc_file)
    assert back.obs_names.equals(pbmc.obs_names) and back.obs_names.name == pbmc.obs_names.name == "index"
    assert back.var_names.equals(pbmc.var_names) and back.var_names.name == pbmc.var_names.name == "index"
    reference = h5ad_round_trip(pbmc, tmp_path)
    for column in ("bulk_labels", "louvain", "phase"):
        assert back.obs[column].dtype == reference.obs[column].dtype == pbmc.obs[column].dtype  # same categories
        assert back.obs[column].equals(pbmc.obs[column])
    np.testing.assert_array_equal(back.X.toarray(), pbmc.X)
    np.testing.assert_array_equal(back.obsm["X_umap"], pbmc.obsm["X_umap"])
    # the file's bookkeeping is not data
    assert dict(back.uns) == {}
    # the matrix was carried over as stored, chunk for chunk; the names stayed where they were
    assert chunk_digests(pbmc_file) == chunks
    with h5py.File(pbmc_file, "r") as f:
        assert "index" in f["col_attrs"] and "index" in f["row_attrs"] and "obs_names" not in f["col_attrs"]


def test_small_anndata_comes_back_as_write_h5ad_stores_it(tmp_path: Path):
    adata = small_adata()
    path = legacy_write(adata, tmp_path / "small.loom")
    before = plain_read(path)
    assert list(before.obs_names[:2]) == ["0", "1"]  # names under `obs_names`, where anndata's reader does not look
    assert "matrix" in before.layers  # anndata's reader made `spliced` X and moved /matrix to a layer

    result = upgrade_loom(path)

    assert result.names == {"obs": "obs_names", "var": "var_names"}
    assert result.index_names == {"obs": None, "var": None}
    assert result.categoricals == {"obs": ("batch", "cluster", "donor"), "var": ("kind",)}
    back = read_loom_full(path)
    reference = h5ad_round_trip(adata, tmp_path)
    assert back.obs_names.equals(adata.obs_names) and back.var_names.equals(adata.var_names)
    for axis in ("obs", "var"):
        ours, theirs = getattr(back, axis), getattr(reference, axis)
        for column in theirs.select_dtypes("category"):
            assert ours[column].dtype == theirs[column].dtype, column
            assert ours[column].equals(theirs[column]), column
    # natural order, as anndata sorts them; "barcode" had no repeats, so it stays text
    assert list(back.obs["cluster"].cat.categories) == ["cluster 1", "cluster 2", "cluster 10"]
    assert back.obs["barcode"].dtype == reference.obs["barcode"].dtype != "category"
    # what the file cannot tell: bools were stored as uint8 (documented)
    assert back.obs["is_doublet"].dtype == np.uint8
    np.testing.assert_array_equal(back.obs["is_doublet"].astype(bool), adata.obs["is_doublet"])
    # matrices: /matrix stays X, spliced stays a layer
    np.testing.assert_array_equal(back.X.toarray(), adata.X.toarray())
    np.testing.assert_array_equal(back.layers["spliced"].toarray(), adata.layers["spliced"].toarray())


def test_keeping_text_as_text(tmp_path: Path):
    path = legacy_write(small_adata(), tmp_path / "small.loom")
    result = upgrade_loom(path, categoricals=False)
    assert result.categoricals == {"obs": (), "var": ()}
    back = read_loom_full(path)
    assert is_text(back.obs["donor"]) and is_text(back.obs["cluster"])
    with pytest.raises(ValueError, match="categoricals='yes'; expected 'auto'"):
        upgrade_loom(path, categoricals="yes")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["fgp_anndata_velocity_simulation_20.loom", "kb_python_anndata_genes.loom"])
def test_real_files_anndata_wrote(real_fixtures: Path, tmp_path: Path, name: str):
    """Files other projects wrote with anndata's write_loom: the same AnnData, now with the record, chunks kept."""
    path = Path(shutil.copy(real_fixtures / name, tmp_path / name))
    before = read_loom_full(path)
    chunks = chunk_digests(path)

    result = upgrade_loom(path)

    assert result.names == {"obs": "obs_names", "var": "var_names"}
    after = read_loom_full(path)
    assert after.obs_names.equals(before.obs_names) and after.var_names.equals(before.var_names)
    pd.testing.assert_frame_equal(after.obs, before.obs)
    for key, layer in before.layers.items():
        assert after.layers[key].dtype == layer.dtype
        assert (after.layers[key] != layer).nnz == 0
    assert chunk_digests(path) == chunks
    with h5py.File(path, "r") as f:
        assert "scanpy_loomio" in f["attrs"]


# -- names that need naming --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("drop", "warning"),
    [
        pytest.param(None, r"has no obs_names, so anndata's writer stored .* taking /col_attrs/barcode", id="guessed"),
        pytest.param("barcode", r"no obs names found in /col_attrs; they will be 0, 1, 2", id="none"),
    ],
)
def test_names_under_an_unknown_index_name_are_named_by_the_caller(tmp_path: Path, drop: str | None, warning: str):
    """An index named `cell_id`: anndata's writer stored the names there, where no reader looks."""
    adata = small_adata()
    if drop:
        del adata.obs[drop]
    adata.obs_names.name = "cell_id"
    path = legacy_write(adata, tmp_path / "small.loom")
    with pytest.warns(LoomReadWarning, match=rf"{warning}.*obs_names= .*text attributes: .*cell_id"):
        result = upgrade_loom(path, output=tmp_path / "guessed.loom")
    assert result.names["var"] == "var_names"

    result = upgrade_loom(path, obs_names="cell_id")
    assert result.names == {"obs": "cell_id", "var": "var_names"}
    assert result.index_names == {"obs": "cell_id", "var": None}
    back = read_loom_full(path)
    assert back.obs_names.equals(adata.obs_names) and back.obs_names.name == "cell_id"
    assert back.var_names.equals(adata.var_names)


def test_names_are_taken_where_anndata_put_them(tmp_path: Path):
    """Default names (0, 1, …) beside a unique `CellID` column: the reader prefers `CellID`, the upgrade `obs_names`.

    The update compares the names it reads with the AnnData's, so it reads them from the same attribute.
    """
    adata = small_adata()
    adata.obs["CellID"] = adata.obs_names.to_numpy()
    adata.obs_names = [str(i) for i in range(adata.n_obs)]
    path = legacy_write(adata, tmp_path / "small.loom")
    assert read_loom_full(path).obs_names[0] == "cell0"

    result = upgrade_loom(path)

    assert result.names["obs"] == "obs_names"
    back = read_loom_full(path)
    assert back.obs_names.equals(adata.obs_names)
    assert back.obs["CellID"].equals(adata.obs["CellID"])


def test_a_wrong_attribute_name_is_refused_before_anything_is_written(pbmc_file: Path):
    original = digest(pbmc_file)
    with pytest.raises(ValueError, match=r"/col_attrs/nope: no such attribute; .* text attributes: .*bulk_labels"):
        upgrade_loom(pbmc_file, obs_names="nope")
    with pytest.raises(ValueError, match=r"/col_attrs/X_pca: a dataset of shape \(700, 50\)"):
        upgrade_loom(pbmc_file, obs_names="X_pca")
    assert digest(pbmc_file) == original
    assert list(pbmc_file.parent.iterdir()) == [pbmc_file]


# -- the file ----------------------------------------------------------------------------------------------------------


def test_output_leaves_the_original_and_a_second_run_changes_nothing(pbmc_file: Path, tmp_path: Path):
    original = digest(pbmc_file)
    out = tmp_path / "upgraded.loom"
    assert upgrade_loom(pbmc_file, output=out).path == out
    assert digest(pbmc_file) == original
    upgraded = digest(out)
    again = upgrade_loom(out)
    assert not again.upgraded
    assert digest(out) == upgraded
    assert "already has the scanpy_loomio record" in again.render()


def test_a_file_this_package_wrote_is_left_alone(tmp_path: Path):
    path = tmp_path / "ours.loom"
    adata = small_adata()
    adata.obs["donor"] = adata.obs["donor"].astype(str)  # text on purpose: must not become categorical
    write_loom_full(path, adata, convert_strings_to_categoricals=False)
    original = digest(path)
    assert not upgrade_loom(path).upgraded
    assert digest(path) == original
    assert is_text(read_loom_full(path).obs["donor"])


def test_a_failure_half_way_leaves_the_original_byte_for_byte(pbmc_file: Path, run_in_child):
    """A real write failure while the matrix is copied (a file size limit below the file's size, in a child)."""
    resource = pytest.importorskip("resource")
    original = digest(pbmc_file)
    limit = pbmc_file.stat().st_size // 2

    def limited_upgrade() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() fails with EFBIG instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        upgrade_loom(pbmc_file)

    outcome, code, message = run_in_child(limited_upgrade)
    assert (outcome, code) == ("OSError", errno.EFBIG), message
    assert "the existing file was left as it was" in message
    assert digest(pbmc_file) == original
    assert list(pbmc_file.parent.iterdir()) == [pbmc_file]  # no temporary left behind


# -- command line ------------------------------------------------------------------------------------------------------


def test_command_line(tmp_path: Path):
    adata = small_adata()
    path = legacy_write(adata, tmp_path / "small.loom")
    original = digest(path)
    out = tmp_path / "upgraded.loom"
    result = subprocess.run(
        [sys.executable, "-m", "scanpy_loomio", "upgrade", str(path), "-o", str(out), "--no-categoricals"],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert f"{out}: upgraded (convention 'anndata')" in result.stdout
    assert "cell names: /col_attrs/obs_names" in result.stdout
    assert digest(path) == original
    back = read_loom_full(out)
    assert back.obs_names.equals(adata.obs_names)
    assert is_text(back.obs["donor"])  # --no-categoricals
