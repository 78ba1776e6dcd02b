"""What :func:`~scanpy_loomio.read_loom_full` decides for a file, for the tools that report on it.

``inspect_loom``, ``validate_loom`` and ``upgrade_loom`` ask the reader instead of re-deriving its choices: one read
of everything but the matrices, on a file they already have open, gives the convention, the record, the attribute
each axis's names come from, the AnnData shell and every warning the read gave.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from scanpy_loomio._errors import LoomFormatError
from scanpy_loomio._guards import check_file, converted_read_errors
from scanpy_loomio._read.reader import LoomReader, ReadOptions

if TYPE_CHECKING:
    from pathlib import Path

    import h5py
    from anndata import AnnData

    from scanpy_loomio._record.record import Metadata
    from scanpy_loomio.conventions import Convention

#: What a read can fail with on a damaged file (the guards turn the rest into LoomFormatError).
READ_ERRORS = (LoomFormatError, ValueError, KeyError, TypeError, OSError)


@dataclass
class ReadPlan:
    """The reader's decisions for one file."""

    convention: Convention | None = None
    """The convention the file is read in (recorded, asked for, or detected)."""
    record: Metadata | None = None
    """The package's record, when the file has a usable one."""
    index_attrs: dict[str, str | None] = field(default_factory=dict)
    """The attribute each axis's names come from (``None``: a range index)."""
    shell: AnnData | None = None
    """Everything but ``X`` and the layers, as the read gives it (``None`` when the read failed)."""
    warnings: list[str] = field(default_factory=list)
    """What the read warned about, without the file's path."""
    error: str | None = None
    """Why the read failed, or ``None``."""


def plan_read(
    file: h5py.File,
    path: Path,
    *,
    obs_names: str | None = None,
    var_names: str | None = None,
    strict: bool = False,
    checked: bool = False,
) -> ReadPlan:
    """Read everything but the matrices of an open file as :func:`~scanpy_loomio.read_loom_full` does.

    With ``strict=False`` nothing is raised for a damaged file (the failure is in :attr:`ReadPlan.error`) and the
    warnings are collected; with ``strict=True`` errors are raised and warnings shown, as when reading.
    ``checked=True``: the file's structure was already checked in this open.
    """
    if strict:
        return _plan(file, path, obs_names, var_names, checked)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            plan = _plan(file, path, obs_names, var_names, checked)
        except READ_ERRORS as err:
            plan = ReadPlan(error=str(err))
    plan.warnings = [str(w.message).removeprefix(f"{path}: ") for w in caught if issubclass(w.category, UserWarning)]
    return plan


def _plan(file: h5py.File, path: Path, obs_names: str | None, var_names: str | None, checked: bool) -> ReadPlan:
    options = ReadOptions(matrices=False, progress=False, obs_names=obs_names, var_names=var_names)
    with converted_read_errors(path):
        if not checked:
            check_file(file, path)
        reader = LoomReader(file, path, options)
        shell = reader.read()
    return ReadPlan(reader.convention, reader.metadata, reader.index_attrs, shell)
