"""Lossless AnnData ⇄ loom I/O for scanpy.

``import scanpy_loomio`` adds :func:`scanpy.read_loom_full`, :func:`scanpy.write_loom_full` and the ``adata.loom``
accessor.
"""

from importlib.metadata import PackageNotFoundError, version

from . import conventions
from ._errors import LoomConcatWarning, LoomFormatError, LoomReadWarning, LossyWriteError, LossyWriteWarning
from ._read.lazy import read_loom_lazy
from ._read.reader import read_loom_full
from ._scanpy.default import restore_defaults, use_as_default
from ._scanpy.plugin import install as _install
from ._tools.concat import ConcatReport, concat_loom
from ._tools.inspect import LoomSummary, inspect_loom
from ._tools.migrate import MigrationResult, migrate_path, migrate_source
from ._tools.update import update_loom_full
from ._tools.upgrade import UpgradeResult, upgrade_loom
from ._tools.validate import Problem, ValidationReport, validate_loom
from ._tools.velocity import VelocityReport, add_velocity_layers, split_cell_name
from ._write.writer import write_loom_full

try:
    __version__ = version("scanpy-loomio")
except PackageNotFoundError:  # pragma: no cover - running from a source tree without installing
    __version__ = "0+unknown"

_install()

__all__ = [
    "ConcatReport",
    "LoomConcatWarning",
    "LoomFormatError",
    "LoomReadWarning",
    "LoomSummary",
    "LossyWriteError",
    "LossyWriteWarning",
    "MigrationResult",
    "Problem",
    "UpgradeResult",
    "ValidationReport",
    "VelocityReport",
    "add_velocity_layers",
    "concat_loom",
    "conventions",
    "inspect_loom",
    "migrate_path",
    "migrate_source",
    "read_loom_full",
    "read_loom_lazy",
    "restore_defaults",
    "split_cell_name",
    "update_loom_full",
    "upgrade_loom",
    "use_as_default",
    "validate_loom",
    "write_loom_full",
]
