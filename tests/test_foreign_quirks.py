"""The quirks of real loom files, made here with h5py the way each tool writes them, read right.

Each builder below writes one quirk; every quirk file must also become lossless after one read (last test).
"""

from __future__ import annotations

import base64
import json
import logging
import warnings
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
import pytest
from helpers import assert_same_as_h5ad

from scanpy_loomio import LoomFormatError, LoomReadWarning, read_loom_full, write_loom_full

N_GENES, N_CELLS = 4, 5
CELLS = np.array([f"cell{i}" for i in range(N_CELLS)], dtype=object)
GENES = np.array([f"gene{i}" for i in range(N_GENES)], dtype=object)
S = np.bytes_


def write_foreign(
    path: Path,
    *,
    col: dict[str, Any] | None = None,
    row: dict[str, Any] | None = None,
    root: dict[str, Any] | None = None,
    attrs: dict[str, Any] | None = None,
    other: dict[str, Any] | None = None,
    spec_groups: bool = True,
) -> Path:
    """A loom file without this package's record. ``other`` maps any HDF5 path to a dataset value."""
    with h5py.File(path, "w") as f:
        f["matrix"] = np.arange(N_GENES * N_CELLS, dtype=np.float64).reshape(N_GENES, N_CELLS)
        groups = ("col_attrs", "row_attrs", "layers", "col_graphs", "row_graphs") if spec_groups else ()
        for group in groups:
            f.create_group(group)
        for group, values in (("col_attrs", col), ("row_attrs", row)):
            for name, value in (values or {}).items():
                f[f"{group}/{name}"] = value
        for name, value in (root or {}).items():
            f.attrs[name] = value
        for name, value in (attrs or {}).items():
            f[f"attrs/{name}"] = value
        for name, value in (other or {}).items():
            f[name] = value
    return path


def quiet(path: Path, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LoomReadWarning)
        return read_loom_full(path, **kwargs)


def named(col: dict | None = None, row: dict | None = None) -> dict[str, dict]:
    return {"col": {"CellID": CELLS, **(col or {})}, "row": {"Gene": GENES, **(row or {})}}


def compress(value: Any) -> str:
    return base64.b64encode(zlib.compress(json.dumps(value).encode("utf-8"))).decode("ascii")


# -- builders, one quirk each -------------------------------------------------------------------------------------------


def spec2_fixed_bytes(path: Path) -> Path:
    return write_foreign(
        path,
        col={"CellID": CELLS.astype(S), "Tissue": np.array([b"brain", b"liver"] * 2 + [b"gut"], dtype="S5")},
        row={"Gene": GENES.astype(S)},
        root={"LOOM_SPEC_VERSION": S("2.0.1"), "CreatedWith": np.array([b"LoomExperiment-1.3.3"], dtype="S21")},
    )


def no_spec_version(path: Path) -> Path:
    return write_foreign(path, **named(col={"nGene": np.arange(N_CELLS, dtype=np.float64)}))


def compound_records(path: Path) -> Path:
    xy = np.zeros(N_CELLS, dtype=[("_X", "f8"), ("_Y", "f8")])
    xy["_X"], xy["_Y"] = np.arange(N_CELLS), -np.arange(N_CELLS)
    xyz = np.zeros(N_CELLS, dtype=[("_X", "f4"), ("_Y", "f4"), ("_Z", "f4")])
    auc = np.zeros(N_CELLS, dtype=[("Gata1(+)", "f4"), ("Spi1(+)", "f4")])
    auc["Spi1(+)"] = 0.5
    clusterings = np.zeros(N_CELLS, dtype=[("0", "i4"), ("1", "i4")])
    markers = np.zeros(N_GENES, dtype=[("0", "i1"), ("1", "i1")])
    labelled = np.zeros(N_GENES, dtype=[("name", "S8"), ("score", "f8")])
    labelled["name"] = [b"a", b"b", b"c", b"d"]
    return write_foreign(
        path,
        **named(
            col={"Embedding": xy, "Embedding3d": xyz, "RegulonsAUC": auc, "Clusterings": clusterings},
            row={"ClusterMarkers_0": markers, "Labelled": labelled},
        ),
    )


def scope_embedding_pair(path: Path, *, compressed: bool = True) -> Path:
    ex = np.zeros(N_CELLS, dtype=[("-1", "f8"), ("1", "f8"), ("2", "f8")])
    ey = np.zeros(N_CELLS, dtype=ex.dtype)
    ex["1"], ey["1"] = 1.0, 2.0
    meta = {"embeddings": [{"id": -1, "name": "tSNE"}, {"id": 1, "name": "UMAP"}], "clusterings": []}
    return write_foreign(
        path,
        **named(col={"Embeddings_X": ex, "Embeddings_Y": ey}),
        root={"MetaData": compress(meta) if compressed else json.dumps(meta), "Genome": "hg38"},
    )


def nested_groups(path: Path) -> Path:
    return write_foreign(
        path,
        col={"colnames": CELLS.astype(S), "Treatment": np.array([b"ChIP", b"Input"] * 2 + [b"ChIP"], dtype="S5")},
        other={
            "col_attrs/reducedDims/PCA": np.arange(N_CELLS * 2, dtype=np.float64).reshape(N_CELLS, 2),
            "col_attrs/lab/batch": np.array([b"x"] * N_CELLS),
            "row_attrs/GRanges/rownames": GENES.astype(S),
            "row_attrs/GRanges/seqnames": np.array([b"chr1"] * N_GENES),
            "row_attrs/GRanges/start": np.arange(N_GENES, dtype=np.int32),
        },
        root={"CreatedWith": S("LoomExperiment-0.99.0")},
    )


def extra_groups_and_edges(path: Path) -> Path:
    return write_foreign(
        path,
        **named(),
        spec_groups=False,
        other={
            "layers/spliced": np.ones((N_GENES, N_CELLS)),
            "col_edges/KNN/a": np.array([0.0, 1.0, 4.0]),
            "col_edges/KNN/b": np.array([1.0, 0.0, 3.0]),
            "col_edges/KNN/w": np.array([1.0, 1.0, 0.5]),
            "row_edges/coexp/a": np.array([0, 3]),
            "row_edges/coexp/b": np.array([3, 0]),
            "row_edges/coexp/w": np.array([1.0, 1.0], dtype=np.float32),
            "extra/notes": np.array([b"anything"]),
            "partition/cells": np.arange(3),
        },
    )


def loomr_graph(path: Path) -> Path:
    # loomR's add.graph.matrix: a from 0, b from 1 (here b reaches n, so the values alone show it)
    return write_foreign(
        path,
        **named(),
        other={
            "col_graphs/snn/a": np.array([0, 1, 2, 3], dtype=np.int32),
            "col_graphs/snn/b": np.array([2, 3, 4, 5], dtype=np.int32),
            "col_graphs/snn/w": np.ones(4),
        },
    )


def bytes_repr_text(path: Path) -> Path:
    return write_foreign(
        path,
        col={
            "CellID": np.array([f"b'{c}'" for c in CELLS], dtype=object),
            "sample": np.array(["b'S1'", "b'S1'", "b'S2'", "b'S2'", "b'caf\\xc3\\xa9'"], dtype=object),
        },
        row={"Gene": GENES},
        attrs={"title": "b'my data'"},
    )


def non_ascii(path: Path) -> Path:
    cells = np.array(["zelle_ä", "細胞", "cell_β", "naïve", "ok"], dtype=object)
    fixed = np.array([s.encode("utf-8") for s in ("Großhirn", "脳", "x", "y", "z")])
    return write_foreign(
        path,
        col={"CellID": cells, "region": fixed},
        row={"Gene": np.array(["β-actin", "Gapdh", "Ωmega", "x"], dtype=object)},
        attrs={"title": "Données — 数据"},
        root={"note": "ünïcödé".encode()},
    )


def duplicate_names(path: Path) -> Path:
    return write_foreign(
        path,
        col={"CellID": np.array(["a", "a", "b", "c", "a"], dtype=object)},
        row={"Gene": np.array(["Gm1", "Gm1", "Actb", "Gene"], dtype=object), "Accession": GENES},
    )


def foreign_globals(path: Path) -> Path:
    return write_foreign(
        path,
        **named(),
        attrs={"LOOM_SPEC_VERSION": "3.0.0", "title": "run 7", "n_batches": np.int64(3), "ratio": np.float64(0.25)},
        root={"pipeline_version": "Optimus_v4.2.2", "sizes": np.array([1, 2, 3], dtype=np.int32)},
    )


def embedding_forms(path: Path) -> Path:
    return write_foreign(
        path,
        **named(
            col={
                "reducedDims_PCA": np.ones((N_CELLS, 3)),
                "umap_cell_embeddings": np.ones((N_CELLS, 2)),
                "X_tsne": np.ones((N_CELLS, 2), dtype=np.float32),
            },
            row={"pca_gene_loadings": np.ones((N_GENES, 3))},
        ),
    )


def component_columns(path: Path) -> Path:
    return write_foreign(
        path,
        **named(col={"X_umap_1": np.arange(N_CELLS, dtype=float), "X_umap_2": -np.arange(N_CELLS, dtype=float)}),
        attrs={"SEURAT_ASSAY": "RNA"},
    )


def bool_and_2d_text(path: Path) -> Path:
    return write_foreign(
        path,
        **named(
            col={
                "Valid": np.array([True, False, True, True, False]),
                "pairs": np.array([["a", "b"]] * N_CELLS, dtype=object),
            }
        ),
    )


BUILDERS: dict[str, Callable[[Path], Path]] = {
    f.__name__: f
    for f in (
        spec2_fixed_bytes,
        no_spec_version,
        compound_records,
        scope_embedding_pair,
        nested_groups,
        extra_groups_and_edges,
        loomr_graph,
        bytes_repr_text,
        non_ascii,
        duplicate_names,
        foreign_globals,
        embedding_forms,
        component_columns,
        bool_and_2d_text,
    )
}


# -- what each reads as ---------------------------------------------------------------------------------------------------


def test_spec2_fixed_length_bytes_become_str(tmp_path):
    adata = quiet(spec2_fixed_bytes(tmp_path / "f.loom"))
    assert list(adata.obs_names) == list(CELLS)
    assert adata.obs["Tissue"].tolist() == ["brain", "liver", "brain", "liver", "gut"]
    assert adata.uns["LOOM_SPEC_VERSION"] == "2.0.1" and type(adata.uns["LOOM_SPEC_VERSION"]) is str
    assert adata.uns["CreatedWith"] == "LoomExperiment-1.3.3"


def test_no_spec_version_reads(tmp_path):
    adata = quiet(no_spec_version(tmp_path / "f.loom"))
    assert adata.shape == (N_CELLS, N_GENES) and "LOOM_SPEC_VERSION" not in adata.uns
    assert adata.obs["nGene"].dtype == np.float64


def test_compound_records_become_arrays_or_frames(tmp_path):
    adata = quiet(compound_records(tmp_path / "f.loom"))
    emb = adata.obsm["Embedding"]
    assert isinstance(emb, np.ndarray) and emb.shape == (N_CELLS, 2)
    np.testing.assert_array_equal(emb[:, 1], -np.arange(N_CELLS))
    assert adata.obsm["Embedding3d"].shape == (N_CELLS, 3)
    auc = adata.obsm["RegulonsAUC"]
    assert isinstance(auc, pd.DataFrame) and list(auc.columns) == ["Gata1(+)", "Spi1(+)"]
    assert auc.index.equals(adata.obs_names) and (auc["Spi1(+)"] == 0.5).all()
    assert isinstance(adata.obsm["Clusterings"], pd.DataFrame)
    labelled = adata.varm["Labelled"]
    assert labelled["name"].tolist() == ["a", "b", "c", "d"]
    assert isinstance(adata.varm["ClusterMarkers_0"], pd.DataFrame)
    for frame in (adata.obs, adata.var, auc, labelled):
        assert not any(isinstance(v, np.void) for c in frame.columns for v in frame[c])


@pytest.mark.parametrize("compressed", [True, False])
def test_scope_embeddings_and_metadata(tmp_path, compressed):
    adata = quiet(scope_embedding_pair(tmp_path / "f.loom", compressed=compressed))
    assert adata.uns["MetaData"]["embeddings"][1] == {"id": 1, "name": "UMAP"}
    # scanpy's names for the embeddings it knows; id 2 has no name in MetaData
    assert set(adata.obsm) == {"X_tsne", "X_umap", "Embeddings_2"}
    assert adata.uns["loom_embedding_names"] == {"X_tsne": "tSNE", "X_umap": "UMAP"}
    np.testing.assert_array_equal(adata.obsm["X_umap"], np.tile([1.0, 2.0], (N_CELLS, 1)))
    assert adata.uns["Genome"] == "hg38"


def test_metadata_that_is_not_json_stays_text(tmp_path):
    path = write_foreign(tmp_path / "f.loom", **named(), root={"MetaData": "not json, not base64!"})
    assert quiet(path).uns["MetaData"] == "not json, not base64!"


def test_nested_groups(tmp_path):
    adata = quiet(nested_groups(tmp_path / "f.loom"))
    assert list(adata.obs_names) == list(CELLS)
    assert list(adata.var_names) == list(GENES)  # from GRanges/rownames
    np.testing.assert_array_equal(adata.obsm["X_PCA"], np.arange(N_CELLS * 2).reshape(N_CELLS, 2))
    assert adata.var["seqnames"].tolist() == ["chr1"] * N_GENES
    assert adata.var["start"].dtype == np.int32
    assert adata.obs["lab_batch"].tolist() == ["x"] * N_CELLS  # an unknown nested group: prefixed columns
    assert "rownames" not in adata.var.columns


def test_extra_groups_ignored_and_edges_read(tmp_path):
    adata = quiet(extra_groups_and_edges(tmp_path / "f.loom"))
    assert set(adata.obsp) == {"KNN"} and set(adata.varp) == {"coexp"}
    knn = adata.obsp["KNN"].toarray()
    assert knn[0, 1] == knn[1, 0] == 1.0 and knn[4, 3] == 0.5
    assert adata.varp["coexp"][0, 3] == 1.0
    assert not any("extra" in k or "partition" in k for k in (*adata.uns, *adata.obs, *adata.obsm))


def test_float_indices_must_be_whole(tmp_path):
    path = write_foreign(
        tmp_path / "f.loom",
        **named(),
        other={"col_graphs/g/a": np.array([0.5]), "col_graphs/g/b": np.array([1.0]), "col_graphs/g/w": np.ones(1)},
    )
    with pytest.raises(LoomFormatError, match=r"/col_graphs/g/a.*non-integer"):
        read_loom_full(path)


def test_one_based_b_detected_from_values(tmp_path):
    path = loomr_graph(tmp_path / "f.loom")
    with pytest.warns(LoomReadWarning, match=r"/col_graphs/snn/b read as counting from 1, not 0.*largest index is 5"):
        adata = read_loom_full(path)
    graph = adata.obsp["snn"].toarray()
    assert [tuple(x) for x in np.argwhere(graph)] == [(0, 1), (1, 2), (2, 3), (3, 4)]


def test_one_based_b_from_the_convention(tmp_path, caplog):
    # b within 1..n-1 could be either: loomR's convention (detected by its root attributes) decides
    path = write_foreign(
        tmp_path / "f.loom",
        **named(),
        root={"LOOM_SPEC_VERSION": "2.0.1", "version": "0.2.0", "chunks": "(4, 5)"},
        other={
            "col_graphs/snn/a": np.array([0, 1]),
            "col_graphs/snn/b": np.array([2, 3]),
            "col_graphs/snn/w": np.ones(2),
        },
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", LoomReadWarning)
        detected = read_loom_full(path)
    assert [tuple(x) for x in np.argwhere(detected.obsp["snn"].toarray())] == [(0, 1), (1, 2)]
    with caplog.at_level(logging.INFO, logger="scanpy_loomio"):
        spec = read_loom_full(path, convention="loompy")
    assert [tuple(x) for x in np.argwhere(spec.obsp["snn"].toarray())] == [(0, 2), (1, 3)]
    assert "read as counting from 0" in caplog.text


def test_zero_overrules_a_declared_one_base(tmp_path):
    path = write_foreign(
        tmp_path / "f.loom",
        **named(),
        other={"col_graphs/g/a": np.array([0, 1]), "col_graphs/g/b": np.array([0, 1]), "col_graphs/g/w": np.ones(2)},
    )
    with pytest.warns(LoomReadWarning, match="read as counting from 0, not 1.*holds index 0"):
        adata = read_loom_full(path, convention="loomr")
    assert adata.obsp["g"][0, 0] == 1.0


def test_bytes_repr_flagged_then_repaired(tmp_path):
    path = bytes_repr_text(tmp_path / "f.loom")
    with pytest.warns(LoomReadWarning) as record:
        flagged = read_loom_full(path)
    messages = " ".join(str(w.message) for w in record)
    for what in ("obs names", "obs['sample']", "uns['title']"):
        assert f"{what} holds text like \"b'...'\"" in messages
    assert "repair_bytes_text=True" in messages
    assert flagged.obs["sample"].iloc[0] == "b'S1'"
    with warnings.catch_warnings():
        warnings.simplefilter("error", LoomReadWarning)
        repaired = read_loom_full(path, repair_bytes_text=True)
    assert list(repaired.obs_names) == list(CELLS)
    assert repaired.obs["sample"].tolist() == ["S1", "S1", "S2", "S2", "café"]
    assert repaired.uns["title"] == "my data"


def test_non_ascii_intact(tmp_path):
    adata = quiet(non_ascii(tmp_path / "f.loom"))
    assert list(adata.obs_names) == ["zelle_ä", "細胞", "cell_β", "naïve", "ok"]
    assert adata.obs["region"].tolist()[:2] == ["Großhirn", "脳"]
    assert adata.var_names[0] == "β-actin" and adata.var_names[2] == "Ωmega"
    assert adata.uns["title"] == "Données — 数据"
    assert adata.uns["note"] == "ünïcödé"


def test_duplicate_names_unique_with_originals_kept(tmp_path):
    path = duplicate_names(tmp_path / "f.loom")
    with pytest.warns(LoomReadWarning) as record:
        adata = read_loom_full(path)
    messages = [str(w.message) for w in record]
    assert any(
        "obs names from /col_attrs/CellID are not unique (2 repeats)" in m and "obs['CellID']" in m for m in messages
    )
    assert any("var names from /row_attrs/Gene are not unique" in m for m in messages)
    assert adata.obs_names.is_unique and adata.var_names.is_unique
    assert adata.obs["CellID"].tolist() == ["a", "a", "b", "c", "a"]
    assert adata.var["Gene"].tolist() == ["Gm1", "Gm1", "Actb", "Gene"]
    assert list(adata.obs_names) == ["a", "a-1", "b", "c", "a-2"]


def test_foreign_globals_reach_uns_and_survive_a_write(tmp_path):
    adata = quiet(foreign_globals(tmp_path / "f.loom"))
    assert adata.uns["title"] == "run 7" and adata.uns["pipeline_version"] == "Optimus_v4.2.2"
    assert adata.uns["n_batches"] == 3 and adata.uns["ratio"] == 0.25
    np.testing.assert_array_equal(adata.uns["sizes"], [1, 2, 3])
    write_loom_full(tmp_path / "back.loom", adata)
    back = read_loom_full(tmp_path / "back.loom")
    assert back.uns.keys() == adata.uns.keys()
    for key, value in adata.uns.items():
        assert type(back.uns[key]) is type(value), key
    with h5py.File(tmp_path / "back.loom", "r") as f:  # still where loom tools look for them
        assert f["attrs/pipeline_version"][()].decode() == "Optimus_v4.2.2"


def test_embedding_forms_are_read_as_embeddings(tmp_path):
    adata = quiet(embedding_forms(tmp_path / "f.loom"))
    assert set(adata.obsm) == {"X_PCA", "X_umap", "X_tsne"}
    assert adata.obsm["X_tsne"].dtype == np.float32
    assert set(adata.varm) == {"pca"}


def test_component_columns_grouped_only_in_that_style(tmp_path):
    path = component_columns(tmp_path / "f.loom")
    detected = quiet(path)  # SEURAT_ASSAY: SeuratDisk's 1-D components
    np.testing.assert_array_equal(detected.obsm["X_umap"][:, 1], -np.arange(N_CELLS))
    assert "X_umap_1" not in detected.obs.columns
    plain = quiet(path, convention="velocyto")  # a style with 2-D embeddings
    assert {"X_umap_1", "X_umap_2"} <= set(plain.obs.columns) and "X_umap" not in plain.obsm


def test_bool_columns_and_2d_text(tmp_path):
    adata = quiet(bool_and_2d_text(tmp_path / "f.loom"))
    assert adata.obs["Valid"].dtype == bool
    assert adata.obsm["pairs"].shape == (N_CELLS, 2) and adata.obsm["pairs"][0, 1] == "b"


def test_attributes_of_other_kinds_are_kept_with_a_warning(tmp_path):
    opaque = np.array([b"\x00\x01"] * N_CELLS, dtype="V2")  # HDF5 opaque data
    path = write_foreign(tmp_path / "f.loom", **named(col={"blob": opaque}))
    with pytest.warns(LoomReadWarning, match=r"/col_attrs/blob has dtype \|V2 and shape \(5,\); kept in obsm"):
        adata = read_loom_full(path)
    assert adata.obsm["blob"].shape[0] == N_CELLS


# -- every quirk file becomes lossless after one read --------------------------------------------------------------------


@pytest.mark.parametrize("builder", sorted(BUILDERS))
def test_quirk_file_round_trips_exactly(builder, tmp_path):
    first = quiet(BUILDERS[builder](tmp_path / "foreign.loom"))
    write_loom_full(tmp_path / "ours.loom", first)
    with warnings.catch_warnings():
        warnings.simplefilter("error", LoomReadWarning)
        second = read_loom_full(tmp_path / "ours.loom")
    assert_same_as_h5ad(first, second)


@pytest.mark.parametrize("builder", sorted(BUILDERS))
def test_reading_a_quirk_file_never_writes(builder, tmp_path):
    path = BUILDERS[builder](tmp_path / "foreign.loom")
    before = path.read_bytes()
    quiet(path)
    assert path.read_bytes() == before
