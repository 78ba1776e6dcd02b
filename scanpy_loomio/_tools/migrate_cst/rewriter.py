"""Rewriting of one part (pass 3): loom calls, names, imports and workaround lines."""

from __future__ import annotations

from typing import TYPE_CHECKING

import libcst as cst
from libcst.metadata import ExpressionContext, ExpressionContextProvider, PositionProvider, ScopeProvider

from scanpy_loomio._tools.migrate_cst.calls import (
    DROPPED_READ_KEYWORDS,
    READ_KEYWORDS,
    RENAMED_READ_KEYWORDS,
    arg_keyword,
    reads_loom_literal,
    translate_write,
    unpacks,
)
from scanpy_loomio._tools.migrate_cst.facts import ANNDATA_READER
from scanpy_loomio._tools.migrate_cst.imports import rewrite_import_line
from scanpy_loomio._tools.migrate_cst.names import (
    GENERIC_READERS,
    NEW_NAMES,
    READERS,
    SCANPY_NAMESPACES,
    WRITERS,
    Program,
    ScopedResolution,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from scanpy_loomio._tools.migrate_cst.imports import ImportPlan


class Rewriter(ScopedResolution, cst.CSTTransformer):
    """Pass 3: rewrite calls, imports and workaround lines of one part."""

    METADATA_DEPENDENCIES = (PositionProvider, ExpressionContextProvider, ScopeProvider)

    def __init__(self, program: Program, part: int, plan: ImportPlan, label: str) -> None:
        super().__init__()
        self.program = program
        self.part = part
        self.plan = plan
        self.label = label
        self.notes: list[str] = []
        self.keyword_names: set[int] = set()
        self.left_alone: set[int] = set()  # ids of the functions of read calls that unpack their arguments

    # helpers -------------------------------------------------------------------------------------------------

    def _note(self, node: cst.CSTNode, text: str) -> None:
        line = self.get_metadata(PositionProvider, node).start.line
        self.notes.append(f"{self.label}line {line}: {text}")

    def _namespace(self, prefer_scanpy: bool) -> cst.BaseExpression:
        """The expression the ``*_full`` functions are taken from: scanpy's alias or scanpy_loomio's."""
        scanpy_alias = self.program.alias_of("scanpy")
        if self.plan.first_part is None:
            self.plan.first_part = self.part
        if prefer_scanpy and scanpy_alias is not None:
            return cst.parse_expression(scanpy_alias)
        self.plan.needs_module = True
        return cst.parse_expression(self.plan.module_alias)

    # calls -----------------------------------------------------------------------------------------------------

    def visit_Arg(self, node: cst.Arg) -> None:
        if node.keyword is not None:
            self.keyword_names.add(id(node.keyword))

    def visit_Call(self, node: cst.Call) -> None:
        if unpacks(node) and self.qualified_name(node.func) in READERS:
            self.left_alone.add(id(node.func))

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        target = self.qualified_name(original_node.func)
        if id(original_node.func) in self.left_alone:
            self._note(original_node, "read_loom call left as it is: it unpacks arguments; check them by hand")
            return updated_node
        if isinstance(original_node.func, cst.Name) and original_node.func.value in self.program.kept_names:
            self._note(original_node, "read_loom call left as it is: it is called with unpacked arguments elsewhere")
            return updated_node
        if target in READERS:
            return self._rewrite_read(original_node, updated_node)
        if target in GENERIC_READERS and reads_loom_literal(original_node):
            function = cst.Attribute(value=self._namespace(prefer_scanpy=True), attr=cst.Name("read_loom_full"))
            return self._rewrite_read(original_node, updated_node.with_changes(func=function))
        translated = translate_write(self.qualified_name, original_node)
        if translated is not None:
            return self._rewrite_write(original_node, updated_node, translated)
        is_write = target in WRITERS or (
            isinstance(original_node.func, cst.Attribute)
            and original_node.func.attr.value == "write_loom"
            and self.qualified_name(original_node.func.value) is None
        )
        if is_write:
            self._note(original_node, "write_loom call left as it is: its arguments could not be translated safely")
        return updated_node

    def _rewrite_read(self, original: cst.Call, updated: cst.Call) -> cst.Call:
        args = []
        for arg in updated.args:
            keyword = arg_keyword(arg)
            if keyword in DROPPED_READ_KEYWORDS:
                self._note(original, f"dropped {keyword}=: {DROPPED_READ_KEYWORDS[keyword]}")
                continue
            if keyword in RENAMED_READ_KEYWORDS:
                arg = arg.with_changes(keyword=cst.Name(RENAMED_READ_KEYWORDS[keyword]))
            elif keyword is not None and keyword not in READ_KEYWORDS:
                self._note(original, f"keyword {keyword}= is not a read_loom_full option; remove or replace it")
            args.append(arg)
        if args:  # the dropped keyword may have left a trailing comma on the new last argument
            args[-1] = args[-1].with_changes(comma=updated.args[-1].comma)
        if not any(arg_keyword(arg) == "X_name" for arg in original.args):
            self._note(
                original,
                f"read_loom made a {ANNDATA_READER.reader_x_layer!r} layer X by default, read_loom_full keeps "
                f"/matrix as X; add X_name={ANNDATA_READER.reader_x_layer!r} if the pipeline relied on that",
            )
        return updated.with_changes(args=args)

    def _rewrite_write(
        self,
        original: cst.Call,
        updated: cst.Call,
        translated: tuple[cst.BaseExpression, cst.BaseExpression],
    ) -> cst.Call:
        filename, adata = translated
        # reuse the updated (already rewritten) argument expressions
        updated_values = {id(o.value): u.value for o, u in zip(original.args, updated.args, strict=True)}
        updated_func = updated.func
        if (
            isinstance(original.func, cst.Attribute)
            and isinstance(updated_func, cst.Attribute)
            and adata is original.func.value
        ):
            adata_value = updated_func.value
        else:
            adata_value = updated_values[id(adata)]
        # keep the layout: the new arguments take the commas (with their whitespace and comments) of the old ones
        commas = [arg.comma for arg in updated.args]
        if len(commas) == 1:
            commas = [cst.Comma(whitespace_after=cst.SimpleWhitespace(" ")), commas[0]]
        args = [
            cst.Arg(value=updated_values[id(filename)], comma=commas[0]),
            cst.Arg(value=adata_value, comma=commas[-1]),
        ]
        return updated.with_changes(func=self._write_function(original), args=args)

    def _write_function(self, original: cst.Call) -> cst.BaseExpression:
        if isinstance(original.func, cst.Name):  # from anndata.io import write_loom [as alias]
            return original.func if original.func.value != "write_loom" else cst.Name("write_loom_full")
        method = isinstance(original.func, cst.Attribute) and self.qualified_name(original.func.value) is None
        namespace = self._namespace(prefer_scanpy=method)
        return cst.Attribute(value=namespace, attr=cst.Name("write_loom_full"))

    # names and attributes -------------------------------------------------------------------------------------

    def leave_Attribute(self, original_node: cst.Attribute, updated_node: cst.Attribute) -> cst.BaseExpression:
        if self.qualified_name(original_node) in READERS and id(original_node) not in self.left_alone:
            owner = self.qualified_name(original_node.value)
            if owner == "scanpy.io":  # sc.io.read_loom_full exists wherever sc.io does
                self._namespace(prefer_scanpy=True)
                return updated_node.with_changes(attr=cst.Name("read_loom_full"))
            from_scanpy = owner in SCANPY_NAMESPACES
            return cst.Attribute(value=self._namespace(prefer_scanpy=from_scanpy), attr=cst.Name("read_loom_full"))
        return updated_node

    def leave_Name(self, original_node: cst.Name, updated_node: cst.Name) -> cst.Name:
        if id(original_node) in self.keyword_names or original_node.value not in NEW_NAMES:
            return updated_node
        if id(original_node) in self.left_alone or original_node.value in self.program.kept_names:
            return updated_node
        bound = self.qualified_name(original_node)
        in_load = self.get_metadata(ExpressionContextProvider, original_node, None) == ExpressionContext.LOAD
        if in_load and (bound in READERS or bound in WRITERS):
            return updated_node.with_changes(value=NEW_NAMES[original_node.value])
        return updated_node

    # imports and statements -----------------------------------------------------------------------------------

    def visit_ImportFrom(self, node: cst.ImportFrom) -> bool:
        return False  # names inside imports are handled as a whole in leave_SimpleStatementLine

    def leave_SimpleStatementLine(
        self, original_node: cst.SimpleStatementLine, updated_node: cst.SimpleStatementLine
    ) -> cst.BaseStatement | cst.FlattenSentinel[cst.BaseStatement] | cst.RemovalSentinel:
        if id(original_node) in self.program.removable:
            return cst.RemoveFromParent()
        return rewrite_import_line(updated_node, self.program.kept_names)

    def leave_IndentedBlock(self, original_node: cst.IndentedBlock, updated_node: cst.IndentedBlock) -> cst.BaseSuite:
        return updated_node.with_changes(body=self._keep_comments_of_removed(original_node.body, updated_node.body))

    def leave_Module(self, original_node: cst.Module, updated_node: cst.Module) -> cst.Module:
        return updated_node.with_changes(body=self._keep_comments_of_removed(original_node.body, updated_node.body))

    def _keep_comments_of_removed(
        self, original: Sequence[cst.BaseStatement], updated: Sequence[cst.BaseStatement]
    ) -> list[cst.BaseStatement]:
        """Move comments written above a removed workaround line onto the next statement."""
        removed = [s for s in original if id(s) in self.program.removable]
        if not removed:
            return list(updated)
        result: list[cst.BaseStatement] = []
        carried: list[cst.EmptyLine] = []
        updated_iter = iter(updated)
        for statement in original:
            if id(statement) in self.program.removable:
                carried.extend(_leading_lines(statement))
                continue
            new = next(updated_iter)
            if carried and any(line.comment is not None for line in carried):
                new = new.with_changes(leading_lines=[*carried, *_leading_lines(new)])
            carried = []
            result.append(new)
        return result


def _leading_lines(statement: cst.BaseStatement) -> Sequence[cst.EmptyLine]:
    """The blank and comment lines above a statement (libcst declares them on the two kinds of statement only)."""
    if isinstance(statement, cst.SimpleStatementLine | cst.BaseCompoundStatement):
        return statement.leading_lines
    return ()
