"""Matrices read in a thread of their own while this one reads the annotations of the same file.

Reading a matrix's chunks through the file's own descriptor calls no HDF5 and spends its time in compiled code,
while reading the annotations calls HDF5 through h5py and spends it in Python: with more than one thread asked
for, the two overlap. The HDF5 calls a matrix needs (its layout, a descriptor of the file) are made in this
thread before its read is handed over; reads that would call HDF5 wait here until the annotations are read.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, nullcontext
from typing import TYPE_CHECKING, Any

from scanpy_loomio._guards import hdf5_object
from scanpy_loomio._matrix.pool import gc_paused

if TYPE_CHECKING:
    from collections.abc import Callable
    from types import TracebackType


class ReadsBeside:
    """Matrix reads that call no HDF5 run one after another in one thread; the others run here, in order, after.

    Use it as a context manager around the reading of the annotations: :meth:`add` each matrix before it,
    :meth:`results` after it. When the block ends with an error (an interrupt included), :attr:`stop` is set,
    which ends a read under way within a task of chunks, and the block waits for that thread before the error
    goes on: the file stays open for as long as it reads.

    The other thread must not free h5py objects: that takes h5py's lock, which this thread may hold while it
    waits (an iteration over an h5py group's ``items()`` that an error interrupted holds it until the error is
    dropped), and then neither thread could go on. The reads handed over hold no h5py objects, and the garbage
    collector, which could free this thread's in the other one, is paused for as long as the block lasts.

    Examples
    --------
    >>> with ReadsBeside() as reads:
    ...     reads.add("X", lambda: "read beside", beside=True)
    ...     reads.add("counts", lambda: "read here", beside=False)
    ...     annotations = "read meanwhile"
    ...     values = reads.results()
    >>> values
    {'X': 'read beside', 'counts': 'read here'}
    """

    def __init__(self) -> None:
        #: set when the block ends with an error: reads handed over stop soon after
        self.stop = threading.Event()
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="scanpy-loomio-read")
        self._reads: dict[Any, tuple[Future[Any] | Callable[[], Any], str | None]] = {}
        self._paused = ExitStack()

    def __enter__(self) -> ReadsBeside:
        self._paused.enter_context(gc_paused())
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if exc_type is not None:
            self.stop.set()
        try:
            self._pool.shutdown(wait=True)
        finally:
            self._paused.close()

    def add(self, key: Any, read: Callable[[], Any], *, beside: bool, hdf5_path: str | None = None) -> None:
        """Read ``key`` with ``read``: in the other thread (``beside``, it must call no HDF5) or at :meth:`results`.

        ``hdf5_path`` names the object read in the error should reading fail.
        """
        self._reads[key] = (self._pool.submit(read) if beside else read, hdf5_path)

    def results(self) -> dict[Any, Any]:
        """Every value by key, in the order added: reads handed over are waited for, the others are made here."""
        values = {}
        for key, (pending, hdf5_path) in self._reads.items():
            with hdf5_object(hdf5_path) if hdf5_path is not None else nullcontext():
                values[key] = pending.result() if isinstance(pending, Future) else pending()
        return values
