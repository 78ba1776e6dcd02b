"""Run one real loom reader on files and report what it saw, as one JSON line on stdout.

This script runs in the readers' own environment (see ``setup_clients.sh``), not in the test environment:

    python client_read.py velocyto|scvelo|pyscenic PATH [PATH ...]

pySCENIC needs an environment of its own (numpy 1): ``setup_pyscenic.sh``.

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


def read_pyscenic(path: str) -> dict[str, Any]:
    """pySCENIC's own loader (``pyscenic ctx``/``aucell`` read a loom through it), then ``aucell`` and its loom output.

    AUCell runs on three gene sets made from the file's genes; ``append_auc_mtx`` (what ``pyscenic aucell -o x.loom``
    calls) adds ``RegulonsAUC``, ``Regulons`` and ``MetaData`` to a copy of the file, ``PATH.aucell.loom``.
    """
    import shutil

    from ctxcore.genesig import Regulon
    from pyscenic.aucell import aucell
    from pyscenic.cli.utils import append_auc_mtx, load_exp_matrix

    matrix = load_exp_matrix(path)  # cells × genes, named from CellID and Gene
    genes = list(matrix.columns)
    regulons = [
        Regulon(
            name=f"R{i}(+)",
            gene2weight=dict.fromkeys(genes[4 * i : 4 * i + 4], 1.0),
            transcription_factor=genes[4 * i],
            gene2occurrence=[],
        )
        for i in range(3)
    ]
    auc = aucell(matrix, regulons, num_workers=1, auc_threshold=0.5, seed=0)
    out = f"{path}.aucell.loom"
    shutil.copyfile(path, out)
    append_auc_mtx(out, matrix, auc, regulons, seed=0, num_workers=1)
    return {
        "cells": _text(matrix.index),
        "genes": _text(genes),
        "total": float(matrix.to_numpy().sum()),
        "aucell_loom": out,
        "regulons": sorted(auc.columns),
    }


READERS = {"velocyto": read_velocyto, "scvelo": read_scvelo, "pyscenic": read_pyscenic}


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
