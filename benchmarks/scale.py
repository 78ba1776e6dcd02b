"""Scale run: a synthetic matrix of up to a million cells, made lazily, written, read lazily and reduced.

Usage::

    python benchmarks/scale.py --data-dir /data/scale                        # 50,000, then 1,000,000 cells
    python benchmarks/scale.py --cells 20000 --cells 50000 --data-dir /tmp/scale
    python benchmarks/scale.py --data-dir /data/scale --pyadata /path/to/venv/bin/adata

The matrix (cells × ``--genes``, CSR float32 integer counts, ``--density`` non-zero) is a dask array of blocks of
``--block-cells`` cells, each generated from its own seed (``numpy.random.default_rng((seed, block))``) when it is
computed: it never exists in memory as a whole, and any block can be made again on its own to check what was read.
The non-zeros are a Bernoulli(density) draw for every entry (geometric gaps between them, row after row); values
are 1, 2, 3, … with probabilities ½, ¼, ⅛, …. obs holds the names ``cell_0``, … and the block of each cell, var the
names ``gene_0``, … and their positions.

Operations, each in a fresh Python process (imports made and the lazy AnnData built before the clock starts):

- ``write``: ``write_loom_full(path, adata)`` of the AnnData with the dask X (the package writes it band by band);
- ``reduce``: ``read_loom_lazy(path)``, then the per-gene mean and the per-cell total of X computed together in one
  pass of dask over the file (each block reduced where it is read). Then, untimed, the results are checked: against
  the generator's blocks (every block by default, ``--verify-blocks`` limits it) and, exactly, the first and last
  blocks of cells read from the file against the generator's;
- ``convert`` (with ``--pyadata``): ``scanpy-loomio convert`` of the file to ``.h5ad``, the whole command timed,
  and ``pyadata``: pyadata-cli's ``adata convert`` of the same file to ``.h5ad``. The ``.h5ad`` files are deleted
  after they are measured.

Memory is the peak resident memory of the process: for ``write`` and ``reduce`` the kernel's peak counter, reset
just before the call (``_runner.PeakMemory``), reported absolute and above the level before the call; for the
conversions the peak of the whole command (``wait4``). Each size's ``.loom`` file is kept in ``--data-dir``; the
results go to the terminal (a Markdown table) and to ``scale-<time>.json`` in ``--data-dir``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent

MiB = 2**20
GiB = 2**30
DEFAULT_CELLS = (50_000, 1_000_000)
OPERATIONS = ("write", "reduce", "convert", "pyadata")
LABELS = {
    "write": "`write_loom_full` (dask X)",
    "reduce": "`read_loom_lazy` + gene means, cell totals",
    "convert": "`scanpy-loomio convert` → `.h5ad`",
    "pyadata": "pyadata-cli `adata convert` → `.h5ad`",
}
#: Counts by byte value: 1 for half of the 256 values, 2 for a quarter, … (a geometric distribution of mean 2).
_COUNTS = (1 + np.floor(-np.log2(1 - (np.arange(256) + 0.5) / 256))).astype(np.float32)


# -- the synthetic matrix ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Spec:
    """The synthetic matrix: its shape, density, seed and the number of cells per generated block."""

    n_cells: int
    n_genes: int = 30_000
    density: float = 0.05
    seed: int = 0
    block_cells: int = 10_000

    @property
    def n_blocks(self) -> int:
        """Number of generated blocks."""
        return -(-self.n_cells // self.block_cells)

    def block_rows(self, index: int) -> tuple[int, int]:
        """First and end cell of block ``index``."""
        start = index * self.block_cells
        return start, min(self.n_cells, start + self.block_cells)

    @property
    def chunks(self) -> tuple[tuple[int, ...], tuple[int]]:
        """The dask chunks: blocks of cells, all genes in each."""
        return tuple(b - a for a, b in map(self.block_rows, range(self.n_blocks))), (self.n_genes,)

    @property
    def name(self) -> str:
        """The stem of the file name of this matrix."""
        return f"scale-{self.n_cells}x{self.n_genes}-d{self.density:g}-s{self.seed}"


#: Seconds spent generating blocks in this process (summed over threads), for the report.
generate_seconds = 0.0
_generate_lock = threading.Lock()


def synthetic_block(spec: Spec, index: int) -> Any:
    """Block ``index`` of the matrix (cells ``spec.block_rows(index)``): CSR float32, canonical (sorted indices).

    The same block is generated again from ``(spec.seed, index)`` alone, whichever process asks for it.
    """
    from scipy import sparse

    global generate_seconds
    start = time.perf_counter()
    first, end = spec.block_rows(index)
    n_rows, n_genes = end - first, spec.n_genes
    size = n_rows * n_genes
    if size >= 2**30 or not 0 < spec.density < 1:
        msg = f"blocks of {n_rows} × {n_genes} at density {spec.density}: use smaller --block-cells, 0 < density < 1"
        raise ValueError(msg)
    rng = np.random.default_rng((spec.seed, index))
    # Positions of the non-zeros in the row-major block (int32 throughout, to keep the generator's own memory
    # small): gaps between them are geometric, i.e. each entry is non-zero with probability `density`.
    expected = size * spec.density
    scale = np.float32(1 / np.log1p(-spec.density))
    parts = []
    last = -1
    while last < size - 1:
        draws = int((size - 1 - last) * spec.density + 8 * np.sqrt(expected) + 64)
        gaps = rng.random(draws, dtype=np.float32)
        np.subtract(np.float32(1), gaps, out=gaps)  # (0, 1]
        np.log(gaps, out=gaps)
        gaps *= scale  # a geometric draw minus one: below 2**28 for densities above 1e-7
        steps = gaps.astype(np.int32)
        del gaps
        steps += 1
        steps[0] += last
        np.cumsum(steps, out=steps)
        last = int(steps[-1])
        parts.append(steps[: np.searchsorted(steps, np.int32(size))])
        del steps
    positions = parts[0] if len(parts) == 1 else np.concatenate(parts)
    del parts
    rows = positions // np.int32(n_genes)
    indptr = np.searchsorted(rows, np.arange(n_rows + 1, dtype=np.int32)).astype(np.int32)
    rows *= np.int32(n_genes)
    columns = np.subtract(positions, rows, out=positions)
    del rows
    values = _COUNTS[np.frombuffer(rng.bytes(columns.size), dtype=np.uint8)]
    block = sparse.csr_matrix((values, columns, indptr), shape=(n_rows, n_genes))
    block.has_sorted_indices = True
    with _generate_lock:
        generate_seconds += time.perf_counter() - start
    return block


def _dask_block(spec: Spec, block_id: tuple[int, int]) -> Any:
    return synthetic_block(spec, block_id[0])


def synthetic_matrix(spec: Spec) -> Any:
    """The whole matrix as a dask array of ``spec.block_cells``-cell blocks, generated when computed."""
    import dask.array as da
    from scipy import sparse

    meta = sparse.csr_matrix((0, 0), dtype=np.float32)
    return da.map_blocks(_dask_block, spec, chunks=spec.chunks, dtype=np.float32, meta=meta)


def synthetic_annotations(spec: Spec) -> tuple[Any, Any]:
    """The annotations: obs (names ``cell_<i>`` and each cell's block), var (names ``gene_<j>``, positions)."""
    import pandas as pd

    obs = pd.DataFrame(
        {"block": (np.arange(spec.n_cells) // spec.block_cells).astype(np.int32)},
        index=pd.Index([f"cell_{i}" for i in range(spec.n_cells)]),
    )
    var = pd.DataFrame(
        {"position": np.arange(spec.n_genes, dtype=np.int32)},
        index=pd.Index([f"gene_{j}" for j in range(spec.n_genes)]),
    )
    return obs, var


def synthetic_anndata(spec: Spec) -> Any:
    """An AnnData whose X is :func:`synthetic_matrix` (lazy) and obs/var are :func:`synthetic_annotations`."""
    import anndata as ad

    obs, var = synthetic_annotations(spec)
    return ad.AnnData(X=synthetic_matrix(spec), obs=obs, var=var)


def synthetic_counts(spec: Spec) -> Any:
    """The whole matrix in memory (CSR float32): for checking small sizes."""
    from scipy import sparse

    return sparse.vstack([synthetic_block(spec, i) for i in range(spec.n_blocks)], format="csr")


def reductions(x: Any) -> tuple[Any, Any]:
    """Per-gene mean and per-cell total (float64) of a dask array of cells × genes, as dask arrays.

    Each block is reduced where it is computed (a scipy.sparse or numpy block), so a pass over the file holds a few
    blocks at a time; dask's own ``x.mean(axis=0)`` does not take scipy.sparse blocks (it passes ``keepdims``).
    Compute both together (``dask.compute(*reductions(x))``) to read the file once.
    """
    n_genes = x.shape[1]
    columns = x.map_blocks(
        lambda block: np.asarray(block.sum(axis=0, dtype=np.float64)).reshape(1, n_genes),
        chunks=((1,) * x.numblocks[0], (n_genes,)),
        dtype=np.float64,
        meta=np.empty((0, 0), dtype=np.float64),
    )
    gene_mean = columns.sum(axis=0) / x.shape[0]
    cell_total = x.map_blocks(
        lambda block: np.asarray(block.sum(axis=1, dtype=np.float64)).reshape(-1),
        drop_axis=1,
        dtype=np.float64,
        meta=np.empty((0,), dtype=np.float64),
    )
    return gene_mean, cell_total


# -- in the child process ---------------------------------------------------------------------------------------------


def _check_reductions(
    spec: Spec, path: Path, gene_mean: np.ndarray, cell_total: np.ndarray, verify_blocks: int | None
) -> dict[str, Any]:
    """Compare the reductions with the generator's blocks and two blocks read from the file; raise on a mismatch."""
    from scipy import sparse

    import scanpy_loomio

    if gene_mean.shape != (spec.n_genes,) or cell_total.shape != (spec.n_cells,):
        msg = f"reductions have shapes {gene_mean.shape} and {cell_total.shape}"
        raise AssertionError(msg)
    blocks = list(range(spec.n_blocks))
    if verify_blocks is not None and verify_blocks < spec.n_blocks:
        blocks = sorted({round(i * (spec.n_blocks - 1) / max(verify_blocks - 1, 1)) for i in range(verify_blocks)})
    column_sums = np.zeros(spec.n_genes)
    for index in blocks:
        block = synthetic_block(spec, index)
        first, end = spec.block_rows(index)
        expected = np.asarray(block.sum(axis=1, dtype=np.float64)).ravel()
        if not np.array_equal(cell_total[first:end], expected):
            msg = f"per-cell totals of block {index} differ from the generator's"
            raise AssertionError(msg)
        column_sums += np.asarray(block.sum(axis=0, dtype=np.float64)).ravel()
    if len(blocks) == spec.n_blocks and not np.allclose(gene_mean, column_sums / spec.n_cells, rtol=1e-12, atol=0):
        msg = "per-gene means differ from the generator's"
        raise AssertionError(msg)
    if not np.isclose(gene_mean.sum() * spec.n_cells, cell_total.sum(), rtol=1e-9):
        msg = "per-gene means and per-cell totals disagree"
        raise AssertionError(msg)
    lazy = scanpy_loomio.read_loom_lazy(path)
    for index in {0, spec.n_blocks - 1}:
        first, end = spec.block_rows(index)
        read = lazy.X[first:end].compute()
        if not (sparse.issparse(read) and read.dtype == np.float32 and (read != synthetic_block(spec, index)).nnz == 0):
            msg = f"cells {first}:{end} read from {path} differ from the generator's"
            raise AssertionError(msg)
    return {"verified_blocks": len(blocks), "blocks_read_back": sorted({0, spec.n_blocks - 1})}


def child(operation: str, spec: Spec, path: Path, threads: int | None, verify_blocks: int | None) -> dict[str, Any]:
    """Run ``write`` or ``reduce`` in this (fresh) process and return its measurements."""
    import gc
    import warnings

    warnings.filterwarnings("ignore")
    import dask
    import dask.array  # imported before the clock starts

    import scanpy_loomio
    from benchmarks._runner import PeakMemory, _cpu_seconds, _current_rss

    dask.config.set(scheduler="threads", num_workers=threads)
    adata = None
    if operation == "write":
        adata = synthetic_anndata(spec)
        if path.exists():
            path.unlink()
    gc.collect()
    baseline = _current_rss()
    peak = PeakMemory()
    peak.start()
    cpu = _cpu_seconds()
    start = time.perf_counter()
    record: dict[str, Any] = {}
    if operation == "write":
        scanpy_loomio.write_loom_full(path, adata, n_threads=threads, progress=False)
    elif operation == "reduce":
        lazy = scanpy_loomio.read_loom_lazy(path)
        record["open_seconds"] = time.perf_counter() - start
        record["blocks"] = lazy.X.numblocks[0]
        gene_mean, cell_total = dask.compute(*reductions(lazy.X))
    else:
        msg = f"unknown operation {operation!r}"
        raise ValueError(msg)
    seconds = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu
    top = peak.stop()
    record.update(
        seconds=seconds,
        cpu_seconds=cpu,
        peak_bytes=top,
        extra_bytes=max(0, top - baseline),
        baseline_bytes=baseline,
        peak_exact=peak.exact,
        file_bytes=path.stat().st_size,
    )
    if operation == "write":
        record["generate_seconds"] = generate_seconds
    else:
        record.update(_check_reductions(spec, path, gene_mean, cell_total, verify_blocks))
    return record


# -- in the parent ----------------------------------------------------------------------------------------------------


def run_operation(
    operation: str, spec: Spec, path: Path, args: argparse.Namespace, env: dict[str, str]
) -> dict[str, Any]:
    """Run one operation in a fresh process and return its measurements."""
    from benchmarks.streaming import _run_with_rusage

    if operation in ("write", "reduce"):
        command = [sys.executable, __file__, "--child", operation, json.dumps(asdict(spec)), str(path)]
        if args.threads is not None:
            command += ["--threads", str(args.threads)]
        if args.verify_blocks is not None:
            command += ["--verify-blocks", str(args.verify_blocks)]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        try:
            stdout, stderr = process.communicate(timeout=args.timeout)
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGINT)  # an interrupted write leaves no file behind
            try:
                process.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
            return {"seconds": args.timeout, "timed_out": True}
        if process.returncode != 0:
            msg = f"{operation} of {spec.n_cells:,} cells failed:\n{stderr}"
            raise RuntimeError(msg)
        return json.loads(stdout.strip().splitlines()[-1])
    target = path.with_name(f"{path.stem}-{operation}.h5ad")
    if target.exists():
        target.unlink()
    if operation == "convert":
        command = [sys.executable, "-m", "scanpy_loomio.cli", "convert", str(path), str(target), "-q"]
    else:
        command = [args.pyadata, "convert", str(path), "-o", str(target)]
    try:
        seconds, peak, _ = _run_with_rusage(command, env)
        return {"seconds": seconds, "peak_bytes": peak, "file_bytes": target.stat().st_size}
    finally:
        if target.exists():
            target.unlink()


def versions() -> dict[str, str]:
    """Python and the versions of the packages the run depends on (read without importing them)."""
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": platform.python_version()}
    for name in ("scanpy-loomio", "anndata", "dask", "h5py", "numpy", "scipy", "numba"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            continue
    return found


def machine() -> dict[str, Any]:
    """Cores and memory of this machine, and the CPU model when Linux says."""
    found: dict[str, Any] = {"cores": os.cpu_count(), "platform": platform.platform()}
    try:
        found["memory_bytes"] = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        with open("/proc/cpuinfo") as cpuinfo:
            found["cpu"] = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, ValueError, StopIteration):
        pass
    return found


def _size(value: float) -> str:
    return f"{value / GiB:.2f} GiB" if value >= GiB else f"{value / MiB:,.0f} MiB"


def table(results: list[dict[str, Any]]) -> str:
    """The Markdown table: one row per size and operation, time per cell against the first (smallest) size."""
    lines = [
        "| cells | operation | seconds | µs / cell | vs first size | peak RSS | peak above start | file size |",
        "|---|---|---|---|---|---|---|---|",
    ]
    first: dict[str, float] = {}
    for record in sorted(results, key=lambda r: (OPERATIONS.index(r["operation"]), r["cells"])):
        per_cell = record["seconds"] / record["cells"] * 1e6
        if record.get("timed_out"):
            ratio = f"> {per_cell / first[record['operation']]:.2f}×" if record["operation"] in first else "–"
            lines.append(
                f"| {record['cells']:,} | {LABELS[record['operation']]} | > {record['seconds']:.0f} (stopped) "
                f"| > {per_cell:.1f} | {ratio} | – | – | – |"
            )
            continue
        ratio = f"{per_cell / first[record['operation']]:.2f}×" if record["operation"] in first else "1.00×"
        first.setdefault(record["operation"], per_cell)
        above = _size(record["extra_bytes"]) if "extra_bytes" in record else "–"
        lines.append(
            f"| {record['cells']:,} | {LABELS[record['operation']]} | {record['seconds']:.1f} | {per_cell:.1f} "
            f"| {ratio} | {_size(record['peak_bytes'])} | {above} | {_size(record['file_bytes'])} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run the scale benchmark (or, with ``--child``, one operation)."""
    sys.path.insert(0, str(HERE.parent))  # benchmarks._runner and benchmarks.streaming
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=3, metavar=("OPERATION", "SPEC", "PATH"), help=argparse.SUPPRESS)
    parser.add_argument(
        "--cells", type=int, action="append", help="cells (repeat for several sizes; default 50,000 and 1,000,000)"
    )
    parser.add_argument("--genes", type=int, default=30_000)
    parser.add_argument("--density", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--block-cells", type=int, default=10_000, help="cells per generated dask block")
    parser.add_argument("--data-dir", type=Path, default=HERE / "data")
    parser.add_argument("--threads", type=int, help="threads of the writer and of dask (default: every core)")
    parser.add_argument("--pyadata", help="pyadata-cli's `adata` executable (in its own Python >= 3.12 venv)")
    parser.add_argument("--operations", help="comma-separated subset of: " + ", ".join(OPERATIONS))
    parser.add_argument(
        "--verify-blocks", type=int, help="check the reductions against this many generated blocks (default: all)"
    )
    parser.add_argument(
        "--timeout", type=float, help="stop a write or reduce after this many seconds (interrupted; default: none)"
    )
    args = parser.parse_args(argv)
    if args.child:
        operation, spec_json, path = args.child
        record = child(operation, Spec(**json.loads(spec_json)), Path(path), args.threads, args.verify_blocks)
        print(json.dumps(record))
        return
    operations = args.operations.split(",") if args.operations else ["write", "reduce"]
    if args.pyadata and not args.operations:
        operations += ["convert", "pyadata"]
    if "pyadata" in operations and not args.pyadata:
        parser.error("the pyadata operation needs --pyadata")
    args.data_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")]))}
    run = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "command": " ".join([Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)]),
        "machine": machine(),
        "versions": versions(),
        "results": [],
    }
    output = args.data_dir / f"scale-{time.strftime('%Y%m%d-%H%M%S')}.json"
    for n_cells in args.cells or DEFAULT_CELLS:
        spec = Spec(n_cells, args.genes, args.density, args.seed, args.block_cells)
        path = args.data_dir / f"{spec.name}.loom"
        for operation in operations:
            if operation != "write" and not path.exists():
                print(f"{path} does not exist (write it first): skipping {operation}", file=sys.stderr)
                continue
            record = {"cells": n_cells, "genes": args.genes, "operation": operation}
            record.update(run_operation(operation, spec, path, args, env))
            run["results"].append(record)
            output.write_text(json.dumps(run, indent=1))
            outcome = "stopped" if record.get("timed_out") else f"peak {_size(record['peak_bytes'])}"
            print(f"{n_cells:,} cells, {operation}: {record['seconds']:.1f} s, {outcome}", file=sys.stderr, flush=True)
    print(f"\n{args.genes:,} genes, {args.density:.0%} non-zero; results in {output}\n")
    print(table(run["results"]))


if __name__ == "__main__":
    main()
