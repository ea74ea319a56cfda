"""The ``eeg2bold`` command: argument parsing and output only; the work lives in the packages.

Errors a user can fix (:class:`~eeg2bold.errors.Eeg2BoldError`) are printed as one line with a
non-zero exit status; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Sequence
from typing import Any

from eeg2bold.cli.commands import EXIT_ERROR, EXIT_INTERRUPTED
from eeg2bold.cli.parser import build_parser
from eeg2bold.errors import Eeg2BoldError, Eeg2BoldWarning

_PYTHON_SHOW_WARNING: Any = None
EXIT_BROKEN_PIPE = 141  # what a shell reports for a process ended by SIGPIPE (128 + 13)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot raise again."""
    import os

    with contextlib.suppress(OSError, ValueError, AttributeError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Our own warnings as one line (others as Python shows them)."""
    if issubclass(category, Eeg2BoldWarning):
        print(f"eeg2bold: warning: {message}", file=file or sys.stderr)
    else:
        _PYTHON_SHOW_WARNING(message, category, filename, lineno, file, line)


def main(argv: Sequence[str] | None = None) -> int:
    import warnings

    if warnings.showwarning is not _show_warning:
        global _PYTHON_SHOW_WARNING
        _PYTHON_SHOW_WARNING = warnings.showwarning
        warnings.showwarning = _show_warning
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except BrokenPipeError:  # `eeg2bold trials … | head`: the reader has what it wanted
        _silence_stdout()
        return EXIT_BROKEN_PIPE
    except Eeg2BoldError as exc:
        if args.debug:
            raise
        print(f"eeg2bold: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("eeg2bold: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as exc:
        if args.debug:
            raise
        print(
            f"eeg2bold: internal error: {type(exc).__name__}: {exc} (rerun with --debug for the "
            "traceback and please report it)",
            file=sys.stderr,
        )
        return EXIT_ERROR
