"""The conda-forge recipe is valid v1 recipe YAML and agrees with pyproject.toml."""

from __future__ import annotations

import copy
import json
import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

yaml = pytest.importorskip("yaml", reason="checking the conda recipe needs pyyaml (the test extra)")
jsonschema = pytest.importorskip("jsonschema", reason="checking the conda recipe needs jsonschema (the test extra)")

ROOT = Path(__file__).parents[1]
RECIPE = ROOT / "conda" / "recipe.yaml"
SCHEMA = ROOT / "conda" / "schema" / "recipe-format.schema.json"

if not RECIPE.is_file():
    pytest.skip(f"no conda recipe at {RECIPE} (an sdist does not ship conda/)", allow_module_level=True)

#: PyPI name -> conda-forge name, where they differ
CONDA_NAMES = {"isal": "python-isal"}


@pytest.fixture(scope="module")
def recipe() -> dict:
    return yaml.safe_load(RECIPE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


@pytest.fixture(scope="module")
def validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    cls.check_schema(schema)
    return cls(schema)


def schema_errors(validator: jsonschema.protocols.Validator, document: dict) -> list[str]:
    return [f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(document)]


def conda_specs(entries: list[str]) -> dict[str, SpecifierSet]:
    """``name >=1.0`` match specs by name (Jinja expressions are left as text)."""
    specs = {}
    for entry in entries:
        name, _, spec = entry.partition(" ")
        specs[name] = spec.replace(" ", "")
    return specs


def pypi_to_conda(requirements: list[str]) -> dict[str, str]:
    result = {}
    for text in requirements:
        requirement = Requirement(text)
        assert requirement.marker is None, f"{text}: environment markers need a selector in the recipe"
        name = canonicalize_name(requirement.name)
        result[CONDA_NAMES.get(name, name)] = str(requirement.specifier)
    return result


def test_recipe_matches_the_schema(recipe: dict, validator: jsonschema.protocols.Validator) -> None:
    assert recipe["schema_version"] == 1
    assert schema_errors(validator, recipe) == []


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("build", "noarch"), "pure"),
        (("tests", 0, "python", "pip_check"), "yes"),
        (("source", "sha256"), "not-a-hash"),
        (("about", "licence"), "BSD-3-Clause"),
    ],
)
def test_schema_rejects_broken_recipes(
    recipe: dict, validator: jsonschema.protocols.Validator, path: tuple, value: object
) -> None:
    broken = copy.deepcopy(recipe)
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert schema_errors(validator, broken) != []


def test_run_dependencies_match_pyproject(recipe: dict, project: dict) -> None:
    run = conda_specs(recipe["requirements"]["run"])
    assert run.pop("python") == ">=${{python_min}}"
    expected = {name: str(SpecifierSet(spec)) for name, spec in pypi_to_conda(project["dependencies"]).items()}
    assert {name: str(SpecifierSet(spec)) for name, spec in run.items()} == expected


def test_optional_migrate_extra_is_a_run_constraint(recipe: dict, project: dict) -> None:
    constraints = conda_specs(recipe["requirements"]["run_constraints"])
    expected = pypi_to_conda(project["optional-dependencies"]["migrate"])
    assert {name: str(SpecifierSet(spec)) for name, spec in constraints.items()} == expected


def test_python_minimum_matches_requires_python(recipe: dict, project: dict) -> None:
    [minimum] = [spec.version for spec in SpecifierSet(project["requires-python"]) if spec.operator == ">="]
    assert recipe["context"]["python_min"] == minimum
    assert "python ${{ python_min }}.*" in recipe["requirements"]["host"]
    assert "${{ python_min }}.*" in recipe["tests"][0]["python"]["python_version"]


def test_build_backend_matches_pyproject(recipe: dict) -> None:
    build_system = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["build-system"]
    host = conda_specs(recipe["requirements"]["host"])
    for text in build_system["requires"]:
        requirement = Requirement(text)
        assert host[canonicalize_name(requirement.name)] == str(requirement.specifier)


def test_entry_points_match_pyproject(recipe: dict, project: dict) -> None:
    expected = [f"{name} = {target}" for name, target in project["scripts"].items()]
    assert recipe["build"]["python"]["entry_points"] == expected
    commands = [command for test in recipe["tests"] for command in test.get("script", [])]
    for name in project["scripts"]:
        assert f"{name} --help" in commands


def test_package_metadata_matches_pyproject(recipe: dict, project: dict) -> None:
    assert recipe["context"]["name"] == project["name"]
    if "version" in project:  # a static version; a dynamic one is checked against the sdist when releasing
        assert recipe["context"]["version"] == project["version"]
    assert recipe["build"]["noarch"] == "python"
    assert recipe["about"]["license"] == project["license"]
    assert (ROOT / recipe["about"]["license_file"]).is_file()
    assert recipe["about"]["summary"] == project["description"]
    module = project["name"].replace("-", "_")
    assert module in recipe["tests"][0]["python"]["imports"]
    sdist = f"/{project['name'][0]}/{project['name']}/{module}-${{{{ version }}}}.tar.gz"
    assert recipe["source"]["url"].endswith(sdist)
    assert re.fullmatch(r"[0-9a-f]{64}", recipe["source"]["sha256"])


def test_declared_pythons_are_the_tested_ones(recipe: dict, project: dict) -> None:
    """Classifiers, requires-python and the recipe's tests name exactly the Pythons .ci/run tests on."""
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    tested = set(re.findall(r"\bversion=(3\.\d+)\b", ci))
    classified = {
        c.rpartition(" :: ")[2]
        for c in project["classifiers"]
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    }
    assert tested == classified, (tested, classified)
    assert project["requires-python"] == f">={min(tested, key=lambda v: tuple(map(int, v.split('.'))))}"
    python_min = recipe["context"]["python_min"]
    in_recipe = {
        v.replace("${{ python_min }}", python_min).removesuffix(".*")
        for v in recipe["tests"][0]["python"]["python_version"]
    }
    assert in_recipe == tested


def test_no_upper_bounds_on_dependencies(project: dict) -> None:
    # the dev extra pins the formatter on purpose: one ruff formats the tree, the one pre-commit runs
    requirements = [
        *project["dependencies"],
        *(r for name, extra in project["optional-dependencies"].items() if name != "dev" for r in extra),
    ]
    capped = [r for r in requirements if any(s.operator in ("<", "<=", "==", "~=") for s in Requirement(r).specifier)]
    assert capped == []
