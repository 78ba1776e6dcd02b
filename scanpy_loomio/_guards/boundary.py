"""The error boundary of a read: errors about the file's content become LoomFormatError naming the HDF5 object.

The reading code names what it reads: it enters :func:`hdf5_object` around each element (or reads a dataset's values
with :func:`read_values`), and an error leaving the block is labelled with that object, the innermost block's first.
Inside anndata's reading of an element tree, the element that failed is the one anndata names in the note it adds to
the error. :func:`converted_read_errors` puts the name in its message.
"""

from __future__ import annotations

import ast
import contextlib
import re
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h5py

from scanpy_loomio._errors import LoomFormatError
from scanpy_loomio._guards.problems import file_error, join_path
from scanpy_loomio._matrix.rows import read_rows

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


#: The attribute of an exception that holds the HDF5 object being read when it was raised (see :func:`hdf5_object`).
OBJECT_ATTRIBUTE = "scanpy_loomio_hdf5_object"
#: The note anndata adds to an error raised while it reads an element (the innermost element, written once).
ANNDATA_NOTE = re.compile(
    r"Error raised while reading key (?P<key>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\") of .* from (?P<parent>/.*)"
)


@contextlib.contextmanager
def hdf5_object(obj: h5py.HLObject | str, attribute: str | None = None) -> Iterator[None]:
    """Name the HDF5 object (or one of its attributes) read inside the block, for :func:`converted_read_errors`.

    An error passing out of the block is labelled with the object unless a block nested inside this one labelled it
    already: the innermost object read names the error. ``obj`` is an HDF5 object or its path; the object's name is
    looked up only when there is an error.
    """
    try:
        yield
    except Exception as err:
        if getattr(err, OBJECT_ATTRIBUTE, None) is None:
            with contextlib.suppress(AttributeError, TypeError):  # an exception type without instance attributes
                setattr(err, OBJECT_ATTRIBUTE, _object_name(obj, attribute))
        raise


def read_values(dset: h5py.Dataset) -> Any:
    """``dset[()]``, naming the dataset in the error should reading it fail.

    Gzip-filtered datasets of plain values are inflated by libdeflate where it is installed (same values).
    """
    with hdf5_object(dset):
        values = read_rows(dset)
        return dset[()] if values is None else values


def _object_name(obj: h5py.HLObject | str, attribute: str | None) -> str | None:
    try:
        name = obj if isinstance(obj, str) else obj.name
    except (RuntimeError, ValueError, KeyError, OSError):
        return None  # a closed or invalid object: a block further out names the error
    if attribute is None:
        return name
    return f"{name} (attribute {attribute!r})"


def _anndata_element(err: BaseException) -> str | None:
    """The element anndata was reading when ``err`` was raised, from the note anndata adds, or ``None``."""
    for note in getattr(err, "__notes__", ()):
        match = ANNDATA_NOTE.fullmatch(note) if isinstance(note, str) else None
        if match:
            return join_path(match["parent"], ast.literal_eval(match["key"]))
    return None


def _location(err: BaseException) -> str | None:
    """The HDF5 object being read when ``err`` was raised: the innermost element named by anndata or this package."""
    return _anndata_element(err) or getattr(err, OBJECT_ATTRIBUTE, None)


@contextlib.contextmanager
def converted_read_errors(path: Path) -> Iterator[None]:
    """Turn errors about the file's content into :class:`~scanpy_loomio.LoomFormatError` naming the HDF5 path.

    Converted: errors raised inside h5py or anndata (the libraries reading the file) and any
    :class:`UnicodeDecodeError`. Errors raised by this package's own code pass through unchanged, so bugs stay
    visible; I/O errors from the operating system stay :class:`OSError`. The message names the object that
    :func:`hdf5_object` (or anndata) named for the error; ``/`` (or "a text value") when none did.
    """
    try:
        yield
    except LoomFormatError:
        raise
    except UnicodeDecodeError as err:
        where = _location(err) or "a text value"
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
        where = _location(err) or "/"
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
