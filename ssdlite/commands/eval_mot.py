"""``ssdlite-eval-mot``: tracking metrics (MOTA, IDF1, ID switches, fragmentations, precision, recall) of MOT
Challenge results against MOT Challenge ground truth, through py-motmetrics (``pip install 'ssdlite[tracking]'``).

Usage:
    ssdlite-eval-mot --gt data/shapes_video/seq_000/gt/gt.txt --results runs/track/seq_000.txt
    ssdlite-eval-mot --gt data/shapes_video --results runs/track --json runs/track/mot.json

Two files: one sequence. Two folders: every sequence GT/<seq>/gt/gt.txt (the layout ``ssdlite-make-shapes --video``
writes) against RESULTS/<seq>.txt (what ``ssdlite-detect video ... --track --mot`` writes), each reported, then
OVERALL over all of them. Boxes match at IoU >= 0.5; a ground-truth line with 0 in column 7 is a don't-care object.
See ssdlite/evaluation/mot.py for the formats. From a checkout, ``python tools/eval_mot.py`` is the same command;
a malformed line exits 2 with the file, the line number and the expected format.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ssdlite.evaluation.mot import IOU_THRESHOLD, evaluate_mot, format_mot_table, write_mot_json
from ssdlite_runtime.errors import command

PROG = "ssdlite-eval-mot"


def parse_args(argv: list[str] | None = None, prog: str = PROG) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gt", required=True, type=Path,
                        help="ground truth: a MOT file, or a folder of <seq>/gt/gt.txt")
    parser.add_argument("--results", required=True, type=Path,
                        help="tracker output: a MOT file, or a folder of <seq>.txt")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the metrics to this JSON file")
    parser.add_argument("--iou", type=float, default=IOU_THRESHOLD,
                        help="least IoU for a result box to match a ground-truth box (default %(default)s)")
    return parser.parse_args(argv)


@command(PROG)
def main(argv: list[str] | None = None, *, prog: str = PROG) -> None:
    args = parse_args(argv, prog)
    evaluation = evaluate_mot(args.gt, args.results, iou_threshold=args.iou)
    print(format_mot_table(evaluation))
    if args.json is not None:
        print(f"metrics written to {write_mot_json(evaluation, args.json)}")
