"""Every code example in the README, the docs and the docstrings runs.

A page's Python blocks run in order in one namespace, the way a reader pastes them into one session; its shell
blocks run their commands in between, in the same temporary working directory. Commands that cannot sensibly run
from inside the test suite are listed in `NOT_RUN` with the reason. Blocks in other languages (text, toml, diff,
...) are not code, but every block must name its language so that Python is never left unrun by omission.
Docstring examples (``>>>``) run as doctests in a temporary working directory, with `getfixture` as under
``pytest --doctest-modules``.
"""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import os
import pkgutil
import re
import runpy
import subprocess
import sys
import zlib
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
DOCS = ROOT / "docs"
PACKAGE = "scanpy_loomio"

PYTHON = {"python", "py", "python3", "ipython"}
PYCON = {"pycon"}
SHELL = {"bash", "sh", "shell", "zsh"}
CONSOLE = {"console", "shell-session"}  # commands after `$ `, the rest is output

NOT_RUN = {
    "pip install": "installs into the environment running these tests; .ci/run runs the README's install commands",
    "conda install": "installs from conda-forge; the recipe is checked on its own",
    "mamba install": "installs from conda-forge; the recipe is checked on its own",
    "pytest": "is this test suite",
    "python -m pytest": "is this test suite",
    "sphinx-build": "builds these docs, which .ci/run does",
    "python -m sphinx": "builds these docs, which .ci/run does",
    "python benchmarks/run.py": "benchmarks take minutes and are run on their own",
    "python benchmarks/concat.py": "benchmarks take minutes and are run on their own",
    "pre-commit": "installs git hooks and runs the linters, which are development tools, not this suite",
    "mypy": "type checking is a step of its own in .ci/run",
    "python docs/_inventories/make_inventories.py": "rewrites the committed inventories from the installed packages",
    "python benchmarks/subset.py": "benchmarks take minutes and are run on their own",
    "python benchmarks/streaming.py": "benchmarks take minutes and are run on their own",
    "git clone": "the tests already run in a checkout",
    "cd ": "the tests already run in a checkout",
}

FENCE_OPEN = re.compile(r"^ {0,3}(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*?)\s*$")
DIRECTIVE = re.compile(r"^\{(?P<name>[\w:-]+)\}\s*(?P<argument>.*)$")
CODE_DIRECTIVES = {"code-block", "code", "code-cell", "sourcecode"}


@dataclass(frozen=True)
class Block:
    """One fenced code block of a Markdown page."""

    page: Path
    line: int  # 1-based line of the opening fence
    language: str  # lower case; "" when the fence names none
    code: str
    is_code: bool  # False for MyST directives that are not code (toctree, eval-rst, include, ...)

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def fenced_blocks(page: Path) -> list[Block]:
    """The top-level fenced blocks of a Markdown page, with MyST code directives read as code."""
    blocks = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = FENCE_OPEN.match(lines[i])
        if opening is None:
            i += 1
            continue
        fence, info = opening["fence"], opening["info"]
        close = re.compile(rf"^ {{0,3}}{re.escape(fence[0])}{{{len(fence)},}}\s*$")
        end = next((j for j in range(i + 1, len(lines)) if close.match(lines[j])), len(lines))
        body = lines[i + 1 : end]
        is_code, language = True, info.split(maxsplit=1)[0].lower() if info else ""
        if directive := DIRECTIVE.match(info):
            is_code = directive["name"] in CODE_DIRECTIVES
            language = directive["argument"].split(maxsplit=1)[0].lower() if directive["argument"] else ""
            while body and re.match(r"^:[\w-]+:", body[0]):  # directive options
                body = body[1:]
        blocks.append(Block(page, i + 1, language, "\n".join(body) + "\n", is_code))
        i = end + 1
    return blocks


def commands(block: Block) -> list[str]:
    """The shell commands of a block: continuation lines joined, comments and (in console blocks) output dropped."""
    found: list[str] = []
    pending: str | None = None
    for raw in block.code.splitlines():
        if pending is not None:
            line = raw.strip().removeprefix("> ")
        elif block.language in CONSOLE:
            if not raw.startswith("$ "):
                continue  # output
            line = raw[2:]
        else:
            line = raw
        part = line.strip()
        continued = part.endswith("\\")
        part = part.removesuffix("\\").strip()
        pending = part if pending is None else f"{pending} {part}"
        if continued:
            continue
        if pending and not pending.startswith("#"):
            found.append(pending)
        pending = None
    return found


def not_run_reason(command: str) -> str | None:
    return next((reason for prefix, reason in NOT_RUN.items() if command.startswith(prefix)), None)


def pages() -> list[Path]:
    found = [ROOT / "README.md", *DOCS.rglob("*.md")]
    return sorted(p for p in found if p.is_file() and not {"_build", "generated"} & set(p.parts))


def runnable(page: Path) -> bool:
    return any(
        b.language in PYTHON | PYCON or any(not_run_reason(c) is None for c in commands(b))
        for b in fenced_blocks(page)
        if b.is_code and b.language in PYTHON | PYCON | SHELL | CONSOLE
    )


def run_shell(command: str, where: str, cwd: Path) -> None:
    env = dict(os.environ)
    # `python` and console scripts resolve to the environment running the tests, activated or not
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, (
        f"{where}: `{command}` exited with {result.returncode}\n{result.stdout}\n{result.stderr}"
    )


def run_doctest(test: doctest.DocTest) -> None:
    report: list[str] = []
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)


@pytest.mark.parametrize("page", [p for p in pages() if runnable(p)], ids=lambda p: str(p.relative_to(ROOT)))
def test_page_examples_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "__main__"}
    for block in fenced_blocks(page):
        if not block.is_code:
            continue
        if block.language in PYTHON:
            exec(compile(block.code, block.where, "exec"), namespace)
        elif block.language in PYCON:
            parsed = doctest.DocTestParser().get_doctest(block.code, namespace, block.where, str(page), block.line)
            run_doctest(parsed)
        elif block.language in SHELL | CONSOLE:
            for command in commands(block):
                if not_run_reason(command) is None:
                    run_shell(command, block.where, tmp_path)


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_code_blocks_name_their_language(page: Path):
    unnamed = [b.where for b in fenced_blocks(page) if b.is_code and not b.language]
    assert not unnamed, f"code blocks without a language (```python, ```bash, ```text, ...): {unnamed}"


def modules_with_examples() -> list[str]:
    package = importlib.import_module(PACKAGE)
    names = [PACKAGE, *(m.name for m in pkgutil.walk_packages(package.__path__, f"{PACKAGE}."))]
    finder = doctest.DocTestFinder()
    return [
        name
        for name in names
        if not name.endswith("__main__") and any(t.examples for t in finder.find(importlib.import_module(name)))
    ]


@pytest.mark.parametrize("module", modules_with_examples())
def test_docstring_examples_run(
    module: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
):
    monkeypatch.chdir(tmp_path)
    for test in doctest.DocTestFinder().find(importlib.import_module(module)):
        if test.examples:
            # `getfixture("tmp_path")` works as under `pytest --doctest-modules`
            test.globs["getfixture"] = request.getfixturevalue
            run_doctest(test)


def test_the_block_reader_finds_code_directives_and_skips_other_directives(tmp_path: Path):
    page = tmp_path / "page.md"
    page.write_text(
        "text\n\n````{code-block} python\n:caption: c\nx = 1\n```\nnested\n```\n````\n\n"
        "```{toctree}\nindex\n```\n\n```\nplain\n```\n\n```console\n$ echo a \\\n  b\noutput\n```\n",
        encoding="utf-8",
    )
    blocks = fenced_blocks(page)
    assert [(b.line, b.language, b.is_code) for b in blocks] == [
        (3, "python", True),
        (11, "", False),
        (15, "", True),
        (19, "console", True),
    ]
    assert blocks[0].code == "x = 1\n```\nnested\n```\n"
    assert commands(blocks[3]) == ["echo a b"]


# -- intersphinx inventories ------------------------------------------------------------------------------------

INVENTORIES = DOCS / "_inventories"


def load_inventory_script():
    spec = importlib.util.spec_from_file_location("make_inventories", INVENTORIES / "make_inventories.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


def read_inventory(data: bytes) -> tuple[str, str, dict[tuple[str, str], str]]:
    """Project, version and ``(name, role) -> uri`` of an inventory, read as Sphinx's format describes it."""
    format_line, project, version, compressed_line, body = data.split(b"\n", 4)
    assert format_line == b"# Sphinx inventory version 2"
    assert compressed_line == b"# The remainder of this file is compressed using zlib."
    entries = {}
    for line in zlib.decompress(body).decode().splitlines():
        name, role, priority, uri, display = line.split(" ")  # no name here has a space
        assert role.startswith("py:") and priority.lstrip("-").isdigit() and display == "-", line
        entries[name, role] = uri[:-1] + name if uri.endswith("$") else uri
    return project.decode().removeprefix("# Project: "), version.decode().removeprefix("# Version: "), entries


def test_conf_links_every_inventory_to_its_site():
    conf = runpy.run_path(str(DOCS / "conf.py"))
    projects = load_inventory_script().PROJECTS
    assert {name: url for name, (url, _) in conf["intersphinx_mapping"].items()} == {
        name: project.url for name, project in projects.items()
    }
    for name, (_, inventory) in conf["intersphinx_mapping"].items():
        assert read_inventory(Path(inventory).read_bytes())[0] == name


# Pages of the real documentation sites, as they are published.
REAL_PAGES = {
    ("python", "pathlib.Path", "py:class"): "library/pathlib.html#pathlib.Path",
    ("python", "typing.Literal", "py:data"): "library/typing.html#typing.Literal",
    ("python", "str", "py:class"): "library/stdtypes.html#str",
    ("python", "ValueError", "py:exception"): "library/exceptions.html#ValueError",
    ("numpy", "numpy.ndarray", "py:class"): "reference/generated/numpy.ndarray.html#numpy.ndarray",
    (
        "numpy",
        "numpy.ndarray.astype",
        "py:method",
    ): "reference/generated/numpy.ndarray.astype.html#numpy.ndarray.astype",
    ("scipy", "scipy.sparse.csr_matrix", "py:class"): "reference/generated/scipy.sparse.csr_matrix.html"
    "#scipy.sparse.csr_matrix",
    ("pandas", "pandas.api.types.is_string_dtype", "py:function"): "reference/api/pandas.api.types.is_string_dtype.html"
    "#pandas.api.types.is_string_dtype",
    ("h5py", "h5py.Dataset", "py:class"): "high/dataset.html#h5py.Dataset",
    ("h5py", "h5py.string_dtype", "py:function"): "special.html#h5py.string_dtype",
    ("anndata", "anndata.AnnData.strings_to_categoricals", "py:method"): "generated/"
    "anndata.AnnData.strings_to_categoricals.html#anndata.AnnData.strings_to_categoricals",
    ("scanpy", "scanpy.read_loom", "py:function"): "api/generated/scanpy.read_loom.html#scanpy.read_loom",
    ("dask", "dask.array.Array.compute_chunk_sizes", "py:method"): "generated/"
    "dask.array.Array.compute_chunk_sizes.html#dask.array.Array.compute_chunk_sizes",
}


@pytest.mark.parametrize(("project", "name", "role"), list(REAL_PAGES), ids=lambda v: v)
def test_committed_inventories_point_at_the_real_pages(project: str, name: str, role: str):
    _, version, entries = read_inventory((INVENTORIES / f"{project}.inv").read_bytes())
    assert re.fullmatch(r"\d+\.\d+", version)
    assert entries[name, role] == REAL_PAGES[project, name, role]


def test_inventory_writer_output_reads_back():
    script = load_inventory_script()
    project = script.Project("demo", "demo", "https://example.org/", (), script.generated_pages("api/"))
    lines = script.inventory_lines(project, [("demo.Thing", "py:class"), ("demo", "py:module")])
    assert lines == ["demo.Thing py:class 1 api/demo.Thing.html#$ -"]  # modules have no generated page
    assert read_inventory(script.inventory_bytes("demo", "1.2", lines)) == (
        "demo",
        "1.2",
        {("demo.Thing", "py:class"): "api/demo.Thing.html#demo.Thing"},
    )


def test_inventory_roles_follow_the_objects():
    script = load_inventory_script()
    assert script.role_of(ValueError) == "py:exception"
    assert script.role_of(Path) == "py:class"
    assert script.role_of(len) == "py:function"
    assert script.role_of(len, member=True) == "py:method"

    class Thing:
        size = 1

        @property
        def name(self) -> str:
            return "thing"

        @classmethod
        def make(cls) -> Thing:
            return cls()

    members = dict(script.class_members(Thing))
    assert {name: script.member_role(value) for name, value in members.items()} == {
        "make": "py:method",
        "name": "py:attribute",
        "size": "py:attribute",
    }
