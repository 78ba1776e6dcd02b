"""Rewriting pipelines from anndata's loom functions to scanpy-loomio's (``migrate_source`` / ``migrate_path``)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from scanpy_loomio import migrate_path, migrate_source

pytest.importorskip("libcst", reason="migrating code needs the optional dependency libcst")


def dedent(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


SCANPY_IMPORT = "import scanpy as sc\nimport scanpy_loomio  # noqa: F401\n"

# (id, before, after): each pair is a whole module
REWRITES = [
    (
        "scanpy read",
        'import scanpy as sc\nadata = sc.read_loom("in.loom")\n',
        f'{SCANPY_IMPORT}adata = sc.read_loom_full("in.loom")\n',
    ),
    (
        "scanpy read keeps old keywords and comments",
        'import scanpy as sc  # analysis\n\nadata = sc.read_loom("in.loom", sparse=False, obs_names="CellID")  # in\n',
        "import scanpy as sc  # analysis\nimport scanpy_loomio  # noqa: F401\n\n"
        'adata = sc.read_loom_full("in.loom", sparse=False, obs_names="CellID")  # in\n',
    ),
    (
        "anndata module function",
        'import anndata\nadata = anndata.read_loom("in.loom")\n',
        'import anndata\nimport scanpy_loomio\nadata = scanpy_loomio.read_loom_full("in.loom")\n',
    ),
    (
        "anndata alias",
        'import anndata as ad\nadata = ad.read_loom("in.loom", X_name="")\n',
        'import anndata as ad\nimport scanpy_loomio\nadata = scanpy_loomio.read_loom_full("in.loom", X_name="")\n',
    ),
    (
        "anndata.io module",
        'import anndata.io\nadata = anndata.io.read_loom("in.loom")\n',
        'import anndata.io\nimport scanpy_loomio\nadata = scanpy_loomio.read_loom_full("in.loom")\n',
    ),
    (
        "anndata alias .io",
        'import anndata as ad\nadata = ad.io.read_loom("in.loom")\n',
        'import anndata as ad\nimport scanpy_loomio\nadata = scanpy_loomio.read_loom_full("in.loom")\n',
    ),
    (
        "anndata.io imported as a name",
        'from anndata import io as aio\nadata = aio.read_loom("in.loom")\n',
        'from anndata import io as aio\nimport scanpy_loomio\nadata = scanpy_loomio.read_loom_full("in.loom")\n',
    ),
    (
        "from import",
        'from anndata import read_loom\nadata = read_loom("in.loom")\n',
        'from scanpy_loomio import read_loom_full\nadata = read_loom_full("in.loom")\n',
    ),
    (
        "from import with alias keeps the alias",
        'from anndata.io import read_loom as load\nadata = load("in.loom")\n',
        'from scanpy_loomio import read_loom_full as load\nadata = load("in.loom")\n',
    ),
    (
        "from scanpy import, passed as a value",
        "from scanpy import read_loom\nreaders = {'loom': read_loom}\n",
        "from scanpy_loomio import read_loom_full\nreaders = {'loom': read_loom_full}\n",
    ),
    (
        "from import among other names",
        'from anndata import read_h5ad, read_loom\nadata = read_loom("in.loom")\n',
        'from anndata import read_h5ad\nfrom scanpy_loomio import read_loom_full\nadata = read_loom_full("in.loom")\n',
    ),
    (
        "parenthesized import keeps its layout and moves the comment",
        dedent("""
            from anndata.io import (
                read_h5ad,  # h5ad input
                read_loom,  # loom input
            )
            """),
        dedent("""
            from anndata.io import (
                read_h5ad,  # h5ad input
            )
            from scanpy_loomio import read_loom_full  # loom input
            """),
    ),
    (
        "deprecated keyword names",
        'import scanpy as sc\nadata = sc.read_loom("in.loom", obsm_names={"X_umap": ["u1", "u2"]}, varm_names={})\n',
        f'{SCANPY_IMPORT}adata = sc.read_loom_full("in.loom", obsm_mapping={{"X_umap": ["u1", "u2"]}}, varm_mapping={{}})\n',
    ),
    (
        "loompy's validate keyword is dropped",
        'import scanpy as sc\nadata = sc.read_loom("in.loom", validate=False, sparse=True,)\n',
        f'{SCANPY_IMPORT}adata = sc.read_loom_full("in.loom", sparse=True,)\n',
    ),
    (
        "scanpy 1.13's scanpy.io reader",
        'import scanpy as sc\nadata = sc.io.read_loom("in.loom")\n',
        f'{SCANPY_IMPORT}adata = sc.io.read_loom_full("in.loom")\n',
    ),
    (
        "scanpy.io through the full module name",
        'import scanpy.io\nadata = scanpy.io.read_loom("in.loom")\n',
        'import scanpy.io\nimport scanpy_loomio  # noqa: F401\nadata = scanpy.io.read_loom_full("in.loom")\n',
    ),
    (
        "scanpy 1.13's sc.io.read of a literal .loom path",
        'import scanpy as sc\nadata = sc.io.read("data/in.loom")\n',
        f'{SCANPY_IMPORT}adata = sc.read_loom_full("data/in.loom")\n',
    ),
    (
        "sc.read of a literal .loom path",
        'import scanpy as sc\nadata = sc.read("data/in.loom")\n',
        f'{SCANPY_IMPORT}adata = sc.read_loom_full("data/in.loom")\n',
    ),
    (
        "scVelo's read of a .loom file, whose cache= has no use any more",
        'import scvelo as scv\nadata = scv.read("sample.loom", cache=True)\n',
        'import scvelo as scv\nimport scanpy_loomio\nadata = scanpy_loomio.read_loom_full("sample.loom")\n',
    ),
    (
        "method write with scanpy",
        'import scanpy as sc\nadata.write_loom("out.loom", write_obsm_varm=True)\n',
        f'{SCANPY_IMPORT}sc.write_loom_full("out.loom", adata)\n',
    ),
    (
        "method write on an expression, positional flag",
        "import scanpy as sc\nadata[adata.obs.n_genes > 200].write_loom(out_path, True)\n",
        f"{SCANPY_IMPORT}sc.write_loom_full(out_path, adata[adata.obs.n_genes > 200])\n",
    ),
    (
        "method write without scanpy",
        'import anndata as ad\nadata = ad.read_h5ad("a.h5ad")\nadata.write_loom(filename="out.loom")\n',
        'import anndata as ad\nimport scanpy_loomio\nadata = ad.read_h5ad("a.h5ad")\n'
        'scanpy_loomio.write_loom_full("out.loom", adata)\n',
    ),
    (
        "multi-line write keeps comments and the trailing comma",
        dedent("""
            import scanpy as sc
            adata.write_loom(
                "out.loom",  # the result
                write_obsm_varm=True,
            )
            """),
        dedent("""
            import scanpy as sc
            import scanpy_loomio  # noqa: F401
            sc.write_loom_full(
                "out.loom",  # the result
                adata,
            )
            """),
    ),
    (
        "anndata.io.write_loom",
        'import anndata as ad\nad.io.write_loom("out.loom", adata, write_obsm_varm=True)\n',
        'import anndata as ad\nimport scanpy_loomio\nscanpy_loomio.write_loom_full("out.loom", adata)\n',
    ),
    (
        "anndata.io.write_loom with keywords in any order",
        'import anndata\nanndata.io.write_loom(adata=adata, filename="out.loom")\n',
        'import anndata\nimport scanpy_loomio\nscanpy_loomio.write_loom_full("out.loom", adata)\n',
    ),
    (
        "from anndata.io import write_loom",
        'from anndata.io import write_loom\nwrite_loom("out.loom", adata)\n',
        'from scanpy_loomio import write_loom_full\nwrite_loom_full("out.loom", adata)\n',
    ),
    (
        "an existing import scanpy_loomio (with alias) is reused",
        'import anndata as ad\nimport scanpy_loomio as sl\nadata = ad.io.read_loom("in.loom")\n',
        'import anndata as ad\nimport scanpy_loomio as sl\nadata = sl.read_loom_full("in.loom")\n',
    ),
    (
        "the import goes after the docstring and first imports when scanpy is imported inside a function",
        '"""Doc."""\nimport os\n\n\ndef load():\n    import anndata\n    return anndata.read_loom("in.loom")\n',
        '"""Doc."""\nimport os\nimport scanpy_loomio\n\n\ndef load():\n    import anndata\n'
        '    return scanpy_loomio.read_loom_full("in.loom")\n',
    ),
    (
        "windows line endings are kept",
        'import scanpy as sc\r\nadata = sc.read_loom("in.loom")\r\n',
        'import scanpy as sc\r\nimport scanpy_loomio  # noqa: F401\r\nadata = sc.read_loom_full("in.loom")\r\n',
    ),
]


@pytest.mark.parametrize(("before", "after"), [case[1:] for case in REWRITES], ids=[case[0] for case in REWRITES])
def test_rewrites(before: str, after: str) -> None:
    assert migrate_source(before) == after
    assert migrate_source(after) == after  # migrating twice changes nothing more


UNCHANGED = [
    ("no loom calls", "import scanpy as sc\nadata = sc.read_h5ad('a.h5ad')  # keep\n"),
    ("loompy is not anndata", "import loompy\nwith loompy.connect('a.loom') as ds:\n    ds.ca.CellID\n"),
    ("a method called read_loom on another object", "import scanpy as sc\nreader.read_loom('a.loom')\n"),
    ("a parameter shadows the module", "import scanpy as sc\n\ndef f(sc):\n    return sc.read_loom('a.loom')\n"),
    (
        "a local function shadows the import",
        "from anndata import read_h5ad\n\ndef read_loom(p):\n    ...\nread_loom('a')\n",
    ),
    ("sc.read of an h5ad", "import scanpy as sc\nadata = sc.read('a.h5ad')\n"),
    ("sc.read with options read_loom_full lacks", "import scanpy as sc\nadata = sc.read('a.loom', backed='r')\n"),
    ("unpacked write arguments", "import scanpy as sc\nadata.write_loom(*args)\n"),
    ("unpacked read keywords", "import scanpy as sc\nadata = sc.read_loom('a.loom', **options)\n"),
    ("unpacked read arguments through sc.io", "import scanpy as sc\nadata = sc.io.read_loom(*args)\n"),
    (
        "an imported reader called with unpacked keywords keeps its import",
        "from anndata.io import read_loom\na = read_loom('a.loom', **options)\nb = read_loom('b.loom')\n",
    ),
    ("already migrated", "import scanpy as sc\nimport scanpy_loomio\nadata = sc.read_loom_full('a.loom')\n"),
    ("relative import of a name read_loom", "from .io import read_loom\nread_loom('a.loom')\n"),
]


@pytest.mark.parametrize("source", [case[1] for case in UNCHANGED], ids=[case[0] for case in UNCHANGED])
def test_leaves_alone(source: str) -> None:
    assert migrate_source(source) == source


WORKAROUND_PIPELINE = dedent("""
    import scanpy as sc

    adata = sc.read_h5ad("pbmc.h5ad")
    # loom loses the index: keep the names in columns
    adata.obs["CellID"] = adata.obs_names
    adata.var["Gene"] = adata.var.index  # gene symbols
    adata.write_loom("pbmc.loom")
    """)


def test_workaround_lines_removed_and_comment_kept() -> None:
    assert migrate_source(WORKAROUND_PIPELINE) == dedent("""
        import scanpy as sc
        import scanpy_loomio  # noqa: F401

        adata = sc.read_h5ad("pbmc.h5ad")
        # loom loses the index: keep the names in columns
        sc.write_loom_full("pbmc.loom", adata)
        """)


@pytest.mark.parametrize(
    "value",
    ["adata.obs.index", "adata.obs_names", "adata.obs.index.values", "adata.obs_names.to_numpy()"],
)
def test_workaround_variants(value: str) -> None:
    source = f'import scanpy as sc\nadata.obs["CellID"] = {value}\nadata.write_loom("out.loom")\n'
    assert "CellID" not in migrate_source(source)


WORKAROUNDS_KEPT = [
    (
        "column read later",
        'adata.obs["CellID"] = adata.obs_names\nadata.write_loom("o.loom")\nprint(back.obs["CellID"])\n',
    ),
    ("another object is written", 'adata.obs["CellID"] = adata.obs_names\nother.write_loom("o.loom")\n'),
    ("written before the workaround", 'adata.write_loom("o.loom")\nadata.obs["CellID"] = adata.obs_names\n'),
    ("never written", 'adata.obs["CellID"] = adata.obs_names\nadata.write_h5ad("o.h5ad")\n'),
    ("values of another object", 'adata.obs["CellID"] = bdata.obs_names\nadata.write_loom("o.loom")\n'),
    ("values changed", 'adata.obs["CellID"] = adata.obs_names.str.upper()\nadata.write_loom("o.loom")\n'),
    ("the write is not rewritten", 'adata.obs["CellID"] = adata.obs_names\nadata.write_loom(**options)\n'),
    (
        "the only statement of a block",
        'if keep:\n    adata.obs["CellID"] = adata.obs_names\nadata.write_loom("o.loom")\n',
    ),
    ("another column name", 'adata.obs["barcode"] = adata.obs_names\nadata.write_loom("o.loom")\n'),
]


@pytest.mark.parametrize("body", [case[1] for case in WORKAROUNDS_KEPT], ids=[case[0] for case in WORKAROUNDS_KEPT])
def test_workaround_kept_when_it_may_serve_something(body: str) -> None:
    migrated = migrate_source(f"import scanpy as sc\n{body}")
    workaround = next(line for line in body.splitlines() if "= " in line and "obs_names" in line)
    assert workaround in migrated


def test_not_python_raises_syntax_error() -> None:
    with pytest.raises(SyntaxError, match=r"cannot be parsed as Python 3"):
        migrate_source("def broken(:\n")


def test_missing_libcst_says_how_to_install(tmp_path: Path) -> None:
    script = tmp_path / "pipeline.py"
    script.write_text("import scanpy as sc\nsc.read_loom('a.loom')\n")
    code = (
        "import sys; sys.modules['libcst'] = None\n"  # makes `import libcst` fail as if it were not installed
        "import scanpy_loomio\n"
        f"scanpy_loomio.migrate_path({str(script)!r})\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert result.returncode == 1
    assert "pip install 'scanpy-loomio[migrate]'" in result.stderr


# files, notes and diffs ---------------------------------------------------------------------------------------


def test_file_diff_notes_and_write(tmp_path: Path) -> None:
    script = tmp_path / "pipeline.py"
    script.write_text('import scanpy as sc\nadata = sc.read_loom("in.loom", validate=False)\nadata.write_loom(*a)\n')
    [result] = migrate_path(script)
    assert result.changed
    assert not result.written
    assert script.read_text() == result.original  # nothing written by default
    assert result.diff.startswith(f"--- {script}\n+++ {script}\n")
    assert '-adata = sc.read_loom("in.loom", validate=False)\n' in result.diff
    assert '+adata = sc.read_loom_full("in.loom")\n' in result.diff
    assert any(note.startswith("line 2: dropped validate=") for note in result.notes)
    assert any(note.startswith("line 2: read_loom made a 'spliced' layer X") for note in result.notes)
    assert any(note.startswith("line 3: write_loom call left as it is") for note in result.notes)

    [written] = migrate_path(script, write=True)
    assert written.written
    assert script.read_text() == written.migrated
    [again] = migrate_path(script, write=True)
    assert not again.changed
    assert not again.written
    assert again.diff == ""


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"no such file or directory; expected a \.py file"):
        migrate_path(tmp_path / "nowhere.py")


def test_migrated_pipeline_runs_and_keeps_names(tmp_path: Path) -> None:
    """The rewritten code is not just text: it runs and the file it writes keeps the names."""
    script = tmp_path / "pipeline.py"
    script.write_text(
        dedent("""
            import anndata as ad
            import numpy as np
            import pandas as pd
            import scanpy as sc

            adata = ad.AnnData(
                np.arange(6, dtype=np.float32).reshape(3, 2),
                obs=pd.DataFrame(index=pd.Index(["c1", "c2", "c3"], name="barcode")),
                var=pd.DataFrame(index=["g1", "g2"]),
            )
            adata.obs["CellID"] = adata.obs_names
            adata.var["Gene"] = adata.var_names
            adata.write_loom("out.loom", write_obsm_varm=True)
            back = sc.read_loom("out.loom")
            print(back.obs_names.name, list(back.obs_names), list(back.obs.columns))
            """)
    )
    [result] = migrate_path(script, write=True)
    assert "CellID" not in result.migrated
    run = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split("\n")[-2] == "barcode ['c1', 'c2', 'c3'] []"


# notebooks ------------------------------------------------------------------------------------------------------


def notebook(*cells: dict) -> dict:
    return {
        "cells": list(cells),
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def code_cell(source: str | list[str], **extra: object) -> dict:
    return {"cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [], "source": source, **extra}


def nbformat_text(nb: dict) -> str:
    """Serialized the way Jupyter writes notebooks."""
    return json.dumps(nb, indent=1, ensure_ascii=False) + "\n"


def test_notebook(tmp_path: Path) -> None:
    output = {"output_type": "stream", "name": "stdout", "text": ["naïve T cells\n"]}
    nb = notebook(
        {"cell_type": "markdown", "metadata": {}, "source": ["`sc.read_loom` loses names\n", "adata.write_loom"]},
        code_cell(["%matplotlib inline\n", "import scanpy as sc\n", "!ls *.loom"]),
        code_cell(
            ["%%time\n", "adata = sc.read_loom('in.loom')  # naïve\n", "adata.obs['CellID'] = adata.obs_names"],
            execution_count=3,
            outputs=[output],
        ),
        code_cell("for name in names:\n    !echo {name}\nadata.write_loom('out.loom')\nsc.pl.umap?"),
        code_cell(["%%bash\n", "echo sc.read_loom\n"]),
        code_cell(["def unfinished(:\n"]),
    )
    path = tmp_path / "analysis.ipynb"
    path.write_text(nbformat_text(nb), encoding="utf-8")
    [result] = migrate_path(path)
    assert path.read_text(encoding="utf-8") == result.original

    expected = json.loads(result.original)
    expected["cells"][1]["source"] = [
        "%matplotlib inline\n",
        "import scanpy as sc\n",
        "import scanpy_loomio  # noqa: F401\n",
        "!ls *.loom",
    ]
    expected["cells"][2]["source"] = ["%%time\n", "adata = sc.read_loom_full('in.loom')  # naïve"]
    expected["cells"][3]["source"] = (
        "for name in names:\n    !echo {name}\nsc.write_loom_full('out.loom', adata)\nsc.pl.umap?"
    )
    assert json.loads(result.migrated) == expected
    assert result.migrated == nbformat_text(expected)  # same serialization: only the changed lines differ

    assert f"--- {path} [cell 2]\n+++ {path} [cell 2]\n" in result.diff
    assert f"--- {path} [cell 3]\n" in result.diff
    assert "[cell 5]" not in result.diff  # a %%bash cell is not Python
    assert result.notes[0].startswith("cell 3, line 2: read_loom made a 'spliced' layer X")
    assert result.notes[1].startswith("cell 6: left alone: not valid Python 3")

    migrate_path(path, write=True)
    assert json.loads(path.read_text(encoding="utf-8")) == expected


def test_notebook_without_changes_is_not_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "plain.ipynb"
    text = json.dumps(notebook(code_cell("import scanpy as sc\nsc.read_h5ad('a.h5ad')")))  # compact JSON
    path.write_text(text)
    [result] = migrate_path(path, write=True)
    assert not result.changed
    assert not result.written
    assert path.read_text() == text


def test_notebook_of_another_language_is_left_alone(tmp_path: Path) -> None:
    nb = notebook(code_cell("adata <- sc.read_loom('a')"))
    nb["metadata"]["language_info"] = {"name": "R"}
    path = tmp_path / "r.ipynb"
    path.write_text(nbformat_text(nb))
    [result] = migrate_path(path)
    assert not result.changed


# directories ----------------------------------------------------------------------------------------------------


def test_directory(tmp_path: Path) -> None:
    (tmp_path / "pipeline" / "steps").mkdir(parents=True)
    (tmp_path / "pipeline" / ".ipynb_checkpoints").mkdir()
    (tmp_path / "pipeline" / "env").mkdir()
    (tmp_path / "pipeline" / "env" / "pyvenv.cfg").write_text("home = /usr/bin\n")
    loom_read = "import scanpy as sc\nadata = sc.read_loom('in.loom')\n"
    files = {
        "pipeline/a_load.py": loom_read,
        "pipeline/steps/b_plain.py": "print('no loom here')\n",
        "pipeline/steps/c_notebook.ipynb": nbformat_text(notebook(code_cell(loom_read))),
        "pipeline/steps/d_broken.py": "def broken(:\n",
        "pipeline/steps/notes.txt": loom_read,
        "pipeline/.ipynb_checkpoints/a_load-checkpoint.py": loom_read,
        "pipeline/env/lib.py": loom_read,
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)

    results = migrate_path(tmp_path / "pipeline")
    names = [result.path.relative_to(tmp_path).as_posix() for result in results]
    assert names == [
        "pipeline/a_load.py",
        "pipeline/steps/b_plain.py",
        "pipeline/steps/c_notebook.ipynb",
        "pipeline/steps/d_broken.py",
    ]
    assert [result.changed for result in results] == [True, False, True, False]
    assert results[3].error is not None
    assert results[3].error.startswith(f"{tmp_path / 'pipeline/steps/d_broken.py'}: cannot be parsed as Python 3")

    migrate_path(tmp_path / "pipeline", write=True)
    assert "read_loom_full" in (tmp_path / "pipeline/a_load.py").read_text()
    assert "read_loom_full" in (tmp_path / "pipeline/steps/c_notebook.ipynb").read_text()
    for untouched in ["pipeline/steps/d_broken.py", "pipeline/.ipynb_checkpoints/a_load-checkpoint.py"]:
        assert (tmp_path / untouched).read_text() == files[untouched]
    assert (tmp_path / "pipeline/env/lib.py").read_text() == loom_read
