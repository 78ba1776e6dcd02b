"""Shared fixtures and helpers for the tests."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from pathlib import Path

import pytest

#: Real loom files written by other tools (see ../shared/fixtures/real/MANIFEST.md).
REAL_FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "real"


@pytest.fixture
def real_fixtures() -> Path:
    """The folder of real loom files; skips when the shared folder is not beside the repository."""
    if not REAL_FIXTURES.is_dir():
        pytest.skip(f"real fixtures not found at {REAL_FIXTURES} (clone the project with ../shared beside it)")
    return REAL_FIXTURES


def _run_in_child(func: Callable[[], object], timeout: float = 120) -> tuple[str, int | None, str]:
    """Run ``func`` in a forked process; return (outcome, errno, message) where outcome is 'ok' or the error type."""
    fork = multiprocessing.get_context("fork")
    queue = fork.Queue()

    def target() -> None:
        try:
            func()
        except BaseException as err:  # noqa: BLE001 - report whatever happened to the parent
            queue.put((type(err).__name__, getattr(err, "errno", None), str(err)))
        else:
            queue.put(("ok", None, ""))

    child = fork.Process(target=target)
    child.start()
    try:
        return queue.get(timeout=timeout)
    finally:
        child.join(timeout=timeout)
        assert child.exitcode == 0, f"the child process died ({child.exitcode})"


@pytest.fixture
def run_in_child() -> Callable[..., tuple[str, int | None, str]]:
    """Runs a function in a forked process (for resource limits and kills); skips where fork is unavailable."""
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("needs fork (POSIX)")
    return _run_in_child
