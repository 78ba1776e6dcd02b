"""What anndata's ``read_loom`` (which ``sc.read_loom`` is) would lose on a loom file.

It follows from that reader's documented rules: names from ``CellID``/``Gene``, a ``spliced`` layer as ``X`` cast
to float32, 2-D attributes as ``obsm``, no graphs and no global attributes, loompy's validator first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import h5py
import numpy as np

from scanpy_loomio._codecs.text import decode_text
from scanpy_loomio._record.tags import ColumnTag, MatrixTag, TagError, column_tag, layer_tag
from scanpy_loomio._spec.facts import is_text_dtype
from scanpy_loomio.conventions import get_convention
from scanpy_loomio.conventions.table import ANNDATA_CONVENTION

if TYPE_CHECKING:
    from anndata import AnnData

    from scanpy_loomio._record.record import Metadata
    from scanpy_loomio._tools.report import ValidationReport


def column_tag_or_none(dset: h5py.Dataset) -> ColumnTag | None:
    """The column's tag; a newer one is shown as none (reading names it)."""
    try:
        return column_tag(dset)
    except TagError:
        return None


def _matrix_tag(dset: h5py.Dataset) -> MatrixTag | None:
    """The matrix's tag when it describes a matrix (not an absent or filled one); a malformed one as none."""
    try:
        tag = layer_tag(dset)
    except TagError:
        return None
    return tag if isinstance(tag, MatrixTag) else None


def _codec_loss(key: str, codec: ColumnTag | None) -> str | None:
    if codec is None:
        return None
    kind = codec.kind
    if kind == "categorical":
        return f"{key} would be plain values, not categorical"
    if kind == "bool":
        return f"{key} would be 0/1 integers, not bool"
    if kind in ("nullable-integer", "nullable-boolean"):
        return f"{key} would lose its missing values (0 instead) and its dtype {codec.dtype or ''}".rstrip()
    if kind == "string" and (codec.na is not None or codec.dtype):
        return f"{key} would lose its missing values (empty text instead)"
    return None


def _non_ascii(group: h5py.Group) -> list[str]:
    found = []
    for name, dset in group.items():
        if isinstance(dset, h5py.Dataset) and dset.ndim == 1 and is_text_dtype(dset.dtype):
            try:
                values = decode_text(dset[()])
            except UnicodeDecodeError:
                continue
            if any(not str(v).isascii() for v in values):
                found.append(name)
    return found


def anndata_losses(
    file: h5py.File, adata: AnnData, index_attrs: dict[str, str | None], record: Metadata | None, spec: ValidationReport
) -> list[str]:
    """What anndata's ``read_loom`` (with its defaults) would get wrong or leave out, compared with ``adata``."""
    refusals = [p for p in spec.problems if p.loompy_refuses]
    if refusals:
        first = refusals[0]
        more = f" (and {len(refusals) - 1} more)" if len(refusals) > 1 else ""
        return [
            f"everything: it refuses the file, because loompy's validator (run by loompy.connect) reports "
            f"{first.where}: {first.message}{more}"
        ]
    losses: list[str] = []
    anndata = get_convention(ANNDATA_CONVENTION)  # its reader_* fields: what read_loom does by default
    for axis, loom in (("obs", "col"), ("var", "row")):
        group = file[f"{loom}_attrs"]
        default = anndata.reader_names[axis]
        used = index_attrs[axis]
        has_default = isinstance(group.get(default), h5py.Dataset)
        if used != default:
            if has_default:
                losses.append(f"{axis} names: taken from /{loom}_attrs/{default} instead of /{loom}_attrs/{used}")
            elif used is not None:
                losses.append(f"{axis} names (in /{loom}_attrs/{used}): replaced by 0, 1, 2, …")
        index_name = getattr(adata, axis).index.name
        if index_name is not None and index_name != (default if has_default else None):
            losses.append(f"the {axis} index name {index_name!r}")
        axis_record = getattr(record, axis) if record else None
        renamed = dict(axis_record.columns) if axis_record else {}
        for key in getattr(adata, axis).columns:
            attr = renamed.get(key, key)
            dset = group.get(attr)
            if attr != key:
                losses.append(f"the name of {axis}[{key!r}]: it would be {attr!r}")
            codec = column_tag_or_none(dset) if isinstance(dset, h5py.Dataset) else None
            loss = _codec_loss(f"{axis}[{key!r}]", codec)
            if loss:
                losses.append(loss)
        plain_multi = {k for k, d in group.items() if isinstance(d, h5py.Dataset) and d.ndim > 1 and d.shape[1] > 1}
        multi = getattr(adata, f"{axis}m")
        missing = [k for k in multi if k not in plain_multi]
        if missing:
            losses.append(f"{axis}m {missing}")
        pairwise = sorted(getattr(adata, f"{axis}p").keys())
        if pairwise:
            losses.append(f"{axis}p {pairwise} (graphs are not read)")
        records = [k for k, d in group.items() if isinstance(d, h5py.Dataset) and d.dtype.names]
        if records:
            losses.append(f"the records in /{loom}_attrs {records}: columns of raw numpy.void values")
        non_ascii = _non_ascii(group)
        if non_ascii:
            losses.append(f"non-ASCII characters in /{loom}_attrs {non_ascii} (loompy drops them)")
    layers = file.get("layers")
    layer_names = list(layers.keys()) if isinstance(layers, h5py.Group) else []
    x_source = file["matrix"]
    if anndata.reader_x_layer in layer_names:
        x_source = layers[anndata.reader_x_layer]
        losses.append(f"X: it would be the {anndata.reader_x_layer!r} layer, and /matrix would become layers['matrix']")
    x_tag = _matrix_tag(x_source)
    x_dtype = np.dtype((x_tag.dtype if x_tag else None) or x_source.dtype)
    if anndata.reader_x_dtype and x_dtype != np.dtype(anndata.reader_x_dtype):
        losses.append(f"the dtype of X: {x_dtype} would become {anndata.reader_x_dtype}")
    for key, name in record.layers if record else []:
        if key != name:
            losses.append(f"the name of layers[{key!r}]: it would be {name!r}")
    for where, obj in [("X", file["matrix"])] + [(f"layers[{n!r}]", layers[n]) for n in layer_names]:
        tag = _matrix_tag(obj)
        fmt = tag.format if tag else None
        if fmt in ("csc", "dense"):
            losses.append(f"the {fmt} format of {where}: it would be CSR")
    if len(adata.uns):
        losses.append(f"uns {list(adata.uns.keys())} (global attributes and kept elements are not read)")
    if adata.raw is not None:
        losses.append("raw")
    return losses
