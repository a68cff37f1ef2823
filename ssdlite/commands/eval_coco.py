"""``ssdlite-eval``: COCO evaluation of detections, with a report (metrics.json, per_class_ap.csv, plots).

Results-file mode (detections already written as COCO results)::

    ssdlite-eval --ann GT.json --results DT.json [--evaluator pycocotools|faster] --out DIR

Model mode (run a model over the images first): --model takes a training checkpoint, run as validation during
training runs it, or an exported file (.onnx, .xml, .tflite, .ncnn.param), run by the runtime's Predictor with the
backend its name selects; --backend runs any model through the Predictor with that backend (ssdlite-detect's)::

    ssdlite-eval --ann GT.json --model MODEL.ckpt --images DIR [--evaluator faster] --out DIR
    ssdlite-eval --ann GT.json --model MODEL.onnx --images DIR --out DIR
    ssdlite-eval --ann GT.json --model MODEL.ckpt --images DIR --backend int8 --calib TRAIN_DIR --out DIR

The flags of the previous release still work, each with a warning naming its new name: --checkpoint (--model),
--backend pycocotools|faster (--evaluator) and --model-backend (--backend).

Beside the COCO metrics the report shows where the model fails: the confusion matrix (confusion_matrix.csv and .png,
detections scored >= --score-threshold, default 0.25), TIDE's error breakdown (errors.png, and a table printed here),
AP by object size and by objects per image, and, given the images, the error gallery errors.html.

From a checkout, ``python tools/eval_coco.py`` is the same command. Prints the COCO summary table, the VOC AP@0.5
and the error table; exits 2 with a one-line message on bad input (see ssdlite_runtime/errors.py).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ssdlite.commands import unit_interval
from ssdlite.evaluation import BACKENDS as EVALUATORS
from ssdlite.evaluation import evaluate_results_file, format_coco_table, format_voc_lines
from ssdlite.evaluation.confusion import DEFAULT_SCORE_THRESHOLD
from ssdlite_runtime.backends.base import available_backends
from ssdlite_runtime.errors import command

PROG = "ssdlite-eval"


class DeprecatedAlias(argparse.Action):
    """An old flag: stores its value as the new flag does and prints one warning line that names the new flag."""

    def __init__(self, option_strings: Sequence[str], dest: str, *, new_flag: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.new_flag = new_flag

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        warn_deprecated(parser, f"{option_string} {values}", f"{self.new_flag} {values}")
        setattr(namespace, self.dest, values)


class BackendFlag(argparse.Action):
    """--backend: a runtime backend, or (the previous release's meaning, deprecated) the COCO library."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if values in EVALUATORS:
            warn_deprecated(parser, f"--backend {values}", f"--evaluator {values}")
            namespace.evaluator_alias = values
        else:
            namespace.backend = values


def warn_deprecated(parser: argparse.ArgumentParser, old: str, new: str) -> None:
    print(f"{parser.prog}: warning: {old} is deprecated and goes in the next release; use {new}", file=sys.stderr)


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ann", required=True, help="COCO ground-truth JSON")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--results", help="COCO results JSON: [{image_id, category_id, bbox, score}, ...]")
    source.add_argument("--model", metavar="FILE",
                        help="model to run over --images: a training checkpoint or an exported file")
    source.add_argument("--checkpoint", dest="model", metavar="FILE", action=DeprecatedAlias, new_flag="--model",
                        help="deprecated: --model")
    parser.add_argument("--images", help="image directory of the ground truth (needed with --model; with --results "
                        "it adds the error gallery errors.html)")
    parser.add_argument("--evaluator", choices=EVALUATORS, default=None,
                        help="the COCO library: pycocotools (reference, the default) or faster (faster-coco-eval, "
                        "same numbers)")
    backends = available_backends()
    parser.add_argument("--backend", choices=[*backends, *EVALUATORS], metavar="NAME", action=BackendFlag,
                        help=f"run --model through the runtime's Predictor with this backend ({', '.join(backends)}; "
                        "default: a checkpoint as in validation, an exported file by its name: .onnx -> ort, "
                        ".xml -> openvino, ...)")
    parser.add_argument("--model-backend", dest="backend", choices=backends, action=DeprecatedAlias,
                        new_flag="--backend", help="deprecated: --backend")
    parser.add_argument("--calib", metavar="DIR", help="INT8 calibration images (--backend int8 with a checkpoint)")
    parser.add_argument("--score-threshold", type=unit_interval, default=DEFAULT_SCORE_THRESHOLD, metavar="S",
                        help="the lowest score the confusion matrix counts and the error gallery draws (default: "
                        f"{DEFAULT_SCORE_THRESHOLD:g}); AP and the error breakdown use every detection")
    parser.add_argument("--out", default="runs/eval", help="report directory (default: runs/eval)")
    return parser


def parse_arguments(parser: argparse.ArgumentParser, argv: list[str] | None) -> argparse.Namespace:
    """The arguments, with the deprecated --backend pycocotools|faster folded into --evaluator."""
    args = parser.parse_args(argv, namespace=argparse.Namespace(evaluator_alias=None))
    if args.evaluator is not None and args.evaluator_alias not in (None, args.evaluator):
        parser.error(f"--evaluator {args.evaluator} and --backend {args.evaluator_alias} (its old name) disagree; "
                     "give --evaluator only")
    args.evaluator = args.evaluator or args.evaluator_alias or "pycocotools"
    if args.model is not None and args.images is None:
        parser.error("--model needs --images DIR")
    return args


def run_results_mode(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate an existing results file and write the report."""
    return evaluate_results_file(args.ann, args.results, out_dir=args.out, backend=args.evaluator,
                                 images_dir=args.images, score_threshold=args.score_threshold)


def run_model_mode(args: argparse.Namespace) -> dict[str, Any]:
    """Run the model over ``args.images``, evaluate its detections and write the report (with detections.json):
    :func:`ssdlite.engine.evaluate.evaluate`."""
    from ssdlite.engine.evaluate import evaluate

    return evaluate(
        args.model, annotations=args.ann, images=args.images, out_dir=args.out, backend=args.backend,
        evaluator=args.evaluator, calibration_images=args.calib, score_threshold=args.score_threshold,
    )


@command(PROG)
def main(argv: list[str] | None = None, *, prog: str = PROG) -> int:
    args = parse_arguments(build_parser(prog), argv)
    metrics = run_model_mode(args) if args.model is not None else run_results_mode(args)
    print(format_coco_table(metrics))
    print(format_voc_lines(metrics))
    print(metrics["analysis"].lines(metrics))
    out = Path(args.out)
    print(f"confusion matrix: {out / 'confusion_matrix.png'} (score >= {args.score_threshold:g}, IoU >= 0.5)")
    if args.images is not None:
        print(f"error gallery: {out / 'errors.html'}")
    print(f"report written to {args.out}")
    return 0
