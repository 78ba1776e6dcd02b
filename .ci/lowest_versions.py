"""Print pip constraints that pin each runtime dependency to the release series of its declared lower bound.

    python .ci/lowest_versions.py > constraints.txt
    PIP_CONSTRAINT=constraints.txt pip install ".[test]"

``numpy>=1.26`` becomes ``numpy==1.26.*``: the oldest declared series, with its bug-fix releases. The oldest leg of
``.ci/run`` tests exactly the versions ``pyproject.toml`` promises to support.
"""

import re
import sys
import tomllib
from pathlib import Path

pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
for requirement in pyproject["project"]["dependencies"]:
    match = re.fullmatch(r"([A-Za-z0-9_.\-]+)(\[[^\]]*\])?\s*>=\s*([0-9.]+)", requirement.strip())
    if match is None:
        sys.exit(f"cannot pin {requirement!r}: expected 'name>=version'")
    print(f"{match[1]}=={match[3]}.*")
