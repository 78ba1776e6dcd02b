"""Updating the annotations of an existing loom file without rewriting its matrices.

The workflow loompy's author asked tools to follow: each tool reads a file, adds or changes the attributes it is
about (clusters, embeddings, graphs, ``uns``) and writes back only those, leaving the expression matrices alone.

How it stays atomic and cheap: HDF5 has no transactions, so changing a file in place can leave it half-written
when the process dies. Instead a new file is built beside the old one and moved over it (as
:func:`~scanpy_loomio.write_loom_full` does). Into it, ``/matrix`` and the layers are carried over with HDF5's object
copy, which moves the compressed chunks as they are, without decompressing or compressing anything: on a 60 MB
file it takes a tenth of the time of writing the matrices again. Everything else (attributes, graphs, kept
elements, global attributes) is small and is written from the AnnData. The cost is the disk space of a second file
while it is being built, and reading and writing the matrix bytes once; the result is compact, since nothing that
was replaced stays behind as dead space in the file.

It is a function of its own rather than a mode of ``write_loom_full`` because it needs something to be true
before it starts (a file whose matrices are this AnnData's) and fails when it is not, because it keeps the file's
convention unless told otherwise, and because the options that shape matrices (chunks, compression, threads) do
not apply to it.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from anndata import AnnData

from scanpy_loomio import _matrix
from scanpy_loomio._compat import named_layers
from scanpy_loomio._elements.globals import read_globals
from scanpy_loomio._errors import LoomReadWarning
from scanpy_loomio._guards import check_file, converted_read_errors, open_read_only
from scanpy_loomio._read.reader import LoomReader, ReadOptions
from scanpy_loomio._record.tags import AbsentMatrixTag, FilledLayerTag, MatrixTag, layer_tag
from scanpy_loomio._write.atomic import atomic_target
from scanpy_loomio._write.plan import LossyPolicy, WritePlan, plan_write
from scanpy_loomio._write.writer import check_write_arguments, write_annotations, write_filled_layer, write_layer
from scanpy_loomio.conventions import Convention, get_convention

__all__ = ["update_loom_full"]


@dataclass
class StoredMatrix:
    """How a matrix in the file reads back: ``None`` when absent, else its container and dtype."""

    kind: MatrixTag | None
    filled: bool = False

    @classmethod
    def of(cls, dset: h5py.Dataset) -> StoredMatrix:
        tag = layer_tag(dset)
        if isinstance(tag, AbsentMatrixTag):
            return cls(None)
        if isinstance(tag, FilledLayerTag):
            return cls(None, filled=True)
        fmt = (tag.format if tag else None) or "csr"  # read_loom_full reads matrices without a record as CSR
        default_type = "ndarray" if fmt == "dense" else f"{fmt}_matrix"
        container = tag.container if tag and tag.format else default_type
        return cls(MatrixTag(fmt, container, (tag.dtype if tag else None) or str(dset.dtype)))

    def describe(self) -> str:
        if self.kind is None:
            return "no matrix"
        return f"a {self.kind.container} of {self.kind.dtype}"


def _describe(value: Any) -> str:
    if value is None:
        return "no matrix"
    kind = MatrixTag.of(value)
    return f"a {kind.container} of {kind.dtype}"


def _matches(stored: StoredMatrix, value: Any) -> bool:
    if value is None or stored.kind is None:
        return value is None and stored.kind is None and not stored.filled
    return MatrixTag.of(value) == stored.kind


class _Target:
    """The file being updated, as far as the update needs to know it (read once, read-only)."""

    def __init__(
        self, file: h5py.File, path: Path, convention: Convention | None, names: tuple[str | None, str | None]
    ) -> None:
        self.file = file
        self.path = path
        with converted_read_errors(path):
            check_file(file, path)
            options = ReadOptions(convention=convention, obs_names=names[0], var_names=names[1], matrices=False)
            reader = LoomReader(file, path, options)
            self.n_obs, self.n_vars = reader.shape
            self.convention = reader.convention
            with warnings.catch_warnings():
                # how the names were found was said when the file was read; here they are only compared
                warnings.simplefilter("ignore", LoomReadWarning)
                self.obs_names = reader.read_axis("obs", self.n_obs)[0].index
                self.var_names = reader.read_axis("var", self.n_vars)[0].index
        self.created = read_globals(file).get("CreationDate")
        layers = file.get("layers")
        self.layers = (
            {name: StoredMatrix.of(d) for name, d in layers.items() if isinstance(d, h5py.Dataset)} if layers else {}
        )
        self.matrix = StoredMatrix.of(file["matrix"])

    def error(self, what: str, fix: str = "") -> ValueError:
        fix = fix or (
            "update_loom_full rewrites the annotations of the same cells and genes; write the whole file with "
            "write_loom_full instead."
        )
        return ValueError(f"{self.path}: {what}. {fix}")

    def check(self, adata: AnnData) -> None:
        """Refuse an AnnData whose cells, genes or matrices are not the file's."""
        if (adata.n_obs, adata.n_vars) != (self.n_obs, self.n_vars):
            msg = (
                f"/matrix holds {self.n_vars} genes × {self.n_obs} cells, the AnnData has {adata.n_obs} cells × "
                f"{adata.n_vars} genes (n_obs × n_vars)"
            )
            raise self.error(msg)
        for axis, names in (("obs", self.obs_names), ("var", self.var_names)):
            mine = getattr(adata, f"{axis}_names")
            if not mine.equals(names):
                i = int(np.argmax(np.asarray(mine, dtype=object) != np.asarray(names, dtype=object)))
                msg = (
                    f"{axis}_names differ from the file's from position {i}: the file has {names[i]!r}, "
                    f"the AnnData {mine[i]!r}"
                )
                raise self.error(msg)
        fix = (
            "update_loom_full keeps the file's matrices as they are, so the file would not read back as this "
            "AnnData; write the whole file with write_loom_full."
        )
        if not _matches(self.matrix, adata.X):
            raise self.error(f"X is {_describe(adata.X)}, /matrix holds {self.matrix.describe()}", fix)
        for key, value in named_layers(adata).items():
            stored = self.layers.get(key)
            if stored is not None and not stored.filled and not _matches(stored, value):
                msg = f"layers[{key!r}] is {_describe(value)}, /layers/{key} holds {stored.describe()}"
                raise self.error(msg, fix)

    def matrix_options(self) -> dict[str, Any]:
        """Chunks and compression of ``/matrix``, for layers the file does not have yet."""
        matrix = self.file["matrix"]
        level = matrix.compression_opts if matrix.compression == "gzip" else None
        return {
            "chunks": matrix.chunks or _matrix.DEFAULT_CHUNKS,
            "compression_level": _matrix.DEFAULT_COMPRESSION_LEVEL if level is None else int(level),
            "n_threads": None,
            "progress": False,
        }


def _carry_matrices(target: _Target, dst: h5py.File, plan: WritePlan) -> None:
    """``/matrix`` and the layers: copied from the file chunk by chunk when kept, written when new."""
    src, adata = target.file, plan.adata
    src.copy(src["matrix"], dst, "matrix")
    layers = dst.create_group("layers")
    options = target.matrix_options()
    for name, key in plan.layers:
        stored = target.layers.get(name)
        if stored is not None and not stored.filled:
            src.copy(src["layers"][name], layers, name)
        else:
            write_layer(layers, name, adata.layers[key], adata.shape, options)
    for name in plan.filled_layers:
        stored = target.layers.get(name)
        if stored is not None and stored.filled:
            src.copy(src["layers"][name], layers, name)
        else:
            write_filled_layer(layers, name, adata, options)


def update_loom_full(
    filename: str | os.PathLike[str],
    adata: AnnData,
    *,
    convention: str | Convention | None = None,
    lossy: LossyPolicy = "raise",
    fill_missing_layers: bool = False,
    convert_strings_to_categoricals: bool = True,
) -> None:
    """Write an AnnData's annotations into the loom file it was read from, keeping the file's matrices.

    ``obs``/``var`` columns, embeddings, graphs, ``uns`` and ``raw`` are written from ``adata``; ``/matrix`` and the
    layers the file already has are carried over as they are stored (their compressed chunks are copied, not
    decompressed and compressed again). Layers new in ``adata`` are added, layers ``adata`` no longer has are left
    out. The file is replaced atomically: a new file is built beside it and moved over it when complete, so the
    file is never half-updated. Afterwards :func:`~scanpy_loomio.read_loom_full` gives exactly ``adata``.

    The matrices are not compared value by value (that would read them all): ``adata.X`` and each layer the file
    has must be the ones read from it, and their shape, dtype and container (dense, CSR, CSC) are checked.

    Parameters
    ----------
    filename
        An existing loom file whose cells and genes are ``adata``'s, in the same order.
    adata
        The AnnData, usually read from ``filename`` with :func:`~scanpy_loomio.read_loom_full` and annotated since.
    convention
        The tool the file is for; ``None`` keeps the file's own (recorded, or detected).
    lossy
        What to do when an element cannot be stored exactly in this convention: ``"raise"`` a
        :class:`~scanpy_loomio.LossyWriteError`, or ``"warn"`` and leave it out.
    fill_missing_layers
        As for :func:`~scanpy_loomio.write_loom_full`: write all-zero layers the convention's tool needs and
        ``adata`` lacks (they are left out when reading). Layers filled in by an earlier write stay filled
        without it.
    convert_strings_to_categoricals
        As for :func:`~scanpy_loomio.write_loom_full`: text columns with repeated values are stored as
        categoricals, as :func:`anndata.io.write_h5ad` stores them; ``False`` keeps them as text.

    Raises
    ------
    ValueError
        When the file's cells or genes (names, order, number) or its matrices' dtype or container are not
        ``adata``'s; the message says what differs. The file is left as it was.
    LossyWriteError
        When an element cannot be stored exactly; the file is left as it was.
    LoomFormatError
        When ``filename`` is not a loom file that can be read.
    FileNotFoundError
        When there is no file to update.

    Examples
    --------
    >>> import scanpy as sc
    >>> import scanpy_loomio
    >>> scanpy_loomio.write_loom_full("pbmc.loom", sc.datasets.pbmc68k_reduced())
    >>> adata = scanpy_loomio.read_loom_full("pbmc.loom")
    >>> adata.obs["many_genes"] = adata.obs["n_genes"] > 500
    >>> scanpy_loomio.update_loom_full("pbmc.loom", adata)
    >>> scanpy_loomio.read_loom_full("pbmc.loom").obs["many_genes"].equals(adata.obs["many_genes"])
    True
    """
    adata = check_write_arguments("update_loom_full", filename, adata, lossy)
    path = Path(filename)
    asked = get_convention(convention) if convention is not None else None
    update_file(
        path,
        adata,
        convention=asked,
        lossy=lossy,
        fill_missing_layers=fill_missing_layers,
        convert_strings_to_categoricals=convert_strings_to_categoricals,
    )


def update_file(
    path: Path,
    adata: AnnData,
    *,
    convention: Convention | None,
    lossy: LossyPolicy,
    fill_missing_layers: bool,
    convert_strings_to_categoricals: bool = True,
    names: tuple[str | None, str | None] = (None, None),
    output: Path | None = None,
) -> None:
    """:func:`update_loom_full` once its arguments are checked.

    ``names`` are the attributes holding the cell and gene names of a file without this package's record, as
    :func:`~scanpy_loomio.read_loom_full`'s ``obs_names``/``var_names`` (``None``: found as it finds them), so that a
    file read with them is compared with the same names. ``output`` writes the result there instead of replacing
    ``path``.
    """
    with atomic_target(output or path) as tmp, open_read_only(path) as src:
        target = _Target(src, path, convention, names)
        target.check(adata)
        conv = convention or target.convention
        # layers filled in by an earlier write stay filled
        missing = {name for name in conv.required_layers if name not in named_layers(adata)}
        fill = fill_missing_layers or missing <= {name for name, stored in target.layers.items() if stored.filled}
        plan = plan_write(
            adata,
            conv,
            policy=lossy,
            fill_missing_layers=fill,
            convert_strings_to_categoricals=convert_strings_to_categoricals,
        )
        with h5py.File(tmp, "w") as dst:
            _carry_matrices(target, dst, plan)
            write_annotations(dst, plan, creation_date=target.created if isinstance(target.created, str) else None)
