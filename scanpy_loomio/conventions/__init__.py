"""Which loom attributes each tool uses, as data.

Every tool that writes or reads loom files names cells, genes, layers and embeddings its own way. Each
:class:`Convention` describes one tool; :data:`CONVENTIONS` holds them by name. Reading scores every convention
against what a file contains (:meth:`Convention.score`, used by :func:`scanpy_loomio.read_loom_full`), writing
targets one (``write_loom_full(..., convention="velocyto")``). Nothing else in the package branches on a tool's
name: a new tool is a new entry here, or a :class:`Convention` passed by the caller.

The names below come from five modules: ``scanpy_loomio.conventions.model`` (the classes),
``scanpy_loomio.conventions.detection`` (what detection looks at and for),
``scanpy_loomio.conventions.table`` (the rows, one per tool, and the embedding forms),
``scanpy_loomio.conventions.registry`` (:data:`CONVENTIONS` and looking conventions up) and
``scanpy_loomio.conventions.render`` (the table as Markdown, plain text and JSON).

Examples
--------
>>> from scanpy_loomio.conventions import get_convention
>>> get_convention("loompy").cell_names_attr
'CellID'
>>> get_convention("loomr").graph_index_base
(0, 1)
"""

from collections.abc import Mapping

from scanpy_loomio.conventions import registry, table
from scanpy_loomio.conventions.detection import FileSummary, Markers
from scanpy_loomio.conventions.model import Convention, EmbeddingForm, RTypes
from scanpy_loomio.conventions.registry import get_convention, name_candidates, register_convention
from scanpy_loomio.conventions.render import conventions_table

__all__ = [
    "CONVENTIONS",
    "DEFAULT_CONVENTION",
    "EMBEDDING_FORMS",
    "Convention",
    "EmbeddingForm",
    "FileSummary",
    "Markers",
    "RTypes",
    "conventions_table",
    "get_convention",
    "name_candidates",
    "register_convention",
]

# The same objects as in the table and registry modules, bound here with the docstrings the API docs show.
CONVENTIONS: dict[str, Convention] = registry.CONVENTIONS
"""All known conventions by name, in the order detection prefers them on a tie."""

DEFAULT_CONVENTION: str = table.DEFAULT_CONVENTION
"""The convention written by default, because ``CellID``/``Gene`` are what most real readers look for."""

EMBEDDING_FORMS: Mapping[str, EmbeddingForm] = table.EMBEDDING_FORMS
"""Every embedding form, by style."""
