"""Concatenating loom files on disk with :func:`anndata.concat`'s meaning, one band of cells at a time.

Annotations (names, columns, embeddings, graphs, ``uns``) are small: they are read without the matrices and merged
by :func:`anndata.concat` itself, so every merge rule is anndata's. What the matrices become (container, dtype,
fill values of an outer join) is found by concatenating one-row stand-ins of each input's matrices, again with
:func:`anndata.concat`. The matrices are then streamed: each band of output cells is built from the matching cells
of the inputs, read a window of chunks at a time, and compressed into the output by the matrix engine.

Modules: ``inputs`` (the inputs and their stand-ins), ``report`` (what was written and left out) and ``bands``
(the matrix streaming); this one checks the options and runs the steps.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import anndata
import h5py
import numpy as np
import pandas as pd

from scanpy_loomio import _matrix
from scanpy_loomio._compat import named_layers
from scanpy_loomio._errors import LoomConcatWarning
from scanpy_loomio._guards import converted_read_errors, open_read_only
from scanpy_loomio._read.reader import ReadOptions
from scanpy_loomio._read.selection import repeated_examples
from scanpy_loomio._record.tags import FilledLayerTag, write_tag
from scanpy_loomio._settings import progress_default
from scanpy_loomio._tools.concat.bands import WriteOptions, stored_dtype, write_concat
from scanpy_loomio._tools.concat.inputs import Input, output_convention
from scanpy_loomio._tools.concat.report import ConcatReport, keep_hint, left_out
from scanpy_loomio._write.atomic import atomic_target
from scanpy_loomio._write.plan import check_name, missing_layers, plan_write
from scanpy_loomio._write.writer import write_annotations
from scanpy_loomio.conventions import Convention

__all__ = ["ConcatReport", "concat_loom"]


def _repeated_names_error(err: Exception, inputs: list[Input], alt_name: str) -> pd.errors.InvalidIndexError | None:
    """The error ``err`` of anndata, when names repeat on the axis the inputs are aligned on, with the files and the fix.

    ``None`` when no input's names repeat: ``err`` is about something else.
    """
    repeated = []
    for inp in inputs:
        names = getattr(inp.shell, f"{alt_name}_names")
        if not names.is_unique:
            repeated.append(f"{os.fspath(inp.path)} ({repeated_examples(names)})")
    fix = (
        "align the genes on an attribute whose values are unique (var_key='Accession', --var-key Accession on the "
        "command line)"
        if alt_name == "var"
        else "give the cells unique names first (e.g. obs_names_make_unique() and write_loom_full)"
    )
    if not repeated:
        return None
    msg = f"{err}: the {alt_name} names of {'; '.join(repeated)} repeat, so they cannot be aligned; {fix}."
    return pd.errors.InvalidIndexError(msg)


def concat_loom(
    in_files: Sequence[str | os.PathLike[str]] | Mapping[str, str | os.PathLike[str]],
    out_file: str | os.PathLike[str],
    *,
    axis: Literal["obs", "var", 0, 1] = "obs",
    join: Literal["inner", "outer"] = "inner",
    merge: Literal["same", "unique", "first", "only"] | None = None,
    uns_merge: Literal["same", "unique", "first", "only"] | None = None,
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
        inputs: list[Input] = []
        for path in paths:
            file = stack.enter_context(open_read_only(path))
            with converted_read_errors(path):
                inputs.append(Input(path, file, options))
        shells = [inp.shell for inp in inputs]
        concat_options = {"axis": ax, "join": join, "fill_value": fill_value}
        try:
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
        except (pd.errors.InvalidIndexError, ValueError) as err:  # ValueError: pandas 2's "duplicate labels"
            failure = _repeated_names_error(err, inputs, alt_name)
            if failure is None:
                raise
            raise failure from None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # anndata's warnings were given for the annotations above
            result = anndata.concat([inp.stand_in(ax) for inp in inputs], **concat_options)
        alt_index = getattr(out, f"{alt_name}_names")
        positions = [getattr(inp.shell, f"{alt_name}_names").get_indexer(alt_index) for inp in inputs]
        result_layers = list(named_layers(result))
        conv = output_convention(convention, inputs, result_layers)
        dropped = left_out(inputs, out, result_layers, axis_name, alt_name, label)
        if dropped:
            warnings.warn(
                "concat_loom: by anndata's merge rules the result leaves out "
                + "; ".join(
                    f"{element} {keys_!r} ({keep_hint(element, axis_name)})" for element, keys_ in dropped.items()
                )
                + ".",
                LoomConcatWarning,
                stacklevel=2,
            )
        plan = plan_write(out, conv, policy=lossy, fill_missing_layers=True)
        plan.layers = [(check_name(k, f"layers[{k!r}]"), k) for k in result_layers]
        plan.metadata.layers = [(k, n) for n, k in plan.layers]
        plan.filled_layers = missing_layers(result, conv, fill=fill_missing_layers)
        write_options: WriteOptions = {
            "chunks": (chunks[0], chunks[1]),  # may be a list; check_matrix_options made sure of two integers
            "compression_level": int(compression_level),
            "n_threads": n_threads,
            "progress": progress_default(progress),
        }
        with atomic_target(out_path) as tmp, h5py.File(tmp, "w") as target:
            write_concat(target, "matrix", None, result.X, inputs, positions, ax, out.shape, write_options)
            layers_group = target.create_group("layers")
            for name, key in plan.layers:
                write_concat(
                    layers_group, name, key, result.layers[key], inputs, positions, ax, out.shape, write_options
                )
            # numpy arrays and scipy matrices (the stand-ins); anndata types layers more widely, some without a dtype
            present: list[Any] = [result.layers[k] for k in result_layers]
            present += [result.X] if result.X is not None else []
            fill_dtype = stored_dtype(present[0].dtype) if present else np.dtype(np.float32)
            for name in plan.filled_layers:
                dset = _matrix.write_matrix(
                    layers_group, name, None, shape=out.shape, dtype=fill_dtype, **write_options
                )
                write_tag(dset, FilledLayerTag())
            write_annotations(target, plan)
    return ConcatReport(out_path, out.shape, paths, result_layers, dropped, conv.name)
