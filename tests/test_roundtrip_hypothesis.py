"""Property-based round trips: random AnnData objects come back exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData
from helpers import assert_same_as_h5ad
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import sparse

from scanpy_loomio import read_loom_full, write_loom_full
from scanpy_loomio._codecs.columns import decode_column, encode_column

# text HDF5 can hold: no NUL, no lone surrogates
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8)
NUMERIC_DTYPES = ["int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "float32", "float64"]


@st.composite
def columns(draw, n: int) -> pd.Series:
    kind = draw(st.sampled_from(["numeric", "bool", "category", "nullable_int", "boolean", "text", "text_missing"]))
    if kind == "numeric":
        dtype = draw(st.sampled_from(NUMERIC_DTYPES))
        return pd.Series(draw(hnp.arrays(dtype, n, elements={"allow_nan": False} if dtype[0] == "f" else None)))
    if kind == "bool":
        return pd.Series(draw(hnp.arrays(bool, n)))
    if kind == "category":
        cats = draw(st.lists(TEXT, min_size=1, max_size=5, unique=True))
        values = draw(st.lists(st.one_of(st.none(), st.sampled_from(cats)), min_size=n, max_size=n))
        return pd.Series(pd.Categorical(values, categories=cats, ordered=draw(st.booleans())))
    if kind == "nullable_int":
        dtype = draw(st.sampled_from(["Int8", "Int32", "Int64", "UInt8", "UInt32"]))
        bound = 100
        values = draw(st.lists(st.one_of(st.none(), st.integers(0, bound)), min_size=n, max_size=n))
        return pd.Series(pd.array(values, dtype=dtype))
    if kind == "boolean":
        values = draw(st.lists(st.one_of(st.none(), st.booleans()), min_size=n, max_size=n))
        return pd.Series(pd.array(values, dtype="boolean"))
    if kind == "text":
        return pd.Series(np.array(draw(st.lists(TEXT, min_size=n, max_size=n)), dtype=object))
    values = draw(st.lists(st.one_of(st.just(np.nan), TEXT), min_size=n, max_size=n))
    return pd.Series(np.array(values, dtype=object))


@given(data=st.data(), n=st.integers(1, 20))
@settings(max_examples=200, deadline=None)
def test_column_codec_roundtrip(data, n):
    """decode(encode(s)) == s for every column the codecs accept (no file involved)."""
    series = data.draw(columns(n))
    encoded = encode_column(series, "obs['x']")
    back = pd.Series(decode_column(encoded.values, encoded.codec, encoded.aux))
    pd.testing.assert_series_equal(series, back, check_exact=True)


@st.composite
def anndatas(draw) -> AnnData:
    n_obs, n_vars = draw(st.integers(0, 15)), draw(st.integers(0, 10))
    dtype = draw(st.sampled_from([*NUMERIC_DTYPES, "bool"]))
    dense = draw(hnp.arrays(dtype, (n_obs, n_vars), elements={"allow_nan": False} if dtype[0] == "f" else None))
    container = draw(st.sampled_from(["dense", "csr", "csc"]))
    X = dense if container == "dense" else sparse.csr_matrix(dense) if container == "csr" else sparse.csc_matrix(dense)
    obs_names = draw(st.lists(TEXT, min_size=n_obs, max_size=n_obs))
    var_names = draw(st.lists(TEXT, min_size=n_vars, max_size=n_vars, unique=True))
    obs = pd.DataFrame(index=pd.Index(obs_names, dtype=object, name=draw(st.one_of(st.none(), TEXT))))
    var = pd.DataFrame(index=pd.Index(var_names, dtype=object))
    for i in range(draw(st.integers(0, 4))):
        obs[f"c{i}"] = draw(columns(n_obs)).array
    for i in range(draw(st.integers(0, 2))):
        var[f"v{i}"] = draw(columns(n_vars)).array
    adata = AnnData(X=X, obs=obs, var=var)
    if draw(st.booleans()):
        adata.layers["counts"] = sparse.csr_matrix(dense.astype(np.int32) if dtype != "bool" else dense)
    if n_obs and draw(st.booleans()):
        adata.obsm["X_umap"] = draw(hnp.arrays(np.float32, (n_obs, 2), elements={"allow_nan": False}))
    if n_obs and draw(st.booleans()):
        adata.obsp["distances"] = sparse.random(
            n_obs, n_obs, density=0.3, format="csr", dtype=np.float32, random_state=0
        )
    if draw(st.booleans()):
        adata.uns["info"] = {"name": draw(TEXT), "value": draw(st.integers(-5, 5))}
    return adata


@given(adata=anndatas())
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
def test_anndata_roundtrip(tmp_path, adata):
    path = tmp_path / "a.loom"
    write_loom_full(path, adata)
    assert_same_as_h5ad(adata, read_loom_full(path))
