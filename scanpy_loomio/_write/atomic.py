"""Atomic file replacement: write beside the target under a temporary name, then ``os.replace`` it into place."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import secrets
import shutil
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

#: Temporary files are named ``.<target>.<pid>.<token>.<host>.scanpy_loomio-tmp`` in the target's folder.
TMP_SUFFIX = ".scanpy_loomio-tmp"
_TMP_MIDDLE = re.compile(r"(?P<pid>[0-9]+)\.(?P<token>[0-9a-f]+)\.(?P<host>h[0-9a-f]{8})")
#: Seconds between flushes of the temporary file while it is written (see :class:`_Writeback`).
WRITEBACK_SECONDS = 1.0
#: Removing a failed store: how often to try, and how long to wait in between (writes in flight end in milliseconds).
REMOVE_ATTEMPTS = 40
REMOVE_PAUSE_SECONDS = 0.05
#: What to suggest when writing fails with these errors.
_HINTS = {
    errno.EFBIG: "the file is larger than the file size limit (ulimit -f) or the file system allows",
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EACCES: "the folder is not writable",
    errno.EPERM: "the folder does not allow new files (read-only or immutable)",
    errno.EROFS: "the file system is read-only",
}


def _host_tag() -> str:
    """Short tag of this machine: a process id means nothing on another machine sharing the folder."""
    return f"h{zlib.crc32(socket.gethostname().encode()):08x}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's live process
    return True


def clean_stale_temporaries(target: Path) -> list[Path]:
    """Remove temporaries for ``target`` left by writers of this user that died; returns what was removed.

    Only files (and ``.zarr`` stores) named exactly as this package names its temporaries, written on this machine,
    owned by the current user and whose writer process is gone are removed, so another user's, another machine's or
    a running writer's file is never touched.
    """
    removed = []
    prefix = f".{target.name}."
    host = _host_tag()
    with contextlib.suppress(OSError):
        for entry in target.parent.iterdir():
            name = entry.name
            if not (name.startswith(prefix) and name.endswith(TMP_SUFFIX)):
                continue
            match = _TMP_MIDDLE.fullmatch(name[len(prefix) : -len(TMP_SUFFIX)])
            if match is None or match["host"] != host or _pid_alive(int(match["pid"])):
                continue
            with contextlib.suppress(OSError):
                if entry.lstat().st_uid != os.getuid() or entry.is_symlink():
                    continue
                if entry.is_file():
                    entry.unlink()
                    removed.append(entry)
                elif entry.is_dir():  # a .zarr store being written
                    shutil.rmtree(entry)
                    removed.append(entry)
    return removed


def _temporary_path(target: Path) -> Path:
    """A new temporary name beside ``target``, as :func:`clean_stale_temporaries` recognises them."""
    return target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}.{_host_tag()}{TMP_SUFFIX}")


@contextlib.contextmanager
def atomic_target(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success move it onto ``target``, on failure delete it.

    An exception (or a killed process) never leaves a partial file at ``target`` and never removes a file that was
    already there.
    """
    target = Path(target)
    if target.is_symlink():
        target = Path(os.path.realpath(target))  # replace the file the link points to, keep the link
    if target.is_dir():
        msg = f"{target}: is a directory; expected a file path to write to"
        raise IsADirectoryError(msg)
    if not target.parent.is_dir():
        raise FileNotFoundError(
            errno.ENOENT, "no such folder to write the file in; create it first", str(target.parent)
        )
    clean_stale_temporaries(target)
    existed = target.exists()
    tmp = _temporary_path(target)
    try:
        with _Writeback(tmp):
            yield tmp
        if existed:
            # keep the permission bits a user gave the file being replaced
            with contextlib.suppress(OSError):
                os.chmod(tmp, target.stat().st_mode & 0o7777)
        _fsync_file(tmp)  # the data reaches the disk before the name does
        try:
            os.replace(tmp, target)
        except OSError as err:
            if not existed or err.errno not in (errno.EPERM, errno.EACCES):
                raise
            # the new file was written beside it: the existing file itself refuses to be replaced
            msg = (
                f"could not replace the existing file ({os.strerror(err.errno)}: it is immutable or protected, e.g. "
                "by chattr +i or a sticky folder owned by someone else); it was left as it was and nothing was written"
            )
            raise OSError(err.errno, msg, str(target)) from None
        _fsync_dir(target.parent)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        failure = _io_failure(err, target, tmp, existed=existed)
        if failure is None:
            raise
        raise failure from err


@contextlib.contextmanager
def atomic_directory(target: Path) -> Iterator[Path]:
    """Like :func:`atomic_target`, for a directory (a ``.zarr`` store).

    The new store is written beside the target; an existing one is renamed aside, the new one moved in and the old
    one removed, so an interrupted conversion leaves the old store (or none) and never a partial one at ``target``.
    """
    if not target.parent.is_dir():
        msg = f"{target.parent}: no such folder to write the .zarr store in; create it first"
        raise FileNotFoundError(msg)
    clean_stale_temporaries(target)  # stores of conversions that were killed
    tmp = _temporary_path(target)
    existed = target.exists() or target.is_symlink()
    try:
        yield tmp
        if target.exists() or target.is_symlink():
            old = tmp.with_name(f"{tmp.name}.old")
            os.replace(target, old)
            os.replace(tmp, target)
            _remove(old)
        else:
            os.replace(tmp, target)
    except BaseException as err:
        _remove(tmp)
        failure = _io_failure(err, target, tmp, existed=existed)  # a full disk: say so, naming the store
        if failure is None:
            raise
        raise failure from err


def _remove(path: Path) -> None:
    """Remove a file or a whole store, trying again while files appear in it (a writer's tasks still ending)."""
    for _ in range(REMOVE_ATTEMPTS):
        try:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink(missing_ok=True)
        except OSError:
            pass
        time.sleep(REMOVE_PAUSE_SECONDS)
        if not os.path.lexists(path):  # and not made again by a late write
            return


def _io_failure(err: BaseException, target: Path, tmp: Path, *, existed: bool) -> OSError | None:
    """An :class:`OSError` naming the target for an I/O failure while writing (h5py reports some as RuntimeError)."""
    if not isinstance(err, OSError | RuntimeError):
        return None
    if isinstance(err, OSError) and err.filename == str(target):
        return None  # already about the target
    if isinstance(err, OSError) and err.filename not in (None, str(tmp)) and tmp.name not in str(err):
        return None  # about another file (a source being read): not a failure to write
    code = err.errno if isinstance(err, OSError) else None
    found = re.search(r"errno = (\d+)", str(err))
    if found and int(found[1]):
        code = int(found[1])
    if not code:
        return None
    hint = _HINTS.get(code)
    kept = "the existing file was left as it was" if existed else "no file was created"
    reason = os.strerror(code) + (f": {hint}" if hint else "")
    # OSError(errno, ...) picks the matching subclass (PermissionError, FileNotFoundError, ...)
    return OSError(code, f"could not write the file ({reason}, while writing {tmp.name}); {kept}", str(target))


class _Writeback:
    """Flushes the file being written to the disk every :data:`WRITEBACK_SECONDS`, from a thread of its own.

    The operating system would otherwise keep a large file's pages in memory until the final ``fsync``, which then
    waits for all of them while nothing else is done; flushed as they come, they reach the disk while the writer
    computes the next chunks. The thread waits for the disk without the GIL.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="loom-writeback", daemon=True)

    def __enter__(self) -> _Writeback:
        if os.name != "nt":  # on Windows an open descriptor would keep the file from being renamed or removed
            self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()

    def _run(self) -> None:
        flush = getattr(os, "fdatasync", os.fsync)
        fd = None
        try:
            while not self.stop.wait(WRITEBACK_SECONDS):
                if fd is None:
                    try:
                        fd = os.open(self.path, os.O_RDONLY)
                    except OSError:
                        continue  # not created yet
                try:
                    flush(fd)
                except OSError:
                    return  # a file system without it: the final fsync says what went wrong, if anything
        finally:
            if fd is not None:
                os.close(fd)


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.ENOTSUP):  # file systems without fsync
            raise
    finally:
        os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
