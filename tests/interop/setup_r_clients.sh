#!/usr/bin/env bash
# Install R and the real R loom readers (SeuratDisk, loomR, LoomExperiment, SCopeLoomR) that tests/test_interop_r.py
# runs. Needs root and about 3 minutes; does nothing for readers that already load. Uses the shared installer beside
# the repository: ../shared/clients/install_r_clients.sh.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
installer="$repo/../shared/clients/install_r_clients.sh"
if [[ ! -f "$installer" ]]; then
  echo "setup_r_clients.sh: $installer not found (clone the project with ../shared beside it)" >&2
  exit 1
fi
exec bash "$installer"
