"""The ``scanpy-loomio`` command line: a thin layer over the package's public functions.

Every command calls one public function (:func:`~scanpy_loomio.write_loom_full`, :func:`~scanpy_loomio.read_loom_full`,
:func:`~scanpy_loomio.inspect_loom`, :func:`~scanpy_loomio.validate_loom`, :func:`~scanpy_loomio.migrate_path`, …);
no loom format logic lives here. Errors print one line (a traceback only with ``--debug``); the exit status is
0 on success, 1 when the command failed or found errors, 2 for usage errors.

The parts: :mod:`~scanpy_loomio.cli.parser` (the arguments, and the docs' CLI reference),
:mod:`~scanpy_loomio.cli.commands` (one function per command), :mod:`~scanpy_loomio.cli.running` (errors, warnings
and the exit status) and :mod:`~scanpy_loomio.cli.common` (what the commands share).
"""

from scanpy_loomio.cli.parser import build_parser, reference_markdown
from scanpy_loomio.cli.running import main

__all__ = ["build_parser", "main", "reference_markdown"]
