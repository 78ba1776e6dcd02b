"""The read path: open read-only, find the layout and convention, build the AnnData.

Values always come from the loom datasets. Exact types, names and key mappings come from this package's record
and the codec attributes on datasets when present; a file without them is read as plain loom in the convention
detected from its attribute names.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
from anndata import AnnData

from scanpy_loomio._compat import quiet_anndata
from scanpy_loomio._elements.globals import decode_global
from scanpy_loomio._elements.sidecar import sidecar_get
from scanpy_loomio._errors import LoomReadWarning
from scanpy_loomio._guards import (
    MemoryLimit,
    check_file,
    check_read_size,
    converted_read_errors,
    hdf5_object,
    open_read_only,
    resolve_memory_limit,
)
from scanpy_loomio._matrix.pool import resolve_threads
from scanpy_loomio._matrix.tiles import load_kernels
from scanpy_loomio._read.axes import AxesReader
from scanpy_loomio._read.base import ReadOptions
from scanpy_loomio._read.beside import ReadsBeside
from scanpy_loomio._read.foreign import decode_foreign_global
from scanpy_loomio._read.selection import prepare_stored_matrix, read_stored_matrix, read_subset
from scanpy_loomio._record.record import METADATA_KEY, RESERVED_GLOBALS
from scanpy_loomio._record.tags import FilledLayerTag, layer_tag
from scanpy_loomio._settings import progress_default
from scanpy_loomio._spec.rules import layer_violations, raise_first
from scanpy_loomio.conventions import Convention, get_convention


class LoomReader(AxesReader):
    """Reads one open loom file into an AnnData."""

    # -- matrices --------------------------------------------------------------------------------------------
    def read_layer(
        self,
        dset: h5py.Dataset,
        *,
        dtype: str | None = None,
        template: tuple[int, int] | None = None,
        cells: np.ndarray | None = None,
        genes: np.ndarray | None = None,
    ) -> Any:
        """A matrix as stored (its recorded container and dtype), cast to ``dtype`` when given.

        ``template``: nothing is read; an all-zero matrix of this shape, of the container and dtype reading would
        give (what :func:`scanpy_loomio.concat_loom` plans with). ``cells``/``genes``: increasing positions to read
        (``None``: all).
        """
        return read_stored_matrix(
            dset,
            sparse=self.options.sparse,
            transposed=self.transposed,
            dtype=dtype,
            template=template,
            cells=cells,
            genes=genes,
            n_threads=self.options.n_threads,
            progress=self.options.progress,
        )

    def matrix_sources(self, *, choose_x: bool = True) -> tuple[h5py.Dataset, dict[str, h5py.Dataset], str | None]:
        """The dataset read as ``X``, the datasets read as layers by key (in reading order), and the X layer name.

        ``choose_x=False`` reads ``/matrix`` as ``X`` without looking at ``X_name``.
        """
        self.shape  # noqa: B018 - checks /matrix
        layers_group = self.file.get("layers")
        names: list[str] = list(layers_group.keys()) if layers_group is not None else []
        raise_first(layer_violations(self.file, self.file["matrix"].shape), self.path)
        # all-zero layers written only because the target tool needs them (fill_missing_layers=True)
        names = [n for n in names if not isinstance(layer_tag(layers_group[n]), FilledLayerTag)]
        x_name = self._x_name(names) if choose_x else None
        layers: dict[str, h5py.Dataset] = {}
        if x_name:
            # as anndata's read_loom: the chosen layer is X (and stays a layer), /matrix becomes layers["matrix"]
            X = layers_group[x_name]
            layers["matrix"] = self.file["matrix"]
        else:
            X = self.file["matrix"]
        pairs = self.metadata.layers if self.metadata else []
        order = [name for _, name in pairs]
        recorded = {name: key for key, name in pairs}
        for name in [n for n in order if n in names] + [n for n in names if n not in order]:
            layers[recorded.get(name, name)] = layers_group[name]
        return X, layers, x_name

    def matrices_to_read(self) -> list[tuple[str | None, h5py.Dataset, str | None]]:
        """``(key, dataset, dtype)`` of ``X`` (key ``None``, cast to the dtype asked for) and of each layer."""
        x_dset, sources, _ = self.matrix_sources()
        return [(None, x_dset, self.options.dtype), *((key, dset, None) for key, dset in sources.items())]

    def read_matrices(self) -> tuple[Any, dict[Any, Any]]:
        if not self.options.matrices:
            self.matrix_sources(choose_x=False)  # the same checks
            return None, {}
        layers = {}
        for key, dset, dtype in self.matrices_to_read():
            with hdf5_object(dset):
                layers[key] = self.read_layer(dset, dtype=dtype)
        return layers.pop(None), layers

    def start_matrices(self, reads: ReadsBeside) -> None:
        """Hand ``X`` (key ``None``) and the layers to ``reads``: located here, read beside where HDF5 is not needed."""
        for key, dset, dtype in self.matrices_to_read():
            with hdf5_object(dset):
                read, needs_hdf5 = prepare_stored_matrix(
                    dset,
                    sparse=self.options.sparse,
                    transposed=self.transposed,
                    dtype=dtype,
                    n_threads=self.options.n_threads,
                    progress=self.options.progress,
                    stop=reads.stop,
                )
            reads.add(key, read, beside=not needs_hdf5, hdf5_path=dset.name)

    def _x_name(self, layer_names: list[str]) -> str | None:
        """The layer read as ``X``: only one asked for, by ``X_name`` or by a convention passed as ``convention=``."""
        x_name = self.options.X_name
        asked = "X_name"
        if x_name is None and self.options.convention is not None and self.metadata is None:
            x_name, asked = self.options.convention.x_layer, f"convention {self.options.convention.name!r}"
        if not x_name:  # None, or "" which anndata's read_loom takes for /matrix
            return None
        if x_name not in layer_names:
            warnings.warn(
                f"{self.path}: {asked} asks for layer {x_name!r} as X, but /layers has {sorted(layer_names) or 'none'}; "
                "X is /matrix. Pass X_name=None to read /matrix without this warning.",
                LoomReadWarning,
                stacklevel=5,
            )
            return None
        return x_name

    # -- uns / raw -------------------------------------------------------------------------------------------
    def read_uns(self) -> dict[str, Any]:
        meta = self.metadata
        sidecar_uns = sidecar_get(self.file, "uns") if meta else None
        sidecar_uns = sidecar_uns or {}
        uns: dict[str, Any] = {}
        if meta:
            for key in meta.uns_keys:
                if key in meta.uns_record:
                    tag, value = meta.uns_record[key]
                    uns[key] = decode_global(value, tag)
                elif key in meta.uns_globals:
                    if key in self.globals:
                        uns[key] = decode_global(self.globals[key], meta.uns_globals[key])
                elif key in sidecar_uns:
                    uns[key] = sidecar_uns[key]
        skip = RESERVED_GLOBALS | set(meta.tool_globals) if meta else {METADATA_KEY}
        for key, value in self.globals.items():
            if key in uns or key in skip or (meta and key in meta.uns_globals):
                continue
            uns[key] = self._foreign_global(key, value)
        for key, value in self.foreign_uns.items():
            uns.setdefault(key, value)
        return uns

    def _foreign_global(self, key: str, value: Any) -> Any:
        value = decode_foreign_global(key, value, self.convention)
        if isinstance(value, str):
            value = self._bytes_text("uns", {key: np.array([value], dtype=object)})[key][0]
        return value

    def read_raw(self) -> dict[str, Any] | None:
        if not (self.metadata and self.metadata.raw):
            return None
        raw = sidecar_get(self.file, "raw")
        raw_x = raw.X if isinstance(raw, AnnData) else (raw or {}).get("X")
        if raw is None or self._aligned(raw_x, self.shape[0], "raw") is None:
            return None
        return raw

    # -- all -------------------------------------------------------------------------------------------------
    def read(self) -> AnnData:
        n_obs, n_vars = self.shape
        if self.transposed:
            warnings.warn(
                f"{self.path}: /matrix is stored cells × genes {self.file['matrix'].shape} (the attributes list "
                f"{n_obs} cells and {n_vars} genes), not genes × cells as loom requires; read it turned round. "
                "Other loom readers will not; write_loom_full writes it the loom way.",
                LoomReadWarning,
                stacklevel=4,
            )
        # with more than one thread, the matrices' chunks are read in another one while this one reads the rest
        beside = ReadsBeside() if self.options.matrices and resolve_threads(self.options.n_threads) > 1 else None
        with beside or nullcontext():
            if beside is None:
                X, layers = self.read_matrices()
            else:
                self.start_matrices(beside)
            obs, obsm, obsp = self.read_axis("obs", n_obs)
            var, varm, varp = self.read_axis("var", n_vars)
            uns = self.read_uns()
            if self.options.cleanup:
                for axis, frame in (("obs", obs), ("var", var)):
                    collapsed = _collapse_constant_columns(frame)
                    if collapsed:
                        uns[f"loom-{axis}"] = collapsed
            raw = self.read_raw()
            if beside is not None:
                layers = beside.results()
                X = layers.pop(None)
        with quiet_anndata():
            adata = AnnData(
                X=X,
                obs=obs,
                var=var,
                uns=uns,
                obsm=obsm,
                varm=varm,
                obsp=obsp,
                varp=varp,
                layers=layers,
                raw=raw,
                shape=(n_obs, n_vars) if X is None else None,
            )
        return adata


def _collapse_constant_columns(frame: pd.DataFrame) -> dict[str, Any]:
    """Remove the columns holding one value and return them as ``{column: value}`` (anndata's ``cleanup=True``)."""
    collapsed = {}
    for key in list(frame.columns):
        if len(frame[key].unique()) == 1:
            collapsed[key] = frame[key].iloc[0]
            del frame[key]
    return collapsed


def read_loom_full(
    filename: str | os.PathLike[str],
    *,
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
    matrices: bool = True,
    repair_bytes_text: bool = False,
    n_threads: int | None = None,
    progress: bool | None = None,
    allow_external: bool = False,
    memory_limit: MemoryLimit = "available",
) -> AnnData:
    """Read a loom file into an AnnData, exactly as it was written by :func:`write_loom_full`.

    Files written by other tools are read in the convention detected from what they contain (cell and gene
    names from ``CellID``/``Gene``, ``obs_names``/``var_names``, ``colnames``/``rownames``, …, and each tool's
    markers; see :mod:`scanpy_loomio.conventions`); ``convention`` forces one. anndata's ``read_loom`` keyword
    arguments are accepted with the same meaning, except that no layer is promoted to ``X`` unless ``X_name`` asks
    for it (anndata's reader silently makes a ``spliced`` layer its ``X``).

    Parameters
    ----------
    filename
        Path of the ``.loom`` file. It is opened read-only and never modified.
    obs, var
        Read only these cells / genes: a boolean mask, integer positions, a slice or a list of names, as
        ``adata[obs, var]`` takes them (``None``: all). The result equals ``read_loom_full(filename)[obs, var]`` as
        an actual AnnData (not a view), and only the chunks of ``X`` and the layers that hold the selection are read.
        See :doc:`/out-of-core`.
    convention
        Name of a convention in :data:`scanpy_loomio.conventions.CONVENTIONS`, or a
        :class:`~scanpy_loomio.conventions.Convention`; ``None`` detects it.
    X_name
        Loom layer to use as ``X`` (it also stays a layer); ``/matrix`` then becomes ``layers["matrix"]``.
        ``None`` or ``""``: ``/matrix``.
        A name the file has no layer for warns and reads ``/matrix``.
    obs_names, var_names
        Column/row attribute holding the cell/gene names, overriding the file's record and the convention (an
        attribute the file lacks warns and is ignored). The attribute is not kept as a column.
    obsm_mapping, varm_mapping
        ``{key: [attribute, ...]}``: 1-D attributes to stack into an ``obsm``/``varm`` entry.
    sparse
        Read matrices of files without a record of their format as CSR (``True``) or dense arrays.
    cleanup
        As anndata's ``read_loom``: move every ``obs``/``var`` column holding a single value into
        ``uns['loom-obs']``/``uns['loom-var']`` (``{column: value}``).
    dtype
        Cast ``X`` to this dtype (as anndata's ``read_loom``; its default there is ``float32``); ``None`` keeps the
        stored (or recorded) dtype. Layers always keep theirs.
    matrices
        ``False`` skips ``X`` and layers (reads only names, annotations, embeddings, graphs and ``uns``).
    repair_bytes_text
        Turn loompy 3's ``"b'...'"`` text back into the original text.
    n_threads
        Threads used to decompress; ``None`` uses every available core. With more than one, the matrices' chunks
        are read in a thread of their own while the annotations are read.
    progress
        Show a progress bar; ``None`` follows scanpy's verbosity.
    allow_external
        Follow HDF5 external links and read virtual or externally stored datasets whose data lives in other files.
        Off by default, so a file cannot make the reader open other files; a file that needs it raises
        :class:`~scanpy_loomio.LoomFormatError` naming the link.
    memory_limit
        Refuse, before allocating anything, a read that needs more memory than this many bytes, or a matrix that
        declares more empty space than this: ``"available"`` (the memory free now), a number of bytes, or ``None``
        to read whatever the file declares.

    Raises
    ------
    LoomFormatError
        When the file is not a loom file that can be read, links outside itself, or needs more memory than
        ``memory_limit``; the message names the HDF5 path and the problem. A file that is not HDF5 at all (empty,
        text, truncated) raises an error that is both a ``LoomFormatError`` and an ``OSError``.
    OSError
        When the file cannot be opened at all (missing, a folder, permission denied).

    Examples
    --------
    >>> import scanpy as sc
    >>> import scanpy_loomio
    >>> scanpy_loomio.write_loom_full("pbmc.loom", sc.datasets.pbmc68k_reduced())
    >>> adata = scanpy_loomio.read_loom_full("pbmc.loom")
    >>> adata.obs["louvain"].dtype.name
    'category'

    Only some cells and genes:

    >>> b_cells = adata.obs["bulk_labels"] == "CD19+ B"
    >>> part = scanpy_loomio.read_loom_full("pbmc.loom", obs=b_cells, var=["CD79A", "MS4A1"])
    >>> part.shape
    (95, 2)
    """
    if isinstance(filename, AnnData):
        msg = "read_loom_full(filename): got an AnnData; pass the path of a .loom file."
        raise TypeError(msg)
    path = Path(filename)
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
        matrices=matrices,
        repair_bytes_text=repair_bytes_text,
        n_threads=n_threads,
        progress=progress_default(progress),
    )
    limit = resolve_memory_limit(memory_limit)
    if matrices:
        load_kernels()  # the matrices need them; loaded first, the checks of text storage use them too
    with _open_read_only(path) as file, converted_read_errors(path):
        datasets = check_file(file, path, allow_external=allow_external)
        reader = LoomReader(file, path, options)
        n_obs, n_vars = reader.shape
        whole = obs is None and var is None
        check_read_size(  # a subset read holds the annotations whole, and of the matrices only the selection
            file,
            path,
            datasets,
            n_obs=n_obs,
            n_vars=n_vars,
            sparse=sparse,
            dtype=dtype,
            matrices=matrices and whole,
            limit=limit,
        )
        return reader.read() if whole else read_subset(reader, obs, var)


def _open_read_only(path: Path) -> h5py.File:
    # checks that it is a regular HDF5 file first; opens without file locking (see docs/safety.md)
    return open_read_only(path)


__all__ = ["read_loom_full"]
