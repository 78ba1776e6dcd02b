"""What ``import scanpy_loomio`` adds to scanpy and AnnData.

``import scanpy_loomio`` does not import scanpy (3–4 s and almost 300 MB): the ``adata.loom`` accessor is added at
once, and ``read_loom_full``/``write_loom_full`` are added to scanpy as soon as scanpy is imported, before or after.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import os
import sys
import threading
import warnings
from types import ModuleType
from typing import Any

import anndata

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


def _scanpy_namespaces(sc: ModuleType) -> list[ModuleType]:
    """``scanpy`` itself, and ``scanpy.io`` where the installed scanpy has it (1.13 and newer)."""
    namespaces = [sc]
    if importlib.util.find_spec("scanpy.io") is not None:
        namespaces.append(importlib.import_module("scanpy.io"))
    return namespaces


def install() -> None:
    """Add ``read_loom_full``/``write_loom_full`` to scanpy (and ``scanpy.io``) and the ``adata.loom`` accessor.

    Replaces nothing: a name scanpy already has is left as it is, with a warning. When scanpy is not imported yet,
    the functions are added right after it is.
    """
    if not hasattr(anndata.AnnData, "loom"):
        anndata.register_anndata_namespace("loom")(LoomAccessor)
    if "scanpy" in sys.modules:
        install_into_scanpy(sys.modules["scanpy"])
    else:
        _ScanpyImportHook.register()


def install_into_scanpy(sc: ModuleType) -> None:
    """Add ``read_loom_full``/``write_loom_full`` to the scanpy module ``sc`` and its ``scanpy.io``."""
    for namespace in _scanpy_namespaces(sc):
        for name, func in (("read_loom_full", read_loom_full), ("write_loom_full", write_loom_full)):
            existing = getattr(namespace, name, None)
            if existing is None:
                setattr(namespace, name, func)
            elif existing is not func:
                msg = f"{namespace.__name__} already has an attribute {name!r}; scanpy_loomio left it as it is"
                warnings.warn(msg, UserWarning, stacklevel=3)


class _ScanpyImportHook(importlib.abc.MetaPathFinder):
    """Finds nothing itself: when ``scanpy`` is imported, runs :func:`install_into_scanpy` right after it loaded."""

    _lock = threading.Lock()

    @classmethod
    def register(cls) -> None:
        with cls._lock:
            if not any(isinstance(finder, cls) for finder in sys.meta_path):
                sys.meta_path.insert(0, cls())

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != "scanpy":
            return None
        sys.meta_path.remove(self)  # once is enough; and the other finders below find the real module
        spec = importlib.util.find_spec(fullname)
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _InstallAfterLoading(spec.loader)
        return spec


class _InstallAfterLoading(importlib.abc.Loader):
    """Loads scanpy with its own loader, puts that loader back, then adds the functions."""

    def __init__(self, loader: importlib.abc.Loader) -> None:
        self.loader = loader

    def create_module(self, spec: Any) -> ModuleType | None:
        return self.loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        module.__loader__ = self.loader
        if module.__spec__ is not None:  # always set by the import system for a module it loads
            module.__spec__.loader = self.loader
        self.loader.exec_module(module)
        install_into_scanpy(module)
