"""Readers and writers in separate processes.

A reader opening a file while another process replaces it sees the old or the new file, whole; several processes
read one file at once; and a process holding the file open for writing (with HDF5's file lock) does not stop readers,
because the reader opens files without HDF5 file locking.
"""

from __future__ import annotations

import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from anndata import AnnData
from anndata.tests.helpers import assert_adata_equal
from helpers import as_h5ad_gives

import scanpy_loomio
from scanpy_loomio import read_loom_full, write_loom_full

pytestmark = pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="the writer and reader processes are forked (POSIX)"
)
FORK = multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None


def adata_for(seed: int) -> AnnData:
    rng = np.random.default_rng(seed)
    adata = AnnData(
        rng.poisson(1.0, size=(300, 80)).astype(np.int32),
        obs=pd.DataFrame({"batch": rng.choice(["a", "b"], 300)}, index=[f"{seed}-cell{i}" for i in range(300)]),
        var=pd.DataFrame(index=[f"gene{i}" for i in range(80)]),
    )
    adata.uns["version"] = seed
    return adata


def _replace_repeatedly(
    target: str, versions: list[AnnData], times: int, enough: multiprocessing.Event | None = None
) -> None:
    """Replace ``target`` ``times`` times, and on (up to ten times as often) until ``enough`` is set."""
    for i in range(10 * times):
        if i >= times and (enough is None or enough.is_set()):
            return
        write_loom_full(target, versions[i % len(versions)])


def test_reader_sees_the_old_or_the_new_file_whole(tmp_path: Path) -> None:
    old, new = adata_for(1), adata_for(2)
    target = tmp_path / "shared.loom"
    write_loom_full(target, old)
    expected = {1: as_h5ad_gives(old), 2: as_h5ad_gives(new)}  # made once: the loop must read as often as it can
    enough = FORK.Event()  # a loaded machine may read rarely: the writer goes on until both versions were seen
    writer = FORK.Process(target=_replace_repeatedly, args=(str(target), [new, old], 12, enough))
    writer.start()
    seen = {1: 0, 2: 0}
    try:
        while writer.is_alive():
            back = read_loom_full(target)
            version = back.uns["version"]
            assert_adata_equal(expected[version], back, exact=True)
            seen[version] += 1
            if all(seen.values()):
                enough.set()
    finally:
        writer.join(timeout=300)
    assert writer.exitcode == 0
    # reads happened while the file was being replaced both ways
    assert seen[1] > 0
    assert seen[2] > 0


def _read_many(path: str, times: int, queue: multiprocessing.Queue) -> None:
    try:
        for _ in range(times):
            back = read_loom_full(path)
            assert back.uns["version"] == 1
    except BaseException as err:  # noqa: BLE001 - report whatever happened to the parent
        queue.put(f"{type(err).__name__}: {err}")
    else:
        queue.put("ok")


def _hold_open_for_writing(path: str, opened: multiprocessing.Event, release: multiprocessing.Event) -> None:
    # as loompy.connect(path, "r+") or h5py.File(path, "a") do, with HDF5's default file locking
    with h5py.File(path, "r+"):
        opened.set()
        release.wait(timeout=300)


def _h5py_open_with_locking(path: str, queue: multiprocessing.Queue) -> None:
    try:
        with h5py.File(path, "r", locking=True):
            queue.put("opened")
    except OSError as err:
        queue.put(f"OSError: {err}")


@pytest.mark.skipif(
    os.environ.get("HDF5_USE_FILE_LOCKING", "").upper() == "TRUE",
    reason="HDF5_USE_FILE_LOCKING=TRUE makes HDF5 lock for readers too",
)
def test_readers_at_once_even_while_a_writer_holds_the_file(tmp_path: Path) -> None:
    target = tmp_path / "shared.loom"
    write_loom_full(target, adata_for(1))
    opened, release = FORK.Event(), FORK.Event()
    holder = FORK.Process(target=_hold_open_for_writing, args=(str(target), opened, release))
    holder.start()
    try:
        assert opened.wait(timeout=120)
        queue = FORK.Queue()
        if os.environ.get("HDF5_USE_FILE_LOCKING", "").upper() != "FALSE":
            # HDF5's lock is real: a reader that asks for it is refused
            probe = FORK.Process(target=_h5py_open_with_locking, args=(str(target), queue))
            probe.start()
            probe.join(timeout=120)
            assert "unable to lock file" in queue.get(timeout=10).lower()
        readers = [FORK.Process(target=_read_many, args=(str(target), 15, queue)) for _ in range(2)]
        for reader in readers:
            reader.start()
        results = [queue.get(timeout=300) for _ in readers]
        for reader in readers:
            reader.join(timeout=60)
    finally:
        release.set()
        holder.join(timeout=60)
    assert results == ["ok", "ok"]
    assert holder.exitcode == 0


def test_locking_asked_for_by_the_environment(tmp_path: Path) -> None:
    """HDF5_USE_FILE_LOCKING=TRUE overrides the reader's choice in HDF5; the reader then says so clearly.

    HDF5 reads the variable once, when it starts, so the reader runs in a new process.
    """
    target = tmp_path / "shared.loom"
    write_loom_full(target, adata_for(1))
    opened, release = FORK.Event(), FORK.Event()
    holder = FORK.Process(target=_hold_open_for_writing, args=(str(target), opened, release))
    holder.start()
    code = (
        "import sys\n"
        "from scanpy_loomio import read_loom_full\n"
        "try:\n"
        "    read_loom_full(sys.argv[1])\n"
        "except BlockingIOError as err:\n"
        "    print('BlockingIOError', err)\n"
        "else:\n"
        "    print('read')\n"
    )
    package = str(Path(scanpy_loomio.__file__).parents[1])
    env = dict(
        os.environ,
        HDF5_USE_FILE_LOCKING="TRUE",
        PYTHONPATH=os.pathsep.join([package, os.environ.get("PYTHONPATH", "")]),
    )
    try:
        assert opened.wait(timeout=120)
        result = subprocess.run(
            [sys.executable, "-c", code, str(target)], capture_output=True, text=True, env=env, timeout=300, check=True
        )
    finally:
        release.set()
        holder.join(timeout=60)
    assert result.stdout.startswith("BlockingIOError"), result.stdout + result.stderr
    assert "HDF5_USE_FILE_LOCKING='TRUE' makes readers take the lock too" in result.stdout
    assert str(target) in result.stdout
