"""Finding a file's convention from what it contains."""

from __future__ import annotations

import base64
import json
import logging
import zlib
from typing import Any

import h5py

from .conventions import CONVENTIONS, DEFAULT_CONVENTION, Convention

logger = logging.getLogger("scanpy_loomio")

#: Attribute names tried for names after the convention's own candidates, in order.
FALLBACK_NAMES = {
    "obs": ("CellID", "obs_names", "cell_names", "colnames", "barcode", "barcodes", "cell_id", "CellId"),
    "var": ("Gene", "var_names", "gene_names", "rownames", "target_name", "gene_ids", "Accession", "gene_id"),
}


def _names(file: h5py.File, group: str) -> set[str]:
    obj = file.get(group)
    return set(obj.keys()) if isinstance(obj, h5py.Group) else set()


def detect_convention(file: h5py.File) -> Convention:
    """The convention whose cell and gene name attributes the file has; the default when none matches.

    A convention matches when its first cell-name and gene-name candidates are both present. The earliest match in
    :data:`~scanpy_loomio.conventions.CONVENTIONS` wins; other matches are logged.
    """
    cols, rows = _names(file, "col_attrs"), _names(file, "row_attrs")
    matches = [c for c in CONVENTIONS.values() if c.cell_names[0] in cols and c.gene_names[0] in rows]
    if not matches:
        return CONVENTIONS[DEFAULT_CONVENTION]
    if len(matches) > 1:
        logger.info(
            "%s: attribute names fit conventions %s; using %r (pass convention= to choose)",
            file.filename,
            [c.name for c in matches],
            matches[0].name,
        )
    return matches[0]


def decode_json_global(text: str) -> Any:
    """Decode a JSON global attribute, also when it is zlib-compressed and base64-encoded (SCopeLoomR)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        return json.loads(zlib.decompress(base64.b64decode(text, validate=True)).decode("utf-8"))
    except (ValueError, zlib.error, UnicodeDecodeError):
        return text
