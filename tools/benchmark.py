#!/usr/bin/env python
"""``ssdlite-benchmark`` run from a checkout: the benchmark measurements (the command is ssdlite/commands/benchmark.py)."""

from __future__ import annotations

import sys

from ssdlite.commands import benchmark


def main(argv: list[str] | None = None) -> int:
    return benchmark.main(argv, prog="benchmark.py")


if __name__ == "__main__":
    sys.exit(main())
