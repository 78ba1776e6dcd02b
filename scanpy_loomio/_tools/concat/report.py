"""What :func:`~scanpy_loomio.concat_loom` reports: the file written, and what anndata's merge rules left out."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from scanpy_loomio.conventions import DEFAULT_CONVENTION

if TYPE_CHECKING:
    from anndata import AnnData

    from scanpy_loomio._tools.concat.inputs import Input


@dataclass
class ConcatReport:
    """What :func:`concat_loom` wrote and what anndata's merge rules left out.

    Attributes
    ----------
    path
        The file written.
    shape
        ``(n_obs, n_vars)`` of the result.
    inputs
        The input files, in order.
    layers
        The layer keys written (besides ``X``).
    dropped
        Element (``"obs columns"``, ``"var columns"``, ``"obsm"``, ``"layers"``, ``"uns"``, …) → the keys some input
        had that the result does not, by anndata's rules for the options given.
    convention
        The convention written.
    """

    path: Path
    shape: tuple[int, int]
    inputs: list[Path]
    layers: list[str] = field(default_factory=list)
    dropped: dict[str, list[str]] = field(default_factory=dict)
    convention: str = DEFAULT_CONVENTION

    def __str__(self) -> str:
        lines = [
            f"{self.path}: {self.shape[0]} cells × {self.shape[1]} genes from {len(self.inputs)} files "
            f"(convention {self.convention!r}; layers: {', '.join(self.layers) or 'none'})"
        ]
        lines += [f"  left out {element}: {', '.join(map(str, keys))}" for element, keys in self.dropped.items()]
        return "\n".join(lines)


#: Hints for the option that keeps each kind of dropped element.
_KEEP_HINTS = {
    "columns": "join='outer' keeps columns some inputs lack",
    "alt columns": "merge='same', 'unique', 'first' or 'only' keeps them",
    "m": "join='outer' keeps embeddings some inputs lack",
    "alt m": "merge='same', 'unique', 'first' or 'only' keeps them",
    "p": "pairwise=True keeps them",
    "alt p": "merge='same', 'unique', 'first' or 'only' keeps them",
    "layers": "join='outer' keeps layers some inputs lack",
    "uns": "uns_merge='same', 'unique', 'first' or 'only' keeps it",
    "raw": "only some inputs have .raw",
}


def left_out(
    inputs: list[Input], out: AnnData, result_layers: list, axis_name: str, alt_name: str, label: Any
) -> dict[str, list[str]]:
    """Element → the keys some input had that the result leaves out (the ``label`` column is the result's own)."""
    found: dict[str, list[str]] = {}

    def lost(element: str, before: list, after: Any) -> None:
        keys = [k for k in dict.fromkeys(before) if k not in after and k != label]
        if keys:
            found[element] = keys

    shells = [inp.shell for inp in inputs]
    lost(f"{axis_name} columns", [c for s in shells for c in getattr(s, axis_name).columns], getattr(out, axis_name))
    lost(f"{alt_name} columns", [c for s in shells for c in getattr(s, alt_name).columns], getattr(out, alt_name))
    for suffix in ("m", "p"):
        for name in (axis_name, alt_name):
            lost(
                f"{name}{suffix}",
                [k for s in shells for k in getattr(s, f"{name}{suffix}")],
                getattr(out, f"{name}{suffix}"),
            )
    lost("layers", [k for inp in inputs for k in inp.sources if k is not None], result_layers)
    lost("uns", [k for s in shells for k in s.uns], out.uns)
    if any(s.raw is not None for s in shells) and out.raw is None:
        found["raw"] = ["raw"]
    return found


def keep_hint(element: str, axis_name: str) -> str:
    """The option that keeps an element :func:`left_out` names."""
    if element == "layers" or element == "uns" or element == "raw":
        return _KEEP_HINTS[element]
    if element == f"{axis_name} columns":
        return _KEEP_HINTS["columns"]
    if element.endswith("columns"):
        return _KEEP_HINTS["alt columns"]
    kind = element[-1]
    return _KEEP_HINTS[kind if element.startswith(axis_name) else f"alt {kind}"]
