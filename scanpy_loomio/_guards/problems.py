"""How the safety checks word a problem: the file, the HDF5 object, what was found and what was expected."""

from __future__ import annotations

from typing import TYPE_CHECKING

from scanpy_loomio._errors import LoomFormatError

if TYPE_CHECKING:
    from pathlib import Path


def file_error(path: Path, where: str, found: str, expected: str, fix: str = "") -> LoomFormatError:
    """``"<path>: <where>: found <found>; expected <expected>. <fix>"`` as a :class:`LoomFormatError`."""
    msg = f"{path}: {where}: found {found}; expected {expected}."
    return LoomFormatError(f"{msg} {fix}" if fix else msg)


def join_path(parent: str, name: str) -> str:
    """The HDF5 path of ``name`` inside the group ``parent``."""
    return f"{parent.rstrip('/')}/{name}"
