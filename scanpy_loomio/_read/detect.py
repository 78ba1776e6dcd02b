"""Finding a file's convention from what it contains.

Detection summarizes a file (:class:`~scanpy_loomio.conventions.FileSummary`: attribute, layer, global and group
names, never the matrix) and asks every registered convention for its :meth:`~scanpy_loomio.conventions.Convention.score`.
The highest score wins; a tie goes to the convention registered first, and is logged on the ``scanpy_loomio`` logger
with the other candidates, so ``convention=`` can choose differently.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import zlib
from collections.abc import Mapping
from typing import Any

import h5py

from scanpy_loomio._elements.globals import read_globals
from scanpy_loomio._spec.facts import is_text_dtype
from scanpy_loomio.conventions import CONVENTIONS, DEFAULT_CONVENTION, Convention, FileSummary

logger = logging.getLogger("scanpy_loomio")

#: Groups whose datasets are attributes.
ATTR_GROUPS = {"col_attrs": "col", "row_attrs": "row"}


def attribute_names(group: object) -> tuple[set[str], set[str]]:
    """All attribute names (nested ones as ``group/name``) and the 1-D text ones among them."""
    names: set[str] = set()
    text: set[str] = set()
    if not isinstance(group, h5py.Group):
        return names, text
    for name, obj in group.items():
        members = obj.items() if isinstance(obj, h5py.Group) else [("", obj)]
        for sub, dset in members:
            if not isinstance(dset, h5py.Dataset):
                continue
            full = f"{name}/{sub}" if sub else name
            names.add(full)
            if dset.ndim == 1 and is_text_dtype(dset.dtype):
                text.add(full)
    return names, text


def summarize(file: h5py.File, globals_: Mapping[str, Any] | None = None) -> FileSummary:
    """What detection looks at in an open file; ``globals_`` are the already-read global attributes, if any."""
    if globals_ is None:
        globals_ = read_globals(file)
    cols, text_cols = attribute_names(file.get("col_attrs"))
    rows, text_rows = attribute_names(file.get("row_attrs"))
    layers = file.get("layers")
    groups: set[str] = set()
    for name, obj in file.items():
        if isinstance(obj, h5py.Group):
            groups.add(name)
            groups.update(f"{name}/{sub}" for sub, child in obj.items() if isinstance(child, h5py.Group))
    return FileSummary(
        col_attrs=frozenset(cols),
        row_attrs=frozenset(rows),
        text_col_attrs=frozenset(text_cols),
        text_row_attrs=frozenset(text_rows),
        layers=frozenset(layers.keys()) if isinstance(layers, h5py.Group) else frozenset(),
        globals=dict(globals_),
        groups=frozenset(groups),
    )


def rank_conventions(summary: FileSummary) -> list[tuple[float, Convention]]:
    """Every registered convention with a positive score, best first (ties in registration order)."""
    scored = [(c.score(summary), i, c) for i, c in enumerate(CONVENTIONS.values())]
    return [(s, c) for s, _, c in sorted((x for x in scored if x[0] > 0), key=lambda x: (-x[0], x[1]))]


def detect_convention(file: h5py.File, globals_: Mapping[str, Any] | None = None) -> Convention:
    """The convention that fits the file best; the default one when nothing fits.

    Examples
    --------
    >>> import h5py, numpy as np
    >>> from scanpy_loomio._read.detect import detect_convention
    >>> with h5py.File("tiny.loom", "w") as f:
    ...     f["matrix"] = np.zeros((2, 3))
    ...     f["col_attrs/obs_names"] = np.array(["a", "b", "c"], dtype=object)
    ...     f["row_attrs/var_names"] = np.array(["x", "y"], dtype=object)
    >>> with h5py.File("tiny.loom", "r") as f:
    ...     detect_convention(f).name
    'anndata'
    """
    ranked = rank_conventions(summarize(file, globals_))
    if not ranked:
        logger.info(
            "%s: no convention's names or markers found; reading it as %r (pass convention= to choose)",
            file.filename,
            DEFAULT_CONVENTION,
        )
        return CONVENTIONS[DEFAULT_CONVENTION]
    best_score, best = ranked[0]
    tied = [c.name for s, c in ranked if s == best_score]
    if len(tied) > 1:
        logger.info(
            "%s: conventions %s fit equally well (score %s); using %r (pass convention= to choose)",
            file.filename,
            tied,
            best_score,
            best.name,
        )
    else:
        logger.debug(
            "%s: detected convention %r (scores %s)", file.filename, best.name, [(c.name, s) for s, c in ranked]
        )
    return best


def decode_json_global(text: str) -> Any:
    """Decode a JSON global attribute, also when it is zlib-compressed and base64-encoded (SCopeLoomR, pySCENIC).

    Text that is neither comes back unchanged.

    Examples
    --------
    >>> import base64, zlib
    >>> from scanpy_loomio._read.detect import decode_json_global
    >>> decode_json_global('{"embeddings": []}')
    {'embeddings': []}
    >>> decode_json_global(base64.b64encode(zlib.compress(b'{"a": 1}')).decode())
    {'a': 1}
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        pass
    try:
        raw = zlib.decompress(base64.b64decode(text, validate=True))
        return json.loads(raw.decode("utf-8"))
    except (ValueError, binascii.Error, zlib.error, UnicodeDecodeError):
        return text
