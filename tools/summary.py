#!/usr/bin/env python
"""``ssdlite-summary`` run from a checkout: parameters and multiply-adds, layer by layer (the command is ssdlite/commands/summary.py)."""

from __future__ import annotations

import sys

from ssdlite.commands import summary


def main(argv: list[str] | None = None) -> int:
    return summary.main(argv, prog="summary.py")


if __name__ == "__main__":
    sys.exit(main())
