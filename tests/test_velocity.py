"""add_velocity_layers: velocyto layers matched to a processed AnnData by barcode, sample and gene."""

from __future__ import annotations

import logging
import shutil
import warnings
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from scipy import sparse

from scanpy_loomio import add_velocity_layers, read_loom_full, split_cell_name, write_loom_full

VELOCYTO = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "tools" / "velocyto_run10x.loom"
BASES = np.array(list("ACGT"))


def barcodes(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return ["".join(rng.choice(BASES, 16)) for _ in range(n)]


def value(sample: str, barcode: str, gene: str, layer: str) -> int:
    """The count a synthetic loom holds, from the names alone (the oracle)."""
    return (sum(map(ord, sample + barcode + gene + layer)) * 7919) % 5


def make_loom(path: Path, sample: str, cells: list[str], genes: list[str], *, prefix: bool = True) -> Path:
    loom = ad.AnnData(np.zeros((len(cells), len(genes)), dtype=np.float32))
    loom.obs_names = [f"{sample}:{b}x" if prefix else f"{b}-1" for b in cells]
    loom.var_names = genes
    loom.var["gene_ids"] = [f"ENSG{g.upper()}" for g in genes]
    for layer in ("spliced", "unspliced", "ambiguous"):
        loom.layers[layer] = sparse.csr_matrix(
            np.array([[value(sample, b, g, layer) for g in genes] for b in cells], dtype=np.uint32)
        )
    loom.X = (loom.layers["spliced"] + loom.layers["unspliced"]).astype(np.float32)
    write_loom_full(path, loom, convention="velocyto")
    return path


@pytest.fixture
def two_samples(tmp_path: Path) -> tuple[list[Path], dict[str, list[str]], list[str]]:
    genes = [f"gene{j}" for j in range(30)]
    cells = {"s1": barcodes(25, 1), "s2": barcodes(20, 2)}
    cells["s2"][:5] = cells["s1"][:5]  # the same barcodes in both samples: only the sample tells them apart
    looms = [make_loom(tmp_path / f"{s}.loom", s, c, genes) for s, c in cells.items()]
    return looms, cells, genes


def processed(names: list[str], genes: list[str], *, gene_ids: bool = False) -> ad.AnnData:
    adata = ad.AnnData(np.ones((len(names), len(genes)), dtype=np.float32))
    adata.obs_names = names
    adata.var_names = genes
    if gene_ids:
        adata.var["gene_ids"] = [f"ENSG{g.upper()}" for g in genes]
    return adata


def expected(pairs: list[tuple[str, str]], genes: list[str], layer: str, known: set[str]) -> np.ndarray:
    return np.array([[value(s, b, g, layer) if g in known else 0 for g in genes] for s, b in pairs], dtype=np.float32)


@pytest.mark.parametrize(
    ("scheme", "sample_map"),
    [
        (lambda s, b: f"{s}:{b}x", None),  # velocyto's own names
        (lambda s, b: f"{s}_{b}-1", None),  # sample prefix
        (lambda s, b: f"{b}-1-{int(s[1]) - 1}", {"0": "s1", "1": "s2"}),  # anndata.concat(index_unique="-")
        (lambda s, b: f"{b}-1_{s.upper()}", {"S1": "s1", "S2": "s2"}),  # a suffix the user maps
    ],
)
def test_naming_schemes(two_samples: tuple, scheme: object, sample_map: dict | None) -> None:
    looms, cells, genes = two_samples
    rng = np.random.default_rng(0)
    pairs = [(s, b) for s, bs in cells.items() for b in bs[::2]]
    pairs = [pairs[i] for i in rng.permutation(len(pairs))]
    wanted_genes = [genes[i] for i in rng.permutation(len(genes))[:20]] + ["not_in_loom"]
    adata = processed([scheme(s, b) for s, b in pairs], wanted_genes)
    report = add_velocity_layers(adata, looms, sample_map=sample_map)
    assert report.n_matched == len(pairs)
    assert report.genes_missing == ["not_in_loom"]
    for layer in ("spliced", "unspliced", "ambiguous"):
        got = adata.layers[layer]
        assert isinstance(got, sparse.csr_matrix)
        assert got.dtype == np.float32
        np.testing.assert_array_equal(got.toarray(), expected(pairs, wanted_genes, layer, set(genes)))


def test_single_sample_cellranger_names(tmp_path: Path) -> None:
    genes = [f"gene{j}" for j in range(10)]
    cells = barcodes(12, 5)
    loom = make_loom(tmp_path / "run.loom", "run", cells, genes)
    pairs = [("run", b) for b in cells[::-1]]
    adata = processed([f"{b}-1" for _, b in pairs], genes)
    add_velocity_layers(adata, loom)
    np.testing.assert_array_equal(adata.layers["unspliced"].toarray(), expected(pairs, genes, "unspliced", set(genes)))


def test_ambiguous_barcodes_raise_and_name_examples(two_samples: tuple) -> None:
    looms, cells, genes = two_samples
    shared = cells["s1"][0]  # in both samples
    adata = processed([f"{shared}-1", f"{cells['s1'][7]}-1"], genes)
    with pytest.raises(ValueError, match=r"1 of 2 cells have no single match.*sample_map"):
        add_velocity_layers(adata, looms)
    report = add_velocity_layers(adata, looms, missing="zeros")
    assert report.ambiguous == [f"{shared}-1"]
    assert adata.layers["spliced"][0].nnz == 0
    adata.obs["sample"] = ["s2", "s1"]
    report = add_velocity_layers(adata, looms, sample_map="sample")
    assert report.n_matched == 2
    np.testing.assert_array_equal(
        adata.layers["spliced"].toarray(),
        expected([("s2", shared), ("s1", cells["s1"][7])], genes, "spliced", set(genes)),
    )


def test_missing_cells(two_samples: tuple, caplog: pytest.LogCaptureFixture) -> None:
    looms, cells, genes = two_samples
    names = [f"s1:{b}x" for b in cells["s1"][:4]] + ["s1:GGGGGGGGGGGGGGGGx", "s2:CCCCCCCCCCCCCCCCx", "unrelated"]
    with pytest.raises(ValueError, match=r"3 of 7 cells .*GGGGGGGGGGGGGGGG"):
        add_velocity_layers(processed(names, genes), looms)
    adata = processed(names, genes)
    report = add_velocity_layers(adata, looms, missing="zeros")
    assert len(report.unmatched) == 3
    assert adata.layers["spliced"][4:].nnz == 0
    assert len(report.unused) == 45 - 4
    adata = processed(names, genes)
    with caplog.at_level(logging.INFO, logger="scanpy_loomio"):
        report = add_velocity_layers(adata, looms, missing="drop")
    assert "4 of 7 matched" in caplog.text
    assert list(adata.obs_names) == names[:4]
    np.testing.assert_array_equal(
        adata.layers["spliced"].toarray(), expected([("s1", b) for b in cells["s1"][:4]], genes, "spliced", set(genes))
    )
    assert "4 of 7 matched" in str(report)


def test_genes_by_ids_when_both_have_them(two_samples: tuple) -> None:
    looms, cells, genes = two_samples
    pairs = [("s1", b) for b in cells["s1"][:6]]
    adata = processed([f"s1_{b}-1" for _, b in pairs], genes, gene_ids=True)
    adata.var_names = [f"symbol{j}" for j in range(len(genes))]  # other names, same ids
    report = add_velocity_layers(adata, looms)
    assert report.genes_by == "gene_ids"
    np.testing.assert_array_equal(adata.layers["spliced"].toarray(), expected(pairs, genes, "spliced", set(genes)))
    with pytest.raises(ValueError, match="no gene_ids"):
        add_velocity_layers(processed(["s1_A-1"], genes), looms, genes_by="gene_ids")


def test_split_cell_name() -> None:
    assert split_cell_name("possorted_genome_bam_ABC12:AAACCCAAGGTTACCTx") == (
        "possorted_genome_bam_ABC12",
        "AAACCCAAGGTTACCT",
    )
    assert split_cell_name("AAACCCAAGGTTACCT-1-batch2") == ("batch2", "AAACCCAAGGTTACCT")
    assert split_cell_name("AAACCCAAGGTTACCT") == ("", "AAACCCAAGGTTACCT")
    assert split_cell_name("cell7") == ("", "cell7")


def test_real_velocyto_file(tmp_path: Path) -> None:
    if not VELOCYTO.is_file():
        pytest.skip(f"velocyto fixture not found at {VELOCYTO}")
    loom = tmp_path / "vsample10x.loom"
    shutil.copy(VELOCYTO, loom)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        raw = read_loom_full(loom)
    names = [f"{name.split(':')[1][:-1]}-1" for name in raw.obs_names][::-1]
    genes = list(raw.var_names[::-1])
    adata = processed(names, genes, gene_ids=True)
    adata.var["gene_ids"] = raw.var["gene_ids"].reindex(genes).to_numpy()
    report = add_velocity_layers(adata, [loom])
    assert report.n_matched == raw.n_obs
    assert report.genes_by == "gene_ids"
    by_name = pd.Index([f"{n.split(':')[1][:-1]}-1" for n in raw.obs_names])
    for layer in ("spliced", "unspliced", "ambiguous"):
        want = raw.layers[layer].toarray()[by_name.get_indexer(names)][:, raw.var_names.get_indexer(genes)]
        np.testing.assert_array_equal(adata.layers[layer].toarray(), want.astype(np.float32))


def test_use_as_default_says_once_that_x_is_the_matrix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import anndata.io

    from scanpy_loomio import LoomReadWarning, use_as_default
    from scanpy_loomio._scanpy import default as _default

    monkeypatch.setattr(_default, "_x_hints_given", set())
    loom = make_loom(tmp_path / "s1.loom", "s1", barcodes(4, 9), ["g1", "g2"])
    plain = tmp_path / "plain.loom"
    write_loom_full(plain, processed(["a", "b"], ["g1"]))
    with use_as_default():
        with warnings.catch_warnings():
            warnings.simplefilter("error", LoomReadWarning)
            anndata.io.read_loom(plain)  # not a velocyto file
            spliced = anndata.io.read_loom(loom, X_name="spliced")  # asked for: nothing to say
        with pytest.warns(LoomReadWarning, match=r"/matrix as X.*X_name='spliced'"):
            adata = anndata.io.read_loom(loom)
        with warnings.catch_warnings():
            warnings.simplefilter("error", LoomReadWarning)
            anndata.io.read_loom(loom)  # once
    np.testing.assert_array_equal(
        adata.X.toarray(), (spliced.X + adata.layers["unspliced"]).toarray().astype(np.float32)
    )
