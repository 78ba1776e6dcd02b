"""The memory budget of a read: the memory available, the limit asked for, and the check of the read against it.

What each part of the read needs comes from the matrix engine's cost model (:mod:`scanpy_loomio._matrix.costs`);
here it is compared with the limit, before anything is allocated.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import h5py
import numpy as np

from scanpy_loomio._errors import LoomFormatError
from scanpy_loomio._guards.problems import file_error, join_path
from scanpy_loomio._matrix.costs import Cost, MatrixRead, elements, stored_elements, value_bytes
from scanpy_loomio._record.tags import AbsentMatrixTag, MatrixTag, graph_tag, layer_tag
from scanpy_loomio._spec.facts import NUMERIC_KINDS

if TYPE_CHECKING:
    from scanpy_loomio._guards.structure import DatasetInfo

#: Bytes counted per obs/var name (a Python ``str``, its pointer, and pandas' index of it).
NAME_BYTES = 128
#: Chunk positions per matrix beyond which reading takes too long to be worth trying without being asked
#: (2**27 positions of loompy's 64 × 64 chunks: 5.6e11 elements, ten million cells × 56,000 genes).
MAX_CHUNK_POSITIONS = 2**27
#: A matrix declaring more empty space than the memory limit must store at least this fraction of its chunks.
MIN_STORED_FRACTION = 0.01

MemoryLimit = int | Literal["available"] | None


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def available_memory() -> int | None:
    """Bytes this process can still allocate: the least of free RAM, the cgroup's room and ``RLIMIT_AS``."""
    candidates: list[int] = []
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                candidates.append(int(line.split()[1]) * 1024)
                break
    if not candidates:
        with contextlib.suppress(AttributeError, ValueError, OSError):
            candidates.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < 2**60:
            candidates.append(max(0, limit - usage))
            break
    with contextlib.suppress(ImportError, OSError, ValueError):
        import resource  # Unix only

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            pages = int(Path("/proc/self/statm").read_text().split()[0])
            candidates.append(max(0, soft - pages * os.sysconf("SC_PAGE_SIZE")))
    return min(candidates) if candidates else None


def resolve_memory_limit(memory_limit: MemoryLimit) -> int | None:
    """Turn the ``memory_limit`` argument into bytes (``None``: no limit)."""
    if memory_limit is None:
        return None
    if isinstance(memory_limit, str):
        if memory_limit != "available":
            msg = f"memory_limit={memory_limit!r}; expected 'available', a number of bytes, or None for no limit."
            raise ValueError(msg)
        return available_memory()
    if isinstance(memory_limit, bool) or not isinstance(memory_limit, int | np.integer) or memory_limit < 0:
        msg = f"memory_limit={memory_limit!r}; expected 'available', a number of bytes (>= 0), or None for no limit."
        raise TypeError(msg)
    return int(memory_limit)


def format_bytes(n: float) -> str:
    """``1536`` → ``'1.5 KiB'``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} PiB"  # pragma: no cover


def _matrix_costs(path: Path, info: DatasetInfo, *, sparse: bool, dtype: str | None, limit: int | None) -> list[Cost]:
    dset = info.dataset
    if dset.ndim != 2 or dset.dtype.kind not in NUMERIC_KINDS:
        raise file_error(
            path,
            info.name,
            f"a {dset.ndim}-D dataset of dtype {dset.dtype}",
            "a 2-D dataset of numbers (genes × cells)",
        )
    tag = layer_tag(dset)  # checked by check_tags before
    if isinstance(tag, AbsentMatrixTag):
        return []
    kind = tag if isinstance(tag, MatrixTag) else None
    fmt = (kind.format if kind else None) or ("csr" if sparse else "dense")
    read = MatrixRead(dset, fmt, np.dtype((kind.dtype if kind else None) or dtype or dset.dtype))
    if limit is not None:
        _check_matrix_limits(path, info.name, read, limit)
    return read.costs(info.name)


def _check_matrix_limits(path: Path, where: str, read: MatrixRead, limit: int) -> None:
    """Refuse matrices whose chunk grid, single chunk or unstored space alone is beyond reason or the limit."""
    dset = read.dataset
    grid = read.chunk_positions
    if grid is not None and grid > MAX_CHUNK_POSITIONS:
        raise file_error(
            path,
            where,
            f"a {dset.shape} {dset.dtype} dataset in chunks of {dset.chunks}: {grid:,} chunk positions",
            f"at most {MAX_CHUNK_POSITIONS:,} chunk positions",
            "Reading would visit every one of them; the file may be damaged or crafted. Pass memory_limit=None "
            "to read it anyway.",
        )
    chunk_bytes = read.chunk_bytes
    if chunk_bytes is not None and chunk_bytes > limit:
        raise file_error(
            path,
            where,
            f"chunks of {dset.chunks} ({format_bytes(chunk_bytes)} each, decompressed whole)",
            f"chunks that fit in the memory limit of {format_bytes(limit)}",
            "Pass memory_limit=None to read it anyway.",
        )
    declared = read.declared_bytes
    if read.format != "dense" and declared > limit:
        # a real sparse matrix leaves chunks of zeros unstored, but not nearly all of them
        total = read.elements
        stored = stored_elements(dset)
        empty = (total - stored) * dset.dtype.itemsize
        if empty > limit and stored < MIN_STORED_FRACTION * total:
            raise file_error(
                path,
                where,
                f"a {dset.shape} {dset.dtype} dataset declaring {total:,} elements ({format_bytes(declared)}) "
                f"with data stored for at most {stored:,} of them",
                f"a matrix whose declared size is backed by stored data (at least {MIN_STORED_FRACTION:.0%} of it)",
                f"Reading it would scan {format_bytes(empty)} of empty space, more than the memory limit of "
                f"{format_bytes(limit)}; a real matrix this size stores more of its chunks. The file may be damaged "
                "or crafted. Pass memory_limit=None to read it anyway.",
            )


def check_read_size(
    file: h5py.File,
    path: Path,
    datasets: list[DatasetInfo],
    *,
    n_obs: int,
    n_vars: int,
    sparse: bool = True,
    dtype: str | None = None,
    matrices: bool = True,
    limit: int | None,
) -> None:
    """Refuse, before allocating anything, a read that needs more memory than ``limit`` bytes.

    Counted: dense matrices (sparse ones need what is stored, which is not known before reading; their declared size
    must instead be backed by stored chunks), every other dataset at its declared size, obs/var names and graphs
    recorded as dense.

    Raises
    ------
    LoomFormatError
        Naming the largest parts, the need and the limit, and how to read anyway.
    """
    matrix_names = {"/matrix"} | {d.name for d in datasets if d.name.startswith("/layers/")}
    costs: list[Cost] = []
    for info in datasets:
        if info.name in matrix_names:
            if info.name == "/matrix" or matrices:
                found = _matrix_costs(path, info, sparse=sparse, dtype=dtype, limit=limit)
                costs.extend(found if matrices else [])
            continue
        nbytes = elements(info.shape) * value_bytes(info.dataset.dtype)
        costs.append(Cost(info.name, nbytes, f"{info.shape} {info.dataset.dtype}"))
    costs.append(Cost("obs/var names", (n_obs + n_vars) * NAME_BYTES, f"{n_obs:,} + {n_vars:,} names"))
    for group_name, n in (("col_graphs", n_obs), ("row_graphs", n_vars)):
        group = file.get(group_name)
        if not isinstance(group, h5py.Group):
            continue
        for name, graph in group.items():
            codec = graph_tag(graph) if graph is not None else None
            if codec and codec.matrix.format == "dense":
                itemsize = np.dtype(codec.matrix.dtype or "float64").itemsize
                costs.append(Cost(join_path(group.name, name), n * n * itemsize, f"a dense {n} × {n} graph"))
    need = sum(c.nbytes for c in costs)
    if limit is None or need <= limit:
        return
    largest = sorted(costs, key=lambda c: c.nbytes, reverse=True)[:3]
    parts = "; ".join(f"{c.where}: {c.what}, {format_bytes(c.nbytes)}" for c in largest)
    msg = (
        f"{path}: /: found a file whose reading needs about {format_bytes(need)} of memory (largest parts: {parts}); "
        f"expected at most the memory limit of {format_bytes(limit)}. Read less (sparse=True, matrices=False) or "
        "pass memory_limit=None to read it anyway."
    )
    raise LoomFormatError(msg)
