"""Which software wrote a file, recorded in the file."""

from __future__ import annotations

import contextlib
import io
from importlib.metadata import PackageNotFoundError, version

import h5py
import session_info

#: Distributions whose versions every file records.
RECORDED = ("scanpy-loomio", "anndata", "scanpy", "h5py", "numpy")


def provenance() -> dict[str, str]:
    """Versions of this package, anndata, scanpy, h5py, numpy and the HDF5 library."""
    out = {}
    for dist in RECORDED:
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "unknown"
    out["hdf5"] = h5py.version.hdf5_version
    return out


def session_report() -> str:
    """The whole Python session's package versions, as text (from ``session_info``)."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        session_info.show(html=False, dependencies=True, write_req_file=False)
    return buffer.getvalue()
