"""Lazy reads: an AnnData whose ``X`` and layers are dask arrays that read bands of cells when computed.

Annotations are read at once, as :func:`~scanpy_loomio.read_loom_full` reads them. Each matrix becomes a dask
array split along cells only, whose blocks are read by :class:`LoomMatrix`: a small picklable object holding the
file's path and the dataset's name, never an h5py object. Each task opens the file read-only through the package's
guarded open and reads its band with the matrix engine (only the chunks of that band, located without listing the
rest), so the graph runs on any dask scheduler, dask.distributed workers included (with the file on a path they
share).
"""

from __future__ import annotations

import hashlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from scanpy_loomio._compat import quiet_anndata
from scanpy_loomio._errors import LoomFormatError
from scanpy_loomio._guards import (
    MemoryLimit,
    check_file,
    check_read_size,
    converted_read_errors,
    open_read_only,
    resolve_memory_limit,
)
from scanpy_loomio._matrix.pool import resolve_threads
from scanpy_loomio._read.reader import LoomReader, ReadOptions
from scanpy_loomio._read.selection import increasing_positions, read_stored_matrix, read_subset_annotations
from scanpy_loomio.conventions import Convention, get_convention

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import h5py
    from anndata import AnnData

#: Default block size: cells whose band, held dense, takes about this many bytes (a multiple of the chunk width).
BLOCK_BYTES = 128 * 2**20
INSTALL_HINT = "pip install 'scanpy-loomio[dask]'"
#: Held by a task whenever it calls HDF5: the threads of a dask worker read at once, and threads that open one file
#: and read stored chunks through h5py at the same time crash the process (h5py 3.13, HDF5 1.14). Inflating runs
#: outside it.
HDF5_LOCK = threading.Lock()


@dataclass(frozen=True)
class LoomMatrix:
    """One matrix of a loom file as an array-like whose slices are read from the file when asked for.

    ``cells``/``genes`` map its positions to the file's (``None``: the same). Reading opens the file by path,
    read-only, each time; the object holds no open file and pickles.

    Examples
    --------
    >>> import scanpy as sc
    >>> import scanpy_loomio
    >>> scanpy_loomio.write_loom_full("pbmc.loom", sc.datasets.pbmc68k_reduced())
    >>> matrix = LoomMatrix(str(Path("pbmc.loom").resolve()), "/matrix", (700, 765), np.dtype("float32"), sparse=False)
    >>> matrix[10:12, 0:3].shape
    (2, 3)
    """

    path: str
    name: str
    shape: tuple[int, int]
    dtype: np.dtype
    file_shape: tuple[int, int] | None = None  # cells × genes of the file (default: ``shape``)
    sparse: bool = True
    transposed: bool = False
    cast: str | None = None
    n_threads: int = 1
    stamp: tuple[int, int] | None = None  # size and modification time of the file when the graph was made
    cells: np.ndarray | None = None
    genes: np.ndarray | None = None

    @property
    def ndim(self) -> int:
        return 2

    def __dask_tokenize__(self) -> tuple:
        return (type(self).__name__, self.path, self.name, self.shape, str(self.dtype), self.sparse, self.transposed,
                self.cast, self.stamp, _digest(self.cells), _digest(self.genes))  # fmt: skip

    def __getitem__(self, key: Any) -> Any:
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (2 - len(key))
        wanted, after = [], []
        for index, size, mapping in zip(key, self.shape, (self.cells, self.genes), strict=True):
            positions = np.arange(size, dtype=np.int64)[index]
            after.append(0 if positions.ndim == 0 else slice(None))
            positions = np.atleast_1d(positions)
            wanted.append(positions if mapping is None else mapping[positions])
        (cells, cell_order), (genes, gene_order) = (increasing_positions(p) for p in wanted)
        value = self._read(cells, genes)
        if cell_order is not None:
            value = value[cell_order]
        if gene_order is not None:
            value = value[:, gene_order]
        return value[tuple(after)] if 0 in after else value

    def _read(self, cells: np.ndarray, genes: np.ndarray | None) -> Any:
        path = Path(self.path)
        try:
            return self._read_file(path, cells, genes)
        except Exception:
            with HDF5_LOCK, converted_read_errors(path):  # as read_loom_full reports errors (asking HDF5 where)
                raise

    def _read_file(self, path: Path, cells: np.ndarray, genes: np.ndarray | None) -> Any:
        with HDF5_LOCK:
            file = open_read_only(path)
        try:
            with HDF5_LOCK:
                dset = file.get(self.name)
                self._check_unchanged(path, dset)
            return read_stored_matrix(
                dset,
                sparse=self.sparse,
                transposed=self.transposed,
                dtype=self.cast,
                cells=cells,
                genes=genes,
                n_threads=self.n_threads,
                lock=HDF5_LOCK,
            )
        finally:
            with HDF5_LOCK:
                file.close()

    def _check_unchanged(self, path: Path, dset: Any) -> None:
        """Refuse a file other than the one the graph was made from: old annotations would meet new matrices."""
        stored = getattr(dset, "shape", None)
        expected = tuple(self.file_shape or self.shape)
        stat = os.stat(path)
        if self.stamp is not None and (stat.st_size, stat.st_mtime_ns) != tuple(self.stamp):
            found = f"a file of {stat.st_size} bytes modified at {stat.st_mtime_ns} ns"
        elif stored is None or tuple(stored if self.transposed else stored[::-1]) != expected:
            found = f"{self.name}: {'no dataset' if stored is None else f'shape {stored}'}"
        else:
            return
        msg = f"{path}: found {found}; expected the file read_loom_lazy read. The file changed since; read it again."
        raise LoomFormatError(msg)


def _digest(positions: np.ndarray | None) -> str | None:
    return None if positions is None else hashlib.sha1(positions.tobytes()).hexdigest()


def read_loom_lazy(
    filename: str | os.PathLike[str],
    *,
    chunks: int | None = None,
    obs: Any = None,
    var: Any = None,
    convention: str | Convention | None = None,
    X_name: str | None = None,
    obs_names: str | None = None,
    var_names: str | None = None,
    obsm_mapping: Mapping[str, list[str]] | None = None,
    varm_mapping: Mapping[str, list[str]] | None = None,
    sparse: bool = True,
    cleanup: bool = False,
    dtype: str | None = None,
    repair_bytes_text: bool = False,
    n_threads: int = 1,
    allow_external: bool = False,
    memory_limit: MemoryLimit = "available",
) -> AnnData:
    """Read a loom file lazily: ``X`` and layers are dask arrays, read a band of cells at a time when computed.

    ``obs``, ``var``, ``obsm``, ``varm``, ``obsp``, ``varp``, ``uns`` and ``raw`` are read at once, as
    :func:`read_loom_full` reads them. Each matrix is a :class:`dask.array.Array` of shape ``(n_obs, n_vars)``
    split along cells only; each block is what :func:`read_loom_full` gives for those cells (a
    ``scipy.sparse.csr_matrix``, or the container and dtype the file's record names, e.g. a dense ``ndarray``). Its
    tasks open the file by path, read-only, so the graph pickles and runs on any dask scheduler, dask.distributed
    workers included (the file must be on a path they share). ``read_loom_lazy(f).to_memory()`` equals
    ``read_loom_full(f)``. Needs dask: ``pip install 'scanpy-loomio[dask]'``.

    Parameters
    ----------
    filename
        Path of the ``.loom`` file. It is opened read-only and never modified.
    chunks
        Cells per block, rounded up to a multiple of the file's chunk width along cells; ``None`` chooses blocks
        of about 128 MiB when held dense.
    obs, var
        Read only these cells / genes (as ``adata[obs, var]`` takes them); the tasks then read only the chunks that
        hold them. Subsetting the lazy AnnData afterwards reads whole blocks for positions and names, and only the
        chunks needed for slices.
    convention, X_name, obs_names, var_names, obsm_mapping, varm_mapping, sparse, cleanup, dtype, repair_bytes_text, allow_external, memory_limit
        As for :func:`read_loom_full` (``memory_limit`` applies to what is read at once: the annotations).
    n_threads
        Threads decompressing within each task; dask runs several tasks at once already.

    Returns
    -------
    An AnnData whose ``X`` and layers are dask arrays.

    Raises
    ------
    ImportError
        When dask is not installed.
    LoomFormatError
        As :func:`read_loom_full`; a damaged matrix raises it from the task that meets the damage, naming the file.

    Examples
    --------
    >>> import scanpy as sc
    >>> import scanpy_loomio
    >>> scanpy_loomio.write_loom_full("pbmc.loom", sc.datasets.pbmc68k_reduced())
    >>> lazy = scanpy_loomio.read_loom_lazy("pbmc.loom", chunks=256)
    >>> lazy.X.chunks[0]
    (256, 256, 188)
    >>> means = lazy.X.mean(axis=0).compute()  # reads the file a band of cells at a time
    >>> adata = lazy.to_memory()  # everything, as read_loom_full gives it
    >>> type(adata.X).__name__
    'ndarray'
    """
    try:  # optional dependency: only lazy reads need it
        import dask.array as da
        from dask.base import tokenize
    except ImportError as err:
        msg = f"read_loom_lazy needs dask, which is not installed: {INSTALL_HINT}"
        raise ImportError(msg) from err
    if chunks is not None and (isinstance(chunks, bool) or not isinstance(chunks, int | np.integer) or chunks < 1):
        msg = f"read_loom_lazy(chunks={chunks!r}): pass a positive number of cells per block, or None"
        raise ValueError(msg)
    resolve_threads(n_threads)  # refuse a bad value now, not in every task
    path = Path(os.path.abspath(filename))
    options = ReadOptions(
        convention=get_convention(convention) if convention is not None else None,
        X_name=X_name,
        obs_names=obs_names,
        var_names=var_names,
        obsm_mapping=dict(obsm_mapping or {}),
        varm_mapping=dict(varm_mapping or {}),
        sparse=sparse,
        dtype=dtype,
        cleanup=cleanup,
        matrices=False,
        repair_bytes_text=repair_bytes_text,
    )
    limit = resolve_memory_limit(memory_limit)
    with open_read_only(path) as file, converted_read_errors(path):
        datasets = check_file(file, path, allow_external=allow_external)
        reader = LoomReader(file, path, options)
        n_obs, n_vars = reader.shape
        check_read_size(file, path, datasets, n_obs=n_obs, n_vars=n_vars, matrices=False, limit=limit)
        cells = genes = None
        if obs is None and var is None:
            shell = reader.read()  # everything but X and layers
        else:  # the selection's annotations, graphs built from the edges between the selected cells (genes) only
            shell, cells, genes = read_subset_annotations(reader, obs, var)
        x_dset, sources, _ = reader.matrix_sources()
        stat = os.stat(path)
        common = {
            "file_shape": (n_obs, n_vars),
            "path": str(path),
            "sparse": sparse,
            "transposed": reader.transposed,
            "n_threads": n_threads,
            "stamp": (stat.st_size, stat.st_mtime_ns),
            "cells": cells,
            "genes": genes,
        }
        build = lambda dset, cast: _dask_matrix(da.from_array, tokenize, dset, cast, shell.shape, chunks, common)
        X = build(x_dset, dtype)
        layers = {key: build(dset, None) for key, dset in sources.items()}
    with quiet_anndata():
        shell.X = X
        for key, value in layers.items():
            if value is not None:
                shell.layers[key] = value
    return shell


def _dask_matrix(
    from_array: Callable,
    tokenize: Callable,
    dset: h5py.Dataset,
    cast: str | None,
    shape: tuple[int, int],
    chunks: int | None,
    common: dict,
) -> Any:
    """The dask array reading ``dset`` (``None`` for a matrix recorded as absent)."""
    meta = read_stored_matrix(
        dset, sparse=common["sparse"], transposed=common["transposed"], dtype=cast, template=(0, 0)
    )
    if meta is None:
        return None
    matrix = LoomMatrix(name=dset.name, shape=shape, dtype=meta.dtype, cast=cast, **common)
    along_cells = 0 if common["transposed"] else 1
    width = (dset.chunks[along_cells] if dset.chunks else 64) or 64
    if chunks is None:
        per_cell = max(1, shape[1] * dset.dtype.itemsize)
        height = max(width, BLOCK_BYTES // per_cell // width * width)
    else:
        height = -(-int(chunks) // width) * width
    height = max(1, min(height, shape[0])) if shape[0] else 1
    name = f"read-loom-{dset.name.strip('/').replace('/', '-')}-{tokenize(matrix, height)}"
    return from_array(
        matrix, chunks=(height, shape[1]), name=name, asarray=False, fancy=False, inline_array=False, meta=meta
    )


__all__ = ["LoomMatrix", "read_loom_lazy"]
