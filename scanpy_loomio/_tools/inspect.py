"""A structured summary of a loom file, and what anndata's ``read_loom`` (which ``sc.read_loom`` is) would lose.

The summary covers the layout, the convention and why, the contents and this package's record. The file is opened read-only and its matrices are never read. What :func:`~scanpy_loomio.read_loom_full` makes of
it comes from the reader itself (everything but the matrices); what anndata's reader would make of it follows from
that reader's documented rules (names from ``CellID``/``Gene``, a ``spliced`` layer as ``X`` cast to float32, 2-D
attributes as ``obsm``, no graphs and no global attributes, loompy's validator first).
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np
import pandas as pd

from scanpy_loomio._codecs.text import decode_text
from scanpy_loomio._elements.globals import GLOBALS_GROUP, read_globals
from scanpy_loomio._errors import LoomFormatError
from scanpy_loomio._guards import check_structure, open_read_only
from scanpy_loomio._read.detect import attribute_names, rank_conventions, summarize
from scanpy_loomio._read.plan import plan_read
from scanpy_loomio._record.record import METADATA_KEY, SIDECAR_GROUP, Metadata
from scanpy_loomio._record.tags import ColumnTag, MatrixTag, TagError, column_tag, layer_tag
from scanpy_loomio._spec.facts import LOOM_GROUPS, is_text_dtype, spec_version
from scanpy_loomio._tools.validate import Collector, ValidationReport, spec_problems
from scanpy_loomio.conventions import DEFAULT_CONVENTION, get_convention
from scanpy_loomio.conventions.table import ANNDATA_CONVENTION

if TYPE_CHECKING:
    from anndata import AnnData

__all__ = ["Element", "LoomSummary", "inspect_loom"]

#: Global attribute values longer than this are shortened in the summary.
VALUE_WIDTH = 60


@dataclass(frozen=True)
class Element:
    """One dataset or group of the file, as the summary shows it."""

    path: str
    kind: str
    shape: tuple[int, ...] = ()
    note: str = ""
    name: str = ""
    """How the summary lists it; the last part of :attr:`path` when empty."""

    @property
    def label(self) -> str:
        """:attr:`name`, or the last part of :attr:`path`."""
        return self.name or self.path.rsplit("/", 1)[-1]


@dataclass
class LoomSummary:
    """What :func:`inspect_loom` found; :meth:`~LoomSummary.render` gives the text ``scanpy-loomio inspect`` prints."""

    path: Path
    size: int
    spec_version: str | None
    global_layout: str
    n_obs: int
    n_vars: int
    convention: str
    convention_reasons: list[str]
    other_conventions: list[tuple[str, float]]
    obs_names: str
    var_names: str
    matrix: Element
    layers: list[Element] = field(default_factory=list)
    col_attrs: list[Element] = field(default_factory=list)
    row_attrs: list[Element] = field(default_factory=list)
    graphs: list[Element] = field(default_factory=list)
    globals: list[Element] = field(default_factory=list)
    other_groups: list[str] = field(default_factory=list)
    record: dict[str, Any] | None = None
    read_result: dict[str, Any] = field(default_factory=dict)
    read_notes: list[str] = field(default_factory=list)
    anndata_losses: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        out = asdict(self)
        out["path"] = str(self.path)
        return out

    def render(self) -> str:
        """The summary as text for a terminal."""
        lines = [f"{self.path}  ({_size(self.size)})"]

        def row(label: str, text: str) -> None:
            lines.append(f"  {label:<15}{text}")

        def block(title: str, elements: list[Element]) -> None:
            lines.append(f"  {title} ({len(elements)})" if elements else f"  {title}: none")
            width = max((len(e.label) for e in elements), default=0)
            for e in elements:
                shape = f" {e.shape}" if len(e.shape) > 1 else ""
                note = f"  {e.note}" if e.note else ""
                lines.append(f"    {e.label:<{width}}  {e.kind}{shape}{note}")

        row("loom spec", f"{self.spec_version or 'not stated'} (global attributes: {self.global_layout})")
        row("convention", f"{self.convention}: {'; '.join(self.convention_reasons)}")
        if self.other_conventions:
            row("", "also fits: " + ", ".join(f"{name} ({score:g})" for name, score in self.other_conventions))
        row("shape", f"{self.n_obs} cells (obs) × {self.n_vars} genes (var)")
        row("matrix", f"/matrix {self.matrix.kind} {self.matrix.shape}  {self.matrix.note}".rstrip())
        row("cell names", self.obs_names)
        row("gene names", self.var_names)
        block("layers", self.layers)
        block("column attributes (obs)", self.col_attrs)
        block("row attributes (var)", self.row_attrs)
        block("graphs", self.graphs)
        block("global attributes", self.globals)
        if self.other_groups:
            row("other groups", ", ".join(self.other_groups))
        if self.record:
            lines.append("  scanpy-loomio record")
            for key, value in self.record.items():
                lines.append(f"    {key}: {value}")
        else:
            lines.append("  scanpy-loomio record: none (read as plain loom in the detected convention)")
        lines.append("  read_loom_full gives")
        for key, value in self.read_result.items():
            lines.append(f"    {key}: {value}")
        for note in self.read_notes:
            lines.append(f"    note: {note}")
        if self.anndata_losses:
            lines.append("  plain sc.read_loom (anndata's read_loom) would lose")
            lines.extend(f"    - {loss}" for loss in self.anndata_losses)
        else:
            lines.append("  plain sc.read_loom (anndata's read_loom) would lose nothing read_loom_full keeps")
        return "\n".join(lines)


def _size(n: int) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} bytes"  # pragma: no cover - the loop always returns


def _kind(dtype: np.dtype) -> str:
    if dtype.names:
        return f"record({', '.join(dtype.names)})"
    if is_text_dtype(dtype):
        return "text"
    return str(dtype)


def _storage(dset: h5py.Dataset) -> str:
    parts = []
    if dset.chunks:
        parts.append(f"chunks {dset.chunks}")
    if dset.compression:
        level = f" {dset.compression_opts}" if dset.compression_opts is not None else ""
        parts.append(f"{dset.compression}{level}")
    return ", ".join(parts)


def _short(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else value
    text = " ".join(text.split())
    return text if len(text) <= VALUE_WIDTH else f"{text[: VALUE_WIDTH - 1]}…"


# -- pieces --------------------------------------------------------------------------------------------------------


def _attributes(group: h5py.Group | None, loom: str, coded: dict[tuple[str, str], str]) -> list[Element]:
    if not isinstance(group, h5py.Group):
        return []
    out = []
    for full in sorted(attribute_names(group)[0]):  # datasets, and those in groups nested one level down
        dset = group[full]
        codec = _column_tag(dset)
        note = coded.get((loom, full), "")
        if codec is not None:
            note = f"{note} ({codec.kind})".strip()
        out.append(Element(f"/{loom}_attrs/{full}", _kind(dset.dtype), tuple(dset.shape), note))
    return out


def _graphs(file: h5py.File) -> list[Element]:
    out = []
    for group_name in ("col_graphs", "row_graphs", "col_edges", "row_edges"):
        group = file.get(group_name)
        if not isinstance(group, h5py.Group):
            continue
        for name, graph in group.items():
            a = graph.get("a") if isinstance(graph, h5py.Group) else None
            edges = f"{a.shape[0]} edges" if isinstance(a, h5py.Dataset) and a.ndim == 1 else "not an edge list"
            kind = _kind(a.dtype) if isinstance(a, h5py.Dataset) else "?"
            out.append(Element(f"/{group_name}/{name}", f"{edges}, indices {kind}"))
    return out


def _globals(file: h5py.File, values: dict[str, Any]) -> list[Element]:
    out = []
    for name, value in values.items():
        in_group = name in file.get(GLOBALS_GROUP, {})
        where = f"/{GLOBALS_GROUP}/{name}" if in_group else "/"
        label = name if in_group else f"{name} (root attribute)"
        if name == METADATA_KEY:
            note = f"this package's record ({len(str(value))} characters)"
            out.append(Element(where, "text", note=note, name=label))
            continue
        kind = "text" if isinstance(value, str) else type(value).__name__
        out.append(Element(where, kind, tuple(np.shape(value)), _short(value), name=label))
    return out


def _record_summary(record: Metadata, file: h5py.File) -> dict[str, Any]:
    sidecar = file.get(SIDECAR_GROUP)
    kept = sorted(sidecar.keys()) if isinstance(sidecar, h5py.Group) else []
    return {
        "record version": record.version,
        "convention": record.convention,
        "written by": ", ".join(f"{k} {v}" for k, v in record.writer.items()) or "not recorded",
        "obs index": f"{record.obs.index_attr or 'a range index'} (index name {record.obs.index_name!r})",
        "var index": f"{record.var.index_attr or 'a range index'} (index name {record.var.index_name!r})",
        "layers": ", ".join(f"{k!r}" + (f" as {n!r}" if n != k else "") for k, n in record.layers) or "none",
        "uns keys": len(record.uns_keys),
        "kept beside loom": f"/{SIDECAR_GROUP}: {', '.join(kept)}" if kept else "nothing",
    }


def _describe_names(attr: str | None, group: h5py.Group, frame_index: pd.Index, source: str) -> str:
    loom = group.name.lstrip("/")
    if attr is None:
        unique = _unique_text_attributes(group)
        axis = "obs" if loom == "col_attrs" else "var"
        hint = f"; unique text in {unique}: name it with {axis}_names= (--{axis}-names on the command line)"
        hint = hint if unique else ""
        return f"none found: 0, 1, 2, … (a range index){hint}"
    unique = "unique" if frame_index.is_unique else "made unique"
    return f"/{loom}/{attr} ({source}; {len(frame_index)} names, {unique})"


def _unique_text_attributes(group: h5py.Group) -> list[str]:
    """1-D text attributes whose values are all different: names under a name no convention knows."""
    found = []
    for name, dset in group.items():
        if isinstance(dset, h5py.Dataset) and dset.ndim == 1 and is_text_dtype(dset.dtype):
            values = dset[()]
            if len(set(values.tolist())) == len(values):
                found.append(name)
    return found


def _read_result(adata: AnnData) -> dict[str, Any]:
    def keys(mapping: Any) -> str:
        return ", ".join(map(str, mapping.keys())) or "none"

    def columns(frame: pd.DataFrame) -> str:
        return ", ".join(f"{c} ({frame[c].dtype})" for c in frame.columns) or "none"

    return {
        "obs": columns(adata.obs),
        "var": columns(adata.var),
        "obsm": keys(adata.obsm),
        "varm": keys(adata.varm),
        "obsp": keys(adata.obsp),
        "varp": keys(adata.varp),
        "uns": keys(adata.uns),
        "raw": "yes" if adata.raw is not None else "no",
    }


# -- what anndata's read_loom would lose --------------------------------------------------------------------------


def _column_tag(dset: h5py.Dataset) -> ColumnTag | None:
    """The column's tag; a newer one is shown as none (reading names it)."""
    try:
        return column_tag(dset)
    except TagError:
        return None


def _matrix_tag(dset: h5py.Dataset) -> MatrixTag | None:
    """The matrix's tag when it describes a matrix (not an absent or filled one); a malformed one as none."""
    try:
        tag = layer_tag(dset)
    except TagError:
        return None
    return tag if isinstance(tag, MatrixTag) else None


def _codec_loss(key: str, codec: ColumnTag | None) -> str | None:
    if codec is None:
        return None
    kind = codec.kind
    if kind == "categorical":
        return f"{key} would be plain values, not categorical"
    if kind == "bool":
        return f"{key} would be 0/1 integers, not bool"
    if kind in ("nullable-integer", "nullable-boolean"):
        return f"{key} would lose its missing values (0 instead) and its dtype {codec.dtype or ''}".rstrip()
    if kind == "string" and (codec.na is not None or codec.dtype):
        return f"{key} would lose its missing values (empty text instead)"
    return None


def _non_ascii(group: h5py.Group) -> list[str]:
    found = []
    for name, dset in group.items():
        if isinstance(dset, h5py.Dataset) and dset.ndim == 1 and is_text_dtype(dset.dtype):
            try:
                values = decode_text(dset[()])
            except UnicodeDecodeError:
                continue
            if any(not str(v).isascii() for v in values):
                found.append(name)
    return found


def anndata_losses(
    file: h5py.File, adata: AnnData, index_attrs: dict[str, str | None], record: Metadata | None, spec: ValidationReport
) -> list[str]:
    """What anndata's ``read_loom`` (with its defaults) would get wrong or leave out, compared with ``adata``."""
    refusals = [p for p in spec.problems if p.loompy_refuses]
    if refusals:
        first = refusals[0]
        more = f" (and {len(refusals) - 1} more)" if len(refusals) > 1 else ""
        return [
            f"everything: it refuses the file, because loompy's validator (run by loompy.connect) reports "
            f"{first.where}: {first.message}{more}"
        ]
    anndata = get_convention(ANNDATA_CONVENTION)  # its reader_* fields: what read_loom does by default
    losses: list[str] = []
    for axis, loom in (("obs", "col"), ("var", "row")):
        group = file[f"{loom}_attrs"]
        default = anndata.reader_names[axis]
        used = index_attrs[axis]
        has_default = isinstance(group.get(default), h5py.Dataset)
        if used != default:
            if has_default:
                losses.append(f"{axis} names: taken from /{loom}_attrs/{default} instead of /{loom}_attrs/{used}")
            elif used is not None:
                losses.append(f"{axis} names (in /{loom}_attrs/{used}): replaced by 0, 1, 2, …")
        index_name = getattr(adata, axis).index.name
        if index_name is not None and index_name != (default if has_default else None):
            losses.append(f"the {axis} index name {index_name!r}")
        axis_record = getattr(record, axis) if record else None
        renamed = dict(axis_record.columns) if axis_record else {}
        for key in getattr(adata, axis).columns:
            attr = renamed.get(key, key)
            dset = group.get(attr)
            if attr != key:
                losses.append(f"the name of {axis}[{key!r}]: it would be {attr!r}")
            codec = _column_tag(dset) if isinstance(dset, h5py.Dataset) else None
            loss = _codec_loss(f"{axis}[{key!r}]", codec)
            if loss:
                losses.append(loss)
        plain_multi = {k for k, d in group.items() if isinstance(d, h5py.Dataset) and d.ndim > 1 and d.shape[1] > 1}
        multi = getattr(adata, f"{axis}m")
        missing = [k for k in multi if k not in plain_multi]
        if missing:
            losses.append(f"{axis}m {missing}")
        pairwise = sorted(getattr(adata, f"{axis}p").keys())
        if pairwise:
            losses.append(f"{axis}p {pairwise} (graphs are not read)")
        records = [k for k, d in group.items() if isinstance(d, h5py.Dataset) and d.dtype.names]
        if records:
            losses.append(f"the records in /{loom}_attrs {records}: columns of raw numpy.void values")
        non_ascii = _non_ascii(group)
        if non_ascii:
            losses.append(f"non-ASCII characters in /{loom}_attrs {non_ascii} (loompy drops them)")
    layers = file.get("layers")
    layer_names = list(layers.keys()) if isinstance(layers, h5py.Group) else []
    x_source = file["matrix"]
    if anndata.reader_x_layer in layer_names:
        x_source = layers[anndata.reader_x_layer]
        losses.append(f"X: it would be the {anndata.reader_x_layer!r} layer, and /matrix would become layers['matrix']")
    x_tag = _matrix_tag(x_source)
    x_dtype = np.dtype((x_tag.dtype if x_tag else None) or x_source.dtype)
    if anndata.reader_x_dtype and x_dtype != np.dtype(anndata.reader_x_dtype):
        losses.append(f"the dtype of X: {x_dtype} would become {anndata.reader_x_dtype}")
    for key, name in record.layers if record else []:
        if key != name:
            losses.append(f"the name of layers[{key!r}]: it would be {name!r}")
    for where, obj in [("X", file["matrix"])] + [(f"layers[{n!r}]", layers[n]) for n in layer_names]:
        tag = _matrix_tag(obj)
        fmt = tag.format if tag else None
        if fmt in ("csc", "dense"):
            losses.append(f"the {fmt} format of {where}: it would be CSR")
    if len(adata.uns):
        losses.append(f"uns {list(adata.uns.keys())} (global attributes and kept elements are not read)")
    if adata.raw is not None:
        losses.append("raw")
    return losses


# -- entry point ---------------------------------------------------------------------------------------------------


def _convention_why(file: h5py.File, globals_: dict[str, Any], record: Metadata | None) -> tuple[str, list[str], list]:
    if record is not None:
        writer = record.writer.get("scanpy-loomio")
        by = f"scanpy-loomio {writer}" if writer else "scanpy-loomio"
        return record.convention, [f"recorded by {by} when it wrote the file"], []
    ranked = rank_conventions(summarize(file, globals_))
    if not ranked:
        return DEFAULT_CONVENTION, ["nothing of any convention found; the default one"], []
    best_score, best = ranked[0]
    summary = summarize(file, globals_)
    reasons = []
    for axis, names in (("col", best.cell_names), ("row", best.gene_names)):
        texts = summary.text_col_attrs if axis == "col" else summary.text_row_attrs
        found = [n for n in names if n in texts]
        if found:
            reasons.append(f"{'cell' if axis == 'col' else 'gene'} names in {found[0]}")
    reasons += [f"has {marker}" for marker in best.markers.found(summary)]
    tied = [c.name for s, c in ranked[1:] if s == best_score]
    if tied:
        reasons.append(f"tied with {tied}, chosen by table order (pass convention= to choose)")
    reasons.append(f"score {best_score:g}")
    return best.name, reasons, [(c.name, s) for s, c in ranked[1:4]]


def inspect_loom(filename: str | os.PathLike[str]) -> LoomSummary:
    """Summarize a loom file without reading its matrices.

    Parameters
    ----------
    filename
        The ``.loom`` file; it is opened read-only and never changed.

    Returns
    -------
    The summary: spec version, detected convention and why, shapes, layers, attributes with dtypes and shapes,
    graphs, global attributes, this package's record, what :func:`~scanpy_loomio.read_loom_full` reads, and what
    anndata's ``read_loom`` would lose. ``print(summary.render())`` shows it as text.

    Raises
    ------
    LoomFormatError
        When the file is not a loom file (no ``/matrix``, no attribute groups) or links outside itself.
    OSError
        When the file cannot be opened at all.

    Examples
    --------
    >>> import scanpy as sc
    >>> import scanpy_loomio
    >>> scanpy_loomio.write_loom_full("pbmc.loom", sc.datasets.pbmc68k_reduced())
    >>> summary = scanpy_loomio.inspect_loom("pbmc.loom")
    >>> summary.convention, summary.n_obs, summary.n_vars
    ('loompy', 700, 765)
    >>> "obsp ['connectivities', 'distances'] (graphs are not read)" in summary.anndata_losses
    True
    """
    path = Path(filename)
    with open_read_only(path) as file:
        check_structure(file, path)
        matrix = file.get("matrix")
        groups_ok = all(isinstance(file.get(g), h5py.Group) for g in ("col_attrs", "row_attrs"))
        if not (isinstance(matrix, h5py.Dataset) and matrix.ndim == 2 and groups_ok):
            msg = (
                f"{path}: /: found no 2-D /matrix with /col_attrs and /row_attrs groups; expected a loom file. "
                "Run `scanpy-loomio validate` on it for details."
            )
            raise LoomFormatError(msg)
        globals_ = read_globals(file)
        raw_record = globals_.get(METADATA_KEY)
        try:
            record = Metadata.from_json(raw_record) if raw_record is not None else None
        except ValueError:
            record = None
        name, reasons, others = _convention_why(file, globals_, record)
        try:
            convention = get_convention(name)
        except ValueError:
            convention = get_convention(DEFAULT_CONVENTION)
        spec = ValidationReport(path, spec_version=spec_version(globals_))
        spec_problems(file, Collector(spec), globals_, convention)
        plan = plan_read(file, path)
        if plan.shell is None:
            raise LoomFormatError(plan.error)
        adata, notes, index_attrs = plan.shell, plan.warnings, plan.index_attrs
        source = "recorded" if record is not None else f"the {convention.name} convention"
        coded = {}
        if record is not None:
            for axis in ("obs", "var"):
                loom_axis = "col" if axis == "obs" else "row"
                for key, attr in getattr(record, axis).columns:
                    coded[loom_axis, attr] = f"→ {axis}[{key!r}]"
        layers = file.get("layers")
        n_genes, n_cells = matrix.shape
        return LoomSummary(
            path=path,
            size=path.stat().st_size,
            spec_version=spec.spec_version,
            global_layout="/attrs datasets" if isinstance(file.get(GLOBALS_GROUP), h5py.Group) else "root attributes",
            n_obs=n_cells,
            n_vars=n_genes,
            convention=name,
            convention_reasons=reasons,
            other_conventions=others,
            obs_names=_describe_names(index_attrs["obs"], file["col_attrs"], adata.obs_names, source),
            var_names=_describe_names(index_attrs["var"], file["row_attrs"], adata.var_names, source),
            matrix=Element("/matrix", _kind(matrix.dtype), tuple(matrix.shape), _storage(matrix)),
            layers=[
                Element(f"/layers/{n}", _kind(d.dtype), tuple(d.shape), _storage(d))
                for n, d in (layers.items() if isinstance(layers, h5py.Group) else ())
                if isinstance(d, h5py.Dataset)
            ],
            col_attrs=_attributes(file.get("col_attrs"), "col", coded),
            row_attrs=_attributes(file.get("row_attrs"), "row", coded),
            graphs=_graphs(file),
            globals=_globals(file, globals_),
            other_groups=[f"/{g}" for g in file if g not in (*LOOM_GROUPS, GLOBALS_GROUP, "col_edges", "row_edges")],
            record=_record_summary(record, file) if record is not None else None,
            read_result=_read_result(adata),
            read_notes=notes,
            anndata_losses=anndata_losses(file, adata, index_attrs, record, spec),
        )
