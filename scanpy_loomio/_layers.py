"""The layers of an AnnData as loom stores them: named matrices beside ``X``.

anndata 0.13 also shows ``X`` as ``adata.layers[None]``; that key is ``X`` itself, written once as ``/matrix``,
never as a layer of its own. Every place that walks an AnnData's layers goes through :func:`named_layers`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from anndata import AnnData

#: The key under which anndata 0.13 and newer show ``X`` among the layers.
X_ALIAS = None


def named_layers(adata: AnnData) -> dict[Any, Any]:
    """``adata.layers`` as a dict, without the ``X`` alias (``layers[None]``) of anndata 0.13 and newer.

    Examples
    --------
    >>> import anndata, numpy as np
    >>> adata = anndata.AnnData(np.ones((2, 3)), layers={"spliced": np.zeros((2, 3))})
    >>> list(named_layers(adata))
    ['spliced']
    """
    return {key: adata.layers[key] for key in adata.layers.keys() if key is not X_ALIAS}
