"""The sparse result of a read: non-zeros of consecutive bands collected into one CSR or CSC matrix."""

from __future__ import annotations

import os
from functools import cache
from typing import Literal, overload

import numpy as np
from scipy import sparse

from scanpy_loomio._matrix.tiles import INDEX32_MAX

#: Elements per segment of a sparse result when the system refuses to reserve room for all of it at once.
SEGMENT_ELEMENTS = 2**24


class CompressedAssembler:
    """Collects the non-zeros of consecutive bands into a CSR (or CSC) matrix of unknown final size.

    The first segment reserves address space for every non-zero that could come (at most the physical memory
    size). Untouched pages of a reservation cost no memory, and shrinking it to the final size at the end
    copies nothing, so the non-zeros are written exactly once and the peak is the size of the result. Where
    the system refuses the reservation or counts reserved space as used (Linux's strict overcommit mode),
    fixed-size segments are used instead and copied into the final arrays at the end, each released as soon
    as it has been copied.
    """

    def __init__(self, n_major: int, n_minor: int, dtype: np.dtype, index_dtype: np.dtype) -> None:
        self.n_major = n_major
        self.n_minor = n_minor
        self.dtype = dtype
        self.index_dtype = index_dtype
        self.counts = np.zeros(n_major + 1, dtype=np.int64)
        self.remaining_capacity = n_major * n_minor  # more non-zeros than this cannot come
        self.segments: list[tuple[np.ndarray, np.ndarray]] = []
        self.used = 0  # elements used in the last segment
        self.nnz = 0

    def _new_segment(self) -> None:
        size = max(1, min(SEGMENT_ELEMENTS, self.remaining_capacity))
        if not self.segments and overcommit_allowed():
            per_element = self.dtype.itemsize + self.index_dtype.itemsize
            reserve = max(1, min(self.remaining_capacity, _physical_memory() // per_element))
            try:
                pair = (np.empty(reserve, dtype=self.index_dtype), np.empty(reserve, dtype=self.dtype))
            except MemoryError:
                pass  # strict overcommit: fall back to segments
            else:
                self.segments.append(pair)
                self.remaining_capacity -= reserve
                self.used = 0
                return
        self.remaining_capacity -= size
        self.segments.append((np.empty(size, dtype=self.index_dtype), np.empty(size, dtype=self.dtype)))
        self.used = 0

    def append(self, major_start: int, counts: np.ndarray, indices: np.ndarray, data: np.ndarray) -> None:
        self.counts[1 + major_start : 1 + major_start + counts.shape[0]] = counts
        done = 0
        n = indices.shape[0]
        while done < n:
            if not self.segments or self.used == self.segments[-1][0].shape[0]:
                self._new_segment()
            seg_indices, seg_data = self.segments[-1]
            take = min(n - done, seg_indices.shape[0] - self.used)
            seg_indices[self.used : self.used + take] = indices[done : done + take]
            seg_data[self.used : self.used + take] = data[done : done + take]
            self.used += take
            done += take
        self.nnz += n

    @overload
    def finish(self, fmt: Literal["csr"]) -> sparse.csr_matrix: ...
    @overload
    def finish(self, fmt: str) -> sparse.csr_matrix | sparse.csc_matrix: ...
    def finish(self, fmt: str) -> sparse.csr_matrix | sparse.csc_matrix:
        nnz = self.nnz
        if len(self.segments) == 1:
            indices, data = self.segments.pop()
            # Shrink in place (the unused tail was never touched): no copy, no second peak.
            indices.resize(nnz, refcheck=False)
            data.resize(nnz, refcheck=False)
        else:
            indices = np.empty(nnz, dtype=self.index_dtype)
            data = np.empty(nnz, dtype=self.dtype)
            pos = 0
            self.segments.reverse()
            while self.segments:
                seg_indices, seg_data = self.segments.pop()
                take = min(seg_indices.shape[0], nnz - pos)
                indices[pos : pos + take] = seg_indices[:take]
                data[pos : pos + take] = seg_data[:take]
                pos += take
                del seg_indices, seg_data
        index_dtype = np.dtype(np.int64) if nnz > INDEX32_MAX else self.index_dtype
        indptr = np.cumsum(self.counts, dtype=np.int64).astype(index_dtype, copy=False)
        cls = sparse.csr_matrix if fmt == "csr" else sparse.csc_matrix
        shape = (self.n_major, self.n_minor) if fmt == "csr" else (self.n_minor, self.n_major)
        result = cls((data, indices, indptr), shape=shape, copy=False)
        result.has_sorted_indices = True
        result.has_canonical_format = True
        return result


@cache
def overcommit_allowed() -> bool:
    """Whether reserving address space costs nothing until it is touched (not Linux's strict accounting mode)."""
    try:
        with open("/proc/sys/vm/overcommit_memory") as setting:
            return setting.read().strip() != "2"
    except OSError:
        return True


@cache
def _physical_memory() -> int:
    """Bytes of RAM, or a conservative 4 GiB where the system does not say."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 4 * 2**30
