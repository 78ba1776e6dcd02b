#!/usr/bin/env bash
# Install pySCENIC 0.12.1, a real loom reader that tests/test_portable.py runs, into a virtualenv of its own: it does
# not import on numpy 2, so it needs the older stack reference/clients.md lists.
#
#   tests/interop/setup_pyscenic.sh [VENV_DIR]        (default: .venv-pyscenic at the repository root)
#
# The tests find .venv-pyscenic by themselves; CI sets SCANPY_LOOMIO_PYSCENIC_PYTHON so that a broken install fails
# the pySCENIC tests instead of skipping them. Needs Python 3.11 (numpy 1.23.5 has no wheels for newer Pythons);
# about 4 minutes.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
venv=${1:-.venv-pyscenic}
python=${PYTHON:-python3.11}

"$python" -m venv --clear "$venv"
"$venv/bin/python" -m pip install --quiet --progress-bar off --upgrade pip
"$venv/bin/python" -m pip install --quiet --progress-bar off "pyscenic==0.12.1" "numpy==1.23.5" "pandas==1.5.3" \
    "dask[complete]==2023.5.0" "distributed==2023.5.0" "scipy<1.12" "numba<0.59" "pyarrow<15"
"$venv/bin/python" -c 'import pyscenic; print("pySCENIC ready:", pyscenic.__version__)'
