"""Worker threads for the chunk loops: how many, an ordered map over them, interpreter tuning and progress bars."""

from __future__ import annotations

import gc
import os
import sys
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, Protocol, TypeVar

import numpy as np

if TYPE_CHECKING:
    from collections.abc import Callable, Generator, Iterable, Iterator
    from concurrent.futures import Future

_T = TypeVar("_T")
_R = TypeVar("_R")

#: Uncompressed bytes of chunk tiles one worker task handles; bounds memory per task in flight.
TASK_BYTES = 8 * 2**20
#: GIL switch interval (seconds) during chunk loops.
SWITCH_INTERVAL = 0.0005


def available_threads() -> int:
    """Number of CPU cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def resolve_threads(n_threads: int | None) -> int:
    if n_threads is None:
        return available_threads()
    if isinstance(n_threads, bool) or not isinstance(n_threads, int | np.integer) or n_threads < 1:
        msg = f"n_threads must be a positive integer or None (all available cores), got {n_threads!r}"
        raise ValueError(msg)
    return int(n_threads)


def ordered_map(func: Callable[[_T], _R], items: Iterable[_T], n_threads: int) -> Iterator[_R]:
    """``map(func, items)`` on ``n_threads`` worker threads, yielding results in order.

    At most ``2 * n_threads`` items are in flight, which bounds the memory held by finished results.
    """
    if n_threads <= 1:
        yield from map(func, items)
        return
    window = 2 * n_threads
    with ThreadPoolExecutor(n_threads, thread_name_prefix="loom-matrix") as pool:
        pending: deque[Future[_R]] = deque()
        try:
            for item in items:
                pending.append(pool.submit(func, item))
                if len(pending) >= window:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            for future in pending:
                future.cancel()


class _InterpreterPause:
    """Pauses the cyclic garbage collector and shortens the GIL switch interval while any chunk loop runs.

    Loops may overlap in several threads (a matrix read in one while another locates the next matrix): the first
    to start saves the interpreter's settings and the last to end restores them, so that overlapping loops never
    restore each other's paused state.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._active = 0
        self._saved = (True, SWITCH_INTERVAL)

    @contextmanager
    def __call__(self) -> Generator[None, None, None]:
        with self._lock:
            if self._active == 0:
                self._saved = (gc.isenabled(), sys.getswitchinterval())
                gc.disable()
                sys.setswitchinterval(min(self._saved[1], SWITCH_INTERVAL))
            self._active += 1
        try:
            yield
        finally:
            with self._lock:
                self._active -= 1
                if self._active == 0:
                    enabled, interval = self._saved
                    sys.setswitchinterval(interval)
                    if enabled:
                        gc.enable()


#: Tune the interpreter for a chunk loop, and restore it afterwards.
#:
#: The cyclic garbage collector is paused: the loops create many short-lived containers but no reference cycles,
#: and each of the collector's frequent runs would also walk every object of the user's session. The GIL switch
#: interval is shortened to 0.5 ms: worker threads coming back from deflate (which runs without the GIL) then wait
#: less for the thread handing chunks to HDF5.
gc_paused = _InterpreterPause()


class ProgressBar(Protocol):
    """What the chunk loops use of a progress bar (a tqdm bar, or :class:`NoProgress`)."""

    def update(self, n: int = 1, /) -> object:
        """Advance the bar by ``n``."""

    def close(self) -> None:
        """Remove the bar."""


class NoProgress:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(enabled: bool, total: int, description: str) -> ProgressBar:
    """A tqdm bar that appears only when the work lasts longer than a couple of seconds."""
    if not enabled:
        return NoProgress()
    from tqdm.auto import tqdm  # only when a bar is shown: tqdm.auto looks for Jupyter on import

    return tqdm(total=total, desc=description, unit="chunk", unit_scale=True, delay=2, leave=False)
