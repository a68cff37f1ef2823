#!/usr/bin/env python
"""``ssdlite-detect`` run from a checkout: detect objects in images, a folder, a video, a camera (the command is ssdlite/commands/detect.py)."""

from __future__ import annotations

import sys

from ssdlite.commands import detect


def main(argv: list[str] | None = None) -> int:
    return detect.main(argv, prog="detect.py")


if __name__ == "__main__":
    sys.exit(main())
