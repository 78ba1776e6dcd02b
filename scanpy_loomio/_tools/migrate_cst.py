"""Concrete-syntax-tree rewriting of anndata/scanpy loom calls (needs libcst).

The source of one program is given as a list of parts (a ``.py`` file is one part, a notebook has one part
per code cell) because names imported in one notebook cell are used in later ones.
Three passes run over the parts: find what the loom-related names are bound to, collect facts that need
the whole program (which objects are written, which workaround lines exist), then rewrite.
Names are resolved through the imports; a name rebound in its scope (a parameter called ``sc``, a local function
called ``read_loom``) is not the import and is left alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import libcst as cst
from libcst.helpers import get_full_name_for_node_or_raise
from libcst.metadata import (
    ExpressionContext,
    ExpressionContextProvider,
    MetadataWrapper,
    PositionProvider,
    ScopeProvider,
)

from scanpy_loomio.conventions import get_convention
from scanpy_loomio.conventions.table import ANNDATA_CONVENTION

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

READERS = frozenset({"scanpy.read_loom", "scanpy.io.read_loom", "anndata.read_loom", "anndata.io.read_loom"})
WRITERS = frozenset({"anndata.io.write_loom"})
MODULES = frozenset({"scanpy", "scanpy.io", "anndata", "anndata.io", "scanpy_loomio", "scvelo"})
#: ``read(filename)`` functions that call anndata's ``read_loom`` for ``.loom`` files (scVelo's is scanpy's).
GENERIC_READERS = frozenset({"scanpy.read", "scanpy.io.read", "scvelo.read"})
#: Namespaces that get ``read_loom_full`` themselves from ``import scanpy_loomio`` (``scanpy.io`` from scanpy 1.13).
SCANPY_NAMESPACES = frozenset({"scanpy", "scanpy.io"})
#: Top-level packages whose imports are followed.
ROOT_PACKAGES = frozenset(module.split(".")[0] for module in MODULES)
NEW_NAMES = {"read_loom": "read_loom_full", "write_loom": "write_loom_full"}

# keywords read_loom_full has no use for, and why they can go
DROPPED_READ_KEYWORDS = {
    "validate": "read_loom_full never runs loompy's validator",
    "cache": "read_loom_full keeps no .h5ad cache; the file is read each time",
}
# anndata's deprecated spellings of read_loom keywords, and their current names
RENAMED_READ_KEYWORDS = {"obsm_names": "obsm_mapping", "varm_names": "varm_mapping"}
READ_KEYWORDS = frozenset(
    {"filename", "X_name", "obs_names", "var_names", "obsm_mapping", "varm_mapping", "sparse", "cleanup", "dtype"}
)
# Expressions that carry the same values as the index they are called on.
SAME_VALUES_SUFFIXES = frozenset({"values", "to_numpy", "tolist", "to_list"})
# What anndata's read_loom does by default (its row in the convention table): where it looks for the names, and
# the layer it makes X.
ANNDATA_READER = get_convention(ANNDATA_CONVENTION)
# The workaround column each axis got (where read_loom looks for the names), and the attribute holding that axis' index.
WORKAROUNDS = {axis: (column, f"{axis}_names") for axis, column in ANNDATA_READER.reader_names.items()}


@dataclass
class RewriteResult:
    """Rewritten parts plus notes for the user, each note prefixed with where it applies."""

    parts: list[str]
    notes: list[list[str]]


@dataclass
class _Program:
    """Facts about the whole program, gathered before anything is rewritten."""

    bindings: dict[str, str] = field(default_factory=dict)  # local name -> qualified name
    write_sites: list[tuple[tuple[int, int], str]] = field(default_factory=list)  # (part, line), receiver code
    workarounds: dict[int, tuple[tuple[int, int], str, str]] = field(default_factory=dict)
    literal_counts: dict[str, int] = field(default_factory=dict)
    removable: set[int] = field(default_factory=set)  # ids of workaround statements to remove
    # local names of imported readers called with unpacked arguments somewhere: left alone, import included
    kept_names: set[str] = field(default_factory=set)

    def resolve(self, node: cst.BaseExpression, imported: Callable[[cst.Name], bool]) -> str | None:
        """Qualified name of a dotted expression bound through imports, else None.

        ``imported`` tells whether a name refers to an import (and not to a local variable shadowing it).
        """
        if isinstance(node, cst.Name):
            return self.bindings.get(node.value) if imported(node) else None
        if isinstance(node, cst.Attribute):
            base = self.resolve(node.value, imported)
            if base is not None and (base in MODULES or base.startswith("anndata.")):
                return f"{base}.{node.attr.value}"
        return None

    def alias_of(self, qualified: str) -> str | None:
        """A local name bound to ``qualified`` (the first one imported), if any."""
        return next((name for name, target in self.bindings.items() if target == qualified), None)


def _code(node: cst.CSTNode) -> str:
    return cst.Module(body=[]).code_for_node(node)


def _string_value(node: cst.BaseExpression) -> str | None:
    if isinstance(node, cst.SimpleString):
        value = node.evaluated_value
        return value if isinstance(value, str) else None
    return None


class _BindingCollector(cst.CSTVisitor):
    """Pass 1: what scanpy, anndata, scVelo and scanpy_loomio names are imported as."""

    def __init__(self, program: _Program) -> None:
        self.program = program

    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> None:
        for statement in node.body:
            self._bind(statement)

    @staticmethod
    def imports_scanpy_or_anndata(statement: cst.BaseSmallStatement) -> bool:
        if isinstance(statement, cst.Import):
            modules = [alias.evaluated_name for alias in statement.names]
        elif isinstance(statement, cst.ImportFrom) and not statement.relative and statement.module is not None:
            modules = [get_full_name_for_node_or_raise(statement.module)]
        else:
            return False
        return any(module.split(".")[0] in {"scanpy", "anndata"} for module in modules)

    def _bind(self, statement: cst.BaseSmallStatement) -> None:
        """Record the names an import statement binds to objects of :data:`ROOT_PACKAGES`."""
        if isinstance(statement, cst.Import):
            for alias in statement.names:
                module = alias.evaluated_name
                root = module.split(".")[0]
                if root not in ROOT_PACKAGES:
                    continue
                local = alias.evaluated_alias
                if local is not None:
                    self.program.bindings[local] = module
                else:
                    self.program.bindings[root] = root
        elif isinstance(statement, cst.ImportFrom) and not statement.relative and statement.module is not None:
            module = get_full_name_for_node_or_raise(statement.module)
            if module in MODULES and not isinstance(statement.names, cst.ImportStar):
                for alias in statement.names:
                    name = alias.evaluated_name
                    self.program.bindings[alias.evaluated_alias or name] = f"{module}.{name}"


class _ScopedResolution(cst.MetadataDependent):
    """Resolution of names through imports, for visitors that depend on ScopeProvider."""

    program: _Program

    def imported(self, name: cst.Name) -> bool:
        """True when ``name`` refers to an import, or to nothing in this part (bound by an earlier part)."""
        scope = self.get_metadata(ScopeProvider, name, None)
        if scope is None:
            return True
        return all(isinstance(getattr(a, "node", None), cst.Import | cst.ImportFrom) for a in scope[name.value])

    def qualified_name(self, node: cst.BaseExpression) -> str | None:
        return self.program.resolve(node, self.imported)


class _FactCollector(_ScopedResolution, cst.CSTVisitor):
    """Pass 2: which objects are written to loom (and where), workaround lines, string literal counts."""

    METADATA_DEPENDENCIES = (PositionProvider, ScopeProvider)

    def __init__(self, program: _Program, part: int) -> None:
        super().__init__()
        self.program = program
        self.part = part
        self.sole_statements: set[int] = set()

    def _where(self, node: cst.CSTNode) -> tuple[int, int]:
        return (self.part, self.get_metadata(PositionProvider, node).start.line)

    def visit_SimpleString(self, node: cst.SimpleString) -> None:
        value = _string_value(node)
        if value is not None:
            self.program.literal_counts[value] = self.program.literal_counts.get(value, 0) + 1

    def visit_Call(self, node: cst.Call) -> None:
        if _unpacks(node) and isinstance(node.func, cst.Name) and self.qualified_name(node.func) in READERS:
            self.program.kept_names.add(node.func.value)
        translated = _translate_write(self.qualified_name, node)
        if translated is not None:
            self.program.write_sites.append((self._where(node), _code(translated[1])))

    def visit_IndentedBlock(self, node: cst.IndentedBlock) -> None:
        if len(node.body) == 1:
            self.sole_statements.add(id(node.body[0]))

    def visit_SimpleStatementLine(self, node: cst.SimpleStatementLine) -> None:
        workaround = _workaround(node)
        if workaround is not None and id(node) not in self.sole_statements:  # removing it would empty a block
            receiver, column = workaround
            self.program.workarounds[id(node)] = (self._where(node), receiver, column)


def _workaround(line: cst.SimpleStatementLine) -> tuple[str, str] | None:
    """``(receiver code, column)`` when the line is ``X.obs["CellID"] = X.obs_names`` or one of its variants."""
    if len(line.body) != 1 or not isinstance(assign := line.body[0], cst.Assign) or len(assign.targets) != 1:
        return None
    target = assign.targets[0].target
    if not (isinstance(target, cst.Subscript) and isinstance(target.value, cst.Attribute)) or len(target.slice) != 1:
        return None
    axis = target.value.attr.value
    if axis not in WORKAROUNDS or not isinstance(index := target.slice[0].slice, cst.Index):
        return None
    column, names_attribute = WORKAROUNDS[axis]
    if _string_value(index.value) != column:
        return None
    receiver = _code(target.value.value)
    value = assign.value
    # strip `.values`, `.to_numpy()`, ...: they carry the same values
    if isinstance(value, cst.Call) and not value.args:
        value = value.func
    if isinstance(value, cst.Attribute) and value.attr.value in SAME_VALUES_SUFFIXES:
        value = value.value
    if not isinstance(value, cst.Attribute):
        return None
    if value.attr.value == names_attribute:
        same_object = _code(value.value) == receiver
    elif value.attr.value == "index" and isinstance(value.value, cst.Attribute) and value.value.attr.value == axis:
        same_object = _code(value.value.value) == receiver
    else:
        same_object = False
    return (receiver, column) if same_object else None


def _reads_loom_literal(call: cst.Call) -> bool:
    """True for ``sc.read("….loom", …)`` with only options that scanpy passes on to ``read_loom``."""
    keywords = {arg.keyword.value for arg in call.args if arg.keyword is not None}
    filenames = [arg.value for arg in call.args if arg.keyword is None or _arg_keyword(arg) == "filename"]
    if len(filenames) != 1 or keywords - READ_KEYWORDS - set(DROPPED_READ_KEYWORDS) - set(RENAMED_READ_KEYWORDS):
        return False
    filename = _string_value(filenames[0])
    return filename is not None and filename.endswith(".loom")


def _unpacks(call: cst.Call) -> bool:
    """True when the call passes ``*args`` or ``**kwargs``: which keywords arrive cannot be known."""
    return any(arg.star for arg in call.args)


def _arg_keyword(arg: cst.Arg) -> str | None:
    return arg.keyword.value if arg.keyword is not None else None


def _translate_write(
    resolve: Callable[[cst.BaseExpression], str | None], call: cst.Call
) -> tuple[cst.BaseExpression, cst.BaseExpression] | None:
    """``(filename, adata)`` of a ``write_loom`` call this rewriter can translate, else None."""
    if any(arg.star for arg in call.args):
        return None
    positional = [arg.value for arg in call.args if arg.keyword is None]
    keywords = {arg.keyword.value: arg.value for arg in call.args if arg.keyword is not None}
    function = call.func
    if isinstance(function, cst.Attribute) and function.attr.value == "write_loom" and resolve(function.value) is None:
        # AnnData.write_loom(self, filename, *, write_obsm_varm=False); older anndata took the flag positionally
        return _bind_arguments(["filename", "write_obsm_varm"], positional, keywords, adata=function.value)
    if resolve(function) in WRITERS:
        # anndata.io.write_loom(filename, adata, *, write_obsm_varm=False)
        return _bind_arguments(["filename", "adata", "write_obsm_varm"], positional, keywords)
    return None


def _bind_arguments(
    names: list[str],
    positional: list[cst.BaseExpression],
    keywords: dict[str, cst.BaseExpression],
    adata: cst.BaseExpression | None = None,
) -> tuple[cst.BaseExpression, cst.BaseExpression] | None:
    """``(filename, adata)`` bound like Python would bind the call's arguments to ``names``, else None."""
    if len(positional) > len(names) or set(keywords) - set(names):
        return None
    bound = dict(zip(names, positional, strict=False))
    if set(bound) & set(keywords):
        return None  # the same argument twice: the call fails anyway
    bound |= keywords
    if adata is not None:
        bound["adata"] = adata
    if "filename" not in bound or "adata" not in bound:
        return None
    return (bound["filename"], bound["adata"])


class _Rewriter(_ScopedResolution, cst.CSTTransformer):
    """Pass 3: rewrite calls, imports and workaround lines of one part."""

    METADATA_DEPENDENCIES = (PositionProvider, ExpressionContextProvider, ScopeProvider)

    def __init__(self, program: _Program, part: int, plan: _ImportPlan, label: str) -> None:
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
        if _unpacks(node) and self.qualified_name(node.func) in READERS:
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
        if target in GENERIC_READERS and _reads_loom_literal(original_node):
            function = cst.Attribute(value=self._namespace(prefer_scanpy=True), attr=cst.Name("read_loom_full"))
            return self._rewrite_read(original_node, updated_node.with_changes(func=function))
        translated = _translate_write(self.qualified_name, original_node)
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
            keyword = _arg_keyword(arg)
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
        if not any(_arg_keyword(arg) == "X_name" for arg in original.args):
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
        if len(updated_node.body) != 1 or not isinstance(statement := updated_node.body[0], cst.ImportFrom):
            return updated_node
        if isinstance(statement.names, cst.ImportStar) or statement.module is None:
            return updated_node
        module = get_full_name_for_node_or_raise(statement.module)
        moved = [
            a
            for a in statement.names
            if f"{module}.{a.evaluated_name}" in READERS | WRITERS
            and (a.evaluated_alias or a.evaluated_name) not in self.program.kept_names
        ]
        if not moved:
            return updated_node
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
        comments = [c for alias in moved if (c := _comment_after(alias.comma)) is not None]
        new_line = cst.SimpleStatementLine(
            body=[cst.ImportFrom(module=cst.Name("scanpy_loomio"), names=new_aliases)],
            trailing_whitespace=cst.TrailingWhitespace(whitespace=cst.SimpleWhitespace("  "), comment=comments[0])
            if comments
            else cst.TrailingWhitespace(),
        )
        if not kept:
            if updated_node.trailing_whitespace.comment is not None:
                new_line = new_line.with_changes(trailing_whitespace=updated_node.trailing_whitespace)
            return new_line.with_changes(leading_lines=updated_node.leading_lines)
        if statement.names[-1] in moved:
            kept[-1] = kept[-1].with_changes(comma=_last_comma(kept[-1].comma, statement.names[-1].comma, statement))
        old_line = updated_node.with_changes(body=[statement.with_changes(names=kept)])
        return cst.FlattenSentinel([old_line, new_line])

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


def _comment_after(comma: cst.Comma | cst.MaybeSentinel) -> cst.Comment | None:
    """The comment at the end of the line a comma ends (in a parenthesized, one-name-per-line import)."""
    if isinstance(comma, cst.Comma) and isinstance(comma.whitespace_after, cst.ParenthesizedWhitespace):
        return comma.whitespace_after.first_line.comment
    return None


def _last_comma(
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


def _default_import_position(module: cst.Module) -> int:
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


def _anchor_position(module: cst.Module) -> int | None:
    """Index after the first top-level statement importing scanpy or anndata."""
    for index, statement in enumerate(module.body):
        if isinstance(statement, cst.SimpleStatementLine) and any(
            _BindingCollector.imports_scanpy_or_anndata(small) for small in statement.body
        ):
            return index + 1
    return None


@dataclass
class _ImportPlan:
    """Whether ``import scanpy_loomio`` is needed, and for what."""

    module_alias: str
    needs_module: bool = False  # ``scanpy_loomio.`` is used, not only ``sc.*_full``
    first_part: int | None = None  # the first part that needed the import


def _removable_workarounds(program: _Program) -> set[int]:
    """Workaround lines whose object is written by a rewritten write_loom afterwards and whose column is unused."""
    used_by_workarounds: dict[str, int] = {}
    for _, _, column in program.workarounds.values():
        used_by_workarounds[column] = used_by_workarounds.get(column, 0) + 1
    removable = set()
    for statement, (where, receiver, column) in program.workarounds.items():
        if program.literal_counts.get(column, 0) != used_by_workarounds[column]:
            continue  # the column name appears elsewhere: something may read it
        if any(site > where and written == receiver for site, written in program.write_sites):
            removable.add(statement)
    return removable


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
    program = _Program()
    for module in modules:
        module.visit(_BindingCollector(program))
    for index, wrapper in enumerate(wrappers):
        wrapper.visit(_FactCollector(program, index))
    program.removable = _removable_workarounds(program)

    existing_module = program.alias_of("scanpy_loomio")
    plan = _ImportPlan(module_alias=existing_module or "scanpy_loomio")
    rewritten: list[cst.Module] = []
    notes: list[list[str]] = []
    for index, wrapper in enumerate(wrappers):
        rewriter = _Rewriter(program, index, plan, labels[index])
        rewritten.append(wrapper.visit(rewriter))
        notes.append(rewriter.notes)

    if existing_module is None and plan.first_part is not None:
        anchors = [_anchor_position(module) for module in rewritten]
        part = next((i for i, anchor in enumerate(anchors) if anchor is not None), plan.first_part)
        anchor = anchors[part]
        position = anchor if anchor is not None else _default_import_position(rewritten[part])
        rewritten[part] = _insert_import(rewritten[part], position, side_effect_only=not plan.needs_module)
    return RewriteResult(parts=[module.code for module in rewritten], notes=notes)


def _insert_import(module: cst.Module, position: int, *, side_effect_only: bool) -> cst.Module:
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
