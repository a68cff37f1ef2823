#!/usr/bin/env python
"""``ssdlite-check-dataset`` run from a checkout: check a detection dataset (the command is ssdlite/commands/check_dataset.py)."""

from __future__ import annotations

import sys

from ssdlite.commands import check_dataset


def main(argv: list[str] | None = None) -> int:
    return check_dataset.main(argv, prog="check_dataset.py")


if __name__ == "__main__":
    sys.exit(main())
