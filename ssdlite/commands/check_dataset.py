"""``ssdlite-check-dataset``: counts per class, images without objects, box sizes and every problem (with its
file) of a detection dataset; ``--gallery`` writes a page of the ground truth of a few images per class, each box in
its class's colour, to find wrong labels by eye.

Exit status: 0 when there is no error (warnings allowed), 1 when there are errors, 2 when the check cannot run
(one line on stderr, see ssdlite_runtime/errors.py).

Usage:
    ssdlite-check-dataset --format coco --images data/coco/val2017 \\
        --annotations data/coco/annotations/instances_val2017.json --plot runs/val2017_boxes.png
    ssdlite-check-dataset --format voc --images ../shared/data/raccoon/JPEGImages \\
        --annotations ../shared/data/raccoon/Annotations --fix-report runs/raccoon_problems.json \\
        --gallery runs/raccoon_gallery.html --gallery-per-class 16
    ssdlite-check-dataset --format yolo --images data/mydata/images/train \\
        --annotations data/mydata/labels/train --classes data/mydata/data.yaml

From a checkout, ``python tools/check_dataset.py`` is the same command.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ssdlite.commands import positive_int
from ssdlite.data.annotations import ImageRecord
from ssdlite.data.checks import FORMATS, DatasetReport, check_dataset, plot_box_sizes
from ssdlite.evaluation.gallery import GalleryBox, GalleryImage, class_kinds, write_gallery
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
    parser.add_argument("--gallery", type=Path,
                        help="write an HTML page of the ground truth of a few images per class to this file")
    parser.add_argument("--gallery-per-class", type=positive_int, default=8, metavar="N",
                        help="images per class in the --gallery page (default 8)")
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
    if args.gallery is not None:
        print(f"wrote {write_preview(report, args.gallery, per_class=args.gallery_per_class)}")
    return 1 if report.errors else 0


def write_preview(report: DatasetReport, path: Path, *, per_class: int) -> Path:
    """Writes the ``--gallery`` page: the ground truth of :meth:`DatasetReport.sample_per_class`, each box in its
    class's colour and labelled with its name, crowd and VOC difficult boxes dashed.

    It lives here because it joins two layers that may not import each other (``ssdlite.data``'s records and
    ``ssdlite.evaluation``'s gallery, docs/design.md); the command layer sees both.
    """
    sample = report.sample_per_class(per_class)
    images = [GalleryImage(record.path, _ground_truth(record, report.class_names),
                           caption=record.file_name + ("" if len(record.labels) else ": no objects"))
              for record in sample]
    intro = (f"The ground truth of {len(sample)} of the {report.num_images} images of {report.annotations}: up to "
             f"{per_class} per class and {per_class} without any object, evenly spaced over the images sorted by "
             "name. Each box is drawn in its class's colour (crowd and difficult boxes dashed): look for boxes that "
             "are shifted, too large or too small, for classes swapped, and for objects left unlabelled.")
    return write_gallery(path, images, title=f"{report.format} dataset {report.annotations}: ground truth",
                         kinds=class_kinds(report.class_names), intro=intro)


def _ground_truth(record: ImageRecord, class_names: list[str]) -> list[GalleryBox]:
    """A record's boxes for the gallery: kind and class are the class name."""
    dashed = record.iscrowd if record.difficult is None else record.iscrowd | record.difficult
    boxes = []
    for box, label, faint in zip(record.boxes.tolist(), record.labels.tolist(), dashed.tolist()):
        name = class_names[label - 1]
        boxes.append(GalleryBox(tuple(box), kind=name, class_name=name, text=name, dashed=faint))
    return boxes
