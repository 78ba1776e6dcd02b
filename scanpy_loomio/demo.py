"""Round trip scanpy's bundled ``pbmc68k_reduced`` through loom, element by element, next to anndata's loom I/O.

Each element is compared, exactly and with its dtype, with what an ``.h5ad`` round trip gives back on the same
installation.

Run it with ``python -m scanpy_loomio.demo``. It needs no download: the dataset ships with scanpy.
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import anndata
import numpy as np
import pandas as pd
import scanpy as sc
from anndata import AnnData
from scipy import sparse

import scanpy_loomio
from scanpy_loomio._compat import named_layers

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
        # scipy-stubs narrow to an abstract base class that declares none of the attributes every container has
        return f"{value.dtype} {type(value).__name__}"  # type: ignore[attr-defined]
    if isinstance(value, np.ndarray):
        return f"{value.dtype} array"
    return type(value).__name__


def same(expected: Any, actual: Any) -> bool:
    """Exact equality, types and dtypes included; NaN equals NaN (``pbmc68k_reduced`` has NaN in ``varm['PCs']``).

    Examples
    --------
    >>> import numpy as np
    >>> same(np.array([1.0, np.nan]), np.array([1.0, np.nan]))
    True
    >>> same(np.array([1, 2], dtype="int64"), np.array([1, 2], dtype="int32"))
    False
    """
    if actual is MISSING or type(expected) is not type(actual):
        return False
    if isinstance(expected, pd.Index):
        return expected.equals(actual) and expected.dtype == actual.dtype and expected.name == actual.name
    if isinstance(expected, pd.Series | pd.DataFrame):
        try:
            if isinstance(expected, pd.Series):  # a column: the names are their own row
                pd.testing.assert_series_equal(expected, actual, check_exact=True, check_index=False)
            else:
                pd.testing.assert_frame_equal(expected, actual, check_exact=True)
        except (AssertionError, TypeError):
            return False
        return True
    if sparse.issparse(expected):
        expected, actual = expected.tocsr(), actual.tocsr()  # type: ignore[attr-defined]  # as in describe()
        expected.sort_indices()
        actual.sort_indices()
        return (
            expected.shape == actual.shape
            and np.array_equal(expected.indptr, actual.indptr)
            and np.array_equal(expected.indices, actual.indices)
            and same(expected.data, actual.data)
        )
    if isinstance(expected, np.ndarray):
        equal_nan = expected.dtype.kind in "fc"
        return (
            expected.dtype == actual.dtype
            and expected.shape == actual.shape
            and bool(np.array_equal(expected, actual, equal_nan=equal_nan))
        )
    if isinstance(expected, Mapping):
        return expected.keys() == actual.keys() and all(same(expected[k], actual[k]) for k in expected)
    if isinstance(expected, list | tuple):
        return len(expected) == len(actual) and all(same(e, a) for e, a in zip(expected, actual, strict=True))
    return bool(expected == actual)


def elements(adata: AnnData) -> Iterator[tuple[str, Any]]:
    """Every element of an AnnData, one by one, with a readable name."""
    yield "X", adata.X
    yield "obs_names", adata.obs_names
    yield "var_names", adata.var_names
    for axis in ("obs", "var"):
        frame = getattr(adata, axis)
        for col in frame.columns:
            yield f"{axis}[{col!r}]", frame[col]
    for key, value in named_layers(adata).items():
        yield f"layers[{key!r}]", value
    for attr in ("obsm", "varm", "obsp", "varp", "uns"):
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


def compare(original: AnnData, ours: AnnData, theirs: AnnData | None) -> list[tuple[str, str, str]]:
    """Rows of (element, what scanpy_loomio gave back, what anndata's loom I/O gave back or ``"not run"``)."""

    def verdict(value: Any, back: AnnData | None, name: str) -> str:
        if back is None:
            return "not run"
        got = lookup(back, name)
        return "exact" if same(value, got) else f"LOST ({describe(value)} -> {describe(got)})"

    return [(name, verdict(value, ours, name), verdict(value, theirs, name)) for name, value in elements(original)]


def anndata_round_trip(adata: AnnData, path: Path) -> tuple[AnnData | None, str]:
    """What anndata's own ``write_loom`` + ``read_loom`` give back, or None and why they could not run.

    They need loompy, which this package does not, and anndata 0.13's ``write_loom`` fails on every AnnData.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # anndata's loom functions are deprecated; we call them to compare
        try:
            adata.copy().write_loom(path, write_obsm_varm=True)
            return anndata.io.read_loom(path), ""
        except Exception as error:  # noqa: BLE001 - any failure of the other library is reported, not raised
            return (
                None,
                f"anndata {anndata.__version__}'s write_loom + read_loom failed: {type(error).__name__}: {error}",
            )


def run(folder: Path) -> tuple[list[tuple[str, str, str]], str]:
    """Write and read ``pbmc68k_reduced`` both ways in ``folder``; return the comparison rows and a note."""
    adata = sc.datasets.pbmc68k_reduced()
    ours_path, theirs_path = folder / "scanpy_loomio.loom", folder / "anndata.loom"
    scanpy_loomio.write_loom_full(ours_path, adata)
    ours = scanpy_loomio.read_loom_full(ours_path)
    theirs, note = anndata_round_trip(adata, theirs_path)
    return compare(h5ad_round_trip(adata, folder / "reference.h5ad"), ours, theirs), note


def h5ad_round_trip(adata: AnnData, path: Path) -> AnnData:
    """What ``write_h5ad`` + ``read_h5ad`` give back: the reference "exact" is measured against.

    ``write_h5ad`` makes text columns with repeated values categoricals, on the object it writes: hence the copy.
    """
    adata.copy().write_h5ad(path)
    return anndata.read_h5ad(path)


def format_table(rows: list[tuple[str, str, str]], note: str = "") -> str:
    """The comparison as a text table with a summary line (and ``note`` when anndata's loom I/O could not run)."""
    header = ("element", "scanpy_loomio", "anndata write_loom + read_loom")
    widths = [max(len(r[i]) for r in [*rows, header]) for i in range(3)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    ours = sum(r[1] == "exact" for r in rows)
    theirs = sum(r[2] == "exact" for r in rows)
    lines.append("")
    summary = f"scanpy_loomio gave back {ours} of {len(rows)} elements exactly"
    lines.append(f"{summary}; anndata's write_loom + read_loom gave back {theirs}." if not note else f"{summary}.")
    if note:
        lines.append(f"Not compared: {note}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m scanpy_loomio.demo``; exits 1 if scanpy_loomio lost anything."""
    parser = argparse.ArgumentParser(prog="python -m scanpy_loomio.demo", description=__doc__)
    parser.add_argument("--keep", type=Path, help="folder to keep the two .loom files in (default: a temporary one)")
    args = parser.parse_args(argv)
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        rows, note = run(args.keep)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            rows, note = run(Path(tmp))
    print(format_table(rows, note))
    return 0 if all(r[1] == "exact" for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
