"""Defaults taken from the caller's session, and the environment variables that switch fast paths off.

Progress bars follow scanpy's verbosity (``sc.settings.verbosity >= 2``, outside CI). scanpy is consulted only when
the caller has imported it: importing it here would cost seconds and hundreds of MB in the command line tool and in
workers that never use it, and without it its default verbosity (warnings only) means no progress bars anyway.
"""

from __future__ import annotations

import os
import sys


def progress_default(progress: bool | None) -> bool:
    """``progress`` when given; otherwise whether scanpy's verbosity asks for progress.

    >>> progress_default(True), progress_default(False)
    (True, False)
    """
    if progress is not None:
        return bool(progress)
    scanpy = sys.modules.get("scanpy")
    verbosity = getattr(getattr(scanpy, "settings", None), "verbosity", 1)
    return int(verbosity) >= 2 and os.environ.get("CI") is None


def switched_off(variable: str) -> bool:
    """Whether the environment variable ``variable`` is set to turn something off (``0``, ``false``, ``no``, ``off``).

    >>> import os
    >>> os.environ["SCANPY_LOOMIO_EXAMPLE"] = "Off"
    >>> switched_off("SCANPY_LOOMIO_EXAMPLE"), switched_off("SCANPY_LOOMIO_UNSET")
    (True, False)
    >>> del os.environ["SCANPY_LOOMIO_EXAMPLE"]
    """
    return os.environ.get(variable, "1").strip().lower() in ("0", "false", "no", "off")
