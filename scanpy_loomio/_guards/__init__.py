"""Checks that run before and while a file is read, so a damaged or hostile file fails early and clearly.

A loom file is an HDF5 file, and HDF5 can do more than hold arrays: links can point into other files, virtual and
externally stored datasets can take their values from other files, and a dataset can declare a shape far larger than
what is stored. Before anything is read,

- :mod:`~scanpy_loomio._guards.open` opens the file read-only without HDF5 file locking, after checking that it is a
  regular file with an HDF5 signature (:func:`open_read_only`);
- :mod:`~scanpy_loomio._guards.structure` walks the whole HDF5 tree once without following any link
  (:func:`check_structure`) and checks that the loom objects are of the kinds the reader expects
  (:func:`check_layout`);
- :mod:`~scanpy_loomio._guards.heaps` checks, from the file's own bytes, the global heaps holding text and the stored
  lengths of text values, which HDF5 trusts and hangs or allocates gigabytes on when they are damaged
  (:func:`check_global_heaps`, :func:`check_vlen_datasets`);
- :func:`~scanpy_loomio._record.checks.check_tags` checks that this package's own tags are well-formed (the record is
  checked by :func:`~scanpy_loomio._record.checks.usable_metadata` when the reader loads it);
- :mod:`~scanpy_loomio._guards.budget` estimates the memory the read needs and refuses files that would need more
  than is available, or that declare far more matrix data than they store (:func:`check_read_size`).

:func:`check_file` runs the checks that need no reader, in order. While reading, the error boundary
(:mod:`~scanpy_loomio._guards.boundary`, :func:`converted_read_errors`) turns errors raised inside h5py or anndata
(the libraries that read the file) into :class:`~scanpy_loomio.LoomFormatError` naming the HDF5 object, and leaves
errors raised by this package's own code as they are.
"""

from scanpy_loomio._guards.boundary import converted_read_errors, hdf5_object, read_values
from scanpy_loomio._guards.budget import MemoryLimit, check_read_size, resolve_memory_limit
from scanpy_loomio._guards.checks import check_file
from scanpy_loomio._guards.heaps import check_global_heaps, check_vlen_datasets
from scanpy_loomio._guards.open import UnreadableFileError, open_read_only
from scanpy_loomio._guards.structure import MAX_DEPTH, check_layout, check_structure

__all__ = [
    "MAX_DEPTH",
    "MemoryLimit",
    "UnreadableFileError",
    "check_file",
    "check_global_heaps",
    "check_layout",
    "check_read_size",
    "check_structure",
    "check_vlen_datasets",
    "converted_read_errors",
    "hdf5_object",
    "open_read_only",
    "read_values",
    "resolve_memory_limit",
]
