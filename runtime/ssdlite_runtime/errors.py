"""The top-level error handling every command shares: ``ssdlite-detect`` (:mod:`ssdlite_runtime.detect`) and the
full package's commands (``ssdlite/commands/``: the ``ssdlite-*`` scripts and ``tools/*.py``, ``detect.py``,
``data/download.py``).

A command's ``main`` runs in :func:`run_command` (or under the :func:`command` decorator), which first configures
the packages' logging for the console (:func:`ssdlite_runtime.logs.configure_logging`: progress on stdout, warnings
on stderr), then turns what ``main`` raised into one line on stderr and an exit status:

=============================================  ======  ============================================================
raised by ``main``                             status  on stderr
=============================================  ======  ============================================================
nothing                                        0       nothing (``main`` may return its own status instead)
ValueError, OSError, :class:`SSDLiteError`,    2       ``PROG: error: MESSAGE``, the message on one line
what a check of :func:`expect_errors` accepts
KeyboardInterrupt                              130     ``PROG: interrupted``
SystemExit                                     its     untouched: argparse's usage errors (2), and a command that
                                               own     exits with its own status (e.g. 143 after SIGTERM)
anything else                                  1       ``PROG: error: TYPE: MESSAGE (unexpected; set SSDLITE_DEBUG=1
                                                       for the traceback)``
=============================================  ======  ============================================================

Bad input exits 2 like argparse's usage errors, so a script can tell "asked for something that cannot be done" (2)
from "the program failed" (1). The package's errors already name the file, the value and the fix, so the line is
all a user needs; with ``SSDLITE_DEBUG=1`` in the environment every error is raised again with its traceback.
A package whose libraries raise bad-input errors of their own types adds a check with :func:`expect_errors` (the
full ssdlite package's commands add Lightning's configuration errors).
"""

from __future__ import annotations

import functools
import inspect
import os
import sys
from collections.abc import Callable

from ssdlite_runtime.logs import configure_logging

DEBUG_ENV = "SSDLITE_DEBUG"
"""Environment variable that turns the one-line errors back into tracebacks (any value but "", "0")."""

EXIT_UNEXPECTED = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
"""128 + SIGINT, the shell's status for a command stopped by Ctrl+C."""


class SSDLiteError(Exception):
    """Base of the packages' own errors that are neither a ValueError nor an OSError; reported as bad input."""


EXPECTED_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, SSDLiteError)
"""What a command reports as bad input (FileNotFoundError is an OSError), besides what the checks of
:func:`expect_errors` accept."""

_EXPECTED_CHECKS: list[Callable[[BaseException], bool]] = []


def expect_errors(check: Callable[[BaseException], bool]) -> Callable[[BaseException], bool]:
    """Report the errors ``check`` accepts as bad input too (exit status 2, the message alone); returns ``check``,
    so it serves as a decorator. For a library's own error types that are neither a ValueError nor an OSError."""
    if check not in _EXPECTED_CHECKS:
        _EXPECTED_CHECKS.append(check)
    return check


def one_line(message: object) -> str:
    """``str(message)`` with every run of whitespace (newlines included) collapsed to one space."""
    return " ".join(str(message).split())


def is_expected(error: BaseException) -> bool:
    """Whether ``error`` is bad input (see :data:`EXPECTED_ERRORS` and :func:`expect_errors`) rather than a fault
    of the program."""
    return isinstance(error, EXPECTED_ERRORS) or any(check(error) for check in _EXPECTED_CHECKS)


def error_line(prog: str, error: BaseException) -> str:
    """The line :func:`run_command` prints for ``error``, e.g. ``export.py: error: model file not found: x.onnx``."""
    message = one_line(error)
    if is_expected(error):
        return f"{prog}: error: {message or type(error).__name__}"
    detail = f"{type(error).__name__}: {message}" if message else type(error).__name__
    return f"{prog}: error: {detail} (unexpected; set {DEBUG_ENV}=1 for the traceback)"


def debugging() -> bool:
    """Whether ``SSDLITE_DEBUG`` asks for tracebacks."""
    return os.environ.get(DEBUG_ENV, "").strip() not in ("", "0")


def run_command(prog: str, main: Callable[[], int | None]) -> int:
    """Configures logging, runs ``main()`` and returns the command's exit status (see the module docstring).

    Args:
        prog: the command's name as the user typed it (``"train.py"``), the prefix of the error line.
        main: the command's work; returns None (success) or its own exit status.

    Returns:
        ``main``'s status (None -> 0), 2 for bad input, 130 for Ctrl+C, 1 for an unexpected error.

    Raises:
        SystemExit: whatever ``main`` raised, unchanged.
        BaseException: with ``SSDLITE_DEBUG=1``, any error ``main`` raised, with its traceback.
    """
    configure_logging()
    try:
        status = main()
    except KeyboardInterrupt:
        if debugging():
            raise
        print(f"{prog}: interrupted", file=sys.stderr, flush=True)
        return EXIT_INTERRUPTED
    except Exception as error:  # SystemExit is not an Exception: it passes through untouched
        if debugging():
            raise
        sys.stdout.flush()
        print(error_line(prog, error), file=sys.stderr, flush=True)
        return EXIT_ERROR if is_expected(error) else EXIT_UNEXPECTED
    return 0 if status is None else int(status)


def command(prog: str) -> Callable[[Callable[..., int | None]], Callable[..., int]]:
    """Decorator form of :func:`run_command` for a command's ``main(argv=None)``.

    The decorated function takes a keyword ``prog`` (default: ``prog`` given here), the name of the error lines, and
    hands it on to ``main`` when ``main`` has a ``prog`` parameter (for its usage line), so one ``main`` serves the
    installed command (``ssdlite-export``) and its script in the checkout (``tools/export.py`` passes
    ``prog="export.py"``).

    Example:
        >>> @command("ssdlite-export")
        ... def main(argv: list[str] | None = None, *, prog: str = "ssdlite-export") -> int:
        ...     raise FileNotFoundError("model file not found: x.onnx")
        >>> main([], prog="export.py")  # prints "export.py: error: model file not found: x.onnx" on stderr
        2
    """

    def decorate(main: Callable[..., int | None]) -> Callable[..., int]:
        takes_prog = "prog" in inspect.signature(main).parameters

        @functools.wraps(main)
        def wrapper(*args: object, prog: str = prog, **kwargs: object) -> int:
            if takes_prog:
                kwargs["prog"] = prog
            return run_command(prog, lambda: main(*args, **kwargs))

        return wrapper

    return decorate
