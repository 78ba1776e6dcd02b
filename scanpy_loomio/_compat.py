"""Differences between the supported releases of anndata and pandas, handled in one place.

- anndata 0.13 also shows ``X`` as ``adata.layers[None]``; that key is ``X`` itself, written once as ``/matrix``,
  never as a layer of its own. Every place that walks an AnnData's layers goes through :func:`named_layers`.
- anndata 0.13 reads pandas 3's deprecated ``future.infer_string`` option whenever it builds a frame or reads text,
  and pandas warns each time; :func:`quiet_anndata` keeps that warning, which concerns anndata's code and nothing
  a caller could change, out of this package's reads and writes.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator

    from anndata import AnnData

#: The key under which anndata 0.13 and newer show ``X`` among the layers.
X_ALIAS = None

_INFER_STRING_OPTION = r"The 'future\.infer_string' option is deprecated"


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


@contextlib.contextmanager
def quiet_anndata() -> Iterator[None]:
    """Silence pandas' warning about the ``future.infer_string`` option that anndata 0.13 reads.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("error")
    ...     with quiet_anndata():
    ...         warnings.warn("The 'future.infer_string' option is deprecated", FutureWarning)
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_INFER_STRING_OPTION)
        yield
