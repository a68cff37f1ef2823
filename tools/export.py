#!/usr/bin/env python
"""``ssdlite-export`` run from a checkout: a checkpoint as ONNX (INT8), TorchScript, ... (the command is ssdlite/commands/export.py)."""

from __future__ import annotations

import sys

from ssdlite.commands import export


def main(argv: list[str] | None = None) -> int:
    return export.main(argv, prog="export.py")


if __name__ == "__main__":
    sys.exit(main())
