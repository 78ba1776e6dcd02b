"""AnnData → loom → AnnData gives back exactly what went in, element by element."""

from __future__ import annotations

import h5py
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from anndata import AnnData
from anndata.tests.helpers import assert_adata_equal, gen_adata
from helpers import assert_same_as_h5ad, layer_keys
from scipy import sparse

import scanpy_loomio
from scanpy_loomio import LossyWriteError, read_loom_full, write_loom_full

N_OBS, N_VAR = 12, 7
RNG = np.random.default_rng(0)


def roundtrip(adata: AnnData, path, **kwargs) -> AnnData:
    write_loom_full(path, adata, **kwargs)
    return read_loom_full(path)


def base(**kwargs) -> AnnData:
    adata = AnnData(
        X=RNG.poisson(1.0, (N_OBS, N_VAR)).astype(np.float32),
        obs=pd.DataFrame(index=[f"cell{i}" for i in range(N_OBS)]),
        var=pd.DataFrame(index=[f"gene{i}" for i in range(N_VAR)]),
    )
    for attr, value in kwargs.items():
        setattr(adata, attr, value)
    return adata


# -- obs/var columns: one row per dtype h5ad keeps ---------------------------------------------------------------
MISSING_CAT = pd.Categorical(["a", None, "b"] * 4, categories=["a", "b", "unused"])
COLUMNS = {
    "category": pd.Categorical(list("abcabcabcabc")),
    "category_ordered": pd.Categorical(list("lmhlmhlmhlmh"), categories=list("lmh"), ordered=True),
    "category_unused_and_missing": MISSING_CAT,
    "category_int": pd.Categorical([1, 5, 9] * 4),
    "category_float": pd.Categorical([0.5, 1.5, np.nan] * 4),
    "category_bool": pd.Categorical([True, False, True] * 4),
    "category_empty": pd.Categorical([None] * 12, categories=["x"]),
    "bool": np.array([True, False, False] * 4),
    **{
        dt: np.arange(12).astype(dt)
        for dt in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
    },
    "float16": np.linspace(0, 1, 12).astype(np.float16),
    "float32": np.linspace(0, 1, 12).astype(np.float32),
    "float64_nan": np.array([np.nan, 1.0, np.inf] * 4),
    "Int8": pd.array([1, None, 3] * 4, dtype="Int8"),
    "Int32": pd.array([1, None, -3] * 4, dtype="Int32"),
    "Int64_full": pd.array([1, 2, 3] * 4, dtype="Int64"),
    "UInt16": pd.array([1, None, 3] * 4, dtype="UInt16"),
    "boolean": pd.array([True, None, False] * 4, dtype="boolean"),
    "boolean_full": pd.array([True, False, False] * 4, dtype="boolean"),
    "string_object": np.array(["x", "ÿ é", "a/b"] * 4, dtype=object),
    "string_object_nan": np.array(["x", np.nan, "z"] * 4, dtype=object),
    "string_object_none": np.array(["x", None, "z"] * 4, dtype=object),
    "string_dtype": pd.array(["x", None, ""] * 4, dtype="string"),
    "string_empty_strings": np.array(["", "", "a"] * 4, dtype=object),
}


@pytest.mark.parametrize("axis", ["obs", "var"])
@pytest.mark.parametrize("name", list(COLUMNS))
def test_column_dtypes_roundtrip(tmp_path, axis, name):
    n = N_OBS if axis == "obs" else N_VAR
    adata = base()
    getattr(adata, axis)[name] = COLUMNS[name][:n]
    back = roundtrip(adata, tmp_path / "a.loom")
    assert_same_as_h5ad(adata, back)


def test_categorical_is_stored_as_labels(tmp_path):
    adata = base()
    adata.obs["cluster"] = pd.Categorical(["T cell", "B cell", "NK"] * 4)
    write_loom_full(tmp_path / "a.loom", adata)
    with h5py.File(tmp_path / "a.loom", "r") as f:
        stored = f["col_attrs/cluster"].asstr()[()]
    assert list(stored[:3]) == ["T cell", "B cell", "NK"]


def test_bool_is_stored_as_int8(tmp_path):
    """int8, not uint8: rhdf5 (LoomExperiment) reads uint8 as R's raw type."""
    adata = base()
    adata.var["hv"] = np.array([True, False, True, True, False, False, True])
    write_loom_full(tmp_path / "a.loom", adata)
    with h5py.File(tmp_path / "a.loom", "r") as f:
        assert f["row_attrs/hv"].dtype == np.int8
        assert list(f["row_attrs/hv"][()]) == [1, 0, 1, 1, 0, 0, 1]


def test_column_order_kept(tmp_path):
    adata = base()
    for name in ["zeta", "alpha", "Mid", "beta"]:
        adata.obs[name] = np.arange(N_OBS)
    back = roundtrip(adata, tmp_path / "a.loom")
    assert list(back.obs.columns) == ["zeta", "alpha", "Mid", "beta"]


# -- names ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "names",
    [
        [f"c{i}" for i in range(N_OBS)],
        ["dup"] * N_OBS,
        [f"zelle-ü-{i}-日本" for i in range(N_OBS)],
        [f"sample/1:{i}" for i in range(N_OBS)],
        ["", *[f"x{i}" for i in range(N_OBS - 1)]],
    ],
    ids=["plain", "duplicates", "non-ascii", "slash", "empty-string"],
)
def test_obs_names_roundtrip(tmp_path, names):
    adata = base()
    adata.obs_names = names
    back = roundtrip(adata, tmp_path / "a.loom")
    assert_same_as_h5ad(adata, back)


@pytest.mark.parametrize("obs_name, var_name", [("cell_id", "gene_symbols"), (None, "index"), ("CellID", None)])
def test_index_names_roundtrip(tmp_path, obs_name, var_name):
    adata = base()
    adata.obs.index.name = obs_name
    adata.var.index.name = var_name
    back = roundtrip(adata, tmp_path / "a.loom")
    assert back.obs.index.name == obs_name
    assert back.var.index.name == var_name
    assert_same_as_h5ad(adata, back)


def test_names_in_default_attributes(tmp_path):
    adata = base()
    adata.var["gene_ids"] = [f"ENSG{i:05d}" for i in range(N_VAR)]
    write_loom_full(tmp_path / "a.loom", adata)
    with h5py.File(tmp_path / "a.loom", "r") as f:
        assert list(f["col_attrs/CellID"].asstr()[()]) == list(adata.obs_names)
        assert list(f["row_attrs/Gene"].asstr()[()]) == list(adata.var_names)
        assert list(f["row_attrs/Accession"].asstr()[()]) == list(adata.var["gene_ids"])
    assert_same_as_h5ad(adata, read_loom_full(tmp_path / "a.loom"))


def test_seed_workaround_columns(tmp_path):
    """Pipelines that copied the index into CellID/Gene columns round-trip, and the names are stored once."""
    adata = base()
    adata.obs["CellID"] = adata.obs.index
    adata.var["Gene"] = adata.var.index
    adata.obs["other"] = np.arange(N_OBS)
    back = roundtrip(adata, tmp_path / "a.loom")
    assert_same_as_h5ad(adata, back)
    assert list(back.obs.columns) == ["CellID", "other"]
    with h5py.File(tmp_path / "a.loom", "r") as f:
        assert sorted(f["col_attrs"]) == ["CellID", "other"]
        assert sorted(f["row_attrs"]) == ["Gene"]


def test_column_named_like_index_attribute_with_other_values(tmp_path):
    adata = base()
    adata.obs["CellID"] = [f"other{i}" for i in range(N_OBS)]
    back = roundtrip(adata, tmp_path / "a.loom")
    assert_same_as_h5ad(adata, back)
    with h5py.File(tmp_path / "a.loom", "r") as f:
        assert list(f["col_attrs/CellID"].asstr()[()]) == list(adata.obs_names)


# -- matrices ------------------------------------------------------------------------------------------------
MATRIX_DTYPES = [
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
    "bool",
]


@pytest.mark.parametrize("dtype", MATRIX_DTYPES)
@pytest.mark.parametrize("container", ["dense", "csr_matrix", "csc_matrix", "csr_array", "csc_array"])
def test_x_roundtrip(tmp_path, dtype, container):
    if dtype == "float16" and container != "dense":
        pytest.skip("scipy.sparse has no float16")
    dense = (RNG.random((N_OBS, N_VAR)) < 0.3) * RNG.integers(1, 100, (N_OBS, N_VAR))
    dense = dense.astype(dtype)
    X = dense if container == "dense" else getattr(sparse, container)(dense)
    adata = base(X=X)
    back = roundtrip(adata, tmp_path / "a.loom")
    assert_same_as_h5ad(adata, back)
    assert type(back.X) is type(X)
    assert back.X.dtype == np.dtype(dtype)


def test_x_none(tmp_path):
    adata = base()
    adata.X = None
    adata.layers["counts"] = sparse.random(N_OBS, N_VAR, density=0.3, format="csr", dtype=np.float32, random_state=0)
    back = roundtrip(adata, tmp_path / "a.loom")
    assert back.X is None
    assert_same_as_h5ad(adata, back)


def test_matrix_is_genes_by_cells(tmp_path):
    adata = base()
    write_loom_full(tmp_path / "a.loom", adata)
    with h5py.File(tmp_path / "a.loom", "r") as f:
        np.testing.assert_array_equal(f["matrix"][()], adata.X.T)


def test_layers_keep_format_and_dtype(tmp_path):
    adata = base()
    adata.layers["spliced"] = sparse.random(N_OBS, N_VAR, density=0.4, format="csr", dtype=np.float32, random_state=1)
    adata.layers["unspliced"] = sparse.csc_matrix(RNG.integers(0, 4, (N_OBS, N_VAR)).astype(np.int32))
    adata.layers["dense"] = RNG.random((N_OBS, N_VAR))
    back = roundtrip(adata, tmp_path / "a.loom")
    assert_same_as_h5ad(adata, back)
    assert layer_keys(back) == ["spliced", "unspliced", "dense"]
    assert back.X.dtype == np.float32  # a `spliced` layer never silently becomes X


# -- obsm / varm / obsp / varp ---------------------------------------------------------------------------------
def test_multidimensional_elements(tmp_path):
    adata = base()
    adata.obsm["X_umap"] = RNG.random((N_OBS, 2)).astype(np.float32)
    adata.obsm["X_pca"] = RNG.random((N_OBS, 5))
    adata.obsm["bool"] = RNG.random((N_OBS, 3)) > 0.5
    adata.obsm["cube"] = RNG.integers(0, 9, (N_OBS, 2, 3)).astype(np.int16)
    adata.obsm["sparse"] = sparse.random(N_OBS, 4, density=0.5, format="csr", random_state=2)
    adata.obsm["frame"] = pd.DataFrame({"a": np.arange(N_OBS), "b": list("xy" * 6)}, index=adata.obs_names)
    adata.varm["PCs"] = RNG.random((N_VAR, 5)).astype(np.float32)
    adata.varm["frame"] = pd.DataFrame({"c": pd.Categorical(list("abcabca"))}, index=adata.var_names)
    adata.obsp["distances"] = sparse.random(N_OBS, N_OBS, density=0.2, format="csr", random_state=3)
    adata.obsp["dense"] = RNG.random((N_OBS, N_OBS)).astype(np.float32)
    adata.obsp["int_counts"] = sparse.csr_matrix(RNG.integers(0, 3, (N_OBS, N_OBS)).astype(np.int64))
    adata.obsp["huge_ints"] = sparse.csr_matrix(np.full((N_OBS, N_OBS), 2**60 + 1, dtype=np.int64))
    adata.varp["corr"] = sparse.random(N_VAR, N_VAR, density=0.5, format="csc", random_state=4)
    back = roundtrip(adata, tmp_path / "a.loom")
    assert_same_as_h5ad(adata, back)
    with h5py.File(tmp_path / "a.loom", "r") as f:
        assert f["col_attrs/X_umap_1"].shape == (N_OBS,)
        assert set(f["col_graphs"]) >= {"distances", "dense", "int_counts"}
        assert f["col_graphs/distances/w"].dtype.kind == "f"


def test_obsm_key_clashing_with_obs_column(tmp_path):
    adata = base()
    adata.obs["X_umap"] = np.arange(N_OBS)
    adata.obsm["X_umap"] = RNG.random((N_OBS, 2))
    assert_same_as_h5ad(adata, roundtrip(adata, tmp_path / "a.loom"))


# -- uns and raw -----------------------------------------------------------------------------------------------
def test_uns_roundtrip(tmp_path):
    adata = base()
    adata.uns = {
        "title": "my dataset",
        "count": 3,
        "ratio": 0.5,
        "np_scalar": np.int32(7),
        "flag": True,
        "array": np.arange(5),
        "strings": np.array(["a", "b"]),
        "nested": {"a": {"b": np.float32(1.5), "c": "text"}, "empty": {}},
        "frame": pd.DataFrame({"x": [1, 2]}, index=["r1", "r2"]),
        "records": np.rec.fromarrays([np.arange(3), np.array(["a", "b", "c"])], names="n,s"),
        "LOOM_SPEC_VERSION": "2.0.1",  # clashes with a global attribute the writer manages
    }
    back = roundtrip(adata, tmp_path / "a.loom")
    assert_same_as_h5ad(adata, back)
    assert back.uns["LOOM_SPEC_VERSION"] == "2.0.1"
    assert back.uns["flag"] is True or back.uns["flag"] == np.True_
    with h5py.File(tmp_path / "a.loom", "r") as f:
        assert f["attrs/title"].asstr()[()] == "my dataset"  # where SCope and loompy look for it
        assert f["attrs/LOOM_SPEC_VERSION"].asstr()[()] == "3.0.0"


def test_uns_list_comes_back_as_h5ad_gives_it(tmp_path):
    adata = base()
    adata.uns["colors"] = ["#ff0000", "#00ff00"]
    adata.write_h5ad(tmp_path / "a.h5ad")
    from anndata import read_h5ad

    via_h5ad = read_h5ad(tmp_path / "a.h5ad").uns["colors"]
    back = roundtrip(adata, tmp_path / "a.loom").uns["colors"]
    assert type(back) is type(via_h5ad)
    np.testing.assert_array_equal(back, via_h5ad)


def test_raw_roundtrip(tmp_path):
    adata = base()
    adata.var["means"] = np.arange(N_VAR, dtype=np.float32)
    adata.raw = adata
    adata = adata[:, :4].copy()
    back = roundtrip(adata, tmp_path / "a.loom")
    assert_same_as_h5ad(adata, back)
    assert back.raw.shape == (N_OBS, N_VAR)


# -- anndata's own generator and scanpy's dataset --------------------------------------------------------------
@pytest.mark.parametrize("x_type", [np.asarray, sparse.csr_matrix, sparse.csc_matrix])
@pytest.mark.parametrize("x_dtype", [np.float32, np.int64, np.uint8])
def test_gen_adata(tmp_path, x_type, x_dtype):
    adata = gen_adata(
        (25, 18),
        X_type=x_type,
        obsm_types=(np.ndarray, pd.DataFrame, sparse.csr_matrix, sparse.csr_array),
        varm_types=(np.ndarray, pd.DataFrame, sparse.csr_matrix),
        layers_types=(np.ndarray, sparse.csr_matrix, sparse.csc_matrix),
    )
    adata.X = adata.X.astype(x_dtype)  # gen_adata's X_dtype= is gone in anndata 0.13
    back = roundtrip(adata, tmp_path / "a.loom")
    assert_same_as_h5ad(adata, back)


def test_gen_adata_with_raw(tmp_path):
    adata = gen_adata((20, 10), obsm_types=(np.ndarray,), varm_types=(np.ndarray,), layers_types=(np.ndarray,))
    adata.raw = adata.copy()
    assert_same_as_h5ad(adata, roundtrip(adata, tmp_path / "a.loom"))


def test_pbmc68k_reduced(tmp_path):
    adata = sc.datasets.pbmc68k_reduced()
    adata.varm["PCs"] = np.nan_to_num(adata.varm["PCs"], nan=-1.0)  # NaN != NaN would fail any exact check
    assert_same_as_h5ad(adata, roundtrip(adata, tmp_path / "a.loom"))


def test_writer_does_not_modify_the_input(tmp_path):
    adata = base()
    adata.obs["s"] = np.array(["x", "y", "z"] * 4, dtype=object)
    before = adata.copy()
    write_loom_full(tmp_path / "a.loom", adata)
    assert_adata_equal(before, adata, exact=True)
    assert adata.obs["s"].dtype == before.obs["s"].dtype != "category"  # write_h5ad makes it a categorical


# -- API -------------------------------------------------------------------------------------------------------
def test_scanpy_attributes_and_accessor(tmp_path):
    assert sc.read_loom_full is read_loom_full
    assert sc.write_loom_full is write_loom_full
    assert sc.read_loom is not read_loom_full  # nothing scanpy had is replaced
    adata = base()
    adata.loom.write(tmp_path / "a.loom")
    assert_same_as_h5ad(adata, sc.read_loom_full(tmp_path / "a.loom"))


def test_swapped_arguments_raise_type_error(tmp_path):
    adata = base()
    with pytest.raises(TypeError, match="first argument is an AnnData"):
        write_loom_full(adata, tmp_path / "a.loom")
    with pytest.raises(TypeError, match="expected an AnnData"):
        write_loom_full(tmp_path / "a.loom", "not an anndata")
    assert list(tmp_path.iterdir()) == []


def test_unstorable_column_raises_naming_key(tmp_path):
    adata = base()
    adata.obs["mixed"] = np.array([1, "a", 2.0] * 4, dtype=object)
    with pytest.raises(LossyWriteError, match=r"obs\['mixed'\]"):
        write_loom_full(tmp_path / "a.loom", adata)
    assert list(tmp_path.iterdir()) == []


def test_lossy_warn_leaves_out_only_the_named_key(tmp_path):
    adata = base()
    adata.uns["func"] = print  # nothing can store a function
    adata.uns["kept"] = "yes"
    with pytest.raises(LossyWriteError, match=r"uns\['func'\]"):
        write_loom_full(tmp_path / "a.loom", adata)
    with pytest.warns(scanpy_loomio.LossyWriteWarning, match=r"uns\['func'\]"):
        write_loom_full(tmp_path / "a.loom", adata, lossy="warn")
    back = read_loom_full(tmp_path / "a.loom")
    assert "func" not in back.uns
    assert back.uns["kept"] == "yes"


def test_provenance_recorded(tmp_path):
    import json
    from importlib.metadata import version

    write_loom_full(tmp_path / "a.loom", base())
    with h5py.File(tmp_path / "a.loom", "r") as f:
        record = json.loads(f["attrs/scanpy_loomio"].asstr()[()])
    assert record["writer"]["scanpy-loomio"] == version("scanpy-loomio")
    assert record["writer"]["anndata"] == version("anndata")
    assert record["writer"]["h5py"] == h5py.__version__
    assert record["obs"]["index_attr"] == "CellID"
    assert record["var"]["index_attr"] == "Gene"


def test_failed_write_keeps_existing_file(tmp_path):
    target = tmp_path / "a.loom"
    target.write_bytes(b"previous content")

    class Boom(np.ndarray):
        """An obsm entry whose conversion fails half-way through the write."""

    adata = base()
    adata.uns["late"] = "x"
    adata.obsm["X_pca"] = RNG.random((N_OBS, 3))

    from scanpy_loomio._write import writer as _write

    original = _write.write_globals

    def failing(*args, **kwargs):
        raise RuntimeError("disk went away")

    _write.write_globals = failing
    try:
        with pytest.raises(RuntimeError, match="disk went away"):
            write_loom_full(target, adata)
    finally:
        _write.write_globals = original
    assert target.read_bytes() == b"previous content"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.loom"]


def test_session_info_on_request(tmp_path):
    write_loom_full(tmp_path / "a.loom", base(), session_info=True)
    with h5py.File(tmp_path / "a.loom", "r") as f:
        report = f["scanpy_loomio/session_info"].asstr()[()]
    assert "anndata" in report
    assert "h5py" in report


@pytest.mark.parametrize("convention", ["loompy", "loomr"])
def test_uns_named_like_managed_globals(tmp_path, convention):
    """Values another tool's file had as global attributes (read into uns) survive writing in any layout."""
    adata = base()
    adata.uns = {"LOOM_SPEC_VERSION": "2.0.1", "CreationDate": "20180101T000000.000000Z", "last_modified": np.int64(5)}
    back = roundtrip(adata, tmp_path / "a.loom", convention=convention)
    assert_same_as_h5ad(adata, back)
    assert type(back.uns["last_modified"]) is np.int64


@pytest.mark.parametrize("where", ["obs_names", "column", "category"])
def test_text_with_nul_is_refused_naming_the_key(tmp_path, where):
    adata = base()
    bad = ["ok"] * (N_OBS - 1) + ["a\x00b"]
    if where == "obs_names":
        adata.obs_names = bad
        key = "obs_names"
    elif where == "column":
        adata.obs["txt"] = np.array(bad, dtype=object)
        key = r"obs\['txt'\]"
    else:
        adata.obs["cat"] = pd.Categorical(bad)
        key = r"obs\['cat'\]"
    with pytest.raises(LossyWriteError, match=key):
        write_loom_full(tmp_path / "a.loom", adata)
    assert list(tmp_path.iterdir()) == []


# -- refused before anything is written, naming the key ----------------------------------------------------------
@pytest.mark.parametrize("name", [5, ("a", "b"), True])
@pytest.mark.parametrize("axis", ["obs", "var"])
def test_non_text_index_name_is_refused_naming_the_axis(tmp_path, axis, name):
    adata = base()
    getattr(adata, axis).index.name = name
    with pytest.raises(LossyWriteError, match=rf"^{axis}\.index\.name: .* is a {type(name).__name__}"):
        write_loom_full(tmp_path / "a.loom", adata)
    assert not (tmp_path / "a.loom").exists()


def test_non_text_index_name_is_refused_by_update_too(tmp_path):
    write_loom_full(tmp_path / "a.loom", base())
    adata = read_loom_full(tmp_path / "a.loom")
    adata.obs.index.name = 5
    with pytest.raises(LossyWriteError, match=r"^obs\.index\.name: 5 is a int"):
        scanpy_loomio.update_loom_full(tmp_path / "a.loom", adata)
    assert read_loom_full(tmp_path / "a.loom").obs.index.name is None


LONE_SURROGATE = "a\udc80b"


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (lambda a: a.uns.__setitem__("title", "with\x00nul"), r"uns\['title'\]"),
        (lambda a: a.uns.__setitem__("title", LONE_SURROGATE), r"uns\['title'\]"),
        (lambda a: a.uns.__setitem__("info", {"x": [LONE_SURROGATE]}), r"uns\['info'\]\['x'\]\[0\]"),
        (lambda a: a.obs.__setitem__("c", [LONE_SURROGATE] * N_OBS), r"obs\['c'\]"),
        (lambda a: a.obs.__setitem__("c", pd.Categorical([LONE_SURROGATE] * N_OBS)), r"obs\['c'\] \(categories\)"),
        (lambda a: setattr(a, "var_names", [f"{LONE_SURROGATE}{i}" for i in range(N_VAR)]), r"var_names"),
        (lambda a: a.obsm.__setitem__(LONE_SURROGATE, np.ones((N_OBS, 2))), r"obsm\["),
    ],
    ids=["nul-in-uns", "surrogate-in-uns", "surrogate-nested", "column", "category", "names", "key"],
)
def test_text_hdf5_cannot_hold_is_refused_naming_the_key(tmp_path, change, key):
    adata = base()
    try:
        change(adata)
    except UnicodeEncodeError:  # pandas' str type stored by pyarrow refuses lone surrogates itself
        pytest.skip("pandas cannot hold this text here (pyarrow stores its str columns)")
    with pytest.raises(LossyWriteError, match=rf"^{key}.*(NUL character|lone surrogate)"):
        write_loom_full(tmp_path / "a.loom", adata)
    assert list(tmp_path.iterdir()) == []


BYTES_COLUMNS = {
    "bytes": lambda n: np.array([f"v{i % 3}".encode() for i in range(n)], dtype=object),
    "fixed-length": lambda n: np.array([f"v{i}".encode() for i in range(n)]),
    "mixed": lambda n: np.array([f"v{i}".encode() if i % 2 else f"v{i}" for i in range(n)], dtype=object),
    "non-ascii": lambda n: np.array([f"é{i}".encode() for i in range(n)], dtype=object),
    "categories": lambda n: pd.Categorical([f"v{i % 2}".encode() for i in range(n)]),
}


@pytest.mark.parametrize("kind", BYTES_COLUMNS)
@pytest.mark.parametrize("axis", ["obs", "var"])
def test_text_given_as_bytes_comes_back_as_h5ad_gives_it(tmp_path, axis, kind):
    # write_h5ad stores bytes objects as text (read back as str) and a numpy bytes column as bytes
    adata = base()
    frame = getattr(adata, axis)
    frame["b"] = BYTES_COLUMNS[kind](len(frame))
    back = roundtrip(adata, tmp_path / "a.loom")
    assert_same_as_h5ad(adata, back)
    given_as = bytes if frame["b"].dtype.kind == "S" else str
    assert all(isinstance(v, given_as) for v in getattr(back, axis)["b"])
    with h5py.File(tmp_path / "a.loom", "r") as f:  # loom tools read text
        stored = f["col_attrs" if axis == "obs" else "row_attrs"]["b"]
        assert h5py.check_string_dtype(stored.dtype).encoding == "utf-8"


@pytest.mark.parametrize("where", ["column", "category"])
def test_bytes_that_are_not_utf8_are_refused_naming_the_key(tmp_path, where):
    adata = base()
    values = [b"ok"] * (N_OBS - 1) + [b"\xff"]
    adata.obs["b"] = np.array(values, dtype=object) if where == "column" else pd.Categorical(values)
    with pytest.raises(LossyWriteError, match=r"^obs\['b'\].*b'\\xff' is bytes that are not UTF-8"):
        write_loom_full(tmp_path / "a.loom", adata)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("where", ["obsm", "uns"])
def test_elements_anndata_writes_but_cannot_read_are_refused(tmp_path, where):
    # anndata writes bytes that are not UTF-8 into a text dataset and then fails to read it
    adata = base()
    frame = pd.DataFrame({"b": np.array([b"\xff"] * N_OBS, dtype=object)}, index=adata.obs_names)
    getattr(adata, where)["frame"] = frame
    with pytest.raises(LossyWriteError, match=rf"^{where}\['frame'\]: a DataFrame"):
        write_loom_full(tmp_path / "a.loom", adata)
    assert list(tmp_path.iterdir()) == []
    write_loom_full(tmp_path / "a.loom", adata, lossy="warn")
    assert "frame" not in getattr(read_loom_full(tmp_path / "a.loom"), where)


def test_names_chosen_over_the_record_are_not_kept_as_a_column(tmp_path):
    adata = base()
    adata.obs["barcode"] = [f"AAC{i}" for i in range(N_OBS)]
    write_loom_full(tmp_path / "a.loom", adata)
    back = read_loom_full(tmp_path / "a.loom", obs_names="barcode")
    assert list(back.obs_names) == list(adata.obs["barcode"])
    assert "barcode" not in back.obs.columns
    assert list(back.obs["CellID"]) == list(adata.obs_names)  # the recorded names stay, as a column


def test_text_columns_come_back_as_h5ad_gives_them(tmp_path):
    adata = base()
    adata.obs["batch"] = np.array(["b1", "b2", "b1"] * 4, dtype=object)  # repeats: write_h5ad makes a categorical
    adata.obs["barcode"] = np.array([f"AAC{i}" for i in range(N_OBS)], dtype=object)  # unique: stays text
    back = roundtrip(adata, tmp_path / "a.loom")
    assert_same_as_h5ad(adata, back)
    assert back.obs["batch"].dtype == "category"
    assert list(back.obs["batch"].cat.categories) == ["b1", "b2"]
    assert back.obs["barcode"].dtype != "category"
    kept = roundtrip(adata, tmp_path / "b.loom", convert_strings_to_categoricals=False)
    assert kept.obs["batch"].dtype != "category"
    assert list(kept.obs["batch"]) == list(adata.obs["batch"])


@pytest.mark.parametrize("fmt", ["csr", "csc", "csr_unsorted", "dense"])
def test_graphs_written_in_blocks_keep_every_edge_in_order(tmp_path, monkeypatch, fmt):
    """Edge lists written a few edges at a time hold what the whole matrix's COO form holds, in its order."""
    monkeypatch.setattr("scanpy_loomio._elements.graphs.GRAPH_BLOCK_EDGES", 5)
    from scanpy_loomio._elements.graphs import write_graph

    graph = sparse.random(60, 60, density=0.1, format="csr", dtype=np.float32, random_state=4)
    graph.data[::7] = 0  # explicit zeros are edges too
    if fmt == "csc":
        graph = graph.tocsc()
    elif fmt == "csr_unsorted":
        graph.indices = graph.indices.copy()
        for row in range(graph.shape[0]):  # reverse each row's indices (and values)
            lo, hi = graph.indptr[row], graph.indptr[row + 1]
            graph.indices[lo:hi], graph.data[lo:hi] = graph.indices[lo:hi][::-1], graph.data[lo:hi][::-1].copy()
        graph.has_sorted_indices = False
    value = graph.toarray() if fmt == "dense" else graph
    expected = sparse.coo_matrix(value)
    with h5py.File(tmp_path / "g.h5", "w") as f:
        write_graph(f, "knn", value, index_base=(0, 1))
        a, b, w = (f[f"knn/{key}"][()] for key in "abw")
    assert len(a) == expected.nnz > 100
    assert np.array_equal(a, expected.row) and np.array_equal(b, expected.col + 1)
    assert np.array_equal(w, expected.data) and w.dtype == np.float32


@pytest.mark.parametrize("convention", sorted(scanpy_loomio.conventions.CONVENTIONS))
@pytest.mark.parametrize("empty_axis", ["obs", "var"])
@pytest.mark.parametrize("text", ["inferred", "object"])
def test_no_cells_or_no_genes_with_text_round_trip_exactly(tmp_path, convention, empty_axis, text):
    """pandas infers the type of text from its values; with none, names and text columns keep the type .h5ad gives.

    ``inferred``: text as pandas makes it (``str`` with pandas 3); ``object``: text in ``object`` columns and names.
    """
    as_text = (lambda values: pd.Index(values, dtype=object)) if text == "object" else list
    adata = AnnData(X=np.ones((4, 3), np.float32))
    adata.obs_names, adata.var_names = as_text(list("abcd")), as_text(list("xyz"))
    adata.obs["label"] = pd.Series(list("pqrs"), index=adata.obs_names, dtype=object if text == "object" else None)
    adata.var["symbol"] = list("uvw")
    empty = adata[:0].copy() if empty_axis == "obs" else adata[:, :0].copy()
    path = tmp_path / "empty.loom"
    write_loom_full(path, empty, convention=convention, fill_missing_layers=True)  # velocyto's layers, all zeros
    assert_same_as_h5ad(empty, read_loom_full(path))


def test_an_anndata_of_no_cells_and_no_genes_round_trips_exactly(tmp_path):
    adata = AnnData(shape=(0, 0))
    write_loom_full(tmp_path / "none.loom", adata)
    assert_same_as_h5ad(adata, read_loom_full(tmp_path / "none.loom"))
