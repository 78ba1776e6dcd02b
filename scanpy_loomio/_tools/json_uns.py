"""``uns`` values that ``.h5ad`` and ``.zarr`` cannot hold, written as their JSON text when a loom file is converted.

SCope and pySCENIC store a ``MetaData`` global: JSON whose lists hold records (embeddings, clusterings, regulon
thresholds). :func:`~scanpy_loomio.read_loom_full` gives it decoded, as those tools read it, but anndata's writers
store dicts, arrays and lists of one plain type, not lists of records. Converting such a file, these values are
written as their JSON text, the form SCope itself stores; a loom file written from the result carries the same text,
and reading that file decodes it again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from scanpy_loomio._elements.globals import encode_global, json_tag


def storable_uns(uns: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """``uns`` with each entry that holds a list anndata cannot write turned into its JSON text, and their keys.

    The entry is turned whole (a dict of such lists becomes one JSON object), as SCope stores ``MetaData`` and as
    the loom writer stores JSON globals. An entry that does not come back from JSON exactly (it holds arrays of
    records, numpy values, sparse matrices, data frames) is left as it is, for anndata to refuse by name.

    Examples
    --------
    >>> meta = {"embeddings": [{"id": -1, "name": "UMAP"}], "annotations": []}
    >>> uns, turned = storable_uns({"MetaData": meta, "colors": ["red", "blue"]})
    >>> turned
    ['MetaData']
    >>> uns["MetaData"]
    '{"embeddings": [{"id": -1, "name": "UMAP"}], "annotations": []}'
    >>> uns["colors"]
    ['red', 'blue']
    """
    out = dict(uns)
    turned = [key for key, value in uns.items() if not _writable(value) and json_tag(value) == "json"]
    for key in turned:
        out[key] = encode_global(uns[key], "json")
    return out, turned


def _writable(value: Any) -> bool:
    """Whether anndata writes ``value`` as far as its lists go: dicts are looked into."""
    if isinstance(value, Mapping):
        return all(_writable(v) for v in value.values())
    if isinstance(value, list | tuple):
        return _plain(value)
    return True


def _plain(values: list[Any] | tuple[Any, ...]) -> bool:
    """Whether anndata writes ``values`` (it makes an array of them): numbers, booleans or text of one shape."""
    try:
        array = np.asarray(values)
    except ValueError:  # ragged
        return False
    return array.dtype.kind != "O" or all(isinstance(v, str) for v in array.ravel())


__all__ = ["storable_uns"]
