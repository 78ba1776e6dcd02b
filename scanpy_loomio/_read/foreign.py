"""Reading what other tools put in loom files: names, nested groups, records, embeddings, graph index bases.

Everything here interprets a file this package did not write (or the parts of one it did not write), using the
:class:`~scanpy_loomio.conventions.Convention` detected or chosen for it. The rules, in the order they apply to
each column/row attribute that is not the names:

1. A dataset in a group nested under ``col_attrs``/``row_attrs`` (``reducedDims/PCA``, ``GRanges/start``) follows
   the convention's ``nested_groups``: ``"obsm"`` makes it an embedding (``X_PCA``), ``"columns"`` a column named
   as the dataset (``start``; ``GRanges_start`` when that name is taken). Unknown nested groups give columns named
   ``<group>_<dataset>``.
2. With the ``"columns"`` embedding style, 1-D numeric attributes ``<key>_1``, ``<key>_2``, … become ``obsm[key]``.
3. A record (compound) attribute with fields ``_X``, ``_Y`` (``_Z``) becomes a 2-D (3-D) array; SCope's pair
   ``Embeddings_X``/``Embeddings_Y`` becomes one embedding per field, named from the ``MetaData`` global; any other
   record becomes a DataFrame with one column per field. Never a column of ``numpy.void``.
4. 1-D numbers, booleans and text are columns; secondary ids are renamed back (``Accession`` → ``gene_ids``).
5. 2-D attributes are embeddings, keyed through the embedding forms (``reducedDims_PCA`` → ``X_PCA``,
   ``pca_cell_embeddings`` → ``X_pca``) or by their own name.

Graph index base (loomR writes ``b`` counting from 1): see :func:`graph_index_base`.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import h5py
import numpy as np
import pandas as pd

from scanpy_loomio._codecs.columns import plain_values
from scanpy_loomio._codecs.rtypes import enum_categorical, enum_mapping, is_marked_logical, logical_values
from scanpy_loomio._elements.toolfiles import (
    EMBEDDING_COMPONENTS_KEY,
    EMBEDDING_NAMES_KEY,
    pop_component_names,
    pop_factor_flags,
    scanpy_key,
    scope_clusterings,
)
from scanpy_loomio._errors import LoomReadWarning
from scanpy_loomio._guards.boundary import hdf5_object, read_values
from scanpy_loomio._read.detect import decode_json_global
from scanpy_loomio._spec.facts import Axis, is_text_dtype
from scanpy_loomio.conventions import CONVENTIONS, EMBEDDING_FORMS, Convention, name_candidates

logger = logging.getLogger("scanpy_loomio")


_COMPONENT = re.compile(r"^(?P<key>.+)_(?P<i>[1-9][0-9]*)$")


def _warn(msg: str) -> None:
    warnings.warn(msg, LoomReadWarning, stacklevel=6)


# -- names -----------------------------------------------------------------------------------------------------------


def nested_datasets(group: h5py.Group, n: int, where: str) -> dict[str, h5py.Dataset]:
    """Datasets one level down in groups under an attribute group, as ``{"<group>/<name>": dataset}``.

    Datasets whose first dimension is not ``n`` are left out with a warning (they do not describe the axis).
    """
    out: dict[str, h5py.Dataset] = {}
    for group_name, sub in group.items():
        if not isinstance(sub, h5py.Group):
            continue
        for name, obj in sub.items():
            path = f"{group_name}/{name}"
            if not isinstance(obj, h5py.Dataset):
                _warn(f"{where}/{path}: a group nested two levels deep; left out.")
            elif obj.ndim == 0 or obj.shape[0] != n:
                _warn(f"{where}/{path}: shape {obj.shape} does not have {n} entries along the first axis; left out.")
            else:
                out[path] = obj
    return out


def is_positional(values: np.ndarray) -> bool:
    """Whether text names are only positions (``1``, ``2``, … as R writes by default, or ``0``, ``1``, …).

    Examples
    --------
    >>> import numpy as np
    >>> from scanpy_loomio._read.foreign import is_positional
    >>> is_positional(np.array(["1", "2", "3"], dtype=object)), is_positional(np.array(["a", "b"], dtype=object))
    (True, False)
    """
    n = len(values)
    if n == 0:
        return False
    text = np.asarray(values, dtype=str)
    return bool(np.array_equal(text, np.arange(1, n + 1).astype(str)) or np.array_equal(text, np.arange(n).astype(str)))


def choose_index_attr(
    axis: Axis,
    datasets: Mapping[str, h5py.Dataset],
    convention: Convention,
    values_of: Callable[[str], np.ndarray],
    where: str,
) -> str | None:
    """The attribute holding the names: the first 1-D text candidate, passing over positional ones.

    Candidates are the convention's names, then every registered convention's. A candidate holding only positions
    (``1``, ``2``, …; R's default dimnames, as LoomExperiment writes them when a file had none) is used only when no
    other candidate is there. ``None`` (range index) when no candidate is there: numbers are never taken as names.
    """
    present = [
        name
        for name in name_candidates(axis, convention)
        if (d := datasets.get(name)) is not None and d.ndim == 1 and is_text_dtype(d.dtype)
    ]
    if not present:
        return None
    chosen = next((name for name in present if not is_positional(values_of(name))), present[0])
    if len(present) > 1:
        logger.info(
            "%s: %s names could come from %s; using %r (pass %s_names= to choose)",
            where,
            axis,
            present,
            chosen,
            axis,
        )
    return chosen


# -- attributes ------------------------------------------------------------------------------------------------------


def _nested_rule(group: str, convention: Convention) -> str:
    if group in convention.nested_groups:
        return convention.nested_groups[group]
    for other in CONVENTIONS.values():
        if group in other.nested_groups:
            return other.nested_groups[group]
    return "columns"


def _embedding_key(name: str, axis: Axis) -> str:
    """``obsm``/``varm`` key for a foreign 2-D attribute, through the embedding forms that rename."""
    for form in EMBEDDING_FORMS.values():
        if "{key}" in form.template(axis):
            continue
        key = form.key_for(name, axis)
        if key is not None:
            return key
    return name


def _record_fields_numeric(dtype: np.dtype) -> bool:
    return all(dtype[f].kind in "iuf" for f in dtype.names or ())


def _record_to_array(record: np.ndarray) -> np.ndarray:
    return np.column_stack([np.asarray(record[f], dtype=np.float64) for f in record.dtype.names or ()])


def _record_to_frame(record: np.ndarray, where: str) -> pd.DataFrame:
    return pd.DataFrame(
        {f: plain_values(np.asarray(record[f]), where=f"{where} field {f}") for f in record.dtype.names or ()}
    )


def _scope_metadata(globals_: Mapping[str, Any], convention: Convention) -> Any:
    meta = globals_.get(convention.layout_json_global) if convention.layout_json_global else None
    return decode_json_global(meta) if isinstance(meta, str) else meta


def _scope_embedding_names(globals_: Mapping[str, Any], convention: Convention) -> dict[str, str]:
    """SCope embedding id → name, from the (possibly compressed) ``MetaData`` global."""
    meta = _scope_metadata(globals_, convention)
    out: dict[str, str] = {}
    if isinstance(meta, dict):
        for entry in meta.get("embeddings", []) or []:
            if isinstance(entry, dict) and "id" in entry and isinstance(entry.get("name"), str):
                out[str(entry["id"])] = entry["name"]
    return out


class ForeignAxis:
    """Interprets the attributes of one axis that this package did not write."""

    def __init__(
        self,
        axis: Axis,
        convention: Convention,
        where: str,
        values_of: Callable[[str], np.ndarray],
        globals_: Mapping[str, Any],
    ) -> None:
        self.axis = axis
        self.convention = convention
        self.where = where  # "<file>:/col_attrs"
        self.values_of = values_of
        self.globals = globals_
        self.columns: dict[str, Any] = {}
        self.multi: dict[str, Any] = {}
        self.taken: set[str] = set()
        self.uns: dict[str, Any] = {}
        """What goes to ``uns`` besides: the tools' own embedding names and component names."""
        self.factors: set[str] = set()

    def _used(self, key: str) -> bool:
        return key in self.columns or key in self.multi or key in self.taken

    def _put(self, target: dict[str, Any], key: str, value: Any, fallback: str) -> None:
        if self._used(key):
            key = fallback
        while self._used(key):
            key = f"{key}_"
        target[key] = value

    def read(
        self, datasets: Mapping[str, h5py.Dataset], taken: set[str], all_names: Mapping[str, h5py.Dataset] | None = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Columns and multi-dimensional entries for ``datasets`` (name → dataset, nested ones as ``group/name``).

        ``taken`` are the column and multi keys already used for this axis; ``all_names`` every top-level dataset
        of the group, read or not (factor flags count them all).
        """
        self.columns, self.multi, self.taken, self.uns = {}, {}, set(taken), {}
        top = {name: d for name, d in datasets.items() if "/" not in name}
        nested = {name: d for name, d in datasets.items() if "/" in name}
        if self.axis == "obs":
            every = {name: d for name, d in (all_names or top).items() if "/" not in name}
            every.update(top)
            self.factors = pop_factor_flags(every, self.convention, self.globals)
            for name in [n for n in top if n not in every]:
                del top[name]
            components = pop_component_names(top, self.globals, lambda attr: _embedding_key(attr, self.axis))
            if components:
                self.uns[EMBEDDING_COMPONENTS_KEY] = components
            self._scope_layout(top)
        if self.convention.embedding_style == "columns":
            self._component_groups(top)
        pair_layout = next(
            (
                c
                for c in (self.convention, *CONVENTIONS.values())
                if c.embedding_pair_attrs and all(name in top for name in c.embedding_pair_attrs)
            ),
            None,
        )
        if pair_layout is not None:  # the file's convention's pair, or any known one's
            self._scope_pair(top, pair_layout)
        for name, dset in top.items():
            with hdf5_object(dset):
                self._attribute(name, dset)
        for path, dset in nested.items():
            with hdf5_object(dset):
                self._nested(path, dset)
        self._rename_secondary_ids()
        return self.columns, self.multi

    def _component_groups(self, top: dict[str, h5py.Dataset]) -> None:
        groups: dict[str, dict[int, str]] = {}
        for name, dset in top.items():
            match = _COMPONENT.match(name)
            if match and dset.ndim == 1 and dset.dtype.kind in "iuf":
                groups.setdefault(match["key"], {})[int(match["i"])] = name
        for key, parts in groups.items():
            k = len(parts)
            if k < 2 or sorted(parts) != list(range(1, k + 1)) or len({top[p].dtype for p in parts.values()}) != 1:
                continue
            self._put(self.multi, key, np.column_stack([read_values(top.pop(parts[i])) for i in range(1, k + 1)]), key)

    def _scope_pair(self, top: dict[str, h5py.Dataset], layout: Convention) -> None:
        pair = layout.embedding_pair_attrs
        x, y = (top[name] for name in pair)
        if not (x.dtype.names and x.dtype.names == y.dtype.names and _record_fields_numeric(x.dtype)):
            return
        names = _scope_embedding_names(self.globals, layout)
        stem = os.path.commonprefix(list(pair))  # Embeddings_X, Embeddings_Y: an unnamed one is Embeddings_<id>
        xs, ys = read_values(x), read_values(y)
        for field in x.dtype.names:
            name = names.get(field, f"{stem}{field}")
            key = scanpy_key(name, self.convention) or name
            value = np.column_stack([np.asarray(xs[field], np.float64), np.asarray(ys[field], np.float64)])
            self._put(self.multi, key, value, f"{stem}{field}")
            if key != name and self.multi.get(key) is value:
                self.uns.setdefault(EMBEDDING_NAMES_KEY, {})[key] = name
        for name in pair:
            del top[name]

    def _scope_layout(self, top: dict[str, h5py.Dataset]) -> None:
        """SCope's clusterings as categorical columns; ``ClusterID`` and ``Embedding`` dropped where they repeat."""
        c = self.convention
        if c.clusterings_attr in top and top[c.clusterings_attr].dtype.names:
            record = read_values(top[c.clusterings_attr])
            columns = scope_clusterings(record, _scope_metadata(self.globals, c), c.clusterings_attr)
            if columns is not None:
                del top[c.clusterings_attr]
                for name, column in columns.items():
                    self._put(self.columns, name, column, f"{c.clusterings_attr}_{name}")
                first = np.asarray(record[record.dtype.names[0]]) if record.dtype.names else None
                if c.cluster_id_attr and first is not None:
                    ids = top.get(c.cluster_id_attr)
                    if ids is not None and ids.size == first.size:
                        if np.array_equal(np.asarray(read_values(ids)).ravel(), first):
                            del top[c.cluster_id_attr]
        pair = [top[name] for name in c.embedding_pair_attrs if name in top]
        if (
            c.default_embedding_attr
            and c.default_embedding_attr in top
            and pair
            and len(pair) == len(c.embedding_pair_attrs)
            and "-1" in (pair[0].dtype.names or ())
        ):
            emb = read_values(top[c.default_embedding_attr])
            if emb.dtype.names and len(emb.dtype.names) == 2:
                xs, ys = (np.asarray(emb[f]) for f in emb.dtype.names)
                if np.array_equal(xs, pair[0]["-1"]) and np.array_equal(ys, pair[1]["-1"]):
                    del top[c.default_embedding_attr]

    def _attribute(self, name: str, dset: h5py.Dataset) -> None:
        dtype = dset.dtype
        if dset.ndim == 1 and enum_mapping(dtype):
            self._put(self.columns, name, enum_categorical(dset[()], dtype), name)
        elif dset.ndim == 1 and name in self.factors:
            self._put(self.columns, name, pd.Categorical(self.values_of(name)), name)
        elif is_marked_logical(dset, self.convention):
            self._put(self.columns, name, logical_values(dset[()]), name)
        elif dtype.names:
            record = dset[()]
            fields = EMBEDDING_FORMS["compound"].compound_fields
            if _record_fields_numeric(dtype) and dtype.names == fields[: len(dtype.names)] and len(dtype.names) >= 2:
                self._put(self.multi, name, _record_to_array(record), name)
            else:
                self._put(self.multi, name, _record_to_frame(record, f"{self.where}/{name}"), name)
        elif dset.ndim == 1 and (dtype.kind in "iufb" or is_text_dtype(dtype)):
            self._put(self.columns, name, self.values_of(name), name)
        elif dset.ndim >= 2 and (dtype.kind in "iufb" or is_text_dtype(dtype)):
            value = plain_values(dset[()], where=f"{self.where}/{name}")
            self._put(self.multi, _embedding_key(name, self.axis), value, name)
        else:
            _warn(f"{self.where}/{name} has dtype {dtype} and shape {dset.shape}; kept in {self.axis}m as it is.")
            self._put(self.multi, name, dset[()], name)

    def _nested(self, path: str, dset: h5py.Dataset) -> None:
        group, _, name = path.partition("/")
        value = plain_values(dset[()], where=f"{self.where}/{path}")
        if value.dtype.names:
            frame = _record_to_frame(value, f"{self.where}/{path}")
            self._put(self.multi, f"{group}_{name}", frame, f"{group}_{name}")
            return
        rule = _nested_rule(group, self.convention)
        if rule == "obsm":
            key = f"X_{name}" if self.axis == "obs" else name
            self._put(self.multi, key, value.reshape(len(value), -1), f"{group}_{name}")
        elif value.ndim == 1:
            known = group in self.convention.nested_groups or any(
                group in c.nested_groups for c in CONVENTIONS.values()
            )
            self._put(self.columns, name if known else f"{group}_{name}", value, f"{group}_{name}")
        else:
            self._put(self.multi, f"{group}_{name}", value, f"{group}_{name}")

    def _rename_secondary_ids(self) -> None:
        for column, attr in self.convention.renames(self.axis).items():
            if attr in self.columns and not self._used(column):
                self.columns = {(column if k == attr else k): v for k, v in self.columns.items()}
                logger.info(
                    "%s/%s: read as %s[%r] (convention %r)", self.where, attr, self.axis, column, self.convention.name
                )


# -- graphs ----------------------------------------------------------------------------------------------------------


def graph_index_base(values: np.ndarray, n: int, declared: int, where: str) -> tuple[int, str | None]:
    """The first vertex index of one graph index array (``a`` or ``b``) this package did not write.

    The convention declares a base (loomR: ``a`` from 0, ``b`` from 1; everyone else from 0); the values overrule it
    only when they can be read one way alone:

    1. values reaching ``n`` (one past the last vertex counted from 0), with no 0, count from 1;
    2. values holding 0 count from 0;
    3. anything else (smallest value 1 or more, largest below ``n``) keeps the declared base. With the spec's
       base 0 such values are logged, since they would also fit a 1-based writer whose last vertex has no edge;
       pass ``convention="loomr"`` to read them from 1.

    Returns the base and, when it differs from the declared one, a note saying why.

    Examples
    --------
    >>> import numpy as np
    >>> from scanpy_loomio._read.foreign import graph_index_base
    >>> graph_index_base(np.array([1, 2, 3]), 3, 0, "g/b")[0]
    1
    >>> graph_index_base(np.array([0, 1, 2]), 3, 1, "g/b")[0]
    0
    """
    if values.size == 0:
        return declared, None
    lo, hi = values.min(), values.max()
    if hi >= n and lo >= 1:
        base, why = 1, f"its largest index is {hi} for {n} vertices and it has no 0"
    elif lo == 0:
        base, why = 0, "it holds index 0"
    else:
        if declared == 0:
            logger.info("%s: indices from %s to %s for %d vertices; read as counting from 0", where, lo, hi, n)
        return declared, None
    if base == declared:
        return base, None
    return base, f"{where} read as counting from {base}, not {declared} as its convention says: {why}."


def decode_foreign_global(key: str, value: Any, convention: Convention) -> Any:
    """A global attribute of a foreign file as it goes to ``uns``: JSON ones (``MetaData``) decoded.

    JSON is decoded for the globals the convention (or any registered convention) names in ``json_globals``, and
    only into a dict or list; other text stays text.
    """
    json_names = set(convention.json_globals).union(*(c.json_globals for c in CONVENTIONS.values()))
    if key in json_names and isinstance(value, str):
        decoded = decode_json_global(value)
        if isinstance(decoded, dict | list):
            return decoded
    return value
