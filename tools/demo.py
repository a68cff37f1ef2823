#!/usr/bin/env python
"""``ssdlite-demo`` run from a checkout: what make demo runs (the command is ssdlite/commands/demo.py)."""

from __future__ import annotations

import sys

from ssdlite.commands import demo


def main(argv: list[str] | None = None) -> int:
    return demo.main(argv, prog="demo.py")


if __name__ == "__main__":
    sys.exit(main())
