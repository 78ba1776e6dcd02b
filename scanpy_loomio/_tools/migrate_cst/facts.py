"""Facts that need the whole program (pass 2): which objects are written, and which workaround lines can go."""

from __future__ import annotations

import libcst as cst
from libcst.metadata import PositionProvider, ScopeProvider

from scanpy_loomio._tools.migrate_cst.calls import node_code, string_value, translate_write, unpacks
from scanpy_loomio._tools.migrate_cst.names import READERS, Program, ScopedResolution
from scanpy_loomio.conventions import get_convention
from scanpy_loomio.conventions.table import ANNDATA_CONVENTION

# Expressions that carry the same values as the index they are called on.
SAME_VALUES_SUFFIXES = frozenset({"values", "to_numpy", "tolist", "to_list"})
# What anndata's read_loom does by default (its row in the convention table): where it looks for the names, and
# the layer it makes X.
ANNDATA_READER = get_convention(ANNDATA_CONVENTION)
# The workaround column each axis got, and the attributes that hold that axis' index.
WORKAROUNDS = {axis: (column, f"{axis}_names") for axis, column in ANNDATA_READER.reader_names.items()}


class FactCollector(ScopedResolution, cst.CSTVisitor):
    """Pass 2: which objects are written to loom (and where), workaround lines, string literal counts."""

    METADATA_DEPENDENCIES = (PositionProvider, ScopeProvider)

    def __init__(self, program: Program, part: int) -> None:
        super().__init__()
        self.program = program
        self.part = part
        self.sole_statements: set[int] = set()

    def _where(self, node: cst.CSTNode) -> tuple[int, int]:
        return (self.part, self.get_metadata(PositionProvider, node).start.line)

    def visit_SimpleString(self, node: cst.SimpleString) -> None:
        value = string_value(node)
        if value is not None:
            self.program.literal_counts[value] = self.program.literal_counts.get(value, 0) + 1

    def visit_Call(self, node: cst.Call) -> None:
        if unpacks(node) and isinstance(node.func, cst.Name) and self.qualified_name(node.func) in READERS:
            self.program.kept_names.add(node.func.value)
        translated = translate_write(self.qualified_name, node)
        if translated is not None:
            self.program.write_sites.append((self._where(node), node_code(translated[1])))

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
    if string_value(index.value) != column:
        return None
    receiver = node_code(target.value.value)
    value = assign.value
    # strip `.values`, `.to_numpy()`, ...: they carry the same values
    if isinstance(value, cst.Call) and not value.args:
        value = value.func
    if isinstance(value, cst.Attribute) and value.attr.value in SAME_VALUES_SUFFIXES:
        value = value.value
    if not isinstance(value, cst.Attribute):
        return None
    if value.attr.value == names_attribute:
        same_object = node_code(value.value) == receiver
    elif value.attr.value == "index" and isinstance(value.value, cst.Attribute) and value.value.attr.value == axis:
        same_object = node_code(value.value.value) == receiver
    else:
        same_object = False
    return (receiver, column) if same_object else None


def removable_workarounds(program: Program) -> set[int]:
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
