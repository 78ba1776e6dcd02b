"""Which loom attributes each tool uses, as data.

Every tool that writes or reads loom files names cells, genes, layers and embeddings its own way. Each
:class:`Convention` describes one tool; :data:`CONVENTIONS` holds them by name. Reading detects the convention
of a file (:func:`detect_convention`), writing targets one (``write_loom_full(..., convention="velocyto")``).
Nothing else in the package branches on a tool's name: a new tool is a new entry here.

Examples
--------
>>> from scanpy_loomio.conventions import get_convention
>>> get_convention("loompy").cell_names_attr
'CellID'
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

__all__ = ["CONVENTIONS", "DEFAULT_CONVENTION", "Convention", "get_convention", "register_convention"]

EmbeddingStyle = Literal["matrix", "columns"]
GlobalLayout = Literal["datasets", "root"]


@dataclass(frozen=True)
class Convention:
    """How one tool lays out names and elements in a loom file.

    Parameters
    ----------
    name
        Key in :data:`CONVENTIONS`.
    tool
        Human-readable tool name(s).
    source
        Where the facts come from (repository and path).
    cell_names
        Column attributes that may hold cell names, in order of preference; the first is written.
    gene_names
        Row attributes that may hold gene names, in order of preference; the first is written.
    var_renames
        AnnData ``var`` columns written under another attribute name (``gene_ids`` → ``Accession``), and read back.
    obs_renames
        The same for ``obs``.
    x_layer
        Loom layer the tool treats as ``X``; ``None`` means ``/matrix``.
    required_layers
        Layers the tool needs to find.
    embedding_style
        How ``obsm``/``varm`` arrays are written: ``"matrix"`` as one 2-D attribute, ``"columns"`` as one 1-D attribute
        per component (``<key>_1``, ``<key>_2``, …), for readers that break on 2-D attributes.
    graph_index_base
        0 when graph indices ``a``/``b`` count from 0 (the spec), 1 for writers that count from 1.
    spec_version
        Loom spec version written.
    accepted_spec_versions
        Spec versions the tool reads.
    global_layout
        ``"datasets"``: global attributes as datasets under ``/attrs`` (spec 3); ``"root"``: HDF5 attributes on the root
        group (spec 2).
    sidecar
        Whether the tool tolerates this package's extra top-level group holding what loom has no place for.
    json_globals
        Global attributes holding JSON text, decoded into ``uns`` on read.
    """

    name: str
    tool: str
    source: str
    cell_names: tuple[str, ...]
    gene_names: tuple[str, ...]
    var_renames: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    obs_renames: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    x_layer: str | None = None
    required_layers: tuple[str, ...] = ()
    embedding_style: EmbeddingStyle = "matrix"
    graph_index_base: int = 0
    spec_version: str = "3.0.0"
    accepted_spec_versions: tuple[str, ...] = ("2.0.1", "3.0.0")
    global_layout: GlobalLayout = "datasets"
    sidecar: bool = True
    json_globals: tuple[str, ...] = ()

    @property
    def cell_names_attr(self) -> str:
        """The column attribute written for ``obs_names``."""
        return self.cell_names[0]

    @property
    def gene_names_attr(self) -> str:
        """The row attribute written for ``var_names``."""
        return self.gene_names[0]


_LOOMPY = Convention(
    name="loompy",
    tool="loompy",
    source="linnarsson-lab/loompy doc/conventions",
    cell_names=("CellID",),
    gene_names=("Gene",),
    var_renames=MappingProxyType({"gene_ids": "Accession"}),
)

CONVENTIONS: dict[str, Convention] = {c.name: c for c in (_LOOMPY,)}
"""All known conventions by name."""

DEFAULT_CONVENTION = "loompy"
"""The convention written by default: ``CellID``/``Gene`` are what most real readers look for."""


def register_convention(convention: Convention, *, overwrite: bool = False) -> None:
    """Add a convention to :data:`CONVENTIONS`.

    Examples
    --------
    >>> from scanpy_loomio.conventions import Convention, register_convention
    >>> register_convention(Convention(name="mylab", tool="My lab", source="-", cell_names=("cell",), gene_names=("gene",)))
    """
    if convention.name in CONVENTIONS and not overwrite:
        msg = f"a convention named {convention.name!r} exists; pass overwrite=True to replace it"
        raise ValueError(msg)
    CONVENTIONS[convention.name] = convention


def get_convention(convention: str | Convention) -> Convention:
    """Look a convention up by name, or pass a :class:`Convention` through.

    Raises
    ------
    ValueError
        For an unknown name; the message lists the known ones.
    """
    if isinstance(convention, Convention):
        return convention
    try:
        return CONVENTIONS[convention]
    except (KeyError, TypeError):
        msg = f"unknown convention {convention!r}; expected one of {sorted(CONVENTIONS)} or a Convention object"
        raise ValueError(msg) from None
