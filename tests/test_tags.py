"""The on-disk tags: each built and parsed in one place, versioned, with no colliding keys."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import sparse

from scanpy_loomio._record.record import AxisRecord, EmbeddingEntry, Metadata
from scanpy_loomio._record.tags import (
    AbsentMatrixTag,
    ColumnTag,
    FilledLayerTag,
    GraphTag,
    MatrixTag,
    TagError,
    parse_column_tag,
    parse_graph_tag,
    parse_matrix_tag,
)

TAGS = [
    (MatrixTag("csr", "csr_matrix", "float32"), parse_matrix_tag, "matrix"),
    (MatrixTag("dense", "ndarray", "bool"), parse_matrix_tag, "matrix"),
    (AbsentMatrixTag(), parse_matrix_tag, "absent-matrix"),
    (FilledLayerTag(), parse_matrix_tag, "filled-layer"),
    (GraphTag(MatrixTag("csc", "csc_array", "int64"), (1, 1)), parse_graph_tag, "graph"),
    (ColumnTag("categorical", ordered=True, categories_dtype="int16"), parse_column_tag, "categorical"),
    (ColumnTag("nullable-integer", dtype="Int32"), parse_column_tag, "nullable-integer"),
    (ColumnTag("string", na="None"), parse_column_tag, "string"),
    (ColumnTag("bool"), parse_column_tag, "bool"),
]


@pytest.mark.parametrize(("tag", "parse", "kind"), TAGS)
def test_tag_round_trips_with_its_type_and_version(tag, parse, kind):
    stored = json.loads(tag.to_json())
    assert stored["encoding-type"] == kind
    assert stored["encoding-version"] == "0.2.0"
    assert "type" not in stored  # the key that once held both a kind and a class name
    assert parse(tag.to_json()) == tag


@pytest.mark.parametrize(
    ("matrix", "expected"),
    [
        (np.zeros((2, 3), dtype=np.float16), MatrixTag("dense", "ndarray", "float16")),
        (sparse.csr_matrix((2, 3), dtype=np.int8), MatrixTag("csr", "csr_matrix", "int8")),
        (sparse.csc_array((2, 3), dtype=bool), MatrixTag("csc", "csc_array", "bool")),
    ],
)
def test_matrix_tag_describes_the_container(matrix, expected):
    assert MatrixTag.of(matrix) == expected
    assert MatrixTag.of(matrix).is_sparse_array == isinstance(matrix, sparse.sparray)


@pytest.mark.parametrize(
    ("text", "parse", "expected"),
    [
        (
            '{"type": "csr_array", "format": "csr", "dtype": "float64"}',
            parse_matrix_tag,
            MatrixTag("csr", "csr_array", "float64"),
        ),
        ('{"type": "absent"}', parse_matrix_tag, AbsentMatrixTag()),
        ('{"type": "filled"}', parse_matrix_tag, FilledLayerTag()),
        (
            '{"type": "csr_matrix", "format": "csr", "dtype": "float32", "index_base": [1, 1]}',
            parse_graph_tag,
            GraphTag(MatrixTag("csr", "csr_matrix", "float32"), (1, 1)),
        ),
        (
            '{"type": "categorical", "ordered": false, "categories_dtype": "object"}',
            parse_column_tag,
            ColumnTag("categorical", categories_dtype="object"),
        ),
        (
            '{"type": "nullable-boolean", "dtype": "boolean"}',
            parse_column_tag,
            ColumnTag("nullable-boolean", dtype="boolean"),
        ),
    ],
    ids=["matrix", "absent", "filled", "graph", "categorical", "nullable"],
)
def test_untagged_form_of_0_1_0_is_read(text, parse, expected):
    assert parse(text) == expected


@pytest.mark.parametrize(("tag", "parse", "kind"), TAGS)
def test_newer_version_is_refused(tag, parse, kind):
    stored = json.loads(tag.to_json()) | {"encoding-version": "0.3.0"}
    with pytest.raises(TagError, match=rf"'{kind}' tag of encoding-version 0.3.0, written by a newer") as info:
        parse(json.dumps(stored))
    assert info.value.newer


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"encoding-type": "matrix", "encoding-version": "0.2.0", "format": "coo", "container": "x"}', "format 'coo'"),
        ('{"encoding-type": "matrix", "encoding-version": "0.2.0", "format": "csr", "container": 3}', "type 3"),
        (
            '{"encoding-type": "matrix", "encoding-version": "0.2.0", "format": "csr", "container": "x", "dtype": "<U3"}',
            "dtype <U3",
        ),
        ('{"encoding-type": "tape", "encoding-version": "0.2.0"}', "encoding-type 'tape'"),
        ('{"encoding-type": "matrix", "encoding-version": "0.0.9"}', "encoding-version 0.0.9 of 'matrix'"),
        ("[1]", "list instead of a JSON object"),
    ],
)
def test_malformed_matrix_tag_says_what_was_found(text, message):
    with pytest.raises(TagError, match=message) as info:
        parse_matrix_tag(text)
    assert not info.value.newer


def test_record_round_trips_typed():
    record = Metadata(
        obs=AxisRecord(
            "CellID",
            "cell",
            columns=[("louvain", "louvain")],
            multi={
                "X_umap": EmbeddingEntry("columns", ("X_umap_1", "X_umap_2"), ndim=2),
                "X_tsne": EmbeddingEntry("pair", ("Embeddings_X", "Embeddings_Y"), ndim=2, fields=("tsne",)),
                "frame": EmbeddingEntry("sidecar"),
            },
            graphs={"distances": "distances"},
        ),
        var=AxisRecord("Gene"),
        layers=[("counts", "counts")],
    )
    stored = json.loads(record.to_json())
    assert (stored["encoding-type"], stored["encoding-version"]) == ("scanpy_loomio-record", "0.2.0")
    assert Metadata.from_json(record.to_json()) == record
    assert record.problem() is None


def test_record_of_0_1_0_is_read():
    text = json.dumps(
        {
            "encoder": "scanpy_loomio",
            "version": 1,
            "obs": {"index_attr": "CellID", "multi": {"X_pca": {"storage": "matrix", "attrs": ["X_pca"], "ndim": 2}}},
            "var": {"index_attr": "Gene"},
        }
    )
    record = Metadata.from_json(text)
    assert record.version == "0.1.0"
    assert record.obs.multi["X_pca"] == EmbeddingEntry("matrix", ("X_pca",), ndim=2)
