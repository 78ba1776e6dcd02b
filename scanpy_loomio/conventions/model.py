"""The convention model: what a convention says about a tool, and how a file is matched against it.

The classes here hold no tool's facts: those are the rows of :mod:`scanpy_loomio.conventions.table`. Import them from
:mod:`scanpy_loomio.conventions`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal, TypeVar, get_args

from scanpy_loomio.conventions.detection import MARKER_SCORE, NAME_SCORE, VALUE_MARKER_SCORE, FileSummary, Markers

__all__ = [
    "EMBEDDING_STYLES",
    "LOOM_SPEC_VERSIONS",
    "Convention",
    "EmbeddingForm",
    "RTypes",
]

EmbeddingStyle = Literal["matrix", "columns", "compound", "reduced_dims", "cell_embeddings", "reduced_dims_stored"]
GlobalLayout = Literal["datasets", "root"]
Axis = Literal["obs", "var"]
#: The styles an :class:`EmbeddingForm` can have; the table has one form for each.
EMBEDDING_STYLES: tuple[str, ...] = get_args(EmbeddingStyle)

#: The loom spec versions there are, oldest first. A convention reads every one and writes the newest unless its row
#: says otherwise.
LOOM_SPEC_VERSIONS = ("2.0.1", "3.0.0")


_V = TypeVar("_V")


def _frozen(mapping: Mapping[str, _V] | None = None) -> Mapping[str, _V]:
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


# -- the convention --------------------------------------------------------------------------------------------------


def _is_store_form(style: str) -> bool:
    """Whether ``style`` names a ``"matrix"`` embedding form kept in a group of its own (an embedding store)."""
    # imported here, not above: the forms are data, kept with the rows in the table module, which imports this one
    from scanpy_loomio.conventions.table import EMBEDDING_FORMS

    form = EMBEDDING_FORMS.get(style)
    return form is not None and form.layout == "matrix" and form.group is not None


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
        :attr:`layout_json_global` (SCope's ``Clusterings``); read as categorical ``obs`` columns.
    cluster_id_attr
        Column attribute holding the codes of the first clustering (SCope's ``ClusterID``).
    default_embedding_attr
        Record column attribute holding the default embedding (SCope's ``Embedding``, embedding id ``-1``), with the
        fields of the ``"compound"`` embedding form.
    embedding_pair_attrs
        Two record column attributes holding the x and the y of every two-component embedding, one field per
        embedding id, the embeddings named in :attr:`layout_json_global` (SCope's ``Embeddings_X``,
        ``Embeddings_Y``); ``()``: none. Written beside :attr:`default_embedding_attr`; read from any file that has
        both.
    layout_json_global
        JSON global attribute that names the embeddings of :attr:`embedding_pair_attrs` and the clusterings of
        :attr:`clusterings_attr`, and labels the clusters (SCope's ``MetaData``); an ``uns`` entry of that name, as
        read from such a file, is written back as it is instead.
    names_under_index_name
        Whether the tool's writer stores the names under the index's name when the index has one, and under the
        first of :attr:`cell_names`/:attr:`gene_names` when it has none; their other candidates are the index
        names it usually meets (anndata's ``write_loom``: ``obs_names``, else ``index``).
        :func:`scanpy_loomio.upgrade_loom` names the index of such files after the attribute holding the names.
    reader_names
        ``{"obs": attribute, "var": attribute}``: where the tool's own reader takes the names from when not told,
        where that is not :attr:`cell_names`/:attr:`gene_names` (anndata's ``read_loom``: ``CellID``, ``Gene``).
    reader_x_layer
        A layer the tool's own reader makes ``X`` whenever a file has it (anndata's ``read_loom``: ``spliced``).
    reader_x_dtype
        The dtype the tool's own reader gives ``X`` when not told (anndata's ``read_loom``: ``float32``).
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
    spec_version: str | None = LOOM_SPEC_VERSIONS[-1]
    accepted_spec_versions: tuple[str, ...] = LOOM_SPEC_VERSIONS
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
    embedding_pair_attrs: tuple[str, ...] = ()
    layout_json_global: str | None = None
    names_under_index_name: bool = False
    reader_names: Mapping[str, str] = field(default_factory=_frozen)
    reader_x_layer: str | None = None
    reader_x_dtype: str | None = None
    link_names: bool = False
    embedding_store: str | None = None

    def __post_init__(self) -> None:
        problems = []
        if not self.cell_names or not self.gene_names:
            problems.append("cell_names and gene_names need at least one attribute name each (the one written)")
        if self.embedding_style not in EMBEDDING_STYLES:
            problems.append(f"embedding_style {self.embedding_style!r} is not one of {sorted(EMBEDDING_STYLES)}")
        if self.global_layout not in ("datasets", "root"):
            problems.append(f"global_layout {self.global_layout!r} is not 'datasets' or 'root'")
        base = self.graph_index_base
        if not (isinstance(base, tuple) and len(base) == 2 and all(b in (0, 1) for b in base)):
            problems.append(f"graph_index_base {base!r} is not a pair of 0/1 for (a, b)")
        bad_nested = {g: how for g, how in self.nested_groups.items() if how not in ("obsm", "columns")}
        if bad_nested:
            problems.append(f"nested_groups {bad_nested} must map to 'obsm' or 'columns'")
        if len(self.embedding_pair_attrs) not in (0, 2):
            problems.append(
                f"embedding_pair_attrs {self.embedding_pair_attrs!r} must name two attributes (x, y) or none"
            )
        if self.embedding_store is not None and not _is_store_form(self.embedding_store):
            problems.append(f"embedding_store {self.embedding_store!r} is not a 'matrix' form with its own group")
        if not set(self.reader_names) <= {"obs", "var"}:
            problems.append(f"reader_names {dict(self.reader_names)} must be keyed by 'obs' and 'var'")
        if problems:
            msg = f"Convention {self.name!r}: " + "; ".join(problems) + "."
            raise ValueError(msg)
        # Freeze mappings given as plain dicts, so a registered convention cannot change under its users.
        mappings = (
            "obs_renames",
            "var_renames",
            "nested_groups",
            "obsm_from_columns",
            "embedding_renames",
            "reader_names",
        )
        for name in mappings:
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
        # imported here, not above: the forms are data, kept with the rows in the table module, which imports this one
        from scanpy_loomio.conventions.table import EMBEDDING_FORMS

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
        ``NAME_SCORE``; each of :attr:`markers` found counts ``MARKER_SCORE``, a marker on a global value
        ``VALUE_MARKER_SCORE``. A :attr:`detect` function replaces all of this.

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
