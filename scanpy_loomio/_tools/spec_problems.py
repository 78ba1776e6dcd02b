"""The loom specification's rules, checked in collect mode: every problem of a file, not just the first.

The rules the reader also enforces come from :mod:`scanpy_loomio._spec.rules`; the stricter ones only the validator
reports (dtypes, text encodings, vertex ranges) are here.
"""

from __future__ import annotations

from itertools import chain
from typing import Any

import h5py
import numpy as np

from scanpy_loomio._codecs.text import decode_text
from scanpy_loomio._elements.globals import GLOBALS_GROUP
from scanpy_loomio._elements.orientation import stored_transposed
from scanpy_loomio._elements.scope import uses_scope_layout
from scanpy_loomio._read.detect import rank_conventions, summarize
from scanpy_loomio._record.record import METADATA_KEY, Metadata
from scanpy_loomio._record.tags import TagError, graph_tag
from scanpy_loomio._spec.facts import NUMERIC_DTYPES, is_text_dtype
from scanpy_loomio._spec.rules import edge_list_violations, group_violations, layer_violations
from scanpy_loomio._tools.report import Collector
from scanpy_loomio.conventions import DEFAULT_CONVENTION, Convention, get_convention
from scanpy_loomio.conventions.model import LOOM_SPEC_VERSIONS

__all__ = ["file_convention", "spec_problems"]

AXIS_OF = {"row": "var (genes, rows)", "col": "obs (cells, columns)"}


def _dtype_text(dtype: np.dtype) -> str:
    if dtype.names:
        return f"a record (compound) dtype with fields {list(dtype.names)}"
    if dtype.kind == "O":
        return "variable-length text"
    if dtype.kind == "S":
        return f"fixed-length text ({dtype})"
    return f"dtype {dtype}"


def _check_matrix_dtype(out: Collector, where: str, dtype: np.dtype) -> None:
    if dtype in NUMERIC_DTYPES:
        return
    fix = "store booleans as uint8 (0/1)" if dtype.kind == "b" else "store integers or floats"
    out.add("error", where, f"{_dtype_text(dtype)}; expected integers or floats (8 to 64 bits)", fix, loompy=True)


def _check_attribute(
    out: Collector, where: str, obj: object, n: int, axis: str, version: str | None, records: Convention | None
) -> None:
    """``records``: the file's convention when it stores records (compound attributes) on purpose."""
    if isinstance(obj, h5py.Group):
        out.add(
            "error",
            where,
            f"a group (with {sorted(obj.keys())[:5]}); loom attributes are datasets (LoomExperiment nests groups here, "
            "and loompy's validator crashes on them)",
            "write the file with scanpy_loomio.write_loom_full, which keeps nested values as plain attributes",
            loompy=True,
        )
        return
    if not isinstance(obj, h5py.Dataset):
        out.add("error", where, f"a {type(obj).__name__}; expected a dataset", loompy=True)
        return
    if obj.ndim == 0 or obj.shape[0] != n:
        out.add(
            "error",
            where,
            f"shape {obj.shape}; expected {n} entries along the first axis, one per {AXIS_OF[axis]}",
            loompy=True,
        )
    dtype = obj.dtype
    if dtype.names and records is not None:
        out.add(
            "warning",
            where,
            f"{_dtype_text(dtype)}, as the {records.name} convention stores them; outside the loom spec, so loompy's "
            "validator refuses the file",
            loompy=True,
        )
    elif dtype.names:
        out.add(
            "error",
            where,
            f"{_dtype_text(dtype)}; the spec allows numbers and text only (SCope and pySCENIC write records anyway)",
            "scanpy_loomio reads records as obsm/varm entries; write_loom_full stores them as plain attributes",
            loompy=True,
        )
    elif is_text_dtype(dtype):
        _check_text(out, where, obj, version)
    elif dtype not in NUMERIC_DTYPES:
        _check_matrix_dtype(out, where, dtype)


def _check_text(out: Collector, where: str, dset: h5py.Dataset, version: str | None) -> None:
    variable = dset.dtype.kind == "O"
    if version == "3.0.0" and not variable:
        out.add(
            "error", where, f"{_dtype_text(dset.dtype)}; spec 3.0.0 stores text as variable-length UTF-8", loompy=True
        )
    elif version == "2.0.1" and variable:
        out.add("error", where, "variable-length text; spec 2.0.1 stores text as fixed-length strings", loompy=True)
    elif version is None and variable:
        out.add(
            "warning",
            where,
            "variable-length text in a file that states no spec version; loompy's validator assumes spec 2 for such "
            "files and refuses it",
            "add the global attribute LOOM_SPEC_VERSION = '3.0.0' (a /attrs dataset)",
            loompy=True,
        )
    try:
        decode_text(dset[()], where=where)
    except UnicodeDecodeError as err:
        out.add("error", where, f"text that is not UTF-8 ({err.reason}); expected UTF-8 text")


def _check_graph(out: Collector, where: str, graph: object, n: int) -> None:
    if not isinstance(graph, h5py.Group):
        out.add("error", where, f"a {type(graph).__name__}; a graph is a group of datasets a, b and w", loompy=True)
        return
    parts = {}
    broken = set()
    for violation in edge_list_violations(where, graph):
        out.add("error", violation.where, violation.message(), loompy=True)
        broken.add(violation.where)
    for part, role, kinds, expected in (
        ("a", "start vertices", "iu", "integers"),
        ("b", "end vertices", "iu", "integers"),
        ("w", "edge weights", "f", "floats"),
    ):
        dset = graph.get(part)
        if f"{where}/{part}" in broken:
            continue
        if not isinstance(dset, h5py.Dataset):
            out.add("error", f"{where}/{part}", f"missing; expected a 1-D dataset of {expected} ({role})", loompy=True)
            continue
        if dset.dtype.kind not in kinds:
            fix = "convert the indices to integers (loomR and LoomExperiment write floats)" if part != "w" else ""
            out.add(
                "error", f"{where}/{part}", f"{_dtype_text(dset.dtype)}; expected {expected} ({role})", fix, loompy=True
            )
        parts[part] = dset
    if len({d.shape for d in parts.values()}) > 1:
        shapes = ", ".join(f"{k}: {d.shape}" for k, d in parts.items())
        out.add(
            "error",
            where,
            f"a, b and w of different lengths ({shapes}); expected one length (one edge each)",
            loompy=True,
        )
    try:
        tag = graph_tag(graph)
    except TagError:
        tag = None  # reported with the record's problems
    recorded = tag.index_base if tag else (0, 0)
    for part, base in zip("ab", recorded, strict=False):
        dset = parts.get(part)
        if dset is None or dset.dtype.kind not in "iuf" or dset.shape[0] == 0:
            continue
        values = dset[()]
        lo, hi = values.min(), values.max()
        if lo >= base and hi < n + base:
            if base:
                out.add(
                    "warning",
                    f"{where}/{part}",
                    f"vertex indices count from {base}, as recorded for loomR; the spec and most readers count from 0",
                )
            continue
        if lo >= 1 and hi == n:
            out.add(
                "warning",
                f"{where}/{part}",
                f"vertex indices from {lo} to {hi} for {n} vertices: they count from 1 (as loomR writes b); the spec "
                "counts from 0, so readers other than scanpy_loomio read them off by one or fail",
                "rewrite with scanpy_loomio (read_loom_full detects 1-based indices, write_loom_full writes 0-based)",
            )
        else:
            out.add(
                "error", f"{where}/{part}", f"vertex indices from {lo} to {hi}; expected 0 to {n - 1} for {n} vertices"
            )


def spec_problems(
    file: h5py.File, out: Collector, globals_: dict[str, Any], convention: Convention | None = None
) -> None:
    """Check the loom spec's rules.

    ``convention`` is the file's own (recorded or detected); its deliberate departures from the spec (SCope's
    record attributes) are warnings rather than errors.
    """
    version = out.report.spec_version
    records = (
        convention
        if convention is not None and (convention.embedding_form.layout == "compound" or uses_scope_layout(convention))
        else None
    )
    if version is None:
        default_spec = get_convention(DEFAULT_CONVENTION).spec_version
        out.add(
            "warning",
            "/",
            "no LOOM_SPEC_VERSION global attribute; readers have to guess the layout",
            f"write with scanpy_loomio.write_loom_full, which states spec {default_spec}",
        )
    elif version not in LOOM_SPEC_VERSIONS:
        known = " and ".join(map(repr, LOOM_SPEC_VERSIONS))
        out.add("warning", "/", f"LOOM_SPEC_VERSION {version!r}; known versions are {known}")
    attrs_group = file.get(GLOBALS_GROUP)
    if version == "3.0.0" and not isinstance(attrs_group, h5py.Group):
        out.add(
            "error",
            f"/{GLOBALS_GROUP}",
            "missing; spec 3.0.0 keeps global attributes as datasets in /attrs",
            "move the global attributes into /attrs, or state LOOM_SPEC_VERSION '2.0.1'",
            loompy=True,
        )
    if isinstance(attrs_group, h5py.Group):
        for name, obj in attrs_group.items():
            if not isinstance(obj, h5py.Dataset):
                out.add("error", f"/{GLOBALS_GROUP}/{name}", f"a {type(obj).__name__}; global attributes are datasets")

    matrix = file.get("matrix")
    shape: tuple[int, int] | None = None
    if matrix is None:
        out.add("error", "/matrix", "missing; every loom file has a main matrix (genes × cells)", loompy=True)
    elif not isinstance(matrix, h5py.Dataset) or matrix.ndim != 2:
        found = f"a {matrix.ndim}-D dataset" if isinstance(matrix, h5py.Dataset) else f"a {type(matrix).__name__}"
        out.add("error", "/matrix", f"{found}; expected a 2-D dataset (genes × cells)", loompy=True)
    else:
        shape = matrix.shape
        _check_matrix_dtype(out, "/matrix", matrix.dtype)
        if stored_transposed(file):
            out.add(
                "error",
                "/matrix",
                f"shape {shape}: stored cells × genes (the attributes list {shape[0]} cells and {shape[1]} genes); "
                "loom stores genes × cells. read_loom_full reads it turned round (with a warning); loompy and "
                "other readers do not",
                "rewrite it: scanpy_loomio.write_loom_full(path, scanpy_loomio.read_loom_full(path))",
                loompy=True,
            )
            shape = (shape[1], shape[0])  # check the attributes against the orientation they fit

    for violation in chain(group_violations(file), layer_violations(file, shape)):
        out.add("error", violation.where, violation.message(), loompy=True)
    layers = file.get("layers")
    if isinstance(layers, h5py.Group):
        for name, layer in layers.items():
            if isinstance(layer, h5py.Dataset):
                _check_matrix_dtype(out, f"/layers/{name}", layer.dtype)

    for axis, size in (("row", shape[0] if shape else None), ("col", shape[1] if shape else None)):
        group_name = f"{axis}_attrs"
        group = file.get(group_name)
        if group is None:
            out.add(
                "error", f"/{group_name}", f"missing; expected the group of {AXIS_OF[axis]} attributes", loompy=True
            )
            continue
        if not isinstance(group, h5py.Group):
            continue  # reported with the groups
        if size is None:
            continue
        for name, obj in group.items():
            _check_attribute(out, f"/{group_name}/{name}", obj, size, axis, version, records)
        for graphs_name in (f"{axis}_graphs", f"{axis}_edges"):
            graphs = file.get(graphs_name)
            if graphs is None:
                continue
            if not isinstance(graphs, h5py.Group):
                continue  # reported with the groups
            if graphs_name.endswith("edges") and len(graphs):
                out.add(
                    "warning",
                    f"/{graphs_name}",
                    f"graphs in the old layout ({graphs_name}); current readers look in /{axis}_graphs only",
                    "rewrite the file with scanpy_loomio, which moves them to the current layout",
                )
            for name, graph in graphs.items():
                _check_graph(out, f"/{graphs_name}/{name}", graph, size)


def file_convention(file: h5py.File, globals_: dict[str, Any]) -> Convention:
    """The convention a file is read in: the recorded one, else the best detected one, else the default."""
    try:
        return get_convention(Metadata.from_json(globals_[METADATA_KEY]).convention)
    except (KeyError, ValueError):
        pass
    ranked = rank_conventions(summarize(file, globals_))
    return ranked[0][1] if ranked else get_convention(DEFAULT_CONVENTION)
