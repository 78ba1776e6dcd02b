"""The write path: plan (pure, nothing touched), then write a temporary file beside the target and move it in place."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from scanpy_loomio import _matrix
from scanpy_loomio._codecs.auxiliary import fit_in_attributes, put_aux_attributes
from scanpy_loomio._codecs.columns import NATIVE_DTYPES, EncodedColumn, encode_column, storable_values
from scanpy_loomio._codecs.rtypes import flagged_names, flags_matrix, is_logical, is_text_factor, mark_logical, r_values
from scanpy_loomio._codecs.text import unstorable_text_reason, vlen_str_dtype
from scanpy_loomio._compat import named_layers
from scanpy_loomio._elements.aliases import link_names, linked_names, linked_paths
from scanpy_loomio._elements.embeddings import EmbeddingPlan, attribute_values, plan_embedding, registry_globals
from scanpy_loomio._elements.globals import encode_global, json_tag, scalar_tag, write_globals
from scanpy_loomio._elements.graphs import weights_exact_as_float, write_graph
from scanpy_loomio._elements.scope import (
    ScopeLayout,
    plan_scope_embeddings,
    plan_scope_layout,
    uses_scope_layout,
)
from scanpy_loomio._elements.sidecar import can_encode, sidecar_put
from scanpy_loomio._elements.views import plan_stores, store_registry, write_stored
from scanpy_loomio._errors import LossyWriteError, LossyWriteWarning
from scanpy_loomio._matrix.stream import BandSource, write_streamed
from scanpy_loomio._record.record import METADATA_KEY, RESERVED_GLOBALS, SIDECAR_GROUP, AxisRecord, Metadata
from scanpy_loomio._record.tags import AbsentMatrixTag, ColumnTag, FilledLayerTag, MatrixTag, write_tag
from scanpy_loomio._settings import progress_default
from scanpy_loomio._write.atomic import atomic_target
from scanpy_loomio._write.h5ad_rules import frame_as_h5ad_stores, raw_as_h5ad_stores
from scanpy_loomio._write.provenance import provenance, session_report
from scanpy_loomio._write.streaming import X_KEY, split_streamed
from scanpy_loomio.conventions import DEFAULT_CONVENTION, Convention, get_convention

LossyPolicy = Literal["raise", "warn"]


@dataclass
class AxisPlan:
    """Everything written for one axis (``obs`` → ``col_*``, ``var`` → ``row_*``)."""

    name: str
    index_attr: str
    index_values: np.ndarray
    columns: list[tuple[str, str, EncodedColumn]] = field(default_factory=list)
    embeddings: list[EmbeddingPlan] = field(default_factory=list)
    graphs: list[tuple[str, str, Any]] = field(default_factory=list)
    sidecar_graphs: list[tuple[str, Any]] = field(default_factory=list)

    def record(self, index_name: str | None) -> AxisRecord:
        return AxisRecord(
            index_attr=self.index_attr,
            index_name=index_name,
            columns=[(key, attr) for key, attr, _ in self.columns],
            multi={e.key: e.record() for e in self.embeddings},
            graphs={key: graph for key, graph, _ in self.graphs} | {key: "" for key, _ in self.sidecar_graphs},
        )


@dataclass
class WritePlan:
    """What goes where; built without touching the disk."""

    adata: AnnData
    convention: Convention
    obs: AxisPlan
    var: AxisPlan
    layers: list[tuple[str, str]]
    uns_globals: dict[str, tuple[str, Any]]
    uns_sidecar: dict[str, Any]
    metadata: Metadata
    filled_layers: list[str] = field(default_factory=list)
    """Layers the tool needs that the AnnData lacks, written as zeros and left out when reading."""
    tool_globals: dict[str, str] = field(default_factory=dict)
    """Global attributes the tool needs beside ``uns`` (LoomExperiment's ``ReducedDimsName<i>``)."""
    raw: Any = None
    """``adata.raw`` as it is written (its text columns made categoricals as ``write_h5ad`` makes them)."""
    scope: ScopeLayout | None = None
    """SCope's attributes, for conventions that use its layout."""
    streamed: dict[str | None, BandSource] = field(default_factory=dict)
    """Matrices written a band of cells at a time, by layer key (``None`` for ``X``); ``adata`` holds stand-ins."""


def check_name(name: Any, key: str) -> str:
    if not isinstance(name, str):
        msg = (
            f"{key}: the key {name!r} is a {type(name).__name__}; loom names must be strings. Rename it with a str key."
        )
        raise LossyWriteError(msg)
    if "/" in name or name in ("", ".") or "\x00" in name:
        msg = f"{key}: the key {name!r} cannot be an HDF5 name (it is empty, '.', or contains '/' or NUL). Rename it."
        raise LossyWriteError(msg)
    _check_text(name, key)
    return name


def _check_text(text: str, key: str) -> None:
    """Refuse text HDF5 cannot hold, naming where it is, instead of h5py's bare error half way through."""
    reason = unstorable_text_reason(text)
    if reason is not None:
        msg = f"{key}: the text {text!r} {reason}. Remove or replace the character."
        raise LossyWriteError(msg)


def _check_nested_keys(value: Any, key: str) -> None:
    """Keys of mappings stored in the sidecar become HDF5 names too (anndata would nest ``'a/b'`` silently).

    Text values are checked on the way: HDF5 holds no NUL or lone surrogate.
    """
    if isinstance(value, str):
        _check_text(value, key)
    elif isinstance(value, np.ndarray) and value.dtype.kind in "OU":
        for item in value.ravel():
            if isinstance(item, str):
                _check_text(item, key)
    elif isinstance(value, list | tuple):
        for position, item in enumerate(value):
            _check_nested_keys(item, f"{key}[{position}]")
    if not isinstance(value, Mapping):
        return
    for name, item in value.items():
        check_name(name, f"{key}[{name!r}]")
        _check_nested_keys(item, f"{key}[{name!r}]")


def _sidecar_storable(value: Any) -> bool:
    """Whether anndata's element encoding can store an ``obsm``/``varm``/``obsp``/``varp`` value kept in the sidecar.

    Numeric arrays and sparse matrices always can; object arrays only when they hold text; anything else is tried in
    memory.
    """
    if isinstance(value, np.ndarray):
        return value.dtype != object or all(isinstance(v, str) for v in value.ravel())
    if sparse.issparse(value):
        return True
    return can_encode(value)


def _lossy(policy: LossyPolicy, msg: str) -> None:
    if policy == "raise":
        raise LossyWriteError(msg + " Pass lossy='warn' to write the file without it.")
    warnings.warn(msg, LossyWriteWarning, stacklevel=4)


class _Names:
    """Allocates loom attribute names in one namespace (``col_attrs`` or ``row_attrs``)."""

    def __init__(self) -> None:
        self.taken: set[str] = set()

    def claim(self, wanted: str, prefix: str) -> str:
        name = wanted
        n = 1
        while name in self.taken:
            name = f"{prefix}_{wanted}" if n == 1 else f"{prefix}{n}_{wanted}"
            n += 1
        self.taken.add(name)
        return name


def _plan_axis(
    adata: AnnData, axis: Literal["obs", "var"], convention: Convention, policy: LossyPolicy, *, categoricals: bool
) -> AxisPlan:
    frame = frame_as_h5ad_stores(adata, getattr(adata, axis)) if categoricals else getattr(adata, axis)
    index_attr = convention.cell_names_attr if axis == "obs" else convention.gene_names_attr
    renames = convention.obs_renames if axis == "obs" else convention.var_renames
    names = _Names()
    names.taken.add(index_attr)
    names.taken.update(linked_names(convention, axis))  # the names' other names, hard links to them
    index_name = frame.index.name
    if index_name is not None and not isinstance(index_name, str):
        msg = (
            f"{axis}.index.name: {index_name!r} is a {type(index_name).__name__}; the name of the {axis} index is "
            f"stored as text, as write_h5ad requires. Set adata.{axis}.index.name to a string or None."
        )
        raise LossyWriteError(msg)
    if index_name is not None:
        _check_text(index_name, f"{axis}.index.name")
    index_values = np.asarray(frame.index, dtype=object)
    if not all(isinstance(v, str) for v in index_values):
        msg = f"{axis}_names: found non-string names; AnnData names must be strings. Set adata.{axis}_names = adata.{axis}_names.astype(str)."
        raise LossyWriteError(msg)
    storable_values(index_values, f"{axis}_names")  # refuses text HDF5 cannot hold
    plan = AxisPlan(axis, index_attr, index_values)
    for col in frame.columns:
        key = f"{axis}[{col!r}]"
        check_name(col, key)
        series = frame[col]
        if (
            col == index_attr
            and pd.api.types.is_string_dtype(series.dtype)
            and not isinstance(series.dtype, pd.CategoricalDtype)
            and series.dtype == frame.index.dtype
            and np.array_equal(np.asarray(series, dtype=object), index_values)
        ):
            # the usual workaround column (obs["CellID"] = obs_names): share the index attribute, store it once
            plan.columns.append((col, index_attr, EncodedColumn(index_values)))
            continue
        target = renames.get(col, col)
        if target in frame.columns and target != col:
            target = col  # the renamed name is taken by a real column
        attr = names.claim(target, axis)
        encoded = encode_column(series, key)
        if encoded.aux and not convention.sidecar and not fit_in_attributes(encoded.aux, len(encoded.values)):
            _lossy(
                policy,
                f"{key}: its {' and '.join(sorted(encoded.aux))} do not fit in HDF5 attributes and convention "
                f"{convention.name!r} allows no extra group to keep them; the column would read back as plain values.",
            )
            encoded = EncodedColumn(encoded.values)
        plan.columns.append((col, attr, encoded))
    multi = adata.obsm if axis == "obs" else adata.varm
    for key, value in multi.items():
        check_name(key, f"{axis}m[{key!r}]")
        embedding = plan_embedding(key, value, axis, convention, lambda name: names.claim(name, f"{axis}m"))
        if embedding.storage == "sidecar" and not _sidecar_storable(value):
            _lossy(policy, f"{axis}m[{key!r}]: a {type(value).__name__} that anndata's element encoding cannot store.")
            continue
        plan.embeddings.append(embedding)
    pairwise = adata.obsp if axis == "obs" else adata.varp
    graph_names: set[str] = set()
    for key, value in pairwise.items():
        check_name(key, f"{axis}p[{key!r}]")
        data = value.data if sparse.issparse(value) else np.asarray(value)
        if weights_exact_as_float(data):
            plan.graphs.append((key, key, value))
            graph_names.add(key)
        elif not _sidecar_storable(value):
            _lossy(
                policy,
                f"{axis}p[{key!r}]: a {type(value).__name__} of dtype {data.dtype} that anndata's element encoding "
                "cannot store.",
            )
        else:
            plan.sidecar_graphs.append((key, value))
    if not convention.sidecar:
        for e in plan.embeddings:
            if e.storage == "sidecar":
                _lossy(
                    policy,
                    f"{axis}m[{e.key!r}]: a {type(e.values).__name__} has no loom attribute form and convention {convention.name!r} allows no extra group.",
                )
        plan.embeddings = [e for e in plan.embeddings if e.storage != "sidecar"]
        for key, _ in plan.sidecar_graphs:
            _lossy(
                policy,
                f"{axis}p[{key!r}]: weights of this dtype are not exact as float and convention {convention.name!r} allows no extra group.",
            )
        plan.sidecar_graphs = []
    return plan


def _plan_uns(adata: AnnData, convention: Convention, policy: LossyPolicy) -> tuple[dict, dict, dict]:
    """Split ``uns`` into values written as global attributes, kept in the record, and kept in the sidecar."""
    in_globals: dict[str, tuple[str, Any]] = {}
    in_record: dict[str, list] = {}
    in_sidecar: dict[str, Any] = {}
    for key, value in adata.uns.items():
        check_name(key, f"uns[{key!r}]")
        _check_nested_keys(value, f"uns[{key!r}]")
        tag = scalar_tag(value)
        if key in RESERVED_GLOBALS and tag is not None:
            # e.g. LOOM_SPEC_VERSION read from another tool's file: its global attribute is the writer's own,
            # so the value travels in the record, which every layout has
            in_record[key] = [tag, value.item() if isinstance(value, np.generic) else value]
        elif tag is not None:
            in_globals[key] = (tag, value)
        elif convention.sidecar and can_encode(value):
            in_sidecar[key] = value
        elif key not in RESERVED_GLOBALS and json_tag(value):
            in_globals[key] = ("json", value)
        elif not convention.sidecar and can_encode(value):
            _lossy(
                policy,
                f"uns[{key!r}]: a {type(value).__name__} that only anndata's element encoding can store, and convention "
                f"{convention.name!r} allows no extra group to keep it (its tool refuses files with one).",
            )
        else:
            _lossy(
                policy,
                f"uns[{key!r}]: a {type(value).__name__} that neither anndata's element encoding nor JSON can store here.",
            )
    return in_globals, in_record, in_sidecar


def plan_write(
    adata: AnnData,
    convention: Convention,
    *,
    policy: LossyPolicy = "raise",
    fill_missing_layers: bool = False,
    convert_strings_to_categoricals: bool = True,
) -> WritePlan:
    """Check everything and decide where each element goes, before any file is touched."""
    categoricals = convert_strings_to_categoricals
    obs = _plan_axis(adata, "obs", convention, policy, categoricals=categoricals)
    var = _plan_axis(adata, "var", convention, policy, categoricals=categoricals)
    stored_layers = named_layers(adata)
    layers = [(check_name(k, f"layers[{k!r}]"), k) for k in stored_layers]
    for key, value in [("X", adata.X), *((f"layers[{k!r}]", v) for k, v in stored_layers.items())]:
        if value is None:
            continue
        if not (isinstance(value, np.ndarray) or sparse.issparse(value)):
            msg = f"{key}: a {type(value).__name__}; expected a numpy array or a scipy sparse matrix. Convert it first."
            raise LossyWriteError(msg)
        if value.dtype not in NATIVE_DTYPES and value.dtype != bool:
            msg = f"{key}: dtype {value.dtype} cannot be a loom matrix; expected an integer, float or bool dtype."
            raise LossyWriteError(msg)
        if value.shape != adata.shape:
            msg = f"{key}: shape {value.shape} does not match the AnnData's {adata.shape}."
            raise LossyWriteError(msg)
    scope = _plan_scope(adata, obs, convention)
    filled_layers = missing_layers(adata, convention, fill=fill_missing_layers)
    uns_globals, uns_record, uns_sidecar = _plan_uns(adata, convention, policy)
    tool_globals = registry_globals(
        [("col_attrs", e) for e in obs.embeddings] + [("row_attrs", e) for e in var.embeddings]
    )
    if scope is not None:
        tool_globals.update(scope.globals)
    plan_stores(obs.embeddings, "obs", convention, adata.n_obs)
    tool_globals.update(store_registry(obs.embeddings, convention, tool_globals))
    if adata.raw is not None and not convention.sidecar:
        _lossy(policy, f"raw: convention {convention.name!r} allows no extra group to keep it.")
    metadata = Metadata(
        obs=obs.record(adata.obs.index.name),
        var=var.record(adata.var.index.name),
        convention=convention.name,
        layers=[(k, n) for n, k in layers],
        uns_keys=list(adata.uns.keys()),
        uns_globals={k: tag for k, (tag, _) in uns_globals.items()},
        uns_record=uns_record,
        raw=adata.raw is not None and convention.sidecar,
        writer=provenance(),
        tool_globals=list(tool_globals),
        tool_attrs=([f"col_attrs/{name}" for name in scope.attrs] if scope else []) + linked_paths(convention),
    )
    return WritePlan(
        adata,
        convention,
        obs,
        var,
        layers,
        uns_globals,
        uns_sidecar,
        metadata,
        filled_layers,
        tool_globals,
        raw_as_h5ad_stores(adata) if categoricals else adata.raw,
        scope,
    )


def _plan_scope(adata: AnnData, obs: AxisPlan, convention: Convention) -> ScopeLayout | None:
    """SCope's layout for conventions that name its attributes; names the AnnData already uses are left out."""
    if not uses_scope_layout(convention):
        return None
    plan_scope_embeddings(obs.embeddings, adata.uns, convention)
    layout = plan_scope_layout(obs.embeddings, obs.columns, adata.n_obs, adata.uns, convention)
    taken = {obs.index_attr, *(a for _, a, _ in obs.columns)}
    taken |= {a for e in obs.embeddings if e.storage != "pair" for a in e.attrs}
    for name in [n for n in layout.attrs if n in taken]:
        if name in convention.embedding_pair_attrs:
            msg = (
                f"obs: an attribute named {name!r} is taken, and convention {convention.name!r} keeps embeddings there"
            )
            raise LossyWriteError(msg)
        del layout.attrs[name]
    return layout


def missing_layers(adata: AnnData, convention: Convention, *, fill: bool) -> list[str]:
    """The layers ``convention`` needs that ``adata`` lacks; an error unless they are to be filled with zeros."""
    missing = [name for name in convention.required_layers if name not in named_layers(adata)]
    if missing and not fill:
        msg = (
            f"layers: convention {convention.name!r} needs layers {list(convention.required_layers)} "
            f"({convention.tool} cannot read the file without them); this AnnData lacks {missing}. Add "
            f"{'them' if len(missing) > 1 else 'it'} to adata.layers, or pass fill_missing_layers=True to write "
            "all-zero layers that read_loom_full leaves out when reading."
        )
        raise ValueError(msg)
    return missing


#: Spec versions whose text attributes are fixed-length strings (spec 3 has variable-length UTF-8).
FIXED_LENGTH_TEXT_SPECS = frozenset({"2.0.1"})


def _fixed_length_text(values: np.ndarray) -> np.ndarray | None:
    """Text as fixed-length UTF-8 bytes; ``None`` when a value holds NUL, which fixed-length strings would cut off."""
    encoded = [value.encode("utf-8") for value in values]
    if any(b"\x00" in value for value in encoded):
        return None
    return np.array(encoded, dtype=f"S{max((len(v) for v in encoded), default=1) or 1}")


def _write_attribute(
    group: h5py.Group, name: str, values: np.ndarray, codec: ColumnTag | None, *, fixed_text: bool = False
) -> h5py.Dataset:
    fixed = _fixed_length_text(values) if fixed_text and values.dtype == object else None
    if fixed is not None:
        values = fixed
    dtype = vlen_str_dtype() if values.dtype == object else values.dtype
    # growable along the first axis, as loompy makes them, so loompy.combine and add_columns work on our files
    dset = group.create_dataset(
        name,
        data=values,
        dtype=dtype,
        maxshape=(None, *values.shape[1:]),
        chunks=(min(max(len(values), 1), 4096), *values.shape[1:]) if values.size else None,
        **_attr_compression(values),
    )
    if codec is not None:
        write_tag(dset, codec)
    return dset


def _attr_compression(values: np.ndarray) -> dict[str, Any]:
    # loompy compresses attributes too; tiny ones gain nothing
    return {"compression": "gzip", "compression_opts": 2} if values.size > 1024 else {}


def _write_axis(file: h5py.File, plan: AxisPlan, convention: Convention, *, sidecar: bool) -> None:
    loom_axis = "col" if plan.name == "obs" else "row"
    attrs = file.require_group(f"{loom_axis}_attrs")
    fixed_text = convention.spec_version in FIXED_LENGTH_TEXT_SPECS
    _write_attribute(attrs, plan.index_attr, plan.index_values, None, fixed_text=fixed_text)
    link_names(attrs, plan.index_attr, linked_names(convention, plan.name))
    rtypes = convention.r_types
    factors: set[str] = set()
    for _key, attr, enc in plan.columns:
        if attr == plan.index_attr:
            continue
        values = r_values(enc.values, enc.codec, enc.aux, rtypes)
        dset = _write_attribute(attrs, attr, values, enc.codec, fixed_text=fixed_text)
        if is_logical(enc.codec, enc.aux):
            mark_logical(dset, rtypes)
        if is_text_factor(enc.codec, enc.aux):
            factors.add(attr)
        if not sidecar:
            put_aux_attributes(dset, enc.aux)
            continue
        for aux_name, aux in enc.aux.items():
            sidecar_put(file, f"{loom_axis}_attrs/{attr}/{aux_name}", aux)
    for emb in plan.embeddings:
        if emb.storage == "sidecar":
            sidecar_put(file, f"{plan.name}m/{emb.key}", emb.values)
            continue
        if emb.store is not None:
            write_stored(
                file, attrs, emb, lambda g, name, values: _write_attribute(g, name, values, None), rtypes.bool_dtype
            )
            continue
        for name, values in attribute_values(emb):
            _write_attribute(attrs, name, values, None)
    if rtypes.factors == "flags" and plan.name == "obs" and factors:
        # LoomExperiment's import reads the flags against every other column attribute, by name, but the embeddings
        registered = {e.attrs[0] for e in plan.embeddings if e.storage != "sidecar" and e.registry_global}
        names = flagged_names(attrs, {rtypes.factor_flags_attr, *registered})
        _write_attribute(attrs, rtypes.factor_flags_attr, flags_matrix(len(plan.index_values), names, factors), None)
    graphs = file.require_group(f"{loom_axis}_graphs")
    for _key, graph, value in plan.graphs:
        write_graph(graphs, graph, value, index_base=convention.graph_index_base)
    for key, value in plan.sidecar_graphs:
        sidecar_put(file, f"{plan.name}p/{key}", value)


def write_layer(
    group: h5py.Group,
    name: str,
    value: Any,
    shape: tuple[int, int],
    options: dict[str, Any],
    source: BandSource | None = None,
) -> None:
    if value is None:
        dset = _matrix.write_matrix(group, name, None, shape=shape, dtype=np.dtype(np.float32), **options)
        write_tag(dset, AbsentMatrixTag())
        return
    kind = MatrixTag.of(value)
    if source is not None:  # ``value`` is its stand-in
        dset = write_streamed(group, name, source, **options)
    else:
        stored = value.astype(np.uint8) if value.dtype == bool else value
        dset = _matrix.write_matrix(group, name, stored, **options)
    write_tag(dset, kind)


def write_filled_layer(group: h5py.Group, name: str, adata: AnnData, options: dict[str, Any]) -> None:
    """An all-zero layer the target tool needs, marked so that reading leaves it out (no chunk is stored)."""
    # the dtype of the layers present (velocyto's are counts), else of X
    present = [v for v in (*named_layers(adata).values(), adata.X) if v is not None]
    dtype = (np.dtype(np.uint8) if present[0].dtype == bool else present[0].dtype) if present else np.dtype(np.float32)
    dset = _matrix.write_matrix(group, name, None, shape=adata.shape, dtype=dtype, **options)
    write_tag(dset, FilledLayerTag())


def execute_plan(file: h5py.File, plan: WritePlan, matrix_options: dict[str, Any]) -> None:
    """Write a planned AnnData into an open, empty HDF5 file."""
    adata = plan.adata
    write_layer(file, "matrix", adata.X, adata.shape, matrix_options, plan.streamed.get(X_KEY))
    layers = file.create_group("layers")
    for name, key in plan.layers:
        write_layer(layers, name, adata.layers[key], adata.shape, matrix_options, plan.streamed.get(key))
    for name in plan.filled_layers:
        write_filled_layer(layers, name, adata, matrix_options)
    write_annotations(file, plan)


def write_annotations(file: h5py.File, plan: WritePlan, *, creation_date: str | None = None) -> None:
    """Write everything but ``/matrix`` and ``/layers``: attributes, graphs, kept elements, global attributes.

    ``creation_date`` keeps the ``CreationDate`` of a file being updated (default: now).
    """
    convention = plan.convention
    sidecar = convention.sidecar
    _write_axis(file, plan.obs, convention, sidecar=sidecar)
    if plan.scope is not None:
        for name, values in plan.scope.attrs.items():
            _write_attribute(file["col_attrs"], name, values, None)
    _write_axis(file, plan.var, convention, sidecar=sidecar)
    if plan.uns_sidecar:
        sidecar_put(file, "uns", plan.uns_sidecar)
    if plan.metadata.raw:
        sidecar_put(file, "raw", plan.raw)
    now = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    global_values = {
        **({"LOOM_SPEC_VERSION": convention.spec_version} if convention.spec_version else {}),
        "CreationDate": creation_date or now,
        "last_modified": now,
        **plan.tool_globals,
        **{k: encode_global(v, tag) for k, (tag, v) in plan.uns_globals.items()},
        METADATA_KEY: plan.metadata.to_json(),
    }
    write_globals(file, global_values, layout=convention.global_layout)


def check_write_arguments(
    function: str, filename: Any, adata: Any, lossy: Any, *, keep_backed: bool = False
) -> AnnData:
    """Refuse swapped or mistyped arguments before anything is touched; returns the AnnData, in memory.

    ``keep_backed``: return a backed AnnData as it is (its matrices are then streamed).
    """
    if isinstance(filename, AnnData):
        msg = f"{function}(filename, adata): the first argument is an AnnData; pass the file name first, like sc.write."
        raise TypeError(msg)
    if not isinstance(adata, AnnData):
        msg = f"{function}(filename, adata): expected an AnnData as the second argument, got {type(adata).__name__}."
        raise TypeError(msg)
    if not isinstance(filename, str | os.PathLike):
        msg = f"{function}(filename, adata): expected a path as the first argument, got {type(filename).__name__}."
        raise TypeError(msg)
    if lossy not in ("raise", "warn"):
        msg = f"lossy={lossy!r}; expected 'raise' or 'warn'."
        raise ValueError(msg)
    return adata.to_memory() if adata.isbacked and not keep_backed else adata


def write_loom_full(
    filename: str | os.PathLike[str],
    adata: AnnData,
    *,
    convention: str | Convention = DEFAULT_CONVENTION,
    lossy: LossyPolicy = "raise",
    fill_missing_layers: bool = False,
    convert_strings_to_categoricals: bool = True,
    chunks: tuple[int, int] = _matrix.DEFAULT_CHUNKS,
    compression_level: int = _matrix.DEFAULT_COMPRESSION_LEVEL,
    n_threads: int | None = None,
    progress: bool | None = None,
    session_info: bool = False,
) -> None:
    """Write an AnnData to a loom file that reads back exactly.

    ``X`` goes to ``/matrix`` and layers to ``/layers`` (genes × cells, as loom requires), ``obs``/``var`` columns
    to column/row attributes with readable values, names to the convention's attributes (``CellID``/``Gene`` by
    default), embeddings to attributes, ``obsp``/``varp`` to graphs. What loom has no place for (``uns`` mappings,
    DataFrames in ``obsm``, ``raw``, category lists) is kept beside it in anndata's element encoding. The file is
    written under a temporary name beside ``filename`` and moved into place when complete.

    Parameters
    ----------
    filename
        Path of the ``.loom`` file to write; an existing file is replaced only when the write succeeds.
    adata
        The AnnData object. ``X`` and layers that are not in memory (dask arrays, a backed AnnData's ``X``, an
        ``anndata.experimental.read_lazy`` object's matrices) are written a band of cells at a time (see "Writing in
        bands" in the documentation).
    convention
        Name of a convention in :data:`scanpy_loomio.conventions.CONVENTIONS` (the tool the file is for), or a
        :class:`~scanpy_loomio.conventions.Convention`.
    lossy
        What to do when an element cannot be stored exactly in this convention: ``"raise"`` a
        :class:`~scanpy_loomio.LossyWriteError`, or ``"warn"`` with a :class:`~scanpy_loomio.LossyWriteWarning` naming
        the key and leave it out.
    fill_missing_layers
        When the convention's tool needs layers the AnnData lacks (velocyto needs ``spliced``, ``unspliced`` and
        ``ambiguous``), write them as all-zero layers instead of raising. They are marked as filled, so
        :func:`~scanpy_loomio.read_loom_full` leaves them out and the AnnData still reads back exactly.
    convert_strings_to_categoricals
        Store text columns with repeated values as categoricals, as :func:`anndata.io.write_h5ad` does (on copies:
        ``adata`` is left as it is), so that the file reads back as an ``.h5ad`` file would. ``False`` keeps them
        as text.
    chunks
        HDF5 chunk shape (genes, cells) of the matrix and layers.
    compression_level
        gzip level of the matrix and layers, 0 to 9.
    n_threads
        Threads used to compress; ``None`` uses every available core.
    progress
        Show a progress bar; ``None`` follows scanpy's verbosity.
    session_info
        Also record every package of the Python session and its version (``session_info``'s report) as the text
        dataset ``/scanpy_loomio/session_info``. The versions of this package, anndata, scanpy, h5py and numpy are
        always recorded.

    Raises
    ------
    TypeError
        When the arguments are swapped or of the wrong type.
    LossyWriteError
        When an element cannot be stored exactly; nothing is written.
    ValueError
        When the convention's tool needs layers the AnnData lacks and ``fill_missing_layers`` is false.

    Examples
    --------
    >>> import scanpy as sc
    >>> import scanpy_loomio
    >>> adata = sc.datasets.pbmc68k_reduced()
    >>> scanpy_loomio.write_loom_full("pbmc.loom", adata)
    >>> back = scanpy_loomio.read_loom_full("pbmc.loom")
    >>> back.obs_names.equals(adata.obs_names)
    True
    """
    adata = check_write_arguments("write_loom_full", filename, adata, lossy, keep_backed=True)
    _matrix.check_matrix_options(chunks=chunks, compression_level=compression_level, where=os.fspath(filename))
    conv = get_convention(convention)
    adata, streamed = split_streamed(adata)
    plan = plan_write(
        adata,
        conv,
        policy=lossy,
        fill_missing_layers=fill_missing_layers,
        convert_strings_to_categoricals=convert_strings_to_categoricals,
    )
    plan.streamed = streamed
    options = {
        "chunks": tuple(chunks),
        "compression_level": int(compression_level),
        "n_threads": n_threads,
        "progress": progress_default(progress),
    }
    path = Path(filename)
    with atomic_target(path) as tmp, h5py.File(tmp, "w") as file:
        execute_plan(file, plan, options)
        if session_info and conv.sidecar:
            file.require_group(SIDECAR_GROUP).create_dataset(
                "session_info", data=session_report(), dtype=vlen_str_dtype()
            )
