"""The scale benchmark at a small size: the file written from its lazy generator reads back as the generator's
matrix, and its reductions are numpy's. ``benchmarks/scale.py`` runs the same at up to a million cells."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import sparse

from scanpy_loomio import read_loom_full, read_loom_lazy, write_loom_full

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "scale.py"


def _load_scale():
    spec = importlib.util.spec_from_file_location("benchmarks_scale", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


scale = _load_scale()
#: 20,000 cells × 2,000 genes at 5 %, in blocks of 3,000 cells (the last one shorter).
SPEC = scale.Spec(20_000, 2_000, 0.05, seed=3, block_cells=3_000)


@pytest.fixture(scope="module")
def counts():
    return scale.synthetic_counts(SPEC)


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    path = tmp_path_factory.mktemp("scale") / "scale.loom"
    adata = scale.synthetic_anndata(SPEC)
    assert isinstance(adata.X, da.Array) and adata.X.chunks[0] == (3_000,) * 6 + (2_000,)
    write_loom_full(path, adata, progress=False)
    return path


def test_blocks_are_made_again_the_same_and_canonical():
    block = scale.synthetic_block(SPEC, 2)
    again = scale.synthetic_block(SPEC, 2)
    assert isinstance(block, sparse.csr_matrix) and block.dtype == np.float32
    assert block.shape == (3_000, 2_000) and block.has_canonical_format
    assert np.array_equal(block.indptr, again.indptr) and np.array_equal(block.indices, again.indices)
    assert np.array_equal(block.data, again.data)
    assert (block != scale.synthetic_block(SPEC, 3)).nnz > 0
    assert abs(block.nnz / (3_000 * 2_000) - 0.05) < 0.002
    assert block.data.min() >= 1 and np.array_equal(block.data, np.round(block.data))
    copy = block.copy()
    copy.has_canonical_format = False
    copy.sum_duplicates()  # sorts and merges for real: nothing changes
    assert np.array_equal(copy.indices, block.indices)


def test_the_lazy_matrix_computes_to_the_blocks(counts):
    lazy = scale.synthetic_matrix(SPEC)
    assert lazy.dtype == np.float32 and lazy.shape == counts.shape
    assert (lazy.compute() != counts).nnz == 0
    start, end = SPEC.block_rows(6)
    assert (lazy.blocks[6].compute() != counts[start:end]).nnz == 0


@pytest.mark.parametrize("reader", ["full", "lazy"])
def test_the_written_file_reads_back_as_generated(written, counts, reader):
    adata = read_loom_full(written) if reader == "full" else read_loom_lazy(written, chunks=2_500).to_memory()
    x = adata.X
    assert isinstance(x, sparse.csr_matrix) and x.dtype == np.float32 and x.shape == counts.shape
    assert (x != counts).nnz == 0
    assert list(adata.obs_names[:2]) == ["cell_0", "cell_1"] and adata.var_names[-1] == "gene_1999"
    assert np.array_equal(adata.obs["block"], np.arange(SPEC.n_cells) // SPEC.block_cells)
    assert np.array_equal(adata.var["position"], np.arange(SPEC.n_genes))


def test_the_reductions_are_numpys(written, counts):
    x = read_loom_lazy(written, chunks=2_500).X
    gene_mean, cell_total = dask.compute(*scale.reductions(x))
    assert gene_mean.shape == (SPEC.n_genes,) and cell_total.shape == (SPEC.n_cells,)
    dense = counts.toarray()
    np.testing.assert_allclose(gene_mean, dense.mean(axis=0, dtype=np.float64), rtol=1e-12)
    assert np.array_equal(cell_total, dense.sum(axis=1, dtype=np.float64))
    # the benchmark's own check passes, and fails on a wrong total
    assert scale._check_reductions(SPEC, written, gene_mean, cell_total, None)["verified_blocks"] == 7
    wrong = cell_total.copy()
    wrong[-1] += 1
    with pytest.raises(AssertionError, match="block 6"):
        scale._check_reductions(SPEC, written, gene_mean, wrong, None)


def test_the_script_runs_each_operation_in_a_process_of_its_own(tmp_path):
    command = [sys.executable, str(SCRIPT), "--cells", "1500", "--cells", "3000", "--genes", "300"]
    command += ["--block-cells", "1000", "--data-dir", str(tmp_path), "--threads", "1"]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    assert "| 3,000 | `read_loom_lazy` + gene means, cell totals |" in result.stdout
    (results,) = tmp_path.glob("scale-*.json")
    run = json.loads(results.read_text())
    assert [(r["cells"], r["operation"]) for r in run["results"]] == [
        (1500, "write"),
        (1500, "reduce"),
        (3000, "write"),
        (3000, "reduce"),
    ]
    assert all(r["peak_bytes"] >= r["extra_bytes"] > 0 and r["file_bytes"] > 0 for r in run["results"])
    assert run["results"][-1]["verified_blocks"] == 3
    assert {"python", "anndata", "dask", "h5py", "numpy"} <= run["versions"].keys()
    assert (tmp_path / "scale-3000x300-d0.05-s0.loom").exists()
