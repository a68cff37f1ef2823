#!/usr/bin/env python
"""COCO evaluation of detections, with a report (metrics.json, per_class_ap.csv, plots).

Results-file mode (detections already written as COCO results)::

    tools/eval_coco.py --ann GT.json --results DT.json [--backend pycocotools|faster] --out DIR

Checkpoint mode (run a trained model over the images first)::

    tools/eval_coco.py --ann GT.json --checkpoint MODEL.ckpt --images DIR [--backend faster] --out DIR

Prints the COCO summary table and the VOC AP@0.5; exits 1 with a one-line message on bad input.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ssdlite.evaluation import BACKENDS, evaluate_results_file, format_coco_table, format_voc_lines


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="eval_coco.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ann", required=True, help="COCO ground-truth JSON")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--results", help="COCO results JSON: [{image_id, category_id, bbox, score}, ...]")
    source.add_argument("--checkpoint", help="model checkpoint to run over --images (checkpoint mode)")
    parser.add_argument("--images", help="image directory of the ground truth (checkpoint mode)")
    parser.add_argument("--backend", choices=BACKENDS, default="pycocotools",
                        help="pycocotools (reference) or faster (faster-coco-eval, same numbers)")
    parser.add_argument("--out", default="runs/eval", help="report directory (default: runs/eval)")
    return parser


def run_results_mode(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate an existing results file and write the report."""
    return evaluate_results_file(args.ann, args.results, out_dir=args.out, backend=args.backend)


def run_checkpoint_mode(args: argparse.Namespace) -> dict[str, Any]:
    """Run the checkpoint over ``args.images``, evaluate its detections and write the report (with detections.json).

    Hook for the engine: load the model (``ssdlite.models.factory.load_checkpoint``), predict every image of
    ``args.ann``, convert with ``ssdlite.evaluation.predictions_to_coco_results`` and pass them to
    ``CocoEvaluator(...).run`` and ``write_report(..., detections=results)``, all inside one library function.
    """
    raise NotImplementedError(
        "checkpoint mode (--checkpoint/--images) is not available yet; evaluate a results file with --results."
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.checkpoint is not None and args.images is None:
        parser.error("--checkpoint needs --images DIR")
    try:
        metrics = run_checkpoint_mode(args) if args.checkpoint is not None else run_results_mode(args)
    except (OSError, ValueError, NotImplementedError) as error:
        message = " ".join(str(error).split())
        print(f"{parser.prog}: error: {message}", file=sys.stderr)
        return 1
    print(format_coco_table(metrics))
    print(format_voc_lines(metrics))
    print(f"report written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
