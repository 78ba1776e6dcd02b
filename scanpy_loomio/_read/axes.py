"""Reading an axis of a loom file: the names, the annotation columns and the embeddings of cells or genes."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, Literal, TypeVar

import h5py
import numpy as np
import pandas as pd
from anndata.utils import make_index_unique

from scanpy_loomio._codecs.auxiliary import get_aux_attributes
from scanpy_loomio._codecs.columns import CodecMismatch, decode_column, plain_values, text_type
from scanpy_loomio._codecs.rtypes import enum_labels, enum_mapping
from scanpy_loomio._codecs.text import looks_like_bytes_repr, repair_bytes_repr
from scanpy_loomio._elements.aliases import other_names
from scanpy_loomio._elements.embeddings import restore as restore_embedding
from scanpy_loomio._elements.sidecar import read_elem, sidecar_get
from scanpy_loomio._errors import LoomReadWarning
from scanpy_loomio._guards import hdf5_object, read_values
from scanpy_loomio._read.foreign import ForeignAxis, choose_index_attr, nested_datasets
from scanpy_loomio._read.graphs import GraphsReader
from scanpy_loomio._record.checks import tag_error
from scanpy_loomio._record.record import SIDECAR_GROUP, AxisRecord
from scanpy_loomio._record.tags import TagError, column_tag, stored_tag_text
from scanpy_loomio._spec.facts import AXES, is_text_dtype

_Key = TypeVar("_Key", bound=str | None)  # a column name, or None for the names


def _typed_empty_text(frame: pd.DataFrame, text_columns: list[str], recorded: dict[str, Any]) -> pd.DataFrame:
    """A frame of no rows with its names and text columns of the type they had (``recorded``: see the record).

    pandas infers the type of text from its values; with none, what was not recorded (other tools' files) takes the
    type pandas gives text.
    """
    frame = frame.copy(deep=False)
    frame.index = frame.index.astype(text_type(recorded.get("names")))
    for key in text_columns:
        frame[key] = frame[key].astype(text_type(recorded.get("columns", {}).get(str(key))))
    return frame


class AxesReader(GraphsReader):
    """Reads one axis: names, columns, embeddings (``obsm``/``varm``) and graphs."""

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
        attr_of = dict(record.columns) if record else {}  # the attribute each recorded column is stored in
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
                    multi[key] = restore_embedding(entry, (read_values(datasets[a]) for a in attrs))
        mapping = self.options.obsm_mapping if axis == "obs" else self.options.varm_mapping
        for key, attr_names in mapping.items():
            missing = [a for a in attr_names if a not in datasets]
            if missing:
                raise self.error(
                    f"/{group_path}", f"no attributes {missing}", f"the attributes named in {axis}m_mapping[{key!r}]"
                )
            multi[key] = np.stack([read_values(datasets[a]) for a in attr_names], axis=1)
            used.update(attr_names)

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
        if n == 0:  # no values for pandas to infer the type of text from
            stored = {k: datasets.get(attr_of.get(k, k)) for k in frame.columns}
            text = [
                k for k, d in stored.items() if frame[k].dtype == object and d is not None and is_text_dtype(d.dtype)
            ]
            frame = _typed_empty_text(frame, text, record.empty_text if record else {})
        if record is None and index_attr is not None and not index.is_unique:
            frame = self._make_unique(axis, frame, index_attr, group_path)
        if record is None and axis == "obs":  # the tool's per-cell columns that also form an obsm entry
            for key, column_names in self.convention.obsm_from_columns.items():
                if key not in multi and all(c in frame.columns and frame[c].dtype.kind in "iuf" for c in column_names):
                    multi[key] = np.column_stack([frame[c].to_numpy() for c in column_names])
        for key in more_multi:
            if isinstance(multi[key], pd.DataFrame):
                multi[key].index = frame.index.copy()  # rows of a record attribute are this axis's entries
        pairwise = {} if self.graphs_later else self.read_graphs(axis, n, record)
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
            return decode_column(values, codec, aux)  # text already decoded: decoding it again keeps it as is
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

    def _bytes_text(self, axis: str, columns: dict[_Key, Any]) -> dict[_Key, Any]:
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


__all__ = ["AxesReader"]
