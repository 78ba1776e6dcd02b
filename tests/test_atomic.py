"""Writes that fail or are killed leave the old file intact and clean up after themselves.

A real writer process is killed with SIGKILL at many moments; writes into a folder that refuses new files, onto a
folder, into a missing folder or past a file size limit fail with a clear :class:`OSError`; an AnnData that cannot be
stored fails before anything touches the disk. Child processes are forked from the test process, so they start
without importing anything again.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import multiprocessing
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from anndata import AnnData
from anndata.tests.helpers import assert_adata_equal
from helpers import assert_same_as_h5ad
from scipy import sparse

from scanpy_loomio import LossyWriteError, read_loom_full, write_loom_full
from scanpy_loomio._write import atomic
from scanpy_loomio._write.atomic import TMP_SUFFIX, atomic_target, clean_stale_temporaries

FORK = multiprocessing.get_context("fork") if "fork" in multiprocessing.get_all_start_methods() else None
needs_fork = pytest.mark.skipif(FORK is None, reason="the writer processes are forked (POSIX)")


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(TMP_SUFFIX))


def adata_for(seed: int, n_obs: int = 40, n_vars: int = 15) -> AnnData:
    rng = np.random.default_rng(seed)
    adata = AnnData(
        rng.random((n_obs, n_vars), dtype=np.float32),
        obs=pd.DataFrame(
            {"group": pd.Categorical(rng.choice(["x", "y"], n_obs))}, index=[f"c{i}" for i in range(n_obs)]
        ),
        var=pd.DataFrame(index=[f"g{i}" for i in range(n_vars)]),
    )
    adata.uns["seed"] = seed
    return adata


def host_tag() -> str:
    return f"h{zlib.crc32(socket.gethostname().encode()):08x}"


def dead_pid() -> int:
    """The id of a process that has exited."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# -- killed writers --------------------------------------------------------------------------------------------------
@needs_fork
def test_writer_killed_at_random_moments(tmp_path: Path) -> None:
    """SIGKILL at any moment: the target is the old file, byte for byte, or the complete new one."""
    old, new = adata_for(1, n_obs=4000, n_vars=600), adata_for(2, n_obs=4000, n_vars=600)
    target = tmp_path / "data.loom"
    write_loom_full(target, old)
    original = digest(target)

    started = time.perf_counter()
    write_loom_full(tmp_path / "timing.loom", new)
    duration = time.perf_counter() - started
    (tmp_path / "timing.loom").unlink()

    delays = np.random.default_rng(3).uniform(0, 2 * duration, size=15)
    killed_mid_write = 0
    outcomes = []
    for delay in delays:
        writer = FORK.Process(target=write_loom_full, args=(target, new))
        writer.start()
        time.sleep(delay)
        writer.kill()
        writer.join()
        left_behind = temporaries(tmp_path)
        if digest(target) == original:
            outcomes.append("old")
            killed_mid_write += bool(left_behind)
            assert_same_as_h5ad(old, read_loom_full(target))
        else:
            outcomes.append("new")
            assert_same_as_h5ad(new, read_loom_full(target))
            write_loom_full(target, old)  # start the next round from the old file again
            original = digest(target)
    # the kills landed while the temporary file was being written, and some writes finished
    assert killed_mid_write >= 3, outcomes
    # the next successful write removes what killed writers left behind
    write_loom_full(target, new)
    assert temporaries(tmp_path) == []
    assert_same_as_h5ad(new, read_loom_full(target))


@needs_fork
def test_interrupted_write_removes_its_temporary(tmp_path: Path, run_in_child) -> None:
    """An exception in the middle of writing (here KeyboardInterrupt from a timer) leaves the old file."""
    target = tmp_path / "data.loom"
    write_loom_full(target, adata_for(1))
    original = digest(target)

    new = adata_for(2, n_obs=20_000, n_vars=1000)

    def interrupted_write() -> None:
        def interrupt(*_: object) -> None:
            # say what was on disk at that moment, to show the write was under way
            raise KeyboardInterrupt(" ".join(temporaries(tmp_path)))

        signal.signal(signal.SIGALRM, interrupt)
        signal.setitimer(signal.ITIMER_REAL, 0.3)
        write_loom_full(target, new)

    outcome, _, on_disk = run_in_child(interrupted_write)
    assert outcome == "KeyboardInterrupt"
    assert on_disk.endswith(TMP_SUFFIX), "the timer fired before the temporary file was written"
    assert digest(target) == original
    assert temporaries(tmp_path) == []


# -- temporaries: clean our own stale ones, never anyone else's ------------------------------------------------------
def test_stale_temporaries_are_cleaned_but_no_others(tmp_path: Path) -> None:
    target = tmp_path / "data.loom"
    host = host_tag()
    gone = dead_pid()
    ours_stale = f".data.loom.{gone}.0badc0de.{host}{TMP_SUFFIX}"
    kept = [
        f".data.loom.{os.getpid()}.0badc0de.{host}{TMP_SUFFIX}",  # a live writer (this process)
        f".data.loom.{gone}.0badc0de.h00000000{TMP_SUFFIX}",  # another machine sharing the folder
        f".data.loom.{gone}.0badc0de{TMP_SUFFIX}",  # not this package's naming
        f".data.loom.bak.{gone}.0badc0de.{host}{TMP_SUFFIX}",  # another target's temporary
        f".data.loom.{gone}.tmp",
        "data.loom.bak",
    ]
    for name in [ours_stale, *kept]:
        (tmp_path / name).write_bytes(b"partial")
    write_loom_full(target, adata_for(1))
    remaining = sorted(p.name for p in tmp_path.iterdir())
    assert ours_stale not in remaining
    assert remaining == sorted([*kept, "data.loom"])


def test_a_killed_conversions_zarr_store_is_removed_by_the_next(tmp_path: Path) -> None:
    pytest.importorskip("zarr")
    source = tmp_path / "data.loom"
    write_loom_full(source, adata_for(1))
    target = tmp_path / "out.zarr"
    stale = tmp_path / f".out.zarr.{dead_pid()}.0badc0de.{host_tag()}{TMP_SUFFIX}"
    running = tmp_path / f".out.zarr.{os.getpid()}.0badc0de.{host_tag()}{TMP_SUFFIX}"  # a writer still at work
    for store in (stale, running):
        (store / "X").mkdir(parents=True)
        (store / "X" / "zarr.json").write_text("{}")
    # in a fresh interpreter: this file's tests fork, and zarr's event loop is kept out of the processes that do
    command = [sys.executable, "-m", "scanpy_loomio", "convert", str(source), str(target), "-q"]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["data.loom", "out.zarr", running.name])


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a file to another user needs root")
def test_another_users_temporary_is_left_alone(tmp_path: Path) -> None:
    target = tmp_path / "data.loom"
    theirs = tmp_path / f".data.loom.{dead_pid()}.0badc0de.{host_tag()}{TMP_SUFFIX}"
    theirs.write_bytes(b"partial")
    os.chown(theirs, 65534, 65534)
    assert clean_stale_temporaries(target) == []
    assert theirs.exists()


# -- failed writes ---------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def read_only_folder(folder: Path) -> Iterator[None]:
    """A folder where no file can be created, also for root (``chattr +i``), restored afterwards."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield
        finally:
            folder.chmod(0o755)
        return
    if shutil.which("chattr") is None:
        pytest.skip("running as root without chattr: no way to make a folder read-only")
    made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"running as root and chattr +i fails here: {made.stderr.strip()}")
    try:
        yield
    finally:
        subprocess.run(["chattr", "-i", str(folder)], check=True)


def _descriptors_open_on(path: Path) -> int:
    """How many file descriptors of this process refer to ``path``."""
    found = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            found += os.readlink(f"/proc/self/fd/{fd}") == str(path)
    return found


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="open descriptors are listed in /proc/self/fd")
def test_the_file_is_flushed_while_written_and_let_go_before_the_rename(tmp_path: Path, monkeypatch) -> None:
    """A thread flushes the temporary file as it grows, and closes it before the file is moved into place."""
    monkeypatch.setattr(atomic, "WRITEBACK_SECONDS", 0.01)
    target = tmp_path / "out.loom"
    with atomic_target(target) as tmp:
        tmp.write_bytes(b"written while the writer works")
        deadline = time.monotonic() + 10
        while not _descriptors_open_on(tmp) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _descriptors_open_on(tmp) == 1  # the flushing thread's
    assert target.read_bytes() == b"written while the writer works"
    assert _descriptors_open_on(target) == 0
    assert not any(t.name.startswith("loom-writeback") and t.is_alive() for t in threading.enumerate())


def test_read_only_folder(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    target = folder / "data.loom"
    write_loom_full(target, adata_for(1))
    original = digest(target)
    with read_only_folder(folder):
        with pytest.raises(PermissionError) as info:
            write_loom_full(target, adata_for(2))
        contents = sorted(p.name for p in folder.iterdir())
    message = str(info.value)
    assert re.search(r"could not write the file \((Operation not permitted|Permission denied)", message), message
    assert "the existing file was left as it was" in message
    assert str(target) in message
    assert contents == ["data.loom"]
    assert digest(target) == original


def test_target_is_a_folder(tmp_path: Path) -> None:
    target = tmp_path / "data.loom"
    target.mkdir()
    (target / "inside.txt").write_text("kept")
    with pytest.raises(IsADirectoryError, match=re.escape(f"{target}: is a directory")):
        write_loom_full(target, adata_for(1))
    assert [p.name for p in target.iterdir()] == ["inside.txt"]
    assert temporaries(tmp_path) == []


def test_missing_folder(tmp_path: Path) -> None:
    target = tmp_path / "not-there" / "data.loom"
    with pytest.raises(FileNotFoundError, match=re.escape(str(target.parent))):
        write_loom_full(target, adata_for(1))
    assert not target.parent.exists()


def test_file_size_limit(tmp_path: Path, run_in_child) -> None:
    """A full disk, simulated with RLIMIT_FSIZE in a child process: a clear error, the old file intact."""
    resource = pytest.importorskip("resource")
    target = tmp_path / "data.loom"
    write_loom_full(target, adata_for(1))
    original = digest(target)
    limit = target.stat().st_size + 100_000

    def limited_write() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
        write_loom_full(target, adata_for(2, n_obs=4000, n_vars=500))

    outcome, code, message = run_in_child(limited_write)
    assert outcome == "OSError", message
    assert code == errno.EFBIG
    assert "could not write the file (File too large: the file is larger than the file size limit" in message
    assert "the existing file was left as it was" in message
    assert digest(target) == original
    assert temporaries(tmp_path) == []


LIMITED_CONVERT = """
import json, os, resource, signal, sys
from scanpy_loomio._tools.convert import convert_file
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # write() then fails with EFBIG instead of killing
resource.setrlimit(resource.RLIMIT_FSIZE, (50_000, 50_000))
try:
    convert_file(sys.argv[1], sys.argv[2])
except OSError as err:
    print(json.dumps([err.errno, str(err)]), flush=True)
# HDF5 cannot close a file anndata's write_h5ad failed to write; it crashes the interpreter's teardown, not the test
os._exit(0)
"""


@pytest.mark.parametrize("kind", ["h5ad", "zarr"])
def test_file_size_limit_converting_to_anndata_files(tmp_path: Path, kind: str) -> None:
    """convert past the file size limit: the .h5ad file or .zarr store named, nothing left behind.

    In a fresh interpreter, not a forked test process: zarr's event loop thread does not survive a fork.
    """
    pytest.importorskip("resource")
    if kind == "zarr":
        pytest.importorskip("zarr")
    source = tmp_path / "data.loom"
    write_loom_full(source, adata_for(2, n_obs=4000, n_vars=500))
    target = tmp_path / f"out.{kind}"
    command = [sys.executable, "-c", LIMITED_CONVERT, str(source), str(target)]
    result = subprocess.run(command, capture_output=True, text=True, check=False, timeout=300)
    assert result.returncode == 0, result.stderr
    code, message = json.loads(result.stdout.strip().splitlines()[-1])
    assert code == errno.EFBIG
    assert message.startswith(f"[Errno {errno.EFBIG}] could not write the file (File too large"), message
    assert f"no file was created: '{target}'" in message
    assert not target.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.loom"]


def test_symlink_target_replaces_the_linked_file(tmp_path: Path) -> None:
    real = tmp_path / "real.loom"
    link = tmp_path / "link.loom"
    write_loom_full(real, adata_for(1))
    link.symlink_to(real)
    write_loom_full(link, adata_for(2))
    assert link.is_symlink()
    assert read_loom_full(real).uns["seed"] == 2


# -- bad AnnData input: clear errors before anything touches the disk ------------------------------------------------
def _with(change: Callable[[AnnData], object]) -> Callable[[], AnnData]:
    def build() -> AnnData:
        adata = adata_for(1, n_obs=4, n_vars=3)
        change(adata)
        return adata

    return build


def _set_private(name: str, value: Callable[[AnnData], object]) -> Callable[[AnnData], None]:
    # shapes AnnData itself would refuse; what a tool editing internals can leave behind
    return lambda adata: setattr(adata, name, value(adata))


def _smuggle_x(value: np.ndarray) -> Callable[[AnnData], None]:
    """Set ``X`` past AnnData's shape check: ``_X`` up to anndata 0.12, ``layers[None]``'s storage from 0.13."""

    def smuggle(adata: AnnData) -> None:
        if "_X" in vars(adata):
            adata._X = value
        else:
            adata.layers._data[None] = value

    return smuggle


BAD_INPUT = {
    "int-column": (_with(lambda a: a.obs.__setitem__(1, [1, 2, 3, 4])), r"obs\[1\]: the key 1 is a int"),
    "slash-column": (
        _with(lambda a: a.obs.__setitem__("a/b", [1, 2, 3, 4])),
        r"obs\['a/b'\]: the key 'a/b' cannot be an HDF5 name",
    ),
    "slash-layer": (_with(lambda a: a.layers.__setitem__("a/b", np.ones((4, 3)))), r"layers\['a/b'\]"),
    "slash-obsm": (_with(lambda a: a.obsm.__setitem__("a/b", np.ones((4, 2)))), r"obsm\['a/b'\]"),
    "slash-varp": (_with(lambda a: a.varp.__setitem__("a/b", np.ones((3, 3)))), r"varp\['a/b'\]"),
    "slash-uns": (_with(lambda a: a.uns.__setitem__("a/b", 1)), r"uns\['a/b'\]"),
    "slash-nested-uns": (
        _with(lambda a: a.uns.__setitem__("params", {"x": {"a/b": 1}})),
        r"uns\['params'\]\['x'\]\['a/b'\]: the key 'a/b' cannot",
    ),
    "int-nested-uns": (
        _with(lambda a: a.uns.__setitem__("params", {3: 1})),
        r"uns\['params'\]\[3\]: the key 3 is a int",
    ),
    "empty-key": (_with(lambda a: a.layers.__setitem__("", np.ones((4, 3)))), r"layers\[''\]: the key '' cannot"),
    "nul-key": (_with(lambda a: a.obs.__setitem__("a\x00b", [1, 2, 3, 4])), r"obs\['a\\x00b'\]"),
    "int-names": (
        _with(lambda a: setattr(a.obs, "index", pd.Index([1, 2, 3, 4]))),
        r"obs_names: found non-string names",
    ),
    "complex-X": (lambda: AnnData(np.ones((4, 3), complex)), r"X: dtype complex128 cannot be a loom matrix"),
    "text-X": (lambda: AnnData(np.full((4, 3), "x")), r"X: dtype <U1 cannot be a loom matrix"),
    "complex-column": (
        _with(lambda a: a.obs.__setitem__("z", np.ones(4, complex))),
        r"obs\['z'\]: dtype complex128 cannot be stored",
    ),
    "mixed-column": (
        _with(lambda a: a.obs.__setitem__("m", pd.Series([1, "a", 2.0, None], dtype=object, index=a.obs_names))),
        r"obs\['m'\]: found a value of type int \(1\) in a text column",
    ),
    "datetime-column": (
        _with(lambda a: a.obs.__setitem__("t", pd.date_range("2020", periods=4))),
        r"obs\['t'\]: dtype datetime64\[\w+\]",  # ns with pandas 2, us with pandas 3
    ),
    "period-column": (
        _with(lambda a: a.obs.__setitem__("t", pd.period_range("2020", periods=4))),
        r"obs\['t'\]: pandas dtype period\[D\]",
    ),
    "set-in-uns": (_with(lambda a: a.uns.__setitem__("s", {1, 2})), r"uns\['s'\]: a set that neither"),
    "function-in-uns": (_with(lambda a: a.uns.__setitem__("f", len)), r"uns\['f'\]: a builtin_function_or_method"),
    "objects-in-obsm": (
        _with(lambda a: a.obsm.__setitem__("o", np.array([[object()]] * 4, dtype=object))),
        r"obsm\['o'\]: a ndarray that anndata's element encoding cannot store",
    ),
    "mixed-dataframe-in-obsm": (
        _with(lambda a: a.obsm.__setitem__("df", pd.DataFrame({"m": [1, "a", 2.0, None]}, index=a.obs_names))),
        r"obsm\['df'\]: a DataFrame that anndata's element encoding cannot store",
    ),
    "X-shape": (
        _with(_smuggle_x(np.ones((5, 3), np.float32))),
        r"X: shape \(5, 3\) does not match the AnnData's \(4, 3\)",
    ),
}


@pytest.mark.parametrize("case", BAD_INPUT.keys())
@pytest.mark.parametrize("existing", [False, True], ids=["new-file", "existing-file"])
def test_bad_input_fails_before_touching_the_disk(tmp_path: Path, case: str, existing: bool) -> None:
    build, message = BAD_INPUT[case]
    target = tmp_path / "data.loom"
    if existing:
        write_loom_full(target, adata_for(1))
    before = sorted((p.name, digest(p)) for p in tmp_path.iterdir())
    with pytest.raises(LossyWriteError, match=message):
        write_loom_full(target, build())
    assert sorted((p.name, digest(p)) for p in tmp_path.iterdir()) == before


def test_shapes_anndata_refuses_are_refused_before_writing(tmp_path: Path) -> None:
    """A layer of the wrong shape smuggled past AnnData: anndata's own check names the key."""
    adata = adata_for(1, n_obs=4, n_vars=3)
    adata.layers._data["bad"] = np.ones((5, 3))
    target = tmp_path / "data.loom"
    # anndata 0.12 checks the shape itself when the layers are walked; with 0.13 the writer's own check names it
    with pytest.raises(
        ValueError, match=r"key 'bad' is of incorrect shape|layers\['bad'\]: shape \(5, 3\) does not match"
    ):
        write_loom_full(target, adata)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("key", "value"),
    [("scanpy_loomio", {"x": 1}), ("scanpy_loomio", "text"), ("LOOM_SPEC_VERSION", "9.9.9"), ("CreationDate", "today")],
)
def test_uns_keys_named_like_the_packages_own_round_trip(tmp_path: Path, key: str, value: object) -> None:
    adata = adata_for(1, n_obs=4, n_vars=3)
    adata.uns[key] = value
    adata.obs["scanpy_loomio_codec"] = [1, 2, 3, 4]
    target = tmp_path / "data.loom"
    write_loom_full(target, adata)
    assert_same_as_h5ad(adata, read_loom_full(target))


def test_sparse_matrix_input_is_not_changed_by_a_failed_write(tmp_path: Path) -> None:
    adata = adata_for(1, n_obs=4, n_vars=3)
    adata.X = sparse.csr_matrix(adata.X)
    adata.obs[5] = 1
    before = adata.copy()
    with pytest.raises(LossyWriteError):
        write_loom_full(tmp_path / "data.loom", adata)
    assert_adata_equal(before, adata, exact=True)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"compression_level": 12}, r"compression_level=12; pass an integer gzip level from 0 to 9"),
        ({"compression_level": 1.5}, r"compression_level=1.5"),
        ({"chunks": (0, 64)}, r"chunks=\(0, 64\); pass two positive integers"),
        ({"chunks": "64"}, r"chunks='64'"),
    ],
)
def test_invalid_matrix_options_name_the_users_file(tmp_path: Path, options: dict, message: str) -> None:
    target = tmp_path / "data.loom"
    with pytest.raises(ValueError, match=rf"^{re.escape(str(target))}: got {message}") as caught:
        write_loom_full(target, adata_for(1), **options)
    assert TMP_SUFFIX not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_an_immutable_target_is_reported_as_such(tmp_path: Path) -> None:
    target = tmp_path / "data.loom"
    write_loom_full(target, adata_for(1))
    before = digest(target)
    if subprocess.run(["chattr", "+i", str(target)], capture_output=True, check=False).returncode != 0:
        pytest.skip("chattr +i is not available here (needs root and a file system with attributes)")
    try:
        with pytest.raises(PermissionError, match=r"could not replace the existing file .*immutable") as caught:
            write_loom_full(target, adata_for(2))
        assert caught.value.filename == str(target)
        assert "folder" not in str(caught.value).split("immutable")[0]
    finally:
        subprocess.run(["chattr", "-i", str(target)], check=True)
    assert digest(target) == before
    assert [p.name for p in tmp_path.iterdir()] == ["data.loom"]
