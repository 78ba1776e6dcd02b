"""Run one real loom reader on files and report what it saw, as one JSON line on stdout.

This script runs in the readers' own environment (see ``setup_clients.sh``), not in the test environment:

    python client_read.py velocyto|scvelo PATH [PATH ...]

It imports nothing from scanpy-loomio, so what it reports is what the tool itself makes of the files.
"""

from __future__ import annotations

import json
import sys
import warnings
from typing import Any


def _text(values: Any) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values]


def _total(matrix: Any) -> float:
    return float(matrix.sum())


def read_velocyto(path: str) -> dict[str, Any]:
    """What velocyto.py's ``VelocytoLoom`` loads: names, the three layers (genes × cells) and their totals."""
    import velocyto

    vlm = velocyto.analysis.VelocytoLoom(path)
    return {
        "cells": _text(vlm.ca["CellID"]),
        "genes": _text(vlm.ra["Gene"]),
        **{name: [list(layer.shape), _total(layer)] for name, layer in (("S", vlm.S), ("U", vlm.U), ("A", vlm.A))},
    }


def read_scvelo(path: str) -> dict[str, Any]:
    """Read as scVelo users do (through anndata's loom reader), then run scVelo's preprocessing and velocity."""
    import anndata
    import scvelo as scv

    read_loom = getattr(anndata, "io", anndata).read_loom
    adata = read_loom(path)
    out: dict[str, Any] = {
        "obs_names": _text(adata.obs_names),
        "var_names": _text(adata.var_names),
        "layers": sorted(adata.layers),
        "totals": {name: _total(adata.layers[name]) for name in ("spliced", "unspliced") if name in adata.layers},
    }
    scv.settings.verbosity = 0
    scv.pp.filter_and_normalize(adata, min_shared_counts=0)
    scv.pp.moments(adata, n_pcs=5, n_neighbors=8)
    # the default (stochastic) mode crashes on numpy 2.4; deterministic uses the same layers
    scv.tl.velocity(adata, mode="deterministic")
    out["velocity_shape"] = list(adata.layers["velocity"].shape)
    out["moments"] = sorted(name for name in ("Ms", "Mu") if name in adata.layers)
    return out


READERS = {"velocyto": read_velocyto, "scvelo": read_scvelo}


#: Exit status when the tool cannot be imported here (the tests then skip, or fail when told the tool is installed).
MISSING = 3


def main(argv: list[str]) -> int:
    tool, paths = argv[0], argv[1:]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            __import__(tool)
    except ImportError as err:
        print(json.dumps({"missing": f"{type(err).__name__}: {err}"}))
        return MISSING
    results: dict[str, Any] = {}
    for path in paths:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                results[path] = {"ok": True, **READERS[tool](path)}
        except Exception as err:  # noqa: BLE001 - the test reports whatever the tool raised
            results[path] = {"ok": False, "error": f"{type(err).__name__}: {err}"}
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
