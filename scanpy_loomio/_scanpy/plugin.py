"""What ``import scanpy_loomio`` adds to scanpy and AnnData."""

from __future__ import annotations

import importlib
import importlib.util
import os
import warnings
from types import ModuleType
from typing import Any

import anndata
import scanpy as sc

from scanpy_loomio._read.reader import read_loom_full
from scanpy_loomio._tools.update import update_loom_full
from scanpy_loomio._write.writer import write_loom_full


class LoomAccessor:
    """``adata.loom``: loom I/O for one AnnData.

    Examples
    --------
    >>> import scanpy as sc
    >>> import scanpy_loomio
    >>> adata = sc.datasets.pbmc68k_reduced()
    >>> adata.loom.write("pbmc.loom")
    """

    def __init__(self, adata: anndata.AnnData) -> None:
        self._adata = adata

    def write(self, filename: str | os.PathLike[str], **kwargs: Any) -> None:
        """Write with :func:`scanpy_loomio.write_loom_full`; keyword arguments are passed on."""
        write_loom_full(filename, self._adata, **kwargs)

    def update(self, filename: str | os.PathLike[str], **kwargs: Any) -> None:
        """Write the annotations into the file it was read from with :func:`scanpy_loomio.update_loom_full`."""
        update_loom_full(filename, self._adata, **kwargs)


def _scanpy_namespaces() -> list[ModuleType]:
    """``scanpy`` itself, and ``scanpy.io`` where the installed scanpy has it (1.13 and newer)."""
    namespaces = [sc]
    if importlib.util.find_spec("scanpy.io") is not None:
        namespaces.append(importlib.import_module("scanpy.io"))
    return namespaces


def install() -> None:
    """Add ``read_loom_full``/``write_loom_full`` to scanpy (and ``scanpy.io``) and the ``adata.loom`` accessor.

    Replaces nothing: a name scanpy already has is left as it is, with a warning.
    """
    for namespace in _scanpy_namespaces():
        for name, func in (("read_loom_full", read_loom_full), ("write_loom_full", write_loom_full)):
            existing = getattr(namespace, name, None)
            if existing is None:
                setattr(namespace, name, func)
            elif existing is not func:
                msg = f"{namespace.__name__} already has an attribute {name!r}; scanpy_loomio left it as it is"
                warnings.warn(msg, UserWarning, stacklevel=3)
    if not hasattr(anndata.AnnData, "loom"):
        anndata.register_anndata_namespace("loom")(LoomAccessor)
