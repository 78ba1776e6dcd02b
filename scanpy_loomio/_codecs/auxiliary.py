"""Auxiliary arrays of a column (categories, missing-value masks) for tools that allow no extra group.

Normally these arrays live in the sidecar group. loomR refuses files with any top-level group beyond the five of
spec 2, so for such conventions they are stored as HDF5 attributes of the column's own dataset instead, where
loom readers do not look. HDF5 keeps attributes in the object header, which holds about 64 KiB: arrays that do
not fit cannot be kept this way, and the writer says so before touching the file.
"""

from __future__ import annotations

import h5py
import numpy as np

from scanpy_loomio._codecs.text import vlen_str_dtype

#: Prefix of the HDF5 attributes holding a column's auxiliary arrays: ``scanpy_loomio_aux:<name>``.
AUX_ATTR_PREFIX = "scanpy_loomio_aux:"
#: Suffix of a boolean array stored as the positions of its true values (a missing-value mask is mostly false, and
#: its positions fit where one byte per cell would not).
POSITIONS_SUFFIX = "@positions"


def put_aux_attributes(dset: h5py.Dataset, aux: dict[str, np.ndarray]) -> None:
    """Store ``aux`` as HDF5 attributes of ``dset``.

    A boolean array of one value per entry (a missing-value mask) is stored as the positions of its true values.
    """
    for name, values in aux.items():
        values = np.asarray(values)
        if values.dtype == bool and values.shape == dset.shape[:1]:
            positions = np.flatnonzero(values)
            dtype = np.uint32 if values.size < 2**32 else np.uint64
            dset.attrs.create(f"{AUX_ATTR_PREFIX}{name}{POSITIONS_SUFFIX}", positions.astype(dtype))
        elif values.dtype == object or values.dtype.kind == "U":
            dset.attrs.create(f"{AUX_ATTR_PREFIX}{name}", values.astype(object), dtype=vlen_str_dtype())
        else:  # numbers; booleans of another length (categories) as 0/1, which the codecs turn back
            dset.attrs.create(f"{AUX_ATTR_PREFIX}{name}", values.astype(np.uint8) if values.dtype == bool else values)


def get_aux_attributes(dset: h5py.Dataset) -> dict[str, np.ndarray]:
    """The auxiliary arrays stored on ``dset`` by :func:`put_aux_attributes` (empty when none)."""
    out: dict[str, np.ndarray] = {}
    for key in dset.attrs:
        if not key.startswith(AUX_ATTR_PREFIX):
            continue
        name, values = key[len(AUX_ATTR_PREFIX) :], np.asarray(dset.attrs[key])
        if name.endswith(POSITIONS_SUFFIX):
            name = name[: -len(POSITIONS_SUFFIX)]
            flags = np.zeros(dset.shape[0], dtype=bool)
            flags[values[(values >= 0) & (values < dset.shape[0])]] = True  # positions out of range: edited file
            values = flags
        out[name] = values
    return out


def fit_in_attributes(aux: dict[str, np.ndarray], length: int) -> bool:
    """Whether ``aux`` fits in the HDF5 attributes of a dataset of ``length`` entries (tried in memory)."""
    with h5py.File("aux-probe.h5", "w", driver="core", backing_store=False) as probe:
        dset = probe.create_dataset("x", shape=(length,), dtype=np.uint8)
        try:
            put_aux_attributes(dset, aux)
        except (OSError, ValueError, RuntimeError):
            return False
    return True
