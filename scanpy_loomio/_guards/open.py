"""Opening a file to read: read-only, without HDF5 file locking, after checking that it can be an HDF5 file."""

from __future__ import annotations

import errno
import os
import re
import stat
from typing import TYPE_CHECKING, Any

import h5py

from scanpy_loomio._errors import LoomFormatError

if TYPE_CHECKING:
    from pathlib import Path

#: The 8 bytes every HDF5 superblock starts with; it sits at byte 0 or at 512, 1024, 2048, … after a user block.
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


class UnreadableFileError(LoomFormatError, OSError):
    """The file is not HDF5 at all, or HDF5 cannot open it (empty, text, truncated, damaged header).

    It is both a :class:`~scanpy_loomio.LoomFormatError` and an :class:`OSError`, so either ``except`` clause catches it.
    """


def _file_kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "named pipe"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return name
    return "special file"


def _find_signature(handle: Any, size: int) -> bool:
    offset = 0
    while offset + len(HDF5_SIGNATURE) <= size:
        handle.seek(offset)
        if handle.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
            return True
        offset = 512 if offset == 0 else offset * 2
    return False


def _describe_start(head: bytes) -> str:
    text = head.lstrip()
    if text[:15].lower().startswith((b"<!doctype html", b"<html")):
        return "a web page (an HTML error or login page saved in place of the file?)"
    if text.startswith(b"version https://git-lfs"):
        return "a Git LFS pointer, not the file itself (run `git lfs pull`)"
    if text.startswith(b"\x1f\x8b"):
        return "gzip-compressed data (decompress it first)"
    if text.startswith(b"PK\x03\x04"):
        return "a zip archive (extract it first)"
    return f"bytes {head[:16]!r}"


def _open_error_reason(err: BaseException, size: int) -> str:
    text = str(err)
    match = re.search(r"truncated file: eof = (\d+).*stored_eof = (\d+)", text)
    if match:
        return f"a truncated file: it has {int(match[1])} bytes but its HDF5 header says {int(match[2])}"
    return f"an HDF5 file that cannot be opened ({type(err).__name__}: {text}); its {size} bytes may be damaged"


def open_read_only(path: Path) -> h5py.File:
    """Open ``path`` read-only, without HDF5 file locking, after checking that it can be an HDF5 file.

    Raises
    ------
    FileNotFoundError, IsADirectoryError, PermissionError, OSError
        When the path does not exist, is a folder, cannot be read or is not a regular file.
    BlockingIOError
        When ``HDF5_USE_FILE_LOCKING=TRUE`` asks for a lock another process holds (HDF5 lets it override the
        reader's choice).
    UnreadableFileError
        When the file is empty, has no HDF5 signature, or HDF5 cannot open it (truncated or damaged).
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise FileNotFoundError(errno.ENOENT, "no such file; expected a .loom file", str(path)) from None
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, "is a directory; expected a .loom file", str(path))
    if not stat.S_ISREG(st.st_mode):
        # opening a named pipe would wait forever for a writer
        raise OSError(errno.EINVAL, f"is a {_file_kind(st.st_mode)}; expected a regular .loom file", str(path))
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
            found = _find_signature(handle, st.st_size)
    except PermissionError as err:
        raise PermissionError(err.errno, "cannot be read (permission denied)", str(path)) from None
    if st.st_size == 0:
        msg = f"{path}: /: found an empty file (0 bytes); expected an HDF5 (.loom) file. Was it written completely?"
        raise UnreadableFileError(msg)
    if not found:
        msg = (
            f"{path}: /: found {_describe_start(head)} and no HDF5 signature; expected an HDF5 (.loom) file. "
            "Is this the right file, and was it downloaded completely?"
        )
        raise UnreadableFileError(msg)
    try:
        return _h5py_open(path)
    except OSError as err:
        if "unable to lock file" not in str(err).lower():
            raise UnreadableFileError(_open_error_message(path, err, st.st_size)) from None
        reason = (
            "is open for writing in another process, which holds HDF5's file lock, and HDF5_USE_FILE_LOCKING="
            f"{os.environ.get('HDF5_USE_FILE_LOCKING', '')!r} makes readers take the lock too (HDF5 lets it override "
            "the reader); set HDF5_USE_FILE_LOCKING=FALSE or leave it unset to read the file anyway"
        )
        raise BlockingIOError(errno.EAGAIN, reason, str(path)) from None
    except (RuntimeError, ValueError, KeyError) as err:
        raise UnreadableFileError(_open_error_message(path, err, st.st_size)) from None


def _open_error_message(path: Path, err: BaseException, size: int) -> str:
    return (
        f"{path}: /: found {_open_error_reason(err, size)}; expected a complete HDF5 file. Copy or download it again."
    )


def _h5py_open(path: Path) -> h5py.File:
    try:
        # readers never need a lock; without this, HDF5 refuses to open a file another process has open for writing.
        # No chunk cache: every dataset is read once, whole or a chunk-aligned band at a time, and each open
        # dataset's cache would keep its last chunks (a megabyte each, for dozens of annotation columns).
        return h5py.File(path, "r", locking=False, rdcc_nbytes=0)
    except (TypeError, ValueError) as err:
        if "lock" not in str(err):
            raise
        # h5py or HDF5 too old for the option
    except OSError as err:
        if "flag values don't match" not in str(err):
            raise
        # this process already has the file open with locking on, and HDF5 opens a file only one way at a time
    return h5py.File(path, "r", rdcc_nbytes=0)
