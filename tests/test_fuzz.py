"""Fuzzing the reader: valid files changed at random give an AnnData or a documented error, never anything else.

Two complementary runs, both short enough for CI:

- a hypothesis test mutating files in this process (byte flips, overwritten ranges, truncation, and rewrites through
  h5py of datasets, attributes and this package's record), checking the outcome and that the file is unchanged;
- a run of seeded byte-level mutations read by a separate process, so a crash or a hang inside HDF5 itself is caught
  as such (the process dies or stops answering) instead of taking the test run with it.

Cases that once crashed or hung HDF5 are kept as regression tests, also read in a separate process.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import select
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from anndata import AnnData
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import sparse

import scanpy_loomio
from scanpy_loomio import LoomFormatError, read_loom_full, write_loom_full

#: Seconds a single read may take in the child process before it counts as a hang.
HANG_SECONDS = 30
#: Seconds for the child process to start (it imports scanpy).
START_SECONDS = 120

CHILD = r"""
import json, sys, warnings
warnings.simplefilter("ignore")
from scanpy_loomio import LoomFormatError, read_loom_full

for line in open(sys.argv[1], encoding="utf-8"):
    path = line.rstrip("\n")
    print(json.dumps({"start": path}), flush=True)
    try:
        adata = read_loom_full(path)
    except LoomFormatError as err:
        outcome, message = "LoomFormatError", str(err)
    except OSError as err:
        outcome, message = "OSError", str(err)
    except BaseException as err:
        outcome, message = f"unexpected {type(err).__name__}", repr(err)
    else:
        outcome, message = "read", f"{adata.n_obs} x {adata.n_vars}"
    print(json.dumps({"path": path, "outcome": outcome, "message": message}), flush=True)
"""


def read_in_child(paths: list[Path]) -> dict[str, tuple[str, str]]:
    """Read each file with ``read_loom_full`` in a separate process: ``{path: (outcome, message)}``.

    A process that dies records ``crash`` for the file it was reading, one that stops answering records ``hang``;
    a new process then goes on with the rest.
    """
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(Path(scanpy_loomio.__file__).parents[1]), os.environ.get("PYTHONPATH", "")]),
    )
    results: dict[str, tuple[str, str]] = {}
    pending = [str(p) for p in paths]
    listing = Path(paths[0]).parent / "files-to-read.txt" if paths else None
    while pending:
        # the list goes through a file: through a pipe, a long list would fill it while the child's answers fill another
        listing.write_text("".join(f"{p}\n" for p in pending), encoding="utf-8")
        child = subprocess.Popen(
            [sys.executable, "-c", CHILD, str(listing)], stdout=subprocess.PIPE, text=True, env=env
        )
        current = None
        while True:
            ready, _, _ = select.select([child.stdout], [], [], HANG_SECONDS if current else START_SECONDS)
            if not ready:
                child.kill()
                child.wait()
                results[current or pending[0]] = ("hang", f"no answer within {HANG_SECONDS} s")
                break
            line = child.stdout.readline()
            if not line:
                break
            record = json.loads(line)
            if "start" in record:
                current = record["start"]
            else:
                results[record["path"]] = (record["outcome"], record["message"])
                current = None
        returncode = child.wait()
        if current is not None and current not in results:
            results[current] = ("crash", f"the reading process ended with {returncode}")
        pending = [p for p in pending if p not in results]
    return results


def small_adata() -> AnnData:
    rng = np.random.default_rng(0)
    X = sparse.random(40, 25, density=0.3, format="csr", dtype=np.float32, random_state=0)
    obs = pd.DataFrame(
        {"cluster": pd.Categorical(rng.choice(["a", "b", "c"], 40)), "label": [f"cell {i}" for i in range(40)]},
        index=[f"c{i}" for i in range(40)],
    )
    adata = AnnData(X, obs=obs, var=pd.DataFrame({"score": rng.normal(size=25)}, index=[f"g{i}" for i in range(25)]))
    adata.layers["counts"] = X.copy()
    adata.obsm["X_umap"] = rng.normal(size=(40, 2))
    adata.obsp["distances"] = sparse.random(40, 40, density=0.1, format="csr", random_state=1)
    adata.uns["title"] = "fuzzed"
    adata.uns["params"] = {"k": 5, "method": "umap"}
    return adata


@pytest.fixture(scope="module")
def base_files(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Valid files from three writers: this package, loompy and plain h5py (spec 2 style, fixed-length text)."""
    folder = tmp_path_factory.mktemp("fuzz-bases")
    adata = small_adata()
    ours = folder / "ours.loom"
    write_loom_full(ours, adata)
    plain = folder / "plain.loom"
    with h5py.File(plain, "w") as f:
        f.create_dataset("matrix", data=adata.X.T.toarray(), chunks=(8, 8), compression="gzip", shuffle=True)
        f.create_group("layers").create_dataset("spliced", data=adata.X.T.toarray().astype(np.int32), chunks=(8, 8))
        f.create_group("col_attrs").create_dataset("CellID", data=np.asarray(adata.obs_names, dtype="S"))
        f["col_attrs"].create_dataset("cluster", data=np.asarray(adata.obs["cluster"], dtype="S"))
        f.create_group("row_attrs").create_dataset("Gene", data=np.asarray(adata.var_names, dtype="S"))
        edges = f.create_group("col_graphs").create_group("KNN")
        coo = adata.obsp["distances"].tocoo()
        edges["a"], edges["b"], edges["w"] = coo.row.astype(float), coo.col.astype(float), coo.data
        f.create_group("row_graphs")
        f.attrs["LOOM_SPEC_VERSION"] = "2.0.1"
        f.attrs["title"] = np.bytes_(b"plain")
    bases = [ours, plain]
    try:
        import loompy
    except ImportError:
        return bases
    made_by_loompy = folder / "loompy.loom"
    loompy.create(
        str(made_by_loompy),
        adata.X.T.toarray(),
        row_attrs={"Gene": np.asarray(adata.var_names)},
        col_attrs={"CellID": np.asarray(adata.obs_names), "cluster": np.asarray(adata.obs["cluster"], dtype=str)},
    )
    return [*bases, made_by_loompy]


def assert_documented(outcome: object, where: str) -> None:
    assert outcome in ("read", "LoomFormatError", "OSError"), where


# -- in-process property test ----------------------------------------------------------------------------------------
byte_mutation = st.one_of(
    st.tuples(st.just("flip"), st.floats(0, 1, exclude_max=True), st.integers(0, 7)),
    st.tuples(st.just("overwrite"), st.floats(0, 1, exclude_max=True), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True), st.just(0)),
)

json_value = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)

replacement_data = st.one_of(
    st.builds(lambda n: np.arange(n), st.integers(0, 60)),
    st.builds(lambda n: np.full(n, np.nan), st.integers(1, 60)),
    st.builds(lambda n, m: np.ones((n, m), np.float32), st.integers(0, 45), st.integers(0, 45)),
    st.builds(lambda n: np.full(n, b"\xff\xfe"), st.integers(1, 60)),
    st.builds(lambda n: np.array(["x"] * n, dtype=object), st.integers(1, 60)),
    st.builds(lambda n: np.zeros(n, dtype=[("_X", "f4"), ("_Y", "i1")]), st.integers(1, 60)),
    st.just(np.float64(1.5)),
    st.just(np.array([], dtype=np.int64)),
)

h5py_mutation = st.one_of(
    st.tuples(st.just("replace"), st.integers(0, 255), replacement_data),
    st.tuples(st.just("delete"), st.integers(0, 255), st.just(None)),
    st.tuples(st.just("attribute"), st.integers(0, 255), json_value.map(json.dumps) | st.binary(max_size=16)),
    st.tuples(st.just("record"), st.integers(0, 255), json_value),
)


def _objects(f: h5py.File) -> list[str]:
    names: list[str] = []
    f.visit(names.append)
    return sorted(names)


def apply_h5py_mutation(path: Path, mutation: tuple) -> None:
    kind, pick, value = mutation
    with h5py.File(path, "r+") as f:
        names = _objects(f)
        datasets = [n for n in names if isinstance(f[n], h5py.Dataset)]
        if kind == "replace":
            name = datasets[pick % len(datasets)]
            del f[name]
            f.create_dataset(name, data=value)
        elif kind == "delete":
            del f[names[pick % len(names)]]
        elif kind == "attribute":
            target = f[names[pick % len(names)]]
            key = ["scanpy_loomio_codec", "encoding-type", "encoding-version", "LOOM_SPEC_VERSION"][pick % 4]
            target.attrs[key] = np.bytes_(value) if isinstance(value, bytes) else value
        elif kind == "record" and isinstance(f.get("attrs/scanpy_loomio"), h5py.Dataset):
            try:
                record = json.loads(f["attrs/scanpy_loomio"][()])
            except (TypeError, ValueError):
                return  # an earlier mutation replaced it
            if not isinstance(record, dict) or not record:
                return
            keys = sorted(record)
            section = keys[pick % len(keys)]
            if isinstance(record[section], dict) and record[section]:
                inner = sorted(record[section])
                record[section][inner[pick % len(inner)]] = value
            else:
                record[section] = value
            del f["attrs/scanpy_loomio"]
            f["attrs"].create_dataset("scanpy_loomio", data=json.dumps(record), dtype=h5py.string_dtype())


def apply_byte_mutation(data: bytearray, mutation: tuple) -> bytearray:
    kind, where_fraction, value = mutation
    if not data:
        return data
    position = int(where_fraction * len(data))
    if kind == "flip":
        data[position] ^= 1 << value
    elif kind == "overwrite":
        data[position : position + len(value)] = value[: len(data) - position]
    else:
        del data[position:]
    return data


@settings(
    max_examples=int(os.environ.get("SCANPY_LOOMIO_FUZZ_EXAMPLES", "60")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    base=st.integers(0, 2),
    h5py_mutations=st.lists(h5py_mutation, max_size=2),
    byte_mutations=st.lists(byte_mutation, max_size=2),
)
def test_mutated_files_give_data_or_documented_errors(
    tmp_path: Path, base_files: list[Path], base: int, h5py_mutations: list, byte_mutations: list
) -> None:
    path = tmp_path / "fuzzed.loom"
    shutil.copyfile(base_files[base % len(base_files)], path)
    for mutation in h5py_mutations:
        apply_h5py_mutation(path, mutation)
    if byte_mutations:
        data = bytearray(path.read_bytes())
        for mutation in byte_mutations:
            data = apply_byte_mutation(data, mutation)
        path.write_bytes(data)
    before = hashlib.sha256(path.read_bytes()).hexdigest()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            adata = read_loom_full(path)
    except LoomFormatError as err:
        assert str(err).startswith(f"{path}: "), f"the message does not name the file: {err}"
    except OSError as err:
        assert str(path) in str(err), f"the message does not name the file: {err}"
    else:
        assert isinstance(adata, AnnData)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == before, "reading changed the file"


# -- crash and hang check in a separate process ----------------------------------------------------------------------
REPLACEMENTS = [
    lambda n: np.arange(n),
    lambda n: np.full(n, np.nan),
    lambda n: np.ones((n, 3), np.float32),
    lambda n: np.full(n, b"\xff\xfe"),
    lambda n: np.array(["x"] * n, dtype=object),
    lambda n: np.array([f"v{i % 3}" for i in range(n)], dtype=object),
    lambda n: np.zeros(n, dtype=[("_X", "f4"), ("_Y", "i1")]),
    lambda n: np.float64(1.5),
]


def random_h5py_mutation(rng: np.random.Generator) -> tuple:
    """A mutation for :func:`apply_h5py_mutation`, drawn with numpy (broad and cheap, unlike hypothesis' shrinking)."""
    kind = str(rng.choice(["replace", "delete", "attribute", "record"], p=[0.5, 0.15, 0.2, 0.15]))
    pick = int(rng.integers(0, 256))
    if kind == "replace":
        n = int(rng.choice([0, 1, 3, 25, 40, 41, 160]))
        return kind, pick, REPLACEMENTS[int(rng.integers(0, len(REPLACEMENTS)))](max(n, 1))
    if kind == "attribute":
        values = ['{"type": "categorical"}', '{"type": "matrix", "format": "csc"}', "[1, 2]", "{", "dict", "99.0"]
        return kind, pick, values[int(rng.integers(0, len(values)))]
    if kind == "record":
        return kind, pick, [None, 7, "x", [], {}, [["a", "b"]], {"storage": "matrix"}][int(rng.integers(0, 7))]
    return kind, pick, None


@pytest.mark.slow
def test_seeded_mutations_in_a_separate_process(tmp_path: Path, base_files: list[Path]) -> None:
    rng = np.random.default_rng(int(os.environ.get("SCANPY_LOOMIO_FUZZ_SEED", "20240601")))
    per_base = int(os.environ.get("SCANPY_LOOMIO_FUZZ_FILES", "120"))
    paths = []
    for base in base_files:
        for i in range(per_base // 2):
            path = tmp_path / f"{base.stem}-h5py-{i:03d}.loom"
            shutil.copyfile(base, path)
            for _ in range(int(rng.integers(1, 3))):
                apply_h5py_mutation(path, random_h5py_mutation(rng))
            paths.append(path)
    for base in base_files:
        original = base.read_bytes()
        for i in range(per_base):
            data = bytearray(original)
            kind = rng.choice(["flip", "flip", "overwrite", "truncate"])
            if kind == "flip":
                for position in rng.integers(0, len(data), size=rng.integers(1, 5)):
                    data[position] ^= 1 << int(rng.integers(0, 8))
            elif kind == "overwrite":
                position = int(rng.integers(0, len(data)))
                data[position : position + 32] = rng.bytes(32)[: len(data) - position]
            else:
                del data[int(rng.integers(0, len(data))) :]
            path = tmp_path / f"{base.stem}-{i:03d}.loom"
            path.write_bytes(data)
            paths.append(path)
    results = read_in_child(paths)
    problems = {p: r for p, r in results.items() if r[0] not in ("read", "LoomFormatError", "OSError")}
    assert not problems, problems
    outcomes = {r[0] for r in results.values()}
    assert outcomes >= {"read", "LoomFormatError"}, outcomes


# -- regressions: damage that crashed or hung HDF5 itself ------------------------------------------------------------
def _damage_fill_values(data: bytearray) -> int:
    """Set the size of every fill value message to 2**31 (HDF5 crashes reading it); returns how many."""
    count = 0
    # object header v1 message: type 5 (fill value), size, flags, reserved; body: version 2, alloc, write time, defined
    for match in re.finditer(rb"\x05\x00.\x00\x01\x00\x00\x00\x02[\x01-\x03][\x00-\x02]\x01", bytes(data)):
        data[match.start() + 15] = 0x80
        count += 1
    return count


def _damage_global_heap(data: bytearray) -> None:
    heap = data.find(b"GCOL\x01\x00\x00\x00")
    first = heap + 16
    size = int.from_bytes(data[first + 8 : first + 16], "little")
    data[first + 8 : first + 16] = (size + 64).to_bytes(8, "little")


def test_damage_that_crashed_or_hung_hdf5(tmp_path: Path, base_files: list[Path]) -> None:
    """Each once crashed (segmentation fault) or hung HDF5; read in a separate process, each is a LoomFormatError.

    Damaged fill value sizes and variable-length kinds crashed HDF5, a damaged global heap made it loop forever, and
    a damaged text length made it allocate gigabytes.
    """
    ours = base_files[0]
    cases = {}
    data = bytearray(ours.read_bytes())
    assert _damage_fill_values(data) > 0
    cases["fill-value"] = (data, r"found a damaged fill value description")
    data = bytearray(ours.read_bytes())
    _damage_global_heap(data)
    cases["global-heap"] = (data, r"global heap at byte \d+: found a damaged collection of text values")
    with h5py.File(ours, "r") as f:
        label = f["col_attrs/label"]
        offset = label.id.get_chunk_info(0).byte_offset if label.chunks else label.id.get_offset()
    data = bytearray(ours.read_bytes())
    data[offset : offset + 4] = (3 * 2**30).to_bytes(4, "little")
    cases["text-length"] = (data, r"found variable-length data with an impossible length")
    data = bytearray(ours.read_bytes())
    # datatype messages of variable-length UTF-8 text: class 9 (version 1), kind 1 (text); kind 9 does not exist
    text_type = b"\x19\x01\x01\x00\x10\x00\x00\x00"
    assert data.count(text_type) > 0
    cases["variable-length-kind"] = (
        data.replace(text_type, b"\x19\x09\x01\x00\x10\x00\x00\x00"),
        r"found a damaged datatype \(a variable-length type of unknown kind 9\)",
    )
    paths = {}
    for name, (content, _) in cases.items():
        paths[name] = tmp_path / f"{name}.loom"
        paths[name].write_bytes(content)
    results = read_in_child(list(paths.values()))
    for name, (_, message) in cases.items():
        outcome, text = results[str(paths[name])]
        assert outcome == "LoomFormatError", (name, outcome, text)
        assert re.search(message, text), (name, text)
