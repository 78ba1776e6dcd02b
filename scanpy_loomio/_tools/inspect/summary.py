"""The summary :func:`~scanpy_loomio.inspect_loom` returns, and its rendering as text."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Element:
    """One dataset or group of the file, as the summary shows it."""

    path: str
    kind: str
    shape: tuple[int, ...] = ()
    note: str = ""
    name: str = ""
    """How the summary lists it; the last part of :attr:`path` when empty."""

    @property
    def label(self) -> str:
        """:attr:`name`, or the last part of :attr:`path`."""
        return self.name or self.path.rsplit("/", 1)[-1]


@dataclass
class LoomSummary:
    """What :func:`inspect_loom` found; :meth:`~LoomSummary.render` gives the text ``scanpy-loomio inspect`` prints."""

    path: Path
    size: int
    spec_version: str | None
    global_layout: str
    n_obs: int
    n_vars: int
    convention: str
    convention_reasons: list[str]
    other_conventions: list[tuple[str, float]]
    obs_names: str
    var_names: str
    matrix: Element
    layers: list[Element] = field(default_factory=list)
    col_attrs: list[Element] = field(default_factory=list)
    row_attrs: list[Element] = field(default_factory=list)
    graphs: list[Element] = field(default_factory=list)
    globals: list[Element] = field(default_factory=list)
    other_groups: list[str] = field(default_factory=list)
    record: dict[str, Any] | None = None
    read_result: dict[str, Any] = field(default_factory=dict)
    read_notes: list[str] = field(default_factory=list)
    anndata_losses: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready description."""
        out = asdict(self)
        out["path"] = str(self.path)
        return out

    def render(self) -> str:
        """The summary as text for a terminal."""
        lines = [f"{self.path}  ({_size(self.size)})"]

        def row(label: str, text: str) -> None:
            lines.append(f"  {label:<15}{text}")

        def block(title: str, elements: list[Element]) -> None:
            lines.append(f"  {title} ({len(elements)})" if elements else f"  {title}: none")
            width = max((len(e.label) for e in elements), default=0)
            for e in elements:
                shape = f" {e.shape}" if len(e.shape) > 1 else ""
                note = f"  {e.note}" if e.note else ""
                lines.append(f"    {e.label:<{width}}  {e.kind}{shape}{note}")

        row("loom spec", f"{self.spec_version or 'not stated'} (global attributes: {self.global_layout})")
        row("convention", f"{self.convention}: {'; '.join(self.convention_reasons)}")
        if self.other_conventions:
            row("", "also fits: " + ", ".join(f"{name} ({score:g})" for name, score in self.other_conventions))
        row("shape", f"{self.n_obs} cells (obs) × {self.n_vars} genes (var)")
        row("matrix", f"/matrix {self.matrix.kind} {self.matrix.shape}  {self.matrix.note}".rstrip())
        row("cell names", self.obs_names)
        row("gene names", self.var_names)
        block("layers", self.layers)
        block("column attributes (obs)", self.col_attrs)
        block("row attributes (var)", self.row_attrs)
        block("graphs", self.graphs)
        block("global attributes", self.globals)
        if self.other_groups:
            row("other groups", ", ".join(self.other_groups))
        if self.record:
            lines.append("  scanpy-loomio record")
            for key, value in self.record.items():
                lines.append(f"    {key}: {value}")
        else:
            lines.append("  scanpy-loomio record: none (read as plain loom in the detected convention)")
        lines.append("  read_loom_full gives")
        for key, value in self.read_result.items():
            lines.append(f"    {key}: {value}")
        for note in self.read_notes:
            lines.append(f"    note: {note}")
        if self.anndata_losses:
            lines.append("  plain sc.read_loom (anndata's read_loom) would lose")
            lines.extend(f"    - {loss}" for loss in self.anndata_losses)
        else:
            lines.append("  plain sc.read_loom (anndata's read_loom) would lose nothing read_loom_full keeps")
        return "\n".join(lines)


def _size(n: float) -> str:
    for unit in ("bytes", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} bytes"  # pragma: no cover - the loop always returns
