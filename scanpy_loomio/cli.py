"""The ``scanpy-loomio`` command line: a thin layer over the package's public functions.

Every command calls one public function (:func:`~scanpy_loomio.write_loom_full`, :func:`~scanpy_loomio.read_loom_full`,
:func:`~scanpy_loomio.inspect_loom`, :func:`~scanpy_loomio.validate_loom`, :func:`~scanpy_loomio.migrate_path`, …);
no loom format logic lives here. Errors print one line (a traceback only with ``--debug``); the exit status is
0 on success, 1 when the command failed or found errors, 2 for usage errors.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["build_parser", "main", "reference_markdown"]

PROG = "scanpy-loomio"
#: Exit statuses.
OK, FAILED, USAGE = 0, 1, 2
H5AD_SUFFIXES = (".h5ad",)
LOOM_SUFFIXES = (".loom",)
ZARR_SUFFIXES = (".zarr",)


class UsageError(Exception):
    """A command was called with arguments that cannot work (exit status 2)."""


def _examples(*lines: str) -> str:
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


# -- commands --------------------------------------------------------------------------------------------------------


def _input_file(path: str, *, store: bool = False) -> Path:
    file = Path(path)
    if not file.exists():
        msg = f"{file}: no such file"
        raise UsageError(msg)
    if file.is_dir() and not (store and file.suffix.lower() == ".zarr"):
        msg = f"{file}: is a directory; expected a file"
        raise UsageError(msg)
    return file


def _convention_names(*names: str | None) -> None:
    """Refuse an unknown convention name as a usage error, before anything is read or written."""
    from scanpy_loomio.conventions import get_convention

    for name in names:
        if name is not None and name != "all":
            try:
                get_convention(name)
            except ValueError as err:
                raise UsageError(str(err)) from None


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in LOOM_SUFFIXES:
        return "loom"
    if suffix in H5AD_SUFFIXES:
        return "h5ad"
    if suffix in ZARR_SUFFIXES:
        return "zarr"
    msg = f"{path}: cannot tell the format from the suffix {suffix!r}; expected .loom, .h5ad or .zarr"
    raise UsageError(msg)


def cmd_convert(args: argparse.Namespace) -> int:
    """Convert between .h5ad/.zarr and .loom, or rewrite a .loom file in another convention."""
    # imported here: the other commands do not pay for anndata's import
    from scanpy_loomio._tools.convert import convert_file

    _convention_names(args.convention, args.from_convention)
    source = _input_file(args.input, store=True)
    target = Path(args.output)
    kinds = (_kind(source), _kind(target))
    if kinds == ("h5ad", "h5ad"):
        msg = "both files are .h5ad; convert reads or writes a .loom file (use anndata to copy .h5ad files)"
        raise UsageError(msg)
    if "loom" not in kinds:
        msg = "neither file is .loom; convert reads or writes a .loom file (use anndata between .h5ad and .zarr)"
        raise UsageError(msg)
    if target.exists() and not args.force:
        msg = f"{target}: exists; pass --force to replace it"
        raise UsageError(msg)
    report = convert_file(
        source,
        target,
        convention=args.convention,
        from_convention=args.from_convention,
        X_name=args.x_name,
        obs_names=args.obs_names,
        var_names=args.var_names,
        repair_bytes_text=args.repair_bytes_text,
        fill_missing_layers=args.fill_missing_layers,
        lossy="warn" if args.allow_lossy else "raise",
        compression_level=args.compression_level,
        progress=not args.quiet and sys.stderr.isatty(),
    )
    if not args.quiet:
        convention = f" ({args.convention} convention)" if report.convention else ""
        print(f"{source} -> {target}{convention}: {report.shape[0]} cells × {report.shape[1]} genes")
    return OK


def cmd_concat(args: argparse.Namespace) -> int:
    """Concatenate loom files into one, as anndata.concat does, without loading the matrices."""
    import scanpy_loomio

    _convention_names(args.convention)
    sources = [_input_file(path) for path in args.inputs]
    target = Path(args.output)
    for path in (target, *sources):
        if _kind(path) != "loom":
            msg = f"{path}: concat reads and writes .loom files"
            raise UsageError(msg)
    if target.exists() and not args.force:
        msg = f"{target}: exists; pass --force to replace it"
        raise UsageError(msg)
    keys = args.keys.split(",") if args.keys else None
    if keys is not None and len(keys) != len(sources):
        msg = f"--keys gives {len(keys)} names for {len(sources)} input files"
        raise UsageError(msg)
    report = scanpy_loomio.concat_loom(
        sources,
        target,
        axis=args.axis,
        join=args.join,
        merge=args.merge,
        uns_merge=args.uns_merge,
        label=args.label,
        keys=keys,
        index_unique=args.index_unique,
        fill_value=args.fill_value,
        var_key=args.var_key,
        convention=args.convention,
        lossy="warn" if args.allow_lossy else "raise",
        fill_missing_layers=args.fill_missing_layers,
    )
    if not args.quiet:
        print(report)
    return OK


def cmd_velocity(args: argparse.Namespace) -> int:
    """Add velocyto's layers to a processed .h5ad file, matched by barcode and gene."""
    import anndata

    import scanpy_loomio

    source = _input_file(args.processed)
    looms = [_input_file(path) for path in args.looms]
    target = Path(args.output)
    if _kind(source) != "h5ad" or _kind(target) != "h5ad" or any(_kind(p) != "loom" for p in looms):
        msg = "velocity reads a processed .h5ad file and .loom files, and writes an .h5ad file"
        raise UsageError(msg)
    if target.exists() and not args.force:
        msg = f"{target}: exists; pass --force to replace it"
        raise UsageError(msg)
    sample_map: dict[str, str] | str | None = None
    if args.sample_column:
        sample_map = args.sample_column
    elif args.sample_map:
        pairs = [item.partition("=") for item in args.sample_map]
        if any(not sep or not tag for tag, sep, _ in pairs):
            msg = "--sample-map takes TAG=SAMPLE pairs"
            raise UsageError(msg)
        sample_map = {tag: sample for tag, _, sample in pairs}
    adata = anndata.read_h5ad(source)
    report = scanpy_loomio.add_velocity_layers(adata, looms, sample_map=sample_map, missing=args.missing)
    adata.write_h5ad(target)
    print(report)
    return OK


def cmd_update(args: argparse.Namespace) -> int:
    """Write the annotations of an .h5ad file into a loom file with the same cells, genes and matrices."""
    import anndata

    import scanpy_loomio

    _convention_names(args.convention)
    target = _input_file(args.file)
    source = _input_file(args.annotations)
    if (_kind(target), _kind(source)) != ("loom", "h5ad"):
        msg = f"expected a .loom file to update and an .h5ad file to take the annotations from; got {target}, {source}"
        raise UsageError(msg)
    adata = anndata.read_h5ad(source)
    scanpy_loomio.update_loom_full(
        target,
        adata,
        convention=args.convention,
        lossy="warn" if args.allow_lossy else "raise",
        fill_missing_layers=args.fill_missing_layers,
    )
    if not args.quiet:
        print(f"{target}: annotations from {source} written; matrices kept")
    return OK


def cmd_upgrade(args: argparse.Namespace) -> int:
    """Add this package's record to a loom file written by anndata's write_loom, keeping its matrices."""
    import scanpy_loomio

    source = _input_file(args.file)
    if args.output is not None and Path(args.output).exists() and not args.force:
        msg = f"{args.output}: exists; pass --force to replace it"
        raise UsageError(msg)
    result = scanpy_loomio.upgrade_loom(
        source,
        obs_names=args.obs_names,
        var_names=args.var_names,
        categoricals=False if args.no_categoricals else "auto",
        output=args.output,
    )
    if not args.quiet:
        print(result.render())
    return OK


def cmd_inspect(args: argparse.Namespace) -> int:
    """Summarize a loom file."""
    import scanpy_loomio

    summary = scanpy_loomio.inspect_loom(_input_file(args.file))
    print(json.dumps(summary.to_dict(), indent=2, default=str) if args.json else summary.render())
    return OK


def cmd_validate(args: argparse.Namespace) -> int:
    """Check a loom file; exit status 1 when there are errors."""
    import scanpy_loomio

    names = [name for item in args.conventions for name in item.split(",") if name]
    _convention_names(*names)
    report = scanpy_loomio.validate_loom(_input_file(args.file), conventions=names, read=not args.no_read)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        shown = report.errors if args.errors_only else report.problems
        lines = [str(p) for p in shown]
        print("\n".join([*lines, report.render().splitlines()[-1]]))
    failed = report.errors or (args.strict and report.warnings)
    return FAILED if failed else OK


def cmd_conventions(args: argparse.Namespace) -> int:
    """Show the convention table."""
    from scanpy_loomio.conventions import CONVENTIONS, conventions_table, get_convention

    if args.name:
        _convention_names(args.name)
        found = get_convention(args.name)
        chosen = {found.name: found}
    else:
        chosen = dict(CONVENTIONS)
    if args.json:
        print(json.dumps({n: _jsonable(c) for n, c in chosen.items()}, indent=2))
    elif args.markdown:
        print(conventions_table(chosen))
    elif args.name:
        print(_convention_details(next(iter(chosen.values()))))
    else:
        print(_convention_rows(chosen.values()))
    return OK


def _jsonable(value: Any) -> Any:
    """Conventions (frozen dataclasses holding read-only mappings) as JSON values; functions are left out."""
    from dataclasses import fields, is_dataclass

    if is_dataclass(value):
        return {
            f.name: _jsonable(getattr(value, f.name)) for f in fields(value) if not callable(getattr(value, f.name))
        }
    if hasattr(value, "items"):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | frozenset | set):
        return [_jsonable(v) for v in value]
    return value


def _convention_rows(conventions: Any) -> str:
    head = ("name", "also", "tool", "cell names", "gene names", "needs layers", "embeddings", "spec")
    rows = [head]
    for c in conventions:
        rows.append(
            (
                c.name,
                ", ".join(c.aliases) or "-",
                c.tool,
                c.cell_names_attr,
                c.gene_names_attr,
                ", ".join(c.required_layers) or "-",
                c.embedding_style,
                c.spec_version or "none",
            )
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(head))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines) + f"\n\n{PROG} conventions NAME shows one convention in full."


def _plain(value: Any) -> str:
    if hasattr(value, "items"):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, tuple | list):
        return ", ".join(map(str, value))
    return str(value)


def _convention_details(convention: Any) -> str:
    from dataclasses import fields, is_dataclass

    lines = [f"{convention.name}: {convention.tool}"]
    for f in fields(convention):
        if f.name in ("name", "tool", "detect"):
            continue
        value = getattr(convention, f.name)
        if is_dataclass(value):
            parts = {g.name: getattr(value, g.name) for g in fields(value)}
            value = "; ".join(f"{k}: {_plain(v)}" for k, v in parts.items() if v) or "-"
        elif hasattr(value, "items"):
            value = dict(value.items()) or "-"
        elif isinstance(value, tuple):
            value = ", ".join(map(str, value)) or "-"
        lines.append(f"  {f.name:<22} {value}")
    return "\n".join(lines)


def cmd_migrate(args: argparse.Namespace) -> int:
    """Rewrite Python files and notebooks to this package's functions."""
    import scanpy_loomio

    target = Path(args.path)
    if not target.exists():
        msg = f"{target}: no such file or directory"
        raise UsageError(msg)
    results = scanpy_loomio.migrate_path(target, write=args.write)
    changed = [r for r in results if r.changed]
    broken = [r for r in results if r.error]
    for result in results:
        if result.diff and not args.quiet:
            sys.stdout.write(result.diff)
        for note in result.notes:
            print(f"{PROG}: note: {result.path}: {note}", file=sys.stderr)
        if result.error:
            print(f"{PROG}: error: {result.error}", file=sys.stderr)
    verb = "rewrote" if args.write else "would rewrite"
    print(f"{PROG}: {verb} {len(changed)} of {len(results)} file(s)", file=sys.stderr)
    if changed and not args.write:
        print(f"{PROG}: run again with --write to apply the changes", file=sys.stderr)
    return FAILED if broken or (args.check and changed) else OK


# -- parser ----------------------------------------------------------------------------------------------------------


def _formatter(width: int | None) -> Callable[[str], argparse.HelpFormatter]:
    if width is None:
        return argparse.RawDescriptionHelpFormatter
    return lambda prog: argparse.RawDescriptionHelpFormatter(prog, width=width)


def _add_command(
    commands: Any, name: str, handler: Callable[[argparse.Namespace], int], summary: str, examples: str
) -> argparse.ArgumentParser:
    parser = commands.add_parser(
        name,
        help=summary,
        description=summary,
        epilog=examples,
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
    from scanpy_loomio.conventions import CONVENTIONS

    names = ", ".join(CONVENTIONS)
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Lossless AnnData <-> loom conversion, inspection and validation, and pipeline migration.",
        epilog=_examples(
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
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", dest="command", required=True)
    commands.formatter_class = _formatter(width)  # for _add_command

    convert = _add_command(
        commands,
        "convert",
        cmd_convert,
        "Convert .h5ad or .zarr to .loom, .loom to .h5ad or .zarr, or .loom to .loom in another convention.",
        _examples(
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
        default="loompy",
        metavar="NAME",
        help=f"the tool the .loom file is for ({names}); default: loompy",
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
    convert.add_argument("--compression-level", type=int, default=2, metavar="0-9", help="gzip level (default 2)")
    convert.add_argument("--force", action="store_true", help="replace the output file if it exists")
    convert.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")

    concat = _add_command(
        commands,
        "concat",
        cmd_concat,
        "Concatenate loom files into one as anndata.concat concatenates AnnData objects (same options and "
        "defaults), a band of cells at a time; atomically. Prints what was written and what merge rules left out.",
        _examples(
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
        _examples(
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
        _examples(
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
        _examples(
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
        _examples(f"{PROG} inspect pbmc.loom", f"{PROG} inspect pbmc.loom --json > pbmc-summary.json"),
    )
    inspect.add_argument("file", help="the .loom file (opened read-only)")
    inspect.add_argument("--json", action="store_true", help="print the summary as JSON")

    validate = _add_command(
        commands,
        "validate",
        cmd_validate,
        "Check a loom file against the loom spec, this package's record and, on request, what tools need. "
        "Every problem is reported; the exit status is 1 when there are errors.",
        _examples(
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
        _examples(f"{PROG} conventions", f"{PROG} conventions velocyto", f"{PROG} conventions --markdown > table.md"),
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
        _examples(
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
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("scanpy-loomio")
    except PackageNotFoundError:
        return "unknown"


# -- running ---------------------------------------------------------------------------------------------------------


def _one_line_warnings(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    text = " ".join(str(message).split())
    print(f"{PROG}: warning: {text}", file=sys.stderr)


def _error_text(err: BaseException) -> str:
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{err.filename}: {err.strerror}"
    text = " ".join(str(err).split())
    return text or type(err).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``scanpy-loomio`` with ``argv`` (default: the command line); returns the exit status.

    Examples
    --------
    >>> from scanpy_loomio.cli import main
    >>> main(["conventions", "--json"]) == 0  # doctest: +ELLIPSIS
    {...
    True
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose:
        logging.basicConfig(format=f"{PROG}: %(message)s", level=logging.INFO)
    previous = warnings.showwarning
    warnings.showwarning = _one_line_warnings
    try:
        return args.handler(args)
    except UsageError as err:
        if args.debug:
            raise
        print(f"{PROG} {args.command}: error: {err}", file=sys.stderr)
        return USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of our output went away (`| head`): stop quietly, and keep Python from complaining at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return FAILED
    except Exception as err:  # every failure becomes one line; --debug shows the traceback
        if args.debug:
            raise
        print(f"{PROG} {args.command}: error: {_error_text(err)}", file=sys.stderr)
        return FAILED
    finally:
        warnings.showwarning = previous


if __name__ == "__main__":  # pragma: no cover - `python -m scanpy_loomio.cli`
    sys.exit(main())
