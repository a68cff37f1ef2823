"""Argument types of the commands (``ssdlite-detect``, ``ssdlite-serve`` and ``ssdlite``'s own): each parses and
checks the whole range at parse time, so a value no setting can take (inf, nan, 0 frames) is argparse's one-line
usage error naming the option, exit status 2."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from typing import Any


def whole_number(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None


def real_number(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"must be a finite number, got {value}")
    return number


def checked(parse: Callable[[str], Any], accept: Callable[[Any], bool], requirement: str) -> Callable[[str], Any]:
    """An option type: ``parse``, then the range ``accept`` checks; outside it "must be REQUIREMENT, got VALUE"."""

    def check(value: str) -> Any:
        number = parse(value)
        if not accept(number):
            raise argparse.ArgumentTypeError(f"must be {requirement}, got {value}")
        return number

    return check


positive_int = checked(whole_number, lambda n: n > 0, "a positive number")
unit_interval = checked(real_number, lambda n: 0.0 <= n <= 1.0, "between 0 and 1")


def class_list(value: str) -> list[str]:
    """Comma-separated class names (``--classes person,dog``)."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError("give class names, e.g. --classes person,dog")
    return names


def port(value: str) -> int:
    """A TCP port, 0 for any free one."""
    number = whole_number(value)
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port: {value} (0 = any free port)")
    return number
