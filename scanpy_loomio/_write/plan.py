"""Planning a write, touching nothing: what each part of the AnnData becomes in the file, checked before writing.

A :class:`WritePlan` names every dataset, attribute and global the file will get, with the values already encoded,
so that a write that cannot be lossless fails (or warns) before a byte is written.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from scanpy_loomio._codecs.auxiliary import fit_in_attributes
from scanpy_loomio._codecs.columns import NATIVE_DTYPES, EncodedColumn, encode_column, storable_values, text_kind
from scanpy_loomio._codecs.text import unstorable_text_reason
from scanpy_loomio._compat import named_layers
from scanpy_loomio._elements.aliases import linked_names, linked_paths
from scanpy_loomio._elements.embeddings import EmbeddingPlan, plan_embedding, registry_globals
from scanpy_loomio._elements.globals import json_tag, scalar_tag
from scanpy_loomio._elements.graphs import (
    CompressedGraph,
    compressed_graph,
    graph_weights_exact,
    weights_exact_as_float,
)
from scanpy_loomio._elements.scope import (
    ScopeLayout,
    plan_scope_embeddings,
    plan_scope_layout,
    uses_scope_layout,
)
from scanpy_loomio._elements.sidecar import can_encode
from scanpy_loomio._elements.views import plan_stores, store_registry
from scanpy_loomio._errors import LossyWriteError, LossyWriteWarning
from scanpy_loomio._matrix.stream import BandSource
from scanpy_loomio._record.record import RESERVED_GLOBALS, AxisRecord, Metadata
from scanpy_loomio._write.h5ad_rules import frame_as_h5ad_stores, raw_as_h5ad_stores
from scanpy_loomio._write.provenance import provenance
from scanpy_loomio.conventions import Convention

LossyPolicy = Literal["raise", "warn"]


@dataclass
class AxisPlan:
    """Everything written for one axis (``obs`` → ``col_*``, ``var`` → ``row_*``)."""

    name: Literal["obs", "var"]
    index_attr: str
    index_values: np.ndarray
    index_name: str | None
    columns: list[tuple[str, str, EncodedColumn]] = field(default_factory=list)
    embeddings: list[EmbeddingPlan] = field(default_factory=list)
    graphs: list[tuple[str, str, Any]] = field(default_factory=list)
    sidecar_graphs: list[tuple[str, Any]] = field(default_factory=list)
    empty_text: dict[str, Any] = field(default_factory=dict)

    def record(self) -> AxisRecord:
        return AxisRecord(
            index_attr=self.index_attr,
            index_name=self.index_name,
            columns=[(key, attr) for key, attr, _ in self.columns],
            multi={e.key: e.record() for e in self.embeddings},
            graphs={key: graph for key, graph, _ in self.graphs} | {key: "" for key, _ in self.sidecar_graphs},
            empty_text=self.empty_text,
        )


def empty_text_types(frame: pd.DataFrame) -> dict[str, Any]:
    """For a frame of no rows, whether its index and text columns are pandas' ``str`` or ``object`` (else ``{}``).

    pandas infers the type of text from its values, so with none the type is what ``.h5ad`` keeps and loom cannot.
    """
    if len(frame.index):
        return {}
    columns = {str(col): text_kind(dtype) for col, dtype in frame.dtypes.items()}
    names = text_kind(frame.index.dtype)
    return {
        **({"names": names} if names else {}),
        "columns": {col: text for col, text in columns.items() if text is not None},
    }


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


def _graph_weights(graph: CompressedGraph | None, value: Any) -> tuple[bool, np.dtype[Any]]:
    """Whether a graph's weights survive loom's float weights exactly, and their dtype.

    ``graph``: the arrays of ``value`` when it is CSR/CSC, in memory or on disk (integer weights are then checked a
    block at a time).
    """
    if graph is not None:
        return graph_weights_exact(graph), graph.dtype
    # scipy-stubs narrow issparse to an abstract base class without the data every container has
    data = value.data if sparse.issparse(value) else np.asarray(value)  # type: ignore[attr-defined]
    return weights_exact_as_float(data), data.dtype


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
    plan = AxisPlan(axis, index_attr, index_values, index_name, empty_text=empty_text_types(frame))
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
        graph = compressed_graph(value)  # found once: the write takes the arrays (an on-disk indptr is read once)
        exact, dtype = _graph_weights(graph, value)
        if exact:
            plan.graphs.append((key, key, value if graph is None else graph))
            graph_names.add(key)
        elif not _sidecar_storable(value):
            _lossy(
                policy,
                f"{axis}p[{key!r}]: a {type(value).__name__} of dtype {dtype} that anndata's element encoding "
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


def _is_matrix(value: object) -> bool:
    """A numpy array or a scipy sparse matrix or array (what a loom matrix is written from)."""
    return isinstance(value, np.ndarray) or sparse.issparse(value)


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
    matrices: list[tuple[str, Any]] = [("X", adata.X), *((f"layers[{k!r}]", v) for k, v in stored_layers.items())]
    for key, value in matrices:
        if value is None:
            continue
        if not _is_matrix(value):
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
        obs=obs.record(),
        var=var.record(),
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
