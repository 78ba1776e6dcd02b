"""Everything checked before a file is read, in order."""

from __future__ import annotations

from typing import TYPE_CHECKING

from scanpy_loomio._guards.heaps import check_global_heaps, check_vlen_datasets
from scanpy_loomio._guards.structure import DatasetInfo, check_layout, check_structure
from scanpy_loomio._record.checks import check_tags

if TYPE_CHECKING:
    from pathlib import Path

    import h5py


def check_file(file: h5py.File, path: Path, *, allow_external: bool = False) -> list[DatasetInfo]:
    """Everything checked before reading: structure, global heaps, layout and tags."""
    datasets = check_structure(file, path, allow_external=allow_external)
    checked: set[int] = set()  # global heaps already checked
    check_global_heaps(file, path, checked)
    check_vlen_datasets(file, path, datasets, checked)
    check_layout(file, path)
    check_tags(file, path)
    return datasets
