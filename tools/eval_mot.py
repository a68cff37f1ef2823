#!/usr/bin/env python
"""``ssdlite-eval-mot`` run from a checkout: MOT tracking metrics (the command is ssdlite/commands/eval_mot.py)."""

from __future__ import annotations

import sys

from ssdlite.commands import eval_mot


def main(argv: list[str] | None = None) -> int:
    return eval_mot.main(argv, prog="eval_mot.py")


if __name__ == "__main__":
    sys.exit(main())
