"""Build the intersphinx inventories (``objects.inv``) of the projects these docs link to, from the installed packages.

The docs are built without network access, so intersphinx cannot download each project's ``objects.inv``. This
script writes one instead: it walks the public API of the installed package and maps every object to the page
where that project's documentation site documents it (numpy's ``reference/generated/numpy.ndarray.html``, pandas'
``reference/api/pandas.DataFrame.html``, ...). The files are committed; ``docs/conf.py`` points
``intersphinx_mapping`` at them. Run it again after a dependency's documentation moves or grows::

    python docs/_inventories/make_inventories.py  # all projects
    python docs/_inventories/make_inventories.py numpy pandas

The format is Sphinx's inventory version 2 (``sphinx.util.inventory``): four header lines, then zlib-compressed
lines ``name domain:role priority uri display-name``, where a ``uri`` ending in ``$`` stands for the uri with the
name in place of the ``$`` and a display name ``-`` for the name itself.
"""

from __future__ import annotations

import argparse
import builtins
import importlib
import inspect
import re
import sys
import types
import warnings
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

HERE = Path(__file__).parent

#: ``(full name, role)``: one object, with the role Sphinx's Python domain gives it (``py:class``, ...).
Entry = tuple[str, str]


@dataclass(frozen=True)
class Project:
    """A documentation site, the installed modules it documents, and where it puts each object."""

    name: str
    """The intersphinx key and the file name (``<name>.inv``)."""
    distribution: str | None
    """The installed distribution whose version the inventory records; None for the interpreter's."""
    url: str
    """The site's base address, which the uris are relative to."""
    modules: tuple[str, ...]
    """Modules whose public names (``__all__``, else those without a leading underscore) the site documents."""
    page: Callable[[str, str], str | None]
    """``(full name, role)`` -> the page documenting it, relative to :attr:`url`; None leaves the object out."""
    members: bool = True
    """Whether the public methods and attributes of each class are documented too."""
    skip: frozenset[str] = frozenset()
    """Names the modules export but the site does not document (another project's classes, re-exported)."""


def generated_pages(prefix: str) -> Callable[[str, str], str | None]:
    """One page per object, named after it: autosummary's ``:toctree:`` layout (numpy, pandas, anndata, ...)."""
    return lambda name, role: None if role == "py:module" else f"{prefix}{name}.html"


# -- Walking a package's public API ----------------------------------------------------------------------------


def public_names(module: types.ModuleType) -> list[str]:
    """The names a module exports: its ``__all__``, and its own objects whose names have no leading underscore.

    Objects of other packages count only when ``__all__`` lists them (``scanpy.read_loom`` is anndata's function),
    and ``__all__`` alone is not enough: some modules star-import names it does not list (``pandas.api.types``).
    """
    root = module.__name__.partition(".")[0]
    own = {n for n, obj in vars(module).items() if not n.startswith("_") and defined_in(obj, root)}
    return sorted(own | set(getattr(module, "__all__", ())))


def role_of(obj: object, *, member: bool = False) -> str:
    """The Python-domain role documenting ``obj``: a module, class, exception, function, method, data or attribute."""
    if isinstance(obj, types.ModuleType):
        return "py:module"
    if isinstance(obj, type):
        return "py:exception" if issubclass(obj, BaseException) else "py:class"
    if callable(obj):
        return "py:method" if member else "py:function"
    return "py:attribute" if member else "py:data"


def defined_in(obj: object, root: str) -> bool:
    """Whether ``obj`` belongs to the package ``root`` (names re-exported from other packages are left out)."""
    module = getattr(obj, "__module__", None)
    if not isinstance(module, str):
        return True  # data (numbers, strings, ...) has no module of its own
    return module == root or module.startswith(f"{root}.")


def class_members(cls: type) -> Iterator[tuple[str, object]]:
    """The public methods and attributes of a class, inherited ones included, without those of :class:`object`."""
    for name in sorted(dir(cls)):
        if name.startswith("_") or hasattr(object, name):
            continue
        try:
            yield name, inspect.getattr_static(cls, name)
        except AttributeError:
            continue


def member_role(value: object) -> str:
    """A class member's role: methods (and class or static methods) and attributes (properties, descriptors, data)."""
    if isinstance(value, classmethod | staticmethod):
        value = value.__func__
    if isinstance(value, property | types.GetSetDescriptorType | types.MemberDescriptorType):
        return "py:attribute"
    if isinstance(value, type):
        return role_of(value)
    return role_of(value, member=True)


def add_members(found: dict[str, str], full: str, cls: type) -> None:
    """Add the members of class ``cls`` (documented as ``full``), and those of its accessors (``Series.str``)."""
    for member, value in class_members(cls):
        name = f"{full}.{member}"
        found.setdefault(name, member_role(value))
        try:
            namespace = getattr(cls, member)
        except Exception:  # noqa: BLE001 - a descriptor that fails on the class is no accessor
            continue
        if isinstance(namespace, type) and not isinstance(value, type):  # a descriptor giving a class: an accessor
            found[name] = "py:attribute"
            for sub, sub_value in class_members(namespace):
                found.setdefault(f"{name}.{sub}", member_role(sub_value))


def walk(project: Project) -> list[Entry]:
    """Every ``(full name, role)`` the project documents among the objects of its :attr:`Project.modules`."""
    found: dict[str, str] = {}
    classes: set[type] = set()  # a class's members are documented once, where it is first found
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # deprecated names warn when looked up; they are still documented
        for module_name in project.modules:
            module = importlib.import_module(module_name)
            found.setdefault(module_name, "py:module")
            for name in public_names(module):
                obj = getattr(module, name, None)
                if obj is None or isinstance(obj, types.ModuleType):
                    continue
                full = f"{module_name}.{name}"
                if full in project.skip:
                    continue
                found.setdefault(full, role_of(obj))
                if isinstance(obj, type) and project.members and obj not in classes:
                    classes.add(obj)
                    add_members(found, full, obj)
    return sorted(found.items())


# -- The projects ----------------------------------------------------------------------------------------------

NUMPY_CONSTANTS = frozenset({"e", "euler_gamma", "inf", "nan", "newaxis", "pi"})


def numpy_page(name: str, role: str) -> str | None:
    """numpy: constants and scalar types have one page each, typing its own, everything else a generated page."""
    short = name.removeprefix("numpy.")
    if role == "py:module":
        return None
    if name.startswith("numpy.typing."):
        return "reference/typing.html"
    if short in NUMPY_CONSTANTS:
        return "reference/constants.html"
    obj = getattr(importlib.import_module("numpy"), short, None) if "." not in short else None
    if isinstance(obj, type) and issubclass(obj, importlib.import_module("numpy").generic):
        return "reference/arrays.scalars.html"
    if role == "py:data":
        return None  # other numbers and flags are documented nowhere in particular
    return f"reference/generated/{name}.html"


#: h5py documents its high-level API on hand-written pages, one per kind of object.
H5PY_PAGES = {
    "h5py.File": "high/file.html",
    "h5py.Group": "high/group.html",
    "h5py.Dataset": "high/dataset.html",
    "h5py.AttributeManager": "high/attr.html",
    "h5py.Datatype": "high/group.html",
    "h5py.Reference": "refs.html",
    "h5py.RegionReference": "refs.html",
    "h5py.VirtualLayout": "vds.html",
    "h5py.VirtualSource": "vds.html",
    "h5py.get_config": "config.html",
}
#: The functions that make and recognize h5py's special dtypes (``special.html``).
H5PY_SPECIAL_TYPES = frozenset(
    {
        "check_dtype",
        "check_enum_dtype",
        "check_opaque_dtype",
        "check_string_dtype",
        "check_vlen_dtype",
        "enum_dtype",
        "opaque_dtype",
        "special_dtype",
        "string_dtype",
        "vlen_dtype",
    }
)


def h5py_page(name: str, role: str) -> str | None:
    """h5py: the page of the class an object belongs to, or the special types page."""
    parts = name.split(".")
    if role != "py:module" and len(parts) == 2 and parts[1] in H5PY_SPECIAL_TYPES:
        return "special.html"
    return H5PY_PAGES.get(".".join(parts[:2]))


#: Python's standard library: the modules these docs and docstrings name, and the pages of the built-in names.
PYTHON_MODULES = (
    "abc",
    "argparse",
    "collections",
    "collections.abc",
    "contextlib",
    "dataclasses",
    "enum",
    "functools",
    "importlib",
    "importlib.metadata",
    "io",
    "itertools",
    "json",
    "logging",
    "os",
    "os.path",
    "pathlib",
    "re",
    "tempfile",
    "types",
    "typing",
    "warnings",
    "zlib",
)
PYTHON_CONSTANTS = frozenset({"False", "True", "None", "NotImplemented", "Ellipsis", "__debug__"})
#: Built-in types documented with their operations (``stdtypes.html``) rather than among the functions.
PYTHON_STDTYPES = frozenset(
    {"bytearray", "bytes", "dict", "frozenset", "list", "memoryview", "range", "set", "str", "tuple"}
)
#: Names ``typing`` documents as data (special forms), which Sphinx links with ``:py:data:``.
TYPING_DATA = frozenset(
    {"Any", "Callable", "ClassVar", "Concatenate", "Final", "Literal", "LiteralString", "Never", "NoReturn"}
    | {"Optional", "Self", "TypeAlias", "TypeGuard", "TypeIs", "Union", "Unpack", "Required", "NotRequired"}
    | {"ReadOnly", "Annotated", "TYPE_CHECKING"}
)


def python_entries() -> list[Entry]:
    """The built-in names (functions, types, exceptions, constants) and the public names of :data:`PYTHON_MODULES`.

    The methods of the built-in types are left out: the Python docs describe most of them in tables, not as objects.
    """
    found: dict[str, str] = dict.fromkeys(PYTHON_CONSTANTS, "py:data")
    for name, obj in vars(builtins).items():
        if not name.startswith("_") and name not in found:
            found[name] = role_of(obj)
    for module_name in PYTHON_MODULES:
        module = importlib.import_module(module_name)
        found[module_name] = "py:module"
        for name in public_names(module):
            obj = getattr(module, name, None)
            if isinstance(obj, types.ModuleType):
                continue
            full = f"{module_name}.{name}"
            found[full] = "py:data" if module_name == "typing" and name in TYPING_DATA else role_of(obj)
            if isinstance(obj, type) and defined_in(obj, module_name.partition(".")[0]):
                for member, value in class_members(obj):
                    found.setdefault(f"{full}.{member}", member_role(value))
    return sorted(found.items())


def python_page(name: str, role: str) -> str | None:
    """Python: a module's page (``library/pathlib.html``); built-ins on the constants, exceptions, types or functions."""
    if role == "py:module":
        return f"library/{name}.html"
    modules = [m for m in PYTHON_MODULES if name.startswith(f"{m}.")]
    if modules:
        return f"library/{max(modules, key=len)}.html"
    if name in PYTHON_CONSTANTS:
        return "library/constants.html"
    if role == "py:exception":
        return "library/exceptions.html"
    return "library/stdtypes.html" if name in PYTHON_STDTYPES else "library/functions.html"


PROJECTS = {
    p.name: p
    for p in (
        Project(
            "python",
            None,
            "https://docs.python.org/3/",
            (),
            python_page,
        ),
        Project(
            "numpy",
            "numpy",
            "https://numpy.org/doc/stable/",
            ("numpy", "numpy.linalg", "numpy.fft", "numpy.testing", "numpy.typing"),
            numpy_page,
        ),
        Project(
            "scipy",
            "scipy",
            "https://docs.scipy.org/doc/scipy/",
            ("scipy.sparse", "scipy.sparse.linalg", "scipy.sparse.csgraph", "scipy.io"),
            generated_pages("reference/generated/"),
        ),
        Project(
            "pandas",
            "pandas",
            "https://pandas.pydata.org/docs/",
            ("pandas", "pandas.api.types", "pandas.api.extensions", "pandas.arrays", "pandas.errors", "pandas.testing"),
            generated_pages("reference/api/"),
        ),
        Project(
            "h5py",
            "h5py",
            "https://docs.h5py.org/en/stable/",
            ("h5py",),
            h5py_page,
        ),
        Project(
            "anndata",
            "anndata",
            "https://anndata.readthedocs.io/en/stable/",
            ("anndata", "anndata.io", "anndata.abc", "anndata.experimental"),
            generated_pages("generated/"),
        ),
        Project(
            "scanpy",
            "scanpy",
            "https://scanpy.readthedocs.io/en/stable/",
            ("scanpy", "scanpy.pp", "scanpy.tl", "scanpy.pl", "scanpy.datasets", "scanpy.get"),
            generated_pages("api/generated/"),
            skip=frozenset({"scanpy.AnnData", "scanpy.concat"}),  # anndata's, documented there
        ),
        Project(
            "dask",
            "dask",
            "https://docs.dask.org/en/stable/",
            ("dask.array",),
            generated_pages("generated/"),
        ),
    )
}


# -- Writing ---------------------------------------------------------------------------------------------------


def inventory_lines(project: Project, entries: list[Entry]) -> list[str]:
    """The inventory's lines: ``name domain:role priority uri -``, for every entry whose page is known."""
    lines = []
    for name, role in entries:
        page = project.page(name, role)
        if page is None:
            continue
        # the anchor Sphinx gives a Python object is its full name (a module's: ``module-<name>``)
        anchor = f"module-{name}" if role == "py:module" else name
        uri = f"{page}#{anchor}"
        uri = uri.removesuffix(name) + "$" if uri.endswith(name) else uri
        lines.append(f"{name} {role} 1 {uri} -")
    return lines


def inventory_bytes(project_name: str, project_version: str, lines: list[str]) -> bytes:
    """An ``objects.inv`` file: the header of inventory version 2, then the lines compressed with zlib."""
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project_name}\n"
        f"# Version: {project_version}\n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    body = "".join(f"{line}\n" for line in lines)
    return header.encode() + zlib.compress(body.encode(), 9)


def build(project: Project) -> bytes:
    """The inventory of one project, from the installed package."""
    if project.distribution is None:
        entries, project_version = python_entries(), ".".join(map(str, sys.version_info[:2]))
    else:
        entries, project_version = walk(project), version(project.distribution)
    # a version such as 2.3.1 is recorded as 2.3: the site's stable pages change little within a release series
    series = ".".join(re.split(r"[.+]", project_version)[:2])
    return inventory_bytes(project.name, series, inventory_lines(project, entries))


def main(argv: list[str] | None = None) -> int:
    """Write ``<name>.inv`` beside this script for the projects named (all when none are)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("projects", nargs="*", metavar="project", help=f"of {', '.join(PROJECTS)} (default: all)")
    names = parser.parse_args(argv).projects or list(PROJECTS)
    if unknown := sorted(set(names) - set(PROJECTS)):
        parser.error(f"unknown projects {unknown}; choose from {', '.join(PROJECTS)}")
    for name in names:
        target = HERE / f"{name}.inv"
        target.write_bytes(build(PROJECTS[name]))
        print(f"{target.relative_to(HERE.parent.parent)}: {PROJECTS[name].url}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
