"""Benchmark: subset and lazy reads against the full read of the same file, each in a fresh process.

Usage::

    python benchmarks/subset.py                          # the 50,000 × 30,000 file (generated once, takes minutes)
    python benchmarks/subset.py --size S                 # 5,000 × 20,000
    python benchmarks/subset.py --file data.loom         # any loom file
    python benchmarks/subset.py --cells 0.01 --genes 200 --rounds 3
    python benchmarks/subset.py --cold                   # the first read of a process, module loading included

Operations (each in a fresh Python process, imports and the selection made before the clock starts):

- ``full``: ``read_loom_full(file)``;
- ``subset``: ``read_loom_full(file, obs=cells, var=genes)``, a fraction of the cells scattered at random
  (``--cells``, default 1 %) and a number of genes at random (``--genes``, default 200);
- ``lazy-subset``: ``read_loom_lazy(file, obs=cells, var=genes).to_memory()`` on dask's default scheduler;
- ``lazy-sum``: per-gene totals of ``read_loom_lazy(file).X``, a block at a time: a pass over every cell in bounded
  memory.

Before the clock starts, each process runs its operation once on a small file (``--cold`` skips this), so the
numbers are those of the read itself, not of loading modules and compiled kernels the first read of a process
pays for (about 0.5 s and 100 MiB, the same for every operation).

Rounds are interleaved; the table shows medians of the wall time and of the peak resident memory above the level
before the call, and both as ratios to the full read measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

HERE = Path(__file__).resolve().parent
OPERATIONS = ("full", "subset", "lazy-subset", "lazy-sum")


def selection(path: str, cell_fraction: float, n_genes: int, seed: int = 0) -> tuple:
    """The cells (sorted positions, scattered at random) and genes (positions at random) every round reads."""
    import h5py
    import numpy as np

    with h5py.File(path, "r") as f:
        genes_total, cells_total = f["matrix"].shape
    rng = np.random.default_rng(seed)
    cells = np.sort(rng.choice(cells_total, max(1, round(cell_fraction * cells_total)), replace=False))
    genes = np.sort(rng.choice(genes_total, min(n_genes, genes_total), replace=False))
    return cells, genes


def run_operation(operation: str, path: str | Path, cells: Any, genes: Any) -> Any:
    """One read of ``path`` as ``operation`` names it."""
    import numpy as np

    import scanpy_loomio

    if operation == "full":
        return scanpy_loomio.read_loom_full(path, progress=False)
    if operation == "subset":
        return scanpy_loomio.read_loom_full(path, obs=cells, var=genes, progress=False)
    if operation == "lazy-subset":
        return scanpy_loomio.read_loom_lazy(path, obs=cells, var=genes).to_memory()
    if operation == "lazy-sum":
        x = scanpy_loomio.read_loom_lazy(path).X
        totals = x.map_blocks(lambda block: np.asarray(block.sum(axis=0)), chunks=((1,) * x.numblocks[0], x.chunks[1]))
        return totals.sum(axis=0).compute()
    msg = f"unknown operation {operation!r}"
    raise ValueError(msg)


def warm_up(operation: str, directory: str) -> None:
    """Run ``operation`` once on a small file like the benchmark's (text, categories, embeddings, graphs, 2 layers)."""
    import numpy as np

    import scanpy_loomio
    from benchmarks._data import synthetic_adata

    small = Path(directory) / "warm-up.loom"
    scanpy_loomio.write_loom_full(small, synthetic_adata(300, 200, seed=1), progress=False)
    run_operation(operation, small, np.arange(0, 300, 7), np.arange(0, 200, 3))


def child(operation: str, path: str, cell_fraction: float, n_genes: int, *, cold: bool = False) -> None:
    """In the fresh process: run one operation and print its measurements as one JSON line."""
    import gc
    import tempfile
    import time
    import warnings

    warnings.filterwarnings("ignore")
    import dask.array  # noqa: F401 - imported before the clock starts, as scanpy_loomio is

    import scanpy_loomio  # noqa: F401
    from benchmarks._runner import PeakMemory, _current_rss, adata_bytes

    cells, genes = selection(path, cell_fraction, n_genes)
    if not cold:
        with tempfile.TemporaryDirectory() as directory:
            warm_up(operation, directory)
    gc.collect()
    baseline = _current_rss()
    peak = PeakMemory()
    peak.start()
    start = time.perf_counter()
    result = run_operation(operation, path, cells, genes)
    seconds = time.perf_counter() - start
    top = peak.stop()
    size = adata_bytes(result) if hasattr(result, "obs") else int(result.nbytes)
    record = {"operation": operation, "seconds": seconds, "extra_bytes": max(0, top - baseline), "result_bytes": size}
    print(json.dumps(record))


def run_child(operation: str, path: Path, cell_fraction: float, n_genes: int, *, cold: bool = False) -> dict:
    """Run one operation in a fresh process and return its measurements."""
    command = [sys.executable, __file__, "--child", operation, str(path), str(cell_fraction), str(n_genes)]
    command += ["--cold"] if cold else []
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        msg = f"{operation} failed:\n{result.stderr}"
        raise RuntimeError(msg)
    return json.loads(result.stdout.strip().splitlines()[-1])


def make_file(size: str, data_dir: Path) -> Path:
    """The benchmark's loom file at a named size (the synthetic data of benchmarks/run.py), written once."""
    from benchmarks._data import SIZES

    cells, genes = SIZES[size]
    data_dir.mkdir(parents=True, exist_ok=True)
    h5ad = data_dir / f"synthetic_{size}.h5ad"
    loom = data_dir / f"synthetic_{size}.loom"
    if not h5ad.exists():
        subprocess.run(
            [sys.executable, str(HERE / "_data.py"), str(h5ad), "--cells", str(cells), "--genes", str(genes)],
            check=True,
        )
    if not loom.exists():
        code = (
            "import sys, anndata, scanpy_loomio; sys.path.insert(0, sys.argv[3]); "
            "scanpy_loomio.write_loom_full(sys.argv[2], anndata.read_h5ad(sys.argv[1]), progress=False)"
        )
        subprocess.run([sys.executable, "-c", code, str(h5ad), str(loom), str(HERE.parent)], check=True)
    return loom


def table(results: dict[str, list[dict]]) -> str:
    """Markdown table of medians, with ratios to the full read."""

    def median(op: str, field: str) -> float:
        return statistics.median(r[field] for r in results[op])

    full_s, full_b = median("full", "seconds"), median("full", "extra_bytes")
    lines = [
        "| operation | seconds | peak extra memory | time / full read | memory / full read |",
        "|---|---|---|---|---|",
    ]
    for op in results:
        s, b = median(op, "seconds"), median(op, "extra_bytes")
        lines.append(f"| {op} | {s:.2f} | {b / 2**20:,.0f} MiB | {s / full_s:.1%} | {b / max(full_b, 1):.1%} |")
    return "\n".join(lines)


def main() -> None:
    """Run every operation ``--rounds`` times, interleaved, and print the table."""
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5]), cold=sys.argv[6:] == ["--cold"])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--file", type=Path, help="an existing loom file (default: generate the synthetic one)")
    parser.add_argument("--size", choices=("S", "M"), default="M")
    parser.add_argument("--data-dir", type=Path, default=HERE / "data")
    parser.add_argument("--cells", type=float, default=0.01, help="fraction of the cells to read (default 0.01)")
    parser.add_argument("--genes", type=int, default=200, help="number of genes to read (default 200)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--operations", nargs="+", choices=OPERATIONS, default=list(OPERATIONS))
    parser.add_argument("--cold", action="store_true", help="measure the first read of each process (no warm-up)")
    args = parser.parse_args()
    path = args.file or make_file(args.size, args.data_dir)
    operations = ["full", *[op for op in args.operations if op != "full"]]
    results: dict[str, list[dict]] = {op: [] for op in operations}
    for round_ in range(args.rounds):
        for op in operations:
            record = run_child(op, path, args.cells, args.genes, cold=args.cold)
            results[op].append(record)
            print(
                f"round {round_ + 1}: {op}: {record['seconds']:.2f} s, +{record['extra_bytes'] / 2**20:,.0f} MiB",
                file=sys.stderr,
            )
    first = ", first read of each process" if args.cold else ""
    print(f"{path} ({path.stat().st_size / 2**20:,.0f} MiB): {args.cells:.1%} of the cells, {args.genes} genes{first}")
    print(table(results))


if __name__ == "__main__":
    main()
