"""The registry: the conventions reading detects and ``convention=`` accepts, and looking them up by name.

It starts with the table's rows; :func:`register_convention` adds more. Import these from
:mod:`scanpy_loomio.conventions`.
"""

from __future__ import annotations

from scanpy_loomio.conventions.model import Axis, Convention
from scanpy_loomio.conventions.table import BUILTIN_CONVENTIONS

__all__ = ["CONVENTIONS", "get_convention", "name_candidates", "register_convention"]

CONVENTIONS: dict[str, Convention] = {c.name: c for c in BUILTIN_CONVENTIONS}
"""All known conventions by name, in the order detection prefers them on a tie."""


def register_convention(convention: Convention, *, overwrite: bool = False) -> None:
    """Add a convention to :data:`CONVENTIONS`, so that reading detects it and ``convention=`` accepts its name.

    Examples
    --------
    >>> from scanpy_loomio.conventions import CONVENTIONS, Convention, Markers, register_convention
    >>> mylab = Convention(
    ...     name="mylab",
    ...     tool="My lab",
    ...     source="-",
    ...     cell_names=("cell",),
    ...     gene_names=("gene",),
    ...     markers=Markers(globals=("mylab_version",)),
    ... )
    >>> register_convention(mylab)
    >>> del CONVENTIONS["mylab"]  # tidy up
    """
    if not isinstance(convention, Convention):
        msg = f"register_convention: expected a Convention, got {type(convention).__name__}"
        raise TypeError(msg)
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

    Examples
    --------
    >>> from scanpy_loomio.conventions import get_convention
    >>> get_convention("loomexperiment").cell_names_attr
    'colnames'
    >>> get_convention("Seurat").name  # the names users type, in any case
    'seuratdisk'
    """
    if isinstance(convention, Convention):
        return convention
    if isinstance(convention, str):
        wanted = convention.casefold()
        for known in CONVENTIONS.values():
            if wanted == known.name.casefold() or wanted in (alias.casefold() for alias in known.aliases):
                return known
    aliases = sorted(alias for c in CONVENTIONS.values() for alias in c.aliases)
    msg = (
        f"unknown convention {convention!r}; expected one of {sorted(CONVENTIONS)} (or {', '.join(aliases)}), "
        "or a Convention object"
    )
    raise ValueError(msg)


def name_candidates(axis: Axis, first: Convention | None = None) -> tuple[str, ...]:
    """Every attribute that may hold names on ``axis``: ``first``'s candidates, then every registered convention's.

    Examples
    --------
    >>> from scanpy_loomio.conventions import get_convention, name_candidates
    >>> name_candidates("obs", get_convention("anndata"))[:3]
    ('obs_names', 'index', 'CellID')
    """
    out: dict[str, None] = {}
    for convention in (first, *CONVENTIONS.values()):
        if convention is not None:
            out.update(dict.fromkeys(convention.names(axis)))
    return tuple(out)
