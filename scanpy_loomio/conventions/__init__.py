"""Which loom attributes each tool uses, as data.

Every tool that writes or reads loom files names cells, genes, layers and embeddings its own way. Each
:class:`Convention` describes one tool; :data:`CONVENTIONS` holds them by name. Reading scores every convention
against what a file contains (:meth:`Convention.score`, used by :func:`scanpy_loomio.read_loom_full`), writing
targets one (``write_loom_full(..., convention="velocyto")``). Nothing else in the package branches on a tool's
name: a new tool is a new entry here, or a :class:`Convention` passed by the caller.

Examples
--------
>>> from scanpy_loomio.conventions import get_convention
>>> get_convention("loompy").cell_names_attr
'CellID'
>>> get_convention("loomr").graph_index_base
(0, 1)
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

__all__ = [
    "CONVENTIONS",
    "DEFAULT_CONVENTION",
    "EMBEDDING_FORMS",
    "Convention",
    "EmbeddingForm",
    "FileSummary",
    "Markers",
    "RTypes",
    "conventions_table",
    "get_convention",
    "name_candidates",
    "register_convention",
]

EmbeddingStyle = Literal["matrix", "columns", "compound", "reduced_dims", "cell_embeddings", "reduced_dims_stored"]
GlobalLayout = Literal["datasets", "root"]
Axis = Literal["obs", "var"]


def _frozen(mapping: Mapping[str, str] | None = None) -> Mapping[str, str]:
    return MappingProxyType(dict(mapping or {}))


# -- embeddings ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmbeddingForm:
    """How one embedding style looks on disk.

    Parameters
    ----------
    style
        Key in :data:`EMBEDDING_FORMS` and value of :attr:`Convention.embedding_style`.
    layout
        ``"matrix"``: one 2-D attribute (cells × components); ``"columns"``: one 1-D attribute per component;
        ``"compound"``: one 1-D attribute of records with the fields :attr:`compound_fields`.
    obs_template, var_template
        Attribute name for an ``obsm``/``varm`` key. ``{key}`` is the key itself; ``{basis}`` is the key without
        scanpy's ``X_`` prefix (``X_umap`` → ``umap``), and reading adds the prefix back for ``obsm``; ``{i}``
        numbers components from 1. ``None``: the tool has no such form for that axis (the ``"matrix"`` form is used).
    description
        One line for the docs.
    compound_fields
        Record field names of the ``"compound"`` layout, in component order (SCope's ``Embedding``); embeddings with
        more components than there are names use ``_1``, ``_2``, ….
    name_forbidden
        Characters the tool cannot have in ``{basis}``; writing replaces each with ``.`` (LoomExperiment splits
        ``reducedDims_<name>`` at ``_``).
    registry_global
        Global attribute listing each embedding attribute written in this form, as a template with ``{i}`` counting
        from 1; its value is the attribute's HDF5 path (LoomExperiment's ``ReducedDimsName<i>``). ``None``: no list.
    components_registry_global
        Global attribute naming, for embedding ``{i}`` of :attr:`registry_global`, the attribute holding its component
        names (LoomExperiment's ``ReducedDimsColNames<i>``); read into ``uns["loom_embedding_components"]``.
    group
        HDF5 group holding the attributes of this form instead of ``/col_attrs``/``/row_attrs`` (a form that
        :attr:`Convention.embedding_store` names, kept where readers of the attribute groups do not look).
    """

    style: EmbeddingStyle
    layout: Literal["matrix", "columns", "compound"]
    obs_template: str
    var_template: str | None
    description: str

    compound_fields: tuple[str, ...] = ("_X", "_Y", "_Z")
    name_forbidden: str = ""
    registry_global: str | None = None
    components_registry_global: str | None = None
    group: str | None = None

    def template(self, axis: Axis) -> str:
        """The name template for ``axis``; the plain ``"{key}"`` when the form has none for it."""
        found = self.obs_template if axis == "obs" else self.var_template
        return found if found is not None else "{key}"

    def attr_names(self, key: str, axis: Axis, n_components: int = 0) -> list[str]:
        """Attribute name(s) for an ``obsm``/``varm`` key.

        Examples
        --------
        >>> from scanpy_loomio.conventions import EMBEDDING_FORMS
        >>> EMBEDDING_FORMS["cell_embeddings"].attr_names("X_umap", "obs")
        ['umap_cell_embeddings']
        >>> EMBEDDING_FORMS["columns"].attr_names("X_umap", "obs", 2)
        ['X_umap_1', 'X_umap_2']
        """
        basis = key[2:] if axis == "obs" and key.startswith("X_") and len(key) > 2 else key
        template = self.template(axis)
        if self.layout == "columns":
            return [template.format(key=key, basis=basis, i=i + 1) for i in range(n_components)]
        return [template.format(key=key, basis=basis, i=1)]

    def key_for(self, attr: str, axis: Axis) -> str | None:
        """The ``obsm``/``varm`` key a foreign attribute of this form stands for, or ``None`` when it does not match.

        Only single-attribute forms (``"matrix"`` and ``"compound"`` layouts) are matched here.

        Examples
        --------
        >>> from scanpy_loomio.conventions import EMBEDDING_FORMS
        >>> EMBEDDING_FORMS["reduced_dims"].key_for("reducedDims_PCA", "obs")
        'X_PCA'
        >>> EMBEDDING_FORMS["reduced_dims"].key_for("nGene", "obs") is None
        True
        """
        if self.layout == "columns":
            return None
        template = self.template(axis)
        placeholder = "{basis}" if "{basis}" in template else "{key}"
        prefix, _, suffix = template.partition(placeholder)
        if not (attr.startswith(prefix) and attr.endswith(suffix)) or len(attr) <= len(prefix) + len(suffix):
            return None
        stem = attr[len(prefix) : len(attr) - len(suffix)]
        return f"X_{stem}" if placeholder == "{basis}" and axis == "obs" else stem


EMBEDDING_FORMS: Mapping[str, EmbeddingForm] = MappingProxyType(
    {
        form.style: form
        for form in (
            EmbeddingForm("matrix", "matrix", "{key}", "{key}", "one 2-D attribute named as the key (loompy, anndata)"),
            EmbeddingForm(
                "columns",
                "columns",
                "{key}_{i}",
                "{key}_{i}",
                "one 1-D attribute per component, `<key>_1`, `<key>_2`, … (readers that break on 2-D attributes)",
            ),
            EmbeddingForm(
                "compound",
                "compound",
                "{key}",
                "{key}",
                "one record attribute with fields `_X`, `_Y` (`_Z`) (SCope's `Embedding`); SCope also keeps every "
                "embedding as one field of `Embeddings_X` and `Embeddings_Y`, named in the `MetaData` global",
            ),
            EmbeddingForm(
                "reduced_dims",
                "matrix",
                "reducedDims_{basis}",
                None,
                "2-D attribute `reducedDims_<name>` listed in root attributes `ReducedDimsName<i>` (LoomExperiment; "
                "the name cannot contain `_`); older files nest them as `/col_attrs/reducedDims/<name>`",
                name_forbidden="_",
                registry_global="ReducedDimsName{i}",
                components_registry_global="ReducedDimsColNames{i}",
            ),
            EmbeddingForm(
                "reduced_dims_stored",
                "matrix",
                "reducedDims_{basis}",
                None,
                "2-D dataset `/scanpy_loomio/reducedDims_<name>` listed in global attributes `ReducedDimsName<i>`: where "
                "LoomExperiment reads it (it takes the name from the third `_`-separated part of the path, as in "
                "`/col_attrs/reducedDims_<name>`), outside `/col_attrs`, where readers that break on 2-D attributes look",
                name_forbidden="_",
                registry_global="ReducedDimsName{i}",
                group="scanpy_loomio",
            ),
            EmbeddingForm(
                "cell_embeddings",
                "matrix",
                "{basis}_cell_embeddings",
                "{basis}_gene_loadings",
                "2-D attributes `<reduction>_cell_embeddings` and `<reduction>_gene_loadings` (Seurat v3 via loomR)",
            ),
        )
    }
)
"""Every embedding form, by style."""


# -- R types ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RTypes:
    """How a tool's own writer stores R factors and logicals, so its reader gets them back as such.

    Parameters
    ----------
    factors
        ``"labels"``: a factor is stored as its labels (text; R readers give character); ``"enum"``: an HDF5 enum
        whose names are the levels, in order, coded from :attr:`enum_first_code` (SeuratDisk through hdf5r);
        ``"flags"``: labels, plus the cells × columns integer matrix :attr:`factor_flags_attr` whose first row flags
        each column attribute (in the order the reader lists them, by name) as a factor (LoomExperiment).
    enum_first_code
        Code of the first level in an enum (R's factors count from 1).
    factor_flags_attr
        Column attribute holding the factor flags (``"flags"`` only).
    logical_mark
        ``(HDF5 attribute, value)`` put on a 0/1 dataset to mark it logical (rhdf5's ``storage.mode``); ``None``: none.
    bool_dtype
        Integer dtype booleans are stored as. ``uint8`` is R's ``raw`` type in rhdf5, so no convention uses it.

    Examples
    --------
    >>> from scanpy_loomio.conventions import get_convention
    >>> get_convention("seuratdisk").r_types.factors
    'enum'
    >>> get_convention("loomexperiment").r_types.logical_mark
    ('storage.mode', 'logical')
    """

    factors: Literal["labels", "enum", "flags"] = "labels"
    enum_first_code: int = 1
    factor_flags_attr: str = "colnames_factor"
    logical_mark: tuple[str, str] | None = None
    bool_dtype: str = "int8"

    def __post_init__(self) -> None:
        if self.factors not in ("labels", "enum", "flags"):
            msg = f"RTypes.factors {self.factors!r} is not 'labels', 'enum' or 'flags'"
            raise ValueError(msg)
        if self.bool_dtype not in ("int8", "int16", "int32", "uint8"):
            msg = f"RTypes.bool_dtype {self.bool_dtype!r} is not an integer dtype"
            raise ValueError(msg)


# -- detection -------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FileSummary:
    """What detection looks at: names of things in a loom file, read without touching the matrix.

    Parameters
    ----------
    col_attrs, row_attrs
        Attribute names, including nested ones as ``group/name`` (``GRanges/rownames``).
    text_col_attrs, text_row_attrs
        The 1-D text attributes among them (the only ones that can hold names).
    layers
        Layer names.
    globals
        Global attributes (root HDF5 attributes and ``/attrs`` datasets) with text values as ``str``; other values
        as read.
    groups
        Every group path in the file below the root, without a leading ``/`` (``col_graphs/KNN``).
    """

    col_attrs: frozenset[str] = frozenset()
    row_attrs: frozenset[str] = frozenset()
    text_col_attrs: frozenset[str] = frozenset()
    text_row_attrs: frozenset[str] = frozenset()
    layers: frozenset[str] = frozenset()
    globals: Mapping[str, object] = field(default_factory=_frozen)
    groups: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Markers:
    """Things in a file that point to the tool that wrote it; each one found adds to :meth:`Convention.score`.

    Names may be shell-style patterns (``*_cell_embeddings``).

    Parameters
    ----------
    col_attrs, row_attrs
        Column/row attribute names.
    layers
        Layer names.
    globals
        Global attribute names.
    global_values
        Global attribute name → text its value starts with (``CreatedWith`` → ``LoomExperiment``); a strong marker.
    groups
        Group paths (``col_edges``, ``row_attrs/GRanges``).
    """

    col_attrs: tuple[str, ...] = ()
    row_attrs: tuple[str, ...] = ()
    layers: tuple[str, ...] = ()
    globals: tuple[str, ...] = ()
    global_values: Mapping[str, str] = field(default_factory=_frozen)
    groups: tuple[str, ...] = ()

    def __hash__(self) -> int:
        return hash(
            (self.col_attrs, self.row_attrs, self.layers, self.globals, self.groups, *self.global_values.items())
        )

    def found(self, summary: FileSummary) -> list[str]:
        """The markers present in a file, as readable strings."""
        out: list[str] = []
        for kind, patterns, names in (
            ("col_attrs", self.col_attrs, summary.col_attrs),
            ("row_attrs", self.row_attrs, summary.row_attrs),
            ("layers", self.layers, summary.layers),
            ("globals", self.globals, frozenset(summary.globals)),
            ("groups", self.groups, summary.groups),
        ):
            out += [f"{kind}/{p}" for p in patterns if any(fnmatch.fnmatchcase(n, p) for n in names)]
        for name, start in self.global_values.items():
            value = summary.globals.get(name)
            if isinstance(value, str) and value.startswith(start):
                out.append(f"globals/{name}={start}…")
        return out


#: Score of a convention's name attribute (any read candidate) present as text, per axis.
NAME_SCORE = 3
#: Score of each marker found; a marker on a global attribute's value counts :data:`VALUE_MARKER_SCORE`.
MARKER_SCORE = 1
VALUE_MARKER_SCORE = 3


# -- the convention --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Convention:
    """How one tool lays out names and elements in a loom file.

    Parameters
    ----------
    name
        Key in :data:`CONVENTIONS`.
    tool
        Human-readable tool name(s).
    source
        Where the facts come from (repository and path).
    cell_names
        Column attributes that may hold cell names, in order of preference; the first is the one written.
        Nested attributes are written ``group/name``.
    gene_names
        Row attributes that may hold gene names, in order of preference; the first is the one written.
    obs_renames
        AnnData ``obs`` columns written under the tool's attribute name (and renamed back when reading a file of
        this convention).
    var_renames
        The same for ``var``: secondary gene ids such as ``gene_ids`` → ``Accession`` (loompy) or ``ensembl_ids``
        (HCA Optimus).
    x_layer
        Loom layer read as ``X`` when this convention is passed explicitly as ``convention=``; ``None`` means
        ``/matrix``. Detection never promotes a layer to ``X``.
    matrix_holds
        What the tool keeps in ``/matrix`` (for the docs).
    layers
        Layers the tool writes or reads by name.
    required_layers
        Layers the tool needs to find to read a file.
    embedding_style
        How ``obsm``/``varm`` arrays are stored for this tool: a key of :data:`EMBEDDING_FORMS`.
    multidim_attrs
        Whether the tool's reader survives 2-D attributes (SeuratDisk, LoomExperiment and SCopeLoomR fail on them).
    graph_index_base
        ``(a, b)``: what the first vertex index is in graph datasets ``a`` and ``b``; ``(0, 0)`` by the spec,
        ``(0, 1)`` for loomR, which writes ``b`` from 1.
    metadata_globals
        Global attributes the tool writes or reads as metadata.
    json_globals
        Global attributes holding JSON text (possibly zlib-compressed and base64-encoded), decoded into ``uns``.
    spec_version
        Loom spec version written; ``None`` writes none.
    accepted_spec_versions
        Spec versions the tool reads.
    global_layout
        ``"datasets"``: global attributes as datasets under ``/attrs`` (spec 3); ``"root"``: HDF5 attributes on the
        root group (spec 2).
    sidecar
        Whether the tool tolerates extra top-level groups, such as the one this package keeps what loom has no place
        for in (loomR accepts exactly the five spec-2 groups).
    nested_groups
        Groups the tool nests under ``col_attrs``/``row_attrs``, and what their datasets become when reading:
        ``"obsm"`` (one embedding per dataset, named as for :data:`EMBEDDING_FORMS` ``reduced_dims``) or
        ``"columns"`` (one ``obs``/``var`` column per dataset, named as the dataset).
    markers
        What in a file points to this tool (see :meth:`score`).
    detect
        Optional scoring function replacing the declarative :attr:`markers`: takes a :class:`FileSummary`, returns a
        number (``0`` or less: not this tool).
    notes
        Anything else a user of the tool should know (for the docs).
    aliases
        Other names users type for this convention (the tool's or a companion's, e.g. ``seurat``); names are
        matched without regard to case.
    anndata_x_layer
        The layer anndata's own ``read_loom`` silently makes ``X`` for this tool's files (velocyto: ``spliced``);
        ``read_loom`` under :func:`scanpy_loomio.use_as_default` warns once that ``X`` is ``/matrix`` here.
    obsm_from_columns
        ``{obsm key: (column, ...)}``: per-cell columns also stacked into an ``obsm`` entry when reading a file of
        this tool (Baysor's ``x``/``y`` → ``spatial``); the columns stay.
    r_types
        How factors and logicals are stored (:class:`RTypes`).
    embedding_renames
        The tool's embedding names (matched without regard to case) → scanpy's ``obsm`` keys, used when reading its
        files; the original names are kept in ``uns["loom_embedding_names"]`` and written back.
    clusterings_attr
        Record column attribute with one integer field per clustering id, the clusterings named and labelled in
        the JSON global ``MetaData`` (SCope's ``Clusterings``); read as categorical ``obs`` columns.
    cluster_id_attr
        Column attribute holding the codes of the first clustering (SCope's ``ClusterID``).
    default_embedding_attr
        Record column attribute holding the default embedding (SCope's ``Embedding``, embedding id ``-1``).
    link_names
        Write every attribute of :attr:`cell_names` and :attr:`gene_names`, not only the first: the others are HDF5
        hard links to it (one dataset under several names, stored once), so each reader finds the name it looks
        for. The record lists them, so reading does not take them for columns.
    embedding_store
        Key of :data:`EMBEDDING_FORMS` (a ``"matrix"`` form with a :attr:`EmbeddingForm.group`) holding each
        ``obsm`` entry once as a 2-D dataset; the :attr:`embedding_style` attributes (1-D columns) are then HDF5
        virtual datasets reading their component from it, so readers wanting either shape get it without a copy.
    """

    name: str
    tool: str
    source: str
    cell_names: tuple[str, ...]
    gene_names: tuple[str, ...]
    obs_renames: Mapping[str, str] = field(default_factory=_frozen)
    var_renames: Mapping[str, str] = field(default_factory=_frozen)
    x_layer: str | None = None
    matrix_holds: str = "the main values (`X`)"
    layers: tuple[str, ...] = ()
    required_layers: tuple[str, ...] = ()
    embedding_style: EmbeddingStyle = "matrix"
    multidim_attrs: bool = True
    graph_index_base: tuple[int, int] = (0, 0)
    metadata_globals: tuple[str, ...] = ()
    json_globals: tuple[str, ...] = ()
    spec_version: str | None = "3.0.0"
    accepted_spec_versions: tuple[str, ...] = ("2.0.1", "3.0.0")
    global_layout: GlobalLayout = "datasets"
    sidecar: bool = True
    nested_groups: Mapping[str, str] = field(default_factory=_frozen)
    markers: Markers = field(default_factory=Markers)
    detect: Callable[[FileSummary], float] | None = field(default=None, compare=False)
    notes: str = ""
    aliases: tuple[str, ...] = ()
    anndata_x_layer: str | None = None
    obsm_from_columns: Mapping[str, tuple[str, ...]] = field(default_factory=_frozen)
    r_types: RTypes = field(default_factory=RTypes)
    embedding_renames: Mapping[str, str] = field(default_factory=_frozen)
    clusterings_attr: str | None = None
    cluster_id_attr: str | None = None
    default_embedding_attr: str | None = None
    link_names: bool = False
    embedding_store: str | None = None

    def __post_init__(self) -> None:
        problems = []
        if not self.cell_names or not self.gene_names:
            problems.append("cell_names and gene_names need at least one attribute name each (the one written)")
        if self.embedding_style not in EMBEDDING_FORMS:
            problems.append(f"embedding_style {self.embedding_style!r} is not one of {sorted(EMBEDDING_FORMS)}")
        if self.global_layout not in ("datasets", "root"):
            problems.append(f"global_layout {self.global_layout!r} is not 'datasets' or 'root'")
        base = self.graph_index_base
        if not (isinstance(base, tuple) and len(base) == 2 and all(b in (0, 1) for b in base)):
            problems.append(f"graph_index_base {base!r} is not a pair of 0/1 for (a, b)")
        bad_nested = {g: how for g, how in self.nested_groups.items() if how not in ("obsm", "columns")}
        if bad_nested:
            problems.append(f"nested_groups {bad_nested} must map to 'obsm' or 'columns'")
        store = EMBEDDING_FORMS.get(self.embedding_store) if self.embedding_store is not None else None
        if self.embedding_store is not None and (store is None or store.layout != "matrix" or store.group is None):
            problems.append(f"embedding_store {self.embedding_store!r} is not a 'matrix' form with its own group")
        if problems:
            msg = f"Convention {self.name!r}: " + "; ".join(problems) + "."
            raise ValueError(msg)
        # Freeze mappings given as plain dicts, so a registered convention cannot change under its users.
        for name in ("obs_renames", "var_renames", "nested_groups", "obsm_from_columns", "embedding_renames"):
            value = getattr(self, name)
            if not isinstance(value, MappingProxyType):
                object.__setattr__(self, name, _frozen(value))

    def __hash__(self) -> int:
        # the mappings are not hashable; equal conventions agree on these fields
        return hash((self.name, self.tool, self.cell_names, self.gene_names, self.embedding_style))

    @property
    def cell_names_attr(self) -> str:
        """The column attribute written for ``obs_names``."""
        return self.cell_names[0]

    @property
    def gene_names_attr(self) -> str:
        """The row attribute written for ``var_names``."""
        return self.gene_names[0]

    @property
    def embedding_form(self) -> EmbeddingForm:
        """The :class:`EmbeddingForm` of :attr:`embedding_style`."""
        return EMBEDDING_FORMS[self.embedding_style]

    def names(self, axis: Axis) -> tuple[str, ...]:
        """Name attribute candidates for ``"obs"`` (cells) or ``"var"`` (genes)."""
        return self.cell_names if axis == "obs" else self.gene_names

    def renames(self, axis: Axis) -> Mapping[str, str]:
        """AnnData column → attribute renames for ``axis``."""
        return self.obs_renames if axis == "obs" else self.var_renames

    def score(self, summary: FileSummary) -> float:
        """How well a file fits this convention; ``0`` when nothing of it is there.

        Each axis whose names are in one of :attr:`cell_names`/:attr:`gene_names` (as text) counts
        :data:`NAME_SCORE`; each of :attr:`markers` found counts :data:`MARKER_SCORE`, a marker on a global value
        :data:`VALUE_MARKER_SCORE`. A :attr:`detect` function replaces all of this.

        Examples
        --------
        >>> from scanpy_loomio.conventions import FileSummary, get_convention
        >>> summary = FileSummary(
        ...     text_col_attrs=frozenset({"CellID"}),
        ...     text_row_attrs=frozenset({"Gene"}),
        ...     layers=frozenset({"spliced", "unspliced", "ambiguous"}),
        ... )
        >>> get_convention("loompy").score(summary), get_convention("velocyto").score(summary)
        (6, 9)
        """
        if self.detect is not None:
            return self.detect(summary)
        points = 0
        if any(n in summary.text_col_attrs for n in self.cell_names):
            points += NAME_SCORE
        if any(n in summary.text_row_attrs for n in self.gene_names):
            points += NAME_SCORE
        for marker in self.markers.found(summary):
            points += VALUE_MARKER_SCORE if "=" in marker else MARKER_SCORE
        return points


# -- the table -------------------------------------------------------------------------------------------------------

_LOOMPY_METADATA = ("LOOM_SPEC_VERSION", "CreationDate", "last_modified")
#: Reduction names R tools and SCope use, as scanpy's obsm keys.
_SCANPY_EMBEDDINGS = {"umap": "X_umap", "tsne": "X_tsne", "t-sne": "X_tsne", "pca": "X_pca"}

_BUILTIN = (
    Convention(
        name="loompy",
        tool="loompy",
        source="linnarsson-lab/loompy doc/conventions, loompy/loompy.py",
        cell_names=("CellID",),
        gene_names=("Gene",),
        var_renames={"gene_ids": "Accession"},
        metadata_globals=_LOOMPY_METADATA,
        # the default output: 1-D attributes only, so SeuratDisk, LoomExperiment and SCopeLoomR open it too
        embedding_style="columns",
        multidim_attrs=False,
        markers=Markers(col_attrs=("ClusterID", "ClusterName"), row_attrs=("Accession",)),
        notes="`Gene` is not unique; `Accession` is the unique gene id. Validator: `loompy.LoomValidator`. As the "
        "default, embeddings are written one 1-D attribute per component (`X_umap_1`, `X_umap_2`), because SeuratDisk, "
        "LoomExperiment and SCopeLoomR fail on 2-D column attributes; `read_loom_full` puts them back together.",
    ),
    Convention(
        name="velocyto",
        aliases=("scvelo",),
        tool="velocyto.py, velocyto.R, scVelo",
        source="velocyto-team/velocyto.py velocyto/counter.py; theislab/scvelo",
        cell_names=("CellID",),
        gene_names=("Gene",),
        var_renames={"gene_ids": "Accession"},
        matrix_holds="`spliced` + `unspliced` + `ambiguous`",
        layers=("spliced", "unspliced", "ambiguous", "spanning"),
        required_layers=("spliced", "unspliced", "ambiguous"),
        metadata_globals=_LOOMPY_METADATA,
        markers=Markers(
            layers=("spliced", "unspliced", "ambiguous"),
            row_attrs=("Chromosome", "Strand", "Start", "End"),
        ),
        notes="`CellID` is `sample:BARCODEx`. scVelo needs `spliced` and `unspliced`; velocyto.py also `ambiguous`. "
        "anndata's `read_loom` silently makes `spliced` its `X`; this package keeps `/matrix` as `X` unless "
        "`X_name='spliced'` is passed.",
        anndata_x_layer="spliced",
    ),
    Convention(
        name="scope",
        aliases=("pyscenic", "scenic"),
        tool="pySCENIC, SCope, SCopeLoomR",
        source="aertslab/pySCENIC src/pyscenic/export.py; aertslab/SCopeLoomR R/loom.R",
        cell_names=("CellID",),
        gene_names=("Gene",),
        # two-component embeddings go to Embeddings_X/Embeddings_Y (see default_embedding_attr), others to columns
        embedding_style="columns",
        multidim_attrs=False,
        metadata_globals=("MetaData", "Genome", "title", "SCopeTreeL1", "SCopeTreeL2", "SCopeTreeL3"),
        json_globals=("MetaData",),
        embedding_renames=_SCANPY_EMBEDDINGS,
        clusterings_attr="Clusterings",
        cluster_id_attr="ClusterID",
        default_embedding_attr="Embedding",
        markers=Markers(
            col_attrs=("Embedding", "Embeddings_X", "Embeddings_Y", "RegulonsAUC", "Clusterings", "nGene", "nUMI"),
            row_attrs=("Regulons", "ClusterMarkers_*"),
            globals=("MetaData", "SCopeTreeL1", "Genome"),
            groups=("col_edges", "row_edges"),
        ),
        notes="Written as SCopeLoomR writes it: two-component embeddings as fields of `Embeddings_X`/`Embeddings_Y` "
        "(the first, id -1, also as `Embedding`), categoricals as fields of `Clusterings` (the first also as "
        "`ClusterID`), all named in the `MetaData` JSON global; other embeddings as 1-D attributes. Reading a SCope "
        "or pySCENIC file gives each clustering as a categorical `obs` column labelled from `MetaData`, embeddings "
        "under scanpy's names (`UMAP` → `X_umap`, originals in `uns['loom_embedding_names']`), and other record "
        "attributes (`RegulonsAUC`, `ClusterMarkers_*`) as `obsm`/`varm` DataFrames. Record attributes are outside "
        "the loom spec: loompy's validator refuses these files (`validate_loom` warns). SCopeLoomR fails when `CellID` "
        "is the only column attribute. pySCENIC (through loompy 3) and SCopeLoomR 0.6 and later write spec 3.0.0; "
        "older SCopeLoomR files state no spec version and keep global attributes on the root group.",
    ),
    Convention(
        name="seuratdisk",
        aliases=("seurat",),
        tool="Seurat via SeuratDisk",
        source="mojaveazure/seurat-disk R/loom.R",
        cell_names=("CellID",),
        gene_names=("Gene",),
        matrix_holds="normalized `data` when written by SeuratDisk; `LoadLoom` reads it as counts",
        layers=("counts", "scale.data"),
        embedding_style="columns",
        multidim_attrs=False,
        metadata_globals=("SEURAT_ASSAY", *_LOOMPY_METADATA),
        r_types=RTypes(factors="enum", bool_dtype="int32"),
        accepted_spec_versions=("3.0.0",),
        markers=Markers(globals=("SEURAT_ASSAY",), layers=("scale.data",)),
        notes="`LoadLoom` needs `/attrs/LOOM_SPEC_VERSION`, fails on 2-D column attributes and loads graphs only "
        "with `verbose=TRUE`.",
    ),
    Convention(
        name="loomr",
        tool="Seurat v3 via loomR",
        source="mojaveazure/loomR R/loom.R",
        cell_names=("cell_names", "CellID"),
        gene_names=("gene_names", "Gene"),
        matrix_holds="counts",
        layers=("norm_data", "scale_data"),
        embedding_style="cell_embeddings",
        graph_index_base=(0, 1),
        metadata_globals=("LOOM_SPEC_VERSION", "version", "chunks"),
        spec_version="2.0.1",
        accepted_spec_versions=("2.0.1",),
        global_layout="root",
        sidecar=False,
        markers=Markers(
            col_attrs=("*_cell_embeddings",),
            row_attrs=("*_gene_loadings", "var_genes"),
            layers=("norm_data", "scale_data"),
            globals=("version", "chunks"),
        ),
        notes="Refuses files with an `/attrs` group or any top-level group besides the five of spec 2 (unless "
        "`skip.validate=TRUE`). `add.graph.matrix` writes `a` from 0 and `b` from 1.",
    ),
    Convention(
        name="loomexperiment",
        aliases=("sceasy",),
        tool="LoomExperiment, sceasy",
        source="Bioconductor/LoomExperiment R/export-method.R, R/import-method.R; cellgeni/sceasy",
        cell_names=("colnames",),
        gene_names=("rownames", "GRanges/rownames"),
        matrix_holds="the first assay (`MatrixName` global)",
        embedding_style="reduced_dims",
        multidim_attrs=False,
        metadata_globals=("CreatedWith", "LoomExperiment-class", "MatrixName", "ReducedDimsName*", "LOOM_SPEC_VERSION"),
        spec_version="2.0.1",
        global_layout="root",
        nested_groups={"reducedDims": "obsm", "GRanges": "columns"},
        r_types=RTypes(factors="flags", logical_mark=("storage.mode", "logical")),
        markers=Markers(
            globals=("LoomExperiment-class", "MatrixName", "ReducedDimsName*"),
            global_values={"CreatedWith": "LoomExperiment"},
            col_attrs=("reducedDims_*", "colnames_factor"),
            groups=("row_attrs/GRanges", "row_attrs/GRangesList", "col_attrs/reducedDims"),
        ),
        notes="Strings are fixed-length bytes. `import` fails on 2-D column attributes other than the "
        "`reducedDims_<name>` ones listed in `ReducedDimsName<i>`; without `colnames`/`rownames` it gives no dimnames. "
        "Names that are only `1`, `2`, … (R's defaults) are passed over for real names.",
    ),
    Convention(
        name="optimus",
        tool="HCA Optimus",
        source="HumanCellAtlas/skylab, broadinstitute/warp pipelines/skylab/optimus",
        cell_names=("cell_names",),
        gene_names=("gene_names",),
        var_renames={"gene_ids": "ensembl_ids"},
        matrix_holds="counts",
        metadata_globals=("pipeline_version", "input_id", "expression_data_type", "optimus_output_schema_version"),
        markers=Markers(
            row_attrs=("ensembl_ids",),
            globals=("pipeline_version", "input_id", "expression_data_type", "optimus_output_schema_version"),
        ),
        notes="Many per-cell and per-gene QC metrics as attributes.",
    ),
    Convention(
        name="kb_python",
        tool="kb_python (`kb count --loom`)",
        source="pachterlab/kb_python kb_python/count.py",
        cell_names=("barcode",),
        gene_names=("target_name",),
        matrix_holds="counts",
        notes="With `--loom-names velocyto` it writes `CellID`/`Gene` instead (the velocyto convention).",
    ),
    Convention(
        name="alevin_fry",
        tool="alevin-fry via pyroe (`pyroe convert`)",
        source="COMBINE-lab/pyroe src/pyroe/convert.py",
        cell_names=("barcodes",),
        gene_names=("gene_ids",),
        matrix_holds="counts (`X` of the chosen output format)",
        notes="USA-mode layers (`spliced`, `unspliced`, `ambiguous`) when asked for.",
    ),
    Convention(
        name="baysor",
        tool="Baysor (`segmentation_counts.loom`)",
        source="kharchenkolab/Baysor src/data_processing/ (the loom writer); gustaveroussy/sopa sopa/io (its reader)",
        cell_names=("CellID",),
        gene_names=("Name",),
        matrix_holds="molecule counts per segmented cell",
        metadata_globals=_LOOMPY_METADATA,
        obsm_from_columns={"spatial": ("x", "y")},
        markers=Markers(
            col_attrs=("n_transcripts", "density", "elongation", "avg_confidence", "lifespan", "area", "x", "y"),
        ),
        notes="`CellID` holds 1-based numbers (as floats), so it stays an `obs` column and `obs_names` are "
        "positions; the cell's segmentation statistics are columns, and `x`/`y` also become `obsm['spatial']`. "
        "One Baysor build writes `/matrix` cells × genes: it is read turned round, with a `LoomReadWarning`, and "
        "`validate_loom` reports it.",
    ),
    Convention(
        name="anndata",
        tool="anndata `write_loom` (legacy)",
        source="scverse/anndata src/anndata/_io/write.py, _io/read.py",
        # the writer names the attribute after the index's name when it has one; "index" is pandas' usual one
        cell_names=("obs_names", "index"),
        gene_names=("var_names", "index"),
        metadata_globals=_LOOMPY_METADATA,
        notes="The names go to `obs_names`/`var_names` (or the index's name), which anndata's own `read_loom` does "
        "not read back. `obsm`/`varm` only with `write_obsm_varm=True`; `obsp`, `varp`, `uns` and `raw` are dropped.",
    ),
    Convention(
        name="portable",
        aliases=("all",),
        tool="every reader above in one file (loompy, anndata, scVelo, velocyto.py and .R, pySCENIC, SeuratDisk, "
        "loomR, LoomExperiment, sceasy, SCopeLoomR)",
        source="the sources of each row above; checked by running each reader (tests/test_portable.py)",
        cell_names=("CellID", "colnames", "cell_names"),
        gene_names=("Gene", "rownames", "gene_names"),
        var_renames={"gene_ids": "Accession"},
        link_names=True,
        embedding_style="columns",
        multidim_attrs=False,
        embedding_store="reduced_dims_stored",
        metadata_globals=(*_LOOMPY_METADATA, "ReducedDimsName*"),
        r_types=RTypes(logical_mark=("storage.mode", "logical")),
        # nothing else writes all six names; a portable file whose record is gone is still read as one
        detect=lambda s: (
            20
            if {"CellID", "colnames", "cell_names"} <= s.text_col_attrs
            and {"Gene", "rownames", "gene_names"} <= s.text_row_attrs
            else 0
        ),
        notes="One file that every reader above opens with the right names. Nothing is stored twice: `CellID`/`Gene` "
        "are the name datasets, and `colnames`/`rownames` (LoomExperiment, sceasy) and `cell_names`/`gene_names` "
        "(loomR) are HDF5 hard links to them; each `obsm` entry is one 2-D dataset, `/scanpy_loomio/reducedDims_<name>`, "
        "which LoomExperiment reads as a reduced dimension, and the 1-D attributes `X_umap_1`, `X_umap_2`, … in "
        "`/col_attrs` are HDF5 virtual datasets reading its components, for the readers that fail on 2-D column "
        "attributes (SeuratDisk, SCopeLoomR, LoomExperiment). So anndata and scVelo see embeddings as `obs` columns "
        "(their `obsm_mapping` puts them together), SeuratDisk and SCopeLoomR as metadata columns. Booleans are `int8` "
        'marked `storage.mode = "logical"`: logical in LoomExperiment, integer elsewhere (as in SeuratDisk\'s own '
        "files). Categoricals are their labels: text in Python, `character` in R. Where readers conflict, this file "
        "gives up what would break another: SeuratDisk's enum factors (Python readers would see bare codes), "
        "LoomExperiment's factor flags (a 2-D column attribute SeuratDisk cannot load), SCope's embeddings and "
        "clusterings (record attributes loompy refuses, so anndata, scVelo and velocyto.py would too: SCopeLoomR's "
        "`get_embeddings` finds none), and loomR's validation (spec 3's `/attrs` and the group of kept elements are "
        "extra top-level groups: open with `skip.validate = TRUE`). Graphs count vertices from 0, as the spec, "
        "SeuratDisk and LoomExperiment do; loomR's `get.graph` counts `b` from 1 and gets them shifted by one. Use "
        "`seuratdisk`, `loomexperiment` or `scope` for a file meant for that tool alone.",
    ),
)

CONVENTIONS: dict[str, Convention] = {c.name: c for c in _BUILTIN}
"""All known conventions by name, in the order detection prefers them on a tie."""

DEFAULT_CONVENTION = "loompy"
"""The convention written by default, because ``CellID``/``Gene`` are what most real readers look for."""


def register_convention(convention: Convention, *, overwrite: bool = False) -> None:
    """Add a convention to :data:`CONVENTIONS`, so that reading detects it and ``convention=`` accepts its name.

    Examples
    --------
    >>> from scanpy_loomio.conventions import CONVENTIONS, Convention, Markers, register_convention
    >>> mylab = Convention(
    ...     name="mylab",
    ...     tool="My lab",
    ...     source="-",
    ...     cell_names=("cell",),
    ...     gene_names=("gene",),
    ...     markers=Markers(globals=("mylab_version",)),
    ... )
    >>> register_convention(mylab)
    >>> del CONVENTIONS["mylab"]  # tidy up
    """
    if not isinstance(convention, Convention):
        msg = f"register_convention: expected a Convention, got {type(convention).__name__}"
        raise TypeError(msg)
    if convention.name in CONVENTIONS and not overwrite:
        msg = f"a convention named {convention.name!r} exists; pass overwrite=True to replace it"
        raise ValueError(msg)
    CONVENTIONS[convention.name] = convention


def get_convention(convention: str | Convention) -> Convention:
    """Look a convention up by name, or pass a :class:`Convention` through.

    Raises
    ------
    ValueError
        For an unknown name; the message lists the known ones.

    Examples
    --------
    >>> from scanpy_loomio.conventions import get_convention
    >>> get_convention("loomexperiment").cell_names_attr
    'colnames'
    >>> get_convention("Seurat").name  # the names users type, in any case
    'seuratdisk'
    """
    if isinstance(convention, Convention):
        return convention
    if isinstance(convention, str):
        wanted = convention.casefold()
        for known in CONVENTIONS.values():
            if wanted == known.name.casefold() or wanted in (alias.casefold() for alias in known.aliases):
                return known
    aliases = sorted(alias for c in CONVENTIONS.values() for alias in c.aliases)
    msg = (
        f"unknown convention {convention!r}; expected one of {sorted(CONVENTIONS)} (or {', '.join(aliases)}), "
        "or a Convention object"
    )
    raise ValueError(msg)


def name_candidates(axis: Axis, first: Convention | None = None) -> tuple[str, ...]:
    """Every attribute that may hold names on ``axis``: ``first``'s candidates, then every registered convention's.

    Examples
    --------
    >>> from scanpy_loomio.conventions import get_convention, name_candidates
    >>> name_candidates("obs", get_convention("anndata"))[:3]
    ('obs_names', 'index', 'CellID')
    """
    out: dict[str, None] = {}
    for convention in (first, *CONVENTIONS.values()):
        if convention is not None:
            out.update(dict.fromkeys(convention.names(axis)))
    return tuple(out)


# -- docs ------------------------------------------------------------------------------------------------------------


def _code(values: object) -> str:
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
            "SCope layout (default embedding, clusterings, cluster ids)": _code(
                tuple(a for a in (c.default_embedding_attr, c.clusterings_attr, c.cluster_id_attr) if a)
            ),
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
