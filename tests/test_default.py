"""The opt-in switch that makes anndata's and scanpy's loom functions lossless (``use_as_default``)."""

from __future__ import annotations

import importlib
import importlib.util
import subprocess
import sys
import warnings
from typing import TYPE_CHECKING

import anndata
import anndata.io
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from helpers import assert_same_as_h5ad
from scipy import sparse

import scanpy_loomio

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

# the fixture repeats a gene symbol on purpose
pytestmark = pytest.mark.filterwarnings("ignore:Variable names are not unique:UserWarning")


def _places() -> list[tuple[object, str]]:
    """Every place the installed scanpy and anndata look up loom I/O, written out per version, not discovered."""
    places = [(anndata.io, "read_loom"), (anndata.io, "write_loom"), (anndata.AnnData, "write_loom")]
    if "read_loom" in vars(sc):  # scanpy <= 1.12 binds it; 1.13 forwards the attribute to anndata.io
        places.append((sc, "read_loom"))
    for module in ("scanpy.readwrite", "scanpy.io._read"):  # behind sc.read: <= 1.12, >= 1.13
        if importlib.util.find_spec(module.rpartition(".")[0] or module) and importlib.util.find_spec(module):
            places.append((importlib.import_module(module), "read_loom"))
    return places


# every place the switch changes: (owner, attribute)
PATCHED = _places()


def current() -> list[object]:
    return [vars(owner)[name] for owner, name in PATCHED]


ORIGINALS = current()


@pytest.fixture(autouse=True)
def switch_off_afterwards() -> Iterator[None]:
    yield
    scanpy_loomio.restore_defaults()
    assert current() == ORIGINALS


@pytest.fixture
def adata() -> anndata.AnnData:
    """An AnnData with what anndata's own loom functions lose: index names, categoricals, obsp, uns, int X."""
    rng = np.random.default_rng(0)
    obs = pd.DataFrame(
        {"cluster": pd.Categorical(["b", "a", "b", "c"], categories=["c", "b", "a"])},
        index=pd.Index(["AAAC-1", "AAAG-1", "ACGT-1", "TTTT-1"], name="barcode"),
    )
    var = pd.DataFrame({"gene_ids": ["ENSG1", "ENSG2", "ENSG3"]}, index=pd.Index(["CD3E", "MS4A1", "CD3E"]))
    x = sparse.random(4, 3, density=0.5, format="csr", random_state=rng, dtype=np.int64)
    result = anndata.AnnData(x, obs=obs, var=var)
    result.layers["spliced"] = x * 2
    result.obsm["X_umap"] = rng.normal(size=(4, 2))
    result.obsp["distances"] = sparse.random(4, 4, density=0.5, format="csr", random_state=rng)
    result.uns["params"] = {"n_neighbors": 3, "method": "umap"}
    return result


def test_import_alone_changes_nothing() -> None:
    code = (
        "import anndata, scanpy, sys\n"
        "def snapshot():\n"
        "    return {(m, k): v for m, mod in list(sys.modules.items()) if m.partition('.')[0] in ('anndata', 'scanpy')"
        " and mod is not None for k, v in list(vars(mod).items())}\n"
        "before = snapshot()\n"
        "methods = dict(vars(anndata.AnnData))\n"
        "import scanpy_loomio\n"
        "after = snapshot()\n"
        "changed = sorted(str(k) for k in before if k in after and after[k] is not before[k])\n"
        "added = sorted(str(k) for k in after.keys() - before.keys() if not k[0].startswith(('anndata', 'scanpy.'))"
        " or k[1] in ('read_loom_full', 'write_loom_full'))\n"
        "assert not changed, changed\n"
        "print(sorted(k for k in added), [k for k in vars(anndata.AnnData) if k not in methods])\n"
    )
    result = subprocess.run(
        [sys.executable, "-W", "error::UserWarning", "-c", code], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    expected = [("scanpy", "read_loom_full"), ("scanpy", "write_loom_full")]
    if importlib.util.find_spec("scanpy.io") is not None:
        expected += [("scanpy.io", "read_loom_full"), ("scanpy.io", "write_loom_full")]
    assert result.stdout == f"{sorted(str(k) for k in expected)} ['loom']\n"
    assert "Warning" not in result.stderr


def test_scanpy_io_gets_the_functions_where_it_exists() -> None:
    assert sc.read_loom_full is scanpy_loomio.read_loom_full
    assert sc.write_loom_full is scanpy_loomio.write_loom_full
    if importlib.util.find_spec("scanpy.io") is None:
        pytest.skip(f"scanpy {sc.__version__} has no scanpy.io")
    assert sc.io.read_loom_full is scanpy_loomio.read_loom_full
    assert sc.io.write_loom_full is scanpy_loomio.write_loom_full


def test_switch_on_and_off() -> None:
    scanpy_loomio.use_as_default()
    assert all(now is not before for now, before in zip(current(), ORIGINALS, strict=True))
    assert sc.read_loom is anndata.io.read_loom  # one replacement for every reader
    assert all(getattr(owner, name) is not original for (owner, name), original in zip(PATCHED, ORIGINALS, strict=True))
    scanpy_loomio.restore_defaults()
    assert all(now is before for now, before in zip(current(), ORIGINALS, strict=True))


def test_idempotent() -> None:
    first = scanpy_loomio.use_as_default()
    patched = current()
    second = scanpy_loomio.use_as_default()
    assert current() == patched  # not wrapped twice
    assert first.turned_on
    assert not second.turned_on
    scanpy_loomio.restore_defaults()
    assert current() == ORIGINALS
    scanpy_loomio.restore_defaults()  # off already: nothing happens
    assert current() == ORIGINALS


def test_context_manager_restores_even_on_error() -> None:
    with pytest.raises(RuntimeError, match="inside"), scanpy_loomio.use_as_default():
        assert current() != ORIGINALS
        msg = "inside"
        raise RuntimeError(msg)
    assert current() == ORIGINALS


def test_inner_context_keeps_an_outer_switch_on() -> None:
    scanpy_loomio.use_as_default()
    patched = current()
    with scanpy_loomio.use_as_default():
        pass
    assert current() == patched


def test_unchanged_pipeline_round_trips_exactly(tmp_path: Path, adata: anndata.AnnData) -> None:
    path = tmp_path / "pipeline.loom"
    with scanpy_loomio.use_as_default():
        adata.write_loom(path, write_obsm_varm=False)  # the flag no longer drops anything
        back = sc.read_loom(path)
        via_read = sc.read(path)
        anndata.io.write_loom(tmp_path / "io.loom", adata)
        via_io = anndata.io.read_loom(tmp_path / "io.loom")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # anndata.read_loom is deprecated
            via_deprecated = anndata.read_loom(path)
    for result in (back, via_read, via_io, via_deprecated):
        assert_same_as_h5ad(adata, result)


def test_spliced_becomes_x_only_when_asked(tmp_path: Path, adata: anndata.AnnData) -> None:
    path = tmp_path / "velocity.loom"
    scanpy_loomio.write_loom_full(path, adata)
    with scanpy_loomio.use_as_default():
        assert (sc.read_loom(path).X != adata.X).nnz == 0
        assert (sc.read_loom(path, X_name="spliced").X != adata.layers["spliced"]).nnz == 0


def test_old_keywords_are_translated(tmp_path: Path, adata: anndata.AnnData) -> None:
    path = tmp_path / "keywords.loom"
    scanpy_loomio.write_loom_full(path, adata)
    with scanpy_loomio.use_as_default():
        back = sc.read_loom(path, validate=False, sparse=True, obsm_names={}, cleanup=False)
    assert_same_as_h5ad(adata, back)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"spec_version": "2.0.1"}, r"got the keyword argument 'spec_version'.*restore_defaults"),
        ({"obsm_names": {}, "obsm_mapping": {}}, r"got both 'obsm_names' and 'obsm_mapping', which mean the same"),
    ],
)
def test_unknown_keywords_fail_clearly(tmp_path: Path, kwargs: dict, message: str) -> None:
    with scanpy_loomio.use_as_default(), pytest.raises(TypeError, match=message):
        sc.read_loom(tmp_path / "never-opened.loom", **kwargs)


def test_after_restore_anndata_loses_again(tmp_path: Path, adata: anndata.AnnData) -> None:
    path = tmp_path / "plain.loom"
    with scanpy_loomio.use_as_default():
        adata.write_loom(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        back = sc.read_loom(path)  # anndata's reader again: the graphs are not read
    assert "distances" not in back.obsp
