"""No pickle, no eval, no exec: nothing in the package can turn file contents into code.

The package source is parsed (not grepped, so comments and strings do not count) and every construct that can run
code from data is refused: importing pickle-like modules, calling ``eval``/``exec``/``compile``/``__import__``,
numpy's ``allow_pickle=True``, pandas' pickle readers and yaml's unsafe loaders. Values are read with JSON and
anndata's element encoding only.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "scanpy_loomio"

#: Modules whose loading runs code stored in data.
UNSAFE_MODULES = frozenset(
    {"pickle", "_pickle", "cPickle", "dill", "cloudpickle", "joblib", "marshal", "shelve", "jsonpickle"}
)
#: Built-ins that run code given as data.
UNSAFE_BUILTINS = frozenset({"eval", "exec", "compile", "__import__", "execfile"})
#: Attribute calls that unpickle or run code from data, whatever the object.
UNSAFE_ATTRIBUTES = frozenset({"read_pickle", "to_pickle", "loads_pickle", "unsafe_load", "full_load"})


def unsafe_constructs(source: str, filename: str = "<source>") -> list[str]:
    """Every construct in ``source`` that can turn data into code, as ``'line: description'``."""
    found = []
    for node in ast.walk(_with_parents(ast.parse(source, filename))):
        line = getattr(node, "lineno", 0)
        if isinstance(node, ast.Import):
            found += [f"{line}: import {a.name}" for a in node.names if a.name.split(".")[0] in UNSAFE_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in UNSAFE_MODULES:
            found.append(f"{line}: from {node.module} import ...")
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in UNSAFE_BUILTINS:
                found.append(f"{line}: {func.id}(...)")
            elif isinstance(func, ast.Attribute) and (
                func.attr in UNSAFE_ATTRIBUTES
                or (func.attr in UNSAFE_BUILTINS and _is_name(func.value, "builtins", "__builtins__"))
            ):
                found.append(f"{line}: .{func.attr}(...)")
            elif isinstance(func, ast.Attribute) and func.attr == "load" and _is_name(func.value, "yaml"):
                if not any(k.arg == "Loader" and "Safe" in ast.unparse(k.value) for k in node.keywords):
                    found.append(f"{line}: yaml.load without a safe loader")
            for keyword in node.keywords:
                if keyword.arg == "allow_pickle" and not _is_false(keyword.value):
                    found.append(f"{line}: allow_pickle={ast.unparse(keyword.value)}")
        elif isinstance(node, ast.Name) and node.id in ("eval", "exec") and isinstance(node.ctx, ast.Load):
            found.append(f"{line}: reference to {node.id}")  # e.g. getattr(builtins, ...) or passing it around
        elif isinstance(node, ast.Constant) and node.value in UNSAFE_BUILTINS and _looks_like_getattr_target(node):
            found.append(f"{line}: name {node.value!r} looked up dynamically")
    return found


def _is_name(node: ast.AST, *names: str) -> bool:
    return isinstance(node, ast.Name) and node.id in names


def _is_false(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and node.value is False


def _looks_like_getattr_target(node: ast.Constant) -> bool:
    parent = getattr(node, "parent", None)
    return isinstance(parent, ast.Call) and isinstance(parent.func, ast.Name) and parent.func.id == "getattr"


def _with_parents(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        for child in ast.iter_child_nodes(node):
            child.parent = node
    return tree


def package_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_package_has_source_files() -> None:
    assert len(package_files()) > 5


@pytest.mark.parametrize("path", package_files(), ids=lambda p: p.name)
def test_no_code_from_data(path: Path) -> None:
    assert unsafe_constructs(path.read_text(encoding="utf-8"), str(path)) == []


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import pickle", "1: import pickle"),
        ("import dill as d", "1: import dill"),
        ("from joblib import load", "1: from joblib import ..."),
        ("from _pickle import loads", "1: from _pickle import ..."),
        ("eval('1')", "1: eval(...)"),
        ("exec(code)", "1: exec(...)"),
        ("builtins.exec(code)", "1: .exec(...)"),
        ("compile(src, 'f', 'exec')", "1: compile(...)"),
        ("__import__(name)", "1: __import__(...)"),
        ("np.load(path, allow_pickle=True)", "1: allow_pickle=True"),
        ("np.load(path, allow_pickle=flag)", "1: allow_pickle=flag"),
        ("pd.read_pickle(path)", "1: .read_pickle(...)"),
        ("yaml.load(text)", "1: yaml.load without a safe loader"),
        ("run = eval", "1: reference to eval"),
        ("getattr(builtins, 'exec')(code)", "1: name 'exec' looked up dynamically"),
    ],
)
def test_scanner_finds_each_construct(source: str, expected: str) -> None:
    assert expected in unsafe_constructs(source)


@pytest.mark.parametrize(
    "source",
    [
        "json.loads(text)",
        "np.load(path, allow_pickle=False)",
        "yaml.load(text, Loader=yaml.SafeLoader)",
        "re.compile(pattern)",  # a regex, not code
        "self.eval_mode = True",
        "# eval(x) in a comment",
        "message = 'do not eval this'",
    ],
)
def test_scanner_allows_safe_code(source: str) -> None:
    assert unsafe_constructs(source) == []
