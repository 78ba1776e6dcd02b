"""Release hygiene: one version, a typed package, and a wheel and sdist that contain what they should."""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from importlib import metadata, resources
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).parents[1]
DIST_NAME = "scanpy-loomio"
PACKAGE = "scanpy_loomio"

# Files that a user of the distribution never needs and that must not leak into it.
JUNK = re.compile(
    r"(^|/)(__pycache__|\.git|\.venv[^/]*|\.pytest_cache|\.hypothesis|\.ruff_cache|_build|generated)(/|$)"
    r"|\.py[cod]$|\.loom$|\.h5ad$|(^|/)benchmarks/(results|data)/|(^|/)tests/data/"
)


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def test_installed_version_is_the_pyproject_version():
    try:
        installed = metadata.version(DIST_NAME)
    except metadata.PackageNotFoundError:
        pytest.fail(f"{DIST_NAME} is not installed in {sys.prefix}; run `pip install -e .` (or `pip install .`) first")
    assert installed == pyproject()["project"]["version"]


def test_version_attribute_comes_from_the_metadata():
    import scanpy_loomio

    assert scanpy_loomio.__version__ == metadata.version(DIST_NAME)


def test_py_typed_ships_with_the_package():
    assert resources.files(PACKAGE).joinpath("py.typed").is_file()


def test_changelog_has_an_unreleased_section_first():
    """Keep a Changelog: the newest section is `[Unreleased]`, subsections use the format's names."""
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    versions = re.findall(r"^## (.+)$", text, flags=re.MULTILINE)
    assert versions, "CHANGELOG.md has no `## ` version sections"
    assert versions[0] == "[Unreleased]"
    kinds = set(re.findall(r"^### (.+)$", text, flags=re.MULTILINE))
    assert kinds <= {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Build the sdist, then the wheel from the sdist (as pip and conda-forge do), into a temporary folder."""
    out = tmp_path_factory.mktemp("dist")
    # --no-isolation: use the hatchling from the test dependencies instead of downloading one
    cmd = [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return {"sdist": sdist, "wheel": wheel}


def test_wheel_holds_only_the_package_license_and_metadata(dists: dict[str, Path]):
    version = pyproject()["project"]["version"]
    dist_info = f"{PACKAGE}-{version}.dist-info"
    with zipfile.ZipFile(dists["wheel"]) as whl:
        names = whl.namelist()
        entry_points = whl.read(f"{dist_info}/entry_points.txt").decode()
        wheel_metadata = whl.read(f"{dist_info}/METADATA").decode()

    assert f"{PACKAGE}/py.typed" in names
    assert f"{dist_info}/licenses/LICENSE" in names
    outside = [n for n in names if not n.startswith((f"{PACKAGE}/", f"{dist_info}/"))]
    assert not outside, f"files outside the package in the wheel: {outside}"
    assert not [n for n in names if n.startswith("tests/") or JUNK.search(n)]
    assert re.search(r"^scanpy-loomio = scanpy_loomio\.cli:main$", entry_points, flags=re.MULTILINE)
    assert "License-Expression: BSD-3-Clause" in wheel_metadata
    assert "Requires-Python: >=3.11" in wheel_metadata


def test_sdist_holds_sources_tests_and_docs_but_no_junk(dists: dict[str, Path]):
    with tarfile.open(dists["sdist"]) as sdist:
        # drop the leading `scanpy_loomio-<version>/`
        names = {m.name.split("/", 1)[1] for m in sdist.getmembers() if m.isfile()}

    expected = {"pyproject.toml", "README.md", "LICENSE", "CHANGELOG.md", f"{PACKAGE}/py.typed", "docs/conf.py"}
    assert expected <= names, f"missing from the sdist: {sorted(expected - names)}"
    assert "tests/test_packaging.py" in names
    junk = sorted(n for n in names if JUNK.search(n))
    assert not junk, f"build junk or data in the sdist: {junk}"


def test_twine_accepts_both_distributions(dists: dict[str, Path]):
    """`twine check --strict` is what PyPI's upload checks: metadata is valid and the README renders."""
    cmd = [sys.executable, "-m", "twine", "check", "--strict", str(dists["sdist"]), str(dists["wheel"])]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, f"{' '.join(cmd)} failed:\n{result.stdout}\n{result.stderr}"


def test_pre_commit_runs_the_ruff_the_dev_extra_pins():
    """One ruff version: the one `pip install -e ".[dev]"` installs is the one the pre-commit hook runs."""
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text(encoding="utf-8"))
    (ruff_repo,) = [r for r in config["repos"] if r["repo"].endswith("/ruff-pre-commit")]
    (pin,) = [r for r in pyproject()["project"]["optional-dependencies"]["dev"] if r.startswith("ruff")]
    assert ruff_repo["rev"] == "v" + pin.removeprefix("ruff==")
    assert {h["id"] for h in ruff_repo["hooks"]} == {"ruff-check", "ruff-format"}
    (local,) = [r for r in config["repos"] if r["repo"] == "local"]
    assert [(h["id"], h["entry"]) for h in local["hooks"]] == [("mypy", "mypy")]


def test_mypy_checks_the_whole_package():
    """No module of the package is left out of type checking (``ignore_errors``) or its imports ignored."""
    config = pyproject()["tool"]["mypy"]
    assert config["packages"] == ["scanpy_loomio"]
    assert config["disallow_untyped_defs"] is True
    for override in config.get("overrides", []):
        modules = override["module"] if isinstance(override["module"], list) else [override["module"]]
        assert not any(m.split(".")[0] == "scanpy_loomio" for m in modules), override
    assert "mypy" not in " ".join(pyproject()["project"]["dependencies"])  # a development tool only
