"""Shared fixtures and helpers for the tests."""

from __future__ import annotations

from pathlib import Path

import pytest

#: Real loom files written by other tools (see ../shared/fixtures/real/MANIFEST.md).
REAL_FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "real"


@pytest.fixture
def real_fixtures() -> Path:
    """The folder of real loom files; skips when the shared folder is not beside the repository."""
    if not REAL_FIXTURES.is_dir():
        pytest.skip(f"real fixtures not found at {REAL_FIXTURES} (clone the project with ../shared beside it)")
    return REAL_FIXTURES
