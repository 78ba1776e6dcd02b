"""SCope's layout, written as SCopeLoomR writes it.

That is ``Embeddings_X``/``Embeddings_Y``, ``Embedding``, ``Clusterings``, ``ClusterID`` and the ``MetaData`` JSON
global, each named by a field of the convention (:attr:`~scanpy_loomio.conventions.Convention.embedding_pair_attrs`,
:attr:`~scanpy_loomio.conventions.Convention.default_embedding_attr`,
:attr:`~scanpy_loomio.conventions.Convention.clusterings_attr`,
:attr:`~scanpy_loomio.conventions.Convention.cluster_id_attr`,
:attr:`~scanpy_loomio.conventions.Convention.layout_json_global`); what the JSON holds is the layout's own.

What a convention naming them gets (SCope's names here):

- every ``obsm`` entry of two numeric components is one field of ``Embeddings_X`` and of ``Embeddings_Y`` (records,
  one field per embedding id; ``-1`` is the default embedding), stored there only: the package's record restores it
  from those fields. The default one is also the record ``Embedding`` (fields ``_X``, ``_Y``), where SCope looks
  first. Other ``obsm`` entries are 1-D attributes, one per component.
- every categorical ``obs`` column with text categories is one field of ``Clusterings`` (cluster ids from 0, ``-1``
  where missing); the first is also ``ClusterID``. The column itself stays as its labels.
- ``MetaData`` names the embeddings and clusterings, and labels the clusters. An ``uns["MetaData"]`` read from a SCope
  file is written back as it is, and its ids are reused by name.

``Embeddings_X``, ``Embeddings_Y``, ``Embedding`` and ``Clusterings`` are record (compound) attributes: SCope, pySCENIC
and SCopeLoomR read them, but they are outside the loom spec and loompy's validator refuses the file (``validate``
says so as a warning).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from scanpy_loomio._codecs.rtypes import is_text_factor
from scanpy_loomio._elements.embeddings import EmbeddingPlan
from scanpy_loomio._elements.globals import decode_global
from scanpy_loomio._elements.toolfiles import EMBEDDING_NAMES_KEY
from scanpy_loomio.conventions import EMBEDDING_FORMS, Convention


@dataclass
class ScopeLayout:
    """The SCope attributes to write beside the plain ones."""

    attrs: dict[str, np.ndarray] = field(default_factory=dict)
    """Column attribute name → values (records or integers)."""
    globals: dict[str, str] = field(default_factory=dict)
    """Global attribute name → value: the layout's JSON, unless ``uns`` holds it already (it is written from there)."""


def uses_scope_layout(convention: Convention) -> bool:
    """Whether a convention writes SCope's layout: it names an embedding pair, a default embedding or clusterings."""
    return bool(convention.embedding_pair_attrs or convention.default_embedding_attr or convention.clusterings_attr)


def _tool_name(key: str, uns: Mapping[str, Any]) -> str:
    names = uns.get(EMBEDDING_NAMES_KEY)
    if isinstance(names, Mapping) and isinstance(names.get(key), str):
        return names[key]
    return key[2:] if key.startswith("X_") and len(key) > 2 else key


def _meta(uns: Mapping[str, Any], convention: Convention) -> dict[str, Any] | None:
    """The layout's JSON (SCope's ``MetaData``): decoded, or its text as ``.h5ad`` files converted from loom hold it."""
    meta = uns.get(convention.layout_json_global) if convention.layout_json_global else None
    if isinstance(meta, str):
        meta = decode_global(meta, "json")  # text that is not JSON comes back as it is
    return meta if isinstance(meta, dict) else None


def _pairable(plan: EmbeddingPlan) -> bool:
    values = plan.values
    return (
        isinstance(values, np.ndarray)
        and values.ndim == 2
        and values.shape[1] == 2
        and values.dtype.kind in "iuf"
        and np.array_equal(values.astype(np.float64).astype(values.dtype), values)
    )


def _embedding_ids(keys: list[str], uns: Mapping[str, Any], convention: Convention) -> dict[str, str]:
    """Obsm key → SCope embedding id: the id ``uns["MetaData"]`` gives its name, else ``-1``, ``1``, ``2``, …."""
    known: dict[str, str] = {}
    for entry in (_meta(uns, convention) or {}).get("embeddings", []) or []:
        if isinstance(entry, dict) and isinstance(entry.get("name"), str) and "id" in entry:
            known.setdefault(entry["name"], str(entry["id"]))
    out: dict[str, str] = {}
    for key in keys:
        name = _tool_name(key, uns)
        if name in known and known[name] not in out.values():
            out[key] = known[name]
    candidates = iter(["-1", *(str(i) for i in range(1, 2 * len(keys) + 2))])
    for key in keys:
        if key not in out:
            out[key] = next(c for c in candidates if c not in out.values())
    return out


def plan_scope_embeddings(
    embeddings: list[EmbeddingPlan], uns: Mapping[str, Any], convention: Convention
) -> dict[str, str]:
    """Turn the two-component embeddings into fields of ``Embeddings_X``/``Embeddings_Y``; key → embedding id."""
    pair = convention.embedding_pair_attrs
    pairable = [e for e in embeddings if pair and e.storage == "columns" and _pairable(e)]
    ids = _embedding_ids([e.key for e in pairable], uns, convention)
    for plan in pairable:
        original = plan.values.dtype
        plan.storage = "pair"
        plan.attrs = list(pair)
        plan.fields = [ids[plan.key]]
        plan.dtype = None if original == np.float64 else str(original)
    return ids


def _cluster_ids(name: str, categories: list[str], meta: Mapping[str, Any] | None) -> tuple[int | None, list[int]]:
    """The clustering id and the cluster id of each category that ``uns["MetaData"]`` gives, else positions."""
    for entry in (meta or {}).get("clusterings", []) or []:
        if not (isinstance(entry, dict) and entry.get("name") == name):
            continue
        by_label = {str(c.get("description")): c.get("id") for c in entry.get("clusters", []) if isinstance(c, dict)}
        ids = [i for i in (by_label.get(c) for c in categories) if isinstance(i, int)]
        if len(ids) == len(categories):  # every category has an integer id
            return entry.get("id"), ids
    return None, list(range(len(categories)))


def plan_scope_layout(
    embeddings: list[EmbeddingPlan],
    columns: list[tuple[str, str, Any]],
    n: int,
    uns: Mapping[str, Any],
    convention: Convention,
) -> ScopeLayout:
    """The SCope attributes for planned ``obs`` columns and (already paired) embeddings."""
    c = convention
    layout = ScopeLayout()
    meta = _meta(uns, c)
    pairs = [e for e in embeddings if e.storage == "pair"]
    if pairs:
        fields = [e.fields[0] for e in pairs]
        for axis, attr in enumerate(c.embedding_pair_attrs):
            records = np.empty(n, dtype=[(f, np.float64) for f in fields])
            for plan in pairs:
                records[plan.fields[0]] = np.asarray(plan.values[:, axis], dtype=np.float64)
            layout.attrs[attr] = records
    if pairs and c.default_embedding_attr:
        default = next((e for e in pairs if e.fields[0] == "-1"), pairs[0])
        x, y = EMBEDDING_FORMS["compound"].compound_fields[:2]
        xy = np.empty(n, dtype=[(x, np.float64), (y, np.float64)])
        xy[x], xy[y] = (np.asarray(default.values[:, i], dtype=np.float64) for i in (0, 1))
        layout.attrs[c.default_embedding_attr] = xy
    clusterings: list[dict[str, Any]] = []
    codes_by_id: dict[str, np.ndarray] = {}
    for key, _attr, enc in columns if c.clusterings_attr else []:  # categoricals become clusterings
        if not is_text_factor(enc.codec, enc.aux):
            continue
        categories = [str(cat) for cat in enc.aux["categories"]]
        wanted, ids = _cluster_ids(str(key), categories, meta)
        cid = wanted if isinstance(wanted, int) and str(wanted) not in codes_by_id else len(clusterings)
        while str(cid) in codes_by_id:
            cid += 1
        # pandas-stubs wants an Index as target; pandas takes any array-like (and makes it an Index)
        values = np.asarray(enc.values, dtype=object)
        positions = np.asarray(pd.Index(categories).get_indexer(values), dtype=np.int64)  # type: ignore[arg-type]
        if "mask" in enc.aux:
            positions[np.asarray(enc.aux["mask"], dtype=bool)] = -1
        lookup = np.asarray(ids + [-1], dtype=np.int64)
        codes_by_id[str(cid)] = lookup[positions]
        clusterings.append(
            {
                "id": cid,
                "group": "scanpy",
                "name": str(key),
                "clusters": [{"id": i, "description": cat} for i, cat in zip(ids, categories, strict=True)],
            }
        )
    if codes_by_id and c.clusterings_attr:
        records = np.empty(n, dtype=[(f, np.int64) for f in codes_by_id])
        for f, codes in codes_by_id.items():
            records[f] = codes
        layout.attrs[c.clusterings_attr] = records
        if c.cluster_id_attr:
            layout.attrs[c.cluster_id_attr] = next(iter(codes_by_id.values())).copy()
    if c.layout_json_global and c.layout_json_global not in uns:
        names = {e.fields[0]: _tool_name(e.key, uns) for e in pairs}
        written = {
            "annotations": [],
            "metrics": [],
            "embeddings": [{"id": i, "name": name} for i, name in names.items()],
            "clusterings": clusterings,
            "regulonThresholds": [],
        }
        layout.globals[c.layout_json_global] = json.dumps(written)
    return layout
