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
    "sphinx.ext.napoleon",  # before sphinx_autodoc_typehints, which relies on it
    "sphinx_autodoc_typehints",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}  # autosummary writes .rst stubs
root_doc = "index"
# pages made at build time (below) are included into others, not pages of their own
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "generated/*.md"]
templates_path: list[str] = []

# Cross-references that cannot be resolved stay plain text: intersphinx needs the network, which CI may lack.
nitpicky = False
default_role = "literal"

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
