"""Reading one stored matrix as the record says (whole or a selection), and subset reads of a whole file.

:func:`read_stored_matrix` is what the reader, the subset read and each task of a lazy read use for ``X`` and
layers: the recorded container (CSR, CSC or dense; ``csr_array`` where recorded) and dtype, files stored cells ×
genes turned round. :func:`read_subset` reads the annotations whole (they are small), subsets them with anndata's own
indexing, and reads only the chunks of the matrices that hold the selected cells and genes.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse as sp

from scanpy_loomio import _matrix
from scanpy_loomio._compat import quiet_anndata
from scanpy_loomio._matrix.stream import release_freed_memory
from scanpy_loomio._matrix.subset import read_selection
from scanpy_loomio._record.tags import AbsentMatrixTag, MatrixFormat, MatrixTag, layer_tag

if TYPE_CHECKING:
    import h5py

    from scanpy_loomio._read.reader import LoomReader


def read_stored_matrix(
    dset: h5py.Dataset,
    *,
    sparse: bool,
    transposed: bool,
    dtype: str | None = None,
    template: tuple[int, int] | None = None,
    cells: np.ndarray | None = None,
    genes: np.ndarray | None = None,
    n_threads: int | None = None,
    progress: bool = False,
    lock: AbstractContextManager | None = None,
) -> Any:
    """A matrix as stored (its recorded container and dtype), cast to ``dtype`` when given.

    ``sparse``: read matrices without a recorded format as CSR (else dense). ``transposed``: the file stores cells ×
    genes. ``template``: nothing is read; an all-zero matrix of this shape, of the container and dtype reading would
    give. ``cells``/``genes``: increasing positions without repeats to read (``None``: all). ``lock``: held whenever
    HDF5 is called (for reads in several threads at once).
    """
    lock = nullcontext() if lock is None else lock
    with lock:
        tag = layer_tag(dset)
    if isinstance(tag, AbsentMatrixTag):
        return None
    kind = tag if isinstance(tag, MatrixTag) else None
    fmt = (kind.format if kind else None) or ("csr" if sparse else "dense")
    if template is not None:
        with lock:
            value = _matrix.empty_like_read(dset, template, format=fmt)
    elif transposed:  # stored cells × genes: read it as the other orientation, then turn it
        flipped: dict[MatrixFormat, MatrixFormat] = {"csr": "csc", "csc": "csr"}
        other = flipped.get(fmt, fmt)
        value = _read(dset, other, cells, genes, n_threads, progress, lock).T
        value = np.ascontiguousarray(value) if fmt == "dense" else value
    else:
        value = _read(dset, fmt, genes, cells, n_threads, progress, lock)
    dtype = dtype or (kind.dtype if kind else None)
    if dtype is not None and value.dtype != np.dtype(dtype):
        value = value.astype(dtype)
    if kind is not None and kind.is_sparse_array:
        value = sp.csc_array(value) if fmt == "csc" else sp.csr_array(value)
    return value


def _read(
    dset: h5py.Dataset,
    fmt: MatrixFormat,
    rows: np.ndarray | None,
    cols: np.ndarray | None,
    n_threads: int | None,
    progress: bool,
    lock: AbstractContextManager,
) -> Any:
    if rows is None and cols is None:
        with lock:
            return _matrix.read_matrix(dset, format=fmt, n_threads=n_threads, progress=progress)
    return read_selection(dset, rows, cols, format=fmt, n_threads=n_threads, progress=progress, lock=lock)


def resolve_selection(shell: AnnData, obs: Any, var: Any) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the cells and genes ``shell[obs, var]`` selects, in its order, by anndata's own indexing.

    A selection anndata refuses raises anndata's error (type and message), raised here so that the read's error
    boundary does not take it for damage in the file.
    """
    with quiet_anndata():
        positions = AnnData(
            obs=pd.DataFrame({"position": np.arange(shell.n_obs)}, index=shell.obs_names),
            var=pd.DataFrame({"position": np.arange(shell.n_vars)}, index=shell.var_names),
        )
        try:
            chosen = positions[_full(obs), _full(var)]
        except (KeyError, IndexError, TypeError, ValueError) as err:
            raise type(err)(*err.args) from None
        # np.asarray: with xarray installed anndata types obs/var as pandas or xarray frames
        return np.asarray(chosen.obs["position"], dtype=np.int64), np.asarray(chosen.var["position"], dtype=np.int64)


def _full(selection: Any) -> Any:
    return slice(None) if selection is None else selection


def read_subset_annotations(reader: LoomReader, obs: Any, var: Any) -> tuple[AnnData, np.ndarray, np.ndarray]:
    """All but the matrices of ``read_loom_full(...)[obs, var]``, and the positions of the cells and genes selected.

    Graphs are built from the edges between the selected vertices only: the whole ``n × n`` matrices are what a
    subset read must not build. ``reader`` must be set to read no matrices.
    """
    reader.graphs_later = True
    shell = reader.read()  # names, annotations, embeddings, uns and raw: small, read whole
    cells, genes = resolve_selection(shell, obs, var)  # anndata's own index resolution
    selected: tuple[tuple[Literal["obs", "var"], np.ndarray, Any], ...] = (
        ("obs", cells, shell.obsp),
        ("var", genes, shell.varp),
    )
    for axis, positions, pairwise in selected:
        keep = np.zeros(shell.n_obs if axis == "obs" else shell.n_vars, dtype=bool)
        keep[positions] = True
        record = getattr(reader.metadata, axis) if reader.metadata else None
        for key, graph in reader.read_graphs(axis, keep.shape[0], record, keep=keep).items():
            pairwise[key] = graph
    with quiet_anndata():
        result = shell[_full(obs), _full(var)].copy()  # anndata's subsetting: obsp/varp, raw along obs, uns as is
    del shell
    release_freed_memory()  # what reading the annotations freed goes back: the peak is that of one phase, not both
    return result, cells, genes


def read_subset(reader: LoomReader, obs: Any, var: Any) -> AnnData:
    """``read_loom_full(...)[obs, var]`` as an actual AnnData, reading only the chunks that hold the selection."""
    matrices = reader.options.matrices
    reader.options = replace(reader.options, matrices=False)
    result, cells, genes = read_subset_annotations(reader, obs, var)
    if not matrices:
        return result
    x_dset, sources, _ = reader.matrix_sources()
    unique_cells, cell_order = increasing_positions(cells)
    unique_genes, gene_order = increasing_positions(genes)

    def read(dset: h5py.Dataset, dtype: str | None = None) -> Any:
        value = reader.read_layer(dset, dtype=dtype, cells=unique_cells, genes=unique_genes)
        if value is None:
            return None
        if cell_order is not None:
            value = value[cell_order]
        if gene_order is not None:
            value = value[:, gene_order]
        return value

    with quiet_anndata():
        result.X = read(x_dset, reader.options.dtype)
        for key, dset in sources.items():
            value = read(dset)
            if value is not None:
                result.layers[key] = value
    return result


def increasing_positions(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Increasing positions without repeats, and how to put them back in the order asked (``None``: as they are)."""
    if positions.size < 2 or bool(np.all(np.diff(positions) > 0)):
        return positions, None
    unique, order = np.unique(positions, return_inverse=True)
    return unique, order.ravel()


__all__ = ["increasing_positions", "read_stored_matrix", "read_subset", "read_subset_annotations", "resolve_selection"]
