"""Import edits: ``from anndata import read_loom`` and co. moved to scanpy_loomio, ``import scanpy_loomio`` added."""

from __future__ import annotations

from dataclasses import dataclass

import libcst as cst
from libcst.helpers import get_full_name_for_node_or_raise

from scanpy_loomio._tools.migrate_cst.names import NEW_NAMES, READERS, WRITERS, BindingCollector


@dataclass
class ImportPlan:
    """Whether ``import scanpy_loomio`` is needed, and for what."""

    module_alias: str
    needs_module: bool = False  # ``scanpy_loomio.`` is used, not only ``sc.*_full``
    first_part: int | None = None  # the first part that needed the import


def comment_after(comma: cst.Comma | cst.MaybeSentinel) -> cst.Comment | None:
    """The comment at the end of the line a comma ends (in a parenthesized, one-name-per-line import)."""
    if isinstance(comma, cst.Comma) and isinstance(comma.whitespace_after, cst.ParenthesizedWhitespace):
        return comma.whitespace_after.first_line.comment
    return None


def last_comma(
    own: cst.Comma | cst.MaybeSentinel, removed: cst.Comma | cst.MaybeSentinel, statement: cst.ImportFrom
) -> cst.Comma | cst.MaybeSentinel:
    """The comma of the name that becomes last in an import after the last name was removed."""
    if statement.lpar is None:
        return cst.MaybeSentinel.DEFAULT  # a trailing comma needs parentheses
    if isinstance(own, cst.Comma) and isinstance(removed, cst.Comma):
        own_layout, removed_layout = own.whitespace_after, removed.whitespace_after
        if isinstance(own_layout, cst.ParenthesizedWhitespace) and isinstance(
            removed_layout, cst.ParenthesizedWhitespace
        ):
            # keep this line's comment, end like the removed line did (the closing parenthesis' indentation)
            return removed.with_changes(whitespace_after=removed_layout.with_changes(first_line=own_layout.first_line))
    return own


def rewrite_import_line(
    line: cst.SimpleStatementLine, kept_names: set[str]
) -> cst.BaseStatement | cst.FlattenSentinel[cst.BaseStatement]:
    """``from anndata.io import read_loom`` and co.: the loom functions move to an import from scanpy_loomio.

    ``kept_names`` are local names of loom functions that stay (they are called with unpacked arguments).
    """
    if len(line.body) != 1 or not isinstance(statement := line.body[0], cst.ImportFrom):
        return line
    if isinstance(statement.names, cst.ImportStar) or statement.module is None:
        return line
    module = get_full_name_for_node_or_raise(statement.module)
    moved = [
        a
        for a in statement.names
        if f"{module}.{a.evaluated_name}" in READERS | WRITERS
        and (a.evaluated_alias or a.evaluated_name) not in kept_names
    ]
    if not moved:
        return line
    kept = [a for a in statement.names if a not in moved]
    comma = cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
    new_aliases = [
        cst.ImportAlias(
            name=cst.Name(NEW_NAMES[alias.evaluated_name]),
            asname=alias.asname,
            comma=comma if index < len(moved) - 1 else cst.MaybeSentinel.DEFAULT,
        )
        for index, alias in enumerate(moved)
    ]
    # a comment written beside a moved name goes with it to the new import
    comments = [c for alias in moved if (c := comment_after(alias.comma)) is not None]
    new_line = cst.SimpleStatementLine(
        body=[cst.ImportFrom(module=cst.Name("scanpy_loomio"), names=new_aliases)],
        trailing_whitespace=cst.TrailingWhitespace(whitespace=cst.SimpleWhitespace("  "), comment=comments[0])
        if comments
        else cst.TrailingWhitespace(),
    )
    if not kept:
        if line.trailing_whitespace.comment is not None:
            new_line = new_line.with_changes(trailing_whitespace=line.trailing_whitespace)
        return new_line.with_changes(leading_lines=line.leading_lines)
    if statement.names[-1] in moved:
        kept[-1] = kept[-1].with_changes(comma=last_comma(kept[-1].comma, statement.names[-1].comma, statement))
    old_line = line.with_changes(body=[statement.with_changes(names=kept)])
    return cst.FlattenSentinel([old_line, new_line])


def default_import_position(module: cst.Module) -> int:
    """Index after the docstring, ``__future__`` imports and the first run of imports."""
    position = 0
    for index, statement in enumerate(module.body):
        if not isinstance(statement, cst.SimpleStatementLine):
            break
        first = statement.body[0]
        is_docstring = index == 0 and isinstance(first, cst.Expr) and isinstance(first.value, cst.SimpleString)
        if is_docstring or isinstance(first, cst.Import | cst.ImportFrom):
            position = index + 1
        else:
            break
    return position


def anchor_position(module: cst.Module) -> int | None:
    """Index after the first top-level statement importing scanpy or anndata."""
    for index, statement in enumerate(module.body):
        if isinstance(statement, cst.SimpleStatementLine) and any(
            BindingCollector.imports_scanpy_or_anndata(small) for small in statement.body
        ):
            return index + 1
    return None


def insert_import(module: cst.Module, position: int, *, side_effect_only: bool) -> cst.Module:
    """Insert ``import scanpy_loomio`` as top-level statement number ``position``."""
    statement = cst.SimpleStatementLine(
        body=[cst.Import(names=[cst.ImportAlias(name=cst.Name("scanpy_loomio"))])],
        # only sc.read_loom_full & co. are used: linters would call the import unused
        trailing_whitespace=cst.TrailingWhitespace(
            whitespace=cst.SimpleWhitespace("  "), comment=cst.Comment("# noqa: F401"), newline=cst.Newline()
        )
        if side_effect_only
        else cst.TrailingWhitespace(),
    )
    body = list(module.body)
    body.insert(position, statement)
    return module.with_changes(body=body)
