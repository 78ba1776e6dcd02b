"""Concrete-syntax-tree rewriting of anndata/scanpy loom calls (needs libcst).

The source of one program is given as a list of parts (a ``.py`` file is one part, a notebook has one part
per code cell) because names imported in one notebook cell are used in later ones.
Three passes run over the parts: find what the loom-related names are bound to, collect facts that need
the whole program (which objects are written, which workaround lines exist), then rewrite.
Names are resolved through the imports; a name rebound in its scope (a parameter called ``sc``, a local function
called ``read_loom``) is not the import and is left alone.

Modules: ``names`` (pass 1, and what names resolve to), ``calls`` (what a call means), ``facts``
(pass 2), ``rewriter`` (pass 3) and ``imports`` (import edits); this one runs the passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import libcst as cst
from libcst.metadata import MetadataWrapper

from scanpy_loomio._tools.migrate_cst.facts import FactCollector, removable_workarounds
from scanpy_loomio._tools.migrate_cst.imports import (
    ImportPlan,
    anchor_position,
    default_import_position,
    insert_import,
)
from scanpy_loomio._tools.migrate_cst.names import BindingCollector, Program
from scanpy_loomio._tools.migrate_cst.rewriter import Rewriter

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["RewriteResult", "rewrite_parts", "syntax_problem"]


@dataclass
class RewriteResult:
    """Rewritten parts plus notes for the user, each note prefixed with where it applies."""

    parts: list[str]
    notes: list[list[str]]


def syntax_problem(source: str) -> str | None:
    """Why ``source`` is not valid Python 3 (the parser's message, with the position), or None when it parses."""
    try:
        cst.parse_module(source)
    except cst.ParserSyntaxError as error:
        return error.message
    return None


def rewrite_parts(parts: Sequence[str], labels: Sequence[str] | None = None) -> RewriteResult:
    """Rewrite the loom calls of a program given as consecutive source parts.

    Parameters
    ----------
    parts
        Python source of each part (one for a file, one per code cell for a notebook).
    labels
        Prefix of each part's notes, e.g. ``"cell 3, "``.

    Raises
    ------
    libcst.ParserSyntaxError
        When a part is not valid Python.
    """
    labels = list(labels) if labels is not None else [""] * len(parts)
    modules = [cst.parse_module(part) for part in parts]
    wrappers = [MetadataWrapper(module, unsafe_skip_copy=True) for module in modules]
    program = Program()
    for module in modules:
        module.visit(BindingCollector(program))
    for index, wrapper in enumerate(wrappers):
        wrapper.visit(FactCollector(program, index))
    program.removable = removable_workarounds(program)

    existing_module = program.alias_of("scanpy_loomio")
    plan = ImportPlan(module_alias=existing_module or "scanpy_loomio")
    rewritten: list[cst.Module] = []
    notes: list[list[str]] = []
    for index, wrapper in enumerate(wrappers):
        rewriter = Rewriter(program, index, plan, labels[index])
        rewritten.append(wrapper.visit(rewriter))
        notes.append(rewriter.notes)

    if existing_module is None and plan.first_part is not None:
        anchors = [anchor_position(module) for module in rewritten]
        part = next((i for i, anchor in enumerate(anchors) if anchor is not None), plan.first_part)
        anchor = anchors[part]
        position = anchor if anchor is not None else default_import_position(rewritten[part])
        rewritten[part] = insert_import(rewritten[part], position, side_effect_only=not plan.needs_module)
    return RewriteResult(parts=[module.code for module in rewritten], notes=notes)
