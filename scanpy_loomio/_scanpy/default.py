"""An opt-in, reversible switch that makes anndata's and scanpy's own loom functions lossless.

For pipelines that cannot be edited beyond their imports: after :func:`use_as_default`, ``sc.read_loom``,
``sc.read("….loom")``, ``anndata.io.read_loom`` (and the deprecated ``anndata.read_loom``),
``anndata.io.write_loom`` and ``AnnData.write_loom`` delegate to :func:`~scanpy_loomio.read_loom_full` and
:func:`~scanpy_loomio.write_loom_full`. Nothing changes merely because the package was imported.
"""

from __future__ import annotations

import importlib
import sys
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scanpy_loomio._errors import LoomReadWarning
from scanpy_loomio._guards import open_read_only
from scanpy_loomio._read.reader import LoomReader, ReadOptions, read_loom_full
from scanpy_loomio._write.writer import write_loom_full

if TYPE_CHECKING:
    import os
    from collections.abc import Callable
    from types import TracebackType

    from anndata import AnnData

__all__ = ["restore_defaults", "use_as_default"]

# read_loom keywords that mean the same for read_loom_full
_SAME_KEYWORDS = frozenset({"X_name", "obs_names", "var_names", "obsm_mapping", "varm_mapping", "sparse", "cleanup"})
# anndata's deprecated spellings, and the current names
_RENAMED_KEYWORDS = {"obsm_names": "obsm_mapping", "varm_names": "varm_mapping"}
# passed on by anndata to loompy.connect; read_loom_full never runs loompy's validator
_IGNORED_KEYWORDS = frozenset({"validate"})

_lock = threading.Lock()
#: ``(module name, attribute path) -> original`` while the switch is on; empty while it is off.
_originals: dict[tuple[str, str], Any] = {}


def read_loom(filename: str | os.PathLike[str], **kwargs: Any) -> AnnData:
    """The ``read_loom`` of anndata and scanpy, made lossless by :func:`scanpy_loomio.use_as_default`.

    Delegates to :func:`scanpy_loomio.read_loom_full`. anndata's keyword arguments keep their meaning
    (``obsm_names``/``varm_names`` are read as ``obsm_mapping``/``varm_mapping``, loompy's ``validate`` is
    ignored), with two differences that keep the data as it is in the file: a ``spliced`` layer becomes ``X``
    only when ``X_name="spliced"`` is passed, and ``X`` keeps its dtype unless ``dtype`` is passed.
    """
    options = {}
    for key, value in kwargs.items():
        if key in _IGNORED_KEYWORDS:
            continue
        name = _RENAMED_KEYWORDS.get(key, key)
        if name not in _SAME_KEYWORDS and name != "dtype":
            msg = (
                f"read_loom() got the keyword argument {key!r}, which scanpy_loomio.read_loom_full (used since "
                f"scanpy_loomio.use_as_default()) does not take; expected one of {sorted(_SAME_KEYWORDS)}, "
                "dtype, or the deprecated obsm_names/varm_names. Remove it, or call scanpy_loomio.restore_defaults()."
            )
            raise TypeError(msg)
        if name in options:
            other = next(k for k in kwargs if k != key and _RENAMED_KEYWORDS.get(k, k) == name)
            msg = f"read_loom() got both {other!r} and {key!r}, which mean the same; pass only {name!r}"
            raise TypeError(msg)
        options[name] = value
    if options.get("X_name") is None:
        _warn_x_layer(filename)
    return read_loom_full(filename, **options)


#: Conventions whose ``anndata_x_layer`` hint was given in this session (it is given once).
_x_hints_given: set[str] = set()


def _warn_x_layer(filename: str | os.PathLike[str]) -> None:
    """Warn once when anndata's ``read_loom`` would have made a layer ``X`` for this file's tool (velocyto)."""
    path = Path(filename)
    try:
        with open_read_only(path) as file, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # reading the file reports what it finds
            convention = LoomReader(file, path, ReadOptions()).convention
            layer = convention.anndata_x_layer
            has_layer = layer is not None and f"layers/{layer}" in file
    except Exception:  # noqa: BLE001 - reading reports what is wrong with the file
        return
    if not has_layer or convention.name in _x_hints_given:
        return
    _x_hints_given.add(convention.name)
    warnings.warn(
        f"{path}: a {convention.tool} file; anndata's read_loom made layer {layer!r} X, but read_loom now reads "
        f"/matrix as X (the sum of the layers, for velocyto). Pass X_name={layer!r} for anndata's X. "
        "(Shown once per session.)",
        LoomReadWarning,
        stacklevel=3,
    )


def write_loom(filename: str | os.PathLike[str], adata: AnnData, *, write_obsm_varm: bool = False) -> None:
    """``anndata.io.write_loom``, made lossless by :func:`scanpy_loomio.use_as_default`.

    Delegates to :func:`scanpy_loomio.write_loom_full`, which keeps every element, so ``write_obsm_varm``
    has no effect: ``obsm`` and ``varm`` are always written.
    """
    write_loom_full(filename, adata)


def _write_loom_method(self: AnnData, filename: str | os.PathLike[str], *, write_obsm_varm: bool = False) -> None:
    """``AnnData.write_loom``, made lossless by :func:`scanpy_loomio.use_as_default`.

    Delegates to :func:`scanpy_loomio.write_loom_full`, which keeps every element, so ``write_obsm_varm``
    has no effect: ``obsm`` and ``varm`` are always written.
    """
    write_loom(filename, self)


_write_loom_method.__name__ = "write_loom"
_write_loom_method.__qualname__ = "AnnData.write_loom"

#: ``(module, attribute path, replacement)``: anndata's own loom functions, where anndata defines them.
_ANNDATA_ENTRY_POINTS: tuple[tuple[str, str, Callable[..., Any]], ...] = (
    ("anndata.io", "read_loom", read_loom),
    ("anndata.io", "write_loom", write_loom),
    ("anndata", "AnnData.write_loom", _write_loom_method),
)
#: Packages whose modules may hold their own reference to anndata's loom functions (``from anndata.io import
#: read_loom``): ``scanpy`` and ``scanpy.readwrite`` up to 1.12, ``scanpy.io._read`` (behind ``sc.read``) from 1.13.
_CALLER_PACKAGES = ("anndata", "scanpy")


def _callers(originals: dict[str, Callable[..., Any]]) -> list[tuple[str, str, Callable[..., Any]]]:
    """Every loaded module of :data:`_CALLER_PACKAGES` whose namespace binds one of ``originals`` (by identity).

    Found by looking, not by name, so the installed versions decide: no module is imported that does not exist.
    """
    importlib.import_module("scanpy")  # its modules bind the functions when it is imported
    by_identity = {id(func): (name, func) for name, func in originals.items()}
    replacements: dict[str, Callable[..., Any]] = {"read_loom": read_loom, "write_loom": write_loom}
    found: list[tuple[str, str, Callable[..., Any]]] = []
    for module_name, module in sorted(sys.modules.items()):
        if module is None or module_name.partition(".")[0] not in _CALLER_PACKAGES:
            continue
        for attribute, value in list(vars(module).items()):
            hit = by_identity.get(id(value))
            if hit is not None and value is hit[1]:
                found.append((module_name, attribute, replacements[hit[0]]))
    return found


def _entry_points() -> list[tuple[str, str, Callable[..., Any]]]:
    """``(module, attribute path, replacement)`` for every place the installed anndata and scanpy look up loom I/O."""
    io = importlib.import_module("anndata.io")
    originals: dict[str, Callable[..., Any]] = {n: vars(io)[n] for n in ("read_loom", "write_loom") if n in vars(io)}
    points = list(_ANNDATA_ENTRY_POINTS)
    points += [p for p in _callers(originals) if p[:2] not in {q[:2] for q in points}]
    return points


def _owner(module: str, path: str) -> tuple[Any, str]:
    owner = importlib.import_module(module)
    *parents, name = path.split(".")
    for parent in parents:
        owner = getattr(owner, parent)
    return owner, name


class _Switch:
    """Returned by :func:`use_as_default`; as a context manager it undoes the switch on exit if it turned it on."""

    def __init__(self, *, turned_on: bool) -> None:
        self.turned_on = turned_on

    def __enter__(self) -> _Switch:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self.turned_on:
            restore_defaults()

    def __repr__(self) -> str:
        return f"<scanpy_loomio default loom I/O: {'on' if _originals else 'off'}>"


def use_as_default() -> _Switch:
    """Make ``sc.read_loom``, ``anndata.io.read_loom``, ``anndata.io.write_loom`` and ``AnnData.write_loom`` lossless.

    They delegate to :func:`read_loom_full` and :func:`write_loom_full` (``sc.read`` of a ``.loom`` file and the
    deprecated ``anndata.read_loom`` too) until :func:`restore_defaults` is called. Calling it again while it is
    on changes nothing. ``import scanpy_loomio`` alone never does this.

    Code that imported the function object itself before the switch (``from anndata.io import read_loom``) keeps
    anndata's: turn the switch on first, or use :func:`scanpy_loomio.migrate_path` to edit the code.

    Returns
    -------
    A context manager: ``with use_as_default(): ...`` restores anndata's functions on exit (unless the switch was
    already on before).

    Examples
    --------
    >>> import anndata
    >>> import scanpy as sc
    >>> import scanpy_loomio
    >>> adata = sc.datasets.pbmc68k_reduced()
    >>> with scanpy_loomio.use_as_default():
    ...     adata.write_loom("pbmc.loom")  # unchanged pipeline lines
    ...     back = anndata.io.read_loom("pbmc.loom")
    >>> back.obsp["distances"].nnz == adata.obsp["distances"].nnz
    True
    >>> anndata.io.read_loom.__module__  # anndata's own again
    'anndata._io.read'
    """
    with _lock:
        if _originals:
            return _Switch(turned_on=False)
        for module, path, replacement in _entry_points():
            owner, name = _owner(module, path)
            if name in vars(owner):  # never add an attribute that was not there
                _originals[(module, path)] = vars(owner)[name]
                setattr(owner, name, replacement)
        return _Switch(turned_on=True)


def restore_defaults() -> None:
    """Undo :func:`use_as_default`: anndata's and scanpy's own loom functions are back. Does nothing when it is off.

    Examples
    --------
    >>> import anndata
    >>> import scanpy_loomio
    >>> original = anndata.io.read_loom
    >>> _ = scanpy_loomio.use_as_default()
    >>> anndata.io.read_loom is original
    False
    >>> scanpy_loomio.restore_defaults()
    >>> anndata.io.read_loom is original
    True
    """
    with _lock:
        for (module, path), original in _originals.items():
            owner, name = _owner(module, path)
            setattr(owner, name, original)
        _originals.clear()
