"""``ssdlite-convert``: VOC or YOLO annotations as one COCO json (``python tools/convert.py`` from a checkout).

Usage:
    ssdlite-convert voc2coco --images data/VOCdevkit/VOC2007/JPEGImages \\
        --annotations data/VOCdevkit/VOC2007/Annotations \\
        --split data/VOCdevkit/VOC2007/ImageSets/Main/test.txt --out data/voc2007_test.json
    ssdlite-convert yolo2coco --images data/mydata/images/val --labels data/mydata/labels/val \\
        --classes data/mydata/data.yaml --out data/mydata/val.json
"""

from __future__ import annotations

import argparse
import logging
import warnings
from pathlib import Path

from ssdlite.data.convert import voc_to_coco, yolo_to_coco
from ssdlite_runtime.errors import command

logger = logging.getLogger(__name__)

PROG = "ssdlite-convert"


def parse_args(argv: list[str] | None = None, prog: str = PROG) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    voc = commands.add_parser("voc2coco", help="PASCAL VOC XML -> COCO json")
    voc.add_argument("--images", required=True, type=Path, help="folder of the images (JPEGImages)")
    voc.add_argument("--annotations", required=True, type=Path, help="folder of the <id>.xml files")
    voc.add_argument("--split", type=Path, help="ImageSets/Main/<split>.txt; default: every XML")
    voc.add_argument("--classes", type=Path, help="class names file, one per line (default: sorted union)")
    voc.add_argument("--out", required=True, type=Path, help="COCO json to write")
    yolo = commands.add_parser("yolo2coco", help="YOLO txt -> COCO json")
    yolo.add_argument("--images", required=True, type=Path, help="folder of the images")
    yolo.add_argument("--labels", required=True, type=Path, help="folder of the txt label files")
    yolo.add_argument("--classes", required=True, type=Path, help="names file or dataset YAML with 'names'")
    yolo.add_argument("--out", required=True, type=Path, help="COCO json to write")
    return parser.parse_args(argv)


@command(PROG)
def main(argv: list[str] | None = None, *, prog: str = PROG) -> None:
    args = parse_args(argv, prog)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if args.command == "voc2coco":
                coco = voc_to_coco(args.images, args.annotations, split_file=args.split, class_names=args.classes,
                                   out_file=args.out)
            else:
                coco = yolo_to_coco(args.images, args.labels, classes=args.classes, out_file=args.out)
        finally:  # the warnings come before the error line or the summary
            for warning in caught:
                logger.warning(str(warning.message))
    print(f"wrote {args.out}: {len(coco['images'])} images, {len(coco['annotations'])} boxes, "
          f"{len(coco['categories'])} classes")

