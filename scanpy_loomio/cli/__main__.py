"""``python -m scanpy_loomio.cli``: the ``scanpy-loomio`` command line, as ``python -m scanpy_loomio``."""

import sys

from scanpy_loomio.cli import main

sys.exit(main())
