"""``ssdlite-eval``: COCO evaluation of detections, with a report (metrics.json, per_class_ap.csv, plots).

Results-file mode (detections already written as COCO results)::

    ssdlite-eval --ann GT.json --results DT.json [--backend pycocotools|faster] --out DIR

Checkpoint mode (run a trained model over the images first)::

    ssdlite-eval --ann GT.json --checkpoint MODEL.ckpt --images DIR [--backend faster] --out DIR

Deployed model (the Predictor over the image files; --checkpoint may be any exported file, .onnx, .xml, .tflite,
.ncnn.param, whose backend comes from its name; --backend stays the COCO evaluator)::

    ssdlite-eval --ann GT.json --checkpoint MODEL.onnx --images DIR --model-backend ort --out DIR
    ssdlite-eval --ann GT.json --checkpoint MODEL.ckpt --images DIR --model-backend int8 --calib TRAIN_DIR

From a checkout, ``python tools/eval_coco.py`` is the same command. Prints the COCO summary table and the VOC
AP@0.5; exits 2 with a one-line message on bad input (see ssdlite_runtime/errors.py).
"""

from __future__ import annotations

import argparse
from typing import Any

from ssdlite.evaluation import BACKENDS, evaluate_results_file, format_coco_table, format_voc_lines
from ssdlite_runtime.backends.base import APPLE_ONLY_SUFFIXES, available_backends, file_kind
from ssdlite_runtime.errors import command

PROG = "ssdlite-eval"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ann", required=True, help="COCO ground-truth JSON")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--results", help="COCO results JSON: [{image_id, category_id, bbox, score}, ...]")
    source.add_argument("--checkpoint", help="model checkpoint to run over --images (checkpoint mode)")
    parser.add_argument("--images", help="image directory of the ground truth (checkpoint mode)")
    parser.add_argument("--backend", choices=BACKENDS, default="pycocotools",
                        help="pycocotools (reference) or faster (faster-coco-eval, same numbers)")
    parser.add_argument("--out", default="runs/eval", help="report directory (default: runs/eval)")
    parser.add_argument("--model-backend", choices=available_backends(),
                        help="run the model through the deployment Predictor with this backend (default for an "
                        "exported file: from its name, .onnx -> ort, .xml -> openvino, .tflite, .ncnn.param, ...)")
    parser.add_argument("--calib", metavar="DIR", help="INT8 calibration images (--model-backend int8 with a .ckpt)")
    return parser


def run_results_mode(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate an existing results file and write the report."""
    return evaluate_results_file(args.ann, args.results, out_dir=args.out, backend=args.backend)


def run_checkpoint_mode(args: argparse.Namespace) -> dict[str, Any]:
    """Run the checkpoint over ``args.images``, evaluate its detections and write the report (with detections.json).

    The model runs as in validation during training (``ssdlite.engine.evaluate``): evaluation resize, score
    threshold 0.001, the dataset's own category ids in the results. With --model-backend (or an exported file) it runs
    through the deployment Predictor instead (``ssdlite.deploy.evaluate``), with the same settings.
    """
    exported = file_kind(args.checkpoint) is not None or args.checkpoint.lower().endswith(APPLE_ONLY_SUFFIXES)
    if args.model_backend is not None or exported:
        from ssdlite.deploy.evaluate import evaluate_model_file

        return evaluate_model_file(
            args.checkpoint, annotations=args.ann, images=args.images, out_dir=args.out, backend=args.model_backend,
            evaluator_backend=args.backend, calibration_images=args.calib,
        )
    from ssdlite.engine.evaluate import evaluate_checkpoint

    return evaluate_checkpoint(
        args.checkpoint, annotations=args.ann, images=args.images, out_dir=args.out, backend=args.backend
    )


@command(PROG)
def main(argv: list[str] | None = None, *, prog: str = PROG) -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    if args.checkpoint is not None and args.images is None:
        parser.error("--checkpoint needs --images DIR")
    metrics = run_checkpoint_mode(args) if args.checkpoint is not None else run_results_mode(args)
    print(format_coco_table(metrics))
    print(format_voc_lines(metrics))
    print(f"report written to {args.out}")
    return 0
