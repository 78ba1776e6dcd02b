"""The read path: open read-only, find the layout and convention, build the AnnData.

Values always come from the loom datasets. Exact types, names and key mappings come from this package's record
and the codec attributes on datasets when present; a file without them is read as plain loom in the convention
detected from its attribute names.
"""

from __future__ import annotations

import logging
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np
import pandas as pd
from anndata import AnnData
from anndata.utils import make_index_unique

from scanpy_loomio._codecs.auxiliary import get_aux_attributes
from scanpy_loomio._codecs.columns import CodecMismatch, decode_column, plain_values
from scanpy_loomio._codecs.rtypes import enum_labels, enum_mapping
from scanpy_loomio._codecs.text import looks_like_bytes_repr, repair_bytes_repr
from scanpy_loomio._compat import quiet_anndata
from scanpy_loomio._elements.aliases import other_names
from scanpy_loomio._elements.embeddings import restore as restore_embedding
from scanpy_loomio._elements.globals import decode_global, read_globals
from scanpy_loomio._elements.graphs import build_matrix
from scanpy_loomio._elements.orientation import stored_transposed
from scanpy_loomio._elements.sidecar import read_elem, sidecar_get
from scanpy_loomio._errors import LoomFormatError, LoomReadWarning
from scanpy_loomio._guards import (
    MemoryLimit,
    check_file,
    check_read_size,
    converted_read_errors,
    hdf5_object,
    open_read_only,
    read_values,
    resolve_memory_limit,
)
from scanpy_loomio._read.detect import detect_convention
from scanpy_loomio._read.foreign import (
    ForeignAxis,
    choose_index_attr,
    decode_foreign_global,
    graph_index_base,
    nested_datasets,
)
from scanpy_loomio._read.selection import read_stored_matrix, read_subset
from scanpy_loomio._record.checks import record_error, tag_error, usable_metadata
from scanpy_loomio._record.record import METADATA_KEY, RESERVED_GLOBALS, SIDECAR_GROUP, AxisRecord, Metadata
from scanpy_loomio._record.tags import (
    FilledLayerTag,
    TagError,
    column_tag,
    graph_tag,
    layer_tag,
    stored_tag_text,
)
from scanpy_loomio._settings import progress_default
from scanpy_loomio._spec.facts import AXES
from scanpy_loomio._spec.rules import layer_violations, raise_first
from scanpy_loomio.conventions import Convention, get_convention

logger = logging.getLogger("scanpy_loomio")


@dataclass
class ReadOptions:
    """Choices the caller made (all optional)."""

    convention: Convention | None = None
    X_name: str | None = None
    obs_names: str | None = None
    var_names: str | None = None
    obsm_mapping: Mapping[str, list[str]] = field(default_factory=dict)
    varm_mapping: Mapping[str, list[str]] = field(default_factory=dict)
    sparse: bool = True
    dtype: str | None = None
    cleanup: bool = False
    matrices: bool = True
    repair_bytes_text: bool = False
    n_threads: int | None = None
    progress: bool = False


class LoomReader:
    """Reads one open loom file into an AnnData."""

    def __init__(self, file: h5py.File, path: Path, options: ReadOptions) -> None:
        self.file = file
        self.path = path
        self.options = options
        self.globals = read_globals(file)
        self.metadata = usable_metadata(self._metadata(), path, file)
        self.convention = self._convention()
        self.transposed = stored_transposed(file)
        self.foreign_uns: dict[str, Any] = {}
        self.index_attrs: dict[str, str | None] = {}
        """The attribute each axis's names were read from (``None``: a range index), once the axis is read."""

    # -- helpers ---------------------------------------------------------------------------------------------
    def error(self, where: str, found: str, expected: str, fix: str = "") -> LoomFormatError:
        msg = f"{self.path}: {where}: found {found}; expected {expected}."
        if fix:
            msg += f" {fix}"
        return LoomFormatError(msg)

    def _metadata(self) -> Metadata | None:
        raw = self.globals.get(METADATA_KEY)
        if raw is None:
            return None
        try:
            return Metadata.from_json(raw)
        except TagError as err:
            if err.newer:
                raise record_error(self.path, err) from None
            warnings.warn(
                f"{self.path}: the scanpy_loomio record in the global attributes is unreadable ({err}); "
                "reading the file as plain loom. Exact dtypes and index names may not be restored.",
                LoomReadWarning,
                stacklevel=4,
            )
            return None

    def _convention(self) -> Convention:
        if self.options.convention is not None:
            return self.options.convention
        if self.metadata is not None:
            try:
                return get_convention(self.metadata.convention)
            except ValueError:
                pass
        return detect_convention(self.file, self.globals)

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_obs, n_vars)``."""
        if "matrix" not in self.file:
            raise self.error("/matrix", "no such dataset", "the main matrix of a loom file", "Is this a loom file?")
        matrix = self.file["matrix"]
        if not isinstance(matrix, h5py.Dataset) or matrix.ndim != 2:
            raise self.error(
                "/matrix", f"a {type(matrix).__name__} of {getattr(matrix, 'ndim', '?')} dimensions", "a 2-D dataset"
            )
        if matrix.dtype.kind not in "iufb":
            raise self.error("/matrix", f"values of dtype {matrix.dtype}", "numbers (integers, floats or bool)")
        n_genes, n_cells = matrix.shape
        return (n_genes, n_cells) if self.transposed else (n_cells, n_genes)

    # -- matrices --------------------------------------------------------------------------------------------
    def read_layer(
        self,
        dset: h5py.Dataset,
        *,
        dtype: str | None = None,
        template: tuple[int, int] | None = None,
        cells: np.ndarray | None = None,
        genes: np.ndarray | None = None,
    ) -> Any:
        """A matrix as stored (its recorded container and dtype), cast to ``dtype`` when given.

        ``template``: nothing is read; an all-zero matrix of this shape, of the container and dtype reading would
        give (what :func:`scanpy_loomio.concat_loom` plans with). ``cells``/``genes``: increasing positions to read
        (``None``: all).
        """
        return read_stored_matrix(
            dset,
            sparse=self.options.sparse,
            transposed=self.transposed,
            dtype=dtype,
            template=template,
            cells=cells,
            genes=genes,
            n_threads=self.options.n_threads,
            progress=self.options.progress,
        )

    def matrix_sources(self, *, choose_x: bool = True) -> tuple[h5py.Dataset, dict[str, h5py.Dataset], str | None]:
        """The dataset read as ``X``, the datasets read as layers by key (in reading order), and the X layer name.

        ``choose_x=False`` reads ``/matrix`` as ``X`` without looking at ``X_name``.
        """
        self.shape  # noqa: B018 - checks /matrix
        layers_group = self.file.get("layers")
        names = list(layers_group.keys()) if layers_group is not None else []
        raise_first(layer_violations(self.file, self.file["matrix"].shape), self.path)
        # all-zero layers written only because the target tool needs them (fill_missing_layers=True)
        names = [n for n in names if not isinstance(layer_tag(layers_group[n]), FilledLayerTag)]
        x_name = self._x_name(names) if choose_x else None
        layers: dict[str, h5py.Dataset] = {}
        if x_name:
            # as anndata's read_loom: the chosen layer is X (and stays a layer), /matrix becomes layers["matrix"]
            X = layers_group[x_name]
            layers["matrix"] = self.file["matrix"]
        else:
            X = self.file["matrix"]
        order = [n for _, n in self.metadata.layers] if self.metadata else []
        recorded = {n: k for k, n in self.metadata.layers} if self.metadata else {}
        for name in [n for n in order if n in names] + [n for n in names if n not in order]:
            layers[recorded.get(name, name)] = layers_group[name]
        return X, layers, x_name

    def read_matrices(self) -> tuple[Any, dict[str, Any]]:
        if not self.options.matrices:
            self.matrix_sources(choose_x=False)  # the same checks
            return None, {}
        x_dset, sources, _ = self.matrix_sources()
        with hdf5_object(x_dset):
            X = self.read_layer(x_dset, dtype=self.options.dtype)
        layers = {}
        for key, dset in sources.items():
            with hdf5_object(dset):
                layers[key] = self.read_layer(dset)
        return X, layers

    def _x_name(self, layer_names: list[str]) -> str | None:
        """The layer read as ``X``: only one asked for, by ``X_name`` or by a convention passed as ``convention=``."""
        x_name = self.options.X_name
        asked = "X_name"
        if x_name is None and self.options.convention is not None and self.metadata is None:
            x_name, asked = self.options.convention.x_layer, f"convention {self.options.convention.name!r}"
        if not x_name:  # None, or "" which anndata's read_loom takes for /matrix
            return None
        if x_name not in layer_names:
            warnings.warn(
                f"{self.path}: {asked} asks for layer {x_name!r} as X, but /layers has {sorted(layer_names) or 'none'}; "
                "X is /matrix. Pass X_name=None to read /matrix without this warning.",
                LoomReadWarning,
                stacklevel=5,
            )
            return None
        return x_name

    # -- axes ------------------------------------------------------------------------------------------------
    def read_axis(self, axis: Literal["obs", "var"], n: int) -> tuple[pd.DataFrame, dict[str, Any], dict[str, Any]]:
        loom = AXES[axis]
        group_path = f"{loom}_attrs"
        if group_path not in self.file:
            raise self.error(f"/{group_path}", "no such group", f"the {axis} attributes group", "Is this a loom file?")
        group = self.file[group_path]
        record: AxisRecord | None = getattr(self.metadata, axis) if self.metadata else None
        datasets: dict[str, h5py.Dataset] = {}
        for name, obj in group.items():
            if isinstance(obj, h5py.Dataset):
                if obj.ndim == 0 or obj.shape[0] != n:
                    raise self.error(f"/{group_path}/{name}", f"shape {obj.shape}", f"first dimension {n}")
                datasets[name] = obj
        # groups nested under the attribute groups (LoomExperiment's GRanges/, reducedDims/)
        datasets.update(nested_datasets(group, n, f"{self.path}:/{group_path}"))
        used: set[str] = set()
        values_cache: dict[str, np.ndarray] = {}

        def values_of(name: str) -> np.ndarray:
            if name not in values_cache:
                try:
                    dset = datasets[name]
                    raw = read_values(dset)
                    if enum_mapping(dset.dtype) is not None:
                        raw = enum_labels(raw, dset.dtype)  # an R factor: its labels
                    values_cache[name] = plain_values(raw, where=f"{self.path}:/{group_path}/{name}")
                except UnicodeDecodeError as err:
                    raise self.error(
                        f"/{group_path}/{name}", f"text that is not UTF-8 ({err.reason})", "UTF-8 text"
                    ) from None
            return values_cache[name]

        # index
        index_attr = self._index_attr(axis, datasets, record, values_of)
        self.index_attrs[axis] = index_attr
        if index_attr is not None:
            names = np.asarray(values_of(index_attr), dtype=str).astype(object)
            if record is None or self.options.repair_bytes_text:
                names = self._bytes_text(axis, {None: names})[None]
            index = pd.Index(names)  # text, as anndata builds it: str with pandas 3, object before
            used.add(index_attr)
            used.update(other_names(datasets, index_attr))  # the names under other names (hard links): not columns
        else:
            index = pd.RangeIndex(n).astype(str)
        index.name = record.index_name if record else None

        asked = self.options.obs_names if axis == "obs" else self.options.var_names
        # names the caller chose over the record's: that attribute is the index only, not a column as well
        chosen_over_record = (
            asked is not None and index_attr == asked and record is not None and asked != record.index_attr
        )
        if self.metadata:  # written for the tool only; the record restores their values from others
            used.update(a.split("/", 1)[1] for a in self.metadata.tool_attrs if a.startswith(f"{group_path}/"))
        columns: dict[str, Any] = {}
        if record:
            for key, attr in record.columns:
                if attr not in datasets:
                    continue  # deleted by another tool
                used.add(attr)
                if chosen_over_record and attr == index_attr:
                    continue
                if attr == index_attr and stored_tag_text(datasets[attr]) is None:
                    columns[key] = values_of(attr).copy()
                    continue
                with hdf5_object(datasets[attr]):
                    columns[key] = self._decode(group_path, attr, datasets[attr], values_of(attr))

        multi: dict[str, Any] = {}
        if record:
            for key, entry in record.multi.items():
                if entry.storage == "sidecar":
                    value = self._aligned(sidecar_get(self.file, f"{axis}m/{key}"), n, f"{axis}m[{key!r}]")
                    if value is not None:
                        multi[key] = value
                    continue
                attrs = entry.attrs
                if attrs and all(a in datasets for a in attrs):
                    used.update(attrs)
                    multi[key] = restore_embedding(entry, [read_values(datasets[a]) for a in attrs])
        mapping = self.options.obsm_mapping if axis == "obs" else self.options.varm_mapping
        for key, attrs in mapping.items():
            missing = [a for a in attrs if a not in datasets]
            if missing:
                raise self.error(
                    f"/{group_path}", f"no attributes {missing}", f"the attributes named in {axis}m_mapping[{key!r}]"
                )
            multi[key] = np.stack([read_values(datasets[a]) for a in attrs], axis=1)
            used.update(attrs)

        # attributes this package did not write (foreign files, or added by another tool)
        foreign = ForeignAxis(axis, self.convention, f"{self.path}:/{group_path}", values_of, self.globals)
        with hdf5_object(group):
            more_columns, more_multi = foreign.read(
                {name: d for name, d in datasets.items() if name not in used},
                taken={*columns, *multi},
                all_names=datasets,
            )
        self.foreign_uns.update(foreign.uns)
        columns.update(more_columns)
        multi.update(more_multi)

        if self.options.repair_bytes_text or record is None:
            columns = self._bytes_text(axis, columns)
        frame = pd.DataFrame(columns, index=index) if columns else pd.DataFrame(index=index)
        if record is None and index_attr is not None and not index.is_unique:
            frame = self._make_unique(axis, frame, index_attr, group_path)
        if record is None and axis == "obs":  # the tool's per-cell columns that also form an obsm entry
            for key, names in self.convention.obsm_from_columns.items():
                if key not in multi and all(n in frame.columns and frame[n].dtype.kind in "iuf" for n in names):
                    multi[key] = np.column_stack([frame[n].to_numpy() for n in names])
        for key in more_multi:
            if isinstance(multi[key], pd.DataFrame):
                multi[key].index = frame.index.copy()  # rows of a record attribute are this axis's entries
        pairwise = self.read_graphs(axis, n, record)
        return frame, multi, pairwise

    def _make_unique(self, axis: str, frame: pd.DataFrame, index_attr: str, group_path: str) -> pd.DataFrame:
        """Unique names (anndata's ``make_index_unique``), the originals kept in a column named as the attribute."""
        original = frame.index
        column = index_attr.replace("/", "_")
        while column in frame.columns:
            column = f"{column}_original"
        warnings.warn(
            f"{self.path}: {axis} names from /{group_path}/{index_attr} are not unique "
            f"({original.duplicated().sum()} repeats); made them unique (anndata's make_index_unique) and kept the "
            f"originals in {axis}[{column!r}].",
            LoomReadWarning,
            stacklevel=5,
        )
        frame = frame.copy()
        frame[column] = np.asarray(original, dtype=object)
        frame.index = make_index_unique(original)
        return frame

    def _decode(self, group_path: str, attr: str, dset: h5py.Dataset, values: np.ndarray) -> Any:
        try:
            codec = column_tag(dset)
        except TagError as err:  # written by a newer release
            raise tag_error(self.path, f"/{group_path}/{attr}", err) from None
        if codec is None:
            return values
        aux_path = f"{SIDECAR_GROUP}/{group_path}/{attr}"
        aux = get_aux_attributes(dset)  # conventions without the sidecar keep them on the dataset
        if aux_path in self.file:
            aux.update({name: read_elem(obj) for name, obj in self.file[aux_path].items()})
        try:
            raw = dset[()] if values.dtype == object and enum_mapping(dset.dtype) is None else values
            return decode_column(raw, codec, aux)
        except (CodecMismatch, KeyError, ValueError, TypeError) as err:
            warnings.warn(
                f"{self.path}: /{group_path}/{attr} no longer matches its recorded encoding ({err}); it was probably "
                "changed by another tool. Reading its values as they are.",
                LoomReadWarning,
                stacklevel=5,
            )
            return values

    def _index_attr(
        self,
        axis: Literal["obs", "var"],
        datasets: Mapping[str, h5py.Dataset],
        record: AxisRecord | None,
        values_of: Any,
    ) -> str | None:
        """The attribute holding the names: asked for (``obs_names=``), recorded, or found (see ``_foreign``)."""
        asked = self.options.obs_names if axis == "obs" else self.options.var_names
        if asked is not None:
            if asked in datasets and datasets[asked].ndim == 1:
                return asked
            warnings.warn(
                f"{self.path}: {axis}_names={asked!r} names no 1-D attribute in /{AXES[axis]}_attrs; "
                f"finding the names as without it. Attributes there: {sorted(datasets)[:20]}.",
                LoomReadWarning,
                stacklevel=5,
            )
        if record is not None and record.index_attr in datasets:
            return record.index_attr
        return choose_index_attr(axis, datasets, self.convention, values_of, f"{self.path}:/{AXES[axis]}_attrs")

    def _bytes_text(self, axis: str, columns: dict[str | None, Any]) -> dict[str | None, Any]:
        """Flag (or, with ``repair_bytes_text=True``, repair) loompy 3's ``"b'...'"`` text; key ``None``: the names."""
        out = dict(columns)
        for name, values in columns.items():
            if isinstance(values, np.ndarray) and values.dtype == object and looks_like_bytes_repr(values):
                if self.options.repair_bytes_text:
                    out[name] = repair_bytes_repr(values)
                else:
                    warnings.warn(
                        f"{self.path}: {f'{axis} names' if name is None else f'{axis}[{name!r}]'} holds text like "
                        "\"b'...'\" (Python bytes written as text by loompy 3); pass repair_bytes_text=True to turn "
                        "it back into the original text.",
                        LoomReadWarning,
                        stacklevel=5,
                    )
        return out

    # -- graphs ----------------------------------------------------------------------------------------------
    def read_graphs(self, axis: str, n: int, record: AxisRecord | None) -> dict[str, Any]:
        loom = AXES[axis]
        out: dict[str, Any] = {}
        recorded = {graph: key for key, graph in record.graphs.items() if graph} if record else {}
        for group_name in (f"{loom}_graphs", f"{loom}_edges"):
            group = self.file.get(group_name)
            if group is None or not isinstance(group, h5py.Group):
                continue
            for name, g in group.items():
                if not isinstance(g, h5py.Group):
                    continue
                key = recorded.get(name, name) if group_name.endswith("graphs") else name
                with hdf5_object(g):
                    out[key] = self._read_graph(f"/{group_name}/{name}", g, n)
        if record:
            for key, graph in record.graphs.items():
                if not graph:
                    value = self._aligned(sidecar_get(self.file, f"{axis}p/{key}"), n, f"{axis}p[{key!r}]")
                    if value is not None:
                        out[key] = value
            order = list(record.graphs)
            out = {k: out[k] for k in order if k in out} | {k: v for k, v in out.items() if k not in order}
        return out

    def _read_graph(self, where: str, g: h5py.Group, n: int) -> Any:
        missing = [x for x in "abw" if x not in g]
        if missing:
            raise self.error(where, f"no {', '.join(missing)}", "datasets a, b and w (an edge list)")
        a, b, w = (read_values(g[x]) for x in "abw")
        if not (a.shape == b.shape == w.shape) or a.ndim != 1:
            raise self.error(
                where, f"a, b, w of shapes {a.shape}, {b.shape}, {w.shape}", "three 1-D datasets of one length"
            )
        codec = graph_tag(g)
        bases = list(codec.index_base) if codec else [0, 0]
        if codec is None:  # another tool's graph: the convention's base, unless the values rule it out
            for i, (values, name) in enumerate(((a, "a"), (b, "b"))):
                bases[i], note = graph_index_base(values, n, self.convention.graph_index_base[i], f"{where}/{name}")
                if note:
                    warnings.warn(f"{self.path}: {note}", LoomReadWarning, stacklevel=6)
        a, b = (
            self._graph_index(where, x, name, n, base) for x, name, base in ((a, "a", bases[0]), (b, "b", bases[1]))
        )
        if codec is None and w.dtype.kind not in "f":
            w = w.astype(np.float32)
        return build_matrix(a, b, w, n, codec.matrix if codec else None)

    def _graph_index(self, where: str, values: np.ndarray, name: str, n: int, base: int) -> np.ndarray:
        if values.dtype.kind == "f":
            if not np.all(np.isfinite(values)) or np.any(values != np.round(values)):
                raise self.error(f"{where}/{name}", "non-integer or NaN vertex indices", "whole numbers")
        elif values.dtype.kind not in "iu":
            raise self.error(f"{where}/{name}", f"dtype {values.dtype}", "integer vertex indices")
        out = values.astype(np.int64) - base
        if out.size and (out.min() < 0 or out.max() >= n):
            raise self.error(
                f"{where}/{name}",
                f"vertex indices from {out.min() + base} to {out.max() + base}",
                f"{base} to {n - 1 + base} for {n} vertices",
            )
        return out

    # -- uns / raw -------------------------------------------------------------------------------------------
    def read_uns(self) -> dict[str, Any]:
        meta = self.metadata
        sidecar_uns = sidecar_get(self.file, "uns") if meta else None
        sidecar_uns = sidecar_uns or {}
        uns: dict[str, Any] = {}
        if meta:
            for key in meta.uns_keys:
                if key in meta.uns_record:
                    tag, value = meta.uns_record[key]
                    uns[key] = decode_global(value, tag)
                elif key in meta.uns_globals:
                    if key in self.globals:
                        uns[key] = decode_global(self.globals[key], meta.uns_globals[key])
                elif key in sidecar_uns:
                    uns[key] = sidecar_uns[key]
        skip = RESERVED_GLOBALS | set(meta.tool_globals) if meta else {METADATA_KEY}
        for key, value in self.globals.items():
            if key in uns or key in skip or (meta and key in meta.uns_globals):
                continue
            uns[key] = self._foreign_global(key, value)
        for key, value in self.foreign_uns.items():
            uns.setdefault(key, value)
        return uns

    def _foreign_global(self, key: str, value: Any) -> Any:
        value = decode_foreign_global(key, value, self.convention)
        if isinstance(value, str):
            value = self._bytes_text("uns", {key: np.array([value], dtype=object)})[key][0]
        return value

    def read_raw(self) -> dict[str, Any] | None:
        if not (self.metadata and self.metadata.raw):
            return None
        raw = sidecar_get(self.file, "raw")
        raw_x = raw.X if isinstance(raw, AnnData) else (raw or {}).get("X")
        if raw is None or self._aligned(raw_x, self.shape[0], "raw") is None:
            return None
        return raw

    def _aligned(self, value: Any, n: int, key: str) -> Any:
        """A kept element, or ``None`` with a warning when another tool changed the number of cells or genes."""
        if value is None or getattr(value, "shape", (n,))[0] == n:
            return value
        warnings.warn(
            f"{self.path}: {key} was kept for {value.shape[0]} entries but the file now has {n} (another tool "
            "changed its shape); left out.",
            LoomReadWarning,
            stacklevel=5,
        )
        return None

    # -- all -------------------------------------------------------------------------------------------------
    def read(self) -> AnnData:
        n_obs, n_vars = self.shape
        if self.transposed:
            warnings.warn(
                f"{self.path}: /matrix is stored cells × genes {self.file['matrix'].shape} (the attributes list "
                f"{n_obs} cells and {n_vars} genes), not genes × cells as loom requires; read it turned round. "
                "Other loom readers will not; write_loom_full writes it the loom way.",
                LoomReadWarning,
                stacklevel=4,
            )
        X, layers = self.read_matrices()
        obs, obsm, obsp = self.read_axis("obs", n_obs)
        var, varm, varp = self.read_axis("var", n_vars)
        uns = self.read_uns()
        if self.options.cleanup:
            for axis, frame in (("obs", obs), ("var", var)):
                collapsed = _collapse_constant_columns(frame)
                if collapsed:
                    uns[f"loom-{axis}"] = collapsed
        raw = self.read_raw()
        with quiet_anndata():
            adata = AnnData(
                X=X,
                obs=obs,
                var=var,
                uns=uns,
                obsm=obsm,
                varm=varm,
                obsp=obsp,
                varp=varp,
                layers=layers,
                raw=raw,
                shape=(n_obs, n_vars) if X is None else None,
            )
        return adata


def _collapse_constant_columns(frame: pd.DataFrame) -> dict[str, Any]:
    """Remove the columns holding one value and return them as ``{column: value}`` (anndata's ``cleanup=True``)."""
    collapsed = {}
    for key in list(frame.columns):
        if len(frame[key].unique()) == 1:
            collapsed[key] = frame[key].iloc[0]
            del frame[key]
    return collapsed


def read_loom_full(
    filename: str | os.PathLike[str],
    *,
    obs: Any = None,
    var: Any = None,
    convention: str | Convention | None = None,
    X_name: str | None = None,
    obs_names: str | None = None,
    var_names: str | None = None,
    obsm_mapping: Mapping[str, list[str]] | None = None,
    varm_mapping: Mapping[str, list[str]] | None = None,
    sparse: bool = True,
    cleanup: bool = False,
    dtype: str | None = None,
    matrices: bool = True,
    repair_bytes_text: bool = False,
    n_threads: int | None = None,
    progress: bool | None = None,
    allow_external: bool = False,
    memory_limit: MemoryLimit = "available",
) -> AnnData:
    """Read a loom file into an AnnData, exactly as it was written by :func:`write_loom_full`.

    Files written by other tools are read in the convention detected from what they contain (cell and gene
    names from ``CellID``/``Gene``, ``obs_names``/``var_names``, ``colnames``/``rownames``, …, and each tool's
    markers; see :mod:`scanpy_loomio.conventions`); ``convention`` forces one. anndata's ``read_loom`` keyword
    arguments are accepted with the same meaning, except that no layer is promoted to ``X`` unless ``X_name`` asks
    for it (anndata's reader silently makes a ``spliced`` layer its ``X``).

    Parameters
    ----------
    filename
        Path of the ``.loom`` file. It is opened read-only and never modified.
    obs, var
        Read only these cells / genes: a boolean mask, integer positions, a slice or a list of names, as
        ``adata[obs, var]`` takes them (``None``: all). The result equals ``read_loom_full(filename)[obs, var]`` as
        an actual AnnData (not a view), and only the chunks of ``X`` and the layers that hold the selection are read.
        See :doc:`/out-of-core`.
    convention
        Name of a convention in :data:`scanpy_loomio.conventions.CONVENTIONS`, or a
        :class:`~scanpy_loomio.conventions.Convention`; ``None`` detects it.
    X_name
        Loom layer to use as ``X`` (it also stays a layer); ``/matrix`` then becomes ``layers["matrix"]``.
        ``None`` or ``""``: ``/matrix``.
        A name the file has no layer for warns and reads ``/matrix``.
    obs_names, var_names
        Column/row attribute holding the cell/gene names, overriding the file's record and the convention (an
        attribute the file lacks warns and is ignored). The attribute is not kept as a column.
    obsm_mapping, varm_mapping
        ``{key: [attribute, ...]}``: 1-D attributes to stack into an ``obsm``/``varm`` entry.
    sparse
        Read matrices of files without a record of their format as CSR (``True``) or dense arrays.
    cleanup
        As anndata's ``read_loom``: move every ``obs``/``var`` column holding a single value into
        ``uns['loom-obs']``/``uns['loom-var']`` (``{column: value}``).
    dtype
        Cast ``X`` to this dtype (as anndata's ``read_loom``; its default there is ``float32``); ``None`` keeps the
        stored (or recorded) dtype. Layers always keep theirs.
    matrices
        ``False`` skips ``X`` and layers (reads only names, annotations, embeddings, graphs and ``uns``).
    repair_bytes_text
        Turn loompy 3's ``"b'...'"`` text back into the original text.
    n_threads
        Threads used to decompress; ``None`` uses every available core.
    progress
        Show a progress bar; ``None`` follows scanpy's verbosity.
    allow_external
        Follow HDF5 external links and read virtual or externally stored datasets whose data lives in other files.
        Off by default, so a file cannot make the reader open other files; a file that needs it raises
        :class:`~scanpy_loomio.LoomFormatError` naming the link.
    memory_limit
        Refuse, before allocating anything, a read that needs more memory than this many bytes, or a matrix that
        declares more empty space than this: ``"available"`` (the memory free now), a number of bytes, or ``None``
        to read whatever the file declares.

    Raises
    ------
    LoomFormatError
        When the file is not a loom file that can be read, links outside itself, or needs more memory than
        ``memory_limit``; the message names the HDF5 path and the problem. A file that is not HDF5 at all (empty,
        text, truncated) raises an error that is both a ``LoomFormatError`` and an ``OSError``.
    OSError
        When the file cannot be opened at all (missing, a folder, permission denied).

    Examples
    --------
    >>> import scanpy as sc
    >>> import scanpy_loomio
    >>> scanpy_loomio.write_loom_full("pbmc.loom", sc.datasets.pbmc68k_reduced())
    >>> adata = scanpy_loomio.read_loom_full("pbmc.loom")
    >>> adata.obs["louvain"].dtype.name
    'category'

    Only some cells and genes:

    >>> b_cells = adata.obs["bulk_labels"] == "CD19+ B"
    >>> part = scanpy_loomio.read_loom_full("pbmc.loom", obs=b_cells, var=["CD79A", "MS4A1"])
    >>> part.shape
    (95, 2)
    """
    if isinstance(filename, AnnData):
        msg = "read_loom_full(filename): got an AnnData; pass the path of a .loom file."
        raise TypeError(msg)
    path = Path(filename)
    options = ReadOptions(
        convention=get_convention(convention) if convention is not None else None,
        X_name=X_name,
        obs_names=obs_names,
        var_names=var_names,
        obsm_mapping=dict(obsm_mapping or {}),
        varm_mapping=dict(varm_mapping or {}),
        sparse=sparse,
        dtype=dtype,
        cleanup=cleanup,
        matrices=matrices,
        repair_bytes_text=repair_bytes_text,
        n_threads=n_threads,
        progress=progress_default(progress),
    )
    limit = resolve_memory_limit(memory_limit)
    with _open_read_only(path) as file, converted_read_errors(path):
        datasets = check_file(file, path, allow_external=allow_external)
        reader = LoomReader(file, path, options)
        n_obs, n_vars = reader.shape
        whole = obs is None and var is None
        check_read_size(  # a subset read holds the annotations whole, and of the matrices only the selection
            file,
            path,
            datasets,
            n_obs=n_obs,
            n_vars=n_vars,
            sparse=sparse,
            dtype=dtype,
            matrices=matrices and whole,
            limit=limit,
        )
        return reader.read() if whole else read_subset(reader, obs, var)


def _open_read_only(path: Path) -> h5py.File:
    # checks that it is a regular HDF5 file first; opens without file locking (see docs/safety.md)
    return open_read_only(path)


__all__ = ["read_loom_full"]
