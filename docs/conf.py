"""Sphinx configuration for the scanpy-loomio documentation."""

import importlib
import sys
import tomllib
import warnings
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent
# Document the checkout this file belongs to, whether or not it is installed.
sys.path.insert(0, str(ROOT))

# -- Project information -------------------------------------------------------------------------------------------

# The version lives in pyproject.toml only.
_metadata = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
project = _metadata["name"]
author = _metadata["authors"][0]["name"]
copyright = f"2026, {author}"
release = version = _metadata["version"]

# -- General configuration -----------------------------------------------------------------------------------------

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "sphinx.ext.napoleon",  # before sphinx_autodoc_typehints, which relies on it
    "sphinx_autodoc_typehints",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}  # autosummary writes .rst stubs
root_doc = "index"
# pages made at build time (below) are included into others, not pages of their own
exclude_patterns = ["_build", "_inventories", "Thumbs.db", ".DS_Store", "generated/*.md"]
# classes document their methods and documented attributes on their own page (autosummary's default only lists
# them, with links to nowhere)
templates_path = ["_templates"]

# Every cross-reference must resolve (or be listed in `nitpick_ignore` with the reason).
nitpicky = True
default_role = "literal"

# The other projects' inventories are in the repository, made from the installed packages by
# _inventories/make_inventories.py: the docs build without network access. The links go to the real sites.
INVENTORIES = HERE / "_inventories"
intersphinx_mapping = {
    name: (url, str(INVENTORIES / f"{name}.inv"))
    for name, url in {
        "python": "https://docs.python.org/3/",
        "numpy": "https://numpy.org/doc/stable/",
        "scipy": "https://docs.scipy.org/doc/scipy/",
        "pandas": "https://pandas.pydata.org/docs/",
        "h5py": "https://docs.h5py.org/en/stable/",
        "anndata": "https://anndata.readthedocs.io/en/stable/",
        "scanpy": "https://scanpy.readthedocs.io/en/stable/",
        "dask": "https://docs.dask.org/en/stable/",
    }.items()
}
# Targets that are missing on purpose, each with the reason.
nitpick_ignore = [
    # use_as_default() returns a private context-manager class; its docstring says what the object does
    ("py:class", "scanpy_loomio._scanpy.default._Switch"),
]

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3  # `[text](#a-heading)` links within and across pages

autosummary_generate = True
autodoc_member_order = "bysource"
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = True
napoleon_use_param = True
typehints_defaults = "braces"
# The return type goes in the signature. Inserting an `:rtype:` field instead lands it inside the Examples
# section whenever a Raises entry spans several lines (sphinx-autodoc-typehints 3.6), which breaks the build.
typehints_document_rtype = False
typehints_use_signature_return = True
always_document_param_types = False

# sphinx-autodoc-typehints still calls an API Sphinx 9 deprecated; that is its business, not a problem in these docs.
warnings.filterwarnings("ignore", message=r".*set_application.* is deprecated", module="sphinx_autodoc_typehints")

# -- HTML output ---------------------------------------------------------------------------------------------------

html_theme = "furo"
html_title = f"{project} {release}"
html_static_path: list[str] = []


# -- Pages generated from the code ---------------------------------------------------------------------------------


# Markdown that pages include from `generated/`, each made by a function of the package, so the docs always show what
# the code does. file name -> (module, function returning Markdown)
GENERATED_PAGES = {
    "conventions-table.md": ("scanpy_loomio.conventions", "conventions_table"),  # conventions.md
    "cli-reference.md": ("scanpy_loomio.cli", "reference_markdown"),  # cli.md
}


def _write_generated_pages(app) -> None:
    """Write each generated page; one left unchanged keeps its timestamp, so Sphinx does not rebuild its includers."""
    for name, (module, function) in GENERATED_PAGES.items():
        text = getattr(importlib.import_module(module), function)()
        target = Path(app.srcdir) / "generated" / name
        if not target.is_file() or target.read_text(encoding="utf-8") != text:
            target.parent.mkdir(exist_ok=True)
            target.write_text(text, encoding="utf-8")


def setup(app) -> None:
    """Hook the generated pages into the build."""
    app.connect("builder-inited", _write_generated_pages)
