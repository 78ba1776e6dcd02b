"""Round trip scanpy's bundled ``pbmc68k_reduced`` through loom, element by element, next to anndata's loom I/O.

Run it with ``python -m scanpy_loomio.demo``. It needs no download: the dataset ships with scanpy.
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData
from anndata.tests.helpers import assert_equal
from scipy import sparse

MISSING = object()


def describe(value: Any) -> str:
    """A short type description: ``float32 csr_matrix``, ``category``, ``dict``…"""
    if value is MISSING:
        return "missing"
    if isinstance(value, pd.Series):
        return str(value.dtype)
    if isinstance(value, pd.Index):
        return f"index {value.dtype}" + (f" named {value.name!r}" if value.name is not None else "")
    if sparse.issparse(value):
        return f"{value.dtype} {type(value).__name__}"
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array"
    return type(value).__name__


def same(expected: Any, actual: Any) -> bool:
    """Exact equality with dtypes; NaN equals NaN (``pbmc68k_reduced`` has NaN in ``varm['PCs']``)."""
    if actual is MISSING:
        return False
    if isinstance(expected, pd.Index):
        return (
            isinstance(actual, pd.Index)
            and expected.equals(actual)
            and expected.dtype == actual.dtype
            and (expected.name == actual.name)
        )
    if isinstance(expected, pd.Series):
        try:
            pd.testing.assert_series_equal(
                expected, actual, check_exact=True, check_index=False
            )  # names are their own row
        except (AssertionError, TypeError):
            return False
        return True
    if isinstance(expected, np.ndarray) and isinstance(actual, np.ndarray) and expected.dtype.kind == "f":
        return expected.dtype == actual.dtype and np.array_equal(expected, actual, equal_nan=True)
    try:
        assert_equal(expected, actual, exact=True)
    except (AssertionError, TypeError, ValueError):
        return False
    return True


def elements(adata: AnnData) -> Iterator[tuple[str, Any]]:
    """Every element of an AnnData, one by one, with a readable name."""
    yield "X", adata.X
    yield "obs_names", adata.obs_names
    yield "var_names", adata.var_names
    for axis in ("obs", "var"):
        frame = getattr(adata, axis)
        for col in frame.columns:
            yield f"{axis}[{col!r}]", frame[col]
    for attr in ("layers", "obsm", "varm", "obsp", "varp", "uns"):
        for key, value in getattr(adata, attr).items():
            yield f"{attr}[{key!r}]", value
    if adata.raw is not None:
        yield "raw.X", adata.raw.X
        yield "raw.var", adata.raw.var


def lookup(adata: AnnData, name: str) -> Any:
    """The element called ``name`` in ``adata``, or :data:`MISSING`."""
    for other, value in elements(adata):
        if other == name:
            return value
    return MISSING


def compare(original: AnnData, ours: AnnData, theirs: AnnData) -> list[tuple[str, str, str]]:
    """Rows of (element, what scanpy_loomio gave back, what anndata's loom I/O gave back)."""
    rows = []
    for name, value in elements(original):
        cells = []
        for back in (ours, theirs):
            got = lookup(back, name)
            cells.append("exact" if same(value, got) else f"LOST ({describe(value)} -> {describe(got)})")
        rows.append((name, *cells))
    return rows


def run(folder: Path) -> list[tuple[str, str, str]]:
    """Write and read ``pbmc68k_reduced`` both ways in ``folder``; return the comparison rows."""
    import anndata
    import scanpy as sc

    import scanpy_loomio

    adata = sc.datasets.pbmc68k_reduced()
    ours_path, theirs_path = folder / "scanpy_loomio.loom", folder / "anndata.loom"
    scanpy_loomio.write_loom_full(ours_path, adata)
    ours = scanpy_loomio.read_loom_full(ours_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # anndata's loom functions are deprecated; we call them to compare
        adata.copy().write_loom(theirs_path, write_obsm_varm=True)
        theirs = anndata.io.read_loom(theirs_path) if hasattr(anndata, "io") else anndata.read_loom(theirs_path)
    return compare(adata, ours, theirs)


def format_table(rows: list[tuple[str, str, str]]) -> str:
    """The comparison as a text table with a summary line."""
    header = ("element", "scanpy_loomio", "anndata write_loom + read_loom")
    widths = [max(len(r[i]) for r in [*rows, header]) for i in range(3)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    ours = sum(r[1] == "exact" for r in rows)
    theirs = sum(r[2] == "exact" for r in rows)
    lines.append("")
    lines.append(
        f"scanpy_loomio gave back {ours} of {len(rows)} elements exactly; "
        f"anndata's write_loom + read_loom gave back {theirs}."
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m scanpy_loomio.demo``; exits 1 if scanpy_loomio lost anything."""
    parser = argparse.ArgumentParser(prog="python -m scanpy_loomio.demo", description=__doc__)
    parser.add_argument("--keep", type=Path, help="folder to keep the two .loom files in (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        rows = run(args.keep)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            rows = run(Path(tmp))
    print(format_table(rows))
    return 0 if all(r[1] == "exact" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
