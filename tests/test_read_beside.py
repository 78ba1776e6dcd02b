"""Whole reads with more than one thread: the matrices' chunks are read in a thread of their own while the
annotations are read, with the same result as one thing at a time, the same errors, and nothing left running."""

from __future__ import annotations

import gc
import sys
import threading
import time

import h5py
import numpy as np
import pytest
from anndata import AnnData
from anndata.tests.helpers import assert_adata_equal
from helpers import layer_keys
from scipy import sparse
from test_subset import rich

from scanpy_loomio import LoomFormatError, read_loom_full, write_loom_full
from scanpy_loomio._matrix import chunk_reader, pool
from scanpy_loomio._read import axes
from scanpy_loomio._read.beside import ReadsBeside

BESIDE = "scanpy-loomio-read"


@pytest.fixture(scope="module")
def rich_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("beside") / "rich.loom"
    write_loom_full(path, rich(), chunks=(16, 8))  # X, layers of every container, graphs, raw
    return path


def _matrix_threads(monkeypatch) -> list[str]:
    """Names of the threads that read matrices with the chunk reader from now on."""
    names: list[str] = []
    run = chunk_reader.ChunkReader.run

    def recorded(self, *args, **kwargs):
        names.append(threading.current_thread().name)
        return run(self, *args, **kwargs)

    monkeypatch.setattr(chunk_reader.ChunkReader, "run", recorded)
    return names


def _no_reader_thread_left() -> bool:
    return not any(t.name.startswith(BESIDE) for t in threading.enumerate())


def test_with_threads_the_matrices_are_read_beside_and_equal_a_read_in_one_thread(monkeypatch, rich_file):
    threads = _matrix_threads(monkeypatch)
    beside = read_loom_full(rich_file, n_threads=2)
    in_threads = list(threads)
    threads.clear()
    alone = read_loom_full(rich_file, n_threads=1)
    assert_adata_equal(alone, beside, exact=True)
    assert sorted(layer_keys(beside)) == ["array", "by_genes", "counts", "dense"]
    assert len(in_threads) == 5  # X and four layers
    assert all(name.startswith(BESIDE) for name in in_threads)
    assert threads == ["MainThread"] * 5  # one thread asked for: one thing at a time, here
    assert _no_reader_thread_left()


def test_the_annotations_are_read_while_a_matrix_is(monkeypatch, rich_file):
    # the matrix read waits until the genes' annotations are read: read one after the other, it would wait in vain
    annotations_read = threading.Event()
    waited: list[bool] = []
    run = chunk_reader.ChunkReader.run
    read_axis = axes.AxesReader.read_axis

    def matrix_waiting_for_annotations(self, *args, **kwargs):
        if not waited:
            waited.append(annotations_read.wait(timeout=30))
        return run(self, *args, **kwargs)

    def axis_then_signal(self, axis, *args, **kwargs):
        result = read_axis(self, axis, *args, **kwargs)
        if axis == "var":
            annotations_read.set()
        return result

    monkeypatch.setattr(chunk_reader.ChunkReader, "run", matrix_waiting_for_annotations)
    monkeypatch.setattr(axes.AxesReader, "read_axis", axis_then_signal)
    adata = read_loom_full(rich_file, n_threads=2)
    assert waited == [True]
    assert adata.shape == (150, 90)


def test_matrices_that_need_hdf5_are_read_here_after_the_annotations(tmp_path, monkeypatch):
    # an lzf-filtered layer is read through h5py (HDF5 calls): not in the other thread, which would race this one
    path = tmp_path / "lzf.loom"
    x = sparse.random(120, 70, density=0.3, format="csr", dtype=np.float32, random_state=4)
    write_loom_full(path, AnnData(x))
    with h5py.File(path, "r+") as f:
        f["layers"].create_dataset("spliced", data=x.T.toarray(), chunks=(32, 32), compression="lzf")
    threads = _matrix_threads(monkeypatch)
    beside = read_loom_full(path, n_threads=2)
    assert threads == [f"{BESIDE}_0"]  # X only: the lzf layer is read through h5py, here
    assert_adata_equal(read_loom_full(path, n_threads=1), beside, exact=True)
    assert np.array_equal(beside.layers["spliced"].toarray(), x.toarray())


def test_a_damaged_chunk_read_beside_names_the_file_the_layer_and_the_chunk(tmp_path):
    path = tmp_path / "broken.loom"
    x = sparse.random(200, 100, density=0.3, format="csr", dtype=np.float32, random_state=2)
    adata = AnnData(x, layers={"counts": x.copy()})
    write_loom_full(path, adata)
    with h5py.File(path, "r") as f:
        info = f["layers/counts"].id.get_chunk_info_by_coord((64, 128))
    with open(path, "r+b") as handle:
        handle.seek(info.byte_offset)
        handle.write(b"\x00" * info.size)
    with pytest.raises(LoomFormatError, match=r"broken\.loom.*the chunk at \(64, 128\) of /layers/counts"):
        read_loom_full(path, n_threads=2)
    assert _no_reader_thread_left()


def test_an_interrupt_while_the_annotations_are_read_lets_the_matrix_thread_go_at_once(tmp_path, monkeypatch):
    path = tmp_path / "many_columns.loom"
    write_loom_full(path, rich(3000, 64, extras=False), chunks=(64, 8))  # 375 chunk columns, one per task below
    monkeypatch.setattr(pool, "TASK_BYTES", 1)
    tasks_read: list[str] = []
    csr_task = chunk_reader.ChunkReader._csr_task

    def slow_task(self, units):
        tasks_read.append(threading.current_thread().name)
        time.sleep(0.01)  # 375 tasks: about 4 s for X alone
        return csr_task(self, units)

    def interrupted(self, *args, **kwargs):
        time.sleep(0.2)  # the matrix thread has started
        raise KeyboardInterrupt

    monkeypatch.setattr(chunk_reader.ChunkReader, "_csr_task", slow_task)
    monkeypatch.setattr(axes.AxesReader, "read_axis", interrupted)
    started = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        read_loom_full(path, n_threads=2)
    # the interrupt came after about 20 tasks: the read stopped after the task at hand, the layers never started
    assert 0 < len(tasks_read) < 100
    assert "MainThread" not in tasks_read
    assert time.perf_counter() - started < 2
    assert _no_reader_thread_left()
    assert gc.isenabled()


def test_reads_beside_run_in_order_and_raise_the_first_error():
    order: list[str] = []
    with pytest.raises(ValueError, match="first"), ReadsBeside() as reads:
        reads.add("a", lambda: _fail("first", order), beside=True)
        reads.add("b", lambda: order.append("b"), beside=True)
        reads.add("c", lambda: order.append("c"), beside=False)
        reads.results()
    assert order == ["a", "b"]  # the read beside after the failing one still ran; the one here was not reached
    assert _no_reader_thread_left()


def _fail(message: str, order: list[str]) -> None:
    order.append("a")
    raise ValueError(message)


def test_interpreter_pauses_overlapping_in_two_threads_restore_the_interpreter():
    # the first to start and the first to end are different threads: the collector must come back on, and the switch
    # interval back to what it was, only when the last pause ends
    interval = sys.getswitchinterval()
    first_in, second_in, first_out = threading.Event(), threading.Event(), threading.Event()
    seen: dict[str, bool] = {}

    def first() -> None:
        with pool.gc_paused():
            first_in.set()
            second_in.wait(10)
        first_out.set()

    def second() -> None:
        first_in.wait(10)
        with pool.gc_paused():
            second_in.set()
            first_out.wait(10)
            seen["paused after the first ended"] = not gc.isenabled()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert seen == {"paused after the first ended": True}
    assert gc.isenabled()
    assert sys.getswitchinterval() == interval


DEADLOCK_CHILD = r"""
import sys, threading
import h5py, numpy as np, pandas as pd
from anndata import AnnData
from scipy import sparse
from scanpy_loomio import LoomFormatError, read_loom_full, write_loom_full
from scanpy_loomio._matrix import chunk_reader
from scanpy_loomio._read import axes

path = sys.argv[1]
x = sparse.random(300, 50, density=0.2, format="csr", dtype=np.float32, random_state=0)
cluster = pd.Categorical(np.random.default_rng(0).choice(["a", "b"], 300))
write_loom_full(path, AnnData(x, obs=pd.DataFrame({"cluster": cluster}, index=[f"c{i}" for i in range(300)])))
with h5py.File(path, "r+") as f:  # categories that are not UTF-8: reading the obs annotations fails
    del f["scanpy_loomio/col_attrs/cluster/categories"]
    f["scanpy_loomio/col_attrs/cluster/categories"] = np.array([b"\xff", b"b"])
matrix_read = threading.Event()
run, read_elem = chunk_reader.ChunkReader.run, axes.read_elem

def signal_when_read(self, *args, **kwargs):
    result = run(self, *args, **kwargs)
    matrix_read.set()
    return result

def after_the_matrix(obj):  # called inside the iteration over the group's items(), which holds h5py's lock
    matrix_read.wait(30)
    return read_elem(obj)

chunk_reader.ChunkReader.run = signal_when_read
axes.read_elem = after_the_matrix
try:
    read_loom_full(path, n_threads=2)
except LoomFormatError as err:
    print("LoomFormatError:", err)
"""


def test_an_annotation_error_inside_an_h5py_iteration_does_not_deadlock_the_matrix_thread(tmp_path):
    # the annotations' error is raised while iterating an h5py group's items(), which holds h5py's lock until the
    # error is dropped; the matrix thread, done reading meanwhile, must not need that lock to finish (it freed the
    # dataset it had read, an h5py object, and waited for the lock for ever while this thread waited for it)
    import subprocess

    done = subprocess.run(
        [sys.executable, "-c", DEADLOCK_CHILD, str(tmp_path / "bad_categories.loom")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "LoomFormatError:" in done.stdout
    assert "/scanpy_loomio/col_attrs/cluster/categories" in done.stdout
