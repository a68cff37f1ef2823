#!/usr/bin/env python
"""``ssdlite-train`` run from a checkout: train an SSDLite detector (the command is ssdlite/commands/train.py)."""

from __future__ import annotations

import sys

from ssdlite.commands import train


def main(argv: list[str] | None = None) -> int:
    return train.main(argv, prog="train.py")


if __name__ == "__main__":
    sys.exit(main())
