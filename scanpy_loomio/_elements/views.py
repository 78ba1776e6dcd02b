"""Embeddings stored once and read in two shapes: a 2-D dataset, and 1-D columns that are virtual views of it.

Readers disagree on embeddings: LoomExperiment wants one 2-D dataset per reduction (listed in ``ReducedDimsName<i>``),
while SeuratDisk, SCopeLoomR and LoomExperiment itself fail on any 2-D *column attribute*. A convention with
:attr:`~scanpy_loomio.conventions.Convention.embedding_store` writes each ``obsm`` entry once, as a 2-D dataset in the
store form's own group (outside ``/col_attrs``), and writes its per-component columns (the ``"columns"`` embedding
style) as HDF5 virtual datasets that read one column of that dataset. Hard links cannot do this (a link cannot
reshape); a virtual dataset can, and every reader tried (h5py, hdf5r, rhdf5) reads it as an ordinary dataset. The
store is the real dataset because LoomExperiment reads reductions through ``HDF5Array``, which refuses virtual ones.

The virtual columns name their source file ``"."`` (the file itself), so they keep working when the file is moved or
renamed. The record still restores ``obsm`` from the columns, as for the plain ``"columns"`` style.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import h5py
import numpy as np

from scanpy_loomio._elements.embeddings import EmbeddingPlan, attribute_values
from scanpy_loomio.conventions import EMBEDDING_FORMS, Convention

__all__ = ["plan_stores", "store_registry", "write_stored"]

#: The file itself, as the source file of a virtual dataset (HDF5's own convention).
SAME_FILE = "."


def plan_stores(plans: list[EmbeddingPlan], axis: Literal["obs", "var"], convention: Convention, n: int) -> None:
    """Give each embedding written as 1-D columns its store path, when the convention stores embeddings once.

    Only axes the store form names (LoomExperiment's reductions are per cell: ``obs``) and embeddings with entries
    and components get one; names are made unique within the store group without ``_`` (LoomExperiment parses it).
    """
    if convention.embedding_store is None or n == 0:
        return
    form = EMBEDDING_FORMS[convention.embedding_store]
    if (form.obs_template if axis == "obs" else form.var_template) is None:
        return
    taken: set[str] = set()
    for plan in plans:
        if plan.storage != "columns" or not plan.attrs:
            continue
        basis = plan.key[2:] if axis == "obs" and plan.key.startswith("X_") and len(plan.key) > 2 else plan.key
        for char in form.name_forbidden:
            basis = basis.replace(char, ".")
        name, i = form.template(axis).format(key=basis, basis=basis, i=1), 1
        while name in taken:
            i += 1
            name = form.template(axis).format(key=f"{basis}.{i}", basis=f"{basis}.{i}", i=1)
        taken.add(name)
        plan.store = f"{form.group}/{name}"


def store_registry(plans: list[EmbeddingPlan], convention: Convention, existing: dict[str, str]) -> dict[str, str]:
    """Global attributes listing the stores for the tool (``ReducedDimsName<i>`` → path), numbered after ``existing``."""
    template = EMBEDDING_FORMS[convention.embedding_store].registry_global if convention.embedding_store else None
    out: dict[str, str] = {}
    if template is None:
        return out
    i = 1
    for plan in plans:
        if plan.store is None:
            continue
        while template.format(i=i) in existing:
            i += 1
        out[template.format(i=i)] = f"/{plan.store}"
        i += 1
    return out


def write_stored(
    file: h5py.File,
    attrs: h5py.Group,
    plan: EmbeddingPlan,
    write: Callable[[h5py.Group, str, np.ndarray], h5py.Dataset],
    bool_dtype: str,
) -> None:
    """Write an embedding once at its store path, and its columns in ``attrs`` as virtual views of it.

    ``write`` writes a real attribute dataset (chunks, compression) into a group. Booleans are stored as
    ``bool_dtype`` (the convention's; ``uint8`` would be R's ``raw`` in LoomExperiment).
    """
    assert plan.store is not None  # only plans given a store by plan_stores are written here
    columns = attribute_values(plan)
    values = np.column_stack([v for _, v in columns])
    if plan.dtype == "bool":
        values = values.astype(bool_dtype)
    group_path, _, name = plan.store.rpartition("/")
    write(file.require_group(group_path), name, values)
    source = h5py.VirtualSource(SAME_FILE, f"/{plan.store}", shape=values.shape, dtype=values.dtype)
    for i, (attr, _) in enumerate(columns):
        layout = h5py.VirtualLayout(shape=(values.shape[0],), dtype=values.dtype)
        layout[:] = source[:, i]
        attrs.create_virtual_dataset(attr, layout)
