#!/usr/bin/env python
"""``ssdlite-detect`` run from a checkout: detect objects in images, a folder, a video, a camera (the command is
runtime/ssdlite_runtime/detect.py, which runs exported files without torch)."""

from __future__ import annotations

import sys

from ssdlite_runtime import detect


def main(argv: list[str] | None = None) -> int:
    return detect.main(argv, prog="detect.py")


if __name__ == "__main__":
    sys.exit(main())
