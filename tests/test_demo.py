"""The README's first command: ``python -m scanpy_loomio.demo`` runs on the runtime dependencies alone."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np

from scanpy_loomio.demo import same

# Block the test-only packages as a fresh virtual environment lacks them: importing them raises ImportError.
WITHOUT_TEST_EXTRAS = (
    "import sys\n"
    "for name in ('pytest', 'loompy', 'hypothesis', 'anndata.tests', 'anndata.tests.helpers'):\n"
    "    sys.modules[name] = None\n"
    "from scanpy_loomio.demo import main\n"
    "raise SystemExit(main([]))\n"
)


def test_demo_needs_only_runtime_dependencies(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_TEST_EXTRAS],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    found = re.search(r"scanpy_loomio gave back (\d+) of (\d+) elements exactly", result.stdout)
    assert found is not None, result.stdout
    assert found[1] == found[2] and int(found[2]) > 20
    assert "layers[None]" not in result.stdout  # anndata 0.13's alias of X is not an element of its own
    # without loompy, anndata's loom functions cannot run: said, not raised
    assert "Not compared: anndata" in result.stdout and "loompy" in result.stdout


def test_same_is_exact_and_nan_aware() -> None:
    assert same(np.array([1.0, np.nan], np.float32), np.array([1.0, np.nan], np.float32))
    assert not same(np.array([1.0, np.nan], np.float32), np.array([1.0, np.nan], np.float64))
    assert not same(np.array([1, 2]), np.array([1, 3]))
    assert same({"a": [1, "x"]}, {"a": [1, "x"]})
    assert not same({"a": 1}, {"a": 1, "b": 2})
