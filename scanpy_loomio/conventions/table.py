"""The convention table: one row per tool, and the embedding forms the rows refer to. Data only.

Everything the package knows about a tool is here, in a :class:`~scanpy_loomio.conventions.Convention` field; no
code elsewhere names a tool. Adding a tool is adding a row (or registering one, see
:func:`~scanpy_loomio.conventions.register_convention`). Import these from :mod:`scanpy_loomio.conventions`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from scanpy_loomio.conventions.model import Convention, EmbeddingForm, Markers, RTypes

__all__ = [
    "ANNDATA_CONVENTION",
    "BUILTIN_CONVENTIONS",
    "DEFAULT_CONVENTION",
    "EMBEDDING_FORMS",
    "VELOCYTO_CONVENTION",
]

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


# -- the rows ---------------------------------------------------------------------------------------------------------

_LOOMPY_METADATA = ("LOOM_SPEC_VERSION", "CreationDate", "last_modified")
#: Reduction names R tools and SCope use, as scanpy's obsm keys.
_SCANPY_EMBEDDINGS = {"umap": "X_umap", "tsne": "X_tsne", "t-sne": "X_tsne", "pca": "X_pca"}

BUILTIN_CONVENTIONS: tuple[Convention, ...] = (
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
        embedding_pair_attrs=("Embeddings_X", "Embeddings_Y"),
        layout_json_global="MetaData",
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
        names_under_index_name=True,
        # anndata's read_loom: obs_names="CellID", var_names="Gene", X_name="spliced", dtype="float32"
        reader_names={"obs": "CellID", "var": "Gene"},
        reader_x_layer="spliced",
        reader_x_dtype="float32",
        notes="The names go to `obs_names`/`var_names` (or the index's name), which anndata's own `read_loom` does "
        "not read back. `obsm`/`varm` only with `write_obsm_varm=True`; `obsp`, `varp`, `uns` and `raw` are dropped.",
    ),
)
"""Every tool's row, in the order detection prefers them on a tie."""

DEFAULT_CONVENTION = "loompy"
"""The convention written by default, because ``CellID``/``Gene`` are what most real readers look for."""

ANNDATA_CONVENTION = "anndata"
"""The row of anndata's own loom functions: the files :func:`~scanpy_loomio.upgrade_loom` upgrades are written by its
``write_loom``, and its ``reader_*`` fields say what its ``read_loom`` makes of any file (what
:func:`~scanpy_loomio.inspect_loom` says it would lose, what ``migrate`` warns about)."""

VELOCYTO_CONVENTION = "velocyto"
"""The row of velocyto's output, whose layers :func:`~scanpy_loomio.add_velocity_layers` adds."""
