"""What every part of reading one loom file shares.

The caller's options, the globals, the package's record, the convention and the shape of the file.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py

from scanpy_loomio._elements.globals import read_globals
from scanpy_loomio._elements.orientation import stored_transposed
from scanpy_loomio._errors import LoomFormatError, LoomReadWarning
from scanpy_loomio._read.detect import detect_convention
from scanpy_loomio._record.checks import record_error, usable_metadata
from scanpy_loomio._record.record import METADATA_KEY, Metadata
from scanpy_loomio._record.tags import TagError
from scanpy_loomio.conventions import Convention, get_convention


@dataclass
class ReadOptions:
    """Choices the caller made (all optional)."""

    convention: Convention | None = None
    X_name: str | None = None
    obs_names: str | None = None
    var_names: str | None = None
    obsm_mapping: Mapping[str, list[str]] = field(default_factory=dict)
    varm_mapping: Mapping[str, list[str]] = field(default_factory=dict)
    sparse: bool = True
    dtype: str | None = None
    cleanup: bool = False
    matrices: bool = True
    repair_bytes_text: bool = False
    n_threads: int | None = None
    progress: bool = False


class ReaderBase:
    """One open loom file and what every part of reading it needs: options, globals, record, convention, shape."""

    def __init__(self, file: h5py.File, path: Path, options: ReadOptions) -> None:
        self.file = file
        self.path = path
        self.options = options
        self.globals = read_globals(file)
        self.metadata = usable_metadata(self._metadata(), path, file)
        self.convention = self._convention()
        self.transposed = stored_transposed(file)
        self.foreign_uns: dict[str, Any] = {}
        self.index_attrs: dict[str, str | None] = {}
        """The attribute each axis's names were read from (``None``: a range index), once the axis is read."""
        self.graphs_later = False
        """Leave ``obsp``/``varp`` out of the axes read (a subset read reads them once it knows the selection)."""

    # -- helpers ---------------------------------------------------------------------------------------------
    def error(self, where: str, found: str, expected: str, fix: str = "") -> LoomFormatError:
        msg = f"{self.path}: {where}: found {found}; expected {expected}."
        if fix:
            msg += f" {fix}"
        return LoomFormatError(msg)

    def _metadata(self) -> Metadata | None:
        raw = self.globals.get(METADATA_KEY)
        if raw is None:
            return None
        try:
            return Metadata.from_json(raw)
        except TagError as err:
            if err.newer:
                raise record_error(self.path, err) from None
            warnings.warn(
                f"{self.path}: the scanpy_loomio record in the global attributes is unreadable ({err}); "
                "reading the file as plain loom. Exact dtypes and index names may not be restored.",
                LoomReadWarning,
                stacklevel=4,
            )
            return None

    def _convention(self) -> Convention:
        if self.options.convention is not None:
            return self.options.convention
        if self.metadata is not None:
            try:
                return get_convention(self.metadata.convention)
            except ValueError:
                pass
        return detect_convention(self.file, self.globals)

    def _not_loom_hint(self) -> str:
        """What to do with a file that is not loom: an ``.h5ad`` file (anndata's root tag) is named as such."""
        if self.file.attrs.get("encoding-type") in ("anndata", b"anndata"):
            return "This is an .h5ad file (anndata's encoding): read it with anndata.read_h5ad or sc.read_h5ad."
        return "Is this a loom file?"

    @property
    def shape(self) -> tuple[int, int]:
        """``(n_obs, n_vars)``."""
        if "matrix" not in self.file:
            raise self.error("/matrix", "no such dataset", "the main matrix of a loom file", self._not_loom_hint())
        matrix = self.file["matrix"]
        if not isinstance(matrix, h5py.Dataset) or matrix.ndim != 2:
            raise self.error(
                "/matrix", f"a {type(matrix).__name__} of {getattr(matrix, 'ndim', '?')} dimensions", "a 2-D dataset"
            )
        if matrix.dtype.kind not in "iufb":
            raise self.error("/matrix", f"values of dtype {matrix.dtype}", "numbers (integers, floats or bool)")
        n_genes, n_cells = matrix.shape
        return (n_genes, n_cells) if self.transposed else (n_cells, n_genes)

    def _aligned(self, value: Any, n: int, key: str) -> Any:
        """A kept element, or ``None`` with a warning when another tool changed the number of cells or genes."""
        if value is None or getattr(value, "shape", (n,))[0] == n:
            return value
        warnings.warn(
            f"{self.path}: {key} was kept for {value.shape[0]} entries but the file now has {n} (another tool "
            "changed its shape); left out.",
            LoomReadWarning,
            stacklevel=5,
        )
        return None


__all__ = ["ReadOptions", "ReaderBase"]
