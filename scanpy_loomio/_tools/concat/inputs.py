"""The inputs of a concatenation: annotations read without the matrices, and one-row stand-ins of the matrices.

Concatenating the stand-ins with :func:`anndata.concat` tells what the output matrices become (container, dtype,
fill values of an outer join) without reading them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from scanpy_loomio._compat import quiet_anndata
from scanpy_loomio._guards import check_file, check_read_size, resolve_memory_limit
from scanpy_loomio._read.reader import LoomReader, ReadOptions
from scanpy_loomio._record.tags import AbsentMatrixTag, MatrixTag, layer_tag
from scanpy_loomio.conventions import DEFAULT_CONVENTION, Convention, get_convention


class Input:
    """One open input: its annotations (read without matrices) and where its matrices are."""

    def __init__(self, path: Path, file: h5py.File, options: ReadOptions) -> None:
        self.path = path
        self.file = file
        datasets = check_file(file, path)
        self.reader = LoomReader(file, path, options)
        n_obs, n_vars = self.reader.shape
        check_read_size(
            file,
            path,
            datasets,
            n_obs=n_obs,
            n_vars=n_vars,
            sparse=True,
            dtype=None,
            matrices=False,
            limit=resolve_memory_limit("available"),
        )
        self.shell = self.reader.read()  # options.matrices is False: everything but X and layers
        x_dset, layer_dsets, _ = self.reader.matrix_sources()
        self.sources: dict[str | None, h5py.Dataset] = {None: x_dset}
        self.sources.update(layer_dsets.items())
        self.absent = {key for key, dset in self.sources.items() if isinstance(layer_tag(dset), AbsentMatrixTag)}

    def stand_in(self, axis: int) -> AnnData:
        """A one-row (``axis=0``) or one-column stand-in with this input's matrix containers and dtypes."""
        n_obs, n_vars = self.shell.shape
        shape = (1, n_vars) if axis == 0 else (n_obs, 1)
        values = {key: self.reader.read_layer(dset, template=shape) for key, dset in self.sources.items()}
        obs = pd.DataFrame(index=["0"]) if axis == 0 else pd.DataFrame(index=self.shell.obs_names)
        var = pd.DataFrame(index=self.shell.var_names) if axis == 0 else pd.DataFrame(index=["0"])
        with quiet_anndata():
            return AnnData(
                X=values.pop(None),
                obs=obs,
                var=var,
                layers={k: v for k, v in values.items() if k is not None and v is not None},
            )

    def codec_dtype(self, key: str | None) -> np.dtype | None:
        tag = layer_tag(self.sources[key])
        dtype = tag.dtype if isinstance(tag, MatrixTag) else None
        return None if dtype is None else np.dtype(dtype)


def fill_values(result: Any, inputs: list[Input], key: str | None, positions: list[np.ndarray], axis: int) -> list:
    """The value an outer join puts where input ``i`` has nothing, read off the concatenated stand-ins."""
    out = []
    for i, (inp, pos) in enumerate(zip(inputs, positions, strict=True)):
        missing = np.flatnonzero(pos < 0)
        if key in inp.sources and key not in inp.absent and missing.size == 0:
            out.append(0)
            continue
        j = int(missing[0]) if missing.size else 0
        value = result[i, j] if axis == 0 else result[j, i]
        # scipy-stubs narrow issparse to an abstract base class without the attributes every container has
        out.append(np.asarray(value).item() if not sparse.issparse(value) else value.toarray().item())  # type: ignore[attr-defined]
    return out


def output_convention(convention: str | Convention | None, inputs: list[Input], layers: list[str]) -> Convention:
    """The convention asked for; else the inputs' when they share one whose needed layers the result has."""
    if convention is not None:
        return get_convention(convention)
    found = {inp.reader.convention.name for inp in inputs}
    shared = inputs[0].reader.convention
    if len(found) == 1 and all(name in layers for name in shared.required_layers):
        return shared
    return get_convention(DEFAULT_CONVENTION)
