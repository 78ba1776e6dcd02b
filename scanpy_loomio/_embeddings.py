"""``obsm``/``varm`` ⇄ loom attributes.

Plain numeric arrays become attributes loom tools read (one 2-D attribute, or one 1-D attribute per component for
readers that break on 2-D attributes); everything else (DataFrames, sparse matrices, text arrays) goes to the sidecar
in anndata's element encoding.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._codecs import NATIVE_DTYPES


@dataclass
class EmbeddingPlan:
    """How one ``obsm``/``varm`` entry is stored."""

    key: str
    storage: str
    """``"matrix"``, ``"columns"`` or ``"sidecar"``."""
    attrs: list[str]
    """Loom attribute names used (empty for the sidecar)."""
    values: Any
    dtype: str | None = None
    """Original dtype when the stored one differs (bool stored as uint8)."""

    def record(self) -> dict[str, Any]:
        """The entry in the metadata record."""
        out: dict[str, Any] = {"storage": self.storage, "attrs": self.attrs}
        if self.storage != "sidecar":
            out["ndim"] = int(np.ndim(self.values))
        if self.dtype:
            out["dtype"] = self.dtype
        return out


def storable_as_attribute(value: Any) -> bool:
    """Whether an embedding can be a loom attribute: a plain numeric or bool ndarray with ≥ 2 dimensions."""
    return (
        type(value) is np.ndarray
        and value.ndim >= 2
        and (value.dtype in NATIVE_DTYPES or value.dtype == bool)
    )


def attribute_values(plan: EmbeddingPlan) -> list[tuple[str, np.ndarray]]:
    """The ``(attribute name, values)`` pairs to write for a planned embedding."""
    values = plan.values.astype(np.uint8) if plan.values.dtype == bool else plan.values
    if plan.storage == "matrix":
        return [(plan.attrs[0], values)]
    return [(name, values[:, i]) for i, name in enumerate(plan.attrs)]


def restore(record: dict[str, Any], columns: list[np.ndarray]) -> np.ndarray:
    """Rebuild an embedding from the values of its attributes."""
    values = columns[0] if record["storage"] == "matrix" else np.stack(columns, axis=1)
    if record.get("dtype") == "bool":
        values = values.astype(bool)
    return values
