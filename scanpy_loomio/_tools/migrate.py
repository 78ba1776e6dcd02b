"""Rewrite a pipeline's Python files and notebooks from anndata's loom functions to this package's.

The syntax-tree work lives in :mod:`scanpy_loomio._tools.migrate_cst` (it needs libcst, an optional dependency);
this module handles files, notebooks, diffs and writing.
"""

from __future__ import annotations

import difflib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from scanpy_loomio._write.atomic import atomic_target

if TYPE_CHECKING:
    from collections.abc import Iterator
    from types import ModuleType

    from scanpy_loomio._tools.migrate_cst import RewriteResult

__all__ = ["MigrationResult", "migrate_path", "migrate_source"]

#: Directories never entered when migrating a folder: virtual environments and tool caches hold code
#: that is not the pipeline's own.
SKIPPED_DIRECTORIES = frozenset({"__pycache__", "site-packages", "node_modules"})
#: Cell magics whose cell body is still Python.
PYTHON_CELL_MAGICS = frozenset({"%%time", "%%timeit", "%%capture", "%%prun"})
# IPython syntax (magics, shell escapes, help) is hidden from the parser behind this valid statement.
_MAGIC_MARKER = "pass  # scanpy-loomio: ipython line: "


@dataclass(frozen=True)
class MigrationResult:
    """What migrating one file did.

    Attributes
    ----------
    path
        The file.
    original
        Its text before.
    migrated
        Its text after (equal to ``original`` when nothing changed or on error).
    diff
        A unified diff of the Python code (notebooks: one section per changed code cell).
    notes
        Things to check by hand, each starting with where it applies (``line 12: …``, ``cell 3, line 1: …``).
    error
        Why the file could not be migrated (it is then left alone), else None.
    written
        Whether the file on disk was replaced with ``migrated``.
    """

    path: Path
    original: str
    migrated: str
    diff: str
    notes: tuple[str, ...] = ()
    error: str | None = None
    written: bool = False

    @property
    def changed(self) -> bool:
        """Whether migrating changes the file."""
        return self.migrated != self.original


def _rewriter() -> ModuleType:
    """The syntax-tree rewriter module, with install advice when libcst is missing."""
    try:  # imported here: libcst is an optional dependency, needed only for migrating
        from scanpy_loomio._tools import migrate_cst as _migrate_cst
    except ImportError as error:
        msg = "migrating code needs the optional dependency libcst: pip install 'scanpy-loomio[migrate]'"
        raise ImportError(msg) from error
    return _migrate_cst


def _rewrite_file_source(source: str, filename: str) -> RewriteResult:
    rewriter = _rewriter()
    problem = rewriter.syntax_problem(source)
    if problem is not None:
        msg = f"{filename}: cannot be parsed as Python 3: {problem}"
        raise SyntaxError(msg)
    return rewriter.rewrite_parts([source])


def migrate_source(source: str) -> str:
    r"""Rewrite Python source from anndata's/scanpy's loom functions to scanpy-loomio's.

    ``sc.read_loom`` (and ``sc.read`` or scVelo's ``scv.read`` of a ``"….loom"`` path) becomes
    ``sc.read_loom_full``, ``anndata.io.read_loom`` (and ``anndata.read_loom``, ``from anndata import read_loom``)
    becomes ``scanpy_loomio.read_loom_full``, ``adata.write_loom(path)``
    becomes ``sc.write_loom_full(path, adata)`` (or ``scanpy_loomio.write_loom_full``) and
    ``anndata.io.write_loom(path, adata)`` becomes ``scanpy_loomio.write_loom_full(path, adata)``.
    ``import scanpy_loomio`` is added once when needed. Lines that only copied the index into a ``CellID`` or
    ``Gene`` column so that ``write_loom`` would keep the names are removed when that object is written later
    in the same source and the column name is used nowhere else. Formatting and comments are kept.
    Use :func:`migrate_path` to see notes about calls that need a look by hand.

    Parameters
    ----------
    source
        Python source code.

    Returns
    -------
    The rewritten source (equal to ``source`` when there is nothing to rewrite).

    Raises
    ------
    SyntaxError
        When ``source`` is not valid Python 3.
    ImportError
        When libcst is not installed (``pip install 'scanpy-loomio[migrate]'``).

    Examples
    --------
    >>> from scanpy_loomio import migrate_source
    >>> print(migrate_source('import scanpy as sc\nadata = sc.read_loom("in.loom")\nadata.write_loom("out.loom")\n'))
    import scanpy as sc
    import scanpy_loomio  # noqa: F401
    adata = sc.read_loom_full("in.loom")
    sc.write_loom_full("out.loom", adata)
    <BLANKLINE>
    """
    return _rewrite_file_source(source, "<source>").parts[0]


def migrate_path(path: str | os.PathLike[str], *, write: bool = False) -> list[MigrationResult]:
    r"""Migrate a ``.py`` file, a ``.ipynb`` notebook, or every such file under a directory.

    See :func:`migrate_source` for what is rewritten. In notebooks only code cells change (IPython magics and
    shell escapes are kept as they are); the rest of the JSON is kept.
    Hidden directories, ``__pycache__``, ``site-packages``, ``node_modules`` and virtual environments are skipped.

    Parameters
    ----------
    path
        A file or a directory (searched recursively).
    write
        Replace each changed file (atomically). By default nothing is written: inspect the diffs first.

    Returns
    -------
    One result per file examined, in path order; files that cannot be parsed have ``error`` set and are left alone.

    Examples
    --------
    >>> from pathlib import Path
    >>> from scanpy_loomio import migrate_path
    >>> script = Path(getfixture("tmp_path")) / "pipeline.py"
    >>> _ = script.write_text('import anndata as ad\nadata = ad.io.read_loom("in.loom", X_name="")\n')
    >>> [result] = migrate_path(script)
    >>> print(result.diff)  # doctest: +ELLIPSIS
    --- .../pipeline.py
    +++ .../pipeline.py
    @@ -1,2 +1,3 @@
     import anndata as ad
    -adata = ad.io.read_loom("in.loom", X_name="")
    +import scanpy_loomio
    +adata = scanpy_loomio.read_loom_full("in.loom", X_name="")
    <BLANKLINE>
    >>> result.written
    False
    """
    path = Path(path)
    if not path.exists():
        msg = f"{path}: no such file or directory; expected a .py file, a .ipynb notebook or a directory"
        raise FileNotFoundError(msg)
    files = list(_python_files(path)) if path.is_dir() else [path]
    return [_migrate_file(file, write=write) for file in files]


def _python_files(root: Path) -> Iterator[Path]:
    for folder, directories, files in os.walk(root):
        directories[:] = sorted(
            d
            for d in directories
            if not d.startswith(".") and d not in SKIPPED_DIRECTORIES and not (Path(folder, d) / "pyvenv.cfg").exists()
        )
        for name in sorted(files):
            if name.endswith((".py", ".ipynb")):
                yield Path(folder, name)


def _migrate_file(path: Path, *, write: bool) -> MigrationResult:
    with path.open(encoding="utf-8", newline="") as file:  # newline="": keep \r\n line endings
        original = file.read()
    try:
        if path.suffix == ".ipynb":
            migrated, diff, notes = _migrate_notebook(original, str(path))
        else:
            result = _rewrite_file_source(original, str(path))
            migrated, notes = result.parts[0], result.notes[0]
            diff = _diff(original, migrated, str(path))
    except (SyntaxError, ValueError) as error:
        return MigrationResult(path, original, original, "", error=str(error))
    written = write and migrated != original
    if written:
        _replace_text(path, migrated)
    return MigrationResult(path, original, migrated, diff, tuple(notes), written=written)


def _replace_text(path: Path, text: str) -> None:
    with atomic_target(path) as tmp, tmp.open("w", encoding="utf-8", newline="") as file:
        file.write(text)


def _diff(before: str, after: str, name: str) -> str:
    lines = difflib.unified_diff(before.splitlines(keepends=True), after.splitlines(keepends=True), name, name)
    return "".join(line if line.endswith("\n") else f"{line}\n\\ No newline at end of file\n" for line in lines)


# notebooks ----------------------------------------------------------------------------------------------------


def _migrate_notebook(text: str, name: str) -> tuple[str, str, list[str]]:
    """Rewrite the code cells of a notebook's JSON text; returns the new text, a diff and notes."""
    try:
        notebook = json.loads(text)
    except json.JSONDecodeError as error:
        msg = f"{name}: not a notebook: invalid JSON ({error})"
        raise ValueError(msg) from None
    language = notebook.get("metadata", {}).get("language_info", {}).get("name", "python")
    if language != "python":
        return text, "", []
    rewriter = _rewriter()
    cells, skipped = [], {}
    for number, cell in enumerate(notebook.get("cells", []), start=1):
        if cell.get("cell_type") != "code" or not _is_python_cell(source := _cell_text(cell)):
            continue
        problem = rewriter.syntax_problem(_hide_ipython(source))
        if problem is None:
            cells.append((number, cell))
        else:
            skipped[number] = [f"cell {number}: left alone: not valid Python 3: {problem}"]
    sources = [_cell_text(cell) for _, cell in cells]
    result = rewriter.rewrite_parts(
        [_hide_ipython(source) for source in sources], [f"cell {number}, " for number, _ in cells]
    )
    notes_by_cell = skipped | {number: notes for (number, _), notes in zip(cells, result.notes, strict=True)}
    notes = [note for _, cell_notes in sorted(notes_by_cell.items()) for note in cell_notes]
    diffs = []
    for (number, cell), before, after in zip(cells, sources, result.parts, strict=True):
        after = _restore_ipython(after)
        if after != before:
            cell["source"] = _split_lines(after) if isinstance(cell["source"], list) else after
            diffs.append(_diff(before, after, f"{name} [cell {number}]"))
    if not diffs:
        return text, "", notes
    return _dump_like(notebook, text), "".join(diffs), notes


def _cell_text(cell: dict) -> str:
    source = cell.get("source", "")
    return "".join(source) if isinstance(source, list) else source


def _split_lines(text: str) -> list[str]:
    """Split like notebook files store sources: every line keeps its newline except the last."""
    lines = text.split("\n")
    return [f"{line}\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])


def _is_python_cell(source: str) -> bool:
    first = source.lstrip().split(maxsplit=1)[0] if source.strip() else ""
    return not first.startswith("%%") or first in PYTHON_CELL_MAGICS


def _is_ipython_line(line: str) -> bool:
    stripped = line.strip()
    return stripped.startswith(("%", "!", "?")) or (stripped.endswith("?") and "#" not in stripped)


def _hide_ipython(source: str) -> str:
    """Replace IPython-only lines with a valid placeholder statement that carries the line in a comment."""
    lines = source.split("\n")
    for index, line in enumerate(lines):
        if _is_ipython_line(line):
            indent = line[: len(line) - len(line.lstrip())]
            lines[index] = f"{indent}{_MAGIC_MARKER}{line[len(indent) :]}"
    return "\n".join(lines)


def _restore_ipython(source: str) -> str:
    lines = source.split("\n")
    for index, line in enumerate(lines):
        stripped = line.lstrip()
        if stripped.startswith(_MAGIC_MARKER):
            lines[index] = line[: len(line) - len(stripped)] + stripped[len(_MAGIC_MARKER) :]
    return "\n".join(lines)


def _dump_like(notebook: dict, original: str) -> str:
    """Serialize a notebook the way its original text was serialized (indentation, final newline)."""
    second_line = original.split("\n", 2)[1] if original.count("\n") >= 1 else ""
    indent = len(second_line) - len(second_line.lstrip(" ")) if second_line.strip() else None
    text = json.dumps(notebook, indent=indent, ensure_ascii=False)
    return text + "\n" if original.endswith("\n") else text
