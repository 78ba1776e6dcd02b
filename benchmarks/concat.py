"""Benchmark: ``scanpy_loomio.concat_loom`` against ``loompy.combine``, each in a fresh process.

Usage::

    python benchmarks/concat.py                                  # 8 files of 10,000 cells × 30,000 genes, 3 layers
    python benchmarks/concat.py --files 3 --cells 200 --genes 500  # a quick check that it works

The input files (``/matrix`` and three layers, gene ids in ``Accession``, cell ids in ``CellID``) are generated once
into ``--data-dir`` (default ``benchmarks/data/concat-<size>``). Each tool then concatenates them ``--rounds`` times,
alternating, in a fresh Python process; the process reports the wall time of the call and its peak resident memory
above the level after imports. The table shows medians and the ratios loompy / scanpy-loomio (> 1: scanpy-loomio is
faster or smaller).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

LAYERS = ("spliced", "unspliced", "ambiguous")


def make_inputs(folder: Path, n_files: int, n_cells: int, n_genes: int, density: float) -> list[Path]:
    """Write the input files (once; existing ones of the right shape are reused)."""
    import anndata as ad
    import numpy as np

    import scanpy_loomio
    from benchmarks._data import count_matrix

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n_files):
        path = folder / f"sample{i}.loom"
        paths.append(path)
        if path.exists():
            continue
        x = count_matrix(n_cells, n_genes, density, seed=i)
        adata = ad.AnnData(x)
        adata.obs_names = [f"sample{i}:CELL{j:07d}x" for j in range(n_cells)]
        adata.var_names = [f"GENE{j}" for j in range(n_genes)]
        adata.var["gene_ids"] = [f"ENSG{j:011d}" for j in range(n_genes)]
        adata.obs["n_counts"] = np.asarray(x.sum(axis=1)).ravel()
        for k, name in enumerate(LAYERS):
            layer = x.copy()
            layer.data = np.maximum(layer.data - k, 0).astype(np.uint32)
            layer.eliminate_zeros()
            adata.layers[name] = layer.astype(np.uint32)
        scanpy_loomio.write_loom_full(path, adata, convention="velocyto", convert_strings_to_categoricals=False)
    return paths


def _run_child(tool: str, output: Path, inputs: list[Path]) -> dict[str, float]:
    """Run one concatenation in a fresh process; return its time and peak memory."""
    command = [sys.executable, __file__, "--child", tool, str(output), *map(str, inputs)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        msg = f"{tool} failed:\n{result.stderr}"
        raise RuntimeError(msg)
    return json.loads(result.stdout.strip().splitlines()[-1])


def child(tool: str, output: str, inputs: list[str]) -> None:
    """In the fresh process: concatenate with ``tool`` and print the measurements as one JSON line."""
    import warnings

    warnings.filterwarnings("ignore")
    from benchmarks._runner import PeakMemory, _current_rss

    if tool == "loompy":
        import loompy

        def operation() -> None:
            loompy.combine(inputs, output, key="Accession")
    else:
        import scanpy_loomio

        def operation() -> None:
            scanpy_loomio.concat_loom(inputs, output, var_key="Accession", progress=False)

    base = _current_rss()
    peak = PeakMemory()
    peak.start()
    start = time.perf_counter()
    operation()
    seconds = time.perf_counter() - start
    extra = max(0, peak.stop() - base)
    print(json.dumps({"seconds": seconds, "extra_bytes": extra, "output_bytes": Path(output).stat().st_size}))


def _fmt_bytes(value: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"


def main(argv: list[str] | None = None) -> None:
    """Generate the inputs, run both tools and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--cells", type=int, default=10_000, help="cells per file")
    parser.add_argument("--genes", type=int, default=30_000)
    parser.add_argument("--density", type=float, default=0.065)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        tool, output, *inputs = args.child
        child(tool, output, inputs)
        return
    size = f"{args.files}x{args.cells}x{args.genes}"
    folder = args.data_dir or Path(__file__).resolve().parent / "data" / f"concat-{size}"
    inputs = make_inputs(folder, args.files, args.cells, args.genes, args.density)
    results: dict[str, list[dict[str, float]]] = {"scanpy-loomio": [], "loompy": []}
    for _ in range(args.rounds):
        for tool in results:
            output = folder / f"combined-{tool}.loom"
            output.unlink(missing_ok=True)
            results[tool].append(_run_child("loompy" if tool == "loompy" else "loomio", output, inputs))
            output.unlink(missing_ok=True)
    medians = {
        tool: {key: statistics.median(r[key] for r in runs) for key in runs[0]} for tool, runs in results.items()
    }
    print(
        f"concatenating {args.files} files of {args.cells} cells × {args.genes} genes, 3 layers ({args.rounds} rounds)"
    )
    print(f"{'tool':<15}{'time':>12}{'peak memory':>16}{'output':>14}")
    for tool, m in medians.items():
        print(f"{tool:<15}{m['seconds']:>11.2f}s{_fmt_bytes(m['extra_bytes']):>16}{_fmt_bytes(m['output_bytes']):>14}")
    ours, theirs = medians["scanpy-loomio"], medians["loompy"]
    print(f"loompy / scanpy-loomio time: {theirs['seconds'] / max(ours['seconds'], 1e-9):.2f}x")
    print(f"loompy / scanpy-loomio peak memory: {theirs['extra_bytes'] / max(ours['extra_bytes'], 1):.2f}x")


if __name__ == "__main__":
    main()
