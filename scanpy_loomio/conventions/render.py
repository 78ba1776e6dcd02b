"""The convention table as text: Markdown for the docs, plain text and JSON for the command line.

The one place the table is rendered: the documentation page (``docs/conventions.md``) includes
:func:`conventions_table`, and ``scanpy-loomio conventions`` prints these functions' output.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import fields, is_dataclass
from typing import Any

from scanpy_loomio.conventions.model import Convention
from scanpy_loomio.conventions.registry import CONVENTIONS
from scanpy_loomio.conventions.table import EMBEDDING_FORMS

__all__ = ["convention_details", "conventions_json", "conventions_summary", "conventions_table"]


# -- Markdown (the docs, `scanpy-loomio conventions --markdown`) -------------------------------------------------------


def _code(values: str | Mapping[str, object] | tuple[object, ...] | None) -> str:
    if values is None or values == () or values == {}:
        return "—"
    if isinstance(values, str):
        return f"`{values}`"
    if isinstance(values, Mapping):
        return ", ".join(f"`{k}` → `{v}`" for k, v in values.items())
    return ", ".join(f"`{v}`" for v in values)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def conventions_table(conventions: Mapping[str, Convention] | None = None) -> str:
    """The convention table as Markdown: one summary table, then the details of each convention.

    The documentation page is generated from this at build time, so it always shows the table the code uses.

    Examples
    --------
    >>> from scanpy_loomio.conventions import conventions_table
    >>> print(conventions_table().splitlines()[0])
    | convention | tool | cell names | gene names | secondary ids | `X` | needs layers | embeddings | graph base (a, b) | spec written | globals |
    """
    conventions = CONVENTIONS if conventions is None else conventions
    head = [
        "convention",
        "tool",
        "cell names",
        "gene names",
        "secondary ids",
        "`X`",
        "needs layers",
        "embeddings",
        "graph base (a, b)",
        "spec written",
        "globals",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in conventions.values():
        row = [
            f"`{c.name}`",
            c.tool,
            _code(c.cell_names),
            _code(c.gene_names),
            _code({**c.obs_renames, **c.var_renames}),
            f"layer `{c.x_layer}`" if c.x_layer else "`/matrix`",
            _code(c.required_layers),
            f"`{c.embedding_style}`" + ("" if c.multidim_attrs else " (no 2-D attributes)"),
            f"{c.graph_index_base[0]}, {c.graph_index_base[1]}",
            (c.spec_version or "none") + (" (root attributes)" if c.global_layout == "root" else ""),
            "/attrs group" if c.global_layout == "datasets" else "root attributes",
        ]
        lines.append("| " + " | ".join(_cell(x) for x in row) + " |")
    lines += ["", "## Embedding forms", "", "| style | layout | `obsm` attribute | `varm` attribute | description |"]
    lines.append("|---|---|---|---|---|")
    for form in EMBEDDING_FORMS.values():
        row = [f"`{form.style}`", form.layout, _code(form.obs_template), _code(form.var_template), form.description]
        lines.append("| " + " | ".join(_cell(x) for x in row) + " |")
    for c in conventions.values():
        lines += ["", f"## `{c.name}`: {c.tool}", "", f"Source: {c.source}.", ""]
        details = {
            "cell names (read in this order; the first is written)": _code(c.cell_names),
            "gene names (read in this order; the first is written)": _code(c.gene_names),
            "secondary ids (AnnData column → attribute)": _code({**c.obs_renames, **c.var_renames}),
            "`/matrix` holds": c.matrix_holds,
            "`X` when this convention is passed as `convention=`": f"layer `{c.x_layer}`" if c.x_layer else "`/matrix`",
            "layers it knows": _code(c.layers),
            "layers it needs": _code(c.required_layers),
            "embeddings": f"`{c.embedding_style}`: {c.embedding_form.description}",
            "reader survives 2-D attributes": "yes" if c.multidim_attrs else "no",
            "other name attributes, hard links to the names": _code(
                (*c.names("obs")[1:], *c.names("var")[1:]) if c.link_names else ()
            ),
            "embeddings stored once as": f"`{c.embedding_store}`, the `{c.embedding_style}` attributes reading it"
            if c.embedding_store
            else "—",
            "graph index base (a, b)": f"{c.graph_index_base[0]}, {c.graph_index_base[1]}",
            "metadata in global attributes": _code(c.metadata_globals),
            "global attributes decoded from JSON": _code(c.json_globals),
            "spec version written": c.spec_version or "none",
            "spec versions read": _code(c.accepted_spec_versions),
            "global attributes stored as": "datasets in `/attrs` (spec 3)"
            if c.global_layout == "datasets"
            else "HDF5 attributes of the root group (spec 2)",
            "extra top-level groups allowed": "yes" if c.sidecar else "no",
            "groups nested under the attribute groups": _code(c.nested_groups),
            "layer anndata's `read_loom` makes `X`": _code(c.anndata_x_layer),
            "`obsm` entries stacked from columns": _code({k: ", ".join(v) for k, v in c.obsm_from_columns.items()}),
            "R factors": {
                "labels": "their labels (text)",
                "enum": f"HDF5 enums, levels in order, coded from {c.r_types.enum_first_code}",
                "flags": f"their labels, flagged in `{c.r_types.factor_flags_attr}`",
            }[c.r_types.factors],
            "booleans stored as": f"`{c.r_types.bool_dtype}`"
            + (
                f", marked `{c.r_types.logical_mark[0]} = {c.r_types.logical_mark[1]}`"
                if c.r_types.logical_mark
                else ""
            ),
            "tool embedding names read as scanpy's": _code(c.embedding_renames),
            "SCope layout (embedding pair, default embedding, clusterings, cluster ids, JSON global)": _code(
                tuple(
                    a
                    for a in (
                        *c.embedding_pair_attrs,
                        c.default_embedding_attr,
                        c.clusterings_attr,
                        c.cluster_id_attr,
                        c.layout_json_global,
                    )
                    if a
                )
            ),
            "names stored under the index's name": "yes" if c.names_under_index_name else "no",
            "the tool's own reader": _own_reader(c),
            "detected by": _markers_text(c),
        }
        lines += [f"- {k}: {v}" for k, v in details.items()]
        if c.notes:
            lines += ["", c.notes]
    return "\n".join(lines) + "\n"


def _markers_text(c: Convention) -> str:
    if c.detect is not None:
        return "its own `detect` function"
    m = c.markers
    parts = [f"names in {_code(c.cell_names)} / {_code(c.gene_names)}"]
    for label, values in (
        ("column attributes", m.col_attrs),
        ("row attributes", m.row_attrs),
        ("layers", m.layers),
        ("global attributes", m.globals),
        ("groups", m.groups),
    ):
        if values:
            parts.append(f"{label} {_code(values)}")
    parts += [f"global `{k}` starting with `{v}`" for k, v in m.global_values.items()]
    return "; ".join(parts)


def _own_reader(c: Convention) -> str:
    parts = [f"names from {_code(c.reader_names)}"] if c.reader_names else []
    if c.reader_x_layer:
        parts.append(f"`X` from layer `{c.reader_x_layer}` when there is one")
    if c.reader_x_dtype:
        parts.append(f"`X` as `{c.reader_x_dtype}`")
    return "; ".join(parts) or "—"


# -- plain text and JSON (`scanpy-loomio conventions`) ---------------------------------------------------------------


def conventions_summary(conventions: Iterable[Convention]) -> str:
    """One aligned line per convention: its names, the attributes it writes, the layers it needs.

    Examples
    --------
    >>> from scanpy_loomio.conventions import CONVENTIONS
    >>> from scanpy_loomio.conventions.render import conventions_summary
    >>> conventions_summary(CONVENTIONS.values()).splitlines()[2].split()[:5]
    ['loompy', '-', 'loompy', 'CellID', 'Gene']
    """
    head = ("name", "also", "tool", "cell names", "gene names", "needs layers", "embeddings", "spec")
    rows = [head]
    for c in conventions:
        rows.append(
            (
                c.name,
                ", ".join(c.aliases) or "-",
                c.tool,
                c.cell_names_attr,
                c.gene_names_attr,
                ", ".join(c.required_layers) or "-",
                c.embedding_style,
                c.spec_version or "none",
            )
        )
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(head))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _plain(value: Any) -> str:
    if hasattr(value, "items"):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, tuple | list):
        return ", ".join(map(str, value))
    return str(value)


def convention_details(convention: Convention) -> str:
    """Every field of one convention, one per line.

    Examples
    --------
    >>> from scanpy_loomio.conventions import get_convention
    >>> from scanpy_loomio.conventions.render import convention_details
    >>> print(convention_details(get_convention("velocyto")).splitlines()[0])
    velocyto: velocyto.py, velocyto.R, scVelo
    """
    lines = [f"{convention.name}: {convention.tool}"]
    for f in fields(convention):
        if f.name in ("name", "tool", "detect"):
            continue
        value = getattr(convention, f.name)
        if is_dataclass(value):
            parts = {g.name: getattr(value, g.name) for g in fields(value)}
            value = "; ".join(f"{k}: {_plain(v)}" for k, v in parts.items() if v) or "-"
        elif hasattr(value, "items"):
            value = dict(value.items()) or "-"
        elif isinstance(value, tuple):
            value = ", ".join(map(str, value)) or "-"
        lines.append(f"  {f.name:<22} {value}")
    return "\n".join(lines)


def _jsonable(value: Any) -> Any:
    """Conventions (frozen dataclasses holding read-only mappings) as JSON values; functions are left out."""
    if is_dataclass(value):
        return {
            f.name: _jsonable(getattr(value, f.name)) for f in fields(value) if not callable(getattr(value, f.name))
        }
    if hasattr(value, "items"):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | frozenset | set):
        return [_jsonable(v) for v in value]
    return value


def conventions_json(conventions: Mapping[str, Convention]) -> dict[str, Any]:
    """The conventions as JSON values (for :func:`json.dumps`), by name; ``detect`` functions are left out.

    Examples
    --------
    >>> from scanpy_loomio.conventions import CONVENTIONS
    >>> from scanpy_loomio.conventions.render import conventions_json
    >>> conventions_json(CONVENTIONS)["loomr"]["graph_index_base"]
    [0, 1]
    """
    return {name: _jsonable(c) for name, c in conventions.items()}
