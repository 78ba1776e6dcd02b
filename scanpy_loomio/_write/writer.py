"""The write path: plan (pure, nothing touched), then write a temporary file beside the target and move it in place."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from anndata import AnnData

from scanpy_loomio import _matrix
from scanpy_loomio._codecs.auxiliary import put_aux_attributes
from scanpy_loomio._codecs.rtypes import flagged_names, flags_matrix, is_logical, is_text_factor, mark_logical, r_values
from scanpy_loomio._codecs.text import vlen_str_dtype
from scanpy_loomio._compat import named_layers
from scanpy_loomio._elements.aliases import link_names, linked_names
from scanpy_loomio._elements.embeddings import attribute_values
from scanpy_loomio._elements.globals import encode_global, write_globals
from scanpy_loomio._elements.graphs import write_graph
from scanpy_loomio._elements.sidecar import sidecar_put
from scanpy_loomio._elements.views import write_stored
from scanpy_loomio._matrix.rows import DeflatedRows
from scanpy_loomio._matrix.stream import BandSource, write_streamed
from scanpy_loomio._record.record import METADATA_KEY, SIDECAR_GROUP
from scanpy_loomio._record.tags import AbsentMatrixTag, ColumnTag, FilledLayerTag, MatrixTag, write_tag
from scanpy_loomio._settings import progress_default
from scanpy_loomio._write.atomic import atomic_target
from scanpy_loomio._write.plan import AxisPlan, LossyPolicy, WritePlan, plan_write
from scanpy_loomio._write.provenance import session_report
from scanpy_loomio._write.streaming import X_KEY, split_streamed
from scanpy_loomio.conventions import DEFAULT_CONVENTION, Convention, get_convention

#: Spec versions whose text attributes are fixed-length strings (spec 3 has variable-length UTF-8).
FIXED_LENGTH_TEXT_SPECS = frozenset({"2.0.1"})


def _fixed_length_text(values: np.ndarray) -> np.ndarray | None:
    """Text as fixed-length UTF-8 bytes; ``None`` when a value holds NUL, which fixed-length strings would cut off."""
    encoded = [value.encode("utf-8") for value in values]
    if any(b"\x00" in value for value in encoded):
        return None
    return np.array(encoded, dtype=f"S{max((len(v) for v in encoded), default=1) or 1}")


def _write_attribute(
    group: h5py.Group,
    name: str,
    values: np.ndarray,
    codec: ColumnTag | None,
    *,
    fixed_text: bool = False,
    n_threads: int | None = None,
) -> h5py.Dataset:
    fixed = _fixed_length_text(values) if fixed_text and values.dtype == object else None
    if fixed is not None:
        values = fixed
    dtype = vlen_str_dtype() if values.dtype == object else values.dtype
    compression = _attr_compression(values)
    # growable along the first axis, as loompy makes them, so loompy.combine and add_columns work on our files
    dset = group.create_dataset(
        name,
        shape=values.shape,
        data=None if compression else values,
        dtype=dtype,
        maxshape=(None, *values.shape[1:]),
        chunks=(min(max(len(values), 1), 4096), *values.shape[1:]) if values.size else None,
        **compression,
    )
    if compression:  # deflated in worker threads where the values allow it
        with DeflatedRows(dset, n_threads=n_threads) as rows:
            rows.append(values)
    if codec is not None:
        write_tag(dset, codec)
    return dset


def _attr_compression(values: np.ndarray) -> dict[str, Any]:
    # loompy compresses attributes too; tiny ones gain nothing
    return {"compression": "gzip", "compression_opts": 2} if values.size > 1024 else {}


def _write_axis(
    file: h5py.File, plan: AxisPlan, convention: Convention, *, sidecar: bool, n_threads: int | None
) -> None:
    loom_axis = "col" if plan.name == "obs" else "row"
    attrs = file.require_group(f"{loom_axis}_attrs")
    fixed_text = convention.spec_version in FIXED_LENGTH_TEXT_SPECS
    _write_attribute(attrs, plan.index_attr, plan.index_values, None, fixed_text=fixed_text, n_threads=n_threads)
    link_names(attrs, plan.index_attr, linked_names(convention, plan.name))
    rtypes = convention.r_types
    factors: set[str] = set()
    for _key, attr, enc in plan.columns:
        if attr == plan.index_attr:
            continue
        values = r_values(enc.values, enc.codec, enc.aux, rtypes)
        dset = _write_attribute(attrs, attr, values, enc.codec, fixed_text=fixed_text, n_threads=n_threads)
        if is_logical(enc.codec, enc.aux):
            mark_logical(dset, rtypes)
        if is_text_factor(enc.codec, enc.aux):
            factors.add(attr)
        if not sidecar:
            put_aux_attributes(dset, enc.aux)
            continue
        for aux_name, aux in enc.aux.items():
            sidecar_put(file, f"{loom_axis}_attrs/{attr}/{aux_name}", aux)
    for emb in plan.embeddings:
        if emb.storage == "sidecar":
            sidecar_put(file, f"{plan.name}m/{emb.key}", emb.values)
            continue
        if emb.store is not None:
            write_stored(
                file,
                attrs,
                emb,
                lambda g, name, values: _write_attribute(g, name, values, None, n_threads=n_threads),
                rtypes.bool_dtype,
            )
            continue
        for name, values in attribute_values(emb):
            _write_attribute(attrs, name, values, None, n_threads=n_threads)
    if rtypes.factors == "flags" and plan.name == "obs" and factors:
        # LoomExperiment's import reads the flags against every other column attribute, by name, but the embeddings
        registered = {e.attrs[0] for e in plan.embeddings if e.storage != "sidecar" and e.registry_global}
        names = flagged_names(attrs, [rtypes.factor_flags_attr, *registered])
        flags = flags_matrix(len(plan.index_values), names, factors)
        _write_attribute(attrs, rtypes.factor_flags_attr, flags, None, n_threads=n_threads)
    graphs = file.require_group(f"{loom_axis}_graphs")
    for _key, graph, value in plan.graphs:
        write_graph(graphs, graph, value, index_base=convention.graph_index_base, n_threads=n_threads)
    for key, value in plan.sidecar_graphs:
        sidecar_put(file, f"{plan.name}p/{key}", value)


def write_layer(
    group: h5py.Group,
    name: str,
    value: Any,
    shape: tuple[int, int],
    options: dict[str, Any],
    source: BandSource | None = None,
) -> None:
    if value is None:
        dset = _matrix.write_matrix(group, name, None, shape=shape, dtype=np.dtype(np.float32), **options)
        write_tag(dset, AbsentMatrixTag())
        return
    kind = MatrixTag.of(value)
    if source is not None:  # ``value`` is its stand-in
        dset = write_streamed(group, name, source, **options)
    else:
        stored = value.astype(np.uint8) if value.dtype == bool else value
        dset = _matrix.write_matrix(group, name, stored, **options)
    write_tag(dset, kind)


def write_filled_layer(group: h5py.Group, name: str, adata: AnnData, options: dict[str, Any]) -> None:
    """An all-zero layer the target tool needs, marked so that reading leaves it out (no chunk is stored)."""
    # the dtype of the layers present (velocyto's are counts), else of X
    present = [v for v in (*named_layers(adata).values(), adata.X) if v is not None]
    dtype = (np.dtype(np.uint8) if present[0].dtype == bool else present[0].dtype) if present else np.dtype(np.float32)
    dset = _matrix.write_matrix(group, name, None, shape=adata.shape, dtype=dtype, **options)
    write_tag(dset, FilledLayerTag())


def execute_plan(file: h5py.File, plan: WritePlan, matrix_options: dict[str, Any]) -> None:
    """Write a planned AnnData into an open, empty HDF5 file."""
    adata = plan.adata
    write_layer(file, "matrix", adata.X, adata.shape, matrix_options, plan.streamed.get(X_KEY))
    layers = file.create_group("layers")
    for name, key in plan.layers:
        write_layer(layers, name, adata.layers[key], adata.shape, matrix_options, plan.streamed.get(key))
    for name in plan.filled_layers:
        write_filled_layer(layers, name, adata, matrix_options)
    write_annotations(file, plan, n_threads=matrix_options.get("n_threads"))


def write_annotations(
    file: h5py.File, plan: WritePlan, *, creation_date: str | None = None, n_threads: int | None = None
) -> None:
    """Write everything but ``/matrix`` and ``/layers``: attributes, graphs, kept elements, global attributes.

    ``creation_date`` keeps the ``CreationDate`` of a file being updated (default: now). ``n_threads`` deflate the
    larger attributes and graphs (default: every core).
    """
    convention = plan.convention
    sidecar = convention.sidecar
    _write_axis(file, plan.obs, convention, sidecar=sidecar, n_threads=n_threads)
    if plan.scope is not None:
        for name, values in plan.scope.attrs.items():
            _write_attribute(file["col_attrs"], name, values, None, n_threads=n_threads)
    _write_axis(file, plan.var, convention, sidecar=sidecar, n_threads=n_threads)
    if plan.uns_sidecar:
        sidecar_put(file, "uns", plan.uns_sidecar)
    if plan.metadata.raw:
        sidecar_put(file, "raw", plan.raw)
    now = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    global_values = {
        **({"LOOM_SPEC_VERSION": convention.spec_version} if convention.spec_version else {}),
        "CreationDate": creation_date or now,
        "last_modified": now,
        **plan.tool_globals,
        **{k: encode_global(v, tag) for k, (tag, v) in plan.uns_globals.items()},
        METADATA_KEY: plan.metadata.to_json(),
    }
    write_globals(file, global_values, layout=convention.global_layout)


def check_write_arguments(
    function: str, filename: Any, adata: Any, lossy: Any, *, keep_backed: bool = False
) -> AnnData:
    """Refuse swapped or mistyped arguments before anything is touched; returns the AnnData, in memory.

    ``keep_backed``: return a backed AnnData as it is (its matrices are then streamed).
    """
    if isinstance(filename, AnnData):
        msg = f"{function}(filename, adata): the first argument is an AnnData; pass the file name first, like sc.write."
        raise TypeError(msg)
    if not isinstance(adata, AnnData):
        msg = f"{function}(filename, adata): expected an AnnData as the second argument, got {type(adata).__name__}."
        raise TypeError(msg)
    if not isinstance(filename, str | os.PathLike):
        msg = f"{function}(filename, adata): expected a path as the first argument, got {type(filename).__name__}."
        raise TypeError(msg)
    if lossy not in ("raise", "warn"):
        msg = f"lossy={lossy!r}; expected 'raise' or 'warn'."
        raise ValueError(msg)
    return adata.to_memory() if adata.isbacked and not keep_backed else adata


def write_loom_full(
    filename: str | os.PathLike[str],
    adata: AnnData,
    *,
    convention: str | Convention = DEFAULT_CONVENTION,
    lossy: LossyPolicy = "raise",
    fill_missing_layers: bool = False,
    convert_strings_to_categoricals: bool = True,
    chunks: tuple[int, int] = _matrix.DEFAULT_CHUNKS,
    compression_level: int = _matrix.DEFAULT_COMPRESSION_LEVEL,
    n_threads: int | None = None,
    progress: bool | None = None,
    session_info: bool = False,
) -> None:
    """Write an AnnData to a loom file that reads back exactly.

    ``X`` goes to ``/matrix`` and layers to ``/layers`` (genes × cells, as loom requires), ``obs``/``var`` columns
    to column/row attributes with readable values, names to the convention's attributes (``CellID``/``Gene`` by
    default), embeddings to attributes, ``obsp``/``varp`` to graphs. What loom has no place for (``uns`` mappings,
    DataFrames in ``obsm``, ``raw``, category lists) is kept beside it in anndata's element encoding. The file is
    written under a temporary name beside ``filename`` and moved into place when complete.

    Parameters
    ----------
    filename
        Path of the ``.loom`` file to write; an existing file is replaced only when the write succeeds.
    adata
        The AnnData object. ``X`` and layers that are not in memory (dask arrays, a backed AnnData's ``X``, an
        ``anndata.experimental.read_lazy`` object's matrices) are written a band of cells at a time (see "Writing in
        bands" in the documentation).
    convention
        Name of a convention in :data:`scanpy_loomio.conventions.CONVENTIONS` (the tool the file is for), or a
        :class:`~scanpy_loomio.conventions.Convention`.
    lossy
        What to do when an element cannot be stored exactly in this convention: ``"raise"`` a
        :class:`~scanpy_loomio.LossyWriteError`, or ``"warn"`` with a :class:`~scanpy_loomio.LossyWriteWarning` naming
        the key and leave it out.
    fill_missing_layers
        When the convention's tool needs layers the AnnData lacks (velocyto needs ``spliced``, ``unspliced`` and
        ``ambiguous``), write them as all-zero layers instead of raising. They are marked as filled, so
        :func:`~scanpy_loomio.read_loom_full` leaves them out and the AnnData still reads back exactly.
    convert_strings_to_categoricals
        Store text columns with repeated values as categoricals, as :func:`anndata.io.write_h5ad` does (on copies:
        ``adata`` is left as it is), so that the file reads back as an ``.h5ad`` file would. ``False`` keeps them
        as text.
    chunks
        HDF5 chunk shape (genes, cells) of the matrix and layers.
    compression_level
        gzip level of the matrix and layers, 0 to 9.
    n_threads
        Threads used to compress; ``None`` uses every available core.
    progress
        Show a progress bar; ``None`` follows scanpy's verbosity.
    session_info
        Also record every package of the Python session and its version (``session_info``'s report) as the text
        dataset ``/scanpy_loomio/session_info``. The versions of this package, anndata, scanpy, h5py and numpy are
        always recorded.

    Raises
    ------
    TypeError
        When the arguments are swapped or of the wrong type.
    LossyWriteError
        When an element cannot be stored exactly; nothing is written.
    ValueError
        When the convention's tool needs layers the AnnData lacks and ``fill_missing_layers`` is false.

    Examples
    --------
    >>> import scanpy as sc
    >>> import scanpy_loomio
    >>> adata = sc.datasets.pbmc68k_reduced()
    >>> scanpy_loomio.write_loom_full("pbmc.loom", adata)
    >>> back = scanpy_loomio.read_loom_full("pbmc.loom")
    >>> back.obs_names.equals(adata.obs_names)
    True
    """
    adata = check_write_arguments("write_loom_full", filename, adata, lossy, keep_backed=True)
    _matrix.check_matrix_options(chunks=chunks, compression_level=compression_level, where=os.fspath(filename))
    conv = get_convention(convention)
    adata, streamed = split_streamed(adata)
    plan = plan_write(
        adata,
        conv,
        policy=lossy,
        fill_missing_layers=fill_missing_layers,
        convert_strings_to_categoricals=convert_strings_to_categoricals,
    )
    plan.streamed = streamed
    options = {
        "chunks": tuple(chunks),
        "compression_level": int(compression_level),
        "n_threads": n_threads,
        "progress": progress_default(progress),
    }
    path = Path(filename)
    with atomic_target(path) as tmp, h5py.File(tmp, "w") as file:
        execute_plan(file, plan, options)
        if session_info and conv.sidecar:
            file.require_group(SIDECAR_GROUP).create_dataset(
                "session_info", data=session_report(), dtype=vlen_str_dtype()
            )
