"""Running a command: one line per error or warning, and the exit status."""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import TYPE_CHECKING, Any

from scanpy_loomio.cli.common import FAILED, PROG, USAGE, UsageError
from scanpy_loomio.cli.parser import build_parser

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["error_text", "main", "one_line_warnings"]


def one_line_warnings(message: Warning | str, category: type[Warning], *_: Any, **__: Any) -> None:
    """Show a warning as one line on stderr (replaces :func:`warnings.showwarning` while a command runs)."""
    text = " ".join(str(message).split())
    print(f"{PROG}: warning: {text}", file=sys.stderr)


def error_text(err: BaseException) -> str:
    """An error as one line: a file error as ``<file>: <reason>``, anything else as its message."""
    if isinstance(err, OSError) and err.filename is not None and err.strerror:
        return f"{err.filename}: {err.strerror}"
    text = " ".join(str(err).split())
    return text or type(err).__name__


class _UnclosedObjects:
    """Counts HDF5 objects that could not be closed because writing their file failed, instead of showing each.

    On a full disk, anndata's ``write_h5ad`` leaves every dataset of the file open; h5py then reports each failed
    close as an ignored exception (thousands of lines after the one-line error), and HDF5 crashes the interpreter
    when it closes them at exit.
    """

    def __init__(self) -> None:
        self.count = 0
        self.previous = sys.unraisablehook

    def __call__(self, unraisable: Any) -> None:
        if "ObjectID" in repr(unraisable.object) and "write failed" in str(unraisable.exc_value):
            self.count += 1
            return
        self.previous(unraisable)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``scanpy-loomio`` with ``argv`` (default: the command line); returns the exit status.

    A command that failed because HDF5 could not write a file and left objects of it open ends the process
    (``os._exit``) after printing its error: HDF5 would crash while closing them at exit.

    Examples
    --------
    >>> from scanpy_loomio.cli import main
    >>> main(["conventions", "--json"]) == 0  # doctest: +ELLIPSIS
    {...
    True
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.verbose:
        logging.basicConfig(format=f"{PROG}: %(message)s", level=logging.INFO)
    previous = warnings.showwarning
    warnings.showwarning = one_line_warnings
    unclosed = _UnclosedObjects()
    sys.unraisablehook = unclosed
    try:
        return args.handler(args)
    except UsageError as err:
        if args.debug:
            raise
        print(f"{PROG} {args.command}: error: {err}", file=sys.stderr)
        return USAGE
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # the reader of our output went away (`| head`): stop quietly, and keep Python from complaining at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return FAILED
    except Exception as err:  # every failure becomes one line; --debug shows the traceback
        if args.debug:
            raise
        print(f"{PROG} {args.command}: error: {error_text(err)}", file=sys.stderr)
        if unclosed.count:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(FAILED)
        return FAILED
    finally:
        warnings.showwarning = previous
        sys.unraisablehook = unclosed.previous
