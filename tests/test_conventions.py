"""The convention table, detection, and anndata's ``read_loom`` keyword arguments.

Files "written by" each tool are made here with h5py, with the names and markers that tool's own source writes
(see ``shared/reference/conventions.md``); anndata's own ``read_loom`` is the oracle for its keyword arguments.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import warnings
from pathlib import Path
from typing import Any

import anndata as ad
import h5py
import numpy as np
import pytest
from helpers import layer_keys
from scipy import sparse

from scanpy_loomio import LoomReadWarning, read_loom_full
from scanpy_loomio._read.detect import detect_convention
from scanpy_loomio.conventions import (
    CONVENTIONS,
    DEFAULT_CONVENTION,
    EMBEDDING_FORMS,
    Convention,
    Markers,
    RTypes,
    conventions_table,
    get_convention,
    register_convention,
)

N_GENES, N_CELLS = 4, 6
CELLS = np.array([f"cell{i}" for i in range(N_CELLS)], dtype=object)
GENES = np.array([f"gene{i}" for i in range(N_GENES)], dtype=object)
TABLE_TOOLS = {
    "loompy",
    "velocyto",
    "scope",
    "seuratdisk",
    "loomr",
    "loomexperiment",
    "optimus",
    "kb_python",
    "alevin_fry",
    "anndata",
}


def write_foreign(
    path: Path,
    *,
    col: dict[str, Any] | None = None,
    row: dict[str, Any] | None = None,
    layers: dict[str, Any] | None = None,
    root: dict[str, Any] | None = None,
    attrs: dict[str, Any] | None = None,
    matrix: np.ndarray | None = None,
) -> Path:
    """A loom file as another tool writes it: plain h5py, no record of this package."""
    with h5py.File(path, "w") as f:
        f["matrix"] = (
            np.arange(N_GENES * N_CELLS, dtype=np.float32).reshape(N_GENES, N_CELLS) if matrix is None else matrix
        )
        for group, values in (("col_attrs", col), ("row_attrs", row), ("layers", layers)):
            g = f.create_group(group)
            for name, value in (values or {}).items():
                g[name] = value
        for name, value in (root or {}).items():
            f.attrs[name] = value
        if attrs is not None:
            g = f.create_group("attrs")
            for name, value in attrs.items():
                g[name] = value
        f.create_group("col_graphs")
        f.create_group("row_graphs")
    return path


@pytest.fixture
def restore_registry():
    """Tests that register conventions leave the registry as they found it."""
    saved = dict(CONVENTIONS)
    yield
    CONVENTIONS.clear()
    CONVENTIONS.update(saved)


# -- the table as data -------------------------------------------------------------------------------------------------


def test_table_holds_every_tool():
    assert TABLE_TOOLS <= set(CONVENTIONS)
    assert DEFAULT_CONVENTION == "loompy"
    for convention in CONVENTIONS.values():
        assert convention.cell_names and convention.gene_names
        assert convention.embedding_style in EMBEDDING_FORMS
        assert set(convention.required_layers) <= set(convention.layers) or not convention.layers


@pytest.mark.parametrize(
    ("name", "field", "expected"),
    [
        ("loompy", "cell_names_attr", "CellID"),
        ("loompy", "var_renames", {"gene_ids": "Accession"}),
        ("velocyto", "required_layers", ("spliced", "unspliced", "ambiguous")),
        ("velocyto", "x_layer", None),  # no spliced layer is ever X unless asked
        ("loompy", "multidim_attrs", False),  # the default output opens in SeuratDisk, LoomExperiment, SCopeLoomR
        ("scope", "embedding_style", "columns"),  # two-component ones go to SCope's Embeddings_X/Embeddings_Y
        ("scope", "default_embedding_attr", "Embedding"),
        ("scope", "clusterings_attr", "Clusterings"),
        ("scope", "cluster_id_attr", "ClusterID"),
        ("scope", "json_globals", ("MetaData",)),
        ("seuratdisk", "embedding_style", "columns"),
        ("seuratdisk", "multidim_attrs", False),
        ("seuratdisk", "r_types", RTypes(factors="enum", enum_first_code=1, bool_dtype="int32")),
        ("loomexperiment", "r_types", RTypes(factors="flags", logical_mark=("storage.mode", "logical"))),
        ("loomr", "cell_names_attr", "cell_names"),
        ("loomr", "graph_index_base", (0, 1)),
        ("loomr", "spec_version", "2.0.1"),
        ("loomr", "sidecar", False),
        ("loomr", "global_layout", "root"),
        ("loomexperiment", "cell_names_attr", "colnames"),
        ("loomexperiment", "gene_names", ("rownames", "GRanges/rownames")),
        ("loomexperiment", "embedding_style", "reduced_dims"),
        ("optimus", "var_renames", {"gene_ids": "ensembl_ids"}),
        ("kb_python", "gene_names_attr", "target_name"),
        ("alevin_fry", "cell_names_attr", "barcodes"),
        ("anndata", "cell_names_attr", "obs_names"),
    ],
)
def test_table_facts(name, field, expected):
    value = getattr(get_convention(name), field)
    assert (dict(value) if field.endswith("renames") else value) == expected


def test_conventions_are_hashable():
    assert len(set(CONVENTIONS.values())) == len(CONVENTIONS)
    assert get_convention("loompy") in {get_convention("loompy")}


def test_convention_is_frozen():
    convention = get_convention("loompy")
    with pytest.raises(dataclasses.FrozenInstanceError):
        convention.cell_names = ("x",)  # type: ignore[misc]
    own = Convention(name="x", tool="x", source="-", cell_names=("c",), gene_names=("g",), var_renames={"a": "b"})
    with pytest.raises(TypeError):
        own.var_renames["c"] = "d"  # type: ignore[index]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"embedding_style": "sideways"}, "embedding_style 'sideways'"),
        ({"graph_index_base": (2, 0)}, "graph_index_base"),
        ({"cell_names": ()}, "cell_names and gene_names"),
        ({"nested_groups": {"GRanges": "rows"}}, "nested_groups"),
    ],
)
def test_convention_rejects_bad_values(changes, message):
    fields = {"name": "bad", "tool": "t", "source": "-", "cell_names": ("c",), "gene_names": ("g",)} | changes
    with pytest.raises(ValueError, match=message):
        Convention(**fields)


def test_unknown_convention_lists_known():
    with pytest.raises(ValueError, match=r"unknown convention 'nope'; expected one of \[.*'loompy'"):
        get_convention("nope")
    with pytest.raises(ValueError, match="unknown convention"):
        read_loom_full("whatever.loom", convention="nope")


def test_register_refuses_duplicate_then_overwrites(restore_registry):
    mine = Convention(name="loompy", tool="mine", source="-", cell_names=("c",), gene_names=("g",))
    with pytest.raises(ValueError, match="overwrite=True"):
        register_convention(mine)
    register_convention(mine, overwrite=True)
    assert get_convention("loompy").tool == "mine"


def test_table_renders_every_convention():
    text = conventions_table()
    for name, convention in CONVENTIONS.items():
        assert f"`{name}`" in text
        assert f"## `{name}`: {convention.tool}" in text
    loomr_row = next(line for line in text.splitlines() if line.startswith("| `loomr`"))
    assert "0, 1" in loomr_row and "2.0.1" in loomr_row and "root attributes" in loomr_row
    for style in EMBEDDING_FORMS:
        assert f"| `{style}` |" in text


@pytest.mark.parametrize("style", ["matrix", "compound", "reduced_dims", "cell_embeddings"])
@pytest.mark.parametrize("axis", ["obs", "var"])
def test_embedding_form_names_read_back_to_the_key(style, axis):
    form = EMBEDDING_FORMS[style]
    key = "X_umap" if axis == "obs" else "PCs"
    (attr,) = form.attr_names(key, axis)
    assert form.key_for(attr, axis) == key


def test_columns_form_names_each_component():
    assert EMBEDDING_FORMS["columns"].attr_names("X_pca", "obs", 3) == ["X_pca_1", "X_pca_2", "X_pca_3"]


# -- detection ---------------------------------------------------------------------------------------------------------

S = np.bytes_  # fixed-length bytes, as R writers store text


def _files_by_tool() -> dict[str, tuple[dict[str, Any], str, str]]:
    """tool → (write_foreign arguments, cell-name attribute, gene-name attribute)."""
    emb = np.zeros(N_CELLS, dtype=[("_X", "f8"), ("_Y", "f8")])
    return {
        "loompy": (
            {"col": {"CellID": CELLS, "ClusterID": np.zeros(N_CELLS, int)}, "row": {"Gene": GENES, "Accession": GENES}},
            "CellID",
            "Gene",
        ),
        "velocyto": (
            {
                "col": {"CellID": CELLS},
                "row": {"Gene": GENES, "Chromosome": GENES},
                "layers": {n: np.ones((N_GENES, N_CELLS), np.uint32) for n in ("spliced", "unspliced", "ambiguous")},
            },
            "CellID",
            "Gene",
        ),
        "scope": (
            {"col": {"CellID": CELLS, "Embedding": emb}, "row": {"Gene": GENES}, "root": {"MetaData": "{}"}},
            "CellID",
            "Gene",
        ),
        "seuratdisk": (
            {
                "col": {"CellID": CELLS},
                "row": {"Gene": GENES},
                "attrs": {"SEURAT_ASSAY": "RNA", "LOOM_SPEC_VERSION": "3.0.0"},
            },
            "CellID",
            "Gene",
        ),
        "loomr": (
            {
                "col": {"CellID": CELLS, "pca_cell_embeddings": np.ones((N_CELLS, 2))},
                "row": {"Gene": GENES},
                "root": {"LOOM_SPEC_VERSION": "2.0.1", "version": "0.2.0", "chunks": "(4, 6)"},
            },
            "CellID",
            "Gene",
        ),
        "loomexperiment": (
            {
                "col": {"colnames": CELLS.astype(S)},
                "row": {"rownames": GENES.astype(S)},
                "root": {"CreatedWith": S("LoomExperiment-1.16.0"), "LOOM_SPEC_VERSION": S("2.0.1")},
            },
            "colnames",
            "rownames",
        ),
        "optimus": (
            {
                "col": {"cell_names": CELLS},
                "row": {"gene_names": GENES, "ensembl_ids": GENES},
                "attrs": {"pipeline_version": "Optimus_v4.2.2", "expression_data_type": "exonic"},
            },
            "cell_names",
            "gene_names",
        ),
        "kb_python": ({"col": {"barcode": CELLS}, "row": {"target_name": GENES}}, "barcode", "target_name"),
        "alevin_fry": ({"col": {"barcodes": CELLS}, "row": {"gene_ids": GENES}}, "barcodes", "gene_ids"),
        "anndata": ({"col": {"obs_names": CELLS}, "row": {"var_names": GENES}}, "obs_names", "var_names"),
    }


@pytest.mark.parametrize("tool", sorted(TABLE_TOOLS))
def test_detects_each_tool_and_reads_its_names(tool, tmp_path):
    kwargs, cell_attr, gene_attr = _files_by_tool()[tool]
    path = write_foreign(tmp_path / f"{tool}.loom", **kwargs)
    with h5py.File(path, "r") as f:
        assert detect_convention(f).name == tool
    adata = read_loom_full(path)
    assert list(adata.obs_names) == list(CELLS)
    assert list(adata.var_names) == list(GENES)
    assert cell_attr not in adata.obs.columns  # the names attribute is not also a column
    assert gene_attr not in adata.var.columns


def test_tie_is_logged_and_convention_overrides(tmp_path, caplog):
    # both loompy's and anndata's names, with different values: both fit
    path = write_foreign(
        tmp_path / "both.loom",
        col={"CellID": CELLS, "obs_names": np.array([f"o{i}" for i in range(N_CELLS)], dtype=object)},
        row={"Gene": GENES, "var_names": np.array([f"v{i}" for i in range(N_GENES)], dtype=object)},
    )
    with caplog.at_level(logging.INFO, logger="scanpy_loomio"):
        detected = read_loom_full(path)
    assert list(detected.obs_names) == list(CELLS)
    assert "fit equally well" in caplog.text and "'loompy'" in caplog.text and "convention=" in caplog.text
    forced = read_loom_full(path, convention="anndata")
    assert list(forced.obs_names) == [f"o{i}" for i in range(N_CELLS)]
    assert list(forced.var_names) == [f"v{i}" for i in range(N_GENES)]
    assert list(forced.obs["CellID"]) == list(CELLS)  # the other names stay a column


def test_nothing_fits_logs_the_default(tmp_path, caplog):
    path = write_foreign(tmp_path / "bare.loom", col={"c_id": np.arange(N_CELLS)}, row={"g_id": np.arange(N_GENES)})
    with caplog.at_level(logging.INFO, logger="scanpy_loomio"):
        adata = read_loom_full(path)
    assert "no convention's names or markers found" in caplog.text
    assert list(adata.obs_names) == [str(i) for i in range(N_CELLS)]  # numbers are never taken as names
    assert adata.obs["c_id"].dtype.kind == "i"


def test_user_convention_object_is_used_without_registering(tmp_path):
    path = write_foreign(
        tmp_path / "lab.loom", col={"cell": CELLS, "cellID_other": CELLS[::-1]}, row={"feature": GENES}
    )
    lab = Convention(name="lab", tool="My lab", source="-", cell_names=("cell",), gene_names=("feature",))
    adata = read_loom_full(path, convention=lab)
    assert list(adata.obs_names) == list(CELLS)
    assert list(adata.var_names) == list(GENES)
    assert "lab" not in CONVENTIONS


def test_registered_convention_is_detected_by_markers_and_by_hook(tmp_path, restore_registry):
    path = write_foreign(tmp_path / "lab.loom", col={"CellID": CELLS}, row={"Gene": GENES}, attrs={"lab_version": "1"})
    register_convention(
        Convention(
            name="lab",
            tool="My lab",
            source="-",
            cell_names=("CellID",),
            gene_names=("Gene",),
            markers=Markers(globals=("lab_version",)),
        )
    )
    with h5py.File(path, "r") as f:
        assert detect_convention(f).name == "lab"
    register_convention(
        Convention(
            name="hooked",
            tool="Hooked",
            source="-",
            cell_names=("CellID",),
            gene_names=("Gene",),
            detect=lambda summary: 100 if "lab_version" in summary.globals else 0,
        )
    )
    with h5py.File(path, "r") as f:
        assert detect_convention(f).name == "hooked"


def test_positional_names_are_passed_over_for_real_ones(tmp_path, caplog):
    # LoomExperiment writes R's default dimnames 1..n beside a tool's real names
    path = write_foreign(
        tmp_path / "le.loom",
        col={"colnames": np.arange(1, N_CELLS + 1).astype(str).astype(S), "CellID": CELLS.astype(S)},
        row={"rownames": np.arange(1, N_GENES + 1).astype(str).astype(S), "Gene": GENES.astype(S)},
        root={"CreatedWith": S("LoomExperiment-1.3.3")},
    )
    with caplog.at_level(logging.INFO, logger="scanpy_loomio"):
        adata = read_loom_full(path)
    assert list(adata.obs_names) == list(CELLS)
    assert list(adata.var_names) == list(GENES)
    assert "names could come from ['colnames', 'CellID']; using 'CellID'" in caplog.text
    assert read_loom_full(path, obs_names="colnames").obs_names[0] == "1"


# -- anndata's read_loom keyword arguments -------------------------------------------------------------------------------


@pytest.fixture
def velocity_file(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    layers = {
        n: rng.integers(0, 5, (N_GENES, N_CELLS)).astype(np.float32) for n in ("spliced", "unspliced", "ambiguous")
    }
    return write_foreign(
        tmp_path / "velocity.loom",
        matrix=sum(layers.values()),
        col={
            "CellID": CELLS,
            "batch": np.array(["b1"] * N_CELLS, dtype=object),
            "umap_1": rng.normal(size=N_CELLS),
            "umap_2": rng.normal(size=N_CELLS),
        },
        row={"Gene": GENES, "Accession": np.array([f"ENSG{i}" for i in range(N_GENES)], dtype=object)},
        layers=layers,
        attrs={"LOOM_SPEC_VERSION": "3.0.0"},
    )


def anndata_read_loom(path: Path, tmp_path: Path, **kwargs) -> ad.AnnData:
    """anndata's own reader, on a copy (loompy may write to what it opens)."""
    copy = tmp_path / f"anndata_{path.name}"
    shutil.copyfile(path, copy)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ad.io.read_loom(copy, **kwargs)


def _dense(x) -> np.ndarray:
    return x.toarray() if sparse.issparse(x) else np.asarray(x)


def test_spliced_is_not_x_unless_asked(velocity_file, tmp_path):
    with h5py.File(velocity_file, "r") as f:
        matrix, spliced = f["matrix"][()].T, f["layers/spliced"][()].T
    adata = read_loom_full(velocity_file)
    np.testing.assert_array_equal(_dense(adata.X), matrix)
    assert set(layer_keys(adata)) == {"spliced", "unspliced", "ambiguous"}
    # anndata's reader promotes it silently
    np.testing.assert_array_equal(_dense(anndata_read_loom(velocity_file, tmp_path).X), spliced)


def test_x_name_as_anndata(velocity_file, tmp_path):
    ours = read_loom_full(velocity_file, X_name="spliced")
    theirs = anndata_read_loom(velocity_file, tmp_path, X_name="spliced")
    np.testing.assert_array_equal(_dense(ours.X), _dense(theirs.X))
    assert set(layer_keys(ours)) == set(layer_keys(theirs)) == {"matrix", "spliced", "unspliced", "ambiguous"}
    np.testing.assert_array_equal(_dense(ours.layers["matrix"]), _dense(theirs.layers["matrix"]))


def test_x_name_missing_warns_and_reads_matrix(velocity_file):
    with pytest.warns(LoomReadWarning, match="asks for layer 'counts' as X, but /layers has"):
        adata = read_loom_full(velocity_file, X_name="counts")
    assert "matrix" not in adata.layers


def test_x_name_empty_is_matrix(velocity_file):
    with warnings.catch_warnings():
        warnings.simplefilter("error", LoomReadWarning)
        adata = read_loom_full(velocity_file, X_name="")
    assert "matrix" not in adata.layers


def test_convention_x_layer_only_when_passed(velocity_file, restore_registry):
    velocyto = get_convention("velocyto")
    markers = dataclasses.replace(velocyto.markers, globals=("LOOM_SPEC_VERSION",))  # so it wins detection
    spliced_x = dataclasses.replace(velocyto, name="velocyto_spliced", x_layer="spliced", markers=markers)
    register_convention(spliced_x)
    with h5py.File(velocity_file, "r") as f:
        spliced = f["layers/spliced"][()].T
        matrix = f["matrix"][()].T
        assert detect_convention(f).name == "velocyto_spliced"
    np.testing.assert_array_equal(_dense(read_loom_full(velocity_file, convention=spliced_x).X), spliced)
    np.testing.assert_array_equal(_dense(read_loom_full(velocity_file, convention="velocyto_spliced").X), spliced)
    # detected, not asked for: never promoted
    np.testing.assert_array_equal(_dense(read_loom_full(velocity_file).X), matrix)


def test_names_and_mappings_as_anndata(velocity_file, tmp_path):
    kwargs = {
        "obs_names": "CellID",
        "var_names": "Accession",
        "obsm_mapping": {"X_umap": ["umap_1", "umap_2"]},
        "varm_mapping": {"ids": ["Gene"]},
    }
    ours = read_loom_full(velocity_file, **kwargs)
    theirs = anndata_read_loom(velocity_file, tmp_path, **kwargs)
    assert list(ours.obs_names) == list(theirs.obs_names)
    assert list(ours.var_names) == list(theirs.var_names)
    np.testing.assert_array_equal(ours.obsm["X_umap"], theirs.obsm["X_umap"])
    np.testing.assert_array_equal(ours.varm["ids"].astype(str), theirs.varm["ids"].astype(str))
    for attr in ("umap_1", "umap_2", "CellID"):
        assert attr not in ours.obs.columns
    assert "Accession" not in ours.var.columns and "gene_ids" not in ours.var.columns


def test_missing_names_attribute_warns_and_detects(velocity_file):
    with pytest.warns(LoomReadWarning, match="obs_names='cell_names' names no 1-D attribute"):
        adata = read_loom_full(velocity_file, obs_names="cell_names")
    assert list(adata.obs_names) == list(CELLS)


def test_secondary_ids_renamed_back(velocity_file):
    adata = read_loom_full(velocity_file)
    assert list(adata.var["gene_ids"]) == [f"ENSG{i}" for i in range(N_GENES)]
    assert "Accession" not in adata.var.columns


@pytest.mark.parametrize("as_sparse", [True, False])
def test_sparse_as_anndata(velocity_file, tmp_path, as_sparse):
    ours = read_loom_full(velocity_file, sparse=as_sparse)
    theirs = anndata_read_loom(velocity_file, tmp_path, sparse=as_sparse, X_name="")
    assert sparse.issparse(ours.X) == sparse.issparse(theirs.X) == as_sparse
    assert sparse.issparse(ours.layers["spliced"]) == as_sparse


def test_dtype_casts_x_only(velocity_file, tmp_path):
    ours = read_loom_full(velocity_file, dtype="float64")
    theirs = anndata_read_loom(velocity_file, tmp_path, dtype="float64", X_name="")
    assert ours.X.dtype == theirs.X.dtype == np.float64
    assert ours.layers["spliced"].dtype == np.float32


def test_cleanup_as_anndata(velocity_file, tmp_path):
    ours = read_loom_full(velocity_file, cleanup=True)
    theirs = anndata_read_loom(velocity_file, tmp_path, cleanup=True)
    assert ours.uns["loom-obs"] == theirs.uns["loom-obs"] == {"batch": "b1"}
    assert "batch" not in ours.obs.columns
    assert "loom-obs" not in read_loom_full(velocity_file).uns
