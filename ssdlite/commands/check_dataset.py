"""``ssdlite-check-dataset``: counts per class, images without objects, box sizes and every problem (with its
file) of a detection dataset.

Exit status: 0 when there is no error (warnings allowed), 1 when there are errors, 2 when the check cannot run
(one line on stderr, see ssdlite_runtime/errors.py).

Usage:
    ssdlite-check-dataset --format coco --images data/coco/val2017 \\
        --annotations data/coco/annotations/instances_val2017.json --plot runs/val2017_boxes.png
    ssdlite-check-dataset --format voc --images ../shared/data/raccoon/JPEGImages \\
        --annotations ../shared/data/raccoon/Annotations --fix-report runs/raccoon_problems.json
    ssdlite-check-dataset --format yolo --images data/mydata/images/train \\
        --annotations data/mydata/labels/train --classes data/mydata/data.yaml

From a checkout, ``python tools/check_dataset.py`` is the same command.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ssdlite.data.checks import FORMATS, check_dataset, plot_box_sizes
from ssdlite_runtime.errors import command

PROG = "ssdlite-check-dataset"


def parse_args(argv: list[str] | None = None, prog: str = PROG) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--format", required=True, choices=FORMATS, help="annotation format")
    parser.add_argument("--images", required=True, type=Path, help="folder of the images")
    parser.add_argument("--annotations", required=True, type=Path,
                        help="COCO json, VOC Annotations folder (or the VOC root) or YOLO labels folder")
    parser.add_argument("--classes", type=Path, help="class names file (YOLO: names file or dataset YAML)")
    parser.add_argument("--split", help="VOC only: ImageSets/Main/<split>.txt, or the split's name (default: every XML)")
    parser.add_argument("--fix-report", type=Path, help="write the summary and every problem to this JSON file")
    parser.add_argument("--plot", type=Path, help="write box-size and per-class histograms to this PNG")
    parser.add_argument("--workers", type=int, default=None, help="threads decoding images (default min(8, CPUs))")
    return parser.parse_args(argv)


@command(PROG)
def main(argv: list[str] | None = None, *, prog: str = PROG) -> int:
    args = parse_args(argv, prog)
    report = check_dataset(args.format, args.images, args.annotations, classes=args.classes,
                           split_file=args.split, num_workers=args.workers)
    print(report.summary())
    for problem in report.problems:
        print(problem)
    if args.fix_report is not None:
        print(f"wrote {report.write_json(args.fix_report)}")
    if args.plot is not None:
        print(f"wrote {plot_box_sizes(report, args.plot)}")
    return 1 if report.errors else 0

