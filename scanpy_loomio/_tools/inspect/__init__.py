"""A structured summary of a loom file, and what anndata's ``read_loom`` (which ``sc.read_loom`` is) would lose.

The summary covers the layout, the convention and why, the contents and this package's record. The file is opened read-only and its matrices are never read. What :func:`~scanpy_loomio.read_loom_full` makes of
it comes from the reader itself (everything but the matrices); what anndata's reader would make of it follows from
that reader's documented rules (names from ``CellID``/``Gene``, a ``spliced`` layer as ``X`` cast to float32, 2-D
attributes as ``obsm``, no graphs and no global attributes, loompy's validator first).

Modules: ``summary`` (the summary and its text) and ``losses`` (what anndata's reader would lose); this one
gathers the summary from the file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import h5py
import numpy as np
import pandas as pd

from scanpy_loomio._elements.globals import GLOBALS_GROUP, read_globals
from scanpy_loomio._errors import LoomFormatError
from scanpy_loomio._guards import check_structure, open_read_only
from scanpy_loomio._read.detect import attribute_names, rank_conventions, summarize
from scanpy_loomio._read.plan import plan_read
from scanpy_loomio._record.record import METADATA_KEY, SIDECAR_GROUP, Metadata
from scanpy_loomio._spec.facts import LOOM_GROUPS, is_text_dtype, spec_version
from scanpy_loomio._tools.inspect.losses import anndata_losses, column_tag_or_none
from scanpy_loomio._tools.inspect.summary import Element, LoomSummary
from scanpy_loomio._tools.report import Collector, ValidationReport
from scanpy_loomio._tools.spec_problems import spec_problems
from scanpy_loomio.conventions import DEFAULT_CONVENTION, get_convention

if TYPE_CHECKING:
    from anndata import AnnData
    from anndata.experimental.backed import Dataset2D

__all__ = ["Element", "LoomSummary", "inspect_loom"]

#: Global attribute values longer than this are shortened in the summary.
VALUE_WIDTH = 60


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
        codec = column_tag_or_none(dset)
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
    made = "unique" if frame_index.is_unique else "made unique"
    return f"/{loom}/{attr} ({source}; {len(frame_index)} names, {made})"


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

    def columns(frame: pd.DataFrame | Dataset2D) -> str:
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
