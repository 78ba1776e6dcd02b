"""Writing for a tool: ``write_loom_full(..., convention=NAME)`` lays the file out as that tool reads it, and every
file still reads back exactly with ``read_loom_full``.

What each tool needs comes from ``shared/reference/clients.md``; the checks on disk below are driven by the
convention's fields (names, embedding form, 2-D support, layers, layout), so a new convention is tested by adding it
to the table.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
import scanpy as sc
from anndata import AnnData
from anndata.tests.helpers import gen_adata
from helpers import assert_same_as_h5ad, layer_keys
from scipy import sparse

from scanpy_loomio import LossyWriteError, LossyWriteWarning, read_loom_full, write_loom_full
from scanpy_loomio.conventions import CONVENTIONS, DEFAULT_CONVENTION, EMBEDDING_FORMS, Convention, get_convention

N_OBS, N_VAR = 15, 9
SPEC2_GROUPS = {"matrix", "layers", "row_attrs", "col_attrs", "row_graphs", "col_graphs"}


def _names(adata: AnnData) -> AnnData:
    adata.obs_names = [f"cell{i}" for i in range(adata.n_obs)]
    adata.var_names = [f"gene{i}" for i in range(adata.n_vars)]
    return adata


def minimal() -> AnnData:
    return _names(AnnData(X=np.arange(N_OBS * N_VAR, dtype=np.float32).reshape(N_OBS, N_VAR)))


def annotated() -> AnnData:
    rng = np.random.default_rng(1)
    adata = _names(AnnData(X=sparse.random(N_OBS, N_VAR, density=0.4, format="csr", random_state=1, dtype=np.float32)))
    adata.obs["cluster"] = pd.Categorical(rng.choice(["T", "B", "NK"], N_OBS), categories=["NK", "T", "B", "unused"])
    adata.obs.loc[adata.obs_names[2], "cluster"] = np.nan
    adata.obs["n_genes"] = pd.array(rng.integers(0, 50, N_OBS), dtype="Int32")
    adata.obs.loc[adata.obs_names[4], "n_genes"] = pd.NA
    adata.obs["is_doublet"] = rng.random(N_OBS) > 0.8
    adata.obs["sample"] = [f"s{i % 2} é" for i in range(N_OBS)]
    adata.obs.index.name = "barcode_index"
    adata.var["gene_ids"] = [f"ENSG{i:05d}" for i in range(N_VAR)]
    adata.var["highly_variable"] = rng.random(N_VAR) > 0.5
    adata.obsm["X_umap"] = rng.normal(size=(N_OBS, 2))
    adata.obsm["X_pca"] = rng.normal(size=(N_OBS, 5)).astype(np.float32)
    adata.varm["PCs"] = rng.normal(size=(N_VAR, 5))
    adata.obsp["connectivities"] = sparse.random(N_OBS, N_OBS, density=0.2, format="csr", random_state=2)
    adata.uns["title"] = "pbmc é"
    adata.uns["n_pcs"] = 5
    adata.uns["neighbors"] = {"params": {"n_neighbors": 4, "method": "umap"}}
    return adata


def velocity() -> AnnData:
    adata = _names(AnnData(X=sparse.random(N_OBS, N_VAR, density=0.5, format="csr", random_state=3, dtype=np.float32)))
    for i, name in enumerate(("spliced", "unspliced", "ambiguous")):
        counts = sparse.random(N_OBS, N_VAR, density=0.5, format="csr", random_state=10 + i) * 20
        adata.layers[name] = counts.astype(np.int64)
    return adata


def awkward_embeddings() -> AnnData:
    """Embeddings that stress the forms: 3-D, bool, one component, underscores, names of other tools' attributes."""
    rng = np.random.default_rng(4)
    adata = minimal()
    adata.obsm["X_pca_harmony"] = rng.normal(size=(N_OBS, 4))
    adata.obsm["X_3d"] = rng.normal(size=(N_OBS, 3, 2)).astype(np.float32)
    adata.obsm["gated"] = rng.random((N_OBS, 3)) > 0.5
    adata.obsm["X_one"] = rng.normal(size=(N_OBS, 1))
    adata.obsm["X_none"] = np.zeros((N_OBS, 0))
    adata.varm["loadings_3d"] = rng.normal(size=(N_VAR, 2, 2))
    # columns named like the index attributes of other conventions must not clash with them
    adata.obs["CellID"] = [f"other{i}" for i in range(N_OBS)]
    adata.obs["colnames"] = np.arange(N_OBS)
    adata.var["Gene"] = [f"symbol{i % 3}" for i in range(N_VAR)]
    adata.var["rownames"] = np.arange(N_VAR, dtype=np.int16)
    return adata


def needs_sidecar() -> AnnData:
    """Elements that only this package's extra group can hold."""
    adata = annotated()
    adata.obsm["scores"] = pd.DataFrame({"a": np.arange(N_OBS), "b": list("xy" * 7 + "x")}, index=adata.obs_names)
    adata.raw = adata.copy()
    return adata


def generated() -> AnnData:
    """anndata's own test generator: every element kind, with DataFrames and sparse matrices in obsm/varm."""
    return gen_adata(
        (25, 18),
        obsm_types=(np.ndarray, pd.DataFrame, sparse.csr_matrix),
        varm_types=(np.ndarray, pd.DataFrame, sparse.csr_matrix),
        layers_types=(np.ndarray, sparse.csr_matrix, sparse.csc_matrix),
    )


def pbmc68k_reduced() -> AnnData:
    adata = sc.datasets.pbmc68k_reduced()
    adata.varm["PCs"] = np.nan_to_num(adata.varm["PCs"], nan=-1.0)  # NaN != NaN would fail any exact check
    return adata


OBJECTS: dict[str, Callable[[], AnnData]] = {
    "minimal": minimal,
    "annotated": annotated,
    "velocity": velocity,
    "awkward_embeddings": awkward_embeddings,
    "needs_sidecar": needs_sidecar,
    "generated": generated,
    "pbmc68k_reduced": pbmc68k_reduced,
}
#: Objects holding elements (raw, DataFrames in obsm, arrays in uns) that only this package's extra group can keep.
NEED_SIDECAR = {"needs_sidecar", "generated", "pbmc68k_reduced"}


def _write(path: Path, adata: AnnData, convention: str | Convention, **kwargs) -> None:
    write_loom_full(path, adata, convention=convention, fill_missing_layers=True, **kwargs)


# conventions without the extra group refuse what only it can hold: test_no_extra_group_refuses_what_it_cannot_keep
@pytest.mark.parametrize(
    ("name", "make"),
    [(n, m) for n, c in CONVENTIONS.items() for m in OBJECTS if c.sidecar or m not in NEED_SIDECAR],
)
def test_every_convention_reads_back_exactly(tmp_path, name, make):
    adata = OBJECTS[make]()
    path = tmp_path / f"{name}.loom"
    _write(path, adata, name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a file of ours reads without any interpretation
        back = read_loom_full(path)
    assert_same_as_h5ad(adata, back)


# -- what each tool finds on disk -------------------------------------------------------------------------------------
def _datasets(group: h5py.Group) -> dict[str, h5py.Dataset]:
    return {name: obj for name, obj in group.items() if isinstance(obj, h5py.Dataset)}


def _globals(file: h5py.File) -> dict[str, object]:
    out = {k: file.attrs[k] for k in file.attrs}
    if isinstance(file.get("attrs"), h5py.Group):
        out.update({k: v[()] for k, v in file["attrs"].items()})
    return {k: v.decode() if isinstance(v, bytes) else v for k, v in out.items()}


@pytest.mark.parametrize("name", list(CONVENTIONS))
def test_names_are_where_the_tool_reads_them(tmp_path, name):
    convention = CONVENTIONS[name]
    adata = annotated()
    _write(tmp_path / "a.loom", adata, name)
    with h5py.File(tmp_path / "a.loom", "r") as f:
        cells = f["col_attrs"][convention.cell_names_attr].asstr()[()]
        genes = f["row_attrs"][convention.gene_names_attr].asstr()[()]
        renamed = {attr for col, attr in convention.var_renames.items() if col in adata.var}
        assert renamed <= set(f["row_attrs"])
    assert list(cells) == list(adata.obs_names)
    assert list(genes) == list(adata.var_names)


def test_default_is_cellid_and_gene(tmp_path):
    assert DEFAULT_CONVENTION == "loompy"
    write_loom_full(tmp_path / "a.loom", annotated())
    with h5py.File(tmp_path / "a.loom", "r") as f:
        assert {"CellID"} <= set(f["col_attrs"]) and {"Gene", "Accession"} <= set(f["row_attrs"])
        # no 2-D column attributes, which crash SeuratDisk, LoomExperiment and SCopeLoomR
        assert "X_umap" not in f["col_attrs"] and f["col_attrs/X_umap_1"].shape == (N_OBS,)
        assert all(d.ndim == 1 for d in f["col_attrs"].values())


@pytest.mark.parametrize("name", [n for n, c in CONVENTIONS.items() if not c.multidim_attrs])
def test_no_unlisted_2d_attributes_for_readers_that_break_on_them(tmp_path, name):
    """SeuratDisk, SCopeLoomR and LoomExperiment fail on 2-D attributes, except those the tool lists as its own."""
    _write(tmp_path / "a.loom", awkward_embeddings(), name)
    with h5py.File(tmp_path / "a.loom", "r") as f:
        listed = {v for v in _globals(f).values() if isinstance(v, str) and v.startswith("/")}
        r_types = CONVENTIONS[name].r_types
        if r_types.factors == "flags":  # the tool's own factor flags, which its reader knows
            listed.add(f"/col_attrs/{r_types.factor_flags_attr}")
        for group in ("col_attrs", "row_attrs"):
            for attr, dset in _datasets(f[group]).items():
                assert dset.ndim == 1 or f"/{group}/{attr}" in listed, f"/{group}/{attr} has shape {dset.shape}"


@pytest.mark.parametrize("name", list(CONVENTIONS))
def test_embeddings_take_the_tool_form(tmp_path, name):
    convention = CONVENTIONS[name]
    form = convention.embedding_form
    _write(tmp_path / "a.loom", annotated(), name)
    with h5py.File(tmp_path / "a.loom", "r") as f:
        cols = _datasets(f["col_attrs"])
        expected = form.attr_names("X_pca", "obs", 5)
        assert set(expected) <= set(cols), f"{expected} not in {sorted(cols)}"
        if form.layout == "matrix":
            assert cols[expected[0]].shape == (N_OBS, 5)
        elif form.layout == "columns":
            assert all(cols[a].shape == (N_OBS,) for a in expected)
        else:
            umap = cols[form.attr_names("X_umap", "obs")[0]]
            assert umap.dtype.names == ("_X", "_Y") and umap.shape == (N_OBS,)
            assert cols[expected[0]].dtype.names == tuple(f"_{i}" for i in range(1, 6))


def test_reduced_dims_are_listed_and_named_without_underscores(tmp_path):
    """LoomExperiment finds reducedDims through ReducedDimsName<i> and cuts the name at each ``_``."""
    convention = next(c for c in CONVENTIONS.values() if EMBEDDING_FORMS[c.embedding_style].registry_global)
    adata = awkward_embeddings()
    _write(tmp_path / "a.loom", adata, convention)
    with h5py.File(tmp_path / "a.loom", "r") as f:
        listed = {k: v for k, v in _globals(f).items() if k.startswith("ReducedDimsName")}
        assert sorted(listed) == [f"ReducedDimsName{i}" for i in range(1, len(listed) + 1)]
        paths = set(listed.values())
        assert "/col_attrs/reducedDims_pca.harmony" in paths
        for path in paths:
            # "/col_attrs/reducedDims_<name>", with no "_" in the name
            assert path.startswith("/col_attrs/reducedDims_") and path.count("_") == 2
            assert f[path].ndim == 2
    back = read_loom_full(tmp_path / "a.loom")
    assert not any(k.startswith("ReducedDimsName") for k in back.uns)


# -- loomR: spec 2 and nothing else ---------------------------------------------------------------------------------
LOOMR = next(c for c in CONVENTIONS.values() if not c.sidecar)


def test_spec2_layout_has_exactly_the_five_groups(tmp_path):
    adata = annotated()
    _write(tmp_path / "a.loom", adata, LOOMR.name)
    with h5py.File(tmp_path / "a.loom", "r") as f:
        assert set(f) == SPEC2_GROUPS
        assert "attrs" not in f
        assert f.attrs["LOOM_SPEC_VERSION"] == LOOMR.spec_version
        assert {"title", "n_pcs", "neighbors"} <= set(f.attrs)  # uns as root attributes
        for group in ("col_attrs", "row_attrs"):
            assert all(isinstance(obj, h5py.Dataset) for obj in f[group].values())  # no subgroups
        # graph indices counted as the tool counts them
        edges = f["col_graphs/connectivities"]
        coo = adata.obsp["connectivities"].tocoo()
        assert edges["a"][()].min() == coo.row.min() + LOOMR.graph_index_base[0]
        assert edges["b"][()].min() == coo.col.min() + LOOMR.graph_index_base[1]


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (lambda a: setattr(a, "raw", a.copy()), "raw"),
        (
            lambda a: a.obsm.__setitem__("scores", pd.DataFrame({"x": np.arange(N_OBS)}, index=a.obs_names)),
            "obsm['scores']",
        ),
        (lambda a: a.uns.__setitem__("matrix", np.eye(3)), "uns['matrix']"),
    ],
    ids=["raw", "obsm_dataframe", "uns_array"],
)
def test_no_extra_group_refuses_what_it_cannot_keep(tmp_path, change, key):
    adata = annotated()
    change(adata)
    path = tmp_path / "a.loom"
    with pytest.raises(LossyWriteError, match=re.escape(key) + ".*lossy='warn'"):
        _write(path, adata, LOOMR.name)
    assert not path.exists()
    with pytest.warns(LossyWriteWarning, match=re.escape(key)):
        _write(path, adata, LOOMR.name, lossy="warn")
    with h5py.File(path, "r") as f:
        assert set(f) == SPEC2_GROUPS


def test_no_extra_group_keeps_categories_and_masks_on_the_dataset(tmp_path):
    adata = annotated()
    many = 40_000  # a missing-value mask of one byte per cell would not fit in HDF5 attributes
    big = _names(AnnData(X=sparse.csr_matrix((many, 2), dtype=np.float32)))
    big.obs["flag"] = pd.array([True, None] + [False] * (many - 2), dtype="boolean")
    big.obs["cat"] = pd.Categorical(["a"] * many, categories=["b", "a"])
    for obj in (adata, big):
        _write(tmp_path / "a.loom", obj, LOOMR.name)
        assert_same_as_h5ad(obj, read_loom_full(tmp_path / "a.loom"))


def test_no_extra_group_refuses_categories_too_many_for_attributes(tmp_path):
    adata = _names(AnnData(X=np.zeros((6000, 1), dtype=np.float32)))
    adata.obs["unique"] = pd.Categorical([f"c{i}" for i in range(6000)])
    with pytest.raises(LossyWriteError, match=r"obs\['unique'\].*categories"):
        _write(tmp_path / "a.loom", adata, LOOMR.name)
    with pytest.warns(LossyWriteWarning, match=r"obs\['unique'\]"):
        _write(tmp_path / "a.loom", adata, LOOMR.name, lossy="warn")
    back = read_loom_full(tmp_path / "a.loom")
    assert list(back.obs["unique"]) == list(adata.obs["unique"].astype(str))


# -- velocyto: the three layers ---------------------------------------------------------------------------------------
VELOCYTO = next(c for c in CONVENTIONS.values() if c.required_layers)


def test_missing_required_layer_is_a_clear_error(tmp_path):
    adata = velocity()
    del adata.layers["ambiguous"]
    path = tmp_path / "a.loom"
    with pytest.raises(ValueError, match=r"lacks \['ambiguous'\].*fill_missing_layers=True"):
        write_loom_full(path, adata, convention=VELOCYTO.name)
    assert not path.exists()


@pytest.mark.parametrize("keep", [[], ["spliced"], ["spliced", "unspliced"]])
def test_filled_layers_are_written_and_left_out_when_reading(tmp_path, keep):
    adata = velocity()
    for name in set(layer_keys(adata)) - set(keep):
        del adata.layers[name]
    path = tmp_path / "a.loom"
    write_loom_full(path, adata, convention=VELOCYTO.name, fill_missing_layers=True)
    with h5py.File(path, "r") as f:
        assert set(VELOCYTO.required_layers) <= set(f["layers"])
        for name in VELOCYTO.required_layers:
            assert f["layers"][name].shape == f["matrix"].shape
            if name not in keep:
                assert not f["layers"][name][()].any()
    back = read_loom_full(path)
    assert_same_as_h5ad(adata, back)
    assert set(layer_keys(back)) == set(keep)


# -- a user's own convention -----------------------------------------------------------------------------------------
def test_unregistered_convention_object_reads_back_exactly(tmp_path):
    mine = Convention(
        name="mylab",
        tool="My lab",
        source="-",
        cell_names=("cell",),
        gene_names=("feature",),
        var_renames={"gene_ids": "ensembl"},
        embedding_style="compound",
        multidim_attrs=False,
        graph_index_base=(1, 1),
        spec_version="2.0.1",
        global_layout="root",
    )
    adata = awkward_embeddings()
    adata.var["gene_ids"] = [f"E{i}" for i in range(N_VAR)]
    adata.obsp["distances"] = sparse.random(N_OBS, N_OBS, density=0.3, format="csr", random_state=7)
    _write(tmp_path / "a.loom", adata, mine)
    with h5py.File(tmp_path / "a.loom", "r") as f:
        assert {"cell"} <= set(f["col_attrs"]) and {"feature", "ensembl"} <= set(f["row_attrs"])
        assert f["col_graphs/distances/a"][()].min() >= 1
        assert "attrs" not in f
    assert_same_as_h5ad(adata, read_loom_full(tmp_path / "a.loom"))


def test_get_convention_is_what_write_uses(tmp_path):
    """Passing the object or its name writes the same layout."""
    adata = annotated()
    name = "seuratdisk"
    _write(tmp_path / "by_name.loom", adata, name)
    _write(tmp_path / "by_object.loom", adata, get_convention(name))
    with h5py.File(tmp_path / "by_name.loom", "r") as a, h5py.File(tmp_path / "by_object.loom", "r") as b:
        assert set(a["col_attrs"]) == set(b["col_attrs"])
        assert set(a["row_attrs"]) == set(b["row_attrs"])


# -- spec 2.0.1: fixed-length text -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [n for n, c in CONVENTIONS.items() if c.spec_version == "2.0.1"])
def test_spec2_text_is_fixed_length_and_reads_back_exactly(tmp_path, name):
    """Spec 2.0.1 (loompy's validator, LoomExperiment) has fixed-length strings, here UTF-8."""
    convention = CONVENTIONS[name]
    adata = annotated()  # non-ASCII text in obs["sample"] and uns
    adata.obs["empty"] = [""] * N_OBS
    _write(tmp_path / "a.loom", adata, name)
    with h5py.File(tmp_path / "a.loom", "r") as f:
        cols = f["col_attrs"]
        assert cols[convention.cell_names_attr].dtype.kind == "S"
        assert cols["sample"].dtype.kind == "S"
        assert cols["empty"].dtype.kind == "S"
    assert_same_as_h5ad(adata, read_loom_full(tmp_path / "a.loom"))


def test_a_convention_without_extra_group_says_so_for_uns(tmp_path: Path) -> None:
    adata = AnnData(np.ones((3, 2), dtype=np.float32))
    adata.uns["weights"] = np.arange(3)
    with pytest.raises(LossyWriteError, match=r"uns\['weights'\]: .* convention 'loomr' allows no extra group") as err:
        write_loom_full(tmp_path / "a.loom", adata, convention="loomr")
    assert "neither anndata's element encoding nor JSON" not in str(err.value)
