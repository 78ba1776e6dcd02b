"""What anndata's own ``write_h5ad`` does to an AnnData before storing it, done here the same way.

A loom round trip gives back what an ``.h5ad`` round trip gives back on the same stack: text columns with
repeated values become categoricals (anndata's ``strings_to_categoricals``, with its natural sort of the
categories), on copies, so the caller's AnnData is left as it is.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import anndata

if TYPE_CHECKING:
    import pandas as pd
    from anndata import AnnData


def frame_as_h5ad_stores(adata: AnnData, frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (``obs``, ``var`` or ``raw.var`` of ``adata``) with text columns converted as ``write_h5ad`` does.

    Examples
    --------
    >>> import anndata, numpy as np, pandas as pd
    >>> adata = anndata.AnnData(np.ones((3, 1)), obs=pd.DataFrame({"batch": ["a", "b", "a"]}, index=list("xyz")))
    >>> frame_as_h5ad_stores(adata, adata.obs)["batch"].cat.categories.tolist()
    ['a', 'b']
    >>> adata.obs["batch"].dtype == "category"  # unchanged
    False
    """
    converted = frame.copy(deep=False)
    adata.strings_to_categoricals(converted)
    return converted


def raw_as_h5ad_stores(adata: AnnData) -> anndata.Raw | None:
    """``adata.raw`` with its ``var`` converted as ``write_h5ad`` converts it, or None without ``raw``."""
    raw = adata.raw
    if raw is None:
        return None
    var = frame_as_h5ad_stores(adata, raw.var)
    if all(var[c].dtype == raw.var[c].dtype for c in var.columns):
        return raw
    # anndata annotates Raw(X=...) for ndarray/csr/csc only (any in-memory array works) and types the varm
    # descriptor for AnnData alone; the writer passes an in-memory AnnData (it loads backed ones first).
    return anndata.Raw(adata, X=raw.X, var=var, varm=raw.varm)  # type: ignore[arg-type]
