"""The ``scanpy-loomio`` command line, run as a real process (``python -m scanpy_loomio`` and the console script)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import anndata
import h5py
import numpy as np
import pandas as pd
import pytest
from anndata.tests.helpers import assert_adata_equal
from scipy import sparse

import scanpy_loomio
from scanpy_loomio.cli import build_parser
from scanpy_loomio.conventions import CONVENTIONS, conventions_table

#: The console script installed beside this Python, if the package is installed.
SCRIPT = shutil.which("scanpy-loomio", path=str(Path(sys.executable).parent))
COMMANDS = ["convert", "concat", "velocity", "update", "upgrade", "inspect", "validate", "conventions", "migrate"]


def run(*args: str | Path, cwd: Path | None = None, script: bool = False) -> subprocess.CompletedProcess[str]:
    command = [SCRIPT] if script else [sys.executable, "-m", "scanpy_loomio"]
    return subprocess.run(
        [*command, *map(str, args)], capture_output=True, text=True, cwd=cwd, check=False, timeout=300
    )


def one_line_error(result: subprocess.CompletedProcess[str], command: str) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"scanpy-loomio {command}: error: ")
    assert "Traceback" not in result.stderr
    return lines[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with ``small.h5ad``: names, a categorical, an embedding, a graph, uns."""
    folder = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(0)
    obs = pd.DataFrame(
        {"cluster": pd.Categorical(rng.choice(["T", "B"], 25))},
        index=pd.Index([f"c{i}" for i in range(25)], name="cell"),
    )
    adata = anndata.AnnData(
        sparse.random(25, 12, density=0.4, format="csr", random_state=rng, dtype=np.float32),
        obs=obs,
        var=pd.DataFrame(index=[f"g{i}" for i in range(12)]),
    )
    adata.obsm["X_umap"] = rng.normal(size=(25, 2))
    adata.obsp["distances"] = sparse.random(25, 25, density=0.2, format="csr", random_state=rng)
    adata.uns["note"] = "made for the CLI tests"
    adata.write_h5ad(folder / "small.h5ad")
    return folder


# -- help -------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("script", [False, pytest.param(True, id="console-script")])
def test_help(script: bool) -> None:
    if script and SCRIPT is None:
        pytest.skip("the scanpy-loomio console script is not installed beside this Python")
    result = run("--help", script=script)
    assert result.returncode == 0, result.stderr
    assert "examples:\n  scanpy-loomio convert pbmc.h5ad pbmc.loom" in result.stdout
    for command in COMMANDS:
        assert f"    {command}" in result.stdout


@pytest.mark.parametrize("command", COMMANDS)
def test_help_of_every_command_shows_an_example(command: str) -> None:
    parser = build_parser()
    [subparsers] = [a for a in parser._actions if a.dest == "command"]  # argparse has no public getter
    text = subparsers.choices[command].format_help()
    assert f"examples:\n  scanpy-loomio {command}" in text


def test_usage_errors_exit_2(files: Path) -> None:
    result = run("validate", files / "missing.loom")
    assert result.returncode == 2
    assert one_line_error(result, "validate").endswith("missing.loom: no such file")
    result = run("frobnicate")
    assert result.returncode == 2
    assert "invalid choice: 'frobnicate'" in result.stderr


# -- convert ----------------------------------------------------------------------------------------------------------


def test_convert_round_trip(files: Path, tmp_path: Path) -> None:
    loom, back = tmp_path / "small.loom", tmp_path / "back.h5ad"
    result = run("convert", files / "small.h5ad", loom)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{files / 'small.h5ad'} -> {loom} (loompy convention): 25 cells × 12 genes\n"
    result = run("convert", loom, back, "--quiet")
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""
    assert_adata_equal(anndata.read_h5ad(files / "small.h5ad"), anndata.read_h5ad(back), exact=True)


def test_convert_refuses_to_replace_without_force(files: Path, tmp_path: Path) -> None:
    target = tmp_path / "taken.loom"
    target.write_text("precious")
    result = run("convert", files / "small.h5ad", target)
    assert result.returncode == 2
    assert one_line_error(result, "convert").endswith("taken.loom: exists; pass --force to replace it")
    assert target.read_text() == "precious"
    assert run("convert", files / "small.h5ad", target, "--force", "-q").returncode == 0
    assert target.read_bytes().startswith(b"\x89HDF")


def test_convert_usage_errors(files: Path, tmp_path: Path) -> None:
    result = run("convert", files / "small.h5ad", tmp_path / "small.csv")
    assert result.returncode == 2
    assert "cannot tell the format from the suffix '.csv'" in one_line_error(result, "convert")
    result = run("convert", files / "small.h5ad", tmp_path / "copy.h5ad")
    assert result.returncode == 2
    assert "both files are .h5ad" in one_line_error(result, "convert")


@pytest.mark.parametrize(
    ("source", "target", "options", "named"),
    [
        ("small.h5ad", "out.loom", ["--x-name", "spliced"], "small.h5ad: X_name says how to read a .loom file"),
        ("small.h5ad", "out.loom", ["--from-convention", "scope", "--repair-bytes-text"], "from_convention, repair"),
        ("small.loom", "out.h5ad", ["--convention", "scope"], "out.h5ad: convention says how to write a .loom file"),
        ("small.loom", "out.zarr", ["--compression-level", "4"], "out.zarr: compression_level says"),
    ],
)
def test_convert_refuses_options_for_a_side_that_is_not_loom(
    files, small_loom, tmp_path, source, target, options, named
):
    # they would have no effect: the user means something convert would not do
    result = run("convert", files / source if source.endswith("h5ad") else small_loom, tmp_path / target, *options)
    assert result.returncode == 1
    assert named in one_line_error(result, "convert")
    assert not (tmp_path / target).exists()


def test_convert_to_h5ad_past_the_file_size_limit_fails_with_its_error_not_a_crash(small_loom, tmp_path):
    """anndata's write_h5ad leaves the file's objects open when writing fails; HDF5 would crash closing them at exit."""
    pytest.importorskip("resource")
    target = tmp_path / "out.h5ad"
    code = (
        "import resource, signal, sys\n"
        "from scanpy_loomio.cli import main\n"
        "signal.signal(signal.SIGXFSZ, signal.SIG_IGN)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))\n"
        "sys.exit(main(['convert', sys.argv[1], sys.argv[2]]))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(small_loom), str(target)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 1, result.stderr[-2000:]  # not killed by a signal
    errors = [line for line in result.stderr.splitlines() if line.startswith("scanpy-loomio convert: error: ")]
    assert len(errors) == 1 and "could not write the file (File too large" in errors[0], result.stderr[-2000:]
    assert "Exception ignored" not in result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_convert_failure_is_one_line_and_debug_shows_the_traceback(files: Path, tmp_path: Path) -> None:
    target = tmp_path / "velocyto.loom"
    result = run("convert", files / "small.h5ad", target, "--convention", "velocyto")
    assert result.returncode == 1
    assert "needs layers ['spliced', 'unspliced', 'ambiguous']" in one_line_error(result, "convert")
    assert not target.exists()
    result = run("--debug", "convert", files / "small.h5ad", target, "--convention", "velocyto")
    assert result.returncode == 1
    assert "Traceback (most recent call last)" in result.stderr
    result = run("convert", files / "small.h5ad", target, "--convention", "velocyto", "--fill-missing-layers", "-q")
    assert result.returncode == 0, result.stderr
    assert run("validate", target, "--conventions", "velocyto").returncode == 0


# -- inspect and validate ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def small_loom(files: Path) -> Path:
    loom = files / "small.loom"
    assert run("convert", files / "small.h5ad", loom, "-q").returncode == 0
    return loom


def test_inspect(small_loom: Path) -> None:
    result = run("inspect", small_loom)
    assert result.returncode == 0, result.stderr
    for expected in (
        "  loom spec      3.0.0 (global attributes: /attrs datasets)",
        "  convention     loompy: recorded by scanpy-loomio",
        "  shape          25 cells (obs) × 12 genes (var)",
        "  cell names     /col_attrs/CellID (recorded; 25 names, unique)",
        "    - obsp ['distances'] (graphs are not read)",
    ):
        assert expected in result.stdout
    summary = json.loads(run("inspect", small_loom, "--json").stdout)
    assert (summary["convention"], summary["n_obs"], summary["n_vars"]) == ("loompy", 25, 12)
    assert "the obs index name 'cell'" in summary["anndata_losses"]


def test_inspect_a_file_that_is_not_loom(files: Path) -> None:
    result = run("inspect", files / "small.h5ad")
    assert result.returncode == 1
    assert "found no 2-D /matrix with /col_attrs and /row_attrs groups" in one_line_error(result, "inspect")


def test_validate(small_loom: Path) -> None:
    result = run("validate", small_loom)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"{small_loom}: 0 error(s), 0 warning(s)")
    result = run("validate", small_loom, "--conventions", "seuratdisk,loomexperiment", "--errors-only")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert lines[:2] == [  # the default output has no 2-D column attributes, so only the names are missing
        "error: /col_attrs/colnames: missing (the cell names for LoomExperiment, sceasy). "
        "Fix: rewrite it for the tool: scanpy-loomio convert IN OUT --convention loomexperiment",
        "error: /row_attrs/rownames: missing (the gene names for LoomExperiment, sceasy). "
        "Fix: rewrite it for the tool: scanpy-loomio convert IN OUT --convention loomexperiment",
    ]
    assert lines[2].startswith(f"{small_loom}: 2 error(s), 0 warning(s)")
    report = json.loads(run("validate", small_loom, "--conventions", "all", "--json").stdout)
    assert report["conventions"] == list(CONVENTIONS)
    assert report["ok"] is False


def test_validate_unknown_convention_is_a_usage_error(small_loom: Path) -> None:
    result = run("validate", small_loom, "--conventions", "nope")
    assert result.returncode == 2
    assert "unknown convention 'nope'" in one_line_error(result, "validate")


def test_validate_real_file(real_fixtures: Path, tmp_path: Path) -> None:
    path = tmp_path / "drg.loom"
    shutil.copyfile(real_fixtures / "loomexperiment_1.3.3_L1_DRG_20.loom", path)
    result = run("validate", path)
    assert result.returncode == 1
    errors = [line for line in result.stdout.splitlines() if line.startswith("error: ")]
    assert len(errors) == 4  # a and b of both graphs: every problem, not just the first
    assert errors[0].startswith("error: /col_graphs/KNN/a: dtype float64; expected integers")


def test_update(small_loom: Path, tmp_path: Path) -> None:
    loom = tmp_path / "annotated.loom"
    shutil.copyfile(small_loom, loom)
    with h5py.File(loom, "r") as f:
        matrix_before = f["matrix"][()]
    adata = scanpy_loomio.read_loom_full(loom)
    adata.obs["doublet"] = np.arange(adata.n_obs) % 5 == 0
    adata.write_h5ad(tmp_path / "annotated.h5ad")
    result = run("update", loom, tmp_path / "annotated.h5ad")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{loom}: annotations from {tmp_path / 'annotated.h5ad'} written; matrices kept\n"
    assert_adata_equal(scanpy_loomio.read_loom_full(loom), adata, exact=True)
    with h5py.File(loom, "r") as f:
        np.testing.assert_array_equal(f["matrix"][()], matrix_before)
    adata[:5].copy().write_h5ad(tmp_path / "fewer.h5ad")
    result = run("update", loom, tmp_path / "fewer.h5ad")
    assert result.returncode == 1
    assert "the AnnData has 5 cells" in one_line_error(result, "update")
    result = run("update", tmp_path / "fewer.h5ad", loom)
    assert result.returncode == 2


# -- conventions and migrate ------------------------------------------------------------------------------------------


def test_conventions() -> None:
    result = run("conventions")
    assert result.returncode == 0, result.stderr
    rows = result.stdout.splitlines()
    assert rows[0].split() == [
        "name",
        "also",
        "tool",
        "cell",
        "names",
        "gene",
        "names",
        "needs",
        "layers",
        "embeddings",
        "spec",
    ]
    assert [row.split()[0] for row in rows[2 : 2 + len(CONVENTIONS)]] == list(CONVENTIONS)
    velocyto_row = next(row for row in rows if row.startswith("velocyto "))
    assert velocyto_row.split()[1] == "scvelo"  # the names users type
    result = run("conventions", "velocyto")
    assert "  required_layers        spliced, unspliced, ambiguous" in result.stdout
    assert run("conventions", "SCVelo").stdout == result.stdout
    unknown = run("conventions", "nope")
    assert unknown.returncode == 2
    assert "unknown convention 'nope'" in unknown.stderr
    assert run("conventions", "--markdown").stdout == conventions_table() + "\n"
    assert json.loads(run("conventions", "--json").stdout)["loomr"]["graph_index_base"] == [0, 1]


def test_migrate(tmp_path: Path) -> None:
    script = tmp_path / "pipeline.py"
    original = (
        'import scanpy as sc\nadata = sc.read_loom("in.loom", X_name="")  # counts\nadata.write_loom("out.loom")\n'
    )
    script.write_text(original)
    result = run("migrate", script)
    assert result.returncode == 0, result.stderr
    assert '+adata = sc.read_loom_full("in.loom", X_name="")  # counts\n' in result.stdout
    assert '+sc.write_loom_full("out.loom", adata)\n' in result.stdout
    assert "would rewrite 1 of 1 file(s)" in result.stderr
    assert script.read_text() == original
    assert run("migrate", script, "--check", "--quiet").returncode == 1
    result = run("migrate", tmp_path, "--write", "--quiet")
    assert result.returncode == 0, result.stderr
    assert "rewrote 1 of 1 file(s)" in result.stderr
    assert "sc.write_loom_full" in script.read_text()
    assert run("migrate", script, "--check").returncode == 0


@pytest.mark.parametrize(
    "content", [b"not a loom file at all", b"", b"\x89HDF\r\n\x1a\n" + b"\x00" * 40], ids=["junk", "empty", "truncated"]
)
def test_validate_an_invalid_file_exits_1_not_2(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "junk.loom"
    path.write_bytes(content)
    result = run("validate", path)
    assert result.returncode == 1, result.stderr
    assert str(path) in one_line_error(result, "validate")


@pytest.mark.parametrize(
    "args",
    [
        ("convert", "{loom}", "{out}.h5ad", "--from-convention", "nope"),
        ("convert", "{loom}", "{out}.loom", "--convention", "nope"),
        ("validate", "{loom}", "--conventions", "loompy,nope"),
        ("conventions", "nope"),
    ],
    ids=["convert-from", "convert-to", "validate", "conventions"],
)
def test_an_unknown_convention_exits_2_in_every_command(small_loom: Path, tmp_path: Path, args: tuple) -> None:
    result = run(*(a.format(loom=small_loom, out=tmp_path / "out") for a in args))
    assert result.returncode == 2, result.stderr
    assert "unknown convention 'nope'" in one_line_error(result, args[0])
    assert not list(tmp_path.glob("out*"))


def test_conventions_by_the_names_users_type(small_loom: Path, tmp_path: Path) -> None:
    for typed, meant in (
        ("Seurat", "seuratdisk"),
        ("SCVELO", "velocyto"),
        ("pyscenic", "scope"),
        ("sceasy", "loomexperiment"),
    ):
        shown = run("conventions", typed)
        assert shown.returncode == 0, shown.stderr
        assert shown.stdout.startswith(f"{meant}: ")


# -- concat and velocity ----------------------------------------------------------------------------------------------


def _sample_looms(folder: Path) -> list[Path]:
    paths = []
    for i in range(2):
        adata = anndata.AnnData(
            sparse.random(6, 5, density=0.5, format="csr", random_state=i, dtype=np.float32).astype(np.uint32)
        )
        adata.obs_names = [
            f"s{i}:{barcode}x"
            for barcode in (
                "AAAACCCCGGGG",
                "AAAACCCCTTTT",
                "ACGTACGTACGT",
                "CCCCAAAAGGGG",
                "GGGGAAAACCCC",
                "TTTTAAAACCCC",
            )
        ]
        adata.var_names = [f"g{j}" for j in range(i, i + 5)]
        for name in ("spliced", "unspliced", "ambiguous"):
            adata.layers[name] = adata.X.copy()
        paths.append(folder / f"s{i}.loom")
        scanpy_loomio.write_loom_full(paths[-1], adata, convention="velocyto")
    return paths


def test_concat(tmp_path: Path) -> None:
    inputs = _sample_looms(tmp_path)
    target = tmp_path / "all.loom"
    result = run(
        "concat", target, *inputs, "--join", "outer", "--label", "sample", "--keys", "a,b", "--index-unique", "-"
    )
    assert result.returncode == 0, result.stderr
    assert "12 cells × 6 genes from 2 files" in result.stdout
    expected = anndata.concat(
        [scanpy_loomio.read_loom_full(p) for p in inputs],
        join="outer",
        label="sample",
        keys=["a", "b"],
        index_unique="-",
    )
    back = scanpy_loomio.read_loom_full(target)
    assert list(back.obs_names) == list(expected.obs_names)
    for key in ("spliced", "unspliced", "ambiguous"):
        np.testing.assert_array_equal(back.layers[key].toarray(), expected.layers[key].toarray())
    assert run("concat", target, *inputs).returncode == 2  # exists
    assert "--keys gives 3 names" in one_line_error(
        run("concat", tmp_path / "x.loom", *inputs, "--keys", "a,b,c"), "concat"
    )
    assert run("concat", tmp_path / "x.h5ad", *inputs).returncode == 2


def test_velocity(tmp_path: Path) -> None:
    looms = _sample_looms(tmp_path)
    processed = anndata.AnnData(np.ones((3, 4), dtype=np.float32))
    processed.obs_names = ["AAAACCCCGGGG-1-0", "TTTTAAAACCCC-1-1", "ACGTACGTACGT-1-1"]
    processed.var_names = ["g1", "g2", "g3", "g4"]
    processed.write_h5ad(tmp_path / "processed.h5ad")
    out = tmp_path / "velocity.h5ad"
    result = run(
        "velocity", tmp_path / "processed.h5ad", *looms, "-o", out, "--sample-map", "0=s0", "--sample-map", "1=s1"
    )
    assert result.returncode == 0, result.stderr
    assert "cells: 3 of 3 matched" in result.stdout
    adata = anndata.read_h5ad(out)
    source = scanpy_loomio.read_loom_full(looms[1])
    want = source.layers["spliced"][[5, 2]][:, [0, 1, 2, 3]].toarray()  # s1 holds g1..g5
    np.testing.assert_array_equal(adata.layers["spliced"][1:].toarray(), want)
    result = run("velocity", tmp_path / "processed.h5ad", *looms, "-o", tmp_path / "x.h5ad")
    assert result.returncode == 1
    assert "have no single match" in result.stderr
