"""Run one benchmark operation in this (fresh) process and print its measurements as one JSON line.

Usage: ``python benchmarks/_runner.py OPERATION INPUT OUTPUT [--threads N]``

Inputs are loaded first; then the process's peak memory is reset (``/proc/self/clear_refs``; a sampling
thread where that is not allowed), the operation runs, and the runner reports wall seconds, the peak
resident memory above the level after loading (``extra_bytes``), the output file's size and, for reads,
the size of the object read. After the clock stops, the operating system is asked to write what is still waiting
for the disk (``os.sync``), so an operation's output does not reach the disk during the next one. Operations that
make a file durable themselves (``write_loom_full`` syncs before moving the file into place) count that time; the
matrix engine alone does not.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _status_bytes(field: str) -> int | None:
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _current_rss() -> int:
    rss = _status_bytes("VmRSS")
    if rss is not None:
        return rss
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # best effort off Linux


class PeakMemory:
    """Peak resident memory of this process from ``start()`` on."""

    def __init__(self) -> None:
        self.exact = False
        self._peak = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        try:
            with open("/proc/self/clear_refs", "w") as clear:
                clear.write("5")  # reset VmHWM, the kernel's own peak counter
            self.exact = _status_bytes("VmHWM") is not None
        except OSError:
            self.exact = False
        if not self.exact:
            self._peak = _current_rss()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()

    def _sample(self) -> None:
        while not self._stop.wait(0.01):
            self._peak = max(self._peak, _current_rss())

    def stop(self) -> int:
        if self.exact:
            return _status_bytes("VmHWM") or 0
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        return max(self._peak, _current_rss())


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _matrix_bytes(value: Any) -> int:
    from scipy import sparse

    if value is None:
        return 0
    if sparse.issparse(value):
        return sum(getattr(value, a).nbytes for a in ("data", "indices", "indptr") if hasattr(value, a))
    return getattr(value, "nbytes", 0)


def adata_bytes(adata: Any) -> int:
    """Memory held by an AnnData's arrays and tables."""
    total = _matrix_bytes(adata.X)
    total += sum(_matrix_bytes(v) for v in adata.layers.values())
    for mapping in (adata.obsm, adata.varm, adata.obsp, adata.varp):
        total += sum(_matrix_bytes(v) for v in mapping.values())
    total += int(adata.obs.memory_usage(deep=True).sum()) + int(adata.var.memory_usage(deep=True).sum())
    return total


def _load_input(path: str) -> Any:
    import anndata as ad

    return ad.read_h5ad(path)


#: Cells and chunk shape of the reference workload of ``machine-deflate``.
REFERENCE_CELLS = 2048
REFERENCE_CHUNK = (64, 64)


def reference_blocks(path: str) -> list[bytes]:
    """The first cells of the input's ``X`` as dense 64 × 64 float32 tiles (genes × cells), as raw bytes.

    Read with h5py alone (CSR or dense ``X``), so the reference needs nothing of this package.
    """
    import h5py
    import numpy as np
    from scipy import sparse

    with h5py.File(path, "r") as f:
        x = f["X"]
        if isinstance(x, h5py.Group):
            n_genes = int(x.attrs["shape"][1])
            indptr = x["indptr"][: REFERENCE_CELLS + 1]
            lo, hi = int(indptr[0]), int(indptr[-1])
            band = sparse.csr_matrix(
                (x["data"][lo:hi], x["indices"][lo:hi], indptr - lo), shape=(len(indptr) - 1, n_genes)
            ).toarray()
        else:
            band = x[:REFERENCE_CELLS]
    dense = np.ascontiguousarray(band.T, dtype=np.float32)  # genes × cells, as loom stores it
    rows, cols = REFERENCE_CHUNK
    return [
        np.ascontiguousarray(dense[r : r + rows, c : c + cols]).tobytes()
        for r in range(0, dense.shape[0] - rows + 1, rows)
        for c in range(0, dense.shape[1] - cols + 1, cols)
    ]


def deflate_in_threads(blocks: list[bytes], threads: int, level: int = 2, passes: int = 4) -> None:
    """zlib-deflate every block ``passes`` times, the blocks split evenly over ``threads`` threads.

    zlib releases the GIL while it deflates: the threads share nothing, so the speed-up is the machine's own.
    """
    import zlib
    from concurrent.futures import ThreadPoolExecutor

    def deflate(part: list[bytes]) -> None:
        for _ in range(passes):
            for block in part:
                zlib.compress(block, level)

    parts = [blocks[k::threads] for k in range(threads)]
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(deflate, parts))


def run(
    operation: str,
    source: str,
    output: str,
    threads: int | None,
    chunks: tuple[int, int] | None = None,
    level: int | None = None,
) -> dict[str, Any]:
    """Load what ``operation`` needs, then time it and measure its memory."""
    import warnings

    warnings.filterwarnings("ignore")
    import anndata as ad

    import scanpy_loomio

    matrix_options: dict[str, Any] = {}
    if chunks is not None:
        matrix_options["chunks"] = chunks
    if level is not None:
        matrix_options["compression_level"] = level
    adata = None
    write_ops = {"loomio-write", "anndata-write-loom", "h5ad-gzip-write", "engine-write"}
    if operation in write_ops:
        adata = _load_input(source)
        if os.path.exists(output):
            os.remove(output)
    blocks = reference_blocks(source) if operation == "machine-deflate" else []
    gc.collect()
    baseline = _current_rss()
    peak = PeakMemory()
    peak.start()
    cpu_start = _cpu_seconds()
    start = time.perf_counter()
    result = None
    if operation == "loomio-write":
        scanpy_loomio.write_loom_full(output, adata, n_threads=threads, progress=False, **matrix_options)
    elif operation == "loomio-read":
        result = scanpy_loomio.read_loom_full(source, n_threads=threads, progress=False)
    elif operation == "loomio-read-meta":
        result = scanpy_loomio.read_loom_full(source, matrices=False, progress=False)
    elif operation == "anndata-write-loom":
        adata.write_loom(output, write_obsm_varm=True)
    elif operation == "anndata-read-loom":
        import scanpy as sc

        result = sc.read_loom(source, sparse=True)
    elif operation == "h5ad-gzip-write":
        adata.write_h5ad(output, compression="gzip")
    elif operation == "h5ad-gzip-read":
        result = ad.read_h5ad(source)
    elif operation == "engine-write":  # the matrix engine alone: X and the counts layer
        import h5py

        from scanpy_loomio._matrix import write_matrix

        with h5py.File(output, "w") as f:
            write_matrix(f, "matrix", adata.X, n_threads=threads, **matrix_options)
            write_matrix(
                f.create_group("layers"), "counts", adata.layers["counts"], n_threads=threads, **matrix_options
            )
    elif operation == "machine-deflate":  # the machine's own scaling: independent deflates, no HDF5
        deflate_in_threads(blocks, threads or 1)
    elif operation == "engine-read":
        import h5py

        from scanpy_loomio._matrix import read_matrix

        with h5py.File(source, "r") as f:
            result = [read_matrix(f["matrix"], n_threads=threads), read_matrix(f["layers/counts"], n_threads=threads)]
    else:
        msg = f"unknown operation {operation!r}"
        raise ValueError(msg)
    seconds = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu_start
    top = peak.stop()
    if hasattr(os, "sync"):
        # untimed: what the operation left for the disk is written now, not during the next operation's clock
        os.sync()
    record: dict[str, Any] = {
        "operation": operation,
        "seconds": seconds,
        "cpu_seconds": cpu,
        "extra_bytes": max(0, top - baseline),
        "baseline_bytes": baseline,
        "peak_exact": peak.exact,
    }
    if operation in write_ops:
        record["file_bytes"] = os.path.getsize(output)
        record["input_bytes"] = adata_bytes(adata)
    if result is not None:
        record["result_bytes"] = (
            sum(_matrix_bytes(m) for m in result) if isinstance(result, list) else adata_bytes(result)
        )
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("operation")
    parser.add_argument("source", help="input .h5ad for writes, the file to read for reads")
    parser.add_argument("output", help="file to write (ignored by reads)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--chunks", help="chunk shape of written matrices, as ROWS,COLUMNS (genes, cells)")
    parser.add_argument("--level", type=int, default=None, help="gzip level of written matrices")
    args = parser.parse_args()
    chunks = tuple(int(c) for c in args.chunks.split(",")) if args.chunks else None
    print(json.dumps(run(args.operation, args.source, args.output, args.threads, chunks, args.level)))


if __name__ == "__main__":
    main()
