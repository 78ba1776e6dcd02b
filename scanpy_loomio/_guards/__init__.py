"""Checks that run before and while a file is read, so a damaged or hostile file fails early and clearly.

A loom file is an HDF5 file, and HDF5 can do more than hold arrays: links can point into other files, virtual and
externally stored datasets can take their values from other files, and a dataset can declare a shape far larger than
what is stored. Before anything is read, this module

- opens the file read-only without HDF5 file locking, after checking that it is a regular file with an HDF5 signature
  (:func:`open_read_only`);
- walks the whole HDF5 tree once without following any link (:func:`check_structure`): external links, soft links that
  do not resolve or form a loop, hard-link cycles, virtual datasets backed by other files, datasets stored in external
  raw files, filters this installation cannot decode, names that are not UTF-8, and damaged datatypes and fill values
  (on which HDF5 crashes) are refused;
- checks, from the file's own bytes, the global heaps holding text and the stored lengths of text values, which HDF5
  trusts and hangs or allocates gigabytes on when they are damaged (:func:`check_global_heaps`,
  :func:`check_vlen_datasets`);
- checks that the loom objects are of the kinds the reader expects, and that this package's own record and codec
  attributes are well-formed and still fit the file (:func:`check_layout`, :func:`~scanpy_loomio._record.checks.usable_metadata`,
  :func:`~scanpy_loomio._record.checks.check_tags`);
- estimates the memory the read needs from shapes, dtypes and the chunk index, and refuses files that would need more
  than is available, or that declare far more matrix data than they store (:func:`check_read_size`).

While reading, :func:`converted_read_errors` turns errors raised inside h5py or anndata (the libraries that read the
file) into :class:`~scanpy_loomio.LoomFormatError` naming the HDF5 path, and leaves errors raised by this package's own
code as they are.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import stat
import struct
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import h5py
import numpy as np

from scanpy_loomio._errors import LoomFormatError
from scanpy_loomio._record.checks import check_tags
from scanpy_loomio._record.tags import AbsentMatrixTag, MatrixTag, graph_tag, layer_tag
from scanpy_loomio._spec.facts import NUMERIC_KINDS

__all__ = [
    "UnreadableFileError",
    "check_file",
    "check_global_heaps",
    "check_layout",
    "check_read_size",
    "check_structure",
    "check_vlen_datasets",
    "converted_read_errors",
    "open_read_only",
    "resolve_memory_limit",
]

#: The 8 bytes every HDF5 superblock starts with; it sits at byte 0 or at 512, 1024, 2048, … after a user block.
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: Groups nested deeper than this are refused: real loom files nest a few levels, and readers recurse.
MAX_DEPTH = 128
#: Matrix formats and kinds of matrix dtype a codec attribute may name.
MATRIX_FORMATS = frozenset({"csr", "csc", "dense"})
#: Bytes counted per text value (a Python ``str`` object and its pointer) and per obs/var name (also pandas' index).
TEXT_VALUE_BYTES = 64
NAME_BYTES = 128
#: Libraries this package calls to read the file; errors raised inside them are about the file.
READING_LIBRARIES = frozenset({"h5py", "anndata"})
#: Modules whose exception types mean "these compressed bytes are damaged" (they raise from C, without a frame).
DECODER_MODULES = frozenset({"zlib", "igzip_lib", "isal"})
#: Bytes per chunk position of the fast matrix reader's chunk table (offset, size and filter mask, int64 each).
CHUNK_TABLE_BYTES = 24
#: Chunk positions per matrix beyond which reading takes too long to be worth trying without being asked
#: (2**27 positions of loompy's 64 × 64 chunks: 5.6e11 elements, ten million cells × 56,000 genes).
MAX_CHUNK_POSITIONS = 2**27
#: A matrix declaring more empty space than the memory limit must store at least this fraction of its chunks.
MIN_STORED_FRACTION = 0.01
PACKAGE = __name__.split(".", 1)[0]

MemoryLimit = int | Literal["available"] | None


class UnreadableFileError(LoomFormatError, OSError):
    """The file is not HDF5 at all, or HDF5 cannot open it (empty, text, truncated, damaged header).

    It is both a :class:`~scanpy_loomio.LoomFormatError` and an :class:`OSError`, so either ``except`` clause catches it.
    """


# -- opening ---------------------------------------------------------------------------------------------------------
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
        # readers never need a lock; without this, HDF5 refuses to open a file another process has open for writing
        return h5py.File(path, "r", locking=False)
    except (TypeError, ValueError) as err:
        if "lock" not in str(err):
            raise
        # h5py or HDF5 too old for the option
    except OSError as err:
        if "flag values don't match" not in str(err):
            raise
        # this process already has the file open with locking on, and HDF5 opens a file only one way at a time
    return h5py.File(path, "r")


# -- structure -------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class DatasetInfo:
    """A dataset found while walking the file."""

    name: str
    dataset: h5py.Dataset

    @property
    def shape(self) -> tuple[int, ...]:
        """Declared shape (``()`` for scalars and null dataspaces)."""
        return tuple(self.dataset.shape or ())


def _error(path: Path, where: str, found: str, expected: str, fix: str = "") -> LoomFormatError:
    msg = f"{path}: {where}: found {found}; expected {expected}."
    return LoomFormatError(f"{msg} {fix}" if fix else msg)


def _join(parent: str, name: str) -> str:
    return f"{parent.rstrip('/')}/{name}"


_EXTERNAL_FIX = (
    "Links and data in other files are not followed by default, so a file cannot make the reader open other files; "
    "pass allow_external=True if you trust this file."
)


def _check_dataset(path: Path, name: str, dset: h5py.Dataset, allow_external: bool) -> None:
    if dset.is_virtual:
        for source in dset.virtual_sources():
            if source.file_name != "." and not allow_external:
                raise _error(
                    path,
                    name,
                    f"a virtual dataset reading {source.dset_name!r} from the file {source.file_name!r}",
                    "data stored in this file",
                    _EXTERNAL_FIX,
                )
    if dset.external and not allow_external:
        files = sorted({str(entry[0]) for entry in dset.external})
        raise _error(
            path,
            name,
            f"a dataset whose values are stored in the external file(s) {files}",
            "data stored in this file",
            _EXTERNAL_FIX,
        )
    problem = _type_problem(dset.id.get_type())
    if problem:
        # HDF5 accepts these when it opens the dataset and crashes (segmentation fault) when it converts the values
        raise _error(path, name, f"a damaged datatype ({problem})", "a datatype HDF5 can read", "The file is damaged.")
    plist = dset.id.get_create_plist()
    try:
        plist.fill_value_defined()
    except (ValueError, RuntimeError, OSError) as err:
        # HDF5 crashes (segmentation fault) when it later reads this fill value; it only checks it here
        raise _error(
            path,
            name,
            f"a damaged fill value description ({err})",
            "a consistent fill value",
            "The file is damaged; copy or download it again.",
        ) from None
    for i in range(plist.get_nfilters()):
        # optional filters too: chunks they were applied to need them to be read
        code, _flags, _values, filter_name = plist.get_filter(i)
        if not h5py.h5z.filter_avail(code):
            label = filter_name.decode("utf-8", "replace") if isinstance(filter_name, bytes) else str(filter_name)
            raise _error(
                path,
                name,
                f"data compressed with the HDF5 filter {label!r} (id {code}), which this installation cannot decode",
                "gzip, lzf or another filter HDF5 has",
                "Install and import the plugin first (e.g. `pip install hdf5plugin` and `import hdf5plugin`).",
            )


_STRING, _VLEN = 3, 9  # HDF5 datatype classes


def _type_problem(tid: Any) -> str | None:
    """A datatype field HDF5 does not check when it reads the file but crashes on later, or ``None``.

    Read from HDF5's own serialization of the type: the class and its bit fields as stored in the file.
    """
    try:
        raw = tid.encode()
    except (AttributeError, ValueError, RuntimeError, TypeError):
        return None
    if len(raw) < 5:
        return None
    kind, flags = raw[2] & 0x0F, raw[3]
    if kind == _VLEN:
        if flags & 0x0F not in (0, 1):  # 0: a sequence, 1: a string
            return f"a variable-length type of unknown kind {flags & 0x0F}"
        if flags & 0x0F == 1 and raw[4] & 0x0F > 1:
            return f"variable-length text in unknown character set {raw[4] & 0x0F}"
        return _type_problem(tid.get_super()) if flags & 0x0F == 0 else None
    if kind == _STRING and (flags & 0x0F > 2 or flags >> 4 > 1):
        return f"text with unknown padding {flags & 0x0F} or character set {flags >> 4}"
    if isinstance(tid, h5py.h5t.TypeCompoundID):
        for i in range(tid.get_nmembers()):
            problem = _type_problem(tid.get_member_type(i))
            if problem:
                return problem
    if isinstance(tid, h5py.h5t.TypeArrayID):
        return _type_problem(tid.get_super())
    return None


def _check_attributes(path: Path, where: str, obj: Any) -> None:
    """Attribute names must be text and their datatypes well-formed (HDF5 crashes on some damaged ones)."""
    for name in obj.attrs:
        label = f"{where} (attribute {name!r})"
        if not isinstance(name, str):  # h5py gives bytes for names that are not UTF-8
            raise _error(path, label, "an attribute name that is not UTF-8 text", "UTF-8 names")
        problem = _type_problem(obj.attrs.get_id(name).get_type())
        if problem:
            raise _error(path, label, f"a damaged datatype ({problem})", "a datatype HDF5 can read")


def _check_soft_link(path: Path, group: h5py.Group, name: str, link: h5py.SoftLink, ancestors: dict[int, str]) -> None:
    where = _join(group.name, name)
    try:
        target = group.get(name)
    except (KeyError, RuntimeError, OSError, ValueError) as err:
        reason = "it loops" if "too many links" in str(err) else f"it cannot be followed ({err})"
        raise _error(
            path,
            where,
            f"a soft link to {link.path!r} that does not resolve ({reason})",
            "a link to an object in this file",
        ) from None
    if target is None:
        raise _error(
            path, where, f"a soft link to {link.path!r}, which does not exist", "a link to an object in this file"
        )
    if isinstance(target, h5py.Group) and hash(target.id) in ancestors:
        raise _error(
            path, where, f"a soft link to {link.path!r}, a group that contains the link (a cycle)", "a tree of groups"
        )


def check_structure(file: h5py.File, path: Path, *, allow_external: bool = False) -> list[DatasetInfo]:
    """Walk every link of the file once, without following links, and return its datasets.

    Raises
    ------
    LoomFormatError
        For external links, virtual or externally stored datasets reading other files (unless ``allow_external``),
        soft links that do not resolve or loop, groups linked inside themselves, nesting deeper than
        :data:`MAX_DEPTH`, and filters this installation cannot decode. The message names the link or dataset.
    """
    _check_attributes(path, "/", file)
    datasets: list[DatasetInfo] = []
    visited: set[int] = set()
    # depth-first with an explicit stack (hostile files can nest deeper than Python's recursion limit);
    # `ancestors` holds the groups on the current path, to find cycles
    ancestors: dict[int, str] = {}
    stack: list[tuple[str, h5py.Group | None, int]] = [("enter", file, 0)]
    while stack:
        action, group, depth = stack.pop()
        if action == "leave":
            ancestors.pop(hash(group.id), None)
            continue
        key = hash(group.id)
        if depth > MAX_DEPTH:
            raise _error(
                path, group.name, f"groups nested more than {MAX_DEPTH} levels deep", "a shallow tree of groups"
            )
        visited.add(key)
        ancestors[key] = group.name
        stack.append(("leave", group, depth))
        for name in list(group.keys()):
            if not isinstance(name, str):  # h5py gives bytes for names that are not UTF-8
                raise _error(
                    path, _join(group.name, repr(name)), f"the name {name!r}, which is not UTF-8 text", "UTF-8 names"
                )
            where = _join(group.name, name)
            try:
                link = group.get(name, getlink=True)
            except (TypeError, KeyError, RuntimeError, OSError) as err:
                raise _error(
                    path, where, f"a link of a kind HDF5 cannot describe here ({err})", "a hard or soft link"
                ) from None
            if isinstance(link, h5py.ExternalLink):
                if allow_external:
                    continue
                raise _error(
                    path,
                    where,
                    f"an external link to {link.path!r} in the file {link.filename!r}",
                    "objects stored in this file",
                    _EXTERNAL_FIX,
                )
            if isinstance(link, h5py.SoftLink):
                _check_soft_link(path, group, name, link, ancestors)
                continue
            if not isinstance(link, h5py.HardLink):
                raise _error(path, where, f"a link of type {type(link).__name__}", "a hard or soft link")
            obj = group.get(name)
            if isinstance(obj, h5py.Datatype) or obj is None:
                raise _error(path, where, f"a {type(obj).__name__}", "datasets and groups only (no named datatypes)")
            _check_attributes(path, where, obj)
            if isinstance(obj, h5py.Dataset):
                _check_dataset(path, where, obj, allow_external)
                datasets.append(DatasetInfo(where, obj))
            elif isinstance(obj, h5py.Group):
                child = hash(obj.id)
                if child in ancestors:
                    raise _error(
                        path,
                        where,
                        f"the group {ancestors[child]!r} linked inside itself (a cycle)",
                        "a tree of groups",
                    )
                if child not in visited:
                    stack.append(("enter", obj, depth + 1))
    return datasets


def check_layout(file: h5py.File, path: Path) -> None:
    """Check that the loom objects the reader opens are of the kinds it expects (groups, 1-D graph datasets, …).

    Missing objects are left to the reader, which names what a loom file needs.

    Raises
    ------
    LoomFormatError
        Naming the object of the wrong kind.
    """
    for name in ("col_attrs", "row_attrs", "layers", "col_graphs", "row_graphs", "col_edges", "row_edges"):
        obj = file.get(name)
        if obj is not None and not isinstance(obj, h5py.Group):
            raise _error(path, f"/{name}", f"a {type(obj).__name__}", "a group")
    layers = file.get("layers")
    if layers is not None:
        for name, obj in layers.items():
            if not isinstance(obj, h5py.Dataset):
                raise _error(path, _join(layers.name, name), f"a {type(obj).__name__}", "a 2-D dataset (a layer)")
    for group_name in ("col_graphs", "row_graphs", "col_edges", "row_edges"):
        group = file.get(group_name)
        if group is None:
            continue
        for graph in group.values():
            if not isinstance(graph, h5py.Group):
                continue  # not a graph; the reader skips it
            for part in ("a", "b", "w"):
                obj = graph.get(part)
                if obj is None:
                    continue  # the reader names what is missing
                where = _join(graph.name, part)
                if not isinstance(obj, h5py.Dataset) or obj.ndim != 1 or obj.dtype.kind not in NUMERIC_KINDS:
                    found = (
                        f"a {obj.ndim}-D dataset of dtype {obj.dtype}"
                        if isinstance(obj, h5py.Dataset)
                        else f"a {type(obj).__name__}"
                    )
                    raise _error(path, where, found, "a 1-D dataset of numbers (an edge list column)")


def check_file(file: h5py.File, path: Path, *, allow_external: bool = False) -> list[DatasetInfo]:
    """Everything checked before reading: structure, global heaps, layout and codecs."""
    datasets = check_structure(file, path, allow_external=allow_external)
    checked: set[int] = set()  # global heaps already checked
    check_global_heaps(file, path, checked)
    check_vlen_datasets(file, path, datasets, checked)
    check_layout(file, path)
    check_tags(file, path)
    return datasets


# -- raw bytes -------------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _raw_bytes(file: h5py.File, path: Path) -> Iterator[Any]:
    """A binary file object on the very file HDF5 has open, even if ``path`` was replaced since it was opened."""
    handle = None
    if file.driver == "sec2":  # its handle is a POSIX file descriptor
        with contextlib.suppress(AttributeError, ValueError, TypeError, OSError, RuntimeError):
            handle = os.fdopen(os.dup(file.id.get_vfd_handle()), "rb")
    if handle is None:
        handle = open(path, "rb")
    try:
        yield handle
    finally:
        handle.close()


# -- global heaps ----------------------------------------------------------------------------------------------------
#: A global heap collection (where HDF5 keeps variable-length strings) starts with this signature and version 1.
GCOL_SIGNATURE = b"GCOL\x01\x00\x00\x00"
#: Files up to this size are searched whole for collections (about a second per 2 GB); in larger ones only the
#: collections that datasets' text points to are checked.
WHOLE_SCAN_BYTES = 512 * 2**20


def _heap_problem(image: Any, start: int, sizeof_size: int, file_size: int) -> str | None:
    """Why HDF5 would loop forever or run off the collection parsing the global heap at ``start``, or ``None``.

    HDF5 walks a collection's objects by their sizes; an object that takes no room makes it loop forever, and one
    larger than the collection makes it read past the end. Collections HDF5 would reject with an error are left to it.
    """
    header = len(GCOL_SIGNATURE) + sizeof_size
    object_header = 8 + sizeof_size
    if start + header > file_size or bytes(image[start : start + len(GCOL_SIGNATURE)]) != GCOL_SIGNATURE:
        return None  # not a collection: HDF5 reports that itself
    size = int.from_bytes(image[start + 8 : start + header], "little")
    end = start + size
    if size < header or end > file_size:
        return None  # HDF5 reports these itself
    position = start + header
    unpack = struct.Struct("<H6x" + {2: "H", 4: "I", 8: "Q"}[sizeof_size]).unpack_from  # index, …, size
    while position < end:
        if position + object_header > end:
            break  # a tail too small for an object header is free space
        index, length = unpack(image, position)
        need = object_header + ((length + 7) & ~7) if index else length
        if need < object_header or need > end - position:
            return (
                f"object {index} at byte {position - start} of {need} bytes in a collection of {size} bytes"
                if need
                else f"object {index} at byte {position - start} taking no room"
            )
        position += need
    return None


def _heap_error(path: Path, address: int, problem: str) -> LoomFormatError:
    return _error(
        path,
        f"global heap at byte {address}",
        f"a damaged collection of text values ({problem})",
        "objects that fill the collection exactly",
        "HDF5 would hang or read past it, so it is not read. The file is damaged; copy or download it again.",
    )


def check_global_heaps(file: h5py.File, path: Path, checked: set[int] | None = None) -> None:
    """Refuse global heap collections that would make HDF5 loop forever or read past them.

    HDF5 itself hangs on a collection whose object sizes are damaged (an object taking no room is walked over
    forever), so collections are checked here, from the file's bytes, before HDF5 reads any text. Files up to
    :data:`WHOLE_SCAN_BYTES` are searched whole, which covers text in attributes too; :func:`check_vlen_datasets`
    checks the collections datasets point to in files of any size.

    Raises
    ------
    LoomFormatError
        Naming the byte offset of the damaged collection.
    """
    import mmap

    _sizeof_addr, sizeof_size = file.id.get_create_plist().get_sizes()
    with _raw_bytes(file, path) as handle:
        file_size = os.fstat(handle.fileno()).st_size
        if file_size == 0 or file_size > WHOLE_SCAN_BYTES:
            return
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as image:
            found = image.find(GCOL_SIGNATURE)
            while found >= 0:
                problem = _heap_problem(image, found, sizeof_size, file_size)
                if problem:
                    raise _heap_error(path, found, problem)
                if checked is not None:
                    checked.add(found)
                found = image.find(GCOL_SIGNATURE, found + 1)


def _check_heaps_at(
    handle: Any, path: Path, addresses: set[int], base: int, sizeof_size: int, file_size: int, checked: set[int]
) -> None:
    """Check the collections at these addresses (relative to the superblock at ``base``) not ``checked`` yet."""
    for address in sorted(addresses):
        start = base + address
        if start in checked:
            continue
        handle.seek(start)
        header = handle.read(len(GCOL_SIGNATURE) + sizeof_size)
        if len(header) < len(GCOL_SIGNATURE) + sizeof_size or not header.startswith(GCOL_SIGNATURE):
            continue  # HDF5 reports a missing collection itself
        size = int.from_bytes(header[len(GCOL_SIGNATURE) :], "little")
        handle.seek(start)
        image = handle.read(min(size, file_size - start))
        problem = _heap_problem(image, 0, sizeof_size, len(image))
        if problem:
            raise _heap_error(path, start, problem)


# -- variable-length values ------------------------------------------------------------------------------------------
_FILTER_DEFLATE, _FILTER_SHUFFLE, _FILTER_FLETCHER32 = 1, 2, 3


def _vlen_base_size(dset: h5py.Dataset) -> int | None:
    """Bytes per item of a variable-length dataset's values (1 for text), or ``None`` when it is not one."""
    tid = dset.id.get_type()
    if isinstance(tid, h5py.h5t.TypeStringID) and tid.is_variable_str():
        return 1
    if tid.get_class() == h5py.h5t.VLEN:
        return max(1, tid.get_super().get_size())
    return None


def _unfilter(raw: bytes, filters: list[int], skipped: int, element: int, expected: int) -> bytes | None:
    """Undo a chunk's deflate/shuffle/fletcher32 pipeline; ``None`` when it uses another filter or is damaged."""
    import zlib

    data = raw
    for position in range(len(filters) - 1, -1, -1):
        if skipped & (1 << position):
            continue
        code = filters[position]
        if code == _FILTER_DEFLATE:
            inflater = zlib.decompressobj()
            try:
                data = inflater.decompress(data, expected + 1)  # never more than a chunk's worth
            except zlib.error:
                return None
        elif code == _FILTER_SHUFFLE:
            if len(data) % element == 0:
                data = np.frombuffer(data, dtype=np.uint8).reshape(element, -1).T.tobytes()
        elif code == _FILTER_FLETCHER32:
            data = data[:-4]
        else:
            return None
    return data


def _descriptor_problem(values: np.ndarray, base_size: int, file_size: int) -> str | None:
    nbytes = values["length"].astype(np.uint64) * np.uint64(base_size)
    bad = (nbytes > file_size) | ((values["length"] > 0) & (values["address"] >= file_size))
    if not bad.any():
        return None
    i = int(np.argmax(bad))
    return f"value {i} of a block claiming {int(nbytes[i]):,} bytes at byte {int(values['address'][i]):,}"


def _chunk_offsets(dset: h5py.Dataset) -> list[tuple[int, ...]]:
    offsets: list[tuple[int, ...]] = []
    dset.id.chunk_iter(lambda chunk: offsets.append(tuple(chunk.chunk_offset)))
    return offsets


def check_vlen_datasets(
    file: h5py.File, path: Path, datasets: list[DatasetInfo], checked: set[int] | None = None
) -> None:
    """Refuse variable-length values (text) whose stored lengths or addresses lie beyond the end of the file.

    HDF5 allocates and fills the memory a stored length claims before it finds the address invalid, so one damaged
    length makes it spend gigabytes and many seconds per value. The stored descriptors of contiguous and chunked
    (deflate, shuffle, fletcher32) datasets are checked here from the file's bytes; compact datasets and attributes
    are small and left to HDF5.

    Raises
    ------
    LoomFormatError
        Naming the dataset and the first impossible value.
    """
    plist = file.id.get_create_plist()
    sizeof_addr, sizeof_size = plist.get_sizes()
    base = plist.get_userblock()
    record = np.dtype([("length", "<u4"), ("address", f"<u{sizeof_addr}"), ("index", "<u4")])
    heaps: set[int] = set()
    with _raw_bytes(file, path) as handle:
        file_size = os.fstat(handle.fileno()).st_size
        for info in datasets:
            dset = info.dataset
            base_size = _vlen_base_size(dset)
            if base_size is None or dset.id.get_storage_size() == 0:
                continue
            dcpl = dset.id.get_create_plist()
            layout = dcpl.get_layout()
            blocks: list[bytes] = []
            if layout == h5py.h5d.CONTIGUOUS:
                offset = dset.id.get_offset()
                if offset is not None:
                    handle.seek(base + offset)
                    blocks.append(handle.read(min(dset.id.get_storage_size(), file_size)))
            elif layout == h5py.h5d.CHUNKED and hasattr(dset.id, "chunk_iter"):
                filters = [dcpl.get_filter(i)[0] for i in range(dcpl.get_nfilters())]
                expected = _elements(dset.chunks) * record.itemsize
                for chunk_offset in _chunk_offsets(dset):
                    skipped, raw = dset.id.read_direct_chunk(chunk_offset)
                    data = _unfilter(bytes(raw), filters, skipped, record.itemsize, expected)
                    if data is not None:
                        blocks.append(data[:expected])
            for data in blocks:
                values = np.frombuffer(data[: len(data) // record.itemsize * record.itemsize], dtype=record)
                problem = _descriptor_problem(values, base_size, file_size)
                heaps.update(np.unique(values["address"][values["length"] > 0]).tolist())
                if problem:
                    raise _error(
                        path,
                        info.name,
                        f"variable-length data with an impossible length or address ({problem})",
                        f"values stored inside the file ({file_size:,} bytes)",
                        "HDF5 would allocate that much before failing. The file is damaged; copy or download it again.",
                    )
        # the collections that text points to (in large files the only ones checked)
        _check_heaps_at(handle, path, heaps, base, sizeof_size, file_size, checked if checked is not None else set())


# -- memory ----------------------------------------------------------------------------------------------------------
def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_memory() -> int | None:
    """Bytes this process can still allocate: the least of free RAM, the cgroup's room and ``RLIMIT_AS``."""
    candidates: list[int] = []
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                candidates.append(int(line.split()[1]) * 1024)
                break
    if not candidates:
        with contextlib.suppress(AttributeError, ValueError, OSError):
            candidates.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < 2**60:
            candidates.append(max(0, limit - usage))
            break
    with contextlib.suppress(ImportError, OSError, ValueError):
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            pages = int(Path("/proc/self/statm").read_text().split()[0])
            candidates.append(max(0, soft - pages * os.sysconf("SC_PAGE_SIZE")))
    return min(candidates) if candidates else None


def resolve_memory_limit(memory_limit: MemoryLimit) -> int | None:
    """Turn the ``memory_limit`` argument into bytes (``None``: no limit)."""
    if memory_limit is None:
        return None
    if isinstance(memory_limit, str):
        if memory_limit != "available":
            msg = f"memory_limit={memory_limit!r}; expected 'available', a number of bytes, or None for no limit."
            raise ValueError(msg)
        return available_memory()
    if isinstance(memory_limit, bool) or not isinstance(memory_limit, int | np.integer) or memory_limit < 0:
        msg = f"memory_limit={memory_limit!r}; expected 'available', a number of bytes (>= 0), or None for no limit."
        raise TypeError(msg)
    return int(memory_limit)


def format_bytes(n: float) -> str:
    """``1536`` → ``'1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


def _elements(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape, dtype=object)) if shape else 1


def _value_bytes(dtype: np.dtype) -> int:
    return TEXT_VALUE_BYTES if dtype.kind == "O" else max(1, dtype.itemsize)


def stored_elements(dset: h5py.Dataset) -> int:
    """Upper bound on the elements a dataset has data for (allocated chunks × chunk size, or all if contiguous)."""
    total = _elements(dset.shape)
    if dset.chunks is None:
        return total if dset.id.get_storage_size() > 0 or total == 0 else 0
    try:
        n_chunks = dset.id.get_num_chunks()
    except (AttributeError, RuntimeError, OSError, ValueError):
        return total  # HDF5 too old to count chunks: assume everything is stored
    return min(total, n_chunks * _elements(dset.chunks))


@dataclass(frozen=True)
class Cost:
    """Memory one part of the read needs."""

    where: str
    nbytes: int
    what: str


def _matrix_costs(path: Path, info: DatasetInfo, *, sparse: bool, dtype: str | None, limit: int | None) -> list[Cost]:
    dset = info.dataset
    if dset.ndim != 2 or dset.dtype.kind not in NUMERIC_KINDS:
        raise _error(
            path,
            info.name,
            f"a {dset.ndim}-D dataset of dtype {dset.dtype}",
            "a 2-D dataset of numbers (genes × cells)",
        )
    tag = layer_tag(dset)  # checked by check_tags before
    if isinstance(tag, AbsentMatrixTag):
        return []
    kind = tag if isinstance(tag, MatrixTag) else None
    fmt = (kind.format if kind else None) or ("csr" if sparse else "dense")
    out_dtype = np.dtype((kind.dtype if kind else None) or dtype or dset.dtype)
    elements = _elements(dset.shape)
    declared = elements * max(dset.dtype.itemsize, out_dtype.itemsize)
    costs: list[Cost] = []
    if dset.chunks is not None:
        grid = _elements(tuple(-(-n // c) for n, c in zip(dset.shape, dset.chunks, strict=True)))
        if limit is not None and grid > MAX_CHUNK_POSITIONS:
            raise _error(
                path,
                info.name,
                f"a {dset.shape} {dset.dtype} dataset in chunks of {dset.chunks}: {grid:,} chunk positions",
                f"at most {MAX_CHUNK_POSITIONS:,} chunk positions",
                "Reading would visit every one of them; the file may be damaged or crafted. Pass memory_limit=None "
                "to read it anyway.",
            )
        costs.append(Cost(info.name, grid * CHUNK_TABLE_BYTES, f"a table of {grid:,} chunk positions {dset.chunks}"))
        chunk_bytes = _elements(dset.chunks) * dset.dtype.itemsize
        if limit is not None and chunk_bytes > limit:
            raise _error(
                path,
                info.name,
                f"chunks of {dset.chunks} ({format_bytes(chunk_bytes)} each, decompressed whole)",
                f"chunks that fit in the memory limit of {format_bytes(limit)}",
                "Pass memory_limit=None to read it anyway.",
            )
    if fmt == "dense":
        return [*costs, Cost(info.name, declared, f"a dense {dset.shape[1]} × {dset.shape[0]} {out_dtype} matrix")]
    fill = dset.fillvalue
    if fill is not None and np.any(np.asarray(fill) != 0):
        # every element not stored reads as the fill value: a sparse result holding all of them
        per_value = dset.dtype.itemsize + 8
        shown = fill.item() if isinstance(fill, np.generic) else fill
        costs.append(Cost(info.name, elements * per_value, f"{elements:,} non-zeros (fill value {shown!r})"))
    if limit is not None and declared > limit:
        # a real sparse matrix leaves chunks of zeros unstored, but not nearly all of them
        stored = stored_elements(dset)
        empty = (elements - stored) * dset.dtype.itemsize
        if empty > limit and stored < MIN_STORED_FRACTION * elements:
            raise _error(
                path,
                info.name,
                f"a {dset.shape} {dset.dtype} dataset declaring {elements:,} elements ({format_bytes(declared)}) "
                f"with data stored for at most {stored:,} of them",
                f"a matrix whose declared size is backed by stored data (at least {MIN_STORED_FRACTION:.0%} of it)",
                f"Reading it would scan {format_bytes(empty)} of empty space, more than the memory limit of "
                f"{format_bytes(limit)}; a real matrix this size stores more of its chunks. The file may be damaged "
                "or crafted. Pass memory_limit=None to read it anyway.",
            )
    return costs


def check_read_size(
    file: h5py.File,
    path: Path,
    datasets: list[DatasetInfo],
    *,
    n_obs: int,
    n_vars: int,
    sparse: bool = True,
    dtype: str | None = None,
    matrices: bool = True,
    limit: int | None,
) -> None:
    """Refuse, before allocating anything, a read that needs more memory than ``limit`` bytes.

    Counted: dense matrices (sparse ones need what is stored, which is not known before reading; their declared size
    must instead be backed by stored chunks), every other dataset at its declared size, obs/var names and graphs
    recorded as dense.

    Raises
    ------
    LoomFormatError
        Naming the largest parts, the need and the limit, and how to read anyway.
    """
    matrix_names = {"/matrix"} | {d.name for d in datasets if d.name.startswith("/layers/")}
    costs: list[Cost] = []
    for info in datasets:
        if info.name in matrix_names:
            if info.name == "/matrix" or matrices:
                found = _matrix_costs(path, info, sparse=sparse, dtype=dtype, limit=limit)
                costs.extend(found if matrices else [])
            continue
        nbytes = _elements(info.shape) * _value_bytes(info.dataset.dtype)
        costs.append(Cost(info.name, nbytes, f"{info.shape} {info.dataset.dtype}"))
    costs.append(Cost("obs/var names", (n_obs + n_vars) * NAME_BYTES, f"{n_obs:,} + {n_vars:,} names"))
    for group_name, n in (("col_graphs", n_obs), ("row_graphs", n_vars)):
        group = file.get(group_name)
        if not isinstance(group, h5py.Group):
            continue
        for name, graph in group.items():
            codec = graph_tag(graph) if graph is not None else None
            if codec and codec.matrix.format == "dense":
                itemsize = np.dtype(codec.matrix.dtype or "float64").itemsize
                costs.append(Cost(_join(group.name, name), n * n * itemsize, f"a dense {n} × {n} graph"))
    need = sum(c.nbytes for c in costs)
    if limit is None or need <= limit:
        return
    largest = sorted(costs, key=lambda c: c.nbytes, reverse=True)[:3]
    parts = "; ".join(f"{c.where}: {c.what}, {format_bytes(c.nbytes)}" for c in largest)
    msg = (
        f"{path}: /: found a file whose reading needs about {format_bytes(need)} of memory (largest parts: {parts}); "
        f"expected at most the memory limit of {format_bytes(limit)}. Read less (sparse=True, matrices=False) or "
        "pass memory_limit=None to read it anyway."
    )
    raise LoomFormatError(msg)


# -- error boundary --------------------------------------------------------------------------------------------------
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
                    return _join(name, child) if isinstance(child, str) and not child.startswith("/") else name
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
        raise _error(
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
        raise _error(
            path,
            where,
            f"content that cannot be read ({type(err).__name__}: {text})",
            "a readable HDF5 object",
            "The file is damaged, truncated or was written by a tool that broke it; copy or download it again.",
        ) from err
