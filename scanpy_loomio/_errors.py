"""Exception and warning classes raised by scanpy-loomio."""

from __future__ import annotations

__all__ = ["LoomConcatWarning", "LoomFormatError", "LoomReadWarning", "LossyWriteError", "LossyWriteWarning"]


class LoomFormatError(ValueError):
    """A file is not a loom file this package can read.

    The message names the file, the HDF5 path of the offending object, what was found and what was expected.
    """


class LossyWriteError(ValueError):
    """An element of the AnnData cannot be stored in a loom file exactly.

    The message names the AnnData key. Nothing has been written when it is raised.
    """


class LossyWriteWarning(UserWarning):
    """An element was stored inexactly or left out because the caller allowed it; the message names the key."""


class LoomReadWarning(UserWarning):
    """Something in a file needed interpretation while reading (e.g. names made unique); the message says what."""


class LoomConcatWarning(UserWarning):
    """Concatenating loom files left elements out by anndata's merge rules; the message names them and the fix."""
