"""Real readers on files this package writes: loompy's validator and ``connect``, anndata's ``read_loom``, scVelo and
velocyto.py.

loompy and anndata run in the test environment. scVelo and velocyto.py pin old dependencies, so they live in their
own environment (``tests/interop/setup_clients.sh``) and run through ``tests/interop/client_read.py`` in a
subprocess. The tests find that environment's Python through ``SCANPY_LOOMIO_CLIENTS_PYTHON``, or as ``.venv-clients``
at the repository root; without it they skip and say how to install it. When the variable is set (CI sets it), a
reader that cannot be imported fails instead of skipping.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import anndata
import h5py
import loompy
import numpy as np
import pandas as pd
import pytest
from anndata import AnnData
from scipy import sparse

from scanpy_loomio import write_loom_full
from scanpy_loomio.conventions import CONVENTIONS, DEFAULT_CONVENTION, Convention

pytestmark = pytest.mark.interop

REPO = Path(__file__).resolve().parents[1]
CLIENT_SCRIPT = Path(__file__).resolve().parent / "interop" / "client_read.py"
CLIENTS_ENV = "SCANPY_LOOMIO_CLIENTS_PYTHON"
#: Exit status of client_read.py when the tool cannot be imported.
CLIENT_MISSING = 3
VELOCITY_LAYERS = ("spliced", "unspliced", "ambiguous")


def _writes_records(c: Convention) -> bool:
    """SCope's layout (and any record embedding form): outside the spec, refused by loompy's validator."""
    return bool(c.default_embedding_attr or c.clusterings_attr or c.embedding_form.layout == "compound")


WITH_SPEC = [name for name, c in CONVENTIONS.items() if c.spec_version and not _writes_records(c)]
WITH_RECORDS = [name for name, c in CONVENTIONS.items() if _writes_records(c)]

N_OBS, N_VAR = 60, 40


def velocity_adata(layers: tuple[str, ...] = VELOCITY_LAYERS) -> AnnData:
    """Counts as velocyto writes them: names ``sample:BARCODEx``, integer layers, ``/matrix`` their sum."""
    rng = np.random.default_rng(7)
    counts = {
        name: sparse.csr_matrix(rng.poisson(lam, (N_OBS, N_VAR)).astype(np.uint32))
        for name, lam in zip(VELOCITY_LAYERS, (4.0, 2.0, 0.3), strict=True)
    }
    adata = AnnData(X=sum(counts.values()).astype(np.float32), layers={name: counts[name] for name in layers})
    adata.obs_names = [f"sample1:{''.join(rng.choice(list('ACGT'), 12))}x" for _ in range(N_OBS)]
    adata.var_names = [f"Gene{i}" for i in range(N_VAR)]
    adata.var["gene_ids"] = [f"ENSMUSG{i:011d}" for i in range(N_VAR)]
    adata.obs["cluster"] = pd.Categorical(rng.choice(["a", "b", "c"], N_OBS))
    adata.obsm["X_umap"] = rng.normal(size=(N_OBS, 2))
    return adata


def annotated_adata() -> AnnData:
    adata = velocity_adata(layers=())
    adata.obs["n_counts"] = np.asarray(adata.X.sum(axis=1)).ravel()
    adata.obs["passed"] = adata.obs["n_counts"] > 50
    adata.obsm["X_pca"] = np.random.default_rng(8).normal(size=(N_OBS, 4)).astype(np.float32)
    adata.obsp["connectivities"] = sparse.random(N_OBS, N_OBS, density=0.05, format="csr", random_state=9)
    adata.uns["title"] = "interop"
    return adata


# -- running a client in its own environment -------------------------------------------------------------------------
def clients_python() -> tuple[str, bool]:
    """The clients' Python, and whether the caller said it has them (then a missing client is a failure)."""
    told = os.environ.get(CLIENTS_ENV)
    if told:
        return told, True
    local = REPO / ".venv-clients" / "bin" / "python"
    return (str(local), False) if local.exists() else (sys.executable, False)


@cache
def _run_client(tool: str, paths: tuple[str, ...]) -> dict[str, Any] | str:
    """What ``tool`` reports for each path, or the reason it cannot run."""
    python, _ = clients_python()
    if not Path(python).exists():
        return f"{python} does not exist"
    proc = subprocess.run(
        [python, str(CLIENT_SCRIPT), tool, *paths], capture_output=True, text=True, timeout=900, check=False
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode == CLIENT_MISSING:
        return f"{tool} cannot be imported by {python} ({json.loads(lines[-1])['missing']})"
    if proc.returncode != 0 or not lines:
        pytest.fail(f"{tool} client exited with {proc.returncode}:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1])


def run_client(tool: str, paths: list[Path]) -> dict[str, Any]:
    """Run ``tool`` on ``paths`` (once per set of files), skipping or failing when it is not installed."""
    result = _run_client(tool, tuple(str(p) for p in paths))
    if isinstance(result, str):
        python, told = clients_python()
        if told:
            pytest.fail(f"{CLIENTS_ENV}={python} is set, but {result}")
        pytest.skip(
            f"{result}; install the readers with tests/interop/setup_clients.sh "
            f"(then the tests find .venv-clients, or set {CLIENTS_ENV})"
        )
    return result


# -- files written for the velocity tools ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def velocity_files(tmp_path_factory) -> dict[str, tuple[Path, AnnData]]:
    """One file per way of writing velocity data; the ``no_ambiguous`` one is the negative control."""
    folder = tmp_path_factory.mktemp("velocity")
    cases: dict[str, tuple[AnnData, dict[str, Any]]] = {
        "velocyto": (velocity_adata(), {"convention": "velocyto"}),
        "velocyto_filled": (
            velocity_adata(("spliced", "unspliced")),
            {"convention": "velocyto", "fill_missing_layers": True},
        ),
        "default": (velocity_adata(), {}),
        "no_ambiguous": (velocity_adata(("spliced", "unspliced")), {"convention": DEFAULT_CONVENTION}),
    }
    files = {}
    for label, (adata, kwargs) in cases.items():
        path = folder / f"{label}.loom"
        write_loom_full(path, adata, **kwargs)
        files[label] = (path, adata)
    return files


def _velocyto_results(files: dict[str, tuple[Path, AnnData]]) -> dict[str, Any]:
    return run_client("velocyto", [path for path, _ in files.values()])


@pytest.mark.parametrize("label", ["velocyto", "velocyto_filled", "default"])
def test_velocyto_loads_names_and_layers(velocity_files, label):
    path, adata = velocity_files[label]
    seen = _velocyto_results(velocity_files)[str(path)]
    assert seen["ok"], seen.get("error")
    assert seen["cells"] == list(adata.obs_names)
    assert seen["genes"] == list(adata.var_names)
    for key, layer in zip("SUA", VELOCITY_LAYERS, strict=True):
        shape, total = seen[key]
        assert shape == [N_VAR, N_OBS]  # velocyto keeps genes × cells
        assert total == (adata.layers[layer].sum() if layer in adata.layers else 0)


def test_velocyto_fails_without_ambiguous(velocity_files):
    """The negative control: the real reader does need the layer the convention fills in."""
    path, _ = velocity_files["no_ambiguous"]
    seen = _velocyto_results(velocity_files)[str(path)]
    assert not seen["ok"]
    assert "ambiguous" in seen["error"] or "AttributeError" in seen["error"]


@pytest.mark.parametrize("label", ["velocyto", "velocyto_filled", "default"])
def test_scvelo_finds_layers_and_names_and_runs(velocity_files, label):
    path, adata = velocity_files[label]
    paths = [velocity_files[k][0] for k in ("velocyto", "velocyto_filled", "default")]
    seen = run_client("scvelo", paths)[str(path)]
    assert seen["ok"], seen.get("error")
    assert seen["obs_names"] == list(adata.obs_names)
    assert seen["var_names"] == list(adata.var_names)
    assert {"spliced", "unspliced"} <= set(seen["layers"])
    for layer in ("spliced", "unspliced"):
        assert seen["totals"][layer] == adata.layers[layer].sum()
    assert seen["moments"] == ["Ms", "Mu"]
    assert seen["velocity_shape"][0] == N_OBS


# -- loompy ----------------------------------------------------------------------------------------------------------
def _write(path: Path, adata: AnnData, convention: str | Convention) -> Path:
    write_loom_full(path, adata, convention=convention, fill_missing_layers=True)
    return path


def _spec_valid_adata(convention: Convention) -> AnnData:
    """An annotated AnnData; without embeddings for conventions that store them as records (compound attributes),
    which the loom spec does not allow and loompy's validator rejects, as it rejects SCope's own files."""
    adata = annotated_adata()
    if convention.embedding_form.layout == "compound":
        adata.obsm.clear()
    return adata


@pytest.mark.parametrize("name", WITH_SPEC)
def test_loompy_validator_speconly(tmp_path, name):
    path = _write(tmp_path / "a.loom", _spec_valid_adata(CONVENTIONS[name]), name)
    validator = loompy.LoomValidator()
    assert validator.validate(str(path), strictness="speconly"), validator.errors
    assert validator.errors == []


def test_loompy_validator_conventions(tmp_path):
    """Every loompy convention is met except ``ClusterID``, which loompy 3.0.8 rejects when it is right."""
    adata = annotated_adata()
    adata.obs["ClusterID"] = adata.obs["cluster"].cat.codes.astype(np.int64)
    path = _write(tmp_path / "a.loom", adata, DEFAULT_CONVENTION)
    validator = loompy.LoomValidator()
    validator.validate(str(path), strictness="conventions")
    known_bug = "Column attribute 'ClusterID' must be integers 0, 1, 2, ... with no missing values"
    problems = [e for e in validator.errors if e != known_bug and not e.startswith("For help")]
    assert problems == []
    with h5py.File(path, "r") as f:  # what the check wants, and what it gets wrong
        codes = f["col_attrs/ClusterID"][()]
        assert codes.min() == 0 and len(np.unique(codes)) == codes.max() + 1


@pytest.mark.parametrize("name", WITH_RECORDS)
def test_record_layouts_are_refused_by_loompys_validator_as_validate_says(tmp_path, name):
    """SCope's layout is outside the spec: loompy's validator refuses it, and validate_loom warns that it will."""
    from scanpy_loomio import validate_loom

    path = _write(tmp_path / "a.loom", annotated_adata(), name)
    validator = loompy.LoomValidator()
    assert not validator.validate(str(path), strictness="speconly")
    warned = [p for p in validate_loom(path).problems if "loompy's validator refuses" in p.message]
    with h5py.File(path, "r") as f:
        records = {f"/col_attrs/{k}" for k, d in f["col_attrs"].items() if d.dtype.names}
    assert records and {p.where for p in warned} == records
    assert all(p.severity == "warning" for p in warned)


@pytest.mark.parametrize("name", WITH_SPEC)
def test_loompy_connect_validates_and_reads_names(tmp_path, name):
    convention = CONVENTIONS[name]
    adata = _spec_valid_adata(convention)
    path = _write(tmp_path / "a.loom", adata, name)
    with loompy.connect(str(path), "r") as ds:  # validate=True, loompy's default
        assert ds.shape == (N_VAR, N_OBS)
        assert list(ds.ca[convention.cell_names_attr]) == list(adata.obs_names)
        assert list(ds.ra[convention.gene_names_attr]) == list(adata.var_names)
        np.testing.assert_array_equal(ds[:, :], adata.X.T.toarray())


@pytest.mark.parametrize("name", list(CONVENTIONS))
def test_loompy_without_validation_reads_names(tmp_path, name):
    """How pySCENIC and SCope open files (``validate=False``): ``/matrix`` and the names attributes."""
    convention = CONVENTIONS[name]
    adata = annotated_adata()
    path = _write(tmp_path / "a.loom", adata, name)
    with loompy.connect(str(path), "r", validate=False) as ds:
        assert list(ds.ca[convention.cell_names_attr]) == list(adata.obs_names)
        assert list(ds.ra[convention.gene_names_attr]) == list(adata.var_names)
        np.testing.assert_array_equal(ds[:, :], adata.X.T.toarray())


# -- anndata's read_loom ---------------------------------------------------------------------------------------------
def _anndata_read_loom(path: Path, **kwargs) -> AnnData:
    read_loom = getattr(anndata, "io", anndata).read_loom
    return read_loom(path, **kwargs)


@pytest.mark.parametrize(
    "name",
    [n for n in WITH_SPEC if (CONVENTIONS[n].cell_names_attr, CONVENTIONS[n].gene_names_attr) == ("CellID", "Gene")],
)
def test_anndata_read_loom_defaults_get_the_names(tmp_path, name):
    """anndata's defaults are ``obs_names="CellID"``, ``var_names="Gene"``: files of conventions using both."""
    adata = _spec_valid_adata(CONVENTIONS[name])
    path = _write(tmp_path / "a.loom", adata, name)
    back = _anndata_read_loom(path)
    assert list(back.obs_names) == list(adata.obs_names)
    assert list(back.var_names) == list(adata.var_names)
    # X_name="" is /matrix (by default anndata takes a "spliced" layer, which velocyto files have)
    np.testing.assert_array_equal(_anndata_read_loom(path, X_name="").X.toarray(), adata.X.toarray())


@pytest.mark.parametrize("name", WITH_SPEC)
def test_anndata_read_loom_finds_names_where_the_convention_puts_them(tmp_path, name):
    convention = CONVENTIONS[name]
    adata = _spec_valid_adata(convention)
    path = _write(tmp_path / "a.loom", adata, name)
    back = _anndata_read_loom(path, obs_names=convention.cell_names_attr, var_names=convention.gene_names_attr)
    assert list(back.obs_names) == list(adata.obs_names)
    assert list(back.var_names) == list(adata.var_names)


def test_anndata_read_loom_gets_default_embeddings(tmp_path):
    """The default output has one 1-D attribute per component (R readers fail on 2-D ones): anndata's reader gets
    them as columns, or as embeddings when told which attributes make each one."""
    adata = annotated_adata()
    path = _write(tmp_path / "a.loom", adata, DEFAULT_CONVENTION)
    plain = _anndata_read_loom(path)
    np.testing.assert_array_equal(plain.obs["X_umap_2"], adata.obsm["X_umap"][:, 1])
    mapping = {key: [f"{key}_{i + 1}" for i in range(value.shape[1])] for key, value in adata.obsm.items()}
    back = _anndata_read_loom(path, obsm_names=mapping)
    np.testing.assert_array_equal(back.obsm["X_umap"], adata.obsm["X_umap"])
    np.testing.assert_array_equal(back.obsm["X_pca"], adata.obsm["X_pca"])
