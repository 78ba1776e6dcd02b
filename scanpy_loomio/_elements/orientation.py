"""Which way round a file stores its matrix: loom is genes × cells; one Baysor build writes cells × genes.

The attribute lengths tell: ``/row_attrs`` has one entry per gene, ``/col_attrs`` one per cell.
"""

from __future__ import annotations

import h5py

__all__ = ["attribute_length", "stored_transposed"]


def attribute_length(file: h5py.File, group_name: str) -> int | None:
    """The first-axis length shared by the datasets directly in ``group_name``; ``None`` when none or they differ."""
    group = file.get(group_name)
    if not isinstance(group, h5py.Group):
        return None
    lengths = {obj.shape[0] for obj in group.values() if isinstance(obj, h5py.Dataset) and obj.ndim >= 1}
    return lengths.pop() if len(lengths) == 1 else None


def stored_transposed(file: h5py.File) -> bool:
    """Whether ``/matrix`` is stored cells × genes: its shape fits the attributes only the other way round.

    Examples
    --------
    >>> import h5py, numpy as np
    >>> with h5py.File("turned.loom", "w") as f:
    ...     f["matrix"] = np.zeros((3, 2))  # 3 cells × 2 genes
    ...     f["row_attrs/Name"] = np.array([b"g1", b"g2"])
    ...     f["col_attrs/CellID"] = np.arange(1.0, 4.0)
    ...     stored_transposed(f)
    True
    """
    matrix = file.get("matrix")
    if not isinstance(matrix, h5py.Dataset) or matrix.ndim != 2:
        return False
    n_genes, n_cells = attribute_length(file, "row_attrs"), attribute_length(file, "col_attrs")
    if n_genes is None or n_cells is None or n_genes == n_cells:
        return False
    return matrix.shape == (n_cells, n_genes)
