"""Streamed writes: an AnnData whose ``X`` or layers are not in memory (dask, backed mode, ``read_lazy``).

Everything but those matrices is brought into memory (annotations, embeddings, ``uns``, ``raw``, and graphs unless
they are anndata's backed sparse datasets, which are written a block of edges at a time); the
matrices are replaced by stand-ins of the same shape, dtype and container, so the write is planned and checked
exactly as an in-memory write, and their values come from band sources
(:class:`~scanpy_loomio._matrix.stream.BandSource`) one band of cells at a time.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from anndata import AnnData

from scanpy_loomio._compat import named_layers, quiet_anndata
from scanpy_loomio._matrix.stream import BandSource, backed_sparse_format, in_memory, is_streamed, stand_in

#: Key of ``X`` among the streamed matrices (layer keys are strings).
X_KEY = None


def split_streamed(adata: AnnData) -> tuple[AnnData, dict[str | None, BandSource]]:
    """The AnnData to plan with, and the band sources of its streamed matrices by key (``None`` for ``X``).

    An AnnData whose matrices are all in memory comes back as it is, with no sources. Otherwise the AnnData
    returned is a new one (``adata`` is left as it is) holding stand-ins for the streamed matrices and every
    other element in memory.

    Examples
    --------
    >>> import anndata as ad
    >>> import numpy as np
    >>> adata = ad.AnnData(np.ones((3, 2), dtype=np.float32))
    >>> same, sources = split_streamed(adata)
    >>> same is adata, sources
    (True, {})
    """
    layers = named_layers(adata)
    matrices = {X_KEY: adata.X, **layers}
    streamed = {key: value for key, value in matrices.items() if value is not None and is_streamed(value)}
    if not streamed:
        return (adata.to_memory() if adata.isbacked else adata), {}
    sources = {key: BandSource(value, "X" if key is X_KEY else f"layers[{key!r}]") for key, value in streamed.items()}
    stand_ins = {key: stand_in(value) if key in streamed else value for key, value in matrices.items()}
    # graphs in anndata's backed sparse datasets stay on disk: they are written a block of edges at a time
    on_disk = {
        key: {name: value for name, value in getattr(adata, key).items() if backed_sparse_format(value)}
        for key in ("obsp", "varp")
    }
    with quiet_anndata():
        # typed as Any: anndata's annotations of these parameters leave out values it takes (Dataset2D, sparse)
        elements: dict[str, Any] = {
            "obs": adata.obs,
            "var": adata.var,
            **{key: dict(getattr(adata, key)) for key in ("obsm", "varm")},
            **{key: {k: v for k, v in getattr(adata, key).items() if k not in on_disk[key]} for key in on_disk},
        }
        shell = AnnData(X=stand_ins.pop(X_KEY), uns=dict(adata.uns), layers=stand_ins, **elements)
        # lazy annotations (read_lazy's obs/var, dask embeddings and graphs) into memory; stand-ins stay as they are
        shell = shell.to_memory()
        for key, graphs in on_disk.items():
            getattr(shell, key).update(graphs)
        if adata.raw is not None:
            shell.raw = _raw_in_memory(adata, shell)
    return shell, sources


def _raw_in_memory(adata: AnnData, shell: AnnData) -> AnnData:
    """``adata.raw`` with its matrix in memory (it is kept in anndata's encoding beside the loom layers)."""
    raw = adata.raw
    return AnnData(
        X=in_memory(raw.X),
        obs=pd.DataFrame(index=shell.obs_names),
        var=in_memory_frame(raw.var),
        # anndata annotates Raw.varm's descriptor for AnnData only
        varm={key: in_memory(value) for key, value in raw.varm.items()},  # type: ignore[arg-type]
    )


def in_memory_frame(frame: Any) -> pd.DataFrame:
    """A pandas DataFrame of ``frame`` (anndata's lazy ``Dataset2D`` has ``to_memory``)."""
    if isinstance(frame, pd.DataFrame):
        return frame
    return frame.to_memory()
