"""``obsm``/``varm`` ⇄ loom attributes, in the form the target tool reads.

Plain numeric arrays become attributes: one 2-D attribute, one 1-D attribute per component, or one record
(compound) attribute, named as the convention's :class:`~scanpy_loomio.conventions.EmbeddingForm` says
(``X_umap``, ``reducedDims_umap``, ``umap_cell_embeddings``, …). Everything else (DataFrames, sparse matrices, text
arrays) goes to the sidecar in anndata's element encoding. The metadata record keeps the key, the attribute names,
the record fields and the original shape, so reading gives back the array exactly, whatever the form.

Which form is used is decided from data only: the convention's form where it has a name template for the axis;
elsewhere one 2-D attribute, or 1-D columns for tools whose readers break on 2-D attributes
(:attr:`~scanpy_loomio.conventions.Convention.multidim_attrs`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from scanpy_loomio._codecs.columns import NATIVE_DTYPES
from scanpy_loomio._record.record import EmbeddingEntry
from scanpy_loomio.conventions import EMBEDDING_FORMS, Convention, EmbeddingForm

#: The generic 2-D form, used on an axis the convention's own form has no name for.
_PLAIN_FORM = "matrix"
#: The form for tools that break on 2-D attributes, on such an axis.
_FLAT_FORM = "columns"


@dataclass
class EmbeddingPlan:
    """How one ``obsm``/``varm`` entry is stored."""

    key: str
    storage: str
    """``"matrix"``, ``"columns"``, ``"compound"``, ``"pair"`` (SCope's ``Embeddings_X``/``_Y``) or ``"sidecar"``."""
    attrs: list[str]
    """Loom attribute names used (empty for the sidecar)."""
    values: Any
    dtype: str | None = None
    """Original dtype when the stored one differs (bool stored as uint8, float32 in SCope's float64 records)."""
    fields: list[str] = field(default_factory=list)
    """Record field names of the ``"compound"`` storage, in component order."""
    shape: tuple[int, ...] | None = None
    """Trailing shape of an array of more than two dimensions that was flattened to components."""
    registry_global: str | None = None
    """Template of the global attribute listing this attribute for the tool (``ReducedDimsName{i}``)."""
    store: str | None = None
    """Path of the 2-D dataset holding the values when the attributes are virtual views of it (see ``views``)."""

    def record(self) -> EmbeddingEntry:
        """The entry in the metadata record."""
        return EmbeddingEntry(
            storage=self.storage,  # type: ignore[arg-type]  # one of the storages by construction
            attrs=tuple(self.attrs),
            ndim=None if self.storage == "sidecar" else int(np.ndim(self.values)),
            dtype=self.dtype or None,
            fields=tuple(self.fields),
            shape=self.shape,
            store=self.store,
        )


def storable_as_attribute(value: Any) -> bool:
    """Whether an embedding can be a loom attribute: a plain numeric or bool ndarray with ≥ 2 dimensions."""
    return type(value) is np.ndarray and value.ndim >= 2 and (value.dtype in NATIVE_DTYPES or value.dtype == bool)


def _form_for(convention: Convention, axis: Literal["obs", "var"]) -> EmbeddingForm:
    """The convention's embedding form where it names this axis; otherwise the generic one its readers survive."""
    form = convention.embedding_form
    if (form.obs_template if axis == "obs" else form.var_template) is not None:
        return form
    return EMBEDDING_FORMS[_PLAIN_FORM if convention.multidim_attrs else _FLAT_FORM]


def _clean_key(key: str, form: EmbeddingForm) -> str:
    """The key with the characters the tool cannot have in a name replaced by ``.``."""
    for char in form.name_forbidden:
        key = key.replace(char, ".")
    return key


def plan_embedding(
    key: str,
    value: Any,
    axis: Literal["obs", "var"],
    convention: Convention,
    claim: Callable[[str], str],
) -> EmbeddingPlan:
    """Decide how one ``obsm``/``varm`` entry is written for ``convention``.

    Parameters
    ----------
    key
        The ``obsm``/``varm`` key.
    value
        Its value.
    axis
        ``"obs"`` or ``"var"``.
    convention
        The target tool's convention.
    claim
        Reserves an attribute name in the axis's namespace and returns the name actually given (unique).

    Returns
    -------
    The plan; storage ``"sidecar"`` when the value has no attribute form (the caller decides whether the convention
    allows the sidecar).
    """
    if not storable_as_attribute(value):
        return EmbeddingPlan(key, "sidecar", [], value)
    dtype = "bool" if value.dtype == bool else None
    form = _form_for(convention, axis)
    tool_specific = form.template(axis) != "{key}"
    keep_nd = form.layout == "matrix" and convention.multidim_attrs and not tool_specific
    shape = tuple(int(s) for s in value.shape[1:]) if value.ndim > 2 and not keep_nd else None
    n_components = int(np.prod(value.shape[1:]))
    if form.layout != "matrix" and n_components == 0:
        # nothing to spread over columns or record fields
        form = EMBEDDING_FORMS[_PLAIN_FORM]
        if not convention.multidim_attrs:
            return EmbeddingPlan(key, "sidecar", [], value)
    if form.name_forbidden:
        # the tool parses the name: clean the part it parses, keep the template's own characters
        name_key = (
            key[:2] + _clean_key(key[2:], form) if axis == "obs" and key.startswith("X_") else _clean_key(key, form)
        )
    else:
        name_key = key
    wanted = form.attr_names(name_key, axis, n_components)
    attrs = [claim(name) for name in wanted]
    registry = form.registry_global if tool_specific else None
    if form.layout == "compound":
        fields = list(form.compound_fields[:n_components])
        if n_components > len(form.compound_fields):
            fields = [f"_{i + 1}" for i in range(n_components)]
        return EmbeddingPlan(key, "compound", attrs, value, dtype, fields=fields, shape=shape)
    return EmbeddingPlan(key, form.layout, attrs, value, dtype, shape=shape, registry_global=registry)


def attribute_values(plan: EmbeddingPlan) -> list[tuple[str, np.ndarray]]:
    """The ``(attribute name, values)`` pairs to write for a planned embedding."""
    values = plan.values.astype(np.uint8) if plan.values.dtype == bool else plan.values
    if plan.shape is not None or (plan.storage != "matrix" and values.ndim > 2):
        values = values.reshape(values.shape[0], int(np.prod(values.shape[1:])))  # -1 fails with no entries
    if plan.storage == "matrix":
        return [(plan.attrs[0], values)]
    if plan.storage == "pair":
        return []  # fields of SCope's Embeddings_X/Embeddings_Y, written with the SCope layout
    if plan.storage == "compound":
        records = np.empty(values.shape[0], dtype=[(name, values.dtype) for name in plan.fields])
        for i, name in enumerate(plan.fields):
            records[name] = values[:, i]
        return [(plan.attrs[0], records)]
    return [(name, values[:, i]) for i, name in enumerate(plan.attrs)]


def registry_globals(plans: list[tuple[str, EmbeddingPlan]]) -> dict[str, str]:
    """Global attributes listing embedding attributes for the tool: ``{name: HDF5 path}``, numbered from 1.

    ``plans`` pairs each plan with its attribute group (``col_attrs`` or ``row_attrs``).
    """
    out: dict[str, str] = {}
    counters: dict[str, int] = {}
    for group, plan in plans:
        if plan.registry_global is None:
            continue
        counters[plan.registry_global] = counters.get(plan.registry_global, 0) + 1
        out[plan.registry_global.format(i=counters[plan.registry_global])] = f"/{group}/{plan.attrs[0]}"
    return out


def restore(record: EmbeddingEntry, columns: Iterable[np.ndarray]) -> np.ndarray:
    """Rebuild an embedding from the values of its attributes (read one at a time when ``columns`` is lazy)."""
    storage = record.storage
    if storage == "columns":  # filled a component at a time: one column read at once, not all of them
        values = np.empty(0)
        for i, column in enumerate(columns):
            if i == 0:
                values = np.empty((column.shape[0], len(record.attrs)), dtype=column.dtype)
            common = np.result_type(values, column)  # as np.stack: the common dtype of all columns
            if common != values.dtype:
                values = values.astype(common)
            values[:, i] = column
    else:
        columns = list(columns)
        if storage == "matrix":
            values = columns[0]
        elif storage == "compound":
            records = columns[0]
            values = np.stack([records[name] for name in record.fields], axis=1)
        else:  # "pair": one field of each of two records (SCope's Embeddings_X, Embeddings_Y)
            values = np.stack([records[record.fields[0]] for records in columns], axis=1)
    if record.shape is not None:
        values = values.reshape(values.shape[0], *record.shape)
    if record.dtype:
        values = values.astype(record.dtype, copy=False)
    return values
