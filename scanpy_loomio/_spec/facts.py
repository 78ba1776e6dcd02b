"""Facts of the loom format (http://linnarssonlab.org/loompy/format/), each written once for the whole package.

>>> ATTR_GROUPS["obs"], GRAPH_GROUPS["var"]
('col_attrs', 'row_graphs')
>>> spec_version({"LOOM_SPEC_VERSION": "3.0.0"})
'3.0.0'
"""

from __future__ import annotations

from typing import Any, Literal

import h5py
import numpy as np

Axis = Literal["obs", "var"]
#: The loom prefix of each AnnData axis: cells (``obs``) are loom columns, genes (``var``) loom rows.
AXES: dict[Axis, str] = {"obs": "col", "var": "row"}
#: The attribute group of each axis.
ATTR_GROUPS: dict[Axis, str] = {"obs": "col_attrs", "var": "row_attrs"}
#: The graph group of each axis.
GRAPH_GROUPS: dict[Axis, str] = {"obs": "col_graphs", "var": "row_graphs"}
#: The groups of a loom file (loomR accepts only these, the spec-2 ones).
LOOM_GROUPS = ("matrix", "layers", "row_attrs", "col_attrs", "row_graphs", "col_graphs")
#: Graph groups of loom files older than spec 2.
OLD_GRAPH_GROUPS = ("col_edges", "row_edges")
#: The spec versions in use.
SPEC_VERSIONS = ("2.0.1", "3.0.0")
#: dtype kinds of numbers and bool: what matrices and edge lists may hold.
NUMERIC_KINDS = frozenset("iufb")
#: Matrix, layer and numeric attribute dtypes the spec (and loompy's validator) allows.
NUMERIC_DTYPES = frozenset(
    np.dtype(t)
    for t in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float16", "float32", "float64")
)


def is_text_dtype(dtype: np.dtype) -> bool:
    """Whether an HDF5 dataset of this dtype holds text."""
    if dtype.kind in "SU":
        return True
    if dtype.kind == "O":
        return h5py.check_string_dtype(dtype) is not None
    return False


def spec_version(globals_: dict[str, Any]) -> str | None:
    """The ``LOOM_SPEC_VERSION`` a file states among its global attributes (``None`` when it states none)."""
    value = globals_.get("LOOM_SPEC_VERSION")
    if isinstance(value, np.ndarray) and value.size == 1:
        value = value.ravel()[0]
    return None if value is None else str(value)
