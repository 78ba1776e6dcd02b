"""Benchmark streaming writes and bounded-memory conversion, each operation in a fresh process.

Usage::

    python benchmarks/streaming.py --data-dir /tmp/bench                 # 50,000 × 30,000 (size M), 3 rounds
    python benchmarks/streaming.py --cells 5000 --genes 2000 --rounds 1  # a quick check that it works
    python benchmarks/streaming.py --pyadata /path/to/venv/bin/adata     # also time pyadata-cli's convert

Writes (``write_loom_full`` of the benchmark AnnData, X and a ``counts`` layer, CSR float32 counts):

- ``write-memory``: the AnnData read into memory first (``read_h5ad``), the write alone timed;
- ``write-backed``: X and the layer left in the ``.h5ad`` file (anndata's backed sparse datasets);
- ``write-dask``: X and the layer as dask arrays (``anndata.experimental.read_elem_lazy``, 1,000-cell blocks),
  computed with dask's threaded scheduler;
- ``write-distributed``: the same with a ``dask.distributed`` ``LocalCluster`` of 2 worker processes of 1 thread:
  the workers compute and compress the bands, this process only places the chunks.

For writes the child reports the wall time of the call, the peak resident memory above the level just before it
(the kernel's own peak counter, reset right before the call) and, for the distributed write, the workers' peaks.

Conversions (``scanpy-loomio convert`` and the in-memory path it replaced, ``read_loom_full`` + ``write_h5ad`` and
``read_h5ad`` + ``write_loom_full``, and pyadata-cli's ``convert`` when ``--pyadata`` is given): whole commands, timed
from start to exit including imports, with the peak resident memory of the whole process (``wait4``).

The table shows medians over ``--rounds`` interleaved rounds; compare ratios within one run (the machine is shared).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks._data import SIZES  # noqa: E402

MiB = 2**20
WRITES = ["write-memory", "write-backed", "write-dask", "write-distributed"]
CONVERTS = ["convert-loom-h5ad", "memory-loom-h5ad", "convert-h5ad-loom", "memory-h5ad-loom"]
PYADATA = ["pyadata-loom-h5ad", "pyadata-h5ad-loom"]
LABELS = {
    "write-memory": "write_loom_full, AnnData in memory",
    "write-backed": "write_loom_full, X/layers backed (on disk)",
    "write-dask": "write_loom_full, X/layers dask (threads)",
    "write-distributed": "write_loom_full, X/layers dask (LocalCluster 2×1)",
    "convert-loom-h5ad": "scanpy-loomio convert .loom → .h5ad (streaming)",
    "memory-loom-h5ad": "read_loom_full + write_h5ad (in memory)",
    "pyadata-loom-h5ad": "pyadata convert .loom → .h5ad",
    "convert-h5ad-loom": "scanpy-loomio convert .h5ad → .loom (streaming)",
    "memory-h5ad-loom": "read_h5ad + write_loom_full (in memory)",
    "pyadata-h5ad-loom": "pyadata convert .h5ad → .loom",
}


# -- in the child process ---------------------------------------------------------------------------------------------


def _lazy_adata(path: Path) -> Any:
    """The benchmark AnnData with X and layers as dask arrays that read the ``.h5ad`` file by path."""
    import anndata as ad
    import h5py
    from anndata.experimental import read_elem_lazy
    from anndata.io import read_elem

    f = h5py.File(path, "r")
    elements = {k: read_elem(f[k]) for k in ("obs", "var", "obsm", "varm", "obsp", "varp", "uns")}
    layers = {k: read_elem_lazy(f["layers"][k]) for k in f["layers"]}
    return ad.AnnData(X=read_elem_lazy(f["X"]), layers=layers, **elements)


def child(operation: str, source: Path, output: Path) -> dict[str, Any]:
    """Run one write operation in this process; returns its measurements."""
    import warnings

    warnings.filterwarnings("ignore")
    import anndata as ad

    import scanpy_loomio
    from benchmarks._runner import PeakMemory, _current_rss
    from scanpy_loomio._tools.convert import opened_anndata

    cluster = client = None
    if operation == "write-distributed":
        from distributed import Client, LocalCluster

        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
        client = Client(cluster)
    with opened_anndata(source) as backed:
        adata = {
            "write-memory": lambda: ad.read_h5ad(source),
            "write-backed": lambda: backed,
            "write-dask": lambda: _lazy_adata(source),
            "write-distributed": lambda: _lazy_adata(source),
        }[operation]()
        baseline = _current_rss()
        peak = PeakMemory()
        peak.start()
        start = time.perf_counter()
        scanpy_loomio.write_loom_full(output, adata, progress=False)
        seconds = time.perf_counter() - start
        top = peak.stop()
    record = {"seconds": seconds, "extra_bytes": max(0, top - baseline), "file_bytes": output.stat().st_size}
    if client is not None:
        import resource

        peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
        record["worker_peak_bytes"] = max(peaks.values())
        client.close()
        cluster.close()
    return record


# -- in the parent ----------------------------------------------------------------------------------------------------


def _run_with_rusage(command: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    """Run ``command``; its wall seconds, the peak resident bytes of its own process (``wait4``), and its stdout."""
    start = time.perf_counter()
    with open(os.devnull, "w") as null:
        out_path = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-{os.getpid()}.out"
        with open(out_path, "w") as out:
            process = subprocess.Popen(command, stdout=out, stderr=null, env=env)
            _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    stdout = out_path.read_text()
    out_path.unlink()
    if process.returncode:
        msg = f"{' '.join(command)} failed with status {process.returncode}; run it alone to see why"
        raise RuntimeError(msg)
    return seconds, usage.ru_maxrss * 1024, stdout


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    elif path.exists():
        path.unlink()


def run_operation(operation: str, data: dict[str, Path], pyadata: str | None, env: dict[str, str]) -> dict[str, Any]:
    """Run one operation in a fresh process and return its measurements."""
    python = sys.executable
    h5ad, loom, out = data["h5ad"], data["loom"], data["dir"] / "out"
    if operation in WRITES:
        target = out.with_suffix(".loom")
        _remove(target)
        command = [python, __file__, "--child", operation, str(h5ad), str(target)]
        seconds, peak, stdout = _run_with_rusage(command, env)
        record = json.loads(stdout.strip().splitlines()[-1])
        record["process_peak_bytes"] = peak
        return record
    to_h5ad = operation.endswith("loom-h5ad")
    source, target = (loom, out.with_suffix(".h5ad")) if to_h5ad else (h5ad, out.with_suffix(".loom"))
    _remove(target)
    if operation.startswith("convert"):
        command = [python, "-m", "scanpy_loomio.cli", "convert", str(source), str(target), "-q"]
    elif operation.startswith("memory"):
        code = "import warnings; warnings.filterwarnings('ignore'); import anndata, scanpy_loomio; " + (
            f"scanpy_loomio.read_loom_full({str(source)!r}).write_h5ad({str(target)!r})"
            if to_h5ad
            else f"scanpy_loomio.write_loom_full({str(target)!r}, anndata.read_h5ad({str(source)!r}), progress=False)"
        )
        command = [python, "-c", code]
    else:
        command = [pyadata, "convert", str(source), "-o", str(target)]
    seconds, peak, _ = _run_with_rusage(command, env)
    return {"seconds": seconds, "process_peak_bytes": peak, "file_bytes": _size(target)}


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size if path.exists() else 0


def ensure_data(folder: Path, n_cells: int, n_genes: int, env: dict[str, str]) -> dict[str, Path]:
    """The benchmark ``.h5ad`` (generated by ``_data.py``) and a ``.loom`` file of it (written once)."""
    folder.mkdir(parents=True, exist_ok=True)
    h5ad = folder / f"stream-{n_cells}x{n_genes}.h5ad"
    if not h5ad.exists():
        subprocess.run(
            [sys.executable, str(HERE / "_data.py"), str(h5ad), "--cells", str(n_cells), "--genes", str(n_genes)],
            check=True,
            env=env,
        )
    loom = h5ad.with_suffix(".loom")
    if not loom.exists():
        code = (
            "import warnings; warnings.filterwarnings('ignore'); import anndata, scanpy_loomio; "
            f"scanpy_loomio.write_loom_full({str(loom)!r}, anndata.read_h5ad({str(h5ad)!r}), progress=False)"
        )
        subprocess.run([sys.executable, "-c", code], check=True, env=env)
    return {"h5ad": h5ad, "loom": loom, "dir": folder}


def _fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "–"
    return f"{value / MiB:,.0f} MiB" if unit == "bytes" else f"{value:.1f}"


def report(results: dict[str, list[dict[str, Any]]]) -> str:
    """The Markdown table of medians, writes and each direction of conversion in groups."""

    def median(operation: str, key: str) -> float | None:
        values = [r[key] for r in results.get(operation, []) if key in r]
        return statistics.median(values) if values else None

    lines = [
        "| operation | median s | peak extra (call) | process peak | workers' peak | file size | s vs first row |",
        "|---|---|---|---|---|---|---|",
    ]
    for group in (WRITES, ["convert-loom-h5ad", "memory-loom-h5ad", "pyadata-loom-h5ad"]):
        group = [op for op in group if op in results]
        if not group:
            continue
        first = median(group[0], "seconds")
        for op in group:
            seconds = median(op, "seconds")
            ratio = f"{seconds / first:.2f}×" if first and seconds else "–"
            lines.append(
                f"| {LABELS[op]} | {_fmt(seconds, 's')} | {_fmt(median(op, 'extra_bytes'), 'bytes')} | "
                f"{_fmt(median(op, 'process_peak_bytes'), 'bytes')} | {_fmt(median(op, 'worker_peak_bytes'), 'bytes')} "
                f"| {_fmt(median(op, 'file_bytes'), 'bytes')} | {ratio} |"
            )
    group = [op for op in ("convert-h5ad-loom", "memory-h5ad-loom", "pyadata-h5ad-loom") if op in results]
    first = median(group[0], "seconds") if group else None
    for op in group:
        seconds = median(op, "seconds")
        ratio = f"{seconds / first:.2f}×" if first and seconds else "–"
        lines.append(
            f"| {LABELS[op]} | {_fmt(seconds, 's')} | – | {_fmt(median(op, 'process_peak_bytes'), 'bytes')} | – "
            f"| {_fmt(median(op, 'file_bytes'), 'bytes')} | {ratio} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run the benchmark (or, with ``--child``, one write operation)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=3, metavar=("OPERATION", "SOURCE", "OUTPUT"), help=argparse.SUPPRESS)
    parser.add_argument("--size", choices=sorted(SIZES), default="M")
    parser.add_argument("--cells", type=int)
    parser.add_argument("--genes", type=int)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data-dir", type=Path, default=HERE / "data")
    parser.add_argument("--operations", help="comma-separated subset of: " + ", ".join(WRITES + CONVERTS + PYADATA))
    parser.add_argument("--pyadata", help="pyadata-cli's `adata` executable (in its own Python >= 3.12 venv)")
    parser.add_argument("--json", type=Path, help="also write every measurement to this file")
    args = parser.parse_args(argv)
    if args.child:
        operation, source, output = args.child
        print(json.dumps(child(operation, Path(source), Path(output))))
        return
    n_cells, n_genes = SIZES[args.size]
    n_cells, n_genes = args.cells or n_cells, args.genes or n_genes
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE.parent), os.environ.get("PYTHONPATH")]))}
    data = ensure_data(args.data_dir, n_cells, n_genes, env)
    operations = (
        args.operations.split(",") if args.operations else WRITES + CONVERTS + (PYADATA if args.pyadata else [])
    )
    results: dict[str, list[dict[str, Any]]] = {}
    for round_ in range(args.rounds):
        for operation in operations:
            record = run_operation(operation, data, args.pyadata, env)
            results.setdefault(operation, []).append(record)
            print(f"round {round_ + 1} {operation}: {json.dumps(record)}", file=sys.stderr, flush=True)
    for path in data["dir"].glob("out.*"):
        _remove(path)
    print(f"\n{n_cells:,} cells × {n_genes:,} genes, {args.rounds} round(s), median of each\n")
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
