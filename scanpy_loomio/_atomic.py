"""Atomic file replacement: write beside the target under a temporary name, then ``os.replace`` it into place."""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

#: Temporary files are named ``.<target>.<pid>.<token>.scanpy_loomio-tmp`` in the target's folder.
TMP_SUFFIX = ".scanpy_loomio-tmp"


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

    Only files whose name carries this package's marker, whose owner is the current user and whose writer process
    is gone are removed, so another user's or a running writer's file is never touched.
    """
    removed = []
    prefix = f".{target.name}."
    with contextlib.suppress(OSError):
        for entry in target.parent.iterdir():
            name = entry.name
            if not (name.startswith(prefix) and name.endswith(TMP_SUFFIX)):
                continue
            pid_text = name[len(prefix) :].split(".", 1)[0]
            if not pid_text.isdigit() or _pid_alive(int(pid_text)):
                continue
            with contextlib.suppress(OSError):
                if entry.lstat().st_uid == os.getuid() and entry.is_file():
                    entry.unlink()
                    removed.append(entry)
    return removed


@contextlib.contextmanager
def atomic_target(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success move it onto ``target``, on failure delete it.

    An exception (or a killed process) never leaves a partial file at ``target`` and never removes a file that was
    already there.
    """
    target = Path(target)
    if target.is_dir():
        msg = f"{target}: is a directory; expected a file path to write the loom file to"
        raise IsADirectoryError(msg)
    clean_stale_temporaries(target)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}{TMP_SUFFIX}")
    try:
        yield tmp
        if target.exists():
            # keep the permission bits a user gave the file being replaced
            with contextlib.suppress(OSError):
                os.chmod(tmp, target.stat().st_mode & 0o7777)
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
