"""Write ``docs/fixtures.md``: what each real loom file reads as, in each convention, next to ``sc.read_loom``.

For every file in ``../shared/fixtures/real`` (or the folder given as the first argument), the page lists what
:func:`scanpy_loomio.read_loom_full` reads with the convention it detects and with each convention forced, and what
a plain ``scanpy.read_loom`` gets. Every file is copied to a temporary folder before anything opens it.

Usage::

    python scripts/fixture_table.py [FIXTURES_DIR] [OUTPUT]
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path

import anndata as ad

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import scanpy_loomio  # noqa: E402
from scanpy_loomio._read.detect import detect_convention  # noqa: E402
from scanpy_loomio.conventions import CONVENTIONS  # noqa: E402

DEFAULT_FIXTURES = ROOT.parent / "shared" / "fixtures" / "real"
DEFAULT_OUTPUT = ROOT / "docs" / "fixtures.md"
SHOWN = 3  # names shown per axis
MAX_COLUMNS = 8  # obs/var columns listed by name up to this many

HEADER = """# Real files, read in every convention

This page is written by `scripts/fixture_table.py`; do not edit it by hand. It reads each real loom file of the
test fixtures (written by loompy 2 and 3, LoomExperiment, SCopeLoomR and anndata's `write_loom`; see
`shared/fixtures/real/MANIFEST.md`) with `read_loom_full` in the convention it detects (**detected**), with each
convention forced (`convention=...`; conventions that read a file alike share a row), and with a plain
`sc.read_loom` (anndata's reader with its defaults).

Columns: the first {shown} names and where `X` comes from; layers; `obsm`/`varm`/`obsp` keys; `uns` keys; the
`obs`/`var` columns (their number when there are more than {max_columns}); warnings (`LoomReadWarning` for
`read_loom_full`, any for `sc.read_loom`).
"""


def _names(index) -> str:
    shown = ", ".join(f"`{x}`" for x in list(index[:SHOWN]))
    return shown + (", …" if len(index) > SHOWN else "")


def _keys(mapping) -> str:
    keys = list(mapping.keys())
    return ", ".join(f"`{k}`" for k in keys) if keys else "—"


def _columns(frame) -> str:
    columns = list(frame.columns)
    if len(columns) > MAX_COLUMNS:
        return f"{len(columns)} columns"
    return ", ".join(f"`{c}`" for c in columns) if columns else "—"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _describe(read: Callable[[], ad.AnnData], x_from: Callable[[ad.AnnData], str]) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            adata = read()
        except Exception as err:  # noqa: BLE001 - the page reports whatever a reader raises
            return [f"error: {type(err).__name__}: {str(err).splitlines()[0][:120]}", *[""] * 7]
    relevant = [w for w in caught if issubclass(w.category, (scanpy_loomio.LoomReadWarning, UserWarning))]
    notes = "; ".join(sorted({str(w.message).split(": ", 1)[-1][:70] for w in relevant})) or "—"
    return [
        _names(adata.obs_names),
        _names(adata.var_names),
        x_from(adata),
        _keys(adata.layers),
        " / ".join(_keys(m) for m in (adata.obsm, adata.varm, adata.obsp)),
        _keys(adata.uns),
        " / ".join(_columns(frame) for frame in (adata.obs, adata.var)),
        notes,
    ]


def fixture_section(path: Path, workdir: Path) -> str:
    """The Markdown section for one fixture."""
    import h5py
    import scanpy as sc

    copy = workdir / path.name
    shutil.copyfile(path, copy)
    with h5py.File(copy, "r") as f:
        detected = detect_convention(f).name
        layers = set(f["layers"].keys()) if "layers" in f else set()
    rows = [(f"**detected** (`{detected}`)", lambda: scanpy_loomio.read_loom_full(copy))]
    rows += [
        (f"`{name}`", lambda name=name: scanpy_loomio.read_loom_full(copy, convention=name)) for name in CONVENTIONS
    ]

    def ours_x(adata: ad.AnnData) -> str:
        return "`/matrix`"

    def anndata_x(adata: ad.AnnData) -> str:
        return "layer `spliced`" if "spliced" in layers else "`/matrix`"

    head = ["reader", "obs names", "var names", "`X`", "layers", "obsm / varm / obsp", "uns", "columns", "warnings"]
    lines = [f"## `{path.name}`", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    # conventions that read the file alike share a row
    grouped: dict[tuple[str, ...], list[str]] = {}
    for label, read in rows:
        grouped.setdefault(tuple(_describe(read, ours_x)), []).append(label)
    for described, labels in grouped.items():
        lines.append("| " + " | ".join(_cell(x) for x in [", ".join(labels), *described]) + " |")
    plain = workdir / f"plain_{path.name}"
    shutil.copyfile(path, plain)
    lines.append(
        "| "
        + " | ".join(_cell(x) for x in ["`sc.read_loom`", *_describe(lambda: sc.read_loom(plain), anndata_x)])
        + " |"
    )
    return "\n".join(lines) + "\n"


def main(fixtures: Path = DEFAULT_FIXTURES, output: Path = DEFAULT_OUTPUT) -> str:
    """Write the page and return its text."""
    logging.getLogger("scanpy_loomio").setLevel(logging.WARNING)
    files = sorted(fixtures.glob("*.loom"))
    if not files:
        msg = f"{fixtures}: no .loom files; pass the fixtures folder as the first argument"
        raise SystemExit(msg)
    with tempfile.TemporaryDirectory() as tmp:
        sections = [fixture_section(path, Path(tmp)) for path in files]
    text = HEADER.format(shown=SHOWN, max_columns=MAX_COLUMNS) + "\n" + "\n".join(sections)
    output.write_text(text, encoding="utf-8")
    return text


if __name__ == "__main__":
    args = [Path(a) for a in sys.argv[1:3]]
    main(*args)
