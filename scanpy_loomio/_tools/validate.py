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
from dataclasses import asdict, dataclass, field
from itertools import chain
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import h5py
import numpy as np

from scanpy_loomio._codecs.text import decode_text
from scanpy_loomio._elements.globals import GLOBALS_GROUP, read_globals
from scanpy_loomio._elements.orientation import stored_transposed
from scanpy_loomio._elements.scope import uses_scope_layout
from scanpy_loomio._errors import LoomFormatError
from scanpy_loomio._guards import check_structure, open_read_only
from scanpy_loomio._read.detect import attribute_names, rank_conventions, summarize
from scanpy_loomio._read.plan import ReadPlan, plan_read
from scanpy_loomio._record.checks import tag_problem, tagged_matrices
from scanpy_loomio._record.record import METADATA_KEY, SIDECAR_GROUP, Metadata
from scanpy_loomio._record.tags import TagError, graph_tag
from scanpy_loomio._spec.facts import LOOM_GROUPS, NUMERIC_DTYPES, is_text_dtype, spec_version
from scanpy_loomio._spec.rules import edge_list_violations, group_violations, layer_violations
from scanpy_loomio.conventions import CONVENTIONS, DEFAULT_CONVENTION, Convention, get_convention
from scanpy_loomio.conventions.model import LOOM_SPEC_VERSIONS

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = ["Problem", "ValidationReport", "validate_loom"]

Severity = Literal["error", "warning"]

AXIS_OF = {"row": "var (genes, rows)", "col": "obs (cells, columns)"}
SPEC_HELP = "see the loom format specification: http://linnarssonlab.org/loompy/format/"


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a file.

    Attributes
    ----------
    severity
        ``"error"``: the file breaks a rule (or the requested tool cannot read it); ``"warning"``: readers may
        misread it or lose something.
    where
        The HDF5 path concerned (``/col_attrs/X_umap``); ``/`` for the file as a whole.
    message
        What was found and what was expected.
    fix
        How to fix it, when there is a known way.
    check
        ``"spec"``, ``"scanpy_loomio"`` (this package's record), ``"read"`` (reading it with
        :func:`~scanpy_loomio.read_loom_full`) or ``"convention:<name>"``.
    loompy_refuses
        Whether loompy's own validator reports it too, so that ``loompy.connect`` and anndata's ``read_loom``
        refuse the file.
    """

    severity: Severity
    where: str
    message: str
    fix: str = ""
    check: str = "spec"
    loompy_refuses: bool = False

    def __str__(self) -> str:
        text = f"{self.severity}: {self.where}: {self.message}"
        return f"{text.rstrip('.')}. Fix: {self.fix}" if self.fix else text


@dataclass
class ValidationReport:
    """Everything :func:`validate_loom` found in one file."""

    path: Path
    spec_version: str | None = None
    conventions: tuple[str, ...] = ()
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        """The problems of severity ``"error"``."""
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        """The problems of severity ``"warning"``."""
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        """No errors (warnings allowed)."""
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "path": str(self.path),
            "spec_version": self.spec_version,
            "conventions": list(self.conventions),
            "ok": self.ok,
            "problems": [asdict(p) for p in self.problems],
        }

    def render(self) -> str:
        """One line per problem, then a one-line verdict."""
        lines = [str(p) for p in self.problems]
        checked = f" and what {', '.join(self.conventions)} need{'s' if len(self.conventions) == 1 else ''}"
        verdict = (
            f"{self.path}: {len(self.errors)} error(s), {len(self.warnings)} warning(s) "
            f"(loom spec {self.spec_version or 'not stated'}, checked against the spec, the scanpy-loomio record"
            f"{checked if self.conventions else ''})"
        )
        return "\n".join([*lines, verdict])


class Collector:
    """Collects problems for one file, naming it in every fix that needs the path."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report

    def add(
        self, severity: Severity, where: str, message: str, fix: str = "", *, check: str = "spec", loompy: bool = False
    ) -> None:
        self.report.problems.append(Problem(severity, where, message, fix, check, loompy))


# -- the loom specification --------------------------------------------------------------------------------------


def _dtype_text(dtype: np.dtype) -> str:
    if dtype.names:
        return f"a record (compound) dtype with fields {list(dtype.names)}"
    if dtype.kind == "O":
        return "variable-length text"
    if dtype.kind == "S":
        return f"fixed-length text ({dtype})"
    return f"dtype {dtype}"


def _check_matrix_dtype(out: Collector, where: str, dtype: np.dtype) -> None:
    if dtype in NUMERIC_DTYPES:
        return
    fix = "store booleans as uint8 (0/1)" if dtype.kind == "b" else "store integers or floats"
    out.add("error", where, f"{_dtype_text(dtype)}; expected integers or floats (8 to 64 bits)", fix, loompy=True)


def _check_attribute(
    out: Collector, where: str, obj: object, n: int, axis: str, version: str | None, records: Convention | None
) -> None:
    """``records``: the file's convention when it stores records (compound attributes) on purpose."""
    if isinstance(obj, h5py.Group):
        out.add(
            "error",
            where,
            f"a group (with {sorted(obj.keys())[:5]}); loom attributes are datasets (LoomExperiment nests groups here, "
            "and loompy's validator crashes on them)",
            "write the file with scanpy_loomio.write_loom_full, which keeps nested values as plain attributes",
            loompy=True,
        )
        return
    if not isinstance(obj, h5py.Dataset):
        out.add("error", where, f"a {type(obj).__name__}; expected a dataset", loompy=True)
        return
    if obj.ndim == 0 or obj.shape[0] != n:
        out.add(
            "error",
            where,
            f"shape {obj.shape}; expected {n} entries along the first axis, one per {AXIS_OF[axis]}",
            loompy=True,
        )
    dtype = obj.dtype
    if dtype.names and records is not None:
        out.add(
            "warning",
            where,
            f"{_dtype_text(dtype)}, as the {records.name} convention stores them; outside the loom spec, so loompy's "
            "validator refuses the file",
            loompy=True,
        )
    elif dtype.names:
        out.add(
            "error",
            where,
            f"{_dtype_text(dtype)}; the spec allows numbers and text only (SCope and pySCENIC write records anyway)",
            "scanpy_loomio reads records as obsm/varm entries; write_loom_full stores them as plain attributes",
            loompy=True,
        )
    elif is_text_dtype(dtype):
        _check_text(out, where, obj, version)
    elif dtype not in NUMERIC_DTYPES:
        _check_matrix_dtype(out, where, dtype)


def _check_text(out: Collector, where: str, dset: h5py.Dataset, version: str | None) -> None:
    variable = dset.dtype.kind == "O"
    if version == "3.0.0" and not variable:
        out.add(
            "error", where, f"{_dtype_text(dset.dtype)}; spec 3.0.0 stores text as variable-length UTF-8", loompy=True
        )
    elif version == "2.0.1" and variable:
        out.add("error", where, "variable-length text; spec 2.0.1 stores text as fixed-length strings", loompy=True)
    elif version is None and variable:
        out.add(
            "warning",
            where,
            "variable-length text in a file that states no spec version; loompy's validator assumes spec 2 for such "
            "files and refuses it",
            "add the global attribute LOOM_SPEC_VERSION = '3.0.0' (a /attrs dataset)",
            loompy=True,
        )
    try:
        decode_text(dset[()], where=where)
    except UnicodeDecodeError as err:
        out.add("error", where, f"text that is not UTF-8 ({err.reason}); expected UTF-8 text")


def _check_graph(out: Collector, where: str, graph: object, n: int) -> None:
    if not isinstance(graph, h5py.Group):
        out.add("error", where, f"a {type(graph).__name__}; a graph is a group of datasets a, b and w", loompy=True)
        return
    parts = {}
    broken = set()
    for violation in edge_list_violations(where, graph):
        out.add("error", violation.where, violation.message(), loompy=True)
        broken.add(violation.where)
    for part, role, kinds, expected in (
        ("a", "start vertices", "iu", "integers"),
        ("b", "end vertices", "iu", "integers"),
        ("w", "edge weights", "f", "floats"),
    ):
        dset = graph.get(part)
        if f"{where}/{part}" in broken:
            continue
        if not isinstance(dset, h5py.Dataset):
            out.add("error", f"{where}/{part}", f"missing; expected a 1-D dataset of {expected} ({role})", loompy=True)
            continue
        if dset.dtype.kind not in kinds:
            fix = "convert the indices to integers (loomR and LoomExperiment write floats)" if part != "w" else ""
            out.add(
                "error", f"{where}/{part}", f"{_dtype_text(dset.dtype)}; expected {expected} ({role})", fix, loompy=True
            )
        parts[part] = dset
    if len({d.shape for d in parts.values()}) > 1:
        shapes = ", ".join(f"{k}: {d.shape}" for k, d in parts.items())
        out.add(
            "error",
            where,
            f"a, b and w of different lengths ({shapes}); expected one length (one edge each)",
            loompy=True,
        )
    try:
        tag = graph_tag(graph)
    except TagError:
        tag = None  # reported with the record's problems
    recorded = tag.index_base if tag else (0, 0)
    for part, base in zip("ab", recorded, strict=False):
        dset = parts.get(part)
        if dset is None or dset.dtype.kind not in "iuf" or dset.shape[0] == 0:
            continue
        values = dset[()]
        lo, hi = values.min(), values.max()
        if lo >= base and hi < n + base:
            if base:
                out.add(
                    "warning",
                    f"{where}/{part}",
                    f"vertex indices count from {base}, as recorded for loomR; the spec and most readers count from 0",
                )
            continue
        if lo >= 1 and hi == n:
            out.add(
                "warning",
                f"{where}/{part}",
                f"vertex indices from {lo} to {hi} for {n} vertices: they count from 1 (as loomR writes b); the spec "
                "counts from 0, so readers other than scanpy_loomio read them off by one or fail",
                "rewrite with scanpy_loomio (read_loom_full detects 1-based indices, write_loom_full writes 0-based)",
            )
        else:
            out.add(
                "error", f"{where}/{part}", f"vertex indices from {lo} to {hi}; expected 0 to {n - 1} for {n} vertices"
            )


def spec_problems(
    file: h5py.File, out: Collector, globals_: dict[str, Any], convention: Convention | None = None
) -> None:
    """Check the loom spec's rules.

    ``convention`` is the file's own (recorded or detected); its deliberate departures from the spec (SCope's
    record attributes) are warnings rather than errors.
    """
    version = out.report.spec_version
    records = (
        convention
        if convention is not None and (convention.embedding_form.layout == "compound" or uses_scope_layout(convention))
        else None
    )
    if version is None:
        default_spec = get_convention(DEFAULT_CONVENTION).spec_version
        out.add(
            "warning",
            "/",
            "no LOOM_SPEC_VERSION global attribute; readers have to guess the layout",
            f"write with scanpy_loomio.write_loom_full, which states spec {default_spec}",
        )
    elif version not in LOOM_SPEC_VERSIONS:
        known = " and ".join(map(repr, LOOM_SPEC_VERSIONS))
        out.add("warning", "/", f"LOOM_SPEC_VERSION {version!r}; known versions are {known}")
    attrs_group = file.get(GLOBALS_GROUP)
    if version == "3.0.0" and not isinstance(attrs_group, h5py.Group):
        out.add(
            "error",
            f"/{GLOBALS_GROUP}",
            "missing; spec 3.0.0 keeps global attributes as datasets in /attrs",
            "move the global attributes into /attrs, or state LOOM_SPEC_VERSION '2.0.1'",
            loompy=True,
        )
    if isinstance(attrs_group, h5py.Group):
        for name, obj in attrs_group.items():
            if not isinstance(obj, h5py.Dataset):
                out.add("error", f"/{GLOBALS_GROUP}/{name}", f"a {type(obj).__name__}; global attributes are datasets")

    matrix = file.get("matrix")
    shape: tuple[int, int] | None = None
    if matrix is None:
        out.add("error", "/matrix", "missing; every loom file has a main matrix (genes × cells)", loompy=True)
    elif not isinstance(matrix, h5py.Dataset) or matrix.ndim != 2:
        found = f"a {matrix.ndim}-D dataset" if isinstance(matrix, h5py.Dataset) else f"a {type(matrix).__name__}"
        out.add("error", "/matrix", f"{found}; expected a 2-D dataset (genes × cells)", loompy=True)
    else:
        shape = matrix.shape
        _check_matrix_dtype(out, "/matrix", matrix.dtype)
        if stored_transposed(file):
            out.add(
                "error",
                "/matrix",
                f"shape {shape}: stored cells × genes (the attributes list {shape[0]} cells and {shape[1]} genes); "
                "loom stores genes × cells. read_loom_full reads it turned round (with a warning); loompy and "
                "other readers do not",
                "rewrite it: scanpy_loomio.write_loom_full(path, scanpy_loomio.read_loom_full(path))",
                loompy=True,
            )
            shape = (shape[1], shape[0])  # check the attributes against the orientation they fit

    for violation in chain(group_violations(file), layer_violations(file, shape)):
        out.add("error", violation.where, violation.message(), loompy=True)
    layers = file.get("layers")
    if isinstance(layers, h5py.Group):
        for name, layer in layers.items():
            if isinstance(layer, h5py.Dataset):
                _check_matrix_dtype(out, f"/layers/{name}", layer.dtype)

    for axis, size in (("row", shape[0] if shape else None), ("col", shape[1] if shape else None)):
        group_name = f"{axis}_attrs"
        group = file.get(group_name)
        if group is None:
            out.add(
                "error", f"/{group_name}", f"missing; expected the group of {AXIS_OF[axis]} attributes", loompy=True
            )
            continue
        if not isinstance(group, h5py.Group):
            continue  # reported with the groups
        if size is None:
            continue
        for name, obj in group.items():
            _check_attribute(out, f"/{group_name}/{name}", obj, size, axis, version, records)
        for graphs_name in (f"{axis}_graphs", f"{axis}_edges"):
            graphs = file.get(graphs_name)
            if graphs is None:
                continue
            if not isinstance(graphs, h5py.Group):
                continue  # reported with the groups
            if graphs_name.endswith("edges") and len(graphs):
                out.add(
                    "warning",
                    f"/{graphs_name}",
                    f"graphs in the old layout ({graphs_name}); current readers look in /{axis}_graphs only",
                    "rewrite the file with scanpy_loomio, which moves them to the current layout",
                )
            for name, graph in graphs.items():
                _check_graph(out, f"/{graphs_name}/{name}", graph, size)


def file_convention(file: h5py.File, globals_: dict[str, Any]) -> Convention:
    """The convention a file is read in: the recorded one, else the best detected one, else the default."""
    try:
        return get_convention(Metadata.from_json(globals_[METADATA_KEY]).convention)
    except (KeyError, ValueError):
        pass
    ranked = rank_conventions(summarize(file, globals_))
    return ranked[0][1] if ranked else get_convention(DEFAULT_CONVENTION)


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
