#!/usr/bin/env python
"""``ssdlite-convert`` run from a checkout: VOC or YOLO annotations as one COCO json (the command is ssdlite/commands/convert.py)."""

from __future__ import annotations

import sys

from ssdlite.commands import convert


def main(argv: list[str] | None = None) -> int:
    return convert.main(argv, prog="convert.py")


if __name__ == "__main__":
    sys.exit(main())
