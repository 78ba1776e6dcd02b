"""One function per command: each checks its arguments, calls one public function of the package and prints.

No loom format logic lives here. The package's functions (and anndata) are imported inside each command, when it
runs, not with this module: the parser (``--help``, the docs' CLI reference) needs none of them, so the command line
starts without importing anndata or scanpy once ``import scanpy_loomio`` no longer imports them itself (today it does,
to add its functions to scanpy).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from scanpy_loomio.cli.common import FAILED, OK, PROG, UsageError, convention_names, input_file, kind

if TYPE_CHECKING:
    import argparse

__all__ = [
    "cmd_concat",
    "cmd_conventions",
    "cmd_convert",
    "cmd_inspect",
    "cmd_migrate",
    "cmd_update",
    "cmd_upgrade",
    "cmd_validate",
    "cmd_velocity",
]


def cmd_convert(args: argparse.Namespace) -> int:
    """Convert between .h5ad/.zarr and .loom, or rewrite a .loom file in another convention."""
    # imported here: the other commands do not pay for anndata's import
    from scanpy_loomio._tools.convert import convert_file

    convention_names(args.convention, args.from_convention)
    source = input_file(args.input, store=True)
    target = Path(args.output)
    kinds = (kind(source), kind(target))
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
        convention = f" ({report.convention} convention)" if report.convention else ""
        print(f"{source} -> {target}{convention}: {report.shape[0]} cells × {report.shape[1]} genes")
    return OK


def cmd_concat(args: argparse.Namespace) -> int:
    """Concatenate loom files into one, as anndata.concat does, without loading the matrices."""
    import scanpy_loomio

    convention_names(args.convention)
    sources = [input_file(path) for path in args.inputs]
    target = Path(args.output)
    for path in (target, *sources):
        if kind(path) != "loom":
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

    source = input_file(args.processed)
    looms = [input_file(path) for path in args.looms]
    target = Path(args.output)
    if kind(source) != "h5ad" or kind(target) != "h5ad" or any(kind(p) != "loom" for p in looms):
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

    convention_names(args.convention)
    target = input_file(args.file)
    source = input_file(args.annotations)
    if (kind(target), kind(source)) != ("loom", "h5ad"):
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

    source = input_file(args.file)
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

    summary = scanpy_loomio.inspect_loom(input_file(args.file))
    print(json.dumps(summary.to_dict(), indent=2, default=str) if args.json else summary.render())
    return OK


def cmd_validate(args: argparse.Namespace) -> int:
    """Check a loom file; exit status 1 when there are errors."""
    import scanpy_loomio

    names = [name for item in args.conventions for name in item.split(",") if name]
    convention_names(*names)
    report = scanpy_loomio.validate_loom(input_file(args.file), conventions=names, read=not args.no_read)
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
    from scanpy_loomio.conventions import CONVENTIONS, get_convention
    from scanpy_loomio.conventions.render import (
        convention_details,
        conventions_json,
        conventions_summary,
        conventions_table,
    )

    if args.name:
        convention_names(args.name)
        found = get_convention(args.name)
        chosen = {found.name: found}
    else:
        chosen = dict(CONVENTIONS)
    if args.json:
        print(json.dumps(conventions_json(chosen), indent=2))
    elif args.markdown:
        print(conventions_table(chosen))
    elif args.name:
        print(convention_details(found))
    else:
        print(f"{conventions_summary(chosen.values())}\n\n{PROG} conventions NAME shows one convention in full.")
    return OK


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
