"""How the commands show what the packages log: progress on stdout, warnings on stderr, one plain line each.

Both packages, ``ssdlite`` and ``ssdlite_runtime``, report through :mod:`logging`, one logger per module
(``logger = logging.getLogger(__name__)``, all below the ``ssdlite`` or the ``ssdlite_runtime`` logger), and
configure nothing when they are imported: a program that uses them as a library decides what it shows. Every
command (``ssdlite-detect`` here, the ``ssdlite-*`` commands of the full package) configures it once, through
:func:`configure_logging` (called by :func:`ssdlite_runtime.errors.run_command`, which every command's ``main``
runs in), with one handler on each package's logger:

===============  ======  ======================
level            stream  line
===============  ======  ======================
INFO             stdout  ``MESSAGE``
WARNING          stderr  ``warning: MESSAGE``
ERROR, CRITICAL  stderr  ``error: MESSAGE``
===============  ======  ======================

The stream is looked up when a line is written, not when the handler is made, so a ``sys.stdout`` replaced later
(``contextlib.redirect_stdout``, pytest's capture) receives it. Records still propagate to the root logger, so an
application's own handlers (and pytest's ``caplog``) see them as well.
"""

from __future__ import annotations

import logging
import sys

PACKAGE_LOGGERS = ("ssdlite", "ssdlite_runtime")
"""The loggers every module's logger sits below, one per package; those :func:`configure_logging` sets up. (A name,
not an import: this package never imports ``ssdlite``.)"""

_PREFIXES = {logging.WARNING: "warning: ", logging.ERROR: "error: ", logging.CRITICAL: "error: "}


class ConsoleHandler(logging.Handler):
    """Writes INFO (and DEBUG) lines to ``sys.stdout`` and WARNING and above to ``sys.stderr``, flushed at once.

    A WARNING line starts with ``warning: ``, an ERROR or CRITICAL one with ``error: `` (only the first line of a
    message that has several).
    """

    def __init__(self, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.setFormatter(logging.Formatter("%(message)s"))

    def format(self, record: logging.LogRecord) -> str:
        return _PREFIXES.get(record.levelno, "") + super().format(record)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            stream = sys.stderr if record.levelno >= logging.WARNING else sys.stdout
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:
            self.handleError(record)


def configure_logging(level: int = logging.INFO) -> None:
    """Shows the package's records of ``level`` and above on the console (see the module docstring).

    Calling it again (a second command run in the same process) changes the level and adds no second handler.
    """
    for name in PACKAGE_LOGGERS:
        package = logging.getLogger(name)
        package.setLevel(level)
        if not any(isinstance(handler, ConsoleHandler) for handler in package.handlers):
            package.addHandler(ConsoleHandler())
