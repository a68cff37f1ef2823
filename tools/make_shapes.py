#!/usr/bin/env python
"""``ssdlite-make-shapes`` run from a checkout: the synthetic shapes dataset (the command is ssdlite/commands/make_shapes.py)."""

from __future__ import annotations

import sys

from ssdlite.commands import make_shapes


def main(argv: list[str] | None = None) -> int:
    return make_shapes.main(argv, prog="make_shapes.py")


if __name__ == "__main__":
    sys.exit(main())
