"""Velocity layers from per-sample velocyto looms, matched to a processed AnnData cell by cell and gene by gene.

Cell names differ between tools: velocyto writes ``sample:BARCODEx``, Cell Ranger ``BARCODE-1``, scanpy's
``concat(index_unique="-")`` ``BARCODE-1-0``, other pipelines ``sample_BARCODE-1``. Each name is split into its
barcode (the run of ``A``/``C``/``G``/``T``/``N``) and a sample tag (the rest, without separators and Cell Ranger's
``-1`` GEM well suffix); cells are matched on the barcode within the sample the tag names. Nothing is matched by
position, and every choice is reported.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from anndata import AnnData
from scipy import sparse

from scanpy_loomio._read.reader import read_loom_full
from scanpy_loomio.conventions import get_convention
from scanpy_loomio.conventions.table import VELOCYTO_CONVENTION

__all__ = ["VelocityReport", "add_velocity_layers", "split_cell_name"]

logger = logging.getLogger("scanpy_loomio")

#: The layers added by default: the ones velocyto writes, from its row in the convention table.
VELOCITY_LAYERS = get_convention(VELOCYTO_CONVENTION).required_layers
_BARCODE = re.compile(r"[ACGTN]{6,}")
_SEPARATORS = "_:-.#/ "


def split_cell_name(name: str) -> tuple[str, str]:
    """``(sample tag, barcode)`` of a cell name; the tag is ``""`` when the name has none.

    Examples
    --------
    >>> split_cell_name("sample1:AAACCTGAGAAGGCCTx")  # velocyto
    ('sample1', 'AAACCTGAGAAGGCCT')
    >>> split_cell_name("AAACCTGAGAAGGCCT-1")  # Cell Ranger
    ('', 'AAACCTGAGAAGGCCT')
    >>> split_cell_name("AAACCTGAGAAGGCCT-1-0")  # anndata.concat(index_unique="-")
    ('0', 'AAACCTGAGAAGGCCT')
    >>> split_cell_name("day3_AAACCTGAGAAGGCCT-1")
    ('day3', 'AAACCTGAGAAGGCCT')
    """
    found = list(_BARCODE.finditer(name))
    if not found:
        return "", name
    match = max(found, key=lambda m: len(m.group()))
    prefix, suffix = name[: match.start()], name[match.end() :]
    if suffix.startswith("x"):  # velocyto's end marker
        suffix = suffix[1:]
    suffix = re.sub(r"^-1(?=$|[-_.])", "", suffix)  # Cell Ranger's GEM well
    tag = "-".join(part for part in (prefix.strip(_SEPARATORS), suffix.strip(_SEPARATORS)) if part)
    return tag, match.group()


@dataclass
class VelocityReport:
    """How cells and genes of the AnnData were matched to the loom files.

    Attributes
    ----------
    n_obs, n_matched
        Cells of the AnnData, and how many found exactly one loom cell.
    unmatched
        AnnData cells with no loom cell.
    ambiguous
        AnnData cells whose barcode fits loom cells of several samples (pass ``sample_map``).
    unused
        Loom cells no AnnData cell took.
    genes_by
        ``"gene_ids"`` (ids on both sides) or ``"names"``.
    n_genes_matched, genes_missing
        Genes of the AnnData found in the looms, and those not found (their values are zeros).
    layers
        The layers added.
    missing
        What was done with unmatched cells.
    """

    n_obs: int
    n_matched: int
    unmatched: list[str] = field(default_factory=list)
    ambiguous: list[str] = field(default_factory=list)
    unused: list[str] = field(default_factory=list)
    genes_by: str = "names"
    n_genes_matched: int = 0
    genes_missing: list[str] = field(default_factory=list)
    layers: list[str] = field(default_factory=list)
    missing: str = "raise"

    def __str__(self) -> str:
        def examples(values: list[str]) -> str:
            return f" (e.g. {', '.join(values[:3])})" if values else ""

        return "\n".join(
            [
                f"cells: {self.n_matched} of {self.n_obs} matched; {len(self.unmatched)} without a loom cell"
                f"{examples(self.unmatched)}; {len(self.ambiguous)} ambiguous{examples(self.ambiguous)}; "
                f"{len(self.unused)} loom cells unused{examples(self.unused)}",
                f"genes: {self.n_genes_matched} matched by {self.genes_by}; {len(self.genes_missing)} not in the "
                f"looms (zeros){examples(self.genes_missing)}",
                f"layers added: {', '.join(self.layers) or 'none'} (unmatched cells: {self.missing})",
            ]
        )


def _loom_sample(path: Path, tags: np.ndarray) -> np.ndarray:
    """Loom cells' samples: the tag in their names, else the file name without ``.loom``."""
    return np.where(tags == "", path.stem, tags)


def add_velocity_layers(
    adata: AnnData,
    looms: Sequence[str | os.PathLike[str]] | str | os.PathLike[str],
    *,
    sample_map: Mapping[str, str] | str | None = None,
    missing: Literal["raise", "drop", "zeros"] = "raise",
    layers: Sequence[str] = VELOCITY_LAYERS,
    genes_by: Literal["auto", "gene_ids", "names"] = "auto",
    dtype: np.dtype | type = np.float32,
) -> VelocityReport:
    """Add velocyto's ``spliced``/``unspliced``/``ambiguous`` layers to a processed AnnData, matched by name.

    Cells are matched on their barcode within their sample (see :func:`split_cell_name`): velocyto's
    ``sample:BARCODEx`` and Cell Ranger's ``BARCODE-1``, with prefixes (``sample_BARCODE-1``) or suffixes
    (``BARCODE-1-0``). Genes are matched on ``var["gene_ids"]`` when the AnnData and the looms both have it (the
    looms' ``Accession``), else on the names. The layers are CSR matrices of ``dtype`` (``float32``, as scVelo
    works on them), aligned to ``adata.obs_names`` and ``adata.var_names``; genes the looms lack are zeros.

    Parameters
    ----------
    adata
        The processed AnnData; changed in place.
    looms
        velocyto loom files (one per sample, or one for all).
    sample_map
        ``{tag in the AnnData's names: sample}``, where a sample is the prefix of the loom cell names
        (``sample`` of ``sample:BARCODEx``) or, for looms whose names have none, the loom file name without
        ``.loom``; or the name of an ``obs`` column holding each cell's sample. Without it, a tag that is a sample
        name selects it, and a barcode found in one sample only matches there.
    missing
        AnnData cells without exactly one loom cell: ``"raise"`` a ``ValueError`` naming how many and examples,
        ``"drop"`` them from ``adata`` (in place), or give them ``"zeros"``.
    layers
        Layers to add; those the looms lack are skipped (``ambiguous`` is optional for scVelo).
    genes_by
        ``"auto"``, ``"gene_ids"`` or ``"names"``.
    dtype
        dtype of the layers.

    Returns
    -------
    A :class:`VelocityReport`, also logged.

    Examples
    --------
    >>> import anndata as ad, numpy as np
    >>> import scanpy_loomio
    >>> loom = ad.AnnData(np.ones((2, 2), dtype=np.uint32))
    >>> loom.obs_names = ["s1:AAACCTGAGAAGGCCTx", "s1:TTTGTCATCTTGCATTx"]
    >>> loom.var_names = ["g1", "g2"]
    >>> for name in ("spliced", "unspliced", "ambiguous"):
    ...     loom.layers[name] = loom.X.copy()
    >>> scanpy_loomio.write_loom_full("s1.loom", loom, convention="velocyto")
    >>> adata = ad.AnnData(np.zeros((1, 2), dtype=np.float32))
    >>> adata.obs_names = ["TTTGTCATCTTGCATT-1"]
    >>> adata.var_names = ["g1", "g2"]
    >>> report = scanpy_loomio.add_velocity_layers(adata, ["s1.loom"])
    >>> report.n_matched, adata.layers["spliced"].format
    (1, 'csr')
    """
    if missing not in ("raise", "drop", "zeros"):
        msg = f"missing={missing!r}; expected 'raise', 'drop' or 'zeros'"
        raise ValueError(msg)
    if isinstance(looms, str | os.PathLike):
        looms = [looms]
    paths = [Path(p) for p in looms]
    if not paths:
        msg = "add_velocity_layers: no loom files"
        raise ValueError(msg)
    data = []
    for path in paths:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            data.append(read_loom_full(path))
    names = [layer for layer in layers if all(layer in named(d) for d in data)]
    if not names:
        msg = f"add_velocity_layers: the looms share none of the layers {list(layers)}; is this velocyto output?"
        raise ValueError(msg)

    # cells
    loom_names = np.concatenate([np.asarray(d.obs_names, dtype=object) for d in data])
    split = [split_cell_name(n) for n in loom_names]
    loom_samples = np.concatenate(
        [
            _loom_sample(path, np.array([t for t, _ in split[start : start + d.n_obs]], dtype=object))
            for path, d, start in zip(
                paths, data, itertools.accumulate((d.n_obs for d in data[:-1]), initial=0), strict=True
            )
        ]
    )
    loom_barcodes = np.array([b for _, b in split], dtype=object)
    by_key: dict[tuple[str, str], list[int]] = {}
    by_barcode: dict[str, list[int]] = {}
    for i, (sample, barcode) in enumerate(zip(loom_samples, loom_barcodes, strict=True)):
        by_key.setdefault((sample, barcode), []).append(i)
        by_barcode.setdefault(barcode, []).append(i)
    samples = set(loom_samples.tolist())
    if isinstance(sample_map, str):
        if sample_map not in adata.obs.columns:
            msg = f"sample_map={sample_map!r} names no obs column; columns: {list(adata.obs.columns)[:20]}"
            raise ValueError(msg)
        cell_samples = [str(v) for v in adata.obs[sample_map]]
    else:
        cell_samples = None
    row = np.full(adata.n_obs, -1, dtype=np.int64)
    ambiguous: list[str] = []
    for i, name in enumerate(adata.obs_names):
        tag, barcode = split_cell_name(str(name))
        if cell_samples is not None:
            wanted = cell_samples[i]
        elif isinstance(sample_map, Mapping) and tag in sample_map:
            wanted = sample_map[tag]
        elif tag in samples:
            wanted = tag
        else:
            wanted = None
        found = by_key.get((wanted, barcode), []) if wanted is not None else by_barcode.get(barcode, [])
        if len(found) == 1:
            row[i] = found[0]
        elif len(found) > 1:
            ambiguous.append(str(name))
    matched = row >= 0
    unmatched = [str(n) for n, m in zip(adata.obs_names, matched, strict=True) if not m and str(n) not in ambiguous]
    taken = set(row[matched].tolist())
    unused = [str(loom_names[i]) for i in range(len(loom_names)) if i not in taken]
    if len(set(row[matched].tolist())) != int(matched.sum()):
        counts = pd.Series(row[matched]).value_counts()
        twice = [str(loom_names[i]) for i in counts[counts > 1].index[:3]]
        msg = f"add_velocity_layers: several AnnData cells match the same loom cell (e.g. {', '.join(twice)})"
        raise ValueError(msg)

    # genes
    use_ids = genes_by == "gene_ids" or (
        genes_by == "auto" and "gene_ids" in adata.var and all("gene_ids" in d.var for d in data)
    )
    if use_ids and not ("gene_ids" in adata.var and all("gene_ids" in d.var for d in data)):
        msg = "genes_by='gene_ids': the AnnData or a loom has no gene_ids (Accession) column"
        raise ValueError(msg)
    wanted_genes = pd.Index(adata.var["gene_ids"].astype(str) if use_ids else adata.var_names.astype(str))
    columns = []
    for d in data:
        have = pd.Index(d.var["gene_ids"].astype(str) if use_ids else d.var_names.astype(str))
        first = ~have.duplicated()
        position = pd.Series(np.flatnonzero(first), index=have[first])
        columns.append(position.reindex(wanted_genes).fillna(-1).to_numpy(dtype=np.int64))
    found_genes = np.zeros(adata.n_vars, dtype=bool)
    for c in columns:
        found_genes |= c >= 0
    report = VelocityReport(
        n_obs=adata.n_obs,
        n_matched=int(matched.sum()),
        unmatched=unmatched,
        ambiguous=ambiguous,
        unused=unused,
        genes_by="gene_ids" if use_ids else "names",
        n_genes_matched=int(found_genes.sum()),
        genes_missing=[str(g) for g, f in zip(adata.var_names, found_genes, strict=True) if not f],
        layers=names,
        missing=missing,
    )
    if missing == "raise" and not matched.all():
        bad = unmatched + ambiguous
        msg = (
            f"add_velocity_layers: {len(bad)} of {adata.n_obs} cells have no single match in the looms "
            f"(e.g. {', '.join(bad[:3])}; loom cells look like {', '.join(map(str, loom_names[:3]))}). "
            "Pass sample_map= to say which sample each name prefix or suffix is, or missing='drop' / 'zeros'."
        )
        raise ValueError(msg)

    offsets = np.cumsum([0] + [d.n_obs for d in data])
    for name in names:
        out = sparse.csr_matrix((adata.n_obs, adata.n_vars), dtype=dtype)
        for k, d in enumerate(data):
            rows_here = np.flatnonzero(matched & (row >= offsets[k]) & (row < offsets[k + 1]))
            if rows_here.size == 0:
                continue
            source = sparse.csr_matrix(named(d)[name])
            source = source[row[rows_here] - offsets[k]]
            present = columns[k] >= 0
            picked = source[:, columns[k][present]].tocoo()
            out_cols = np.flatnonzero(present)[picked.col]
            part = sparse.csr_matrix(
                (picked.data.astype(dtype), (rows_here[picked.row], out_cols)), shape=(adata.n_obs, adata.n_vars)
            )
            out = out + part
        out.sort_indices()
        adata.layers[name] = sparse.csr_matrix(out, dtype=dtype)
    if missing == "drop" and not matched.all():
        adata._inplace_subset_obs(matched)
    logger.info("add_velocity_layers:\n%s", report)
    return report


def named(adata: AnnData) -> dict:
    """``adata.layers`` without anndata 0.13's ``None`` alias of ``X``."""
    return {k: v for k, v in adata.layers.items() if k is not None}
