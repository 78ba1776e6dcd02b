"""Upgrading a loom file written by anndata's legacy ``write_loom`` so that it reads back with what it lost.

anndata's ``adata.write_loom(path)`` keeps the values of every ``obs``/``var`` column but not their types, and
puts the names where its own ``read_loom`` does not look (under ``obs_names``/``var_names``, or under the index's
name when it has one, such as ``index``). What can be recovered from the file alone is recovered here, and written
as this package's record with :func:`~scanpy_loomio.update_loom_full`'s machinery, so the matrices are carried over
chunk by chunk without being decompressed, and the file is replaced atomically.

What comes back, and the rule for each:

- **names**: where anndata's writer puts them when the index has no name, ``obs_names``/``var_names``, even
  when the reader would prefer another attribute (a unique ``CellID`` column beside names that are only
  positions); else the attribute :func:`~scanpy_loomio.read_loom_full` finds them in; or the one named with
  ``obs_names``/``var_names``. They stay in that attribute; the record only says where they are.
- **index names**: anndata's writer stores the names under the index's name when the index has one (scanpy's
  datasets call theirs ``index``). So in a file of anndata's (the ``anndata`` convention, or an ``obs_names`` or
  ``var_names`` attribute) without an ``obs_names`` (``var_names``) attribute, the index is given the name of the
  attribute the names are in. Which attribute that is, the file does not say: one found by the reader other than
  ``index`` is a guess, and a :class:`~scanpy_loomio.LoomReadWarning` says so; name it to be sure.
- **categoricals**: anndata's own rule, :meth:`anndata.AnnData.strings_to_categoricals`, which ``write_h5ad``
  applies before writing: a text column with fewer distinct values than rows becomes a categorical, its
  categories in natural sort order. The result is what ``write_h5ad`` would have stored. Categoricals whose every
  value was different, whose categories had another order or included unused ones, and categoricals of numbers
  cannot be told from the values; they stay as the file has them.

What cannot come back: bools (stored as ``uint8`` 0/1, as a ``uint8`` column would be), ``float32`` columns
(stored as ``float64``), the column order (the file keeps attributes sorted by name), and what anndata's writer
dropped (``obsp``, ``varp``, ``uns``, ``raw``; ``obsm``/``varm`` without ``write_obsm_varm=True``).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np
from anndata import AnnData
from scipy import sparse

from scanpy_loomio._errors import LoomReadWarning
from scanpy_loomio._guards import open_read_only
from scanpy_loomio._read.plan import plan_read
from scanpy_loomio._record.record import RESERVED_GLOBALS
from scanpy_loomio._spec.facts import AXES, Axis, is_text_dtype
from scanpy_loomio._tools.update import StoredMatrix, update_file
from scanpy_loomio._write.atomic import atomic_target
from scanpy_loomio.conventions import Convention, get_convention
from scanpy_loomio.conventions.table import ANNDATA_CONVENTION

__all__ = ["UpgradeResult", "upgrade_loom"]


@dataclass(frozen=True)
class UpgradeResult:
    """What :func:`~scanpy_loomio.upgrade_loom` did to a file."""

    path: Path
    """The upgraded file (the file itself, or ``output``)."""
    upgraded: bool
    """``False`` when the file already had this package's record and was left as it was."""
    convention: str
    """The file's convention (detected, or recorded)."""
    names: Mapping[str, str | None] = field(default_factory=dict)
    """``{"obs": attribute, "var": attribute}`` holding the names; ``None``: none found (a range index)."""
    index_names: Mapping[str, str | None] = field(default_factory=dict)
    """``{"obs": name, "var": name}`` given to the indices."""
    categoricals: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """``{"obs": columns, "var": columns}`` turned from text into categoricals."""

    def render(self) -> str:
        """A few lines for people."""
        if not self.upgraded:
            return f"{self.path}: already has the scanpy_loomio record; left as it was"
        lines = [f"{self.path}: upgraded (convention {self.convention!r}); matrices kept as stored"]
        words: dict[Axis, str] = {"obs": "cell", "var": "gene"}
        for axis, what in words.items():
            attr = self.names.get(axis)
            where = f"/{AXES[axis]}_attrs/{attr}" if attr else "none found (0, 1, 2, …)"
            index_name = self.index_names.get(axis)
            named = f", index name {index_name!r}" if index_name else ""
            columns = ", ".join(self.categoricals.get(axis, ())) or "none"
            lines.append(f"  {what} names: {where}{named}; categoricals in {axis}: {columns}")
        return "\n".join(lines)


@dataclass
class _FileFacts:
    """What the upgrade needs to know about a file before reading it."""

    has_record: bool
    convention: Convention
    names: dict[str, str | None]
    """The attribute :func:`~scanpy_loomio.read_loom_full` takes each axis's names from."""
    attributes: dict[str, dict[str, tuple[int, ...]]]
    """Each axis's attribute datasets and their shapes."""
    text: dict[str, list[str]]
    """Each axis's 1-D text attributes: where names can be."""
    shape: tuple[int, int]
    shell: AnnData
    """Everything but the matrices, read with the names in :attr:`names`."""


def _file_facts(file: h5py.File, path: Path) -> _FileFacts:
    plan = plan_read(file, path, strict=True)
    attributes: dict[str, dict[str, tuple[int, ...]]] = {}
    text: dict[str, list[str]] = {}
    for axis, loom in AXES.items():
        group = file.get(f"{loom}_attrs")
        datasets = dict(group.items()) if isinstance(group, h5py.Group) else {}
        datasets = {name: d for name, d in datasets.items() if isinstance(d, h5py.Dataset)}
        attributes[axis] = {name: d.shape for name, d in datasets.items()}
        text[axis] = sorted(name for name, d in datasets.items() if d.ndim == 1 and is_text_dtype(d.dtype))
    assert plan.shell is not None and plan.convention is not None  # strict: a failed read raised
    return _FileFacts(
        has_record=plan.record is not None,
        convention=plan.convention,
        names=dict(plan.index_attrs),
        attributes=attributes,
        text=text,
        shape=plan.shell.shape,
        shell=plan.shell,
    )


def _forced_names(path: Path, axis: Axis, asked: str, facts: _FileFacts) -> str:
    """Check an attribute named with ``obs_names``/``var_names`` before anything is read."""
    n = facts.shape[0] if axis == "obs" else facts.shape[1]
    shape = facts.attributes[axis].get(asked)
    if shape == (n,):
        return asked
    found = "no such attribute" if shape is None else f"a dataset of shape {shape}"
    candidates = ", ".join(facts.text[axis]) or "none"
    msg = (
        f"{path}: /{AXES[axis]}_attrs/{asked}: {found}; expected a 1-D attribute of {n} {axis} names. Name one "
        f"with {axis}_names= (--{axis}-names on the command line); text attributes: {candidates}."
    )
    raise ValueError(msg)


def _holds_names(facts: _FileFacts, axis: Axis, attr: str) -> bool:
    n = facts.shape[0] if axis == "obs" else facts.shape[1]
    return facts.attributes[axis].get(attr) == (n,) and attr in facts.text[axis]


def _warn_names_guessed(path: Path, axis: Axis, attr: str | None, facts: _FileFacts, default: str) -> None:
    """The names are not in ``default``, where anndata's writer puts them: say what was taken, and how to choose."""
    loom = f"{AXES[axis]}_attrs"
    if attr is None:
        found = f"no {axis} names found in /{loom}; they will be 0, 1, 2, …"
    else:
        found = (
            f"/{loom} has no {default}, so anndata's writer stored the {axis} names under the index's name, "
            f"which the file does not record; taking /{loom}/{attr}"
        )
    candidates = ", ".join(facts.text[axis]) or "none"
    warnings.warn(
        f"{path}: {found}. Name the attribute holding them with {axis}_names= (--{axis}-names on the command "
        f"line) if that is not it; text attributes: {candidates}.",
        LoomReadWarning,
        stacklevel=3,
    )


def _placeholders(file: h5py.File, adata: AnnData) -> None:
    """Give ``adata`` an ``X`` and layers of the stored kinds, without reading them.

    The update copies the file's matrices as they are stored and only checks that ``adata``'s are of the same
    container and dtype, so empty stand-ins of those kinds spare decompressing the whole file.
    """

    def stand_in(dset: h5py.Dataset) -> Any:
        kind = StoredMatrix.of(dset).kind
        if kind is None:
            return None
        dtype = np.dtype(kind.dtype)
        if kind.format == "dense":
            return np.broadcast_to(np.zeros((), dtype=dtype), adata.shape)  # no memory for the values
        return getattr(sparse, kind.container)(adata.shape, dtype=dtype)

    adata.X = stand_in(file["matrix"])
    layers = file.get("layers")
    for name, dset in layers.items() if isinstance(layers, h5py.Group) else ():
        if isinstance(dset, h5py.Dataset) and not StoredMatrix.of(dset).filled:
            adata.layers[name] = stand_in(dset)


def _to_categoricals(adata: AnnData) -> dict[str, tuple[str, ...]]:
    """Text columns to categoricals by anndata's own rule (as ``write_h5ad`` does); returns the columns converted."""
    before = {axis: set(getattr(adata, axis).select_dtypes("category").columns) for axis in AXES}
    adata.strings_to_categoricals()
    after = {axis: getattr(adata, axis).select_dtypes("category").columns for axis in AXES}
    return {axis: tuple(c for c in after[axis] if c not in before[axis]) for axis in AXES}


def upgrade_loom(
    path: str | os.PathLike[str],
    *,
    obs_names: str | None = None,
    var_names: str | None = None,
    categoricals: Literal["auto", False] = "auto",
    output: str | os.PathLike[str] | None = None,
) -> UpgradeResult:
    """Make a loom file written by anndata's ``write_loom`` read back with its names and categoricals.

    The file is read as :func:`~scanpy_loomio.read_loom_full` reads it; what the values allow is recovered (names,
    index names, categoricals; see the rules below) and written as this package's record and codecs, keeping
    ``/matrix`` and the layers as they are stored (their compressed chunks are copied, not rewritten), so that
    :func:`~scanpy_loomio.read_loom_full` gives it back from then on. The file is replaced atomically: it is
    either the old file, byte for byte, or the upgraded one. A file that already has the record is left alone.

    Rules, applied to files without this package's record:

    - the names are taken from the ``obs_names``/``var_names`` attribute, where anndata's writer puts them when the
      index has no name; else from the attribute :func:`~scanpy_loomio.read_loom_full` finds (``index``,
      ``CellID``/``Gene``, …); or from the one named with ``obs_names``/``var_names``. They stay in it;
    - anndata's writer puts the names under the index's name when the index has one, so in a file of anndata's
      without an ``obs_names`` (``var_names``) attribute, the index gets the name of the attribute holding the
      names. That name is not recorded in the file: an attribute other than ``index`` found by the reader is a
      guess, and a :class:`~scanpy_loomio.LoomReadWarning` says which one was taken. Names that repeat are made
      unique as :func:`~scanpy_loomio.read_loom_full` makes them (the originals kept in a column) and stored so;
    - with ``categoricals="auto"``, anndata's own rule (:meth:`anndata.AnnData.strings_to_categoricals`, which
      ``write_h5ad`` applies too): a text column with fewer distinct values than rows becomes a categorical,
      categories in natural sort order. A categorical whose values were all different, whose categories were in
      another order or unused, or whose categories were numbers cannot be told from the values and is not restored.

    Bools (stored as ``uint8``), ``float32`` columns (stored as ``float64``), the column order and what anndata's
    writer dropped (``obsp``, ``varp``, ``uns``, ``raw``) cannot be recovered from the file.

    Parameters
    ----------
    path
        The loom file. It is replaced, unless ``output`` is given.
    obs_names, var_names
        The column/row attribute holding the cell/gene names, when it is not found by itself
        (``scanpy-loomio inspect`` lists the candidates).
    categoricals
        ``"auto"``: turn text columns into categoricals by anndata's rule; ``False``: keep them as text.
    output
        Write the upgraded file here and leave ``path`` as it is.

    Returns
    -------
    What was found and changed: the attributes holding the names, the index names and the columns turned into
    categoricals.

    Raises
    ------
    ValueError
        When ``obs_names``/``var_names`` names no attribute of the right length; the message lists the attributes.
    LoomFormatError
        When ``path`` is not a loom file that can be read.
    FileNotFoundError
        When there is no such file.

    Examples
    --------
    A file as anndata's ``write_loom`` made it with loompy (anndata 0.13's fails on every AnnData): the names under
    the index's name, categoricals as their labels.

    >>> import loompy
    >>> import scanpy as sc
    >>> import scanpy_loomio
    >>> adata = sc.datasets.pbmc68k_reduced()
    >>> columns = {key: adata.obs[key].to_numpy(str) for key in ("bulk_labels", "louvain", "phase")}
    >>> loompy.create(
    ...     "legacy.loom",
    ...     adata.X.T,
    ...     row_attrs={"index": adata.var_names.to_numpy(str)},
    ...     col_attrs={"index": adata.obs_names.to_numpy(str), **columns},
    ... )
    >>> result = scanpy_loomio.upgrade_loom("legacy.loom")
    >>> result.names["obs"], result.categoricals["obs"]
    ('index', ('bulk_labels', 'louvain', 'phase'))
    >>> back = scanpy_loomio.read_loom_full("legacy.loom")
    >>> back.obs_names.equals(adata.obs_names)
    True
    >>> back.obs["louvain"].cat.categories.equals(adata.obs["louvain"].cat.categories)
    True
    """
    if categoricals not in ("auto", False):
        msg = f"categoricals={categoricals!r}; expected 'auto' (anndata's rule) or False (keep text as text)."
        raise ValueError(msg)
    path = Path(path)
    target = Path(output) if output is not None else None
    if not path.exists():
        raise FileNotFoundError(2, "no such loom file to upgrade", str(path))
    with open_read_only(path) as file:
        facts = _file_facts(file, path)
        convention, names = facts.convention, dict(facts.names)
        if facts.has_record:
            if target is not None:
                with atomic_target(target) as tmp:
                    shutil.copyfile(path, tmp)
            return UpgradeResult(target or path, upgraded=False, convention=convention.name)
        # anndata's writer puts the names under obs_names/var_names (its row's first candidates), or under the
        # index's name when it has one (the row's other candidates are the usual index names)
        writer = get_convention(ANNDATA_CONVENTION)
        default = {axis: writer.names(axis)[0] for axis in AXES}
        legacy = convention.names_under_index_name or any(_holds_names(facts, axis, default[axis]) for axis in AXES)
        asked_names: dict[Axis, str | None] = {"obs": obs_names, "var": var_names}
        for axis, asked in asked_names.items():
            if asked is not None:
                names[axis] = _forced_names(path, axis, asked, facts)
            elif _holds_names(facts, axis, default[axis]):
                names[axis] = default[axis]  # even when the reader would prefer another attribute
            elif names[axis] is None or (legacy and names[axis] not in writer.names(axis)[1:]):
                _warn_names_guessed(path, axis, names[axis], facts, default[axis])
        adata = (
            facts.shell
            if names == facts.names
            else plan_read(file, path, obs_names=names["obs"], var_names=names["var"], strict=True, checked=True).shell
        )
        assert adata is not None  # strict: a failed read raised
        _placeholders(file, adata)
    # the file's own bookkeeping (creation date, spec version), which the update writes itself, is not uns
    for key in RESERVED_GLOBALS & set(adata.uns):
        del adata.uns[key]
    index_names: dict[str, str | None] = {}
    for axis in AXES:
        attr = names[axis]
        # the writer named the attribute after the index only when the index had a name
        named = legacy and attr not in (None, default[axis]) and default[axis] not in facts.attributes[axis]
        index_names[axis] = attr if named else None
        getattr(adata, axis).index.name = index_names[axis]
    converted = _to_categoricals(adata) if categoricals == "auto" else {"obs": (), "var": ()}
    # written back under the same attributes, so tools that found the names there still do
    keep: dict[str, Any] = {
        field_name: (names[axis], *getattr(convention, field_name))
        for axis, field_name in (("obs", "cell_names"), ("var", "gene_names"))
        if names[axis] is not None
    }
    # and no layers are asked for: the upgrade adds none, whatever the convention's tool needs
    as_stored = dataclasses.replace(convention, required_layers=(), **keep)
    update_file(
        path,
        adata,
        convention=as_stored,
        lossy="raise",
        fill_missing_layers=False,
        convert_strings_to_categoricals=categoricals == "auto",
        names=(names["obs"], names["var"]),
        output=target,
    )
    return UpgradeResult(
        target or path,
        upgraded=True,
        convention=convention.name,
        names=names,
        index_names=index_names,
        categoricals=converted,
    )
