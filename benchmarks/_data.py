"""Synthetic scRNA-seq data for the benchmarks.

X is CSR float32 integer counts at about the requested density, with genes detected at very different
rates (a few housekeeping genes in most cells, a long tail of rare ones) and cells of different depth, as in
real data; ``layers["counts"]`` is a second matrix of the same size. obs has 8 columns of the usual kinds,
obsm ``X_pca`` (50 components) and ``X_umap``, obsp a kNN ``distances``/``connectivities`` pair.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from scipy import sparse

if TYPE_CHECKING:
    import anndata as ad

#: Named sizes (cells, genes) from the performance targets.
SIZES = {"S": (5_000, 20_000), "M": (50_000, 30_000)}
DEFAULT_DENSITY = 0.065
N_NEIGHBORS = 15
_BAND_CELLS = 2_000


def _gene_rates(rng: np.random.Generator, n_genes: int, density: float) -> np.ndarray:
    """Per-gene detection probabilities with a heavy tail, scaled to a mean of ``density``."""
    raw = rng.lognormal(mean=0.0, sigma=1.6, size=n_genes)
    rates = raw / raw.mean() * density
    for _ in range(20):  # clipping lowers the mean; rescale until it settles
        rates = np.clip(rates, 1e-5, 0.95)
        rates *= density / rates.mean()
    return np.clip(rates, 1e-5, 0.95)


def count_matrix(n_cells: int, n_genes: int, density: float, seed: int) -> sparse.csr_matrix:
    """A CSR float32 matrix of integer counts with about ``density`` non-zeros, built a band of cells at a time."""
    rng = np.random.default_rng(seed)
    gene_rate = _gene_rates(rng, n_genes, density).astype(np.float32)
    depth = rng.lognormal(mean=0.0, sigma=0.35, size=n_cells).astype(np.float32)
    depth /= depth.mean()
    # Genes detected more often also have higher counts where detected.
    gene_mean = (0.2 + 4.0 * gene_rate / gene_rate.max()).astype(np.float32)
    indptr = np.zeros(n_cells + 1, dtype=np.int64)
    index_parts, data_parts = [], []
    for start in range(0, n_cells, _BAND_CELLS):
        stop = min(n_cells, start + _BAND_CELLS)
        prob = np.minimum(depth[start:stop, None] * gene_rate[None, :], np.float32(0.99))
        hit = rng.random(prob.shape, dtype=np.float32) < prob
        del prob
        rows, cols = np.nonzero(hit)
        del hit
        values = 1 + rng.poisson(gene_mean[cols] * depth[start + rows]).astype(np.float32)
        np.add.at(indptr, rows + start + 1, 1)
        index_parts.append(cols.astype(np.int32))
        data_parts.append(values)
    np.cumsum(indptr, out=indptr)
    indices = np.concatenate(index_parts)
    data = np.concatenate(data_parts)
    nnz = indices.shape[0]
    indptr = indptr.astype(np.int32 if nnz < 2**31 else np.int64)
    return sparse.csr_matrix((data, indices, indptr), shape=(n_cells, n_genes))


def knn_graphs(
    rng: np.random.Generator, n_cells: int, k: int = N_NEIGHBORS
) -> tuple[sparse.csr_matrix, sparse.csr_matrix]:
    """Random kNN ``distances`` and symmetric ``connectivities`` like scanpy's ``pp.neighbors`` produces."""
    k = min(k, max(n_cells - 1, 0))
    if k == 0:
        empty = sparse.csr_matrix((n_cells, n_cells), dtype=np.float32)
        return empty, empty.copy()
    rows = np.repeat(np.arange(n_cells), k)
    offsets = rng.integers(1, n_cells, size=n_cells * k)
    cols = (rows + offsets) % n_cells
    dist = rng.uniform(0.5, 5.0, size=n_cells * k).astype(np.float32)
    distances = sparse.csr_matrix((dist, (rows, cols)), shape=(n_cells, n_cells))
    distances.sum_duplicates()
    conn = distances.copy()
    conn.data = np.exp(-conn.data).astype(np.float32)
    connectivities = conn.maximum(conn.T).tocsr()
    return distances, connectivities


def synthetic_adata(n_cells: int, n_genes: int, density: float = DEFAULT_DENSITY, seed: int = 0) -> ad.AnnData:
    """The benchmark AnnData: counts in X and ``layers["counts"]``, 8 obs columns, embeddings and kNN graphs."""
    import anndata as ad

    rng = np.random.default_rng(seed)
    x = count_matrix(n_cells, n_genes, density, seed)
    counts = count_matrix(n_cells, n_genes, density, seed + 1)
    n_types = 12
    obs = pd.DataFrame(
        {
            "cell_type": pd.Categorical.from_codes(
                rng.integers(0, n_types, n_cells), [f"type_{i}" for i in range(n_types)]
            ),
            "batch": pd.Categorical.from_codes(rng.integers(0, 4, n_cells), ["b1", "b2", "b3", "b4"]),
            "sample": [
                f"donor{d}_rep{r}"
                for d, r in zip(rng.integers(0, 8, n_cells), rng.integers(0, 3, n_cells), strict=True)
            ],
            "n_counts": np.asarray(x.sum(axis=1)).ravel().astype(np.float32),
            "n_genes": np.diff(x.indptr).astype(np.int32),
            "pct_counts_mt": rng.uniform(0, 12, n_cells).astype(np.float32),
            "doublet_score": rng.beta(1, 12, n_cells),
            "is_doublet": rng.random(n_cells) < 0.05,
        },
        index=pd.Index([f"cell_{i:07d}" for i in range(n_cells)]),
    )
    var = pd.DataFrame(
        {
            "gene_ids": [f"ENSG{i:011d}" for i in range(n_genes)],
            "highly_variable": rng.random(n_genes) < 0.1,
            "means": np.asarray(x.mean(axis=0)).ravel().astype(np.float32),
        },
        index=pd.Index([f"gene_{j:06d}" for j in range(n_genes)]),
    )
    distances, connectivities = knn_graphs(rng, n_cells)
    adata = ad.AnnData(X=x, obs=obs, var=var, layers={"counts": counts})
    adata.obsm["X_pca"] = rng.standard_normal((n_cells, 50), dtype=np.float32)
    adata.obsm["X_umap"] = rng.standard_normal((n_cells, 2), dtype=np.float32)
    adata.obsp["distances"] = distances
    adata.obsp["connectivities"] = connectivities
    adata.uns["neighbors"] = {
        "connectivities_key": "connectivities",
        "distances_key": "distances",
        "params": {"n_neighbors": N_NEIGHBORS, "method": "umap", "metric": "euclidean"},
    }
    return adata


def main() -> None:
    """Generate a dataset and save it as an uncompressed ``.h5ad`` (run in its own process by ``run.py``)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("output")
    parser.add_argument("--cells", type=int, required=True)
    parser.add_argument("--genes", type=int, required=True)
    parser.add_argument("--density", type=float, default=DEFAULT_DENSITY)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    adata = synthetic_adata(args.cells, args.genes, args.density, args.seed)
    import os

    partial = f"{args.output.removesuffix('.h5ad')}.partial.h5ad"
    adata.write_h5ad(partial)  # uncompressed: fast to load before each timed write
    os.replace(partial, args.output)


if __name__ == "__main__":
    main()
