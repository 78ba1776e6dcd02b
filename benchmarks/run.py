"""Benchmark scanpy-loomio's loom writer and reader against anndata's loom functions and gzip ``.h5ad``.

Every operation runs in a fresh Python process (``benchmarks/_runner.py``), one at a time, rounds
interleaved; the table shows medians. See ``benchmarks/README.md``.

Examples
--------
    python benchmarks/run.py --size S
    python benchmarks/run.py --size M --rounds 3
    python benchmarks/run.py --cells 20000 --genes 25000 --density 0.1 --threads 1
    python benchmarks/run.py --scaling --plot
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks._data import DEFAULT_DENSITY, SIZES  # noqa: E402

GiB = 2**30
MiB = 2**20
#: Measured with anndata 0.12 / loompy 3.0.8 on a 2-core, 24 GiB machine (docs: shared reference page).
ANCHORS: dict[str, dict[str, tuple[float, float | None]]] = {
    "S": {
        "anndata-write-loom": (5.4, None),
        "anndata-read-loom": (8.3, None),
        "h5ad-gzip-write": (1.7, 0.0),
        "h5ad-gzip-read": (0.46, 0.0),
    },
    "M": {
        "anndata-write-loom": (108.0, 13.4 * GiB),
        "anndata-read-loom": (119.0, 20.8 * GiB),
        "h5ad-gzip-write": (22.0, 0.0),
        "h5ad-gzip-read": (8.0, 0.0),
    },
}
#: anndata's loom writer and reader need about this many times one dense layer, plus the process itself.
ANNDATA_LOOM_DENSE_FACTOR = 3.5
ANNDATA_LOOM_DEFAULT_LIMIT = 6 * GiB
M_REQUIRED_FREE = 23 * GiB

WRITES = ["loomio-write", "anndata-write-loom", "h5ad-gzip-write"]
READS = ["loomio-read", "loomio-read-meta", "anndata-read-loom", "h5ad-gzip-read"]
READ_SOURCE = {
    "loomio-read": "loomio-write",
    "loomio-read-meta": "loomio-write",
    "anndata-read-loom": "anndata-write-loom",
    "h5ad-gzip-read": "h5ad-gzip-write",
    "engine-read": "engine-write",
}
OUTPUT_NAME = {
    "loomio-write": "loomio.loom",
    "anndata-write-loom": "anndata.loom",
    "h5ad-gzip-write": "gzip.h5ad",
    "engine-write": "engine.loom",
}
LABELS = {
    "loomio-write": "scanpy-loomio write_loom_full",
    "anndata-write-loom": "anndata write_loom(write_obsm_varm=True)",
    "h5ad-gzip-write": 'write_h5ad(compression="gzip")',
    "loomio-read": "scanpy-loomio read_loom_full",
    "loomio-read-meta": "scanpy-loomio read_loom_full(matrices=False)",
    "anndata-read-loom": "sc.read_loom(sparse=True)",
    "h5ad-gzip-read": "read_h5ad (gzip file)",
    "engine-write": "matrix engine: write_matrix X + counts",
    "engine-read": "matrix engine: read_matrix X + counts",
}


@dataclass
class Dataset:
    """A synthetic dataset: its size, density and, for the named sizes, the name (``S``/``M``)."""

    cells: int
    genes: int
    density: float
    size_name: str | None = None

    @property
    def tag(self) -> str:
        """File-name friendly description."""
        return f"{self.cells}x{self.genes}_d{self.density:g}"

    @property
    def dense_layer_bytes(self) -> int:
        """Bytes of one float32 layer held dense, as anndata's loom functions do."""
        return self.cells * self.genes * 4


@dataclass
class Results:
    """Measurements of every run of every operation."""

    records: list[dict[str, Any]] = field(default_factory=list)

    def of(self, operation: str) -> list[dict[str, Any]]:
        """Successful runs of ``operation``."""
        return [r for r in self.records if r["operation"] == operation and "error" not in r]

    def median(self, operation: str, key: str = "seconds") -> float | None:
        """Median of ``key`` over the successful runs of ``operation``."""
        values = [r[key] for r in self.of(operation) if key in r]
        return statistics.median(values) if values else None


def available_memory() -> int:
    """MemAvailable from /proc/meminfo (bytes); 0 when unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def anndata_loom_need(dataset: Dataset) -> int:
    """Memory anndata's loom functions are expected to need for this dataset."""
    need = int(ANNDATA_LOOM_DENSE_FACTOR * dataset.dense_layer_bytes) + 2 * GiB
    if dataset.size_name == "M":
        need = max(need, M_REQUIRED_FREE)
    return need


def ensure_dataset(dataset: Dataset, data_dir: Path) -> Path:
    """Generate the input ``.h5ad`` once (in its own process) and reuse it."""
    path = data_dir / f"synthetic_{dataset.tag}.h5ad"
    if path.exists():
        return path
    data_dir.mkdir(parents=True, exist_ok=True)
    print(f"generating {dataset.tag} -> {path}", flush=True)
    command = [
        sys.executable,
        str(HERE / "_data.py"),
        str(path),
        f"--cells={dataset.cells}",
        f"--genes={dataset.genes}",
        f"--density={dataset.density}",
    ]
    subprocess.run(command, check=True)
    return path


def run_operation(
    operation: str,
    source: Path,
    output: Path,
    threads: int | None,
    timeout: float,
    extra: list[str] | None = None,
) -> dict[str, Any]:
    """One operation in a fresh process; returns its measurements (or the error)."""
    command = [sys.executable, str(HERE / "_runner.py"), operation, str(source), str(output), *(extra or [])]
    if threads is not None:
        command.append(f"--threads={threads}")
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"operation": operation, "error": f"timed out after {timeout:.0f} s"}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
        return {"operation": operation, "error": f"exit {done.returncode}: " + " | ".join(tail)}
    return json.loads(lines[-1])


def benchmark(
    dataset: Dataset,
    operations: list[str],
    rounds: int,
    threads: int | None,
    data_dir: Path,
    timeout: float,
) -> Results:
    """Interleaved rounds: every write, then every read of the files this round wrote."""
    source = ensure_dataset(dataset, data_dir)
    out_dir = data_dir / "out" / dataset.tag
    out_dir.mkdir(parents=True, exist_ok=True)
    results = Results()
    for round_number in range(1, rounds + 1):
        for operation in operations:
            if operation in READ_SOURCE:
                writer = READ_SOURCE[operation]
                written = out_dir / OUTPUT_NAME[writer]
                if not written.exists():
                    results.records.append({"operation": operation, "error": f"no file from {writer}"})
                    continue
                record = run_operation(operation, written, written, threads, timeout)
            else:
                record = run_operation(operation, source, out_dir / OUTPUT_NAME[operation], threads, timeout)
            record["round"] = round_number
            results.records.append(record)
            seconds = f"{record['seconds']:.2f} s" if "seconds" in record else record.get("error")
            print(f"  round {round_number}  {operation:<20} {seconds}", flush=True)
    return results


def _fmt_bytes(value: float | None) -> str:
    if value is None:
        return "—"
    if value >= GiB:
        return f"{value / GiB:.2f} GiB"
    return f"{value / MiB:.0f} MiB"


def _ratio(numerator: float | None, denominator: float | None) -> str:
    if numerator is None or denominator is None or denominator == 0:
        return "—"
    return f"{numerator / denominator:.1f}×"


def report(results: Results, dataset: Dataset, operations: list[str]) -> str:
    """Markdown table of medians with ratios against anndata's loom functions and gzip ``.h5ad``."""
    anchors = ANCHORS.get(dataset.size_name or "", {})

    def baseline(operation: str) -> tuple[float | None, str]:
        measured = results.median(operation)
        if measured is not None:
            return measured, ""
        if operation in anchors:
            return anchors[operation][0], " (anchor)"
        return None, ""

    lines = [
        "| operation | median s | rounds | peak extra memory | extra / result | file size "
        "| speed-up vs anndata loom | time vs gzip h5ad |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for operation in operations:
        runs = results.of(operation)
        if not runs:
            errors = [r["error"] for r in results.records if r["operation"] == operation and "error" in r]
            if operation in anchors:
                seconds, extra = anchors[operation]
                lines.append(
                    f"| {LABELS[operation]} — **reference anchor, not run** | {seconds:g} | — | "
                    f"{_fmt_bytes(extra) if extra else '—'} | — | — | 1.0× | — |"
                )
            elif errors:
                lines.append(f"| {LABELS[operation]} | failed: {errors[0]} | | | | | | |")
            continue
        seconds = results.median(operation)
        extra = results.median(operation, "extra_bytes")
        result_bytes = results.median(operation, "result_bytes")
        file_bytes = results.median(operation, "file_bytes")
        is_write = operation.endswith("write") or operation.endswith("write-loom")
        loom_base, loom_note = baseline("anndata-write-loom" if is_write else "anndata-read-loom")
        h5ad_base, h5ad_note = baseline("h5ad-gzip-write" if is_write else "h5ad-gzip-read")
        lines.append(
            f"| {LABELS[operation]} | {seconds:.2f} | {len(runs)} | {_fmt_bytes(extra)} | "
            f"{_ratio(extra, result_bytes) if result_bytes else '—'} | {_fmt_bytes(file_bytes)} | "
            f"{_ratio(loom_base, seconds)}{loom_note} | {_ratio(seconds, h5ad_base)}{h5ad_note} |"
        )
    return "\n".join(lines)


def machine_description() -> str:
    """Cores available to this process, CPU model, memory, Python version."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    total = 0
    try:
        with open("/proc/meminfo") as meminfo:
            total = int(meminfo.readline().split()[1]) * 1024
    except OSError:
        pass
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            cpu = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return f"{cores} cores ({cpu}), {total / GiB:.0f} GiB RAM, Python {platform.python_version()}"


def versions() -> str:
    """Versions of the packages that matter for the numbers."""
    from importlib.metadata import PackageNotFoundError, version

    parts = []
    for name in ("scanpy-loomio", "anndata", "scanpy", "loompy", "h5py", "numba", "isal"):
        try:
            parts.append(f"{name} {version(name)}")
        except PackageNotFoundError:
            continue
    return ", ".join(parts)


# --------------------------------------------------------------------------------------------------
# scaling


SCALING_QUANTITIES = ("cells", "genes", "density", "threads")


def scaling_configs(quick: bool) -> list[tuple[str, Dataset, int | None]]:
    """(varied quantity, dataset, threads): cells, genes, density and thread count, one at a time."""
    base_cells, base_genes = (5_000, 10_000) if quick else (10_000, 20_000)
    configs: list[tuple[str, Dataset, int | None]] = []
    for cells in (base_cells // 2, base_cells, base_cells * 2, base_cells * 4):
        configs.append(("cells", Dataset(cells, base_genes, DEFAULT_DENSITY), None))
    for genes in (base_genes // 2, base_genes, base_genes * 3 // 2):
        configs.append(("genes", Dataset(base_cells, genes, DEFAULT_DENSITY), None))
    for density in (0.02, DEFAULT_DENSITY, 0.15):
        configs.append(("density", Dataset(base_cells, base_genes, density), None))
    for threads in (1, 2):  # on the largest of the sizes above, so that start-up costs do not hide the threads
        configs.append(("threads", Dataset(base_cells * 4, base_genes, DEFAULT_DENSITY), threads))
    return configs


def scaling(args: argparse.Namespace) -> None:
    """Time and memory of this package's write and read while one quantity varies; writes a CSV.

    Within each varied quantity the rounds are interleaved across its values (round 1 of every value, then
    round 2, …), so a busy moment of a shared machine does not fall on one value alone. Re-measuring some
    quantities (``--vary``) replaces their rows in an existing CSV and keeps the others.
    """
    operations = ["loomio-write", "loomio-read"]
    configs = [c for c in scaling_configs(args.quick) if c[0] in args.vary]
    rows = []
    for varied in dict.fromkeys(c[0] for c in configs):
        group = [c for c in configs if c[0] == varied]
        results = [Results() for _ in group]
        for round_number in range(1, args.rounds + 1):
            for (_, dataset, threads), collected in zip(group, results, strict=True):
                threads = threads if threads is not None else args.threads
                print(f"{varied}: {dataset.tag}, threads={threads or 'all'}, round {round_number}", flush=True)
                done = benchmark(dataset, operations, 1, threads, args.data_dir, args.timeout)
                collected.records += [{**r, "round": round_number} for r in done.records]
        for (_, dataset, threads), collected in zip(group, results, strict=True):
            threads = threads if threads is not None else args.threads
            for operation in operations:
                rows.append(
                    {
                        "varied": varied,
                        "cells": dataset.cells,
                        "genes": dataset.genes,
                        "density": dataset.density,
                        "threads": threads or len(os.sched_getaffinity(0)),
                        "operation": operation,
                        "seconds": collected.median(operation),
                        "cpu_seconds": collected.median(operation, "cpu_seconds"),
                        "extra_mib": (collected.median(operation, "extra_bytes") or 0) / MiB,
                        "file_mib": (collected.median("loomio-write", "file_bytes") or 0) / MiB,
                        "nnz_millions": dataset.cells * dataset.genes * dataset.density / 1e6,
                    }
                )
            _cleanup_outputs(args.data_dir, dataset)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    csv_path = args.results_dir / "scaling.csv"
    if csv_path.exists():  # keep the rows of quantities not measured this time
        with open(csv_path, newline="") as handle:
            kept = [r for r in csv.DictReader(handle) if r["varied"] not in args.vary]
        for row in kept:
            for key in ("cells", "genes", "threads"):
                row[key] = int(row[key])
            for key in ("density", "seconds", "cpu_seconds", "extra_mib", "file_mib", "nnz_millions"):
                row[key] = float(row[key]) if row.get(key) not in (None, "") else None
        rows = kept + rows
    with open(csv_path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[-1]))
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {csv_path}")
    if args.plot:
        png = args.plot_path or args.results_dir / "scaling.png"
        plot_scaling(rows, png)
        print(f"wrote {png}")


def plot_scaling(rows: list[dict[str, Any]], path: Path) -> None:
    """Seconds and peak extra memory against each varied quantity."""
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("cells", "cells"), ("genes", "genes"), ("density", "density"), ("threads", "threads")]
    fig, axes = plt.subplots(2, 4, figsize=(15, 6.5), sharex="col")
    for column, (varied, key) in enumerate(panels):
        for operation, marker in (("loomio-write", "o-"), ("loomio-read", "s-")):
            points = sorted(
                (r[key], r["seconds"], r["extra_mib"])
                for r in rows
                if r["varied"] == varied and r["operation"] == operation
            )
            if not points:
                continue
            xs, seconds, extra = zip(*points, strict=True)
            label = "write" if operation.endswith("write") else "read"
            axes[0, column].plot(xs, seconds, marker, label=label)
            axes[1, column].plot(xs, extra, marker, label=label)
        axes[0, column].set_title(f"varying {varied}")
        axes[1, column].set_xlabel(varied)
        if varied == "threads":
            thread_counts = sorted({int(r["threads"]) for r in rows if r["varied"] == "threads"})
            axes[1, column].set_xticks(thread_counts)
    axes[0, 0].set_ylabel("seconds (median)")
    axes[1, 0].set_ylabel("peak extra memory (MiB)")
    axes[0, 0].legend()
    fig.suptitle("scanpy-loomio write_loom_full / read_loom_full scaling (X + counts layer)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


#: (gzip level, chunk shape) pairs of the --sweep mode: levels at loompy's chunk shape, then chunk shapes at level 2.
SWEEP = [
    *((level, (64, 64)) for level in (0, 1, 2, 3, 4, 6, 9)),
    *((2, chunks) for chunks in ((32, 32), (128, 128), (256, 256), (512, 64), (64, 512))),
]


def sweep(args: argparse.Namespace) -> None:
    """What the gzip level and the chunk shape cost: time and file size of the matrix engine (X + counts)."""
    dataset = select_dataset(args) if (args.size or args.cells) else Dataset(*SIZES["S"], DEFAULT_DENSITY, "S")
    source = ensure_dataset(dataset, args.data_dir)
    out_dir = args.data_dir / "out" / dataset.tag
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / OUTPUT_NAME["engine-write"]
    rows = []
    for round_number in range(1, args.rounds + 1):
        for level, chunks in SWEEP:
            extra = [f"--level={level}", f"--chunks={chunks[0]},{chunks[1]}"]
            written = run_operation("engine-write", source, output, args.threads, args.timeout, extra)
            read = run_operation("engine-read", output, output, args.threads, args.timeout)
            for record in (written, read):
                record.update(level=level, chunks=f"{chunks[0]}×{chunks[1]}", round=round_number)
                rows.append(record)
            print(
                f"  round {round_number}  level {level} chunks {chunks}: write {written.get('seconds', float('nan')):.2f} s, "
                f"read {read.get('seconds', float('nan')):.2f} s, {written.get('file_bytes', 0) / MiB:.0f} MiB",
                flush=True,
            )
    output.unlink(missing_ok=True)
    lines = [
        "| gzip level | chunks (genes × cells) | write s | write CPU s | read s | read CPU s | file size |",
        "|---|---|---|---|---|---|---|",
    ]
    for level, chunks in SWEEP:
        label = f"{chunks[0]}×{chunks[1]}"

        def median(operation: str, key: str, level: int = level, label: str = label) -> float:
            values = [
                r[key]
                for r in rows
                if r["operation"] == operation and r["level"] == level and r["chunks"] == label and key in r
            ]
            return statistics.median(values) if values else float("nan")

        lines.append(
            f"| {level} | {label} | {median('engine-write', 'seconds'):.2f} | {median('engine-write', 'cpu_seconds'):.2f} | "
            f"{median('engine-read', 'seconds'):.2f} | {median('engine-read', 'cpu_seconds'):.2f} | "
            f"{median('engine-write', 'file_bytes') / MiB:.0f} MiB |"
        )
    table = "\n".join(lines)
    print(f"\n{dataset.tag}, threads {args.threads or 'all'}; {machine_description()}\n\n{table}\n")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    out = args.results_dir / f"sweep-{dataset.tag}.json"
    out.write_text(json.dumps({"records": rows, "table": table}, indent=1))
    print(f"raw results: {out}")


def _cleanup_outputs(data_dir: Path, dataset: Dataset) -> None:
    out_dir = data_dir / "out" / dataset.tag
    for name in OUTPUT_NAME.values():
        (out_dir / name).unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), help="named size: S = 5,000 × 20,000, M = 50,000 × 30,000")
    parser.add_argument("--cells", type=int, help="number of cells (instead of --size)")
    parser.add_argument("--genes", type=int, help="number of genes (instead of --size)")
    parser.add_argument("--density", type=float, default=DEFAULT_DENSITY, help="fraction of non-zeros (0.065)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported (3)")
    parser.add_argument("--threads", type=int, default=None, help="threads for scanpy-loomio (default: all cores)")
    parser.add_argument(
        "--operations",
        nargs="+",
        choices=[*WRITES, *READS, "engine-write", "engine-read"],
        help="subset of operations (default: all that are safe at this size)",
    )
    parser.add_argument(
        "--with-anndata-loom",
        action="store_true",
        help="run anndata's loom writer/reader even where they need a lot of memory (refused without enough free)",
    )
    parser.add_argument("--without-anndata-loom", action="store_true", help="skip anndata's loom functions")
    parser.add_argument("--scaling", action="store_true", help="measure how time and memory grow; writes a CSV")
    parser.add_argument("--quick", action="store_true", help="smaller sizes in --scaling mode")
    parser.add_argument(
        "--vary",
        nargs="+",
        choices=SCALING_QUANTITIES,
        default=list(SCALING_QUANTITIES),
        help="with --scaling: the quantities to vary (default: all); other rows of an existing CSV are kept",
    )
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="time and file size for several gzip levels and chunk shapes (default size S)",
    )
    parser.add_argument("--plot", action="store_true", help="with --scaling: also draw a PNG (matplotlib)")
    parser.add_argument("--plot-path", type=Path, help="where to save the --plot PNG")
    parser.add_argument("--data-dir", type=Path, default=HERE / "data", help="generated inputs and outputs")
    parser.add_argument("--results-dir", type=Path, default=HERE / "results", help="JSON/CSV results")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds before an operation is stopped")
    parser.add_argument("--keep-files", action="store_true", help="keep the written files afterwards")
    return parser.parse_args(argv)


def select_dataset(args: argparse.Namespace) -> Dataset:
    """The dataset the options ask for."""
    if args.size and (args.cells or args.genes):
        sys.exit("give either --size or --cells/--genes")
    if args.size:
        cells, genes = SIZES[args.size]
        return Dataset(cells, genes, args.density, args.size if args.density == DEFAULT_DENSITY else None)
    if not (args.cells and args.genes):
        sys.exit("give --size S|M or both --cells and --genes")
    return Dataset(args.cells, args.genes, args.density)


def select_operations(args: argparse.Namespace, dataset: Dataset) -> list[str]:
    """The operations to run; anndata's loom functions only where memory allows."""
    operations = args.operations or [*WRITES, *READS]
    wants_anndata = any(op in ("anndata-write-loom", "anndata-read-loom") for op in operations)
    if not wants_anndata:
        return operations
    need = anndata_loom_need(dataset)
    free = available_memory()
    if args.without_anndata_loom:
        allowed = False
    elif args.with_anndata_loom:
        if free < need:
            sys.exit(
                f"refusing --with-anndata-loom: anndata's loom functions need about {need / GiB:.0f} GiB here "
                f"and only {free / GiB:.1f} GiB is free; running them could take the machine down"
            )
        allowed = True
    else:
        allowed = need <= ANNDATA_LOOM_DEFAULT_LIMIT and need <= free
    if not allowed:
        print(
            f"skipping anndata's loom writer/reader (they need about {need / GiB:.0f} GiB at this size; "
            "--with-anndata-loom forces them); reference anchors are shown instead where known",
            flush=True,
        )
        operations = [op for op in operations if op not in ("anndata-write-loom", "anndata-read-loom")]
    return operations


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark (or the scaling measurements) and print the table."""
    args = parse_args(argv)
    if args.scaling:
        scaling(args)
        return
    if args.sweep:
        sweep(args)
        return
    dataset = select_dataset(args)
    operations = select_operations(args, dataset)
    started = dt.datetime.now(dt.UTC)
    print(f"dataset {dataset.tag}; operations: {', '.join(operations)}; rounds: {args.rounds}", flush=True)
    results = benchmark(dataset, operations, args.rounds, args.threads, args.data_dir, args.timeout)
    table_operations = [op for op in [*WRITES, *READS, "engine-write", "engine-read"] if op in operations]
    if dataset.size_name in ANCHORS:  # show skipped baselines as labelled anchors
        for op in ("anndata-write-loom", "anndata-read-loom"):
            if op not in table_operations:
                table_operations.insert(
                    table_operations.index("loomio-write") + 1 if op.endswith("write-loom") else len(table_operations),
                    op,
                )
    header = (
        f"{dataset.cells:,} cells × {dataset.genes:,} genes, density {dataset.density:g}, "
        f"threads {args.threads or 'all'}; {started:%Y-%m-%d %H:%M} UTC; {machine_description()}\n{versions()}"
    )
    table = report(results, dataset, table_operations)
    print(f"\n{header}\n\n{table}\n")
    args.results_dir.mkdir(parents=True, exist_ok=True)
    stamp = started.strftime("%Y%m%d-%H%M%S")
    out = args.results_dir / f"{stamp}-{dataset.tag}.json"
    out.write_text(json.dumps({"header": header, "records": results.records, "table": table}, indent=1))
    print(f"raw results: {out}")
    if not args.keep_files:
        _cleanup_outputs(args.data_dir, dataset)


if __name__ == "__main__":
    main()
