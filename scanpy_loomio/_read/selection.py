"""Reading one stored matrix as the record says (whole or a selection), and subset reads of a whole file.

:func:`read_stored_matrix` is what the reader, the subset read and each task of a lazy read use for ``X`` and
layers: the recorded container (CSR, CSC or dense; ``csr_array`` where recorded) and dtype, files stored cells ×
genes turned round. :func:`read_subset` reads the annotations whole (they are small), subsets them with anndata's own
indexing, and reads only the chunks of the matrices that hold the selected cells and genes.
"""

from __future__ import annotations

import threading
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse as sp

from scanpy_loomio import _matrix
from scanpy_loomio._compat import quiet_anndata
from scanpy_loomio._matrix.pool import resolve_threads
from scanpy_loomio._matrix.stream import release_freed_memory
from scanpy_loomio._matrix.subset import prepare_selection, read_selection
from scanpy_loomio._read.beside import ReadsBeside
from scanpy_loomio._record.tags import AbsentMatrixTag, MatrixFormat, MatrixTag, layer_tag

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

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
    stored = StoredMatrix.of(dset, sparse=sparse, transposed=transposed, dtype=dtype, lock=lock)
    if stored is None:
        return None
    if template is not None:
        with lock:
            return stored.finish(_matrix.empty_like_read(dset, template, format=stored.format), turn=False)
    rows, cols = (cells, genes) if transposed else (genes, cells)
    if rows is None and cols is None:
        with lock:
            value = _matrix.read_matrix(dset, format=stored.file_format, n_threads=n_threads, progress=progress)
    else:
        value = read_selection(
            dset, rows, cols, format=stored.file_format, n_threads=n_threads, progress=progress, lock=lock
        )
    return stored.finish(value)


def prepare_stored_matrix(
    dset: h5py.Dataset,
    *,
    sparse: bool,
    transposed: bool,
    dtype: str | None = None,
    n_threads: int | None = None,
    progress: bool = False,
    stop: threading.Event | None = None,
) -> tuple[Callable[[], Any], bool]:
    """What :func:`read_stored_matrix` reads whole, as a function, and whether that function calls HDF5.

    The HDF5 calls that locate the chunks are made here. Where the function calls no HDF5 (it reads the chunks'
    bytes through the file's own descriptor), it can run in a thread while this one reads the annotations; once
    ``stop`` is set, it raises :class:`~scanpy_loomio._matrix.chunk_reader.ReadStopped` within a task of chunks.
    """
    stored = StoredMatrix.of(dset, sparse=sparse, transposed=transposed, dtype=dtype, lock=nullcontext())
    if stored is None:
        return lambda: None, False
    pending = _matrix.prepare_matrix(dset, format=stored.file_format, n_threads=n_threads, progress=progress, stop=stop)
    return partial(_then, pending.read, stored.finish), pending.needs_hdf5


def prepare_stored_selection(
    dset: h5py.Dataset,
    *,
    sparse: bool,
    transposed: bool,
    cells: np.ndarray,
    genes: np.ndarray,
    dtype: str | None = None,
    n_threads: int | None = None,
    progress: bool = False,
    stop: threading.Event | None = None,
) -> tuple[Callable[[], Any], bool]:
    """What :func:`read_stored_matrix` reads for ``cells`` and ``genes``, as :func:`prepare_stored_matrix` gives it.

    A function reading the selection, and whether it calls HDF5; the HDF5 calls that locate the chunks are made
    here, and ``stop`` ends a read without HDF5 calls early.
    """
    stored = StoredMatrix.of(dset, sparse=sparse, transposed=transposed, dtype=dtype, lock=nullcontext())
    if stored is None:
        return lambda: None, False
    rows, cols = (cells, genes) if transposed else (genes, cells)
    pending = prepare_selection(
        dset, rows, cols, format=stored.file_format, n_threads=n_threads, progress=progress, stop=stop
    )
    return partial(_then, pending.read, stored.finish), pending.needs_hdf5


@dataclass(frozen=True)
class StoredMatrix:
    """How a stored matrix reads: its container and dtype (recorded, or the defaults), and its orientation."""

    format: MatrixFormat
    tag: MatrixTag | None
    transposed: bool
    dtype: str | None

    @classmethod
    def of(
        cls, dset: h5py.Dataset, *, sparse: bool, transposed: bool, dtype: str | None, lock: AbstractContextManager
    ) -> StoredMatrix | None:
        """``None`` for a matrix recorded as absent."""
        with lock:
            tag = layer_tag(dset)
        if isinstance(tag, AbsentMatrixTag):
            return None
        kind = tag if isinstance(tag, MatrixTag) else None
        fmt = (kind.format if kind else None) or ("csr" if sparse else "dense")
        return cls(fmt, kind, transposed, dtype or (kind.dtype if kind else None))

    @property
    def file_format(self) -> MatrixFormat:
        """The format to read in the file's orientation: a file stored cells × genes is read as the other one."""
        flipped: dict[MatrixFormat, MatrixFormat] = {"csr": "csc", "csc": "csr"}
        return flipped.get(self.format, self.format) if self.transposed else self.format

    def finish(self, value: Any, *, turn: bool = True) -> Any:
        """``value`` read in the file's orientation, as cells × genes in the recorded container and dtype."""
        if turn and self.transposed:
            value = value.T
            value = np.ascontiguousarray(value) if self.format == "dense" else value
        if self.dtype is not None and value.dtype != np.dtype(self.dtype):
            value = value.astype(self.dtype)
        if self.tag is not None and self.tag.is_sparse_array:
            value = sp.csc_array(value) if self.format == "csc" else sp.csr_array(value)
        return value


def repeated_examples(names: pd.Index) -> str:
    """The first few names that repeat, for messages.

    >>> repeated_examples(pd.Index(["Actb", "Gapdh", "Actb"]))
    "'Actb', ..."
    """
    return ", ".join(repr(name) for name in names[names.duplicated()].unique()[:3]) + ", ..."


def resolve_selection(obs_names: pd.Index, var_names: pd.Index, obs: Any, var: Any) -> tuple[np.ndarray, np.ndarray]:
    """Positions of the cells and genes ``obs``/``var`` select among these names, by anndata's own indexing.

    A selection anndata refuses raises anndata's error (type and message), raised here so that the read's error
    boundary does not take it for damage in the file.
    """
    with quiet_anndata():
        positions = AnnData(
            obs=pd.DataFrame({"position": np.arange(len(obs_names))}, index=obs_names),
            var=pd.DataFrame({"position": np.arange(len(var_names))}, index=var_names),
        )
        try:
            chosen = positions[_full(obs), _full(var)]
        except pd.errors.InvalidIndexError as err:  # names that are not unique: no name picks one entry
            repeated = [
                f"{axis} names ({repeated_examples(names)})"
                for axis, names in (("obs", obs_names), ("var", var_names))
                if not names.is_unique
            ]
            msg = (
                f"{err}: the {' and '.join(repeated)} are not unique, so names cannot select among them. Select "
                "by positions or a boolean mask, take the names from an attribute whose values are unique "
                "(obs_names=/var_names=, e.g. var_names='Accession'), or read the file whole and call "
                "obs_names_make_unique() or var_names_make_unique() first."
            )
            raise type(err)(msg) from None
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
    cells, genes = resolve_selection(shell.obs_names, shell.var_names, obs, var)  # anndata's own index resolution
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
    """``read_loom_full(...)[obs, var]`` as an actual AnnData, reading only the chunks that hold the selection.

    A selection by positions (not names) is known before the annotations are read: with more than one thread, each
    matrix's chunks are then located (HDF5 calls, in this thread) and read in another thread while this one goes on
    to the next matrix and the annotations. Reading the chunks takes the file's bytes only, without HDF5.
    """
    matrices = reader.options.matrices
    reader.options = replace(reader.options, matrices=False)
    if not matrices:
        return read_subset_annotations(reader, obs, var)[0]
    values: dict[str | None, Any] = {}
    # one thread asked for: one at a time, as the annotations also take decompressing
    beside = resolve_threads(reader.options.n_threads) > 1 and _by_position(obs) and _by_position(var)
    if not beside:
        result, cells, genes = read_subset_annotations(reader, obs, var)
        for key, read, _ in _matrix_readers(reader, cells, genes, prepared=False):
            values[key] = read()
    else:
        n_obs, n_vars = reader.shape
        cells, genes = resolve_selection(pd.RangeIndex(n_obs).astype(str), pd.RangeIndex(n_vars).astype(str), obs, var)
        with ReadsBeside() as reads:
            for key, read, without_hdf5 in _matrix_readers(reader, cells, genes, prepared=True, stop=reads.stop):
                reads.add(key, read, beside=without_hdf5)  # those that need HDF5 are read after the annotations
            result, _, _ = read_subset_annotations(reader, obs, var)
            values = reads.results()
    with quiet_anndata():
        result.X = values.pop(None)
        for key, value in values.items():
            if value is not None:
                result.layers[key] = value
    return result


def _matrix_readers(
    reader: LoomReader, cells: np.ndarray, genes: np.ndarray, *, prepared: bool, stop: threading.Event | None = None
) -> Iterator[tuple[str | None, Callable[[], Any], bool]]:
    """``(key, read, without_hdf5)`` for ``X`` (key ``None``) and each layer, read at ``cells`` × ``genes``.

    ``read`` gives the matrix's cells and genes in the order asked (repeats included).

    ``prepared``: each matrix's HDF5 calls are made when it is yielded, and ``without_hdf5`` tells whether ``read``
    then reads the file's bytes only (safe in another thread while this one calls HDF5); setting ``stop`` ends such a
    read early.
    """
    unique_cells, cell_order = increasing_positions(cells)
    unique_genes, gene_order = increasing_positions(genes)

    def in_order(value: Any) -> Any:
        if value is not None and cell_order is not None:
            value = value[cell_order]
        if value is not None and gene_order is not None:
            value = value[:, gene_order]
        return value

    for key, dset, dtype in reader.matrices_to_read():

        def read_layer(dset: h5py.Dataset = dset, dtype: str | None = dtype) -> Any:
            return in_order(reader.read_layer(dset, dtype=dtype, cells=unique_cells, genes=unique_genes))

        if not prepared:
            yield key, read_layer, False
            continue
        read, needs_hdf5 = prepare_stored_selection(
            dset,
            sparse=reader.options.sparse,
            transposed=reader.transposed,
            cells=unique_cells,
            genes=unique_genes,
            dtype=dtype,
            n_threads=reader.options.n_threads,
            progress=reader.options.progress,
            stop=stop,
        )
        yield key, partial(_then, read, in_order), not needs_hdf5


def _then(read: Callable[[], Any], finish: Callable[[Any], Any]) -> Any:
    return finish(read())


def _by_position(selection: Any) -> bool:
    """Whether ``selection`` picks by position alone, so that no names are needed to resolve it.

    ``None``, an integer, a slice of integers, or a numpy array or list of integers or booleans; not pandas objects
    (anndata aligns them by their index) or names.
    """
    if selection is None:
        return True
    if isinstance(selection, int | np.integer):
        return not isinstance(selection, bool)
    if isinstance(selection, slice):
        bounds = (selection.start, selection.stop, selection.step)
        return all(b is None or (isinstance(b, int | np.integer) and not isinstance(b, bool)) for b in bounds)
    if isinstance(selection, np.ndarray | list):
        return len(selection) > 0 and np.asarray(selection).dtype.kind in "biu"
    return False


def increasing_positions(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """Increasing positions without repeats, and how to put them back in the order asked (``None``: as they are)."""
    if positions.size < 2 or bool(np.all(np.diff(positions) > 0)):
        return positions, None
    unique, order = np.unique(positions, return_inverse=True)
    return unique, order.ravel()


__all__ = ["increasing_positions", "read_stored_matrix", "read_subset", "read_subset_annotations", "resolve_selection"]
