"""ssdlite_runtime/logs.py: what a command shows of the packages' log records, and on which stream."""

from __future__ import annotations

import contextlib
import io
import logging

import pytest

from ssdlite_runtime.errors import run_command
from ssdlite_runtime.logs import PACKAGE_LOGGERS, ConsoleHandler, configure_logging


@pytest.fixture
def package_logger():
    """The ``ssdlite`` logger (the ``ssdlite_runtime`` one too), their handlers and levels put back after the test."""
    packages = [logging.getLogger(name) for name in PACKAGE_LOGGERS]
    saved = [(package.handlers[:], package.level) for package in packages]
    for package in packages:
        package.handlers = []
    yield packages[0]
    for package, (handlers, level) in zip(packages, saved):
        package.handlers, package.level = handlers, level


def test_info_goes_to_stdout_and_warnings_to_stderr_as_plain_lines(package_logger, capsys):
    configure_logging()
    logger = logging.getLogger("ssdlite_runtime.jobs")
    logger.debug("not shown")
    logger.info("wrote 3 detections to d.json")
    logger.warning("skipping a.jpg: truncated\nsecond line")
    logger.error("broken")
    captured = capsys.readouterr()
    assert captured.out == "wrote 3 detections to d.json\n"
    assert captured.err == "warning: skipping a.jpg: truncated\nsecond line\nerror: broken\n"


def test_configuring_twice_adds_one_handler_and_follows_a_replaced_stdout(package_logger):
    configure_logging()
    configure_logging()
    assert sum(isinstance(handler, ConsoleHandler) for handler in package_logger.handlers) == 1
    replaced = io.StringIO()
    with contextlib.redirect_stdout(replaced):
        logging.getLogger("ssdlite.engine.cli").info("run folder: runs/x")
    assert replaced.getvalue() == "run folder: runs/x\n"


def test_every_command_configures_logging_through_the_shared_handler(package_logger, capsys):
    def main() -> None:
        logging.getLogger("ssdlite.data.download").info("would download x")

    assert run_command("tool.py", main) == 0
    assert capsys.readouterr().out == "would download x\n"


def test_nothing_is_shown_unless_a_command_configures_it(package_logger, capsys):
    logging.getLogger("ssdlite_runtime.jobs").info("library use: silent")
    assert capsys.readouterr().out == ""
