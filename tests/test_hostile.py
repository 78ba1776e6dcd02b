"""Damaged, odd and hostile loom files: each gives one clear outcome, and reading never changes a file.

Every bad file is made here from a valid one (written by this package, by loompy or by plain h5py), so nothing binary
is committed. Each case asserts its exact outcome: a :class:`~scanpy_loomio.LoomFormatError` naming the file and the
HDF5 path, an :class:`OSError` for I/O-level problems, or a :class:`~scanpy_loomio.LoomReadWarning` and the values
read as plain loom. Every read goes through :func:`read_unchanged`, which also checks the file's bytes and
modification time are the same afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from anndata import AnnData
from anndata.tests.helpers import assert_adata_equal
from helpers import assert_same_as_h5ad
from scipy import sparse

from scanpy_loomio import LoomFormatError, LoomReadWarning, read_loom_full, write_loom_full
from scanpy_loomio._guards import MAX_DEPTH, UnreadableFileError, heaps

N_OBS, N_VARS = 30, 12


# -- helpers -----------------------------------------------------------------------------------------------------------
def file_state(path: Path) -> tuple[str, int]:
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def read_unchanged(path: Path, **kwargs) -> AnnData:
    """``read_loom_full``, asserting that the file's bytes and modification time are the same afterwards."""
    before = file_state(path)
    try:
        return read_loom_full(path, **kwargs)
    finally:
        assert file_state(path) == before, f"reading changed {path}"


@contextlib.contextmanager
def ignored_warnings() -> Iterator[None]:
    """Damaged text may be read with a LoomReadWarning; these tests only look at the outcome."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def where(path: Path, hdf5_path: str) -> str:
    """Regex for the start of a message about ``hdf5_path`` in ``path``."""
    return re.escape(f"{path}: {hdf5_path}: ")


def small_adata() -> AnnData:
    rng = np.random.default_rng(0)
    X = sparse.random(N_OBS, N_VARS, density=0.3, format="csr", dtype=np.float32, random_state=0)
    obs = pd.DataFrame(
        {
            "cluster": pd.Categorical(rng.choice(["a", "b"], N_OBS)),
            "n": np.arange(N_OBS),
            "label": [f"cell {i}" for i in range(N_OBS)],
        },
        index=[f"c{i}" for i in range(N_OBS)],
    )
    var = pd.DataFrame({"score": rng.normal(size=N_VARS)}, index=[f"g{i}" for i in range(N_VARS)])
    adata = AnnData(X, obs=obs, var=var)
    adata.layers["counts"] = X.copy()
    adata.obsm["X_pca"] = rng.normal(size=(N_OBS, 3))
    adata.obsp["connectivities"] = sparse.random(N_OBS, N_OBS, density=0.1, format="csr", random_state=1)
    adata.uns["title"] = "small"
    adata.uns["params"] = {"k": 5}
    return adata


@pytest.fixture(scope="module")
def adata() -> AnnData:
    return small_adata()


@pytest.fixture(scope="module")
def valid_file(tmp_path_factory: pytest.TempPathFactory, adata: AnnData) -> Path:
    """A file written by this package."""
    path = tmp_path_factory.mktemp("valid") / "valid.loom"
    write_loom_full(path, adata)
    return path


@pytest.fixture(scope="module")
def loompy_file(tmp_path_factory: pytest.TempPathFactory, adata: AnnData) -> Path:
    """The same values written by loompy."""
    loompy = pytest.importorskip("loompy")
    path = tmp_path_factory.mktemp("loompy") / "loompy.loom"
    loompy.create(
        str(path),
        adata.X.T.toarray(),
        row_attrs={"Gene": np.asarray(adata.var_names), "score": adata.var["score"].to_numpy()},
        col_attrs={"CellID": np.asarray(adata.obs_names), "n": adata.obs["n"].to_numpy()},
    )
    return path


@pytest.fixture(scope="module")
def h5py_file(tmp_path_factory: pytest.TempPathFactory, adata: AnnData) -> Path:
    """A minimal loom file written with plain h5py, as a tool with its own writer would."""
    path = tmp_path_factory.mktemp("h5py") / "plain.loom"
    with h5py.File(path, "w") as f:
        f.create_dataset("matrix", data=adata.X.T.toarray(), chunks=(6, 10), compression="gzip")
        f.create_group("layers")
        f.create_group("col_attrs").create_dataset("CellID", data=np.asarray(adata.obs_names, dtype="S"))
        f.create_group("row_attrs").create_dataset("Gene", data=np.asarray(adata.var_names, dtype="S"))
        f.create_group("col_graphs")
        f.create_group("row_graphs")
        f.attrs["LOOM_SPEC_VERSION"] = "2.0.1"
    return path


def edited(tmp_path: Path, base: Path, edit: Callable[[h5py.File], object]) -> Path:
    """A copy of ``base`` in ``tmp_path``, changed with h5py by ``edit``."""
    path = tmp_path / "case.loom"
    shutil.copyfile(base, path)
    with h5py.File(path, "r+") as f:
        edit(f)
    return path


def replace(name: str, data: object, **kwargs) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        del f[name]
        f.create_dataset(name, data=data, **kwargs)

    return edit


def assert_plain_values(back: AnnData, adata: AnnData) -> None:
    """What a plain loom reading keeps: the matrix, the names and the values of the columns."""
    np.testing.assert_array_equal(sparse.csr_matrix(back.X).toarray(), adata.X.toarray())
    assert list(back.obs_names) == list(adata.obs_names)
    assert list(back.var_names) == list(adata.var_names)
    assert list(back.obs["label"]) == list(adata.obs["label"])
    np.testing.assert_array_equal(np.asarray(back.obs["n"]), adata.obs["n"].to_numpy())


# -- not HDF5, empty, truncated, damaged ----------------------------------------------------------------------------
def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.loom"
    path.write_bytes(b"")
    with pytest.raises(UnreadableFileError, match=where(path, "/") + r"found an empty file \(0 bytes\)") as info:
        read_unchanged(path)
    # one error, catchable both ways
    assert isinstance(info.value, LoomFormatError)
    assert isinstance(info.value, OSError)


@pytest.mark.parametrize(
    ("content", "found"),
    [
        (b"cell\tgene\tcount\n1\t2\t3\n", r"found bytes b'cell\\tgene\\tcount\\n' and no HDF5 signature"),
        (b"<!DOCTYPE html><html><body>Not found</body></html>", r"found a web page \(an HTML error"),
        (b"version https://git-lfs.github.com/spec/v1\noid sha256:0\n", r"found a Git LFS pointer"),
    ],
    ids=["tsv", "html", "git-lfs"],
)
def test_text_file(tmp_path: Path, content: bytes, found: str) -> None:
    path = tmp_path / "text.loom"
    path.write_bytes(content)
    with pytest.raises(UnreadableFileError, match=where(path, "/") + found + r".*expected an HDF5 \(\.loom\) file"):
        read_unchanged(path)


@pytest.mark.parametrize("fraction", [0.5, 0.9, -1], ids=["half", "90%", "last-byte"])
def test_truncated_file(tmp_path: Path, valid_file: Path, fraction: float) -> None:
    data = valid_file.read_bytes()
    keep = len(data) - 1 if fraction == -1 else int(len(data) * fraction)
    path = tmp_path / "truncated.loom"
    path.write_bytes(data[:keep])
    expected = rf"found a truncated file: it has {keep} bytes but its HDF5 header says {len(data)}; "
    with pytest.raises(UnreadableFileError, match=where(path, "/") + expected):
        read_unchanged(path)


def test_truncated_before_the_signature(tmp_path: Path, valid_file: Path) -> None:
    path = tmp_path / "stub.loom"
    path.write_bytes(valid_file.read_bytes()[:4])
    with pytest.raises(UnreadableFileError, match=r"no HDF5 signature"):
        read_unchanged(path)


def test_byte_flips_at_many_positions(tmp_path: Path, valid_file: Path) -> None:
    """Each flipped byte gives the data back or a LoomFormatError, never another error, and the file stays as it is."""
    data = valid_file.read_bytes()
    positions = np.random.default_rng(1).choice(len(data), size=120, replace=False)
    outcomes = {"read": 0, "LoomFormatError": 0}
    path = tmp_path / "flipped.loom"
    for position in sorted(positions):
        damaged = bytearray(data)
        damaged[position] ^= 0xFF
        path.write_bytes(damaged)
        try:
            with ignored_warnings():
                result = read_unchanged(path)
        except LoomFormatError as err:
            assert str(err).startswith(f"{path}: "), f"byte {position}: the message does not name the file: {err}"
            outcomes["LoomFormatError"] += 1
        else:
            assert result.shape == (N_OBS, N_VARS), f"byte {position}: shape {result.shape}"
            outcomes["read"] += 1
    # the flips hit both data (read back) and structure (refused)
    assert outcomes["read"] > 0
    assert outcomes["LoomFormatError"] > 0


# -- missing or malformed loom parts ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("edit", "hdf5_path", "message"),
    [
        (lambda f: f.__delitem__("matrix"), "/matrix", "found no such dataset; expected the main matrix"),
        (lambda f: f.__delitem__("col_attrs"), "/col_attrs", "found no such group; expected the obs attributes"),
        (lambda f: f.__delitem__("row_attrs"), "/row_attrs", "found no such group; expected the var attributes"),
        (replace("matrix", np.zeros(N_OBS * N_VARS, np.float32)), "/matrix", "found a Dataset of 1 dimensions"),
        (replace("matrix", np.full((N_VARS, N_OBS), b"x")), "/matrix", r"found values of dtype \|S1; expected numbers"),
        (lambda f: (f.__delitem__("matrix"), f.create_group("matrix")), "/matrix", "found a Group"),
        (
            replace("col_attrs/n", np.arange(N_OBS - 1)),
            "/col_attrs/n",
            rf"found shape \({N_OBS - 1},\); expected first dimension {N_OBS}",
        ),
        (
            replace("col_attrs/n", np.arange(N_OBS + 1)),
            "/col_attrs/n",
            rf"found shape \({N_OBS + 1},\); expected first dimension {N_OBS}",
        ),
        (
            replace("row_attrs/score", np.ones(N_VARS - 1)),
            "/row_attrs/score",
            rf"found shape \({N_VARS - 1},\); expected first dimension {N_VARS}",
        ),
        (
            replace("row_attrs/score", np.ones(N_VARS + 1)),
            "/row_attrs/score",
            rf"found shape \({N_VARS + 1},\); expected first dimension {N_VARS}",
        ),
        (
            replace("layers/counts", np.zeros((N_VARS, N_OBS - 1), np.float32)),
            "/layers/counts",
            rf"found shape \({N_VARS}, {N_OBS - 1}\); expected the shape of /matrix \({N_VARS}, {N_OBS}\)",
        ),
        (
            replace("layers/counts", np.full((N_VARS, N_OBS), b"x")),
            "/layers/counts",
            r"found a 2-D dataset of dtype \|S1",
        ),
        (lambda f: f.create_group("layers/nested"), "/layers/nested", "found a Group; expected a 2-D dataset"),
        (
            lambda f: (f.__delitem__("col_attrs"), f.create_dataset("col_attrs", data=[1])),
            "/col_attrs",
            "found a Dataset; expected a group",
        ),
    ],
    ids=[
        "no-matrix",
        "no-col_attrs",
        "no-row_attrs",
        "matrix-1d",
        "matrix-text",
        "matrix-group",
        "col-attr-short",
        "col-attr-long",
        "row-attr-short",
        "row-attr-long",
        "layer-shape",
        "layer-text",
        "layer-group",
        "col_attrs-dataset",
    ],
)
def test_malformed_loom_parts(tmp_path: Path, valid_file: Path, edit: Callable, hdf5_path: str, message: str) -> None:
    path = edited(tmp_path, valid_file, edit)
    with pytest.raises(LoomFormatError, match=where(path, hdf5_path) + message):
        read_unchanged(path)


def test_an_h5ad_file_named_loom_is_called_what_it_is(tmp_path: Path) -> None:
    path = tmp_path / "renamed.loom"
    AnnData(np.ones((3, 2), np.float32)).write_h5ad(path)
    with pytest.raises(LoomFormatError, match=r"/matrix: found no such dataset.*This is an \.h5ad file.*read_h5ad"):
        read_loom_full(path)


@pytest.mark.parametrize("base", ["loompy_file", "h5py_file"])
def test_other_writers_files_missing_parts(tmp_path: Path, base: str, request: pytest.FixtureRequest) -> None:
    path = edited(tmp_path, request.getfixturevalue(base), lambda f: f.__delitem__("row_attrs"))
    with pytest.raises(LoomFormatError, match=where(path, "/row_attrs") + "found no such group"):
        read_unchanged(path)


# -- graphs ----------------------------------------------------------------------------------------------------------
GRAPH = "col_graphs/connectivities"


def _edge_count(path: Path) -> int:
    with h5py.File(path, "r") as f:
        return f[f"{GRAPH}/a"].shape[0]


@pytest.mark.parametrize(
    ("part", "values", "message"),
    [
        (
            "a",
            lambda n: np.full(n, N_OBS),
            rf"/a: found vertex indices from {N_OBS} to {N_OBS}; expected 0 to {N_OBS - 1} for {N_OBS} vertices",
        ),
        ("b", lambda n: np.full(n, -1), rf"/b: found vertex indices from -1 to -1; expected 0 to {N_OBS - 1}"),
        (
            "a",
            lambda n: np.r_[np.nan, np.zeros(n - 1)],
            r"/a: found non-integer or NaN vertex indices; expected whole numbers",
        ),
        ("b", lambda n: np.full(n, 0.5), r"/b: found non-integer or NaN vertex indices"),
        (
            "w",
            lambda n: np.ones(n - 1),
            r": found a, b, w of shapes \((\d+),\), \(\1,\), \((\d+),\); expected three 1-D datasets of one length",
        ),
        ("a", lambda n: np.zeros(n + 3, np.int64), r": found a, b, w of shapes"),
        ("w", lambda n: np.full(n, b"x"), r"/w: found a 1-D dataset of dtype \|S1; expected a 1-D dataset of numbers"),
        ("a", lambda n: np.zeros((n, 2), np.int64), r"/a: found a 2-D dataset of dtype int64"),
    ],
    ids=["out-of-range", "negative", "nan", "fractional", "w-short", "a-long", "w-text", "a-2d"],
)
def test_bad_graphs(tmp_path: Path, valid_file: Path, part: str, values: Callable, message: str) -> None:
    n = _edge_count(valid_file)
    path = edited(tmp_path, valid_file, replace(f"{GRAPH}/{part}", values(n)))
    with pytest.raises(LoomFormatError, match=re.escape(f"{path}: /{GRAPH}") + message):
        read_unchanged(path)


def test_whole_float_graph_indices_are_read(tmp_path: Path, valid_file: Path, adata: AnnData) -> None:
    """R writers store a and b as float64; whole numbers are fine."""

    def floats(f: h5py.File) -> None:
        for part in "ab":
            values = f[f"{GRAPH}/{part}"][()].astype(np.float64)
            replace(f"{GRAPH}/{part}", values)(f)

    back = read_unchanged(edited(tmp_path, valid_file, floats))
    assert (back.obsp["connectivities"] != adata.obsp["connectivities"]).nnz == 0


# -- sizes: fail fast ------------------------------------------------------------------------------------------------
def _declare_huge(f: h5py.File, *, chunks: tuple[int, int] | None = (64, 64)) -> None:
    del f["matrix"]
    del f["layers"]
    f.create_group("layers")
    # 10^12 elements; nothing stored, so the file stays a few kilobytes
    f.create_dataset("matrix", shape=(10**6, 10**6), dtype=np.float32, chunks=chunks)


EMPTY_MATRIX = (
    r"found a \(1000000, 1000000\) float32 dataset declaring 1,000,000,000,000 elements \(3\.6 TiB\) with data "
    r"stored for at most 0 of them; expected a matrix whose declared size is backed by stored data \(at least 1% of "
    r"it\)\. .*Pass memory_limit=None to read it anyway"
)
TOO_MANY_CHUNKS = (
    r"found a \(1000000, 1000000\) float32 dataset in chunks of \(64, 64\): 244,140,625 chunk positions; expected "
    r"at most 134,217,728 chunk positions\. .*Pass memory_limit=None to read it anyway"
)


@pytest.mark.parametrize(
    ("chunks", "message"),
    [((64, 64), TOO_MANY_CHUNKS), ((1024, 1024), EMPTY_MATRIX), (None, EMPTY_MATRIX)],
    ids=["loompy-chunks", "large-chunks", "contiguous"],
)
def test_matrix_claiming_10_to_the_12_elements(
    tmp_path: Path, valid_file: Path, chunks: tuple | None, message: str
) -> None:
    path = edited(tmp_path, valid_file, lambda f: _declare_huge(f, chunks=chunks))
    assert path.stat().st_size < 2**20
    with pytest.raises(LoomFormatError, match=where(path, "/matrix") + message):
        read_unchanged(path, memory_limit=2**34)


def test_huge_matrix_read_dense(tmp_path: Path, valid_file: Path) -> None:
    path = edited(tmp_path, valid_file, lambda f: _declare_huge(f, chunks=None))
    message = r"found a file whose reading needs about 3\.6 TiB of memory \(largest parts: /matrix: a dense"
    with pytest.raises(LoomFormatError, match=where(path, "/") + message):
        read_unchanged(path, sparse=False, memory_limit=2**34)


def _tiny_chunks(n: int) -> Callable[[h5py.File], None]:
    def edit(f: h5py.File) -> None:
        del f["matrix"]
        del f["layers"]
        f.create_group("layers")
        f.create_dataset("matrix", shape=(n, n), dtype=np.float32, chunks=(1, 1))

    return edit


def test_tiny_chunks_over_a_large_matrix(tmp_path: Path, valid_file: Path) -> None:
    """A chunk per element makes a chunk table larger than the matrix; refused before it is built."""
    path = edited(tmp_path, valid_file, _tiny_chunks(10_000))
    # the matrix declares 381 MiB (under the limit); its table of chunk positions would take 2.2 GiB
    with pytest.raises(LoomFormatError, match=r"/matrix: a table of 100,000,000 chunk positions \(1, 1\), 2\.2 GiB"):
        read_unchanged(path, memory_limit=2**30)


def test_too_many_chunk_positions(tmp_path: Path, valid_file: Path) -> None:
    """However much memory there is, visiting 900 million chunk positions is not tried unless asked for."""
    path = edited(tmp_path, valid_file, _tiny_chunks(30_000))
    message = r"found a \(30000, 30000\) float32 dataset in chunks of \(1, 1\): 900,000,000 chunk positions"
    with pytest.raises(LoomFormatError, match=where(path, "/matrix") + message):
        read_unchanged(path, memory_limit=2**50)


def test_sparse_matrix_with_most_chunks_empty_is_read(tmp_path: Path) -> None:
    """A legitimately sparse matrix leaves chunks of zeros unstored; above 1 % stored it reads under a small limit."""
    n_obs, n_vars = 6400, 640
    X = sparse.random(640, n_vars, density=0.2, format="csr", dtype=np.float32, random_state=0)
    adata = AnnData(sparse.vstack([X, sparse.csr_matrix((n_obs - 640, n_vars), dtype=np.float32)], format="csr"))
    path = tmp_path / "mostly-empty.loom"
    write_loom_full(path, adata)
    with h5py.File(path, "r") as f:
        stored, grid = f["matrix"].id.get_num_chunks(), 10 * 100
    assert stored == grid // 10  # only the chunks of the first 640 cells hold values
    # 15.6 MiB declared, 14 MiB of it empty: more than the limit, but 10 % of the chunks are stored
    back = read_unchanged(path, memory_limit=4 * 2**20)
    assert (back.X != adata.X).nnz == 0


def test_chunk_larger_than_the_limit(tmp_path: Path, valid_file: Path) -> None:
    """HDF5 decompresses whole chunks: one chunk over the limit is refused, however small the matrix's result."""
    matrix = sparse.random(N_VARS, N_OBS, density=0.3, random_state=0).toarray().astype(np.float32)
    path = edited(tmp_path, valid_file, replace("matrix", matrix, chunks=(N_VARS, N_OBS), compression="gzip"))
    message = rf"found chunks of \({N_VARS}, {N_OBS}\) \(1\.4 KiB each, decompressed whole\); expected chunks that fit"
    with pytest.raises(LoomFormatError, match=where(path, "/matrix") + message):
        read_unchanged(path, memory_limit=1000)


def test_nonzero_fill_value_counts_every_element(tmp_path: Path, valid_file: Path) -> None:
    """Unstored chunks read as the fill value; with a fill of 1.5 the sparse result holds every element."""

    def filled(f: h5py.File) -> None:
        del f["layers/counts"]
        f["layers"].create_dataset("counts", shape=(N_VARS, N_OBS), dtype=np.float32, fillvalue=1.5, chunks=True)

    path = edited(tmp_path, valid_file, filled)
    with pytest.raises(LoomFormatError, match=rf"/layers/counts: {N_OBS * N_VARS:,} non-zeros \(fill value 1\.5\)"):
        read_unchanged(path, memory_limit=N_OBS * N_VARS * 4)
    back = read_unchanged(path)
    assert back.layers["counts"].nnz == N_OBS * N_VARS


def test_memory_limit_separates_dense_from_sparse(tmp_path: Path) -> None:
    """A legitimately large matrix: refused dense above the limit, read sparse, read dense when forced."""
    rng = np.random.default_rng(2)
    dense = AnnData(rng.random((300, 200)))  # float64, 480 kB dense, every chunk stored
    dense_path, sparse_path = tmp_path / "dense.loom", tmp_path / "sparse.loom"
    write_loom_full(dense_path, dense)
    write_loom_full(sparse_path, AnnData(sparse.csr_matrix(dense.X)))
    limit = 300_000
    with pytest.raises(
        LoomFormatError,
        match=r"reading needs about .* \(largest parts: /matrix: a dense 300 × 200 float64 matrix, 468\.8 KiB",
    ):
        read_unchanged(dense_path, memory_limit=limit)
    assert read_unchanged(sparse_path, memory_limit=limit).X.nnz == 300 * 200
    np.testing.assert_array_equal(read_unchanged(dense_path, memory_limit=None).X, dense.X)


@pytest.mark.parametrize(
    ("value", "error"), [("lots", ValueError), (-1, TypeError), (1.5, TypeError), (True, TypeError)]
)
def test_memory_limit_argument(valid_file: Path, value: object, error: type) -> None:
    with pytest.raises(error, match="memory_limit="):
        read_loom_full(valid_file, memory_limit=value)


# -- text ------------------------------------------------------------------------------------------------------------
INVALID_UTF8 = b"\xff\xfe"


@pytest.mark.parametrize(
    ("edit", "hdf5_path", "message"),
    [
        (
            replace(
                "col_attrs/label", np.array([INVALID_UTF8] * N_OBS, dtype=object), dtype=h5py.string_dtype("utf-8")
            ),
            "/col_attrs/label",
            "found text that is not UTF-8",
        ),
        (
            replace("col_attrs/label", np.array([INVALID_UTF8] * N_OBS)),
            "/col_attrs/label",
            "found text that is not UTF-8",
        ),
        (
            replace("attrs/title", np.bytes_(INVALID_UTF8)),
            "/attrs",
            r"found text that is not UTF-8 \(invalid start byte in .*/attrs/title",
        ),
        (
            lambda f: f.attrs.create("note", np.bytes_(INVALID_UTF8)),
            "/",
            r"found text that is not UTF-8 \(invalid start byte in .*root attribute 'note'",
        ),
        (
            lambda f: f["col_attrs"].create_dataset(INVALID_UTF8, data=np.arange(N_OBS)),
            "/col_attrs/b'\\xff\\xfe'",
            "found the name b'\\\\xff\\\\xfe', which is not UTF-8 text",
        ),
    ],
    ids=["vlen-attribute", "fixed-attribute", "global", "root-attribute", "name"],
)
def test_invalid_utf8(tmp_path: Path, valid_file: Path, edit: Callable, hdf5_path: str, message: str) -> None:
    path = edited(tmp_path, valid_file, edit)
    with pytest.raises(LoomFormatError, match=where(path, hdf5_path) + message):
        read_unchanged(path)


# -- this package's own record and codecs ----------------------------------------------------------------------------
def _record(path: Path) -> dict:
    with h5py.File(path, "r") as f:
        return json.loads(f["attrs/scanpy_loomio"][()])


def _set_record(text: str) -> Callable[[h5py.File], None]:
    return replace("attrs/scanpy_loomio", text, dtype=h5py.string_dtype())


@pytest.mark.parametrize(
    ("change", "warning"),
    [
        (lambda r: "{not json", r"unreadable \(not valid JSON"),
        (lambda r: json.dumps([1, 2]), r"unreadable \(not a scanpy_loomio record"),
        (
            lambda r: json.dumps(r | {"encoding-version": "0.1"}),
            r"unreadable \(encoding-version of 'record': version '0.1'",
        ),
        (lambda r: json.dumps(r | {"encoding-version": 1}), r"unreadable \(encoding-version 1 of 'record'"),
        (lambda r: json.dumps(r | {"obs": None}), r"unreadable \(malformed record"),
        (lambda r: json.dumps(r | {"layers": [[1]]}), r"unreadable \(malformed record"),
        (
            lambda r: json.dumps(r | {"obs": r["obs"] | {"multi": {"X_pca": {"storage": "tape"}}}}),
            r"inconsistent \(obsm\['X_pca'\] has storage 'tape'",
        ),
        (
            lambda r: json.dumps(r | {"obs": r["obs"] | {"multi": {"X_pca": {"storage": "columns", "attrs": 3}}}}),
            r"inconsistent \(obsm\['X_pca'\] lists attributes 3",
        ),
    ],
    ids=[
        "not-json",
        "not-an-object",
        "version-malformed",
        "version-not-text",
        "axis-null",
        "layers-malformed",
        "storage",
        "attrs",
    ],
)
def test_damaged_record_reads_as_plain_loom(
    tmp_path: Path, valid_file: Path, adata: AnnData, change: Callable, warning: str
) -> None:
    path = edited(tmp_path, valid_file, _set_record(change(_record(valid_file))))
    with pytest.warns(LoomReadWarning, match=re.escape(f"{path}: the scanpy_loomio record") + ".*" + warning):
        back = read_unchanged(path)
    assert_plain_values(back, adata)


@pytest.mark.parametrize(
    "change",
    [
        lambda r: r | {"encoding-version": "0.3.0"},
        lambda r: (
            {k: v for k, v in r.items() if not k.startswith("encoding-")} | {"encoder": "scanpy_loomio", "version": 2}
        ),
    ],
    ids=["tagged", "untagged"],
)
def test_record_of_a_newer_release_is_refused(tmp_path: Path, valid_file: Path, change: Callable) -> None:
    path = edited(tmp_path, valid_file, _set_record(json.dumps(change(_record(valid_file)))))
    with pytest.raises(
        LoomFormatError,
        match=re.escape(f"{path}: /attrs/scanpy_loomio: found a record with ")
        + ".*newer scanpy-loomio.*Upgrade scanpy-loomio",
    ):
        read_unchanged(path)


@pytest.mark.parametrize("hdf5_path", ["matrix", "col_attrs/cluster", GRAPH])
def test_tag_of_a_newer_release_is_refused(tmp_path: Path, valid_file: Path, hdf5_path: str) -> None:
    def edit(f: h5py.File) -> None:
        tag = json.loads(f[hdf5_path].attrs["scanpy_loomio_codec"])
        f[hdf5_path].attrs["scanpy_loomio_codec"] = json.dumps(tag | {"encoding-version": "1.0.0"})

    path = edited(tmp_path, valid_file, edit)
    expected = (
        where(path, f"/{hdf5_path}")
        + "found a scanpy_loomio_codec attribute with .*encoding-version 1.0.0, written by a newer scanpy-loomio.*Upgrade scanpy-loomio"
    )
    with pytest.raises(LoomFormatError, match=expected):
        read_unchanged(path)


def test_names_replaced_by_records_read_as_plain_loom(tmp_path: Path, valid_file: Path, adata: AnnData) -> None:
    """The record says obs names are in CellID, but another tool replaced it with compound records."""
    path = edited(
        tmp_path, valid_file, replace("col_attrs/CellID", np.zeros(N_OBS, dtype=[("_X", "f4"), ("_Y", "i1")]))
    )
    warning = r"inconsistent \(obs names are recorded in /col_attrs/CellID, a 1-D dataset of dtype \[\('_X'"
    with pytest.warns(LoomReadWarning, match=warning):
        back = read_unchanged(path)
    np.testing.assert_array_equal(sparse.csr_matrix(back.X).toarray(), adata.X.toarray())
    assert list(back.var_names) == list(adata.var_names)
    assert back.obsm["CellID"].shape == (N_OBS, 2)


@pytest.mark.parametrize(
    ("hdf5_path", "codec", "message"),
    [
        ("matrix", {"type": "matrix", "format": "coo"}, r"format 'coo' \(known: csc, csr, dense\)"),
        ("matrix", {"type": "matrix", "format": "csr", "dtype": "<U5"}, r"dtype <U5 \(not a number or bool dtype\)"),
        ("layers/counts", {"type": 7}, r"type 7 \(not a string\)"),
        (GRAPH, {"type": "graph", "format": "dense", "dtype": "float128x"}, r"dtype 'float128x' \(not a numpy dtype\)"),
    ],
    ids=["matrix-format", "matrix-dtype", "layer-type", "graph-dtype"],
)
def test_damaged_codec_attribute(tmp_path: Path, valid_file: Path, hdf5_path: str, codec: dict, message: str) -> None:
    def edit(f: h5py.File) -> None:
        f[hdf5_path].attrs["scanpy_loomio_codec"] = json.dumps(codec)

    path = edited(tmp_path, valid_file, edit)
    expected = (
        where(path, f"/{hdf5_path}") + f"found a scanpy_loomio_codec attribute with {message}.*Delete the attribute"
    )
    with pytest.raises(LoomFormatError, match=expected):
        read_unchanged(path)


def test_unreadable_codec_on_a_column_reads_plain_values(tmp_path: Path, valid_file: Path, adata: AnnData) -> None:
    def edit(f: h5py.File) -> None:
        f["col_attrs/cluster"].attrs["scanpy_loomio_codec"] = "{not json"

    back = read_unchanged(edited(tmp_path, valid_file, edit))
    assert list(back.obs["cluster"]) == list(adata.obs["cluster"].astype(str))


@pytest.mark.parametrize(
    ("attribute", "value", "message"),
    [
        ("encoding-type", "garbage", r"IORegistryError: No read method registered for IOSpec\(encoding_type='garbage'"),
        (
            "encoding-version",
            "99.0",
            r"IORegistryError: No read method registered for IOSpec\(encoding_type='dict', encoding_version='99\.0'",
        ),
    ],
)
def test_damaged_sidecar(tmp_path: Path, valid_file: Path, attribute: str, value: str, message: str) -> None:
    def edit(f: h5py.File) -> None:
        f["scanpy_loomio/uns/params"].attrs[attribute] = value

    path = edited(tmp_path, valid_file, edit)
    with pytest.raises(
        LoomFormatError,
        match=where(path, "/scanpy_loomio/uns/params") + "found content that cannot be read .*" + message,
    ):
        read_unchanged(path)


@pytest.mark.parametrize("version", ["garbage", "", "99.99.99"])
def test_garbage_spec_version(tmp_path: Path, valid_file: Path, adata: AnnData, version: str) -> None:
    path = edited(tmp_path, valid_file, replace("attrs/LOOM_SPEC_VERSION", version, dtype=h5py.string_dtype()))
    assert_same_as_h5ad(adata, read_unchanged(path))


def test_garbage_spec_version_in_a_plain_file(tmp_path: Path, h5py_file: Path, adata: AnnData) -> None:
    def edit(f: h5py.File) -> None:
        f.attrs["LOOM_SPEC_VERSION"] = np.arange(3)

    back = read_unchanged(edited(tmp_path, h5py_file, edit))
    np.testing.assert_array_equal(sparse.csr_matrix(back.X).toarray(), adata.X.toarray())
    assert list(back.obs_names) == list(adata.obs_names)


# -- links and data in other files -----------------------------------------------------------------------------------
@pytest.fixture
def other_file(tmp_path: Path) -> Path:
    """Another HDF5 file on disk with a column's worth of values."""
    path = tmp_path / "elsewhere.h5"
    with h5py.File(path, "w") as f:
        f["secret"] = np.arange(N_OBS) * 10
    return path


def test_external_link_is_refused_unless_allowed(tmp_path: Path, valid_file: Path, other_file: Path) -> None:
    def link(f: h5py.File) -> None:
        f["col_attrs/secret"] = h5py.ExternalLink(str(other_file), "/secret")

    path = edited(tmp_path, valid_file, link)
    expected = (
        where(path, "/col_attrs/secret")
        + re.escape(
            f"found an external link to '/secret' in the file '{other_file}'; expected objects stored in this file."
        )
        + ".*pass allow_external=True"
    )
    with pytest.raises(LoomFormatError, match=expected):
        read_unchanged(path)
    np.testing.assert_array_equal(read_unchanged(path, allow_external=True).obs["secret"], np.arange(N_OBS) * 10)


def test_virtual_dataset_from_another_file_is_refused_unless_allowed(
    tmp_path: Path, valid_file: Path, other_file: Path
) -> None:
    def virtual(f: h5py.File) -> None:
        layout = h5py.VirtualLayout(shape=(N_OBS,), dtype=np.int64)
        layout[:] = h5py.VirtualSource(str(other_file), "secret", shape=(N_OBS,))
        f["col_attrs"].create_virtual_dataset("secret", layout)

    path = edited(tmp_path, valid_file, virtual)
    expected = where(path, "/col_attrs/secret") + re.escape(
        f"found a virtual dataset reading 'secret' from the file '{other_file}'"
    )
    with pytest.raises(LoomFormatError, match=expected):
        read_unchanged(path)
    np.testing.assert_array_equal(read_unchanged(path, allow_external=True).obs["secret"], np.arange(N_OBS) * 10)


def test_virtual_dataset_within_the_file_is_read(tmp_path: Path, valid_file: Path) -> None:
    def virtual(f: h5py.File) -> None:
        layout = h5py.VirtualLayout(shape=(N_OBS,), dtype=np.int64)
        layout[:] = h5py.VirtualSource(".", "/col_attrs/n", shape=(N_OBS,))
        f["col_attrs"].create_virtual_dataset("copy_of_n", layout)

    back = read_unchanged(edited(tmp_path, valid_file, virtual))
    np.testing.assert_array_equal(back.obs["copy_of_n"], np.arange(N_OBS))


def test_externally_stored_dataset_is_refused_unless_allowed(tmp_path: Path, valid_file: Path) -> None:
    raw = tmp_path / "raw.bin"
    (np.arange(N_OBS, dtype="<f8") * 2).tofile(raw)

    def external(f: h5py.File) -> None:
        f["col_attrs"].create_dataset("outside", shape=(N_OBS,), dtype="<f8", external=[(str(raw), 0, N_OBS * 8)])

    path = edited(tmp_path, valid_file, external)
    expected = where(path, "/col_attrs/outside") + re.escape(
        f"found a dataset whose values are stored in the external file(s) ['{raw}']"
    )
    with pytest.raises(LoomFormatError, match=expected):
        read_unchanged(path)
    np.testing.assert_array_equal(read_unchanged(path, allow_external=True).obs["outside"], np.arange(N_OBS) * 2.0)


@pytest.mark.parametrize(
    ("edit", "hdf5_path", "message"),
    [
        (
            lambda f: (
                f.__setitem__("col_attrs/a", h5py.SoftLink("/col_attrs/b")),
                f.__setitem__("col_attrs/b", h5py.SoftLink("/col_attrs/a")),
            ),
            "/col_attrs/a",
            r"found a soft link to '/col_attrs/b' that does not resolve \(it loops\)",
        ),
        (
            lambda f: f.__setitem__("col_attrs/self", h5py.SoftLink("/col_attrs/self")),
            "/col_attrs/self",
            r"found a soft link to '/col_attrs/self' that does not resolve \(it loops\)",
        ),
        (
            lambda f: f.__setitem__("col_attrs/gone", h5py.SoftLink("/nowhere")),
            "/col_attrs/gone",
            "found a soft link to '/nowhere', which does not exist",
        ),
        (
            lambda f: f.__setitem__("col_attrs/up", h5py.SoftLink("/col_attrs")),
            "/col_attrs/up",
            r"found a soft link to '/col_attrs', a group that contains the link \(a cycle\)",
        ),
        (
            lambda f: f.create_group("extra/sub").__setitem__("loop", f["extra"]),
            "/extra/sub/loop",
            r"found the group '/extra' linked inside itself \(a cycle\)",
        ),
        (
            lambda f: f.__setitem__("col_attrs/kind", np.dtype("f8")),
            "/col_attrs/kind",
            r"found a Datatype; expected datasets and groups only",
        ),
    ],
    ids=["soft-loop", "soft-self", "dangling", "soft-cycle", "hard-cycle", "named-datatype"],
)
def test_links_that_loop_or_dangle(
    tmp_path: Path, valid_file: Path, edit: Callable, hdf5_path: str, message: str
) -> None:
    path = edited(tmp_path, valid_file, edit)
    with pytest.raises(LoomFormatError, match=where(path, hdf5_path) + message):
        read_unchanged(path)


def test_soft_link_within_the_file_is_followed(tmp_path: Path, valid_file: Path) -> None:
    path = edited(tmp_path, valid_file, lambda f: f.__setitem__("col_attrs/alias", h5py.SoftLink("/col_attrs/n")))
    np.testing.assert_array_equal(read_unchanged(path).obs["alias"], np.arange(N_OBS))


def test_deep_nesting(tmp_path: Path, valid_file: Path) -> None:
    def deep(f: h5py.File) -> None:
        group = f.create_group("extra")
        for _ in range(MAX_DEPTH + 2):
            group = group.create_group("d")

    path = edited(tmp_path, valid_file, deep)
    with pytest.raises(LoomFormatError, match=rf"found groups nested more than {MAX_DEPTH} levels deep"):
        read_unchanged(path)


def test_filter_this_installation_lacks(tmp_path: Path, valid_file: Path) -> None:
    """A dataset compressed with a filter HDF5 does not have: named, with how to get it."""

    def lzf(f: h5py.File) -> None:
        f["col_attrs"].create_dataset("packed", data=np.arange(N_OBS, dtype=np.float64), compression="lzf")

    path = edited(tmp_path, valid_file, lzf)
    data = bytearray(path.read_bytes())
    # the filter pipeline message names the filter by id (lzf: 32000 = 0x7d00) next to its name; renumber it
    name = data.find(b"lzf\x00")
    assert data[name - 8 : name - 6] == (32000).to_bytes(2, "little")
    data[name - 8 : name - 6] = (32123).to_bytes(2, "little")
    path.write_bytes(data)
    message = r"found data compressed with the HDF5 filter 'lzf' \(id 32123\), which this installation cannot decode.*hdf5plugin"
    with pytest.raises(LoomFormatError, match=where(path, "/col_attrs/packed") + message):
        read_unchanged(path)


# -- damaged internals that made HDF5 hang or crash ------------------------------------------------------------------
def test_global_heap_that_would_hang_hdf5(tmp_path: Path, valid_file: Path) -> None:
    """A damaged object size in a global heap makes HDF5 loop forever; the heap is checked first."""
    data = bytearray(valid_file.read_bytes())
    heap = data.find(b"GCOL\x01\x00\x00\x00")
    assert heap > 0
    first_object = heap + 16
    size = int.from_bytes(data[first_object + 8 : first_object + 16], "little")
    # grow the first object by 64 bytes: the walk lands in the zero padding, an object taking no room
    data[first_object + 8 : first_object + 16] = (size + 64).to_bytes(8, "little")
    path = tmp_path / "heap.loom"
    path.write_bytes(data)
    message = rf"global heap at byte {heap}: found a damaged collection of text values \(object"
    with pytest.raises(LoomFormatError, match=re.escape(f"{path}: ") + message):
        read_unchanged(path)


@pytest.mark.parametrize("into_signature", [0, 1, 4, 7, 8])
def test_heap_whose_signature_lies_across_two_windows_of_the_search(
    tmp_path: Path, valid_file: Path, monkeypatch: pytest.MonkeyPatch, into_signature: int
) -> None:
    """The whole-file search reads the file a window at a time: a signature cut by a window's end is still found."""
    data = bytearray(valid_file.read_bytes())
    heap = data.find(b"GCOL\x01\x00\x00\x00")
    first_object = heap + 16
    size = int.from_bytes(data[first_object + 8 : first_object + 16], "little")
    data[first_object + 8 : first_object + 16] = (size + 64).to_bytes(8, "little")
    path = tmp_path / "heap.loom"
    path.write_bytes(data)
    monkeypatch.setattr(heaps, "SCAN_WINDOW_BYTES", heap + into_signature)  # the first window ends there
    with pytest.raises(LoomFormatError, match=re.escape(f"{path}: global heap at byte {heap}: found a damaged")):
        read_unchanged(path)


_PEAK_OF_THE_SEARCH = """
import sys
from pathlib import Path
import h5py
from scanpy_loomio._guards import heaps

def high_water_mark():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) * 1024 for line in status if line.startswith("VmHWM"))

path = Path(sys.argv[1])
with h5py.File(path, "r") as file:
    before = high_water_mark()
    checked = set()
    heaps.check_global_heaps(file, path, checked)
    print(high_water_mark() - before, len(checked))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads the peak resident size from /proc")
def test_the_whole_file_search_holds_a_window_of_the_file_not_all_of_it(tmp_path: Path) -> None:
    """Searching a 256 MiB file for text heaps raises the process's peak memory by about a window, not the file."""
    path = tmp_path / "big.h5"
    random_bytes = np.random.default_rng(0).integers(0, 256, 256 * 2**20, dtype=np.uint8)
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "names", data=np.array([f"cell_{i}" for i in range(1000)], dtype=object), dtype=h5py.string_dtype()
        )
        f.create_dataset("payload", data=random_bytes)
        f.create_dataset(
            "more_names", data=np.array([f"gene_{i}" for i in range(1000)], dtype=object), dtype=h5py.string_dtype()
        )
    del random_bytes
    assert path.stat().st_size > 256 * 2**20
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_OF_THE_SEARCH, str(path)], capture_output=True, text=True, check=True
    )
    grown, collections = map(int, done.stdout.split())
    assert collections >= 2  # the collections before and after the payload were both found
    assert grown < 4 * heaps.SCAN_WINDOW_BYTES, f"the search raised the peak by {grown / 2**20:.0f} MiB"


def with_user_block(source: Path, target: Path, size: int = 1024) -> Path:
    """A copy of every object and global attribute of ``source`` in a new file that starts with a user block."""
    with h5py.File(source, "r") as src, h5py.File(target, "w", userblock_size=size) as dst:
        for name in src:
            src.copy(src[name], dst, name=name)
        dst.attrs.update(dict(src.attrs))
    return target


def test_file_with_a_user_block_reads_as_without(tmp_path: Path, valid_file: Path) -> None:
    """HDF5 gives a contiguous dataset's offset counting the user block, and text heaps' addresses without it."""
    path = with_user_block(valid_file, tmp_path / "user_block.loom")
    with h5py.File(path, "r") as f:
        assert f.id.get_create_plist().get_userblock() == 1024
        text = f["attrs/CreationDate"]  # scalar text: its descriptor is read at the dataset's offset
        assert text.id.get_create_plist().get_layout() == h5py.h5d.CONTIGUOUS and text.id.get_offset() is not None
    expected = read_unchanged(valid_file)
    assert_adata_equal(read_unchanged(path), expected, exact=True)
    assert_adata_equal(read_unchanged(path, obs=[3, 1, 20], var=slice(2, 9)), expected[[3, 1, 20], 2:9].copy())


@pytest.mark.parametrize("whole_scan", [True, False])
def test_damaged_heap_in_a_file_with_a_user_block(
    tmp_path: Path, valid_file: Path, monkeypatch: pytest.MonkeyPatch, whole_scan: bool
) -> None:
    """The heaps are found at their addresses past the user block, whether the file is searched whole or not."""
    if not whole_scan:
        monkeypatch.setattr(heaps, "WHOLE_SCAN_BYTES", 0)
    data = bytearray(with_user_block(valid_file, tmp_path / "copy.loom").read_bytes())
    with h5py.File(tmp_path / "copy.loom", "r") as f:
        _, raw = f["col_attrs/label"].id.read_direct_chunk((0,))
    heap = 1024 + int.from_bytes(raw[4:12], "little")  # addresses count from the end of the user block
    assert data[heap : heap + 8] == b"GCOL\x01\x00\x00\x00"
    collection_size = int.from_bytes(data[heap + 8 : heap + 16], "little")
    data[heap + 24 : heap + 32] = (2 * collection_size).to_bytes(8, "little")  # the first object runs past its end
    path = tmp_path / "damaged.loom"
    path.write_bytes(data)
    with pytest.raises(LoomFormatError, match=re.escape(f"{path}: global heap at byte {heap}: found a damaged")):
        read_unchanged(path)


def test_heap_behind_text_in_a_large_file(tmp_path: Path, valid_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files too large to search whole: the heaps that datasets' text points to are still checked."""
    monkeypatch.setattr(heaps, "WHOLE_SCAN_BYTES", 0)  # as for a file larger than the whole-file search
    with h5py.File(valid_file, "r") as f:
        label = f["col_attrs/label"]
        assert label.chunks and not label.compression
        _, raw = label.id.read_direct_chunk((0,))
    heap = int.from_bytes(raw[4:12], "little")  # the first value: length (4 bytes), collection address (8), index
    data = bytearray(valid_file.read_bytes())
    assert data[heap : heap + 8] == b"GCOL\x01\x00\x00\x00"
    size = int.from_bytes(data[heap + 24 : heap + 32], "little")
    data[heap + 24 : heap + 32] = (size + 64).to_bytes(8, "little")
    path = tmp_path / "large.loom"
    path.write_bytes(data)
    with pytest.raises(LoomFormatError, match=re.escape(f"{path}: global heap at byte {heap}: found a damaged")):
        read_unchanged(path)


def _collection(sizes: list[int], sizeof_size: int = 8) -> bytes:
    """The objects of a global heap collection with these stored sizes (index 1, 2, ...; data padded to 8 bytes)."""
    out = bytearray()
    for index, size in enumerate(sizes, start=1):
        out += index.to_bytes(2, "little") + bytes(6) + size.to_bytes(sizeof_size, "little")
        out += bytes(min((size + 7) & ~7, 4096))  # the data (damaged sizes claim more than is there)
    return bytes(out)


@pytest.mark.parametrize("sizeof_size", [4, 8])
@pytest.mark.parametrize(
    ("sizes", "misfit"),
    [
        ([5, 17, 0, 9], None),  # every object fits, then the free space
        ([5, 3 * 2**30, 9], 2),  # runs past the end
        ([2**64 - 3, 1], 1),  # wraps round to a few bytes when rounded up to 8 in 64 bits
        ([2**63 + 8, 1], 1),  # negative as a signed 64-bit number
    ],
    ids=["fits", "past the end", "near 2**64", "above 2**63"],
)
def test_compiled_heap_walk_agrees_with_python(sizes: list[int], misfit: int | None, sizeof_size: int) -> None:
    sizes = [min(size, 2 ** (8 * sizeof_size) - 1) for size in sizes]  # what a size field of that width holds
    free = bytes(8) + (8 + sizeof_size + 16).to_bytes(sizeof_size, "little") + bytes(16)
    image = np.frombuffer(_collection(sizes, sizeof_size) + free, dtype=np.uint8)
    python = heaps.misfit_object_python(image, 0, image.shape[0], sizeof_size)
    position, index, size = heaps.first_misfit_object(image, 0, image.shape[0], sizeof_size)
    assert (position, index, size & (2**64 - 1)) == python
    assert (position < 0) if misfit is None else python[1:] == (misfit, sizes[misfit - 1])


def test_text_claiming_gigabytes(tmp_path: Path, valid_file: Path) -> None:
    """A damaged length in a text descriptor makes HDF5 allocate and fill gigabytes; refused from the bytes."""
    path = tmp_path / "vlen.loom"
    shutil.copyfile(valid_file, path)
    with h5py.File(path, "r") as f:
        dsid = f["col_attrs/label"].id
        offset = dsid.get_chunk_info(0).byte_offset if f["col_attrs/label"].chunks else dsid.get_offset()
    data = bytearray(path.read_bytes())
    data[offset : offset + 4] = (3 * 2**30).to_bytes(4, "little")  # the first value's length
    path.write_bytes(data)
    message = r"found variable-length data with an impossible length or address \(value 0 of a block claiming 3,221,225,472 bytes"
    with pytest.raises(LoomFormatError, match=where(path, "/col_attrs/label") + message):
        read_unchanged(path)


@pytest.mark.parametrize(
    ("field", "value", "found"),
    [
        ("address", 2**62, r"of \d+ bytes at byte 4611686018427387904"),
        ("size", 2**31, r"of 2147483648 bytes at byte \d+"),
    ],
)
def test_damaged_chunk_index(tmp_path: Path, field: str, value: int, found: str) -> None:
    """The matrix engine reads chunks itself: an index entry outside the file or of gigabytes is refused first."""
    path = tmp_path / "chunks.loom"
    write_loom_full(path, AnnData(np.random.default_rng(0).random((100, 80), dtype=np.float32)))
    with h5py.File(path, "r") as f:
        first = f["matrix"].id.get_chunk_info(0)
    data = bytearray(path.read_bytes())
    # a v1 B-tree entry: chunk size (4 bytes), filter mask (4), offsets (8 per dimension + 1), then the address
    pointer = data.find(first.byte_offset.to_bytes(8, "little"))
    key = pointer - 8 * 3 - 8
    assert int.from_bytes(data[key : key + 4], "little") == first.size
    if field == "address":
        data[pointer : pointer + 8] = value.to_bytes(8, "little")
    else:
        data[key : key + 4] = value.to_bytes(4, "little")
    path.write_bytes(data)
    message = r"found a chunk index entry at \(0, 0\) " + found + r"; expected chunks inside the file"
    with pytest.raises(LoomFormatError, match=re.escape(f"{path}: /matrix: ") + message):
        read_unchanged(path)
    # names and annotations are still readable
    assert read_unchanged(path, matrices=False).shape == (100, 80)


# -- not a regular file ----------------------------------------------------------------------------------------------
def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "missing.loom"
    with pytest.raises(FileNotFoundError, match=re.escape(str(path))):
        read_loom_full(path)


def test_directory(tmp_path: Path) -> None:
    with pytest.raises(IsADirectoryError, match=re.escape(str(tmp_path))):
        read_loom_full(tmp_path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes need a POSIX system")
def test_named_pipe_does_not_block(tmp_path: Path) -> None:
    path = tmp_path / "pipe.loom"
    os.mkfifo(path)
    with pytest.raises(OSError, match=r"is a named pipe; expected a regular \.loom file"):
        read_loom_full(path)


def _read_as_nobody(path: str, queue: multiprocessing.Queue) -> None:
    os.setgid(65534)
    os.setuid(65534)
    try:
        read_loom_full(path)
    except BaseException as err:  # noqa: BLE001 - report whatever happened to the parent
        queue.put((type(err).__name__, isinstance(err, PermissionError), str(err)))
    else:
        queue.put(("read", False, ""))


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or (os.geteuid() == 0 and "fork" not in multiprocessing.get_all_start_methods()),
    reason="needs POSIX users (and fork, as root, who reads every file)",
)
def test_permission_denied(tmp_path: Path, valid_file: Path) -> None:
    path = tmp_path / "private.loom"
    shutil.copyfile(valid_file, path)
    path.chmod(0o000)
    if os.geteuid() != 0:
        with pytest.raises(PermissionError, match=re.escape(str(path))):
            read_loom_full(path)
        return
    # root reads every file: read as an unprivileged user in a child process instead
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_read_as_nobody, args=(str(path), queue))
    child.start()
    name, is_permission_error, message = queue.get(timeout=60)
    child.join(timeout=60)
    assert is_permission_error, f"{name}: {message}"
    assert str(tmp_path) in message


def test_file_open_elsewhere_in_this_process(valid_file: Path, adata: AnnData) -> None:
    """HDF5 refuses a second open with other locking flags; the reader opens it the way it is already open."""
    with h5py.File(valid_file, "r"):
        assert_same_as_h5ad(adata, read_unchanged(valid_file))


# -- reading never modifies ------------------------------------------------------------------------------------------
def test_reading_real_fixtures_changes_nothing(tmp_path: Path, real_fixtures: Path) -> None:
    fixtures = sorted(real_fixtures.glob("*.loom"))
    assert fixtures
    for fixture in fixtures:
        original = file_state(fixture)
        copy = tmp_path / fixture.name
        shutil.copyfile(fixture, copy)
        with ignored_warnings():
            read_unchanged(copy)
        assert file_state(fixture) == original
