"""What every command shares: the program name, exit statuses, usage errors and checks of the files named."""

from __future__ import annotations

from pathlib import Path

__all__ = [
    "FAILED",
    "H5AD_SUFFIXES",
    "LOOM_SUFFIXES",
    "OK",
    "PROG",
    "USAGE",
    "UsageError",
    "ZARR_SUFFIXES",
    "convention_names",
    "examples",
    "input_file",
    "kind",
]

PROG = "scanpy-loomio"
#: Exit statuses.
OK, FAILED, USAGE = 0, 1, 2
H5AD_SUFFIXES = (".h5ad",)
ZARR_SUFFIXES = (".zarr",)
LOOM_SUFFIXES = (".loom",)


class UsageError(Exception):
    """A command was called with arguments that cannot work (exit status 2)."""


def examples(*lines: str) -> str:
    """An epilog listing example command lines."""
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def input_file(path: str, *, store: bool = False) -> Path:
    """The file a command reads, refused as a usage error when it is missing or a directory.

    ``store=True``: a ``.zarr`` directory is accepted too.
    """
    file = Path(path)
    if not file.exists():
        msg = f"{file}: no such file"
        raise UsageError(msg)
    if file.is_dir() and not (store and file.suffix.lower() in ZARR_SUFFIXES):
        msg = f"{file}: is a directory; expected a file"
        raise UsageError(msg)
    return file


def convention_names(*names: str | None) -> None:
    """Refuse an unknown convention name as a usage error, before anything is read or written."""
    # imported when a command runs, as in commands.py
    from scanpy_loomio.conventions import get_convention

    for name in names:
        if name is not None and name != "all":
            try:
                get_convention(name)
            except ValueError as err:
                raise UsageError(str(err)) from None


def kind(path: Path) -> str:
    """``"loom"``, ``"h5ad"`` or ``"zarr"``, from the file's suffix; any other suffix is a usage error."""
    suffix = path.suffix.lower()
    if suffix in LOOM_SUFFIXES:
        return "loom"
    if suffix in H5AD_SUFFIXES:
        return "h5ad"
    if suffix in ZARR_SUFFIXES:
        return "zarr"
    msg = f"{path}: cannot tell the format from the suffix {suffix!r}; expected .loom, .h5ad or .zarr"
    raise UsageError(msg)
