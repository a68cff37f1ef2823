#!/usr/bin/env python
"""``ssdlite-eval`` run from a checkout: COCO evaluation of detections or of a model (the command is ssdlite/commands/eval_coco.py)."""

from __future__ import annotations

import sys

from ssdlite.commands import eval_coco


def main(argv: list[str] | None = None) -> int:
    return eval_coco.main(argv, prog="eval_coco.py")


if __name__ == "__main__":
    sys.exit(main())
