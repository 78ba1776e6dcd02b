"""validate_loom collects every problem; inspect_loom summarizes a file and predicts what anndata's read_loom loses.

loompy's own validator and anndata's own reader are the oracles: what we say they refuse or lose, they do.
"""

from __future__ import annotations

import shutil
import warnings
from typing import TYPE_CHECKING

import anndata
import h5py
import numpy as np
import pandas as pd
import pytest
from helpers import write_loom_as_anndata_did
from scipy import sparse

import scanpy_loomio
from scanpy_loomio.conventions import CONVENTIONS

if TYPE_CHECKING:
    from pathlib import Path

TEXT = h5py.string_dtype("utf-8")


def small_adata(n_obs: int = 30, n_vars: int = 20) -> anndata.AnnData:
    rng = np.random.default_rng(1)
    obs = pd.DataFrame(
        {"cluster": pd.Categorical(rng.choice(["b", "a"], n_obs)), "n_counts": rng.random(n_obs)},
        index=pd.Index([f"cell{i}" for i in range(n_obs)], name="barcode"),
    )
    var = pd.DataFrame(
        {"gene_ids": [f"ENSG{i:05d}" for i in range(n_vars)], "highly_variable": rng.random(n_vars) > 0.5},
        index=[f"gene{i}" for i in range(n_vars)],
    )
    adata = anndata.AnnData(sparse.random(n_obs, n_vars, density=0.3, format="csr", random_state=rng), obs=obs, var=var)
    adata.obsm["X_umap"] = rng.normal(size=(n_obs, 2))
    adata.obsp["connectivities"] = sparse.random(n_obs, n_obs, density=0.1, format="csr", random_state=rng)
    adata.uns["title"] = "small"
    return adata


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, anndata.AnnData]:
    adata = small_adata()
    path = tmp_path_factory.mktemp("written") / "small.loom"
    scanpy_loomio.write_loom_full(path, adata)
    return path, adata


def copy_fixture(real_fixtures: Path, name: str, tmp_path: Path) -> Path:
    target = tmp_path / name
    shutil.copyfile(real_fixtures / name, target)
    return target


# -- validate -------------------------------------------------------------------------------------------------------


def broken_loom(path: Path) -> None:
    """A file breaking one rule per element."""
    with h5py.File(path, "w") as f:
        f.create_group("attrs").create_dataset("LOOM_SPEC_VERSION", data="3.0.0", dtype=TEXT)
        f["matrix"] = np.zeros((3, 4), dtype=bool)
        f.create_group("layers")["small"] = np.zeros((2, 2))
        cols = f.create_group("col_attrs")
        cols.create_dataset("CellID", data=["a", "b", "c", "d"], dtype=TEXT)
        cols["short"] = np.arange(3)
        cols["record"] = np.zeros(4, dtype=[("_X", "f8"), ("_Y", "f8")])
        cols.create_dataset("fixed", data=np.array([b"a", b"b", b"c", b"d"]))
        rows = f.create_group("row_attrs")
        rows.create_dataset("Gene", data=["x", "y", "z"], dtype=TEXT)
        rows.create_group("GRanges")["start"] = np.arange(3)
        graph = f.create_group("col_graphs/knn")
        graph["a"] = np.array([0.0, 1.0])
        graph["b"] = np.array([1, 5])
        graph["w"] = np.array([1, 1])
        f.create_group("row_graphs")


BROKEN = {
    # (where, severity, loompy's validator reports it too)
    ("/matrix", "error", True),
    ("/layers/small", "error", True),
    ("/col_attrs/short", "error", True),
    ("/col_attrs/record", "error", True),
    ("/col_attrs/fixed", "error", True),
    ("/row_attrs/GRanges", "error", True),
    ("/col_graphs/knn/a", "error", True),
    ("/col_graphs/knn/b", "error", False),
    ("/col_graphs/knn/w", "error", True),
}


def test_every_spec_problem_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "broken.loom"
    broken_loom(path)
    report = scanpy_loomio.validate_loom(path, read=False)
    found = {(p.where, p.severity, p.loompy_refuses) for p in report.problems if p.check == "spec"}
    assert found == BROKEN
    assert not report.ok
    assert report.spec_version == "3.0.0"
    by_where = {p.where: p for p in report.problems}
    assert "dtype bool" in by_where["/matrix"].message
    assert by_where["/matrix"].fix == "store booleans as uint8 (0/1)"
    assert "expected 0 to 3 for 4 vertices" in by_where["/col_graphs/knn/b"].message
    assert "shape (3,)" in by_where["/col_attrs/short"].message


def test_a_file_written_by_this_package_is_valid(written: tuple[Path, anndata.AnnData]) -> None:
    path, _ = written
    report = scanpy_loomio.validate_loom(path)
    assert report.problems == []
    assert report.ok
    assert report.render().endswith("(loom spec 3.0.0, checked against the spec, the scanpy-loomio record)")


def test_record_problems(tmp_path: Path, written: tuple[Path, anndata.AnnData]) -> None:
    path = tmp_path / "edited.loom"
    shutil.copyfile(written[0], path)
    with h5py.File(path, "r+") as f:  # another tool deletes a column and a graph, and damages a codec
        del f["col_attrs/n_counts"]
        del f["col_graphs/connectivities"]
        f["matrix"].attrs["scanpy_loomio_codec"] = '{"type": "matrix", "format": "coo"}'
    report = scanpy_loomio.validate_loom(path, read=False)
    found = {(p.where, p.severity) for p in report.problems if p.check == "scanpy_loomio"}
    assert found == {
        ("/col_attrs/n_counts", "warning"),
        ("/col_graphs/connectivities", "warning"),
        ("/matrix", "error"),
    }


def test_reading_problems_are_reported(tmp_path: Path) -> None:
    path = tmp_path / "duplicates.loom"
    with h5py.File(path, "w") as f:
        f.create_group("attrs").create_dataset("LOOM_SPEC_VERSION", data="3.0.0", dtype=TEXT)
        f["matrix"] = np.zeros((2, 3), dtype=np.float32)
        f.create_group("col_attrs").create_dataset("CellID", data=["a", "a", "b"], dtype=TEXT)
        f.create_group("row_attrs").create_dataset("Gene", data=["x", "y"], dtype=TEXT)
    report = scanpy_loomio.validate_loom(path)
    [problem] = report.problems
    assert (problem.severity, problem.check) == ("warning", "read")
    assert "obs names from /col_attrs/CellID are not unique" in problem.message
    assert report.ok


@pytest.mark.parametrize("name", list(CONVENTIONS))
def test_files_written_for_a_tool_have_what_it_needs(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.loom"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scanpy_loomio.write_loom_full(path, small_adata(), convention=name, fill_missing_layers=True)
    report = scanpy_loomio.validate_loom(path, conventions=[name])
    assert [str(p) for p in report.errors] == []
    assert [str(p) for p in report.problems if p.check == f"convention:{name}"] == []


def test_what_a_tool_needs(written: tuple[Path, anndata.AnnData]) -> None:
    path, _ = written
    report = scanpy_loomio.validate_loom(path, conventions=["seuratdisk", "velocyto", "loomexperiment"], read=False)
    found = {(p.check, p.where) for p in report.errors}
    assert found == {  # the default output has no 2-D column attributes
        ("convention:velocyto", "/layers/spliced"),
        ("convention:velocyto", "/layers/unspliced"),
        ("convention:velocyto", "/layers/ambiguous"),
        ("convention:loomexperiment", "/col_attrs/colnames"),
        ("convention:loomexperiment", "/row_attrs/rownames"),
    }
    assert all("scanpy-loomio convert IN OUT --convention" in p.fix for p in report.errors)


def test_unknown_convention() -> None:
    with pytest.raises(ValueError, match=r"unknown convention 'nope'; expected one of"):
        scanpy_loomio.validate_loom("never-opened.loom", conventions=["nope"])


# fixture -> paths of the errors found (all of them loompy's validator reports too)
FIXTURE_ERRORS = {
    "fgp_anndata_velocity_simulation_20.loom": set(),
    "kb_python_anndata_genes.loom": set(),
    "loompy_v2_test.loom": set(),
    "loompy_v3_test.loom": set(),
    "loomexperiment_0.99_rle_example.loom": {"/row_attrs/GRanges"},
    "loomexperiment_1.3.3_L1_DRG_20.loom": {f"/col_graphs/{g}/{x}" for g in ("KNN", "MKNN") for x in "ab"},
    "scopeloomr_2018_example.loom": set(),  # its record attribute is the scope convention's, so a warning
}


@pytest.mark.parametrize("name", sorted(FIXTURE_ERRORS))
def test_real_files(real_fixtures: Path, tmp_path: Path, name: str) -> None:
    report = scanpy_loomio.validate_loom(copy_fixture(real_fixtures, name, tmp_path))
    assert {p.where for p in report.errors} == FIXTURE_ERRORS[name]
    assert all(p.loompy_refuses for p in report.errors)


def test_records_are_warnings_in_the_scope_convention(real_fixtures: Path, tmp_path: Path) -> None:
    report = scanpy_loomio.validate_loom(copy_fixture(real_fixtures, "scopeloomr_2018_example.loom", tmp_path))
    [record] = [p for p in report.problems if p.where == "/col_attrs/Embedding"]
    assert (record.severity, record.loompy_refuses) == ("warning", True)
    assert "as the scope convention stores them" in record.message


@pytest.mark.parametrize("name", [*sorted(FIXTURE_ERRORS), "broken", "written"])
def test_loompy_refuses_exactly_what_we_say_it_refuses(
    real_fixtures: Path, tmp_path: Path, written: tuple[Path, anndata.AnnData], name: str
) -> None:
    loompy = pytest.importorskip("loompy", reason="loompy is the oracle here (a test dependency)")
    if name == "broken":
        path = tmp_path / "broken.loom"
        broken_loom(path)
    elif name == "written":
        path = written[0]
    else:
        path = copy_fixture(real_fixtures, name, tmp_path)
    predicted = any(p.loompy_refuses for p in scanpy_loomio.validate_loom(path, read=False).problems)
    try:
        refused = not loompy.LoomValidator().validate(str(path), strictness="speconly")
    except (AttributeError, KeyError, IndexError):  # loompy's validator crashes on some files (nested groups)
        refused = True
    assert predicted == refused


# -- inspect --------------------------------------------------------------------------------------------------------


def test_inspect_a_file_of_this_package(written: tuple[Path, anndata.AnnData]) -> None:
    path, adata = written
    summary = scanpy_loomio.inspect_loom(path)
    assert (summary.convention, summary.n_obs, summary.n_vars, summary.spec_version) == ("loompy", 30, 20, "3.0.0")
    assert summary.convention_reasons[0].startswith("recorded by scanpy-loomio")
    assert summary.obs_names.startswith("/col_attrs/CellID (recorded; 30 names, unique)")
    assert summary.record is not None
    assert summary.record["obs index"] == "CellID (index name 'barcode')"
    assert summary.read_result["obsp"] == "connectivities"
    assert {e.label for e in summary.col_attrs} == {"CellID", "cluster", "n_counts", "X_umap_1", "X_umap_2"}
    assert [e.shape for e in summary.col_attrs if e.label.startswith("X_umap")] == [(30,), (30,)]
    assert summary.anndata_losses == [
        "the obs index name 'barcode'",
        "obs['cluster'] would be plain values, not categorical",
        "obsm ['X_umap']",  # one 1-D attribute per component, which anndata reads as obs columns
        "obsp ['connectivities'] (graphs are not read)",
        "the name of var['gene_ids']: it would be 'Accession'",
        "var['highly_variable'] would be 0/1 integers, not bool",
        "the dtype of X: float64 would become float32",
        "uns ['title'] (global attributes and kept elements are not read)",
    ]
    text = summary.render()
    for expected in (
        "loom spec      3.0.0",
        "convention     loompy: recorded",
        "plain sc.read_loom",
        "scanpy-loomio record",
    ):
        assert expected in text


def test_predicted_losses_are_real(written: tuple[Path, anndata.AnnData]) -> None:
    pytest.importorskip("loompy", reason="anndata's read_loom needs loompy")
    path, adata = written
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = anndata.io.read_loom(path)
    assert plain.obs.index.name != "barcode"
    assert plain.obs["cluster"].dtype != "category"
    assert "connectivities" not in plain.obsp
    assert "Accession" in plain.var and "gene_ids" not in plain.var
    assert plain.var["highly_variable"].dtype == np.int8
    assert plain.X.dtype == np.float32
    assert "title" not in plain.uns


@pytest.mark.parametrize(
    ("name", "loss"),
    [
        ("kb_python_anndata_genes.loom", "obs names (in /col_attrs/obs_names): replaced by 0, 1, 2, …"),
        (
            "fgp_anndata_velocity_simulation_20.loom",
            "X: it would be the 'spliced' layer, and /matrix would become layers['matrix']",
        ),
        ("loompy_v2_test.loom", "the dtype of X: float64 would become float32"),
    ],
)
def test_losses_of_real_files_are_real(real_fixtures: Path, tmp_path: Path, name: str, loss: str) -> None:
    pytest.importorskip("loompy", reason="anndata's read_loom needs loompy")
    path = copy_fixture(real_fixtures, name, tmp_path)
    summary = scanpy_loomio.inspect_loom(path)
    assert loss in summary.anndata_losses
    full = scanpy_loomio.read_loom_full(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = anndata.io.read_loom(path)
    if "names" in loss:
        assert list(plain.obs_names[:3]) == ["0", "1", "2"]
        assert list(full.obs_names[:3]) != ["0", "1", "2"]
    elif "spliced" in loss:
        assert "matrix" in plain.layers
        assert (plain.X != plain.layers["spliced"]).nnz == 0
    else:
        assert plain.X.dtype == np.float32
        assert full.X.dtype == np.float64


@pytest.mark.parametrize(
    "name",
    ["loomexperiment_0.99_rle_example.loom", "loomexperiment_1.3.3_L1_DRG_20.loom", "scopeloomr_2018_example.loom"],
)
def test_files_anndata_refuses(real_fixtures: Path, tmp_path: Path, name: str) -> None:
    loompy = pytest.importorskip("loompy", reason="anndata's read_loom needs loompy")
    path = copy_fixture(real_fixtures, name, tmp_path)
    [loss] = scanpy_loomio.inspect_loom(path).anndata_losses
    assert loss.startswith("everything: it refuses the file, because loompy's validator")
    with warnings.catch_warnings(), pytest.raises((ValueError, AttributeError)):
        warnings.simplefilter("ignore")
        with loompy.connect(str(path), "r"):
            pass


def test_inspect_explains_a_detected_convention(real_fixtures: Path, tmp_path: Path) -> None:
    summary = scanpy_loomio.inspect_loom(copy_fixture(real_fixtures, "scopeloomr_2018_example.loom", tmp_path))
    assert summary.convention == "scope"
    assert summary.convention_reasons[:3] == ["cell names in CellID", "gene names in Gene", "has col_attrs/Embedding"]
    assert summary.record is None
    assert summary.read_result["obsm"] == "Embedding"
    assert [e.kind for e in summary.col_attrs if e.label == "Embedding"] == ["record(_X, _Y)"]


def test_inspect_points_at_names_under_an_unknown_attribute(tmp_path: Path) -> None:
    pytest.importorskip("loompy", reason="anndata's write_loom needs loompy")
    adata = small_adata()
    adata.obs.index.name = "barcode_seq"  # anndata's write_loom stores the names under the index's name
    write_loom_as_anndata_did(tmp_path / "legacy.loom", adata)
    summary = scanpy_loomio.inspect_loom(tmp_path / "legacy.loom")
    assert summary.obs_names == (
        "none found: 0, 1, 2, … (a range index); unique text in ['barcode_seq']: name it with obs_names= "
        "(--obs-names on the command line)"
    )
    back = scanpy_loomio.read_loom_full(tmp_path / "legacy.loom", obs_names="barcode_seq")
    assert back.obs_names.equals(adata.obs_names)


def test_inspect_refuses_what_is_not_loom(tmp_path: Path) -> None:
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["data"] = np.zeros(3)
    with pytest.raises(scanpy_loomio.LoomFormatError, match=r"other\.h5: /: found no 2-D /matrix"):
        scanpy_loomio.inspect_loom(path)


def test_inspect_names_the_axis_of_each_attribute(tmp_path: Path) -> None:
    """A column and a row attribute of the same name are each shown with their own axis."""
    adata = small_adata()
    adata.obs["n_counts"] = np.arange(adata.n_obs, dtype=np.float32)
    adata.var["n_counts"] = np.arange(adata.n_vars, dtype=np.float32)
    scanpy_loomio.write_loom_full(tmp_path / "a.loom", adata)
    summary = scanpy_loomio.inspect_loom(tmp_path / "a.loom")
    notes = {e.path: e.note for e in [*summary.col_attrs, *summary.row_attrs]}
    assert notes["/col_attrs/n_counts"] == "→ obs['n_counts']"
    assert notes["/row_attrs/n_counts"] == "→ var['n_counts']"
