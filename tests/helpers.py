"""Helpers shared by the test modules (on ``sys.path`` through pytest's ``pythonpath`` setting)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import anndata
from anndata import AnnData
from anndata.tests.helpers import assert_adata_equal


def as_h5ad_gives(adata: AnnData) -> AnnData:
    """What ``write_h5ad`` + ``read_h5ad`` give back for ``adata`` on this stack: the reference of "exact".

    Written from a copy, because ``write_h5ad`` turns the text columns of the object it writes into categoricals.
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
        adata.copy().write_h5ad(path)
        return anndata.read_h5ad(path)


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
