"""Benchmark: how the full write and read scale from one thread to every core, each run in a fresh process.

Usage::

    python benchmarks/threads.py                       # 50,000 × 30,000 (size M), threads 1 and 2, 3 rounds
    python benchmarks/threads.py --size S --rounds 1   # a quick check
    python benchmarks/threads.py --threads 1 2 4       # other thread counts

Operations (``benchmarks/_runner.py``, as ``run.py`` runs them): ``loomio-write`` (``write_loom_full`` of the
benchmark AnnData, X and a ``counts`` layer) and ``loomio-read`` (``read_loom_full`` of the file written), and the
matrix engine alone (``engine-write``/``engine-read``: ``write_matrix``/``read_matrix`` of X and the layer), and
the machine's own ceiling (``machine-deflate``: zlib deflating 64 × 64 tiles of the same data in threads that share
nothing; on machines whose cores share a physical core or a host, it stays well below the thread count). Each
round runs every operation at every thread count, one after the other, so a slow moment of a shared machine hits
all of them alike. The table gives the median time at each thread count and the speed-up over one thread.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from benchmarks._data import DEFAULT_DENSITY, SIZES  # noqa: E402
from benchmarks.run import (  # noqa: E402
    OUTPUT_NAME,
    READ_SOURCE,
    Dataset,
    ensure_dataset,
    machine_description,
    run_operation,
    versions,
)

OPERATIONS = ("loomio-write", "loomio-read", "engine-write", "engine-read", "machine-deflate")


def measure(dataset: Dataset, threads: list[int], rounds: int, data_dir: Path, timeout: float) -> dict:
    """``{(operation, threads): [seconds, ...]}`` over interleaved rounds."""
    source = ensure_dataset(dataset, data_dir)
    out_dir = data_dir / "out" / f"threads-{dataset.tag}"
    out_dir.mkdir(parents=True, exist_ok=True)
    seconds: dict = {}
    for round_number in range(1, rounds + 1):
        for n in threads:
            for operation in OPERATIONS:
                writer = READ_SOURCE.get(operation)
                output = out_dir / OUTPUT_NAME.get(writer or operation, "unused")
                record = run_operation(operation, output if writer else source, output, n, timeout)
                value = record.get("seconds")
                shown = f"{value:.2f} s" if value is not None else record.get("error")
                print(f"  round {round_number}  threads {n}  {operation:<14} {shown}", flush=True)
                if value is not None:
                    seconds.setdefault((operation, n), []).append(value)
    return seconds


def table(seconds: dict, threads: list[int]) -> str:
    """Markdown table: median seconds per thread count and the speed-ups over the first."""
    head = "| operation | " + " | ".join(f"{n} thread{'s' if n > 1 else ''}" for n in threads)
    head += " | " + " | ".join(f"speed-up {n}/1" for n in threads[1:]) + " |"
    rule = "|---" * (1 + 2 * len(threads) - 1) + "|"
    rows = [head, rule]
    for operation in OPERATIONS:
        medians = [statistics.median(seconds[(operation, n)]) if (operation, n) in seconds else None for n in threads]
        cells = [f"{m:.2f} s" if m is not None else "–" for m in medians]
        base = medians[0]
        ups = [f"{base / m:.2f}×" if base and m else "–" for m in medians[1:]]
        rows.append(f"| {operation} | " + " | ".join(cells + ups) + " |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> None:
    """Measure and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="M", help="named size (M: 50,000 × 30,000)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts (1 2)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are reported (3)")
    parser.add_argument("--data-dir", type=Path, default=HERE / "data", help="where data and outputs go")
    parser.add_argument("--timeout", type=float, default=3600, help="seconds before an operation is given up")
    args = parser.parse_args(argv)
    cells, genes = SIZES[args.size]
    dataset = Dataset(cells, genes, DEFAULT_DENSITY, args.size)
    threads = sorted(set(args.threads))
    seconds = measure(dataset, threads, args.rounds, args.data_dir, args.timeout)
    print(f"\n{dataset.cells:,} cells × {dataset.genes:,} genes; {machine_description()}\n{versions()}\n")
    print(table(seconds, threads))


if __name__ == "__main__":
    main()
