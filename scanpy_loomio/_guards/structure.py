"""The shape of the file: every link walked once without following any, and the loom objects' kinds.

External links, soft links that do not resolve or form a loop, hard-link cycles, virtual datasets backed by other
files, datasets stored in external raw files, filters this installation cannot decode, names that are not UTF-8, and
damaged datatypes and fill values (on which HDF5 crashes) are refused before anything is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from itertools import chain
from typing import TYPE_CHECKING, Any

import h5py

from scanpy_loomio._guards.boundary import hdf5_object
from scanpy_loomio._guards.problems import file_error, join_path
from scanpy_loomio._spec.rules import graph_violations, group_violations, layer_violations, raise_first

if TYPE_CHECKING:
    from pathlib import Path

#: Groups nested deeper than this are refused: real loom files nest a few levels, and readers recurse.
MAX_DEPTH = 128


@dataclass(frozen=True)
class DatasetInfo:
    """A dataset found while walking the file."""

    name: str
    dataset: h5py.Dataset

    @property
    def shape(self) -> tuple[int, ...]:
        """Declared shape (``()`` for scalars and null dataspaces)."""
        return tuple(self.dataset.shape or ())


_EXTERNAL_FIX = (
    "Links and data in other files are not followed by default, so a file cannot make the reader open other files; "
    "pass allow_external=True if you trust this file."
)


def _check_dataset(path: Path, name: str, dset: h5py.Dataset, allow_external: bool) -> None:
    if dset.is_virtual:
        for source in dset.virtual_sources():
            if source.file_name != "." and not allow_external:
                raise file_error(
                    path,
                    name,
                    f"a virtual dataset reading {source.dset_name!r} from the file {source.file_name!r}",
                    "data stored in this file",
                    _EXTERNAL_FIX,
                )
    if dset.external and not allow_external:
        files = sorted({str(entry[0]) for entry in dset.external})
        raise file_error(
            path,
            name,
            f"a dataset whose values are stored in the external file(s) {files}",
            "data stored in this file",
            _EXTERNAL_FIX,
        )
    problem = _type_problem(dset.id.get_type())
    if problem:
        # HDF5 accepts these when it opens the dataset and crashes (segmentation fault) when it converts the values
        raise file_error(
            path, name, f"a damaged datatype ({problem})", "a datatype HDF5 can read", "The file is damaged."
        )
    plist = dset.id.get_create_plist()
    try:
        plist.fill_value_defined()
    except (ValueError, RuntimeError, OSError) as err:
        # HDF5 crashes (segmentation fault) when it later reads this fill value; it only checks it here
        raise file_error(
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
            raise file_error(
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
    with hdf5_object(obj):
        names = list(obj.attrs)
    for name in names:
        label = f"{where} (attribute {name!r})"
        if not isinstance(name, str):  # h5py gives bytes for names that are not UTF-8
            raise file_error(path, label, "an attribute name that is not UTF-8 text", "UTF-8 names")
        with hdf5_object(obj, attribute=name):
            tid = obj.attrs.get_id(name).get_type()
        problem = _type_problem(tid)
        if problem:
            raise file_error(path, label, f"a damaged datatype ({problem})", "a datatype HDF5 can read")


def _check_soft_link(path: Path, group: h5py.Group, name: str, link: h5py.SoftLink, ancestors: dict[int, str]) -> None:
    where = join_path(group.name, name)
    try:
        target = group.get(name)
    except (KeyError, RuntimeError, OSError, ValueError) as err:
        reason = "it loops" if "too many links" in str(err) else f"it cannot be followed ({err})"
        raise file_error(
            path,
            where,
            f"a soft link to {link.path!r} that does not resolve ({reason})",
            "a link to an object in this file",
        ) from None
    if target is None:
        raise file_error(
            path, where, f"a soft link to {link.path!r}, which does not exist", "a link to an object in this file"
        )
    if isinstance(target, h5py.Group) and hash(target.id) in ancestors:
        raise file_error(
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
    stack: list[tuple[str, h5py.Group, int]] = [("enter", file, 0)]
    while stack:
        action, group, depth = stack.pop()
        if action == "leave":
            ancestors.pop(hash(group.id), None)
            continue
        key = hash(group.id)
        if depth > MAX_DEPTH:
            raise file_error(
                path, group.name, f"groups nested more than {MAX_DEPTH} levels deep", "a shallow tree of groups"
            )
        visited.add(key)
        ancestors[key] = group.name
        stack.append(("leave", group, depth))
        with hdf5_object(group):
            names = list(group.keys())
        for name in names:
            if not isinstance(name, str):  # h5py gives bytes for names that are not UTF-8
                raise file_error(
                    path,
                    join_path(group.name, repr(name)),
                    f"the name {name!r}, which is not UTF-8 text",
                    "UTF-8 names",
                )
            where = join_path(group.name, name)
            try:
                link = group.get(name, getlink=True)
            except (TypeError, KeyError, RuntimeError, OSError) as err:
                raise file_error(
                    path, where, f"a link of a kind HDF5 cannot describe here ({err})", "a hard or soft link"
                ) from None
            if isinstance(link, h5py.ExternalLink):
                if allow_external:
                    continue
                raise file_error(
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
                raise file_error(path, where, f"a link of type {type(link).__name__}", "a hard or soft link")
            with hdf5_object(where):
                obj = group.get(name)
            if isinstance(obj, h5py.Datatype) or obj is None:
                raise file_error(
                    path, where, f"a {type(obj).__name__}", "datasets and groups only (no named datatypes)"
                )
            _check_attributes(path, where, obj)
            if isinstance(obj, h5py.Dataset):
                with hdf5_object(obj):
                    _check_dataset(path, where, obj, allow_external)
                datasets.append(DatasetInfo(where, obj))
            elif isinstance(obj, h5py.Group):
                child = hash(obj.id)
                if child in ancestors:
                    raise file_error(
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
    raise_first(chain(group_violations(file), layer_violations(file), graph_violations(file)), path)
