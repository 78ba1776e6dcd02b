"""``python -m scanpy_loomio``: the ``scanpy-loomio`` command line."""

import sys

from .cli import main

sys.exit(main())
