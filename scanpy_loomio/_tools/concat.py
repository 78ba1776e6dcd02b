"""Concatenating loom files on disk with :func:`anndata.concat`'s meaning, one band of cells at a time.

Annotations (names, columns, embeddings, graphs, ``uns``) are small: they are read without the matrices and merged
by :func:`anndata.concat` itself, so every merge rule is anndata's. What the matrices become (container, dtype,
fill values of an outer join) is found by concatenating one-row stand-ins of each input's matrices, again with
:func:`anndata.concat`. The matrices are then streamed: each band of output cells is built from the matching cells
of the inputs, read a window of chunks at a time, and compressed into the output by the matrix engine.
"""

from __future__ import annotations

import contextlib
import os
import threading
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import anndata
import h5py
import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from scanpy_loomio import _matrix
from scanpy_loomio._compat import named_layers, quiet_anndata
from scanpy_loomio._errors import LoomConcatWarning
from scanpy_loomio._guards import (
    check_file,
    check_read_size,
    converted_read_errors,
    open_read_only,
    resolve_memory_limit,
)
from scanpy_loomio._read.reader import LoomReader, ReadOptions
from scanpy_loomio._record.tags import AbsentMatrixTag, FilledLayerTag, MatrixTag, layer_tag, write_tag
from scanpy_loomio._settings import progress_default
from scanpy_loomio._write.atomic import atomic_target
from scanpy_loomio._write.writer import check_name, missing_layers, plan_write, write_annotations
from scanpy_loomio.conventions import DEFAULT_CONVENTION, Convention, get_convention

__all__ = ["ConcatReport", "concat_loom"]


@dataclass
class ConcatReport:
    """What :func:`concat_loom` wrote and what anndata's merge rules left out.

    Attributes
    ----------
    path
        The file written.
    shape
        ``(n_obs, n_vars)`` of the result.
    inputs
        The input files, in order.
    layers
        The layer keys written (besides ``X``).
    dropped
        Element (``"obs columns"``, ``"var columns"``, ``"obsm"``, ``"layers"``, ``"uns"``, …) → the keys some input
        had that the result does not, by anndata's rules for the options given.
    convention
        The convention written.
    """

    path: Path
    shape: tuple[int, int]
    inputs: list[Path]
    layers: list[str] = field(default_factory=list)
    dropped: dict[str, list[str]] = field(default_factory=dict)
    convention: str = DEFAULT_CONVENTION

    def __str__(self) -> str:
        lines = [
            f"{self.path}: {self.shape[0]} cells × {self.shape[1]} genes from {len(self.inputs)} files "
            f"(convention {self.convention!r}; layers: {', '.join(self.layers) or 'none'})"
        ]
        lines += [f"  left out {element}: {', '.join(map(str, keys))}" for element, keys in self.dropped.items()]
        return "\n".join(lines)


#: Hints for the option that keeps each kind of dropped element.
_KEEP_HINTS = {
    "columns": "join='outer' keeps columns some inputs lack",
    "alt columns": "merge='same', 'unique', 'first' or 'only' keeps them",
    "m": "join='outer' keeps embeddings some inputs lack",
    "alt m": "merge='same', 'unique', 'first' or 'only' keeps them",
    "p": "pairwise=True keeps them",
    "alt p": "merge='same', 'unique', 'first' or 'only' keeps them",
    "layers": "join='outer' keeps layers some inputs lack",
    "uns": "uns_merge='same', 'unique', 'first' or 'only' keeps it",
    "raw": "only some inputs have .raw",
}


class _Input:
    """One open input: its annotations (read without matrices) and where its matrices are."""

    def __init__(self, path: Path, file: h5py.File, options: ReadOptions) -> None:
        self.path = path
        self.file = file
        datasets = check_file(file, path)
        self.reader = LoomReader(file, path, options)
        n_obs, n_vars = self.reader.shape
        check_read_size(
            file,
            path,
            datasets,
            n_obs=n_obs,
            n_vars=n_vars,
            sparse=True,
            dtype=None,
            matrices=False,
            limit=resolve_memory_limit("available"),
        )
        self.shell = self.reader.read()  # options.matrices is False: everything but X and layers
        x_dset, layer_dsets, _ = self.reader.matrix_sources()
        self.sources: dict[str | None, h5py.Dataset] = {None: x_dset, **layer_dsets}
        self.absent = {key for key, dset in self.sources.items() if isinstance(layer_tag(dset), AbsentMatrixTag)}

    def stand_in(self, axis: int) -> AnnData:
        """A one-row (``axis=0``) or one-column stand-in with this input's matrix containers and dtypes."""
        n_obs, n_vars = self.shell.shape
        shape = (1, n_vars) if axis == 0 else (n_obs, 1)
        values = {key: self.reader.read_layer(dset, template=shape) for key, dset in self.sources.items()}
        obs = pd.DataFrame(index=["0"]) if axis == 0 else pd.DataFrame(index=self.shell.obs_names)
        var = pd.DataFrame(index=self.shell.var_names) if axis == 0 else pd.DataFrame(index=["0"])
        with quiet_anndata():
            return AnnData(
                X=values.pop(None), obs=obs, var=var, layers={k: v for k, v in values.items() if v is not None}
            )

    def codec_dtype(self, key: str | None) -> np.dtype | None:
        tag = layer_tag(self.sources[key])
        dtype = tag.dtype if isinstance(tag, MatrixTag) else None
        return None if dtype is None else np.dtype(dtype)


class _Window:
    """Cells of one input layer as dense rows of the result dtype, read a chunk-aligned window at a time."""

    def __init__(
        self,
        dset: h5py.Dataset,
        codec_dtype: np.dtype | None,
        dtype: np.dtype,
        *,
        transposed: bool = False,
        n_threads: int | None = None,
    ) -> None:
        self.dset = dset
        self.codec_dtype = codec_dtype
        self.dtype = dtype
        self.transposed = transposed  # stored cells × genes
        self.n_threads = n_threads
        self.bands: _matrix.CellBands | None = None
        self.n_genes, self.n_cells = dset.shape[::-1] if transposed else dset.shape
        self.chunk = (dset.chunks[0 if transposed else 1] if dset.chunks else 64) or 64
        self.width = _matrix.band_width(self.n_genes, max(dtype.itemsize, dset.dtype.itemsize), self.chunk)
        self.start = self.stop = 0
        self.values = np.empty((0, self.n_genes), dtype=dtype)

    def _cells(self, selection: slice | np.ndarray) -> np.ndarray:
        """Stored values of cells ``selection`` (a slice or increasing positions), cells × genes."""
        if self.transposed:
            return self.dset[selection, :]
        if isinstance(selection, slice):
            if self.bands is None:
                self.bands = _matrix.CellBands(self.dset, self.n_threads)
            return self.bands.read(selection.start, selection.stop)
        return self.dset[:, selection].T

    def close(self) -> None:
        """Free the window and the fast path's file descriptor (reading again reopens them)."""
        if self.bands is not None:
            self.bands.close()
            self.bands = None
        self.values = np.empty((0, self.n_genes), dtype=self.dtype)
        self.start = self.stop = 0

    def _convert(self, raw: np.ndarray) -> np.ndarray:
        # as reading gives it (the recorded dtype), then as anndata.concat casts it
        values = np.ascontiguousarray(raw)
        if self.codec_dtype is not None and values.dtype != self.codec_dtype:
            values = values.astype(self.codec_dtype)
        return values.astype(self.dtype, copy=False)

    def rows(self, index: np.ndarray) -> np.ndarray:
        """Cells ``index`` (input positions) as a ``len(index)`` × genes array."""
        if index.size == 0:
            return np.empty((0, self.n_genes), dtype=self.dtype)
        lo, hi = int(index.min()), int(index.max()) + 1
        if hi - lo > max(self.width, 4 * index.size):  # scattered cells: read just those
            unique, inverse = np.unique(index, return_inverse=True)
            return self._convert(self._cells(unique))[inverse]
        if not (self.start <= lo and hi <= self.stop):
            start = lo - lo % self.chunk
            stop = max(hi, start + self.width)
            stop = min(self.n_cells, -(-stop // self.chunk) * self.chunk)
            self.values = None  # free the old window first
            self.values = self._convert(self._cells(slice(start, stop)))
            self.start, self.stop = start, stop
        if index[-1] - index[0] + 1 == index.size and (index.size < 2 or bool(np.all(np.diff(index) == 1))):
            return self.values[lo - self.start : hi - self.start]
        return self.values[index - self.start]

    def raw_chunks(self, start: int, stop: int, target: h5py.Dataset, shift: int) -> list | None:
        """Stored chunks of cells ``start:stop``, when they can be copied into ``target`` as they are."""
        if self.transposed or (self.codec_dtype is not None and self.codec_dtype != self.dset.dtype):
            return None
        if self.dtype != self.dset.dtype:
            return None
        if self.bands is None:
            self.bands = _matrix.CellBands(self.dset, self.n_threads)
        return self.bands.raw_chunks(start, stop, target, shift)


class _ConcatBands:
    """The concatenated matrix, built one band of output cells at a time when sliced (``matrix[lo:hi]``)."""

    def __init__(
        self,
        axis: int,
        parts: list[tuple[_Window | None, np.ndarray, Any]],
        sizes: list[int],
        shape: tuple[int, int],
        dtype: np.dtype,
    ) -> None:
        # parts: per input, (window, or None when the input lacks the layer; positions of the other axis's output
        # entries in the input, -1 where absent; fill value of those). sizes: the inputs' lengths along ``axis``.
        self.axis = axis
        self.parts = parts
        self.shape = shape
        self.ndim = 2
        self.result_dtype = dtype
        self.dtype = _stored_dtype(dtype)
        self.lock = threading.Lock()
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)

    def task_boundaries(self) -> list[int]:
        """Where one input's cells end and the next one's begin (the writer does not let a task straddle them)."""
        return [int(x) for x in self.offsets[1:-1]] if self.axis == 0 else []

    def raw_chunks(self, lo: int, hi: int, target: h5py.Dataset) -> list | None:
        """Output cells ``lo:hi`` as stored chunks of one input, copied without inflating; ``None`` if impossible.

        Possible when one input holds them all, with the output's genes in its order, stored as the output is.
        """
        if self.axis != 0:
            return None
        i = int(np.searchsorted(self.offsets, lo, side="right")) - 1
        if i >= len(self.parts) or hi > self.offsets[i + 1]:
            return None
        window, positions, _ = self.parts[i]
        if (
            window is None
            or positions.size != window.n_genes
            or not np.array_equal(positions, np.arange(positions.size))
        ):
            return None
        with self.lock:
            offset = int(self.offsets[i])
            return window.raw_chunks(lo - offset, hi - offset, target, offset)

    def __getitem__(self, key: slice) -> np.ndarray:
        lo, hi, _ = key.indices(self.shape[0])
        with self.lock:
            return self._band(lo, hi).astype(self.dtype, copy=False)

    def _band(self, lo: int, hi: int) -> np.ndarray:
        n_genes = self.shape[1]
        if self.axis == 0:
            blocks = []
            for i, (window, positions, fill) in enumerate(self.parts):
                a, b = max(lo, int(self.offsets[i])), min(hi, int(self.offsets[i + 1]))
                if b <= lo and window is not None:
                    window.close()  # done with this input: free its window
                if a >= b:
                    continue
                local = np.arange(a - self.offsets[i], b - self.offsets[i])
                blocks.append(self._placed(window, local, positions, fill, n_genes))
            if len(blocks) == 1:
                return blocks[0]
            return np.concatenate(blocks, axis=0) if blocks else np.empty((0, n_genes), dtype=self.result_dtype)
        out = np.empty((hi - lo, n_genes), dtype=self.result_dtype)
        for i, (window, positions, fill) in enumerate(self.parts):
            g0, g1 = int(self.offsets[i]), int(self.offsets[i + 1])
            cells = positions[lo:hi]
            present = cells >= 0
            block = out[:, g0:g1]
            if window is None or not present.all():
                block[...] = fill
            if window is not None and present.any():
                block[present] = window.rows(cells[present])
        return out

    def _placed(
        self, window: _Window | None, cells: np.ndarray, positions: np.ndarray, fill: Any, n_genes: int
    ) -> np.ndarray:
        if window is None:
            return np.full((cells.size, n_genes), fill, dtype=self.result_dtype)
        rows = window.rows(cells)
        if positions.size == rows.shape[1] and np.array_equal(positions, np.arange(positions.size)):
            return rows
        out = np.full((cells.size, n_genes), fill, dtype=self.result_dtype)
        present = positions >= 0
        out[:, present] = rows[:, positions[present]]
        return out


def _fill_values(result: Any, inputs: list[_Input], key: str | None, positions: list[np.ndarray], axis: int) -> list:
    """The value an outer join puts where input ``i`` has nothing, read off the concatenated stand-ins."""
    out = []
    for i, (inp, pos) in enumerate(zip(inputs, positions, strict=True)):
        missing = np.flatnonzero(pos < 0)
        if key in inp.sources and key not in inp.absent and missing.size == 0:
            out.append(0)
            continue
        j = int(missing[0]) if missing.size else 0
        value = result[i, j] if axis == 0 else result[j, i]
        out.append(np.asarray(value).item() if not sparse.issparse(value) else value.toarray().item())
    return out


def _dropped(inputs: list[_Input], out: AnnData, result_layers: list, axis_name: str, alt_name: str, label: Any):
    found: dict[str, list[str]] = {}

    def lost(element: str, before: list, after: Any) -> None:
        keys = [k for k in dict.fromkeys(before) if k not in after and k != label]
        if keys:
            found[element] = keys

    shells = [inp.shell for inp in inputs]
    lost(f"{axis_name} columns", [c for s in shells for c in getattr(s, axis_name).columns], getattr(out, axis_name))
    lost(f"{alt_name} columns", [c for s in shells for c in getattr(s, alt_name).columns], getattr(out, alt_name))
    for suffix in ("m", "p"):
        for name in (axis_name, alt_name):
            lost(
                f"{name}{suffix}",
                [k for s in shells for k in getattr(s, f"{name}{suffix}")],
                getattr(out, f"{name}{suffix}"),
            )
    lost("layers", [k for inp in inputs for k in inp.sources if k is not None], result_layers)
    lost("uns", [k for s in shells for k in s.uns], out.uns)
    if any(s.raw is not None for s in shells) and out.raw is None:
        found["raw"] = ["raw"]
    return found


def _hint(element: str, axis_name: str) -> str:
    if element == "layers" or element == "uns" or element == "raw":
        return _KEEP_HINTS[element]
    if element == f"{axis_name} columns":
        return _KEEP_HINTS["columns"]
    if element.endswith("columns"):
        return _KEEP_HINTS["alt columns"]
    kind = element[-1]
    return _KEEP_HINTS[kind if element.startswith(axis_name) else f"alt {kind}"]


def concat_loom(
    in_files: Sequence[str | os.PathLike[str]] | Mapping[str, str | os.PathLike[str]],
    out_file: str | os.PathLike[str],
    *,
    axis: Literal["obs", "var", 0, 1] = "obs",
    join: Literal["inner", "outer"] = "inner",
    merge: str | None = None,
    uns_merge: str | None = None,
    label: str | None = None,
    keys: Sequence[str] | None = None,
    index_unique: str | None = None,
    fill_value: Any = None,
    pairwise: bool = False,
    var_key: str | None = None,
    convention: str | Convention | None = None,
    lossy: Literal["raise", "warn"] = "raise",
    fill_missing_layers: bool = False,
    chunks: tuple[int, int] = _matrix.DEFAULT_CHUNKS,
    compression_level: int = _matrix.DEFAULT_COMPRESSION_LEVEL,
    n_threads: int | None = None,
    progress: bool | None = None,
) -> ConcatReport:
    """Concatenate loom files into one, as :func:`anndata.concat` concatenates AnnData objects, without loading them.

    The result, read with :func:`~scanpy_loomio.read_loom_full`, equals ``anndata.concat`` of the inputs read with
    :func:`~scanpy_loomio.read_loom_full` (with ``var_names=var_key``), with the same options. Only the annotations
    are held in memory; the matrices are copied a band of cells at a time. The output is written under a temporary
    name and moved into place when complete.

    Parameters
    ----------
    in_files
        The loom files, in order; a mapping ``{key: path}`` also gives the ``keys``.
    out_file
        The loom file to write; an existing file is replaced only when the write succeeds.
    axis
        ``"obs"`` (``0``): stack the cells; ``"var"`` (``1``): stack the genes.
    join
        ``"inner"``: keep the genes (cells for ``axis="var"``) every input has; ``"outer"``: keep all of them,
        filling the missing values with ``fill_value``.
    merge, uns_merge, label, keys, index_unique, fill_value, pairwise
        As for :func:`anndata.concat`: how ``var`` (``obs``) annotations and ``uns`` are merged, the column naming
        each cell's input and its values, the separator appending the key to each name, the value of an outer
        join's missing entries (anndata's default: 0 for sparse matrices, NaN for dense ones), and whether graphs
        are kept.
    var_key
        Row attribute to align genes on instead of the gene names (``"Accession"`` for velocyto and loompy files);
        it becomes the ``var_names`` of the result.
    convention
        Convention written; ``None``: the inputs' convention when they share one, else ``"loompy"``.
    lossy, fill_missing_layers, chunks, compression_level, n_threads, progress
        As for :func:`~scanpy_loomio.write_loom_full`.

    Returns
    -------
    A :class:`ConcatReport`. Anything anndata's merge rules leave out is also named in a
    :class:`~scanpy_loomio.LoomConcatWarning`, with the option that keeps it.

    Examples
    --------
    >>> import warnings
    >>> import anndata as ad
    >>> import numpy as np
    >>> import scanpy_loomio
    >>> for i in range(2):
    ...     a = ad.AnnData(np.eye(3, dtype=np.float32) * (i + 1))
    ...     a.obs_names = [f"s{i}_c{j}" for j in range(3)]
    ...     a.var_names = ["g1", "g2", "g3"]
    ...     scanpy_loomio.write_loom_full(f"sample{i}.loom", a)
    >>> report = scanpy_loomio.concat_loom(["sample0.loom", "sample1.loom"], "both.loom", label="sample")
    >>> report.shape
    (6, 3)
    >>> scanpy_loomio.read_loom_full("both.loom").obs["sample"].tolist()
    ['0', '0', '0', '1', '1', '1']
    """
    if isinstance(in_files, Mapping):
        if keys is not None:
            msg = "concat_loom: give the keys either as the mapping's keys or as keys=, not both"
            raise TypeError(msg)
        keys = list(in_files.keys())
        paths = [Path(p) for p in in_files.values()]
    elif isinstance(in_files, str | os.PathLike):
        msg = "concat_loom(in_files, out_file): in_files is one path; pass a list of loom files"
        raise TypeError(msg)
    else:
        paths = [Path(p) for p in in_files]
    if not paths:
        msg = "concat_loom: no input files"
        raise ValueError(msg)
    if axis not in ("obs", "var", 0, 1):
        msg = f"axis={axis!r}; expected 'obs' (0) or 'var' (1)"
        raise ValueError(msg)
    if join not in ("inner", "outer"):
        msg = f"join={join!r}; expected 'inner' or 'outer'"
        raise ValueError(msg)
    ax = 0 if axis in ("obs", 0) else 1
    axis_name, alt_name = ("obs", "var") if ax == 0 else ("var", "obs")
    _matrix.check_matrix_options(chunks=chunks, compression_level=compression_level, where=os.fspath(out_file))
    options = ReadOptions(var_names=var_key, matrices=False)
    out_path = Path(out_file)
    with contextlib.ExitStack() as stack:
        inputs: list[_Input] = []
        for path in paths:
            file = stack.enter_context(open_read_only(path))
            with converted_read_errors(path):
                inputs.append(_Input(path, file, options))
        shells = [inp.shell for inp in inputs]
        concat_options = {"axis": ax, "join": join, "fill_value": fill_value}
        out = anndata.concat(
            shells,
            merge=merge,
            uns_merge=uns_merge,
            label=label,
            keys=keys,
            index_unique=index_unique,
            pairwise=pairwise,
            **concat_options,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # anndata's warnings were given for the annotations above
            result = anndata.concat([inp.stand_in(ax) for inp in inputs], **concat_options)
        alt_index = getattr(out, f"{alt_name}_names")
        positions = [getattr(inp.shell, f"{alt_name}_names").get_indexer(alt_index) for inp in inputs]
        result_layers = list(named_layers(result))
        conv = _output_convention(convention, inputs, result_layers)
        dropped = _dropped(inputs, out, result_layers, axis_name, alt_name, label)
        if dropped:
            warnings.warn(
                "concat_loom: by anndata's merge rules the result leaves out "
                + "; ".join(f"{element} {keys_!r} ({_hint(element, axis_name)})" for element, keys_ in dropped.items())
                + ".",
                LoomConcatWarning,
                stacklevel=2,
            )
        plan = plan_write(out, conv, policy=lossy, fill_missing_layers=True)
        plan.layers = [(check_name(k, f"layers[{k!r}]"), k) for k in result_layers]
        plan.metadata.layers = [(k, n) for n, k in plan.layers]
        plan.filled_layers = missing_layers(result, conv, fill=fill_missing_layers)
        write_options = {
            "chunks": tuple(chunks),
            "compression_level": int(compression_level),
            "n_threads": n_threads,
            "progress": progress_default(progress),
        }
        with atomic_target(out_path) as tmp, h5py.File(tmp, "w") as target:
            _write_concat(target, "matrix", None, result.X, inputs, positions, ax, out.shape, write_options)
            layers_group = target.create_group("layers")
            for name, key in plan.layers:
                _write_concat(
                    layers_group, name, key, result.layers[key], inputs, positions, ax, out.shape, write_options
                )
            present = [result.layers[k] for k in result_layers] + ([result.X] if result.X is not None else [])
            fill_dtype = _stored_dtype(present[0].dtype) if present else np.dtype(np.float32)
            for name in plan.filled_layers:
                dset = _matrix.write_matrix(
                    layers_group, name, None, shape=out.shape, dtype=fill_dtype, **write_options
                )
                write_tag(dset, FilledLayerTag())
            write_annotations(target, plan)
    return ConcatReport(out_path, out.shape, paths, result_layers, dropped, conv.name)


def _stored_dtype(dtype: np.dtype) -> np.dtype:
    return np.dtype(np.uint8) if np.dtype(dtype).kind == "b" else np.dtype(dtype)


def _output_convention(convention: str | Convention | None, inputs: list[_Input], layers: list[str]) -> Convention:
    """The convention asked for; else the inputs' when they share one whose needed layers the result has."""
    if convention is not None:
        return get_convention(convention)
    found = {inp.reader.convention.name for inp in inputs}
    shared = inputs[0].reader.convention
    if len(found) == 1 and all(name in layers for name in shared.required_layers):
        return shared
    return get_convention(DEFAULT_CONVENTION)


def _write_concat(
    group: h5py.Group,
    name: str,
    key: str | None,
    template: Any,
    inputs: list[_Input],
    positions: list[np.ndarray],
    axis: int,
    shape: tuple[int, int],
    options: dict[str, Any],
) -> None:
    """Write one output matrix (``key`` ``None``: ``X``) band by band; ``template`` is its concatenated stand-in."""
    if template is None:
        dset = _matrix.write_matrix(group, name, None, shape=shape, dtype=np.dtype(np.float32), **options)
        write_tag(dset, AbsentMatrixTag())
        return
    dtype = np.dtype(template.dtype)
    fills = _fill_values(template, inputs, key, positions, axis)
    parts = []
    for inp, pos, fill in zip(inputs, positions, fills, strict=True):
        window = None
        if key in inp.sources and key not in inp.absent:
            window = _Window(
                inp.sources[key],
                inp.codec_dtype(key),
                dtype,
                transposed=inp.reader.transposed,
                n_threads=options.get("n_threads"),
            )
        parts.append((window, pos, fill))
    sizes = [inp.shell.shape[axis] for inp in inputs]
    bands = _ConcatBands(axis, parts, sizes, shape, dtype)
    try:
        dset = _matrix.write_matrix(group, name, bands, **options)
    finally:
        for window, _, _ in parts:
            if window is not None:
                window.close()
    write_tag(dset, MatrixTag.of(template))
