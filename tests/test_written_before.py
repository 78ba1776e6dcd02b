"""Files written before the on-disk tags changed are still read exactly.

The fixtures in ``tests/data/written-by-0.1.0`` were written by scanpy-loomio 0.1.0 next to the ``.h5ad`` of the
same AnnData; the reference is what ``read_h5ad`` gives from that ``.h5ad`` on this stack.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import anndata
import pytest
from anndata.tests.helpers import assert_adata_equal

from scanpy_loomio import read_loom_full, validate_loom

FIXTURES = Path(__file__).parent / "data" / "written-by-0.1.0"
NAMES = ["default", "loomexperiment", "scope"]


@pytest.mark.parametrize("name", NAMES)
def test_file_written_by_0_1_0_reads_as_its_h5ad(name):
    expected = anndata.read_h5ad(FIXTURES / f"{name}.h5ad")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an old tag must not be read as a problem
        back = read_loom_full(FIXTURES / f"{name}.loom")
    assert_adata_equal(expected, back, exact=True)
    for axis in ("obs", "var"):
        want, got = getattr(expected, axis), getattr(back, axis)
        assert list(want.dtypes.astype(str)) == list(got.dtypes.astype(str)), (axis, want.dtypes, got.dtypes)


@pytest.mark.parametrize("name", NAMES)
def test_file_written_by_0_1_0_validates(name):
    report = validate_loom(FIXTURES / f"{name}.loom")
    assert report.errors == [], report.errors
