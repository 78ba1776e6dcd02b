#!/usr/bin/env bash
# Install the real loom readers that tests/test_interop.py runs (scVelo, velocyto.py) into their own virtualenv,
# so their pins never touch the test environment.
#
#   tests/interop/setup_clients.sh [VENV_DIR]        (default: .venv-clients at the repository root)
#
# Then point the tests at it (they find .venv-clients by themselves; CI sets the variable so a broken install fails
# the interop tests instead of skipping them):
#
#   export SCANPY_LOOMIO_CLIENTS_PYTHON=$PWD/.venv-clients/bin/python
#
# Versions are the ones reference/clients.md checked: scVelo 0.3.4 works on numpy 2; velocyto 0.17.17 builds its
# Cython extensions against the installed numpy, so numpy, cython, setuptools and wheel come first and velocyto is
# built without build isolation. About 90 seconds with a warm pip cache.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
venv=${1:-.venv-clients}
python=${PYTHON:-python3}
pip_install() { "$venv/bin/python" -m pip install --quiet --progress-bar off "$@"; }

"$python" -m venv --clear "$venv"
pip_install --upgrade pip
pip_install numpy cython setuptools wheel
pip_install "scvelo==0.3.4"
pip_install --no-build-isolation "velocyto==0.17.17"
"$venv/bin/python" -c 'import scvelo, velocyto; print("clients ready:", "scvelo", scvelo.__version__, "velocyto", velocyto.__version__)'
