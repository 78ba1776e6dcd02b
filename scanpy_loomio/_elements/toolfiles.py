"""Tools' own files with scanpy's types and names: R factor and logical markers, SCope's clusterings and embeddings.

Used by :class:`~scanpy_loomio._read.foreign.ForeignAxis` on column attributes this package did not write; what to look
for comes from the convention table (:attr:`Convention.r_types`, :attr:`Convention.clusterings_attr`, …).

- LoomExperiment: ``colnames_factor`` flags factor columns (categoricals); ``storage.mode = "logical"`` marks
  logicals (bools); ``ReducedDimsColNames<i>`` datasets hold component names (kept in
  ``uns["loom_embedding_components"]``, not in ``obsm``).
- SCope/pySCENIC: each field of ``Clusterings`` is a categorical ``obs`` column named and labelled from ``MetaData``;
  ``ClusterID`` and the default ``Embedding`` are dropped when they repeat a clustering or embedding; embeddings
  take scanpy's names (``UMAP`` → ``X_umap``), the originals kept in ``uns["loom_embedding_names"]``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import h5py
import numpy as np
import pandas as pd

from scanpy_loomio._codecs.rtypes import factor_flag_names, factor_flags
from scanpy_loomio._guards.boundary import hdf5_object
from scanpy_loomio.conventions import EMBEDDING_FORMS, Convention

#: ``uns`` key: scanpy obsm key → the tool's own embedding name, for writing back.
EMBEDDING_NAMES_KEY = "loom_embedding_names"
#: ``uns`` key: obsm key → component names a tool stored beside an embedding (LoomExperiment's ``*_colnames``).
EMBEDDING_COMPONENTS_KEY = "loom_embedding_components"


def scanpy_key(name: str, convention: Convention) -> str | None:
    """Scanpy's ``obsm`` key for a tool's embedding name, from :attr:`Convention.embedding_renames`."""
    wanted = name.casefold()
    return next((key for tool, key in convention.embedding_renames.items() if tool.casefold() == wanted), None)


def _registry(globals_: Mapping[str, Any], template: str, where: str) -> list[tuple[int, str]]:
    pattern = re.compile("^" + re.escape(template).replace(re.escape("{i}"), "([0-9]+)") + "$")
    out = []
    for name, value in globals_.items():
        match = pattern.match(name)
        text = value.decode() if isinstance(value, bytes) else value
        if match and isinstance(text, str) and text.startswith(f"/{where}/"):
            out.append((int(match[1]), text[len(where) + 2 :]))
    return sorted(out)


def registered_attrs(globals_: Mapping[str, Any], where: str) -> dict[str, str]:
    """Attributes listed in the embedding registries (``ReducedDimsName<i>``, ``ReducedDimsColNames<i>``) → kind."""
    out: dict[str, str] = {}
    for form in EMBEDDING_FORMS.values():
        if form.registry_global:
            out.update((attr, "embedding") for _, attr in _registry(globals_, form.registry_global, where))
        if form.components_registry_global:
            out.update((attr, "components") for _, attr in _registry(globals_, form.components_registry_global, where))
    return out


def pop_factor_flags(top: dict[str, h5py.Dataset], convention: Convention, globals_: Mapping[str, Any]) -> set[str]:
    """Remove the factor flags matrix from ``top``; the names of the columns it flags."""
    for flags_name in factor_flag_names(convention):
        dset = top.pop(flags_name, None)
        if dset is not None:
            registered = registered_attrs(globals_, "col_attrs")
            names = [name for name in top if name not in registered]
            with hdf5_object(dset):
                return factor_flags(dset[()], names)
    return set()


def pop_component_names(
    top: dict[str, h5py.Dataset], globals_: Mapping[str, Any], key_of: Callable[[str], str]
) -> dict[str, list[str]]:
    """Remove component-name datasets listed in ``ReducedDimsColNames<i>``; obsm key → names."""
    out: dict[str, list[str]] = {}
    for form in EMBEDDING_FORMS.values():
        if not (form.registry_global and form.components_registry_global):
            continue
        embeddings = dict(_registry(globals_, form.registry_global, "col_attrs"))
        for i, attr in _registry(globals_, form.components_registry_global, "col_attrs"):
            dset = top.pop(attr, None)
            if dset is None or i not in embeddings:
                continue
            with hdf5_object(dset):
                names = [v.decode() if isinstance(v, bytes) else str(v) for v in np.asarray(dset[()]).ravel()]
            width = top[embeddings[i]].shape[1] if embeddings[i] in top and top[embeddings[i]].ndim == 2 else None
            out[key_of(embeddings[i])] = names[:width] if width else [n for n in names if n]
    return out


def scope_clusterings(record: np.ndarray, meta: Any, attr: str) -> dict[str, pd.Categorical[str]] | None:
    """SCope's ``Clusterings`` record as categorical columns named and labelled from ``MetaData``.

    ``None`` when ``MetaData`` does not describe every field (the record is then kept as it is). ``attr`` is the
    record's attribute name; an unnamed clustering is ``<attr>_<id>``.

    Examples
    --------
    >>> import numpy as np
    >>> from scanpy_loomio._elements.toolfiles import scope_clusterings
    >>> rec = np.array([(0,), (1,), (0,)], dtype=[("0", "i8")])
    >>> meta = {
    ...     "clusterings": [
    ...         {
    ...             "id": 0,
    ...             "name": "Cell Type",
    ...             "clusters": [{"id": 0, "description": "A"}, {"id": 1, "description": "B"}],
    ...         }
    ...     ]
    ... }
    >>> scope_clusterings(rec, meta, "Clusterings")["Cell Type"].tolist()
    ['A', 'B', 'A']
    """
    if not isinstance(meta, dict) or not isinstance(meta.get("clusterings"), list):
        return None
    described = {str(c.get("id")): c for c in meta["clusterings"] if isinstance(c, dict)}
    if not record.dtype.names or any(f not in described for f in record.dtype.names):
        return None
    out: dict[str, pd.Categorical[str]] = {}
    for field in record.dtype.names:
        entry = described[field]
        clusters = sorted(
            (c for c in entry.get("clusters", []) if isinstance(c, dict) and "id" in c), key=lambda c: int(c["id"])
        )
        labels = [str(c.get("description", c["id"])) for c in clusters]
        ids = [int(c["id"]) for c in clusters]
        if len(set(labels)) != len(labels):
            labels = [f"{c['id']}: {label}" for c, label in zip(clusters, labels, strict=True)]
        position = {cid: i for i, cid in enumerate(ids)}
        codes = np.array([position.get(int(v), -1) for v in record[field]], dtype=np.int64)
        name = str(entry.get("name") or f"{attr}_{field}")
        out[name] = pd.Categorical.from_codes(codes, categories=pd.Index(labels))
    return out
