"""The argument parser of ``scanpy-loomio``, and the docs' CLI reference made from it."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Protocol

from scanpy_loomio.cli.commands import (
    cmd_concat,
    cmd_conventions,
    cmd_convert,
    cmd_inspect,
    cmd_migrate,
    cmd_update,
    cmd_upgrade,
    cmd_validate,
    cmd_velocity,
)
from scanpy_loomio.cli.common import PROG, examples

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["build_parser", "reference_markdown"]


class _FormatterClass(Protocol):
    """What ``formatter_class`` is: argparse calls it with the program name to format a parser's help."""

    def __call__(self, *, prog: str) -> argparse.HelpFormatter: ...


def _formatter(width: int | None) -> _FormatterClass:
    if width is None:
        return argparse.RawDescriptionHelpFormatter
    return lambda prog: argparse.RawDescriptionHelpFormatter(prog, width=width)


@dataclass(frozen=True)
class _Commands:
    """The subcommands, and the help formatter of each command's parser."""

    action: argparse._SubParsersAction[argparse.ArgumentParser]
    formatter_class: _FormatterClass


def _add_command(
    commands: _Commands, name: str, handler: Callable[[argparse.Namespace], int], summary: str, epilog: str
) -> argparse.ArgumentParser:
    parser = commands.action.add_parser(
        name,
        help=summary,
        description=summary,
        epilog=epilog,
        formatter_class=commands.formatter_class,
    )
    parser.set_defaults(handler=handler)
    return parser


def build_parser(*, width: int | None = None) -> argparse.ArgumentParser:
    """The argument parser of ``scanpy-loomio`` (the docs' CLI reference is generated from it).

    Parameters
    ----------
    width
        Width of the help text; ``None`` fits the terminal.

    Examples
    --------
    >>> from scanpy_loomio.cli import build_parser
    >>> build_parser().parse_args(["inspect", "pbmc.loom"]).file
    'pbmc.loom'
    """
    # imported here, as the commands import the package's functions: see commands.py
    from scanpy_loomio.conventions import CONVENTIONS, DEFAULT_CONVENTION

    names = ", ".join(CONVENTIONS)
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Lossless AnnData <-> loom conversion, inspection and validation, and pipeline migration.",
        epilog=examples(
            f"{PROG} convert pbmc.h5ad pbmc.loom",
            f"{PROG} inspect pbmc.loom",
            f"{PROG} validate pbmc.loom --conventions velocyto",
            f"{PROG} migrate analysis/ --write",
            f"{PROG} upgrade legacy.loom",
        )
        + f"\n\nRun `{PROG} COMMAND --help` for each command's options.",
        formatter_class=_formatter(width),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of errors")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what reading detects and chooses")
    commands = _Commands(
        parser.add_subparsers(title="commands", metavar="COMMAND", dest="command", required=True), _formatter(width)
    )

    convert = _add_command(
        commands,
        "convert",
        cmd_convert,
        "Convert .h5ad or .zarr to .loom, .loom to .h5ad or .zarr, or .loom to .loom in another convention.",
        examples(
            f"{PROG} convert pbmc.h5ad pbmc.loom",
            f"{PROG} convert pbmc.loom pbmc.h5ad",
            f"{PROG} convert pbmc.h5ad pbmc_for_seurat.loom --convention seuratdisk",
            f"{PROG} convert velocyto.loom scvelo.loom --convention velocyto --fill-missing-layers",
            f"{PROG} convert legacy.loom rewritten.loom --obs-names index --var-names index",
        ),
    )
    convert.add_argument("input", help="the file to read (.h5ad, .zarr or .loom)")
    convert.add_argument("output", help="the file to write (.loom, .h5ad or .zarr)")
    convert.add_argument(
        "--convention",
        metavar="NAME",
        help=f"the tool the .loom file is for ({names}); default: {DEFAULT_CONVENTION}",
    )
    convert.add_argument(
        "--from-convention", metavar="NAME", help="read the input .loom in this convention instead of detecting it"
    )
    convert.add_argument("--x-name", metavar="LAYER", help="read this layer of the input .loom as X")
    convert.add_argument(
        "--obs-names", metavar="ATTR", help="read the cell names of the input .loom from this attribute"
    )
    convert.add_argument(
        "--var-names", metavar="ATTR", help="read the gene names of the input .loom from this attribute"
    )
    convert.add_argument(
        "--fill-missing-layers",
        action="store_true",
        help="write all-zero layers the target tool needs but the data lacks",
    )
    convert.add_argument(
        "--allow-lossy",
        action="store_true",
        help="leave out (with a warning) what cannot be stored exactly, instead of failing",
    )
    convert.add_argument(
        "--repair-bytes-text", action="store_true", help="turn loompy 3's \"b'...'\" text back into text"
    )
    convert.add_argument("--compression-level", type=int, metavar="0-9", help="gzip level (default 2)")
    convert.add_argument("--force", action="store_true", help="replace the output file if it exists")
    convert.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")

    concat = _add_command(
        commands,
        "concat",
        cmd_concat,
        "Concatenate loom files into one as anndata.concat concatenates AnnData objects (same options and "
        "defaults), a band of cells at a time; atomically. Prints what was written and what merge rules left out.",
        examples(
            f"{PROG} concat all.loom sample1.loom sample2.loom --label sample --keys s1,s2 --index-unique -",
            f"{PROG} concat all.loom velocyto/*.loom --var-key Accession --join outer",
        ),
    )
    concat.add_argument("output", help="the .loom file to write")
    concat.add_argument("inputs", nargs="+", help="the .loom files, in order")
    concat.add_argument("--axis", choices=("obs", "var"), default="obs", help="stack cells (obs) or genes (var)")
    concat.add_argument(
        "--join", choices=("inner", "outer"), default="inner", help="keep shared genes (inner) or all (outer)"
    )
    concat.add_argument("--merge", choices=("same", "unique", "first", "only"), help="how to keep gene annotations")
    concat.add_argument("--uns-merge", choices=("same", "unique", "first", "only"), help="how to keep uns")
    concat.add_argument("--label", metavar="COLUMN", help="obs column naming each cell's input")
    concat.add_argument("--keys", metavar="K1,K2,...", help="the names of the inputs in --label (default 0, 1, …)")
    concat.add_argument("--index-unique", metavar="SEP", help="append SEP and the key to each cell name")
    concat.add_argument("--fill-value", type=float, metavar="VALUE", help="value of an outer join's missing entries")
    concat.add_argument("--var-key", metavar="ATTR", help="align genes on this row attribute (e.g. Accession)")
    concat.add_argument(
        "--convention", metavar="NAME", help=f"the tool the output is for ({names}); default: the inputs'"
    )
    concat.add_argument("--fill-missing-layers", action="store_true", help="add all-zero layers the tool needs")
    concat.add_argument("--allow-lossy", action="store_true", help="leave out what cannot be stored exactly")
    concat.add_argument("--force", action="store_true", help="replace the output file if it exists")
    concat.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")

    velocity = _add_command(
        commands,
        "velocity",
        cmd_velocity,
        "Add velocyto's spliced/unspliced/ambiguous layers to a processed .h5ad file, matching cells by barcode "
        "and sample and genes by gene_ids or name; prints the matching report.",
        examples(
            f"{PROG} velocity processed.h5ad sample1.loom sample2.loom -o velocity.h5ad",
            f"{PROG} velocity processed.h5ad s1.loom s2.loom -o out.h5ad --sample-map 0=s1 --sample-map 1=s2",
            f"{PROG} velocity processed.h5ad run.loom -o out.h5ad --missing drop",
        ),
    )
    velocity.add_argument("processed", help="the processed .h5ad file")
    velocity.add_argument("looms", nargs="+", help="velocyto .loom files")
    velocity.add_argument("-o", "--output", required=True, metavar="OUT", help="the .h5ad file to write")
    velocity.add_argument(
        "--sample-map",
        action="append",
        metavar="TAG=SAMPLE",
        help="the loom sample a name prefix/suffix stands for; repeatable",
    )
    velocity.add_argument("--sample-column", metavar="COLUMN", help="obs column holding each cell's loom sample")
    velocity.add_argument(
        "--missing",
        choices=("raise", "drop", "zeros"),
        default="raise",
        help="cells without a loom cell: fail (default), drop them, or give them zeros",
    )
    velocity.add_argument("--force", action="store_true", help="replace OUT if it exists")

    update = _add_command(
        commands,
        "update",
        cmd_update,
        "Write the annotations (obs/var columns, embeddings, graphs, uns) of an .h5ad file into an existing loom "
        "file with the same cells, genes and matrices, without rewriting its matrices; atomically.",
        examples(
            f"{PROG} update pbmc.loom annotated.h5ad",
            f"{PROG} update pbmc.loom annotated.h5ad --convention scope",
        ),
    )
    update.add_argument("file", help="the .loom file to update")
    update.add_argument("annotations", help="an .h5ad file of the same cells and genes (read from the loom file)")
    update.add_argument(
        "--convention", metavar="NAME", help="write the annotations for this tool; default: the file's own"
    )
    update.add_argument("--fill-missing-layers", action="store_true", help="add all-zero layers the tool needs")
    update.add_argument(
        "--allow-lossy", action="store_true", help="leave out what cannot be stored exactly, with a warning"
    )
    update.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")

    upgrade = _add_command(
        commands,
        "upgrade",
        cmd_upgrade,
        "Make a loom file written by anndata's write_loom read back with its cell and gene names and its "
        "categoricals: adds this package's record, keeping the matrices as stored; atomically. Text columns with "
        "fewer distinct values than cells (genes) become categoricals, as write_h5ad makes them.",
        examples(
            f"{PROG} upgrade legacy.loom",
            f"{PROG} upgrade legacy.loom -o upgraded.loom",
            f"{PROG} upgrade legacy.loom --obs-names cell_id --no-categoricals",
        ),
    )
    upgrade.add_argument("file", help="the .loom file to upgrade (replaced, unless -o is given)")
    upgrade.add_argument("--obs-names", metavar="ATTR", help="the column attribute holding the cell names")
    upgrade.add_argument("--var-names", metavar="ATTR", help="the row attribute holding the gene names")
    upgrade.add_argument("--no-categoricals", action="store_true", help="keep text columns as text")
    upgrade.add_argument("-o", "--output", metavar="OUT", help="write the upgraded file here, leaving FILE as it is")
    upgrade.add_argument("--force", action="store_true", help="replace OUT if it exists")
    upgrade.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")

    inspect = _add_command(
        commands,
        "inspect",
        cmd_inspect,
        "Summarize a loom file: spec version, convention and why, shapes, layers, attributes, graphs, global "
        "attributes, this package's record, and what plain sc.read_loom would lose.",
        examples(f"{PROG} inspect pbmc.loom", f"{PROG} inspect pbmc.loom --json > pbmc-summary.json"),
    )
    inspect.add_argument("file", help="the .loom file (opened read-only)")
    inspect.add_argument("--json", action="store_true", help="print the summary as JSON")

    validate = _add_command(
        commands,
        "validate",
        cmd_validate,
        "Check a loom file against the loom spec, this package's record and, on request, what tools need. "
        "Every problem is reported; the exit status is 1 when there are errors.",
        examples(
            f"{PROG} validate pbmc.loom",
            f"{PROG} validate pbmc.loom --conventions velocyto",
            f"{PROG} validate pbmc.loom --conventions seuratdisk,loomexperiment --errors-only",
            f"{PROG} validate pbmc.loom --conventions all --json",
        ),
    )
    validate.add_argument("file", help="the .loom file (opened read-only)")
    validate.add_argument(
        "--conventions",
        action="append",
        default=[],
        metavar="NAME[,NAME]",
        help=f"also check what these tools need ({names}, or all); repeatable",
    )
    validate.add_argument("--strict", action="store_true", help="exit with status 1 on warnings too")
    validate.add_argument("--errors-only", action="store_true", help="list errors only")
    validate.add_argument("--no-read", action="store_true", help="skip the test read with read_loom_full")
    validate.add_argument("--json", action="store_true", help="print the report as JSON")

    conventions = _add_command(
        commands,
        "conventions",
        cmd_conventions,
        "Show the convention table: which attributes each tool uses for names, layers, embeddings and metadata.",
        examples(f"{PROG} conventions", f"{PROG} conventions velocyto", f"{PROG} conventions --markdown > table.md"),
    )
    conventions.add_argument("name", nargs="?", help="show this convention in full")
    output = conventions.add_mutually_exclusive_group()
    output.add_argument("--markdown", action="store_true", help="print the full table as Markdown")
    output.add_argument("--json", action="store_true", help="print the table as JSON")

    migrate = _add_command(
        commands,
        "migrate",
        cmd_migrate,
        "Rewrite a pipeline's Python files and notebooks from anndata's loom functions (sc.read_loom, "
        "adata.write_loom, …) to this package's, keeping formatting and comments. Shows a diff; writes only "
        "with --write.",
        examples(
            f"{PROG} migrate pipeline.py",
            f"{PROG} migrate analysis/ --write",
            f"{PROG} migrate notebooks/ --check   # exit status 1 if anything would change",
        ),
    )
    migrate.add_argument("path", help="a .py file, a .ipynb notebook, or a directory (searched recursively)")
    migrate.add_argument("--write", action="store_true", help="replace the files (otherwise only show the diff)")
    migrate.add_argument("--check", action="store_true", help="exit with status 1 if any file would change")
    migrate.add_argument("-q", "--quiet", action="store_true", help="do not print the diff")
    return parser


def reference_markdown(width: int = 100) -> str:
    """The help of every command as Markdown, for the documentation's CLI reference.

    Examples
    --------
    >>> from scanpy_loomio.cli import reference_markdown
    >>> print(reference_markdown().splitlines()[0])
    ## `scanpy-loomio`
    """
    parser = build_parser(width=width)
    [commands] = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    sections = [("scanpy-loomio", parser)] + [(f"scanpy-loomio {n}", p) for n, p in commands.choices.items()]
    return "\n".join(f"## `{title}`\n\n```text\n{p.format_help().rstrip()}\n```\n" for title, p in sections)


def _version() -> str:
    try:
        return version("scanpy-loomio")
    except PackageNotFoundError:
        return "unknown"
