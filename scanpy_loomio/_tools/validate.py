"""Validating a loom file: every problem found, not just the first.

Three kinds of checks, each collecting :class:`Problem` entries instead of stopping:

- the loom specification (the rules of loompy's ``LoomValidator``, plus vertex index ranges and text encoding);
  problems loompy's own validator also reports are marked, since ``loompy.connect`` (and so anndata's ``read_loom``)
  refuses such files;
- this package's record and codec attributes, and a read of everything but the matrices with
  :func:`~scanpy_loomio.read_loom_full`, whose warnings are reported too;
- on request, what a tool needs (``conventions=["velocyto"]``), from its entry in the convention table.
"""

from __future__ import annotations

import fnmatch
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py

from scanpy_loomio._codecs.text import decode_text
from scanpy_loomio._elements.globals import GLOBALS_GROUP, read_globals
from scanpy_loomio._errors import LoomFormatError
from scanpy_loomio._guards import check_structure, open_read_only
from scanpy_loomio._read.detect import attribute_names
from scanpy_loomio._read.plan import ReadPlan, plan_read
from scanpy_loomio._record.checks import tag_problem, tagged_matrices
from scanpy_loomio._record.record import METADATA_KEY, SIDECAR_GROUP, Metadata
from scanpy_loomio._spec.facts import LOOM_GROUPS, is_text_dtype, spec_version
from scanpy_loomio._tools.report import Collector, Problem, Severity, ValidationReport
from scanpy_loomio._tools.spec_problems import file_convention, spec_problems
from scanpy_loomio.conventions import CONVENTIONS, Convention, get_convention

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["Problem", "ValidationReport", "validate_loom"]


# -- this package's record ----------------------------------------------------------------------------------------


def _record_problems(file: h5py.File, out: Collector, globals_: dict[str, Any]) -> None:
    raw = globals_.get(METADATA_KEY)
    if raw is None:
        return
    check = "scanpy_loomio"
    where = (
        f"/{GLOBALS_GROUP}/{METADATA_KEY}"
        if METADATA_KEY in file.get(GLOBALS_GROUP, {})
        else f"/ (attribute {METADATA_KEY})"
    )
    try:
        record = Metadata.from_json(raw)
    except ValueError as err:
        out.add(
            "error",
            where,
            f"an unreadable scanpy_loomio record: {err}",
            "delete it to read the file as plain loom",
            check=check,
        )
        return
    problem = record.problem()
    if problem:
        out.add(
            "error",
            where,
            f"an inconsistent scanpy_loomio record: {problem}",
            "delete it to read the file as plain loom",
            check=check,
        )
        return
    if record.convention not in CONVENTIONS:
        out.add(
            "warning",
            where,
            f"records the convention {record.convention!r}, which this installation does not know",
            check=check,
        )
    removed = "; another tool probably removed it, so it will be missing when read"
    for axis, loom in (("obs", "col"), ("var", "row")):
        axis_record = getattr(record, axis)
        group = file.get(f"{loom}_attrs")
        present = attribute_names(group)[0]
        if axis_record.index_attr is not None and axis_record.index_attr not in present:
            out.add(
                "warning",
                f"/{loom}_attrs/{axis_record.index_attr}",
                f"missing, though the record names it as the {axis} names; names will be looked for elsewhere",
                check=check,
            )
        for key, attr in axis_record.columns:
            if attr not in present:
                out.add(
                    "warning", f"/{loom}_attrs/{attr}", f"missing (the {axis} column {key!r}){removed}", check=check
                )
        for key, entry in axis_record.multi.items():
            if entry.storage == "sidecar":
                if f"{SIDECAR_GROUP}/{axis}m/{key}" not in file:
                    out.add(
                        "warning",
                        f"/{SIDECAR_GROUP}/{axis}m/{key}",
                        f"missing ({axis}m[{key!r}]){removed}",
                        check=check,
                    )
            else:
                for attr in entry.attrs:
                    if attr not in present:
                        out.add(
                            "warning",
                            f"/{loom}_attrs/{attr}",
                            f"missing (part of {axis}m[{key!r}]){removed}",
                            check=check,
                        )
        for key, graph in axis_record.graphs.items():
            path = f"{loom}_graphs/{graph}" if graph else f"{SIDECAR_GROUP}/{axis}p/{key}"
            if path not in file:
                out.add("warning", f"/{path}", f"missing ({axis}p[{key!r}]){removed}", check=check)
    layers = file.get("layers")
    for key, name in record.layers:
        if not (isinstance(layers, h5py.Group) and name in layers):
            out.add("warning", f"/layers/{name}", f"missing (layer {key!r}){removed}", check=check)
    for key in record.uns_globals:
        if key not in globals_:
            out.add("warning", f"/{GLOBALS_GROUP}/{key}", f"missing (uns[{key!r}]){removed}", check=check)
    if record.raw and f"{SIDECAR_GROUP}/raw" not in file:
        out.add("warning", f"/{SIDECAR_GROUP}/raw", f"missing (raw){removed}", check=check)
    for where, obj, graph in tagged_matrices(file):
        tag_error = tag_problem(obj, graph=graph)
        if tag_error is not None:
            out.add(
                "error",
                where,
                f"a codec attribute with {tag_error}; expected the description this package writes",
                f"delete the attribute scanpy_loomio_codec of {where} to read the values as plain loom",
                check=check,
            )


def _read_problems(plan: ReadPlan, out: Collector) -> None:
    """What reading everything but the matrices as :func:`read_loom_full` does reports: its warnings and errors."""
    if plan.error is not None:
        out.add("error", "/", f"scanpy_loomio.read_loom_full cannot read it: {plan.error}", check="read")
    for message in plan.warnings:
        out.add("warning", "/", f"reading it: {message}", check="read")


# -- what a tool needs ----------------------------------------------------------------------------------------------


def _registered_paths(convention: Convention, globals_: dict[str, Any]) -> set[str]:
    """2-D attributes the tool itself writes and reads.

    Those its global registries list (LoomExperiment's ``ReducedDimsName<i>``, ``ReducedDimsColNames<i>``) and its
    factor flags (``colnames_factor``).
    """
    form = convention.embedding_form
    patterns = [r.format(i="*") for r in (form.registry_global, form.components_registry_global) if r]
    found = {str(v).rsplit("/", 1)[-1] for k, v in globals_.items() if any(fnmatch.fnmatchcase(k, p) for p in patterns)}
    if convention.r_types.factors == "flags":
        found.add(convention.r_types.factor_flags_attr)
    return found


def _convention_problems(file: h5py.File, out: Collector, convention: Convention, globals_: dict[str, Any]) -> None:
    check = f"convention:{convention.name}"
    tool = convention.tool
    rewrite = f"rewrite it for the tool: scanpy-loomio convert IN OUT --convention {convention.name}"
    for axis, names in (("col", convention.cell_names), ("row", convention.gene_names)):
        group = file.get(f"{axis}_attrs")
        wanted = names[0]
        dset = group.get(wanted) if isinstance(group, h5py.Group) else None
        what = "cell" if axis == "col" else "gene"
        if not (isinstance(dset, h5py.Dataset) and dset.ndim == 1 and is_text_dtype(dset.dtype)):
            out.add(
                "error",
                f"/{axis}_attrs/{wanted}",
                f"missing (the {what} names for {tool})",
                rewrite,
                check=check,
            )
            continue
        values = decode_text(dset[()], where=dset.name)
        repeats = len(values) - len(set(values))
        if repeats:
            out.add(
                "warning",
                f"/{axis}_attrs/{wanted}",
                f"{repeats} repeated {what} names; {tool} may expect unique ones",
                check=check,
            )
    layers = file.get("layers")
    for layer in convention.required_layers:
        if not (isinstance(layers, h5py.Group) and layer in layers):
            out.add(
                "error",
                f"/layers/{layer}",
                f"missing (a layer {tool} needs: {', '.join(convention.required_layers)})",
                f"add the layer, or {rewrite} --fill-missing-layers",
                check=check,
            )
    if not convention.multidim_attrs:
        allowed = _registered_paths(convention, globals_)
        group = file.get("col_attrs")
        for name, obj in group.items() if isinstance(group, h5py.Group) else ():
            if isinstance(obj, h5py.Dataset) and obj.ndim > 1 and name not in allowed:
                out.add(
                    "error",
                    f"/col_attrs/{name}",
                    f"a {obj.ndim}-D column attribute {obj.shape}, which {tool} cannot read",
                    rewrite,
                    check=check,
                )
    version = out.report.spec_version
    accepted = convention.accepted_spec_versions
    if version not in accepted:
        # an unstated version matters to tools that read one version only (SeuratDisk needs 3.0.0)
        severity: Severity = "warning" if version is None and len(accepted) > 1 else "error"
        found = f"loom spec {version}" if version else "no LOOM_SPEC_VERSION"
        out.add(severity, "/", f"{found}; {tool} reads spec {', '.join(accepted)}", rewrite, check=check)
    if not convention.sidecar:
        allowed_groups = set(LOOM_GROUPS) | ({GLOBALS_GROUP} if convention.global_layout == "datasets" else set())
        for name in file:
            if name not in allowed_groups:
                out.add(
                    "error",
                    f"/{name}",
                    f"an extra top-level member; {tool} accepts only {sorted(allowed_groups)}",
                    rewrite,
                    check=check,
                )
    for axis, base in (("col", convention.graph_index_base), ("row", convention.graph_index_base)):
        graphs = file.get(f"{axis}_graphs")
        for name, graph in graphs.items() if isinstance(graphs, h5py.Group) else ():
            for part, expected in zip("ab", base, strict=True):
                dset = graph.get(part) if isinstance(graph, h5py.Group) else None
                if expected == 1 and isinstance(dset, h5py.Dataset) and dset.size and dset[()].min() == 0:
                    out.add(
                        "error",
                        f"/{axis}_graphs/{name}/{part}",
                        f"vertex index 0; {tool} counts {part} from 1",
                        rewrite,
                        check=check,
                    )


# -- entry point ---------------------------------------------------------------------------------------------------


def _resolve_conventions(conventions: Iterable[str | Convention]) -> list[Convention]:
    resolved: list[Convention] = []
    for item in conventions:
        if isinstance(item, str) and item == "all":
            resolved.extend(CONVENTIONS.values())
        else:
            resolved.append(get_convention(item))
    return list({c.name: c for c in resolved}.values())


def validate_loom(
    filename: str | os.PathLike[str], *, conventions: Iterable[str | Convention] = (), read: bool = True
) -> ValidationReport:
    """Check a loom file against the loom spec, this package's record, and what given tools need.

    Every problem is collected; nothing stops at the first. The file is opened read-only and never changed.

    Parameters
    ----------
    filename
        The ``.loom`` file.
    conventions
        Names of conventions (tools) whose needs to check, from :data:`scanpy_loomio.conventions.CONVENTIONS`,
        or ``"all"``.
    read
        Also read everything but the matrices with :func:`~scanpy_loomio.read_loom_full` and report its warnings.

    Returns
    -------
    The report: ``problems``, :attr:`~ValidationReport.ok`, and a text rendering.

    Raises
    ------
    ValueError
        For an unknown convention name.
    OSError
        When the file cannot be opened at all (missing, not HDF5).

    Examples
    --------
    >>> import scanpy as sc
    >>> import scanpy_loomio
    >>> scanpy_loomio.write_loom_full("pbmc.loom", sc.datasets.pbmc68k_reduced())
    >>> scanpy_loomio.validate_loom("pbmc.loom", conventions=["seuratdisk"]).ok  # no 2-D attributes by default
    True
    >>> report = scanpy_loomio.validate_loom("pbmc.loom", conventions=["loomexperiment"])
    >>> report.ok
    False
    >>> print(report.errors[0])  # doctest: +ELLIPSIS
    error: /col_attrs/colnames: missing (the cell names for LoomExperiment, sceasy). Fix: ...
    """
    path = Path(filename)
    checked = _resolve_conventions(conventions)
    report = ValidationReport(path, conventions=tuple(c.name for c in checked))
    out = Collector(report)
    with open_read_only(path) as file:
        try:
            check_structure(file, path)
        except LoomFormatError as err:
            # links or datasets that reach outside the file: nothing else is looked at
            out.add("error", "/", str(err).removeprefix(f"{path}: "))
            return report
        globals_ = read_globals(file)
        report.spec_version = spec_version(globals_)
        spec_problems(file, out, globals_, file_convention(file, globals_))
        _record_problems(file, out, globals_)
        for convention in checked:
            _convention_problems(file, out, convention, globals_)
        if read and not any(
            p.where in ("/matrix", "/row_attrs", "/col_attrs") and p.severity == "error" for p in report.problems
        ):
            _read_problems(plan_read(file, path), out)
    return report
