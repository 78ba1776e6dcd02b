"""Benchmark: files of many annotation columns (SCENIC's regulon scores, QC tables), each operation in a fresh process.

Usage::

    python benchmarks/annotations.py                          # 10,000 cells, 2,000 float32 columns, 3 rounds
    python benchmarks/annotations.py --columns 500 --rounds 1

The AnnData has ``--cells`` cells, 500 genes (a sparse matrix: the annotations are what is measured) and ``--columns``
``obs`` columns of float32 scores, plus a categorical. Operations, each in a fresh Python process with its imports
and the input loaded before the clock starts:

- ``write-loom``: ``write_loom_full``; ``write-h5ad``: ``write_h5ad`` (anndata's default, no compression);
- ``read-loom``: ``read_loom_full``; ``read-h5ad``: ``read_h5ad``.

The table shows medians over interleaved rounds, and each loom operation as a ratio to the same ``.h5ad`` one
measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

OPERATIONS = ("write-loom", "write-h5ad", "read-loom", "read-h5ad")


def wide_adata(n_cells: int, n_columns: int) -> Any:  # an AnnData; anndata is imported where it runs
    """``n_cells`` cells × 500 genes with ``n_columns`` float32 score columns and a categorical in ``obs``."""
    import anndata as ad
    import numpy as np
    import pandas as pd
    from scipy import sparse

    rng = np.random.default_rng(0)
    scores = {f"Regulon_{i}(+)": rng.random(n_cells, dtype=np.float32) for i in range(n_columns)}
    obs = pd.DataFrame(scores, index=[f"cell{i}" for i in range(n_cells)])
    obs["cluster"] = pd.Categorical(rng.choice([f"c{i}" for i in range(12)], n_cells))
    x = sparse.random(n_cells, 500, density=0.05, format="csr", dtype=np.float32, random_state=0)
    return ad.AnnData(x, obs=obs, var=pd.DataFrame(index=[f"gene{i}" for i in range(500)]))


def child(operation: str, directory: str, n_cells: int, n_columns: int) -> None:
    """In the fresh process: run one operation and print its wall time as one JSON line."""
    import time
    import warnings

    warnings.filterwarnings("ignore")
    import anndata as ad

    import scanpy_loomio

    folder = Path(directory)
    adata = wide_adata(n_cells, n_columns) if operation.startswith("write") else None
    start = time.perf_counter()
    if operation == "write-loom":
        scanpy_loomio.write_loom_full(folder / "out.loom", adata, progress=False)
    elif operation == "write-h5ad":
        adata.write_h5ad(folder / "out.h5ad")
    elif operation == "read-loom":
        scanpy_loomio.read_loom_full(folder / "wide.loom", progress=False)
    elif operation == "read-h5ad":
        ad.read_h5ad(folder / "wide.h5ad")
    print(json.dumps({"operation": operation, "seconds": time.perf_counter() - start}))


def run_child(operation: str, directory: Path, n_cells: int, n_columns: int) -> float:
    """Run one operation in a fresh process and return its wall time."""
    command = [sys.executable, __file__, "--child", operation, str(directory), str(n_cells), str(n_columns)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        msg = f"{operation} failed:\n{result.stderr}"
        raise RuntimeError(msg)
    return float(json.loads(result.stdout.strip().splitlines()[-1])["seconds"])


def main() -> None:
    """Write the inputs once, run every operation ``--rounds`` times, interleaved, and print the table."""
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=10_000)
    parser.add_argument("--columns", type=int, default=2_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        directory = Path(name)
        code = (
            "import sys; sys.path.insert(0, sys.argv[1]); import warnings; warnings.filterwarnings('ignore'); "
            "import scanpy_loomio; from benchmarks.annotations import wide_adata; "
            "a = wide_adata(int(sys.argv[3]), int(sys.argv[4])); "
            "scanpy_loomio.write_loom_full(sys.argv[2] + '/wide.loom', a, progress=False); "
            "a.write_h5ad(sys.argv[2] + '/wide.h5ad')"
        )
        inputs = [str(Path(__file__).resolve().parents[1]), name, str(args.cells), str(args.columns)]
        subprocess.run([sys.executable, "-c", code, *inputs], check=True)
        seconds: dict[str, list[float]] = {op: [] for op in OPERATIONS}
        for round_ in range(args.rounds):
            for op in OPERATIONS:
                seconds[op].append(run_child(op, directory, args.cells, args.columns))
                print(f"round {round_ + 1}: {op}: {seconds[op][-1]:.2f} s", file=sys.stderr)
    median = {op: statistics.median(values) for op, values in seconds.items()}
    print(f"{args.cells:,} cells, {args.columns:,} obs columns, {args.rounds} rounds")
    print("| operation | seconds | loom / h5ad |\n|---|---|---|")
    for op in OPERATIONS:
        ratio = f"{median[op] / median[op.replace('loom', 'h5ad')]:.2f}×" if op.endswith("loom") else ""
        print(f"| {op} | {median[op]:.2f} | {ratio} |")


if __name__ == "__main__":
    main()
