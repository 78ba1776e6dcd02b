"""Helpers shared by the test modules (on ``sys.path`` through pytest's ``pythonpath`` setting)."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import anndata
import h5py
import numpy as np
import pandas as pd
from anndata import AnnData
from anndata.tests.helpers import assert_adata_equal
from scipy import sparse


def as_h5ad_gives(adata: AnnData) -> AnnData:
    """What ``write_h5ad`` + ``read_h5ad`` give back for ``adata`` on this stack: the reference of "exact".

    Written from a copy, because ``write_h5ad`` turns the text columns of the object it writes into categoricals.
    Where ``.h5ad`` cannot store the object at all, the reference is that converted copy.
    """
    settings = anndata.settings
    # anndata 0.12 refuses pandas' nullable string arrays unless asked (0.13 infers it from pandas)
    override = (
        settings.override(allow_write_nullable_strings=True)
        if hasattr(settings, "allow_write_nullable_strings")
        else settings.override()
    )
    with tempfile.TemporaryDirectory() as folder, override:
        path = Path(folder) / "reference.h5ad"
        copy = adata.copy()
        try:
            copy.write_h5ad(path)
            return anndata.read_h5ad(path)
        except (AttributeError, TypeError, ValueError, NotImplementedError):
            # what .h5ad cannot round-trip (lists of dicts in uns, an index named "", 0 × 0 with anndata 0.12): as write_h5ad
            # converted it before failing, with text built into pandas objects as anndata's reader builds it
            for axis in ("obs", "var"):
                setattr(copy, axis, _as_read(getattr(copy, axis)))
            return copy


def _as_read(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` built from numpy arrays, as anndata's reader builds frames: text takes the stack's text dtype."""
    columns = {k: np.asarray(v, dtype=object) if v.dtype == object else v for k, v in frame.items()}
    index = pd.Index(np.asarray(frame.index, dtype=object), name=frame.index.name)
    return pd.DataFrame(columns, index=index, columns=frame.columns)


def assert_same_as_h5ad(original: AnnData, back: AnnData) -> None:
    """``back`` (a loom round trip of ``original``) equals the ``.h5ad`` round trip of ``original`` exactly.

    ``assert_adata_equal(exact=True)`` compares values, dtypes (column by column), names and index names.
    """
    expected = as_h5ad_gives(original)
    assert_adata_equal(expected, back, exact=True)
    for axis in ("obs", "var"):
        want, got = getattr(expected, axis), getattr(back, axis)
        assert want.index.dtype == got.index.dtype, (axis, want.index.dtype, got.index.dtype)
        assert list(want.dtypes.astype(str)) == list(got.dtypes.astype(str)), (axis, want.dtypes, got.dtypes)


def layer_keys(adata: AnnData) -> list[str]:
    """The keys of ``adata.layers`` without anndata 0.13's ``None`` (``X`` shown as a layer)."""
    return [key for key in adata.layers.keys() if key is not None]


def write_loom_as_anndata_did(path: str | Path, adata: AnnData, *, write_obsm_varm: bool = False) -> Path:
    """A loom file as anndata 0.12's ``write_loom`` wrote it, through loompy as it did.

    anndata 0.13's ``write_loom`` fails on every AnnData (it passes ``layers[None]`` to loompy), so tests that need
    files "written by anndata" write them the way anndata's code did: names under the index's name (else
    ``obs_names``/``var_names``), columns as plain arrays, ``X`` as the ``""`` layer.
    """
    import loompy
    import numpy as np

    row_attrs = {k: np.array(v) for k, v in adata.var.to_dict("list").items()}
    row_attrs[adata.var_names.name or "var_names"] = adata.var_names.to_numpy()
    col_attrs = {k: np.array(v) for k, v in adata.obs.to_dict("list").items()}
    col_attrs[adata.obs_names.name or "obs_names"] = adata.obs_names.to_numpy()
    if write_obsm_varm:
        col_attrs.update(adata.obsm)
        row_attrs.update(adata.varm)
    layers = {"": adata.X.T, **{k: v.T for k, v in adata.layers.items() if k is not None}}
    path = Path(path)
    path.unlink(missing_ok=True)
    loompy.create(str(path), layers, row_attrs=row_attrs, col_attrs=col_attrs)
    return path


def _nan_free(adata: AnnData) -> AnnData:
    """A copy with NaN in float arrays replaced by a sentinel (NaN != NaN fails any exact check)."""
    adata = adata.copy()

    def fixed(value):
        if isinstance(value, np.ndarray) and value.dtype.kind == "f" and np.isnan(value).any():
            return np.where(np.isnan(value), value.dtype.type(-7777), value)
        return value

    adata.X = fixed(adata.X)
    for mapping in (adata.layers, adata.obsm, adata.varm):
        for key in [k for k in mapping.keys() if k is not None]:
            mapping[key] = fixed(mapping[key])
    return adata


def assert_reads_equal(expected: AnnData, got: AnnData) -> None:
    """Two reads of the same data are equal exactly: values, dtypes, matrix classes, names and column dtypes.

    ``assert_adata_equal(exact=True)`` compares sparse matrices by value; this also compares their classes
    (``csr_matrix`` vs ``csr_array`` vs dense) and treats NaN as equal to NaN.
    """
    assert_adata_equal(_nan_free(expected), _nan_free(got), exact=True)
    pairs = [("X", expected.X, got.X)] + [(k, expected.layers[k], got.layers[k]) for k in layer_keys(expected)]
    for key, want, have in pairs:
        assert type(want) is type(have), (key, type(want), type(have))
        assert getattr(want, "dtype", None) == getattr(have, "dtype", None), (key, want.dtype, have.dtype)
    for axis in ("obs", "var"):
        want, have = getattr(expected, axis), getattr(got, axis)
        assert want.index.dtype == have.index.dtype, (axis, want.index.dtype, have.index.dtype)
        assert list(want.dtypes.astype(str)) == list(have.dtypes.astype(str)), (axis, want.dtypes, have.dtypes)


def write_with_switch(code: str, tmp_path: Path, variable: str) -> dict[str, tuple[Path, str]]:
    """Run ``code`` (given an output path) in a fresh Python with the environment switch ``variable`` on and off.

    Returns, for ``"1"`` (on) and ``"0"`` (off), the file written and what the code printed.
    """
    out = {}
    for value in ("1", "0"):
        path = tmp_path / f"{variable.lower()}-{value}.loom"
        done = subprocess.run(
            [sys.executable, "-c", code, str(path)],
            env={**os.environ, variable: value},
            capture_output=True,
            text=True,
            check=True,
        )
        assert path.exists()
        out[value] = (path, done.stdout.strip())
    return out


def stored_chunks(path: Path, name: str = "matrix") -> dict[tuple[int, ...], bytes]:
    """The stored (compressed) bytes of every chunk of dataset ``name``, by chunk offset."""
    offsets: list[tuple[int, ...]] = []
    with h5py.File(path, "r") as f:
        dsid = f[name].id
        dsid.chunk_iter(lambda info: offsets.append(tuple(info.chunk_offset)))  # h5py's own walk of the index
        return {offset: dsid.read_direct_chunk(offset)[1] for offset in offsets}


def knn_graph(n_obs: int, k: int, rng: np.random.Generator) -> sparse.csr_matrix:
    """A kNN-like graph: ``k`` edges per cell to cells at random, float32 weights."""
    return sparse.csr_matrix(
        (rng.random(n_obs * k, dtype=np.float32), rng.integers(0, n_obs, n_obs * k), np.arange(0, n_obs * k + 1, k)),
        shape=(n_obs, n_obs),
    )
