"""Sparse reads with worker threads: each worker places its task's non-zeros into the result itself, in order,
with the same matrix as one thread builds; where the reserved room runs out, the rest is appended as before."""

from __future__ import annotations

import threading

import h5py
import numpy as np
import pytest
from scipy import sparse

from scanpy_loomio._matrix import assembler, pool, read_matrix, write_matrix
from scanpy_loomio._matrix.assembler import CompressedAssembler, PlacementChain


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A 700 × 300 float32 CSR matrix written with 16 × 16 chunks (44 chunk columns, 19 chunk rows)."""
    x = sparse.random(700, 300, density=0.15, format="csr", dtype=np.float32, random_state=3)
    x.data[::7] = -x.data[::7]
    path = tmp_path_factory.mktemp("assembly") / "m.h5"
    with h5py.File(path, "w") as f:
        write_matrix(f, "matrix", x, chunks=(16, 16))
    return path, x


def _recorded(monkeypatch, name: str) -> list[str]:
    threads: list[str] = []
    method = getattr(CompressedAssembler, name)

    def recorded(self, *args):
        threads.append(threading.current_thread().name)
        return method(self, *args)

    monkeypatch.setattr(CompressedAssembler, name, recorded)
    return threads


def _assert_same(got, expected) -> None:
    assert got.has_canonical_format
    assert np.array_equal(got.indptr, expected.indptr)
    assert np.array_equal(got.indices, expected.indices)
    assert np.array_equal(got.data, expected.data)


@pytest.mark.parametrize("fmt", ["csr", "csc"])
def test_workers_place_the_non_zeros_themselves_and_the_matrix_is_the_same(monkeypatch, stored, fmt):
    path, x = stored
    monkeypatch.setattr(pool, "TASK_BYTES", 1)  # one chunk column (row) per task: many tasks in flight
    placed, appended = _recorded(monkeypatch, "place"), _recorded(monkeypatch, "append")
    with h5py.File(path, "r") as f:
        got = read_matrix(f["matrix"], format=fmt, n_threads=2)
        assert placed
        assert not any(name == "MainThread" for name in placed)
        assert appended == []
        placed.clear()
        one = read_matrix(f["matrix"], format=fmt, n_threads=1)  # one thread: appended in order, no placing
    assert placed == []
    assert appended
    _assert_same(got, one)
    _assert_same(got, x if fmt == "csr" else x.tocsc())


def test_when_the_room_runs_out_the_rest_is_appended_in_order(monkeypatch, stored):
    path, x = stored
    monkeypatch.setattr(pool, "TASK_BYTES", 1)
    # room for about half of the non-zeros: the first tasks are placed by the workers, the others appended
    monkeypatch.setattr(assembler, "_physical_memory", lambda: (x.nnz // 2) * 8)
    placed, appended = _recorded(monkeypatch, "place"), _recorded(monkeypatch, "append")
    with h5py.File(path, "r") as f:
        got = read_matrix(f["matrix"], n_threads=2)
    assert placed
    assert appended
    assert set(appended) == {"MainThread"}
    _assert_same(got, x)


def test_without_room_reserved_at_once_the_workers_hand_everything_to_the_collecting_thread(monkeypatch, stored):
    path, x = stored
    monkeypatch.setattr(assembler, "overcommit_allowed", lambda: False)  # Linux's strict accounting mode
    monkeypatch.setattr(assembler, "SEGMENT_ELEMENTS", 1000)
    placed = _recorded(monkeypatch, "place")
    with h5py.File(path, "r") as f:
        got = read_matrix(f["matrix"], n_threads=2)
    assert placed == []
    _assert_same(got, x)


def _pieces(first_row: int, rows: list[list[int]]) -> list:
    counts = np.array([len(r) for r in rows], dtype=np.int64)
    indices = np.array([i for r in rows for i in r], dtype=np.int32)
    return [(first_row, counts, indices, indices.astype(np.float32) + 0.5)]


def test_a_chain_places_tasks_settled_out_of_order_in_order():
    target = CompressedAssembler(4, 10, np.dtype(np.float32), np.dtype(np.int32))
    capacity = target.reserve()
    assert capacity >= 40
    chain = PlacementChain(target, capacity)
    chain.settle(1, _pieces(2, [[1, 4], [0]]))  # the task before is not settled: it waits, nothing placed
    assert target.nnz == 0
    chain.settle(0, _pieces(0, [[3], [2, 5, 9]]))  # places itself, then the task waiting after it
    for task, n in ((0, 4), (1, 3)):
        assert chain.outcome(task) == n
        target.placed(n)
    result = target.finish("csr")
    expected = sparse.csr_matrix(
        (np.array([3, 2, 5, 9, 1, 4, 0]) + 0.5, [3, 2, 5, 9, 1, 4, 0], [0, 1, 4, 6, 7]), shape=(4, 10)
    )
    assert np.array_equal(result.toarray(), expected.toarray())
    assert np.array_equal(result.indices, expected.indices)


def test_a_chain_hands_what_does_not_fit_and_everything_after_it_to_the_collecting_thread():
    target = CompressedAssembler(6, 10, np.dtype(np.float32), np.dtype(np.int32))
    assert target.reserve() >= 5
    chain = PlacementChain(target, 5)  # room for five non-zeros
    first, second, third = _pieces(0, [[1, 2], [3]]), _pieces(2, [[4, 5, 6]]), _pieces(3, [[0]])
    chain.settle(0, first)
    chain.settle(1, second)  # 3 + 3 > 5
    chain.settle(2, third)  # would fit, but comes after one that did not
    assert chain.outcome(0) == 3
    assert chain.outcome(1) is second
    assert chain.outcome(2) is third


def test_an_error_while_placing_reaches_the_collecting_thread():
    target = CompressedAssembler(2, 10, np.dtype(np.float32), np.dtype(np.int32))
    chain = PlacementChain(target, target.reserve())
    # values that do not match their indices: copying them into the result fails in the settling thread
    chain.settle(0, [(0, np.array([2]), np.zeros(2, dtype=np.int32), np.zeros(3, dtype=np.float32))])
    with pytest.raises(ValueError, match="could not broadcast"):
        chain.outcome(0)
