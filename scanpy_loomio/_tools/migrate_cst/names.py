"""Which names the loom functions go by: the modules followed, and the names imports bind (pass 1)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import libcst as cst
from libcst.helpers import get_full_name_for_node_or_raise
from libcst.metadata import ScopeProvider

if TYPE_CHECKING:
    from collections.abc import Callable

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


@dataclass
class Program:
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


class BindingCollector(cst.CSTVisitor):
    """Pass 1: what scanpy, anndata, scVelo and scanpy_loomio names are imported as."""

    def __init__(self, program: Program) -> None:
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


class ScopedResolution(cst.MetadataDependent):
    """Resolution of names through imports, for visitors that depend on ScopeProvider."""

    program: Program

    def imported(self, name: cst.Name) -> bool:
        """True when ``name`` refers to an import, or to nothing in this part (bound by an earlier part)."""
        scope = self.get_metadata(ScopeProvider, name, None)
        if scope is None:
            return True
        return all(isinstance(getattr(a, "node", None), cst.Import | cst.ImportFrom) for a in scope[name.value])

    def qualified_name(self, node: cst.BaseExpression) -> str | None:
        return self.program.resolve(node, self.imported)
