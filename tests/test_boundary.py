"""The error boundary of a read: which errors become LoomFormatError, and which HDF5 object their message names.

The object comes from the reading code (``hdf5_object`` around each element it reads) and, inside anndata's element
reading, from the note anndata adds naming the element it was reading.
"""

from __future__ import annotations

import re
from pathlib import Path

import h5py
import numpy as np
import pytest
from anndata.io import read_elem, write_elem

from scanpy_loomio import LoomFormatError
from scanpy_loomio._guards import converted_read_errors, hdf5_object, read_values


@pytest.fixture
def h5_file(tmp_path: Path) -> Path:
    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        f["group/values"] = np.arange(4)
        f["group/values"].attrs["unit"] = "counts"
        write_elem(f, "uns", {"params": {"k": 1}, "other": np.arange(3)})
        f["uns/params"].attrs["encoding-type"] = "garbage"
    return path


def message_start(path: Path, where: str) -> str:
    return re.escape(f"{path}: {where}: found content that cannot be read (")


def test_the_innermost_object_names_the_error(h5_file: Path) -> None:
    with h5py.File(h5_file, "r") as f, pytest.raises(LoomFormatError, match=message_start(h5_file, "/group/values")):
        with converted_read_errors(h5_file), hdf5_object(f["group"]), hdf5_object(f["group/values"]):
            f["group/values"][10]  # h5py: index out of range


def test_an_error_outside_the_inner_block_names_the_outer_object(h5_file: Path) -> None:
    with h5py.File(h5_file, "r") as f, pytest.raises(LoomFormatError, match=message_start(h5_file, "/group")):
        with converted_read_errors(h5_file), hdf5_object(f["group"]):
            with hdf5_object(f["group/values"]):
                pass
            f["group/values"][10]


def test_an_attribute_is_named_with_its_object(h5_file: Path) -> None:
    expected = message_start(h5_file, "/group/values (attribute 'missing')")
    with h5py.File(h5_file, "r") as f, pytest.raises(LoomFormatError, match=expected):
        with converted_read_errors(h5_file), hdf5_object(f["group/values"], attribute="missing"):
            f["group/values"].attrs["missing"]


def test_a_path_can_name_the_object(h5_file: Path) -> None:
    with h5py.File(h5_file, "r") as f, pytest.raises(LoomFormatError, match=message_start(h5_file, "/elsewhere")):
        with converted_read_errors(h5_file), hdf5_object("/elsewhere"):
            f["group/values"][10]


def test_read_values_names_the_dataset(tmp_path: Path) -> None:
    path = tmp_path / "damaged.h5"
    with h5py.File(path, "w") as f:
        dset = f.create_dataset("group/values", shape=(8,), dtype="i4", chunks=(4,), compression="gzip")
        dset[:] = np.arange(8)
        dset.id.write_direct_chunk((4,), b"not a deflate stream")
    with h5py.File(path, "r") as f, pytest.raises(LoomFormatError, match=message_start(path, "/group/values")):
        with converted_read_errors(path), hdf5_object(f["group"]):
            read_values(f["group/values"])


def test_without_a_named_object_the_error_names_the_root(h5_file: Path) -> None:
    with h5py.File(h5_file, "r") as f, pytest.raises(LoomFormatError, match=message_start(h5_file, "/")):
        with converted_read_errors(h5_file):
            f["group/values"][10]


def test_errors_of_this_package_pass_unchanged(h5_file: Path) -> None:
    with h5py.File(h5_file, "r") as f, pytest.raises(ZeroDivisionError):
        with converted_read_errors(h5_file), hdf5_object(f["group"]):
            _ = 1 / 0


def test_text_that_is_not_utf8_names_the_object(h5_file: Path) -> None:
    expected = re.escape(f"{h5_file}: /group/values: found text that is not UTF-8 (")
    with h5py.File(h5_file, "r") as f, pytest.raises(LoomFormatError, match=expected):
        with converted_read_errors(h5_file), hdf5_object(f["group/values"]):
            b"\xff".decode("utf-8")
    with pytest.raises(LoomFormatError, match=re.escape(f"{h5_file}: a text value: found text that is not UTF-8")):
        with converted_read_errors(h5_file):
            b"\xff".decode("utf-8")


def test_anndata_names_the_element_it_was_reading(h5_file: Path) -> None:
    """Inside anndata's recursive reading, the element that failed is named, not the one this package asked for."""
    expected = message_start(h5_file, "/uns/params") + "IORegistryError"
    with h5py.File(h5_file, "r") as f, pytest.raises(LoomFormatError, match=expected):
        with converted_read_errors(h5_file), hdf5_object(f["uns"]):
            read_elem(f["uns"])
