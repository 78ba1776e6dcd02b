"""concat_loom: the result equals anndata.concat of the inputs read with read_loom_full, with the same options."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
from helpers import assert_same_as_h5ad, layer_keys
from scipy import sparse

import scanpy_loomio
from scanpy_loomio import LoomConcatWarning, concat_loom, read_loom_full, write_loom_full

TOOLS = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "tools"
VELOCYTO = TOOLS / "velocyto_run10x.loom"


def _without_nan(adata: ad.AnnData) -> ad.AnnData:
    """A copy with NaN in dense float matrices replaced by a marker (exact comparison cannot see NaN == NaN)."""
    adata = adata.copy()
    for key in [None, *layer_keys(adata)]:
        value = adata.X if key is None else adata.layers[key]
        if isinstance(value, np.ndarray) and value.dtype.kind == "f" and np.isnan(value).any():
            value = np.where(np.isnan(value), value.dtype.type(-7777), value)
            if key is None:
                adata.X = value
            else:
                adata.layers[key] = value
    return adata


def oracle(files: list[Path], **options: object) -> ad.AnnData:
    var_key = options.pop("var_key", None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        inputs = [read_loom_full(f, var_names=var_key) for f in files]
        return ad.concat(inputs, **options)


def check(files: list[Path], out: Path, **options: object) -> scanpy_loomio.ConcatReport:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LoomConcatWarning)
        report = concat_loom(files, out, **options)
    written_only = ("chunks", "n_threads", "convention", "progress", "compression_level")
    expected = oracle(files, **{k: v for k, v in options.items() if k not in written_only})
    back = read_loom_full(out)
    assert_same_as_h5ad(_without_nan(expected), _without_nan(back))
    return report


def sample(i: int, *, n_obs: int = 70, dense: bool = False, shift: int = 7) -> ad.AnnData:
    rng = np.random.default_rng(i)
    n_vars = 40 + 5 * i
    x = sparse.random(n_obs, n_vars, density=0.3, format="csr", dtype=np.float32, random_state=i)
    adata = ad.AnnData(x)
    adata.obs_names = [f"s{i}_c{j}" for j in range(n_obs)]
    adata.var_names = [f"g{j}" for j in range(i * shift, i * shift + n_vars)]
    adata.layers["counts"] = sparse.csr_matrix((x * 10).astype(np.int32))
    if dense:
        adata.layers["dense"] = rng.integers(0, 5, size=(n_obs, n_vars)).astype(np.int16)
    adata.obs["batch"] = f"b{i}"
    adata.obs["score"] = rng.normal(size=n_obs)
    adata.var["gc"] = [int(name[1:]) % 3 for name in adata.var_names]  # agrees across inputs
    adata.var["kind"] = "gene"
    adata.obsm["X_pca"] = rng.normal(size=(n_obs, 3))
    adata.uns["title"] = "same for all"
    return adata


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    out = []
    for i in range(3):
        path = tmp_path / f"sample{i}.loom"
        write_loom_full(path, sample(i, dense=True))
        out.append(path)
    return out


@pytest.mark.parametrize("join", ["inner", "outer"])
@pytest.mark.parametrize(
    "options",
    [
        {},
        {"label": "sample", "keys": ["a", "b", "c"], "index_unique": "-"},
        {"merge": "same", "uns_merge": "same"},
        {"merge": "first", "fill_value": 0},
        {"merge": "unique", "fill_value": -1, "label": "batch_id"},
    ],
)
def test_matches_anndata_concat(files: list[Path], tmp_path: Path, join: str, options: dict) -> None:
    report = check(files, tmp_path / "out.loom", join=join, **options)
    assert report.shape == read_loom_full(tmp_path / "out.loom", matrices=False).shape


@pytest.mark.parametrize("join", ["inner", "outer"])
def test_axis_var(tmp_path: Path, join: str) -> None:
    files = []
    for i in range(2):
        adata = sample(i, n_obs=60 - 10 * i, dense=True, shift=0)
        adata.obs_names = [f"c{j}" for j in range(i * 5, i * 5 + adata.n_obs)]
        adata.var_names = [f"s{i}_{name}" for name in adata.var_names]
        files.append(tmp_path / f"v{i}.loom")
        write_loom_full(files[-1], adata)
    check(files, tmp_path / "out.loom", axis="var", join=join, merge="same", label="part")
    check(files, tmp_path / "out1.loom", axis=1, join=join, fill_value=3)


def test_mapping_gives_keys(files: list[Path], tmp_path: Path) -> None:
    mapping = {f"k{i}": f for i, f in enumerate(files)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LoomConcatWarning)
        concat_loom(mapping, tmp_path / "out.loom", label="sample", index_unique="_")
    back = read_loom_full(tmp_path / "out.loom")
    assert list(back.obs["sample"].cat.categories) == ["k0", "k1", "k2"]
    assert back.obs_names[0].endswith("_k0")
    with pytest.raises(TypeError):
        concat_loom(mapping, tmp_path / "x.loom", keys=["a", "b", "c"])


def test_dense_and_mixed_containers(tmp_path: Path) -> None:
    files = []
    for i, x in enumerate(
        [
            np.arange(12, dtype=np.int64).reshape(3, 4),
            sparse.csc_matrix(np.eye(3, 5, dtype=np.float64)),
            np.ones((2, 4), dtype=bool),
        ]
    ):
        adata = ad.AnnData(x)
        adata.obs_names = [f"f{i}c{j}" for j in range(x.shape[0])]
        adata.var_names = [f"g{j}" for j in range(x.shape[1])]
        files.append(tmp_path / f"m{i}.loom")
        write_loom_full(files[-1], adata)
    for join in ("inner", "outer"):
        check(files, tmp_path / f"{join}.loom", join=join)
        check(files[::2], tmp_path / f"{join}2.loom", join=join)


def test_reports_what_merge_rules_leave_out(files: list[Path], tmp_path: Path) -> None:
    with pytest.warns(LoomConcatWarning, match=r"var columns \['gc', 'kind'\].*merge="):
        report = concat_loom(files, tmp_path / "out.loom")
    assert report.dropped["var columns"] == ["gc", "kind"]
    assert "uns" in report.dropped
    assert "left out var columns" in str(report)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LoomConcatWarning)
        report = concat_loom(files, tmp_path / "kept.loom", merge="same", uns_merge="same")
    assert report.dropped == {}
    assert list(read_loom_full(tmp_path / "kept.loom").var.columns) == ["gc", "kind"]


def test_layers_only_some_inputs_have(tmp_path: Path) -> None:
    files = []
    for i in range(2):
        adata = sample(i)
        if i:
            del adata.layers["counts"]
        files.append(tmp_path / f"l{i}.loom")
        write_loom_full(files[-1], adata)
    with pytest.warns(LoomConcatWarning, match="layers"):
        report = concat_loom(files, tmp_path / "inner.loom")
    assert report.layers == []
    check(files, tmp_path / "outer.loom", join="outer")


def test_streams_in_small_windows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With tiny bands every input is read in many windows that straddle the output's chunks; still exact."""
    from scanpy_loomio._matrix import pool, tiles
    from scanpy_loomio._tools.concat import bands

    files = []
    for i in range(3):
        files.append(tmp_path / f"small{i}.loom")
        write_loom_full(files[-1], sample(i, dense=True), chunks=(16, 16))

    monkeypatch.setattr(tiles, "BAND_BYTES", 256)
    monkeypatch.setattr(pool, "TASK_BYTES", 512)
    widths = []
    original = bands.Window.rows

    def rows(self: object, index: np.ndarray) -> np.ndarray:
        out = original(self, index)
        widths.append(self.stop - self.start)
        return out

    monkeypatch.setattr(bands.Window, "rows", rows)
    check(files, tmp_path / "out.loom", join="outer", chunks=(24, 24), n_threads=2)
    assert widths
    assert max(widths) <= 48  # windows of a band and a chunk, never whole inputs (70 cells each)


def test_align_on_another_attribute(tmp_path: Path) -> None:
    files = []
    for i in range(2):
        adata = sample(i)
        adata.var["gene_ids"] = [f"ENSG{int(name[1:]):05d}" for name in adata.var_names]
        adata.var_names = [f"name{i}_{j}" for j in range(adata.n_vars)]  # names differ, ids agree
        files.append(tmp_path / f"a{i}.loom")
        write_loom_full(files[-1], adata)
    report = check(files, tmp_path / "out.loom", var_key="Accession")
    assert report.shape[1] == 40 - 7 + 0  # the shared ids
    assert read_loom_full(tmp_path / "out.loom").var_names[0].startswith("ENSG")


def test_gene_names_that_repeat_fail_naming_the_files_and_the_fix(tmp_path: Path) -> None:
    # velocyto's Gene attribute often repeats a name; anndata.concat cannot align such names either
    files = []
    for i in range(2):
        adata = sample(i)
        adata.var["gene_ids"] = [f"ENSG{int(name[1:]):05d}" for name in adata.var_names]
        adata.var_names = ["Actb", *adata.var_names[1:-1], "Actb"] if i else list(adata.var_names)
        files.append(tmp_path / f"a{i}.loom")
        write_loom_full(files[-1], adata)
    with pytest.raises(
        pd.errors.InvalidIndexError, match=r"var names of \S*a1\.loom \('Actb', \.\.\.\) repeat.*var_key='Accession'"
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # anndata's "not unique" warning
            concat_loom(files, tmp_path / "out.loom")
    assert not (tmp_path / "out.loom").exists()
    check(files, tmp_path / "out.loom", var_key="Accession")  # unique ids align; equals anndata.concat of the reads


def test_inputs_untouched_and_atomic(files: list[Path], tmp_path: Path) -> None:
    before = [f.read_bytes() for f in files]
    target = tmp_path / "out.loom"
    target.write_bytes(b"old")
    with pytest.raises(FileNotFoundError):
        concat_loom([*files, tmp_path / "missing.loom"], target)
    assert target.read_bytes() == b"old"
    assert [f.read_bytes() for f in files] == before
    assert not [p for p in tmp_path.iterdir() if "tmp" in p.name]


def test_output_convention(files: list[Path], tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LoomConcatWarning)
        report = concat_loom(files, tmp_path / "out.loom", convention="loomexperiment", merge="same")
    assert report.convention == "loomexperiment"
    with h5py.File(tmp_path / "out.loom") as f:
        assert "colnames" in f["col_attrs"]
    expected = oracle(files, merge="same")
    back = read_loom_full(tmp_path / "out.loom")
    np.testing.assert_array_equal(back.X.toarray(), expected.X.toarray())
    pd.testing.assert_index_equal(back.obs_names, expected.obs_names)


def _loompy_file(path: Path, i: int, genes: list[str], n_cells: int = 30) -> Path:
    loompy = pytest.importorskip("loompy")
    rng = np.random.default_rng(i)
    matrix = rng.poisson(1.0, size=(len(genes), n_cells)).astype(np.float32)
    layers = {"": matrix, "spliced": matrix.astype(np.uint32), "unspliced": (matrix * 2).astype(np.uint32)}
    row_attrs = {"Gene": np.array(genes), "Accession": np.array([g.upper() for g in genes])}
    col_attrs = {"CellID": np.array([f"f{i}:C{j}x" for j in range(n_cells)]), "nUMI": matrix.sum(0)}
    loompy.create(str(path), layers, row_attrs, col_attrs)
    return path


@pytest.mark.parametrize("join", ["inner", "outer"])
def test_loompy_files(tmp_path: Path, join: str) -> None:
    genes = [f"gene{j}" for j in range(50)]
    files = [
        _loompy_file(tmp_path / "a.loom", 0, genes),
        _loompy_file(tmp_path / "b.loom", 1, genes[10:] + ["extra1", "extra2"]),
    ]
    check(files, tmp_path / "out.loom", join=join, label="sample")
    check(files, tmp_path / "acc.loom", join=join, var_key="Accession", merge="same")


def test_velocyto_file(tmp_path: Path) -> None:
    if not VELOCYTO.is_file():
        pytest.skip(f"velocyto fixture not found at {VELOCYTO}")
    files = []
    for name in ("s1", "s2"):
        files.append(tmp_path / f"{name}.loom")
        shutil.copy(VELOCYTO, files[-1])
    report = check(files, tmp_path / "out.loom", keys=["s1", "s2"], index_unique="-", label="sample", merge="same")
    assert report.convention == "velocyto"
    assert set(report.layers) == {"spliced", "unspliced", "ambiguous"}
    check(files, tmp_path / "acc.loom", keys=["s1", "s2"], index_unique="-", var_key="Accession")
    loompy_made = _loompy_file(tmp_path / "other.loom", 3, [f"VG{j:02d}" for j in range(3, 9)], n_cells=5)
    check([files[0], loompy_made], tmp_path / "mixed.loom", join="outer", merge="first")


def test_argument_errors(files: list[Path], tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="list"):
        concat_loom(files[0], tmp_path / "x.loom")
    with pytest.raises(ValueError, match="no input"):
        concat_loom([], tmp_path / "x.loom")
    with pytest.raises(ValueError, match="axis"):
        concat_loom(files, tmp_path / "x.loom", axis="cells")
    with pytest.raises(ValueError, match="join"):
        concat_loom(files, tmp_path / "x.loom", join="left")
    assert not (tmp_path / "x.loom").exists()


def _dense(value: object) -> np.ndarray:
    return value.toarray() if sparse.issparse(value) else np.asarray(value)


def test_loompy_combine_parity(tmp_path: Path) -> None:
    """Files loompy.combine(key=...) accepts give the same matrix, layers and attributes (loompy as the oracle)."""
    loompy = pytest.importorskip("loompy")
    genes = [f"gene{j}" for j in range(40)]
    order = np.random.default_rng(0).permutation(40)
    files = [
        _loompy_file(tmp_path / "a.loom", 0, genes),
        _loompy_file(tmp_path / "b.loom", 1, [genes[j] for j in order]),  # same genes, another order
        _loompy_file(tmp_path / "c.loom", 2, genes, n_cells=7),
    ]
    theirs_path, ours_path = tmp_path / "loompy.loom", tmp_path / "ours.loom"
    loompy.combine([str(f) for f in files], str(theirs_path), key="Accession")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LoomConcatWarning)
        concat_loom(files, ours_path, var_key="Accession", merge="first")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = read_loom_full(theirs_path, var_names="Accession")
    ours = read_loom_full(ours_path)
    assert list(ours.obs_names) == list(theirs.obs_names)
    assert list(ours.var_names) == list(theirs.var_names)
    np.testing.assert_array_equal(_dense(ours.X), _dense(theirs.X))
    assert set(layer_keys(ours)) == set(layer_keys(theirs))
    for key in layer_keys(theirs):
        np.testing.assert_array_equal(_dense(ours.layers[key]), _dense(theirs.layers[key]))
        assert ours.layers[key].dtype == theirs.layers[key].dtype
    for axis in ("obs", "var"):
        want, got = getattr(theirs, axis), getattr(ours, axis)
        assert set(got.columns) == set(want.columns)
        for column in want.columns:
            np.testing.assert_array_equal(np.asarray(got[column]), np.asarray(want[column]))


def test_sets_loompy_refuses_work_with_join(tmp_path: Path) -> None:
    loompy = pytest.importorskip("loompy")
    genes = [f"gene{j}" for j in range(40)]
    files = [_loompy_file(tmp_path / "a.loom", 0, genes), _loompy_file(tmp_path / "b.loom", 1, genes[5:] + ["new"])]
    with pytest.raises(Exception):  # noqa: B017 - loompy's own errors differ between versions
        loompy.combine([str(f) for f in files], str(tmp_path / "loompy.loom"), key="Accession")
    for join in ("inner", "outer"):
        report = check(files, tmp_path / f"{join}.loom", join=join, var_key="Accession", merge="same")
        assert report.shape[1] == (35 if join == "inner" else 41)


def test_copies_whole_chunks_without_inflating(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Inputs starting on a chunk boundary, with the output's genes in order, are copied chunk by chunk; exact."""
    from scanpy_loomio import _matrix

    copied: list[int] = []
    original = _matrix.CellBands.raw_chunks

    def raw_chunks(self: object, *args: object) -> list | None:
        found = original(self, *args)
        copied.append(0 if found is None else len(found))
        return found

    monkeypatch.setattr(_matrix.CellBands, "raw_chunks", raw_chunks)
    files = []
    for i, n_obs in enumerate((128, 64, 50)):
        adata = sample(i, n_obs=n_obs, shift=0)
        adata.var_names = [f"g{j}" for j in range(40)] + [f"x{i}_{j}" for j in range(adata.n_vars - 40)]
        adata = adata[:, :40].copy()  # the same genes in the same order
        adata.layers["float64"] = adata.X.astype(np.float64)  # its codec dtype is the stored one
        files.append(tmp_path / f"c{i}.loom")
        write_loom_full(files[-1], adata)
    check(files, tmp_path / "out.loom", label="part")
    assert sum(copied) > 0
    copied.clear()
    check(files[::-1], tmp_path / "reversed.loom")  # 50 cells first: the others start mid-chunk
    assert sum(copied) == 0
    copied.clear()
    check(files, tmp_path / "outer.loom", join="outer", fill_value=2)
    assert sum(copied) > 0


SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
FOREIGN = sorted(p.relative_to(SHARED).as_posix() for p in SHARED.glob("*/*.loom")) if SHARED.is_dir() else []


@pytest.mark.parametrize("name", FOREIGN or [pytest.param("none", marks=pytest.mark.skip(reason="no fixtures"))])
def test_files_from_other_tools(tmp_path: Path, name: str) -> None:
    """velocyto, loompy, SCope, LoomExperiment, SeuratDisk, kb_python files: each concatenated with a copy of itself."""
    files = [tmp_path / "a.loom", tmp_path / "b.loom"]
    for file in files:
        shutil.copy(SHARED / name, file)
    check(
        files, tmp_path / "out.loom", keys=["a", "b"], index_unique="-", label="source", merge="same", uns_merge="same"
    )
