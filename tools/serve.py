#!/usr/bin/env python
"""``ssdlite-serve`` run from a checkout: an HTTP inference server for an exported model (the command is
runtime/ssdlite_runtime/serve/, which runs exported files without torch)."""

from __future__ import annotations

import sys

from ssdlite_runtime import serve


def main(argv: list[str] | None = None) -> int:
    return serve.main(argv, prog="serve.py")


if __name__ == "__main__":
    sys.exit(main())
