"""A loom file's graphs into an ``.h5ad`` file or ``.zarr`` store a block of rows at a time (``convert``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from anndata.io import sparse_dataset, write_elem

if TYPE_CHECKING:
    from scanpy_loomio._read.reader import LoomReader


def write_graphs(reader: LoomReader, root: Any, shape: tuple[int, int]) -> None:
    """Store the ``obsp``/``varp`` graphs that ``reader`` reads in the AnnData group ``root``, part by part.

    A graph that comes whole is written with anndata's ``write_elem``; one that comes in blocks of rows (columns)
    has its first block written so and the others appended (``sparse_dataset(...).append``). Either way the group
    holds what writing the graph read whole gives, while a kNN graph of millions of cells is never in memory whole.
    """
    axes: tuple[tuple[Literal["obs", "var"], int], ...] = (("obs", shape[0]), ("var", shape[1]))
    for axis, n in axes:
        record = getattr(reader.metadata, axis) if reader.metadata else None
        group = root.require_group(f"{axis}p")
        for key, parts in reader.graph_parts(axis, n, record):
            for k, part in enumerate(parts):
                if k == 0:
                    write_elem(group, key, part)
                else:
                    stored: Any = sparse_dataset(group[key])  # typed as anndata.abc's datasets, which leave out append
                    stored.append(part)


__all__ = ["write_graphs"]
