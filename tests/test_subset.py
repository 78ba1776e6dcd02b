"""Subset reads: ``read_loom_full(f, obs=..., var=...)`` equals ``read_loom_full(f)[obs, var]`` and reads only the
chunks that hold the selection."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from anndata import AnnData
from anndata.tests.helpers import assert_adata_equal
from helpers import assert_reads_equal
from scipy import sparse

from scanpy_loomio import LoomFormatError, LoomReadWarning, read_loom_full, read_loom_lazy, write_loom_full
from scanpy_loomio._matrix import read_matrix, write_matrix
from scanpy_loomio._matrix.chunk_index import selection_layout
from scanpy_loomio._matrix.chunks import ChunkLayout
from scanpy_loomio._matrix.subset import read_selection
from scanpy_loomio.conventions import CONVENTIONS

ROOT = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures"
FOREIGN = sorted([*ROOT.glob("real/*.loom"), *ROOT.glob("tools/*.loom")]) if ROOT.is_dir() else []


def rich(n_obs: int = 150, n_vars: int = 90, *, extras: bool = True, seed: int = 0) -> AnnData:
    """Counts in X and layers of every container the record keeps, annotations, embeddings, graphs, uns and raw."""
    rng = np.random.default_rng(seed)
    x = sparse.random(n_obs, n_vars, density=0.2, format="csr", dtype=np.float32, random_state=seed)
    x.data = np.round(x.data * 10) + 1
    obs = pd.DataFrame(
        {"cell_type": pd.Categorical(rng.choice(["a", "b", "c"], n_obs)), "depth": rng.random(n_obs)},
        index=[f"cell{i}" for i in range(n_obs)],
    )
    var = pd.DataFrame({"highly_variable": rng.random(n_vars) < 0.3}, index=[f"gene{j}" for j in range(n_vars)])
    adata = AnnData(x, obs=obs, var=var)
    adata.layers["counts"] = x.astype(np.int32)
    adata.layers["dense"] = x.toarray().astype(np.float64)
    adata.obsm["X_pca"] = rng.standard_normal((n_obs, 5)).astype(np.float32)
    adata.varm["loadings"] = rng.standard_normal((n_vars, 3))
    if extras:  # elements only conventions with this package's extra group keep
        adata.layers["by_genes"] = x.tocsc()
        adata.layers["array"] = sparse.csr_array(x)
        graph = sparse.random(n_obs, n_obs, density=0.05, format="csr", dtype=np.float32, random_state=seed + 1)
        adata.obsp["connectivities"] = graph
        adata.varp["correlation"] = sparse.random(n_vars, n_vars, density=0.1, format="csr", random_state=seed + 2)
        adata.uns["params"] = {"n_neighbors": 15, "colours": np.array(["red", "blue"])}
        adata.obs["cell_type_colors"] = "x"
        adata.raw = adata.copy()
    return adata


@pytest.fixture(scope="module")
def rich_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("subset") / "rich.loom"
    write_loom_full(path, rich(), chunks=(16, 8))  # many chunks in both directions
    return path


@pytest.fixture(scope="module")
def full(rich_file):
    return read_loom_full(rich_file)


SELECTIONS = {
    "mask and names": (lambda a: a.obs["cell_type"] == "b", lambda a: ["gene5", "gene70", "gene1"]),
    "positions unsorted with repeats": (lambda a: [120, 3, 3, 77, 8], lambda a: np.array([89, 0, 40])),
    "slices with steps": (lambda a: slice(5, 140, 7), lambda a: slice(None, None, 4)),
    "reversed slice": (lambda a: slice(None, None, -3), lambda a: slice(10, 30)),
    "cells only": (lambda a: np.arange(a.n_obs) % 5 == 0, lambda a: None),
    "genes only": (lambda a: None, lambda a: a.var["highly_variable"].to_numpy()),
    "one cell, every gene": (lambda a: [7], lambda a: slice(None)),
    "nothing": (lambda a: np.zeros(a.n_obs, dtype=bool), lambda a: [0, 1]),
    "negative positions": (lambda a: [-1, -5, 0], lambda a: [-2, 3]),
    "names of cells": (lambda a: ["cell9", "cell2", "cell149"], lambda a: slice("gene3", "gene11")),
}


@pytest.mark.parametrize("case", list(SELECTIONS))
def test_subset_equals_subsetting_the_full_read(rich_file, full, case):
    pick_obs, pick_var = SELECTIONS[case]
    obs, var = pick_obs(full), pick_var(full)
    part = read_loom_full(rich_file, obs=obs, var=var)
    assert not part.is_view
    expected = full[slice(None) if obs is None else obs, slice(None) if var is None else var]
    assert_adata_equal(expected, part, exact=True)
    assert_reads_equal(expected.copy(), part)
    for key in part.layers:
        assert type(part.layers[key]) is type(full.layers[key]), key
    assert part.raw is not None and part.raw.n_vars == full.n_vars  # raw is subset along obs only


def test_unknown_names_fail_as_anndata_does(rich_file, full):
    with pytest.raises(KeyError, match="nope"):
        read_loom_full(rich_file, obs=["cell1", "nope"])
    with pytest.raises(IndexError):
        read_loom_full(rich_file, var=np.ones(3, dtype=bool))


@pytest.fixture
def repeated_gene_names(tmp_path):
    """Gene names that repeat, as velocyto's ``Gene`` attribute often does; cell names unique."""
    adata = AnnData(
        np.arange(20, dtype=np.float32).reshape(5, 4),
        obs=pd.DataFrame(index=[f"cell{i}" for i in range(5)]),
        var=pd.DataFrame({"Accession": [f"ENSG{i}" for i in range(4)]}, index=["Actb", "Gapdh", "Actb", "Xist"]),
    )
    write_loom_full(tmp_path / "repeated.loom", adata)
    return tmp_path / "repeated.loom"


@pytest.mark.parametrize("lazy", [False, True], ids=["full", "lazy"])
def test_names_that_repeat_cannot_select_and_the_error_says_why(repeated_gene_names, lazy):
    read = read_loom_lazy if lazy else read_loom_full
    with pytest.raises(pd.errors.InvalidIndexError, match=r"var names \('Actb', \.\.\.\) are not unique"):
        read(repeated_gene_names, var=["Xist"])  # anndata refuses it too: the whole read's [:, ["Xist"]] fails
    whole = read_loom_full(repeated_gene_names)
    for obs, var in [
        (["cell3", "cell1"], slice(None)),
        (slice(None), [2, 0]),
        (slice(None), whole.var_names == "Actb"),
    ]:
        got = read(repeated_gene_names, obs=obs, var=var)
        assert_adata_equal(whole[obs, var].copy(), got.to_memory() if lazy else got, exact=True)
    by_accession = read(repeated_gene_names, var=["ENSG3", "ENSG0"], var_names="Accession")
    assert list(by_accession.var_names) == ["ENSG3", "ENSG0"]


def test_matrices_false_and_dtype(rich_file, full):
    part = read_loom_full(rich_file, obs=slice(0, 10), matrices=False)
    assert part.X is None and not part.layers and part.n_obs == 10
    part = read_loom_full(rich_file, obs=slice(0, 10), var=[3, 4], dtype="float64")
    assert part.X.dtype == np.float64
    assert np.array_equal(part.X.toarray(), full.X[:10, [3, 4]].toarray())


@pytest.mark.parametrize("name", list(CONVENTIONS))
def test_every_convention(tmp_path, name):
    adata = rich(70, 50, extras=CONVENTIONS[name].sidecar, seed=3)
    path = tmp_path / f"{name}.loom"
    write_loom_full(path, adata, convention=name, fill_missing_layers=True, chunks=(8, 16))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LoomReadWarning)
        whole = read_loom_full(path)
        obs, var = np.array([69, 1, 30, 31, 2]), whole.var_names[::3]
        part = read_loom_full(path, obs=obs, var=var)
    assert_reads_equal(whole[obs, var].copy(), part)


@pytest.mark.skipif(not FOREIGN, reason=f"fixtures not found under {ROOT} (../shared beside the repo)")
@pytest.mark.parametrize("path", FOREIGN, ids=lambda p: p.name)
def test_other_tools_files(tmp_path, path):
    copy = tmp_path / path.name
    shutil.copyfile(path, copy)
    rng = np.random.default_rng(len(path.name))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LoomReadWarning)
        whole = read_loom_full(copy)
        obs = rng.permutation(whole.n_obs)[: max(1, whole.n_obs // 3)]
        var = rng.random(whole.n_vars) < 0.4
        part = read_loom_full(copy, obs=obs, var=var)
    assert_reads_equal(whole[obs, var].copy(), part)


# -- only the chunks that hold the selection -----------------------------------------------------------------------
def _damage_chunks_outside(path: Path, cells: np.ndarray, genes: np.ndarray) -> int:
    """Overwrite the stored bytes of every chunk of every matrix that holds none of the selection; return how many."""
    damaged = []
    with h5py.File(path, "r") as f:
        names = ["matrix", *(f"layers/{k}" for k in f.get("layers", {}))]
        for name in names:
            dset = f[name]
            th, tw = dset.chunks
            rows, cols = set((genes // th).tolist()), set((cells // tw).tolist())

            def visit(info, rows=rows, cols=cols, th=th, tw=tw):
                if info.chunk_offset[0] // th not in rows or info.chunk_offset[1] // tw not in cols:
                    damaged.append((info.byte_offset, info.size))

            dset.id.chunk_iter(visit)
    with open(path, "r+b") as handle:
        for offset, size in damaged:
            handle.seek(offset)
            handle.write(b"\xff" * size)
    return len(damaged)


def test_reads_only_the_chunks_of_the_selection(tmp_path, rich_file, full):
    path = tmp_path / "damaged.loom"
    shutil.copyfile(rich_file, path)
    cells, genes = np.array([3, 70, 71, 140]), np.array([5, 50, 89])
    assert _damage_chunks_outside(path, cells, genes) > 100
    with pytest.raises(LoomFormatError, match="damaged"):
        read_loom_full(path)  # the full read meets the damage
    part = read_loom_full(path, obs=cells, var=genes)
    assert_reads_equal(full[cells, genes].copy(), part)


@pytest.fixture
def small_graph_blocks(monkeypatch):
    """Edges read 7 at a time, so that every graph of the test files spans many blocks."""
    monkeypatch.setattr("scanpy_loomio._read.graphs.GRAPH_BLOCK", 7)


def _add_foreign_graph(path: Path, n: int, *, a_from: int = 1) -> None:
    """An untagged edge list as other tools write it: ``a`` counting from ``a_from``, integer weights."""
    rng = np.random.default_rng(5)
    a, b = rng.integers(0, n, 400), rng.integers(0, n, 400)
    with h5py.File(path, "a") as f:
        g = f.create_group("col_graphs/knn")
        g["a"], g["b"], g["w"] = a + a_from, b, rng.integers(1, 9, 400).astype(np.int32)


def test_graphs_read_in_blocks(tmp_path, rich_file, small_graph_blocks):
    path = tmp_path / "foreign_graph.loom"
    shutil.copyfile(rich_file, path)
    _add_foreign_graph(path, 150)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LoomReadWarning)
        whole = read_loom_full(path)
        cells = np.array([0, 4, 9, 33, 34, 80, 149])
        part = read_loom_full(path, obs=cells)
    assert whole.obsp["knn"].nnz > 300  # the base (1, as the values say) was found over all blocks
    assert_reads_equal(whole[cells].copy(), part)


def test_graph_damaged_in_one_block_fails_as_a_whole_read(tmp_path, rich_file, small_graph_blocks):
    path = tmp_path / "damaged_graph.loom"
    shutil.copyfile(rich_file, path)
    with h5py.File(path, "a") as f:
        name = next(iter(f["col_graphs"]))
        f[f"col_graphs/{name}/b"][30] = 10_000  # a vertex that does not exist, in the fifth block
    with pytest.raises(LoomFormatError) as whole:
        read_loom_full(path)
    with pytest.raises(LoomFormatError) as part:
        read_loom_full(path, obs=[1, 2, 3])
    assert str(part.value) == str(whole.value)
    assert "10000" in str(part.value)


# -- the engine -----------------------------------------------------------------------------------------------------
def _datasets(f: h5py.File, x: sparse.csr_matrix) -> None:
    dense = x.toarray()
    write_matrix(f, "deflate", x)
    write_matrix(f, "int16", x.astype(np.int16), chunks=(32, 100))
    write_matrix(f, "float16", dense.astype(np.float16))
    f.create_dataset(
        "shuffle_big_endian", data=dense.T.astype(">f8"), chunks=(50, 70), compression="gzip", shuffle=True
    )
    f.create_dataset("contiguous", data=dense.T)
    f.create_dataset("bool", data=dense.T != 0, chunks=(64, 64))
    f.create_dataset("fill", data=dense.T, chunks=(64, 64), compression="gzip", fillvalue=3.0)
    f.create_dataset("only_fill", shape=dense.T.shape, dtype="f4", chunks=(64, 64), compression="gzip", fillvalue=-1.5)
    f.create_dataset("lzf", data=dense.T, chunks=(64, 64), compression="lzf")


DATASETS = ["deflate", "int16", "float16", "shuffle_big_endian", "contiguous", "bool", "fill", "only_fill", "lzf"]


@pytest.fixture(scope="module")
def engine_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("engine") / "datasets.h5"
    x = sparse.random(700, 333, density=0.1, format="csr", dtype=np.float32, random_state=0)
    with h5py.File(path, "w") as f:
        _datasets(f, x)
    return path


@pytest.mark.parametrize("name", DATASETS)
@pytest.mark.parametrize("fmt", ["csr", "csc", "dense"])
def test_selection_equals_the_same_part_of_the_whole(engine_file, name, fmt):
    rng = np.random.default_rng(7)
    with h5py.File(engine_file, "r") as f:
        dset = f[name]
        n_genes, n_cells = dset.shape
        whole = read_matrix(dset, format=fmt)
        for rows, cols in [
            (None, np.sort(rng.choice(n_cells, 50, replace=False))),
            (np.sort(rng.choice(n_genes, 40, replace=False)), None),
            (np.sort(rng.choice(n_genes, 3, replace=False)), np.sort(rng.choice(n_cells, 300, replace=False))),
            (np.arange(0, 0), np.arange(5)),
            (None, None),
        ]:
            got = read_selection(dset, rows, cols, format=fmt, n_threads=2)
            r = np.arange(n_genes) if rows is None else rows
            c = np.arange(n_cells) if cols is None else cols
            want = whole[np.ix_(c, r)] if fmt == "dense" else whole[c][:, r]
            assert type(got) is type(want) and got.dtype == want.dtype and got.shape == want.shape
            if fmt == "dense":
                assert np.array_equal(got.view(np.uint8), want.view(np.uint8))
            else:
                assert got.format == fmt and got.has_canonical_format
                assert (got != want).nnz == 0 and got.nnz == want.nnz


@pytest.mark.parametrize("libver", ["earliest", "latest"])
@pytest.mark.parametrize("userblock", [0, 512])
def test_chunk_index_of_a_selection(tmp_path, libver, userblock):
    """The B-tree walk finds what HDF5's chunk listing finds (``latest`` files use another index: the fallback)."""
    path = tmp_path / "index.h5"
    x = sparse.random(3000, 900, density=0.05, format="csr", dtype=np.float32, random_state=1)
    with h5py.File(path, "w", libver=libver, userblock_size=userblock) as f:
        write_matrix(f, "matrix", x, chunks=(16, 16))  # thousands of chunks: a B-tree several levels deep
    rng = np.random.default_rng(0)
    with h5py.File(path, "r") as f:
        dset = f["matrix"]
        assert (read_matrix(dset) != x).nnz == 0  # HDF5 lists the chunks of "latest" files at wrong offsets
        assert (read_selection(dset, np.array([3, 500]), np.arange(0, 3000, 7)) != x[::7][:, [3, 500]]).nnz == 0
        whole = ChunkLayout.inspect(dset)
        if whole is None:  # so the fast path leaves such files to h5py
            assert libver == "latest"
            return
        grid = whole.byte_offsets.shape
        for rows, cols in [
            (np.sort(rng.choice(grid[0], 7, replace=False)), np.sort(rng.choice(grid[1], 30, replace=False))),
            (None, np.array([0, grid[1] - 1])),
            (np.array([grid[0] - 1]), None),
        ]:
            part = selection_layout(dset, rows, cols)
            pick = np.ix_(np.arange(grid[0]) if rows is None else rows, np.arange(grid[1]) if cols is None else cols)
            assert np.array_equal(part.byte_offsets, whole.byte_offsets[pick])
            assert np.array_equal(part.sizes, whole.sizes[pick])
            assert np.array_equal(part.filter_masks, whole.filter_masks[pick])
        assert (part.byte_offsets >= 0).any()


def test_damaged_chunk_names_the_file_and_the_chunk(tmp_path):
    path = tmp_path / "broken.loom"
    x = sparse.random(200, 100, density=0.3, format="csr", dtype=np.float32, random_state=2)
    with h5py.File(path, "w") as f:
        write_matrix(f, "matrix", x)
    with h5py.File(path, "r") as f:
        info = f["matrix"].id.get_chunk_info_by_coord((64, 128))
    with open(path, "r+b") as handle:
        handle.seek(info.byte_offset)
        handle.write(b"\x00" * info.size)
    with h5py.File(path, "r") as f, pytest.raises(LoomFormatError, match=r"broken\.loom: the chunk at \(64, 128\)"):
        read_selection(f["matrix"], np.array([70]), np.array([130, 150]))


def test_damaged_chunk_index_fails_as_a_format_error(tmp_path, rich_file):
    path = tmp_path / "index.loom"
    shutil.copyfile(rich_file, path)
    data = bytearray(path.read_bytes())
    nodes = [i for i in range(len(data) - 5) if data[i : i + 5] == b"TREE\x01"]  # chunk index nodes
    assert len(nodes) > 3
    for at in nodes[1:]:
        data[at + 6 : at + 8] = b"\xff\xff"  # entries used: far more than a node holds
    path.write_bytes(bytes(data))
    with pytest.raises(LoomFormatError, match=path.name):
        read_loom_full(path, obs=[1, 2], var=[3])


@pytest.mark.parametrize("chunked", [True, False])
def test_file_stored_cells_by_genes(tmp_path, chunked):
    """A /matrix stored turned round (cells × genes) is read turned back, in parts and lazily too."""
    path = tmp_path / "turned.loom"
    counts = sparse.random(300, 70, density=0.2, format="csr", dtype=np.float32, random_state=9).toarray()
    with h5py.File(path, "w") as f:
        storage = {"chunks": (64, 16), "compression": "gzip"} if chunked else {}
        f.create_dataset("matrix", data=counts, **storage)  # cells × genes
        f["row_attrs/Gene"] = np.array([f"g{j}".encode() for j in range(70)])
        f["col_attrs/CellID"] = np.array([f"c{i}".encode() for i in range(300)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LoomReadWarning)
        whole = read_loom_full(path)
        obs, var = np.array([299, 5, 64, 65, 200]), np.array([69, 0, 33])
        part = read_loom_full(path, obs=obs, var=var)
    assert np.array_equal(whole.X.toarray(), counts)
    assert_reads_equal(whole[obs, var].copy(), part)
    pytest.importorskip("dask.array")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LoomReadWarning)
        lazy = read_loom_lazy(path, chunks=100)
    assert set(lazy.X.chunks[0][:-1]) == {128}  # 100 cells rounded up to chunks of 64 (the default unchunked)
    assert_reads_equal(whole, lazy.to_memory())


# -- chunks inflated only as far as the selected genes --------------------------------------------------------------
def _libdeflate_or_skip():
    from scanpy_loomio._matrix.deflate import libdeflate

    lib = libdeflate()
    if lib is None:
        pytest.skip("libdeflate is not installed here")
    return lib


def _streams(tile: bytes) -> dict[str, bytes]:
    """``tile`` as zlib streams of every shape a file can hold: one Huffman block, stored, several blocks."""
    import zlib

    from isal import isal_zlib

    several = zlib.compressobj(6)
    halves = several.compress(tile[: len(tile) // 2]) + several.flush(zlib.Z_FULL_FLUSH)
    return {
        "zlib-1": zlib.compress(tile, 1),
        "zlib-9": zlib.compress(tile, 9),
        "isal": isal_zlib.compress(tile, 1),
        "stored": zlib.compress(tile, 0),
        "two-blocks": halves + several.compress(tile[len(tile) // 2 :]) + several.flush(),
    }


@pytest.mark.parametrize("wanted", [256, 4096, 16384 - 300, 16384])
def test_chunks_are_inflated_only_as_far_as_the_bytes_wanted(wanted):
    from scanpy_loomio._matrix.deflate import LONGEST_MATCH
    from scanpy_loomio._matrix.tiles import load_kernels

    lib = _libdeflate_or_skip()
    assert lib.stops_in_order  # libdeflate writes a Huffman block in order and stops before what does not fit
    rng = np.random.default_rng(3)
    counts = ((rng.random((64, 64)) < 0.08) * rng.integers(1, 50, (64, 64))).astype(np.float32)
    tile = counts.tobytes()
    streams = _streams(tile)
    packed = np.frombuffer(b"".join(streams.values()), dtype=np.uint8)
    lengths = np.array([len(s) for s in streams.values()], dtype=np.int64)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
    n = len(streams)
    out = np.full(n * len(tile), 0xAB, dtype=np.uint8)
    handle = lib.alloc()
    try:
        bad = load_kernels().inflate_chunks(
            lib.zlib_decompress, handle, packed, starts, lengths, np.arange(n, dtype=np.int64), out, len(tile),
            np.full(n, wanted, dtype=np.int64), LONGEST_MATCH, np.zeros(1, dtype=np.uint64),
        )  # fmt: skip
    finally:
        lib.free(handle)
    assert bad == -1
    for k, name in enumerate(streams):
        got = out[k * len(tile) : (k + 1) * len(tile)].tobytes()
        assert got[:wanted] == tile[:wanted], name
        cut_short = name in ("zlib-1", "zlib-9", "isal") and wanted + LONGEST_MATCH < len(tile)
        if cut_short:  # the rest of the tile was not written
            assert got[wanted + LONGEST_MATCH :] == b"\xab" * (len(tile) - wanted - LONGEST_MATCH), name
        else:  # stored blocks and streams of several blocks are inflated whole
            assert got == tile, name


def test_a_chunk_damaged_before_the_bytes_wanted_still_fails():
    from scanpy_loomio._matrix.deflate import LONGEST_MATCH
    from scanpy_loomio._matrix.tiles import load_kernels

    lib = _libdeflate_or_skip()
    rng = np.random.default_rng(4)
    tile = ((rng.random((64, 64)) < 0.08) * rng.integers(1, 50, (64, 64))).astype(np.float32).tobytes()
    import zlib

    stream = bytearray(zlib.compress(tile, 6))
    stream[2] |= 0b110  # the block type bits: 3 is reserved, so the stream is invalid from its first block
    handle = lib.alloc()
    try:
        bad = load_kernels().inflate_chunks(
            lib.zlib_decompress, handle, np.frombuffer(bytes(stream), dtype=np.uint8), np.zeros(1, dtype=np.int64),
            np.array([len(stream)]), np.zeros(1, dtype=np.int64), np.zeros(len(tile), dtype=np.uint8), len(tile),
            np.array([1024]), LONGEST_MATCH, np.zeros(1, dtype=np.uint64),
        )  # fmt: skip
    finally:
        lib.free(handle)
    assert bad == 0


@pytest.mark.parametrize("level", [1, 9])
def test_every_gene_position_in_a_chunk_reads_right(tmp_path, level):
    rng = np.random.default_rng(level)
    x = sparse.random(150, 130, density=0.2, format="csr", dtype=np.float32, random_state=level)
    path = tmp_path / "genes.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("gzip", data=x.T.toarray(), chunks=(64, 64), compression="gzip", compression_opts=level)
        write_matrix(f, "engine", x)
    with h5py.File(path, "r") as f:
        for name in ("gzip", "engine"):
            whole = read_matrix(f[name], format="dense")
            cells = np.sort(rng.choice(150, 20, replace=False))
            for gene in range(130):
                for genes in (np.array([gene]), np.unique([gene, (gene * 7) % 130])):
                    got = read_selection(f[name], genes, cells, format="dense")
                    assert np.array_equal(got, whole[np.ix_(cells, genes)]), (name, genes)


# -- matrices read while the annotations are --------------------------------------------------------------------------
def _threads_reading_matrices(monkeypatch) -> list[str]:
    """Names of the threads that read matrix chunks from now on."""
    import threading

    from scanpy_loomio._matrix import subset

    names: list[str] = []
    read = subset.PendingSelection.read

    def recorded(self):
        names.append(threading.current_thread().name)
        return read(self)

    monkeypatch.setattr(subset.PendingSelection, "read", recorded)
    return names


@pytest.mark.parametrize(
    ("obs", "var", "early"),
    [
        (np.array([120, 3, 3, 77]), np.arange(0, 90, 4), True),
        (slice(140, 4, -9), slice(None, 30), True),
        ([5, 6, 149], None, True),
        (np.arange(150) % 3 == 0, [True] * 45 + [False] * 45, True),
        (["cell9", "cell2"], [1, 2], False),
        (pd.Series(np.arange(150) < 20, index=[f"cell{i}" for i in range(150)]), None, False),
        (slice("cell3", "cell30"), None, False),
    ],
)
def test_selections_by_position_read_the_matrices_beside_the_annotations(monkeypatch, rich_file, full, obs, var, early):
    threads = _threads_reading_matrices(monkeypatch)
    for n_threads in (2, 1):  # one thread: one thing at a time
        threads.clear()
        part = read_loom_full(rich_file, obs=obs, var=var, n_threads=n_threads)
        assert_reads_equal(full[obs, slice(None) if var is None else var].copy(), part)
        assert threads  # X and every stored layer
        beside = [name.startswith("scanpy-loomio-read") for name in threads]
        assert all(beside) if early and n_threads > 1 else not any(beside)


def test_a_damaged_chunk_read_beside_the_annotations_names_the_file(tmp_path):
    path = tmp_path / "broken.loom"
    adata = AnnData(sparse.random(200, 100, density=0.3, format="csr", dtype=np.float32, random_state=2))
    write_loom_full(path, adata)
    with h5py.File(path, "r") as f:
        info = f["matrix"].id.get_chunk_info_by_coord((64, 128))
    with open(path, "r+b") as handle:
        handle.seek(info.byte_offset)
        handle.write(b"\x00" * info.size)
    with pytest.raises(LoomFormatError, match=r"broken\.loom.*the chunk at \(64, 128\)"):
        read_loom_full(path, obs=[130, 150], var=[70])


def test_an_interrupted_subset_read_lets_the_matrix_thread_go_at_once(tmp_path, monkeypatch):
    import threading
    import time

    from scanpy_loomio._matrix import subset
    from scanpy_loomio._read import selection

    path = tmp_path / "many_columns.loom"
    write_loom_full(path, rich(3000, 64, extras=False), chunks=(64, 8))  # 375 chunk columns, one per task below
    monkeypatch.setattr(subset, "TASK_BYTES", 1)
    tasks_read: list[str] = []
    sparse_columns = subset._SelectionReader._sparse_columns

    def slow_columns(self, units):
        tasks_read.append(threading.current_thread().name)
        time.sleep(0.01)  # 375 tasks: about 4 s to read the whole selection
        return sparse_columns(self, units)

    def interrupted(*args, **kwargs):
        time.sleep(0.2)  # the matrix thread has started
        raise KeyboardInterrupt

    monkeypatch.setattr(subset._SelectionReader, "_sparse_columns", slow_columns)
    monkeypatch.setattr(selection, "read_subset_annotations", interrupted)
    with pytest.raises(KeyboardInterrupt):
        read_loom_full(path, obs=np.arange(0, 3000, 2), var=[1, 2], n_threads=2)
    # the interrupt came after about 20 tasks: the thread stopped after the one at hand, not after all 375
    assert 0 < len(tasks_read) < 100
