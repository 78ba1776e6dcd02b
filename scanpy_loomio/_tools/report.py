"""What :func:`~scanpy_loomio.validate_loom` reports: each problem, the report of a file, and their collector."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["Collector", "Problem", "Severity", "ValidationReport"]

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a file.

    Attributes
    ----------
    severity
        ``"error"``: the file breaks a rule (or the requested tool cannot read it); ``"warning"``: readers may
        misread it or lose something.
    where
        The HDF5 path concerned (``/col_attrs/X_umap``); ``/`` for the file as a whole.
    message
        What was found and what was expected.
    fix
        How to fix it, when there is a known way.
    check
        ``"spec"``, ``"scanpy_loomio"`` (this package's record), ``"read"`` (reading it with
        :func:`~scanpy_loomio.read_loom_full`) or ``"convention:<name>"``.
    loompy_refuses
        Whether loompy's own validator reports it too, so that ``loompy.connect`` and anndata's ``read_loom``
        refuse the file.
    """

    severity: Severity
    where: str
    message: str
    fix: str = ""
    check: str = "spec"
    loompy_refuses: bool = False

    def __str__(self) -> str:
        text = f"{self.severity}: {self.where}: {self.message}"
        return f"{text.rstrip('.')}. Fix: {self.fix}" if self.fix else text


@dataclass
class ValidationReport:
    """Everything :func:`validate_loom` found in one file."""

    path: Path
    spec_version: str | None = None
    conventions: tuple[str, ...] = ()
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        """The problems of severity ``"error"``."""
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        """The problems of severity ``"warning"``."""
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        """No errors (warnings allowed)."""
        return not self.errors

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        return {
            "path": str(self.path),
            "spec_version": self.spec_version,
            "conventions": list(self.conventions),
            "ok": self.ok,
            "problems": [asdict(p) for p in self.problems],
        }

    def render(self) -> str:
        """One line per problem, then a one-line verdict."""
        lines = [str(p) for p in self.problems]
        checked = f" and what {', '.join(self.conventions)} need{'s' if len(self.conventions) == 1 else ''}"
        verdict = (
            f"{self.path}: {len(self.errors)} error(s), {len(self.warnings)} warning(s) "
            f"(loom spec {self.spec_version or 'not stated'}, checked against the spec, the scanpy-loomio record"
            f"{checked if self.conventions else ''})"
        )
        return "\n".join([*lines, verdict])


class Collector:
    """Collects problems for one file, naming it in every fix that needs the path."""

    def __init__(self, report: ValidationReport) -> None:
        self.report = report

    def add(
        self, severity: Severity, where: str, message: str, fix: str = "", *, check: str = "spec", loompy: bool = False
    ) -> None:
        self.report.problems.append(Problem(severity, where, message, fix, check, loompy))
