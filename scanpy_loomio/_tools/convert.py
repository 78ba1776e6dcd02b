"""Conversion between ``.loom``, ``.h5ad`` and ``.zarr`` in bounded memory (``scanpy-loomio convert``).

Only the annotations (names, columns, embeddings, graphs, ``uns``, ``raw``) are held in memory; ``X`` and the
layers go a band of cells at a time, so memory does not grow with the number of cells.

- ``.loom`` → ``.h5ad``/``.zarr``: the annotations are read as :func:`~scanpy_loomio.read_loom_full` reads them and
  written with anndata; then each matrix is read a band of cells at a time through the matrix engine and written
  with anndata's element writers (``write_elem`` for the first band, ``sparse_dataset(...).append`` or a resized
  dataset for the rest); graphs stored in row (column) order go the same way a block of edges at a time. The file
  holds exactly what ``read_loom_full`` + ``write_h5ad`` would write.
- ``.h5ad``/``.zarr`` → ``.loom``: everything but ``X`` and the layers is read with anndata's element readers
  (``read_dispatched``); ``X`` and the layers stay on disk (anndata's backed sparse datasets, or the dense
  datasets) and :func:`~scanpy_loomio.write_loom_full` writes them band by band; sparse ``obsp``/``varp`` graphs
  stay on disk too and are written a block of edges at a time.
- ``.loom`` → ``.loom`` (another convention) reads the file into memory, as before.

Every output is written under a temporary name beside the target and moved into place when complete.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, cast

import anndata
import h5py
import numpy as np
import numpy.typing as npt
from anndata.experimental import read_dispatched
from anndata.io import sparse_dataset, write_elem
from scipy import sparse
from tqdm.auto import tqdm

from scanpy_loomio import _matrix
from scanpy_loomio._compat import quiet_anndata
from scanpy_loomio._guards import check_file, converted_read_errors, open_read_only
from scanpy_loomio._matrix.stream import release_freed_memory
from scanpy_loomio._matrix.subset import read_selection
from scanpy_loomio._matrix.tiles import load_kernels
from scanpy_loomio._matrix.writer import is_sparse
from scanpy_loomio._read.reader import LoomReader, ReadOptions, read_loom_full
from scanpy_loomio._record.tags import AbsentMatrixTag, MatrixTag, layer_tag
from scanpy_loomio._tools.convert_graphs import write_graphs
from scanpy_loomio._tools.json_uns import storable_uns
from scanpy_loomio._write.atomic import atomic_directory, atomic_target
from scanpy_loomio._write.writer import write_loom_full
from scanpy_loomio.conventions import DEFAULT_CONVENTION, get_convention

Kind = Literal["loom", "h5ad", "zarr"]
SUFFIXES: dict[str, Kind] = {".loom": "loom", ".h5ad": "h5ad", ".zarr": "zarr"}
#: Dense bytes of one band of cells read from a loom file.
BAND_BYTES = 64 * 2**20
#: Rows (cells) per chunk of a dense matrix written to ``.h5ad``/``.zarr``.
DENSE_CHUNK_ROWS = 64


@dataclass(frozen=True)
class ConvertReport:
    """What :func:`convert_file` did."""

    source: Path
    target: Path
    shape: tuple[int, int]
    convention: str | None
    """The convention of the ``.loom`` file written, or ``None`` when the target is not a loom file."""


#: How long to wait at most for zarr's writes in flight to end before removing a failed store.
SETTLE_SECONDS = 10.0


def file_kind(path: str | os.PathLike[str]) -> Kind | None:
    """``"loom"``, ``"h5ad"`` or ``"zarr"`` from the suffix, or ``None``.

    Examples
    --------
    >>> file_kind("pbmc.h5ad"), file_kind("atlas.zarr"), file_kind("table.csv")
    ('h5ad', 'zarr', None)
    """
    return SUFFIXES.get(Path(path).suffix.lower())


def convert_file(
    source: str | os.PathLike[str],
    target: str | os.PathLike[str],
    *,
    convention: str | None = None,
    from_convention: str | None = None,
    X_name: str | None = None,
    obs_names: str | None = None,
    var_names: str | None = None,
    repair_bytes_text: bool = False,
    fill_missing_layers: bool = False,
    lossy: Literal["raise", "warn"] = "raise",
    compression_level: int | None = None,
    n_threads: int | None = None,
    progress: bool = False,
) -> ConvertReport:
    """Convert ``source`` to ``target``; the formats follow the suffixes (``.loom``, ``.h5ad``, ``.zarr``).

    One of the two must be a ``.loom`` file. The keyword arguments are those of ``scanpy-loomio convert``: how to
    read the loom input (``from_convention``, ``X_name``, ``obs_names``, ``var_names``, ``repair_bytes_text``) and
    how to write the loom output (``convention``, default ``"loompy"``, ``fill_missing_layers``, ``lossy``,
    ``compression_level``, default 2). Options for a side that is not a ``.loom`` file raise ``ValueError``: they would
    have no effect.

    Examples
    --------
    >>> import anndata as ad
    >>> import numpy as np
    >>> ad.AnnData(np.eye(3, dtype=np.float32)).write_h5ad("eye.h5ad")
    >>> convert_file("eye.h5ad", "eye.loom").shape
    (3, 3)
    >>> convert_file("eye.loom", "eye-again.zarr").target.name
    'eye-again.zarr'
    """
    source, target = Path(source), Path(target)
    kinds = (_known_kind(source), _known_kind(target))
    if "loom" not in kinds:
        msg = f"{source} -> {target}: neither is a .loom file; convert reads or writes a .loom file"
        raise ValueError(msg)
    loom_reading: dict[str, object] = {"from_convention": from_convention, "X_name": X_name, "obs_names": obs_names}
    loom_reading |= {"var_names": var_names, "repair_bytes_text": repair_bytes_text or None}
    loom_writing: dict[str, object] = {"convention": convention, "fill_missing_layers": fill_missing_layers or None}
    loom_writing |= {"compression_level": compression_level}
    for path, kind, asked, what in (
        (source, kinds[0], loom_reading, "read"),
        (target, kinds[1], loom_writing, "write"),
    ):
        given = [name for name, value in asked.items() if value is not None]
        if kind != "loom" and given:  # they would have no effect
            msg = (
                f"{path}: {', '.join(given)} {'say' if len(given) > 1 else 'says'} how to {what} a .loom file, and "
                f"this is a .{kind} file; leave {'them' if len(given) > 1 else 'it'} out."
            )
            raise ValueError(msg)
    convention = DEFAULT_CONVENTION if convention is None else convention
    if kinds[1] == "loom":
        write_options = {
            "convention": convention,
            "lossy": lossy,
            "fill_missing_layers": fill_missing_layers,
            "compression_level": _matrix.DEFAULT_COMPRESSION_LEVEL if compression_level is None else compression_level,
            "n_threads": n_threads,
            "progress": progress,
        }
        if kinds[0] == "loom":
            adata = read_loom_full(
                source,
                convention=from_convention,
                X_name=X_name,
                obs_names=obs_names,
                var_names=var_names,
                repair_bytes_text=repair_bytes_text,
                n_threads=n_threads,
                progress=progress,
            )
            shape = _write_loom(target, adata, **write_options)
        else:
            with opened_anndata(source) as adata:
                shape = _write_loom(target, adata, **write_options)
        return ConvertReport(source, target, shape, get_convention(convention).name)
    options = ReadOptions(
        convention=get_convention(from_convention) if from_convention is not None else None,
        X_name=X_name,
        obs_names=obs_names,
        var_names=var_names,
        repair_bytes_text=repair_bytes_text,
        n_threads=n_threads,
    )
    shape = loom_to_anndata_file(source, target, kinds[1], options, progress=progress)
    return ConvertReport(source, target, shape, None)


def _known_kind(path: Path) -> Kind:
    kind = file_kind(path)
    if kind is None:
        msg = f"{path}: cannot tell the format from the suffix {path.suffix!r}; expected .loom, .h5ad or .zarr"
        raise ValueError(msg)
    return kind


def _write_loom(target: Path, adata: anndata.AnnData, **options: Any) -> tuple[int, int]:
    write_loom_full(target, adata, **options)
    return adata.shape


# --------------------------------------------------------------------------------------------------
# .h5ad / .zarr -> AnnData with X and layers on disk


@contextlib.contextmanager
def opened_anndata(path: Path) -> Iterator[anndata.AnnData]:
    """An AnnData of an ``.h5ad`` file or ``.zarr`` store with ``X`` and layers left on disk, the rest in memory.

    Sparse matrices come as anndata's backed sparse datasets, dense ones as the h5py/zarr arrays; the file is
    closed on leaving the context. Files anndata cannot read element by element (written before anndata 0.7
    encoded its elements) are read whole with :func:`anndata.read_h5ad`.
    """
    if file_kind(path) == "zarr":
        import zarr  # optional: anndata's zarr support; only needed for .zarr files

        store = zarr.open_group(os.fspath(path), mode="r")
        closing: Any = contextlib.nullcontext()
    else:
        store = h5py.File(path, "r", rdcc_nbytes=0)  # each part is read once: no chunk cache per dataset
        closing = store
    with closing:
        if "encoding-type" not in store.attrs:
            with quiet_anndata():
                yield anndata.read_h5ad(path) if isinstance(store, h5py.File) else anndata.read_zarr(path)
            return
        with quiet_anndata():
            # read_dispatched is typed to return any element; the root of an encoded file is the AnnData
            adata = cast(anndata.AnnData, read_dispatched(store, _on_disk_matrices))
        yield adata


def _on_disk_matrices(read: Any, name: str, elem: Any, iospec: Any) -> Any:
    """``read_dispatched``'s callback: ``X``, layers and sparse graphs stay on disk, everything else is read."""
    one_level = name.count("/") == 2
    if name == "/X" or (name.startswith("/layers/") and one_level):
        if iospec.encoding_type in ("csr_matrix", "csc_matrix"):
            return sparse_dataset(elem)
        if iospec.encoding_type == "array":
            return elem
    if name.startswith(("/obsp/", "/varp/")) and one_level and iospec.encoding_type in ("csr_matrix", "csc_matrix"):
        return sparse_dataset(elem)  # kNN graphs of many cells: written to loom a block of edges at a time
    return read(elem)


# --------------------------------------------------------------------------------------------------
# .loom -> .h5ad / .zarr


def loom_to_anndata_file(
    source: Path, target: Path, kind: Kind, options: ReadOptions, *, progress: bool = False
) -> tuple[int, int]:
    """Write the loom file ``source`` as an ``.h5ad`` file or ``.zarr`` store, a band of cells at a time."""
    with open_read_only(source) as file:
        with converted_read_errors(source):
            check_file(file, source)
            reader = LoomReader(file, source, ReadOptions(**{**vars(options), "matrices": False}))
            reader.graphs_later = True  # written part by part below, not held whole
            shell = reader.read()
            reader.options = options
            x_dset, layer_dsets, _ = reader.matrix_sources()
        shell.uns, turned = storable_uns(shell.uns)
        if turned:
            warnings.warn(
                f"{source}: uns {turned} hold lists of records, which .{kind} files cannot store; written as their "
                "JSON text (as SCope stores MetaData). A loom file written from the result carries the same text.",
                UserWarning,
                stacklevel=3,
            )
        matrices = [("", "X", x_dset)] + [("layers", key, dset) for key, dset in layer_dsets.items()]
        if any("/" in key or not key for key in layer_dsets):
            msg = f"{source}: layer names {list(layer_dsets)} cannot be .h5ad element names"
            raise ValueError(msg)
        with _output(target, kind) as (tmp, open_group):
            with quiet_anndata(), warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*zarr v2.*", category=UserWarning)
                if kind == "zarr":
                    shell.write_zarr(tmp)
                else:
                    shell.write_h5ad(tmp)
            shape = shell.shape
            del shell  # the annotations are written: free them before the matrices
            release_freed_memory()
            with open_group(tmp) as root:
                with converted_read_errors(source):
                    write_graphs(reader, root, shape)
                for parent, key, dset in matrices:
                    group = root.require_group(parent) if parent else root
                    _copy_matrix(reader, dset, group, key, progress=progress, is_x=not parent)
        return shape


@contextlib.contextmanager
def _output(target: Path, kind: Kind) -> Iterator[tuple[Path, Any]]:
    """A temporary path beside ``target`` and how to open it for adding elements; moved into place on success."""
    if kind == "h5ad":
        with atomic_target(target) as tmp:
            yield tmp, lambda path: h5py.File(path, "r+")
        return

    with atomic_directory(target) as tmp:
        try:
            yield tmp, _zarr_group
        except BaseException:
            _settle_zarr_writes()  # before the store is removed
            raise


@contextlib.contextmanager
def _zarr_group(path: Path) -> Iterator[Any]:
    """The root group of a store anndata wrote, open for adding elements; its metadata consolidated again after."""
    import zarr  # optional: anndata's zarr support; only needed for .zarr targets

    try:
        group = zarr.open_group(os.fspath(path), mode="r+", use_consolidated=False)
    except TypeError:  # zarr 2 opens the plain metadata unless asked for the consolidated copy
        group = zarr.open_group(os.fspath(path), mode="r+")
    yield group
    zarr.consolidate_metadata(os.fspath(path))


def _settle_zarr_writes() -> None:
    """Wait (a while at most) for the tasks on zarr's event loop other than the one waiting, if zarr has one.

    zarr writes a store's chunks concurrently and goes on with the others when one fails, so a failed conversion's
    store can still be growing (or be made again, folders and all) while it is removed.
    """
    sync = sys.modules.get("zarr.core.sync")  # zarr 3's loop; nothing to wait for if zarr was never used
    loop = getattr(sync, "loop", [None])[0]
    if loop is None or not loop.is_running():
        return
    import asyncio  # only with zarr's loop running (zarr imported it already)

    async def others_done() -> None:
        others = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        if others:
            await asyncio.wait(others, timeout=SETTLE_SECONDS)

    with contextlib.suppress(Exception):  # best effort: the removal tries again anyway
        asyncio.run_coroutine_threadsafe(others_done(), loop).result(SETTLE_SECONDS + 1)


def _copy_matrix(reader: LoomReader, dset: h5py.Dataset, group: Any, key: str, *, progress: bool, is_x: bool) -> None:
    """Write one loom matrix into ``group[key]`` as ``read_loom_full`` would give it, a band at a time."""
    tag = layer_tag(dset)
    if isinstance(tag, AbsentMatrixTag):
        return
    kind = tag if isinstance(tag, MatrixTag) else None
    fmt = (kind.format if kind else None) or ("csr" if reader.options.sparse else "dense")
    asked = reader.options.dtype if is_x else None
    dtype = np.dtype(asked or (kind.dtype if kind else None) or _matrix_dtype(dset.dtype, fmt))
    writer = _BandWriter(group, key, fmt, dtype, reader.shape)
    bands = _LoomBands(dset, transposed=reader.transposed, n_threads=reader.options.n_threads, as_csr=fmt == "csr")
    try:
        for band in bands.iterate(reader.path, by_genes=fmt == "csc", progress=progress):
            writer.append(_as_read(band, fmt, dtype))
    finally:
        bands.close()
    writer.finish()


def _matrix_dtype(stored: np.dtype, fmt: str) -> np.dtype:
    """The dtype reading gives without a record: the stored one; float16 becomes float32 in sparse results."""
    stored = np.dtype(stored).newbyteorder("=") if np.dtype(stored).byteorder not in "=|" else np.dtype(stored)
    return np.dtype(np.float32) if fmt != "dense" and stored == np.float16 else stored


def _as_read(band: Any, fmt: str, dtype: np.dtype) -> Any:
    """A band (cells × genes, or genes × cells for ``csc``) in the container and dtype reading gives."""
    if is_sparse(band):  # read as CSR already
        return band.astype(dtype, copy=False)
    if fmt == "dense":
        return band.astype(dtype, copy=False)
    if fmt == "csc":  # the band is genes × cells: its CSR, turned round, is the cells × genes CSC
        return dense_to_csr(band).T.astype(dtype, copy=False)
    return dense_to_csr(band).astype(dtype, copy=False)


def dense_to_csr(block: np.ndarray) -> sparse.csr_matrix:
    """The non-zeros of a C-contiguous 2-d array as a canonical CSR matrix, with the matrix engine's kernels.

    float16 becomes float32 (scipy.sparse has no float16); ``-0.0`` counts as zero, as in ``!= 0``.

    Examples
    --------
    >>> import numpy as np
    >>> m = dense_to_csr(np.array([[0, 2, 0], [1, 0, 3]], dtype=np.int16))
    >>> m.toarray().tolist(), m.dtype
    ([[0, 2, 0], [1, 0, 3]], dtype('int16'))
    """
    block = np.ascontiguousarray(block)
    if block.dtype.kind == "b":
        return sparse.csr_matrix(block)
    n_rows, n_cols = block.shape
    unsigned = np.dtype(f"u{block.dtype.itemsize}")
    if block.dtype.kind == "f":
        mask = np.array([(1 << (8 * block.dtype.itemsize - 1)) - 1], dtype=unsigned)  # -0.0 is a zero
    else:
        mask = np.array([np.iinfo(unsigned).max], dtype=unsigned)
    kernels = load_kernels()
    tiles = block.view(unsigned)[np.newaxis]
    slots = np.zeros(1, dtype=np.int64)
    counts = np.zeros(n_rows, dtype=np.int64)
    bits = np.empty((1, n_rows, -(-n_cols // 64)), dtype=np.uint64)
    kernels.mark_tile_nonzeros(tiles, slots, mask, n_rows, n_cols, False, counts, bits)
    indptr = np.zeros(n_rows + 1, dtype=np.int64)
    np.cumsum(counts, out=indptr[1:])
    nnz = int(indptr[-1])
    positions = indptr[:-1].copy()
    index_dtype = np.int32 if n_cols < np.iinfo(np.int32).max else np.int64
    indices: npt.NDArray[np.integer[Any]] = np.empty(nnz, dtype=index_dtype)
    data = np.empty(nnz, dtype=unsigned)
    kernels.emit_tile_nonzeros(tiles, slots, bits, n_rows, False, positions, indices, data)
    values = data.view(block.dtype)
    if values.dtype == np.float16:
        values = values.astype(np.float32)
    indptr = indptr.astype(index_dtype) if nnz < np.iinfo(np.int32).max else indptr
    result = sparse.csr_matrix((values, indices, indptr), shape=(n_rows, n_cols), copy=False)
    result.has_sorted_indices = True
    result.has_canonical_format = True
    return result


class _LoomBands:
    """Bands of one loom matrix, in the container the copy needs.

    Dense cells × genes, dense genes × cells (``by_genes``), or CSR cells × genes (``as_csr``).
    """

    def __init__(self, dset: h5py.Dataset, *, transposed: bool, n_threads: int | None, as_csr: bool = False) -> None:
        self.dset = dset
        self.transposed = transposed  # stored cells × genes
        n_genes, n_cells = dset.shape[::-1] if transposed else dset.shape
        self.n_genes, self.n_cells = int(n_genes), int(n_cells)
        self.n_threads = n_threads
        # CSR bands of cells come from the chunks straight (the selection reader), without a dense band in between
        self.as_csr = as_csr and not transposed
        self.cells = None if transposed or self.as_csr else _matrix.CellBands(dset, n_threads)

    def iterate(self, path: Path, *, by_genes: bool, progress: bool) -> Iterator[Any]:
        """Consecutive bands; errors reading ``path`` become :class:`~scanpy_loomio.LoomFormatError`."""
        n_major, n_minor = (self.n_genes, self.n_cells) if by_genes else (self.n_cells, self.n_genes)
        chunks = self.dset.chunks or (64, 64)
        chunk = chunks[0 if by_genes != self.transposed else 1]
        rows = max(1, BAND_BYTES // max(1, n_minor * self.dset.dtype.itemsize))
        rows = max(chunk, rows - rows % chunk)
        unit = "gene" if by_genes else "cell"
        with tqdm(total=n_major, desc=f"converting {self.dset.name}", unit=unit, disable=not progress, delay=2) as bar:
            for lo in range(0, n_major, rows):
                hi = min(n_major, lo + rows)
                with converted_read_errors(path):
                    band = self._sparse_band(lo, hi) if self.as_csr else self._band(lo, hi, by_genes=by_genes)
                yield band
                del band
                release_freed_memory()
                bar.update(hi - lo)

    def _band(self, lo: int, hi: int, *, by_genes: bool) -> np.ndarray:
        native = _matrix_dtype(self.dset.dtype, "dense")
        if by_genes:
            block = self.dset[:, lo:hi].T if self.transposed else self.dset[lo:hi, :]
            return np.ascontiguousarray(block, dtype=native)
        if self.cells is not None:
            return self.cells.read(lo, hi)
        return np.ascontiguousarray(self.dset[lo:hi, :], dtype=native)

    def _sparse_band(self, lo: int, hi: int) -> Any:
        """Cells ``lo:hi`` as CSR (cells × genes), as :func:`~scanpy_loomio.read_loom_full` reads them."""
        return read_selection(self.dset, None, np.arange(lo, hi), format="csr", n_threads=self.n_threads)

    def close(self) -> None:
        if self.cells is not None:
            self.cells.close()


class _BandWriter:
    """Appends bands to one element of an ``.h5ad`` file or ``.zarr`` store with anndata's element writers."""

    def __init__(self, group: Any, key: str, fmt: str, dtype: np.dtype, shape: tuple[int, int]) -> None:
        self.group = group
        self.key = key
        self.fmt = fmt
        self.dtype = dtype
        self.shape = shape
        self.done = 0
        self.target: Any = None

    def append(self, band: Any) -> None:
        if sparse.issparse(band):
            self._append_sparse(band)
        else:
            self._append_dense(band)
        self.done += band.shape[1 if self.fmt == "csc" else 0]

    def _append_sparse(self, band: Any) -> None:
        if self.target is None:
            n_cells, n_genes = self.shape
            if n_cells * n_genes >= np.iinfo(np.int32).max:  # more non-zeros than int32 holds may follow
                band = band.copy()
                band.indptr = band.indptr.astype(np.int64)
            write_elem(self.group, self.key, band)
            self.target = sparse_dataset(self.group[self.key])
        else:
            self.target.append(band)

    def _append_dense(self, band: np.ndarray) -> None:
        n_cells, n_genes = self.shape
        if self.target is None:
            chunks = (max(1, min(DENSE_CHUNK_ROWS, n_cells)), max(1, n_genes))
            kwargs: dict[str, Any] = {"chunks": chunks}
            if isinstance(self.group, h5py.Group):
                kwargs["maxshape"] = (None, n_genes)
            write_elem(self.group, self.key, band, dataset_kwargs=kwargs)
            self.target = self.group[self.key]
            return
        stop = self.done + band.shape[0]
        self.target.resize((stop, n_genes))
        self.target[self.done : stop] = band

    def finish(self) -> None:
        """Write an empty matrix when there were no bands (no cells or no genes)."""
        if self.target is not None:
            return
        cls = {"csr": sparse.csr_matrix, "csc": sparse.csc_matrix}.get(self.fmt)
        empty = cls(self.shape, dtype=self.dtype) if cls else np.zeros(self.shape, dtype=self.dtype)
        write_elem(self.group, self.key, empty)
