"""The sparse result of a read: non-zeros of consecutive bands collected into one CSR or CSC matrix."""

from __future__ import annotations

import os
import threading
from functools import cache
from typing import Literal, overload

import numpy as np
from scipy import sparse

from scanpy_loomio._matrix.tiles import INDEX32_MAX

#: Elements per segment of a sparse result when the system refuses to reserve room for all of it at once.
SEGMENT_ELEMENTS = 2**24


Pieces = list[tuple[int, np.ndarray, np.ndarray, np.ndarray]]


class PlacementChain:
    """Places the non-zeros of numbered tasks into an assembler's reserved room, in task order, from the workers.

    Task ``k``'s non-zeros go right after task ``k - 1``'s. A worker that finishes a task hands its pieces over
    (:meth:`settle`); if every task before has its position, the worker takes the next position and copies its
    pieces there, then does the same for the tasks after it that finished meanwhile. Workers never wait for each
    other, and two of them copy at once when their tasks come one after the other. The collecting thread asks for
    each task's :meth:`outcome` in order. Once a task's non-zeros do not fit, its pieces and those of every task
    after it are handed to the collecting thread to append instead.
    """

    def __init__(self, assembler: CompressedAssembler, capacity: int) -> None:
        self.assembler = assembler
        self.capacity = capacity
        self._condition = threading.Condition()
        self._waiting: dict[int, Pieces] = {}
        self._outcomes: dict[int, int | Pieces | Exception] = {}
        self._next = 0  # the next task to be given a position
        self._position: int | None = 0  # where its non-zeros go; None once some did not fit

    def settle(self, task: int, pieces: Pieces) -> None:
        """Hand over task ``task``'s pieces; place them, and those of the tasks after it waiting, if it is next."""
        with self._condition:
            self._waiting[task] = pieces
        while True:
            with self._condition:
                if self._next not in self._waiting:
                    return  # placed by the thread of the task before it, once that one is settled
                number, pieces = self._next, self._waiting.pop(self._next)
                self._next += 1
                n = sum(indices.shape[0] for _, _, indices, _ in pieces)
                position = self._position
                fits = position is not None and position + n <= self.capacity
                self._position = position + n if fits and position is not None else None
            outcome: int | Pieces | Exception = pieces
            if fits and position is not None:
                try:
                    outcome = self.assembler.place(position, pieces)
                except Exception as err:  # noqa: BLE001 - handed to the collecting thread, which raises it
                    outcome = err
            with self._condition:
                self._outcomes[number] = outcome
                self._condition.notify_all()

    def outcome(self, task: int) -> int | Pieces:
        """The number of task ``task``'s non-zeros placed, or its pieces to append; waits until it is settled."""
        with self._condition:
            while task not in self._outcomes:
                self._condition.wait()
            outcome = self._outcomes.pop(task)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


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

    def reserve(self) -> int:
        """Reserve room for every non-zero that can come, where the system allows it; return how many fit (or 0).

        Worker threads may then :meth:`place` non-zeros into the room, each task's at the position
        :class:`PlacementChain` gives it, so that copying them (and the memory's first use, which the system charges
        to whoever touches it first) is spread over the workers instead of falling to the thread collecting.
        """
        if not self.segments and overcommit_allowed():
            self._new_segment()
        if len(self.segments) != 1 or self.used != 0:
            return 0
        return int(self.segments[0][0].shape[0])

    def place(self, position: int, pieces: Pieces) -> int:
        """Copy ``pieces`` (``(major_start, counts, indices, data)``) into the reserved room from ``position`` on.

        Safe in several threads at once for pieces of different rows and positions that do not overlap. Returns
        the number of non-zeros placed; the collecting thread then calls :meth:`placed` in order.
        """
        seg_indices, seg_data = self.segments[0]
        start = position
        for major_start, counts, indices, data in pieces:
            self.counts[1 + major_start : 1 + major_start + counts.shape[0]] = counts
            n = indices.shape[0]
            seg_indices[position : position + n] = indices
            seg_data[position : position + n] = data
            position += n
        return position - start

    def placed(self, n: int) -> None:
        """Count ``n`` non-zeros :meth:`place` put right after those collected so far."""
        self.used += n
        self.nnz += n

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
