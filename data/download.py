#!/usr/bin/env python
"""``ssdlite-download`` run from a checkout: COCO 2017 / VOC 2007+2012, verified, and ``weights`` (torchvision's
ImageNet MobileNetV2 file into the torch hub cache, verified); the command is ssdlite/commands/download.py."""

from __future__ import annotations

import sys

from ssdlite.commands import download


def main(argv: list[str] | None = None) -> int:
    return download.main(argv, prog="download.py")


if __name__ == "__main__":
    sys.exit(main())
