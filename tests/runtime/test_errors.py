"""ssdlite_runtime.errors.expect_errors: a package adds its own bad-input error types to every command's handling
(tests/tools/test_errors.py runs the commands themselves)."""

from __future__ import annotations

import pytest

from ssdlite_runtime import errors


class OptionError(Exception):
    """A library's own bad-input error that is neither a ValueError nor an OSError."""


def fail() -> None:
    raise OptionError("no GPU here")


def test_a_registered_check_makes_an_error_bad_input(monkeypatch, capsys):
    monkeypatch.delenv(errors.DEBUG_ENV, raising=False)
    monkeypatch.setattr(errors, "_EXPECTED_CHECKS", [])
    assert errors.run_command("tool.py", fail) == errors.EXIT_UNEXPECTED
    assert "OptionError: no GPU here (unexpected" in capsys.readouterr().err

    check = errors.expect_errors(lambda error: isinstance(error, OptionError))
    errors.expect_errors(check)  # once is enough
    assert errors._EXPECTED_CHECKS == [check]
    assert errors.run_command("tool.py", fail) == errors.EXIT_ERROR
    assert capsys.readouterr().err == "tool.py: error: no GPU here\n"


def test_the_ssdlite_commands_count_lightnings_misconfiguration_as_bad_input():
    exceptions = pytest.importorskip("lightning.fabric.utilities.exceptions")
    import ssdlite.commands

    assert ssdlite.commands.lightning_misconfiguration in errors._EXPECTED_CHECKS
    assert errors.is_expected(exceptions.MisconfigurationException("no GPU here"))
    assert not errors.is_expected(RuntimeError("a fault of the program"))
