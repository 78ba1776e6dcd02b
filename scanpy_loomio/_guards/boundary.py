"""The error boundary of a read: errors about the file's content become LoomFormatError naming the HDF5 object."""

from __future__ import annotations

import contextlib
import re
import traceback
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any

import h5py

from scanpy_loomio._errors import LoomFormatError
from scanpy_loomio._guards.problems import file_error, join_path

#: Libraries this package calls to read the file; errors raised inside them are about the file.
READING_LIBRARIES = frozenset({"h5py", "anndata"})
#: Modules whose exception types mean "these compressed bytes are damaged" (they raise from C, without a frame).
DECODER_MODULES = frozenset({"zlib", "igzip_lib", "isal"})
PACKAGE = __name__.split(".", 1)[0]


def _module(frame: Any) -> str:
    name = frame.f_globals.get("__name__") or ""
    if not name:
        parts = Path(frame.f_code.co_filename).parts
        name = next((p for p in parts if p in READING_LIBRARIES or p == PACKAGE), "")
    return name.split(".", 1)[0]


def _raised_in_reading_library(err: BaseException) -> bool:
    """Whether the error comes from the libraries reading the file, not from this package's own code.

    True when a decoder raised it, or when the innermost call out of this package led into h5py or anndata.
    """
    if type(err).__module__.split(".", 1)[0] in DECODER_MODULES:
        return True
    frames = [frame for frame, _ in traceback.walk_tb(err.__traceback__)]
    ours = [i for i, frame in enumerate(frames) if _module(frame) == PACKAGE]
    if not ours:
        return False
    return any(_module(frame) in READING_LIBRARIES for frame in frames[ours[-1] + 1 :])


def _hdf5_location(tb: TracebackType | None) -> str | None:
    """The HDF5 object being read when the error happened, from the innermost frame that holds one."""
    frames = [frame for frame, _ in traceback.walk_tb(tb)]
    for frame in reversed(frames):
        local = frame.f_locals
        for key in ("self", "elem", "dset", "dataset", "group", "obj", "g", "file"):
            obj = local.get(key)
            if key == "self" and not isinstance(obj, h5py.AttributeManager | h5py.Dataset | h5py.Group):
                obj = getattr(obj, "dataset", None)  # the matrix engine's readers hold their dataset
            try:
                if isinstance(obj, h5py.AttributeManager):
                    attr = local.get("name")
                    attr = attr.decode("utf-8", "replace") if isinstance(attr, bytes) else attr
                    owner = h5py.h5i.get_name(obj._id).decode("utf-8", "replace")
                    return f"{owner} (attribute {attr!r})" if isinstance(attr, str) else owner
                if isinstance(obj, h5py.Dataset | h5py.Group):
                    name = obj.name
                    child = local.get("name") if key == "self" and isinstance(obj, h5py.Group) else None
                    child = child.decode("utf-8", "replace") if isinstance(child, bytes) else child
                    return join_path(name, child) if isinstance(child, str) and not child.startswith("/") else name
            except (RuntimeError, ValueError, KeyError, OSError):
                continue  # a closed or invalid object: look further out
    return None


@contextlib.contextmanager
def converted_read_errors(path: Path) -> Iterator[None]:
    """Turn errors about the file's content into :class:`~scanpy_loomio.LoomFormatError` naming the HDF5 path.

    Converted: errors raised inside h5py or anndata (the libraries reading the file) and any
    :class:`UnicodeDecodeError`. Errors raised by this package's own code pass through unchanged, so bugs stay
    visible; I/O errors from the operating system stay :class:`OSError`.
    """
    try:
        yield
    except LoomFormatError:
        raise
    except UnicodeDecodeError as err:
        where = _hdf5_location(err.__traceback__) or "a text value"
        raise file_error(
            path,
            where,
            f"text that is not UTF-8 ({err.reason}, byte {err.object[err.start : err.end]!r})",
            "UTF-8 text",
        ) from err
    except (MemoryError, RecursionError):
        raise
    except Exception as err:
        if not _raised_in_reading_library(err):
            raise
        where = _hdf5_location(err.__traceback__) or "/"
        text = str(err)
        system = re.search(r"errno = (\d+), error message = '([^']*)'", text)
        if isinstance(err, OSError) and system and int(system[1]) not in (0,):
            raise OSError(int(system[1]), f"{system[2]} while reading {where}", str(path)) from err
        raise file_error(
            path,
            where,
            f"content that cannot be read ({type(err).__name__}: {text})",
            "a readable HDF5 object",
            "The file is damaged, truncated or was written by a tool that broke it; copy or download it again.",
        ) from err
