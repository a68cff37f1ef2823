"""``ssdlite-export``: a trained SSDLite checkpoint as ONNX (optionally INT8) or TorchScript (--format: every
registered format).

Examples::

    ssdlite-export --checkpoint runs/shapes/best.ckpt --format onnx --out model.onnx
    ssdlite-export --checkpoint best.ckpt --format onnx --out model_nms.onnx --with-nms --dynamic-batch
    ssdlite-export --checkpoint best.ckpt --format onnx --out model_int8.onnx --with-nms --int8 --calib data/val
    ssdlite-export --checkpoint best.ckpt --format torchscript --out model.pt

From a checkout, ``python tools/export.py`` is the same command. ONNX files carry the class names and
preprocessing constants in their metadata; with --with-nms the graph decodes boxes and runs NMS itself (outputs
boxes [B, D, 4] normalised xyxy, scores [B, D], labels [B, D], num_detections [B]; see
ssdlite/deploy/export/onnx.py). Run one with ``ssdlite-detect image IMG --model model.onnx``. Errors are one line
on stderr with exit status 2 (see ssdlite_runtime/errors.py).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ssdlite_runtime.errors import command

PROG = "ssdlite-export"


def build_parser(prog: str = PROG) -> argparse.ArgumentParser:
    from ssdlite.core.postprocess import EVALUATION_POSTPROCESS as defaults
    from ssdlite.deploy.export import DEFAULT_MAX_CALIBRATION_IMAGES, available_formats

    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--checkpoint", required=True, help="training checkpoint (.ckpt) to export")
    parser.add_argument("--format", choices=available_formats(), default="onnx", help="output format")
    parser.add_argument("--out", required=True, help="output file: .onnx, .pt, .xml (OpenVINO), .tflite, .ncnn.param, .mlpackage (Core ML)")
    parser.add_argument("--with-nms", action="store_true", help="ONNX: decoding + NMS inside the graph")
    parser.add_argument("--dynamic-batch", action="store_true", help="ONNX: symbolic batch size (default: 1)")
    parser.add_argument("--int8", action="store_true", help="ONNX: INT8 post-training static quantization")
    parser.add_argument("--calib", metavar="DIR", help="folder of calibration images (needed with --int8)")
    parser.add_argument(
        "--calib-max",
        type=int,
        default=DEFAULT_MAX_CALIBRATION_IMAGES,
        metavar="N",
        help="use at most N calibration images (%(default)s)",
    )
    parser.add_argument(
        "--score-threshold", type=float, default=defaults.score_threshold, help="in-graph NMS default (%(default)s)"
    )
    parser.add_argument("--nms-iou", type=float, default=defaults.nms_iou, help="in-graph NMS IoU default (%(default)s)")
    parser.add_argument(
        "--topk-per-class", type=int, default=defaults.topk_per_class, help="in-graph candidates per class (%(default)s)"
    )
    parser.add_argument(
        "--max-detections", type=int, default=defaults.max_detections, help="in-graph detections per image (%(default)s)"
    )
    return parser


def run(args: argparse.Namespace) -> Path:
    """Exports the checkpoint as asked (:func:`ssdlite.deploy.model_files.export_checkpoint`); the written file."""
    from ssdlite.core.postprocess import PostprocessSettings
    from ssdlite.deploy.model_files import export_checkpoint

    postprocess = PostprocessSettings(
        score_threshold=args.score_threshold,
        nms_iou=args.nms_iou,
        topk_per_class=args.topk_per_class,
        max_detections=args.max_detections,
    )
    return export_checkpoint(
        args.checkpoint,
        args.out,
        format=args.format,
        with_nms=args.with_nms,
        dynamic_batch=args.dynamic_batch,
        int8=args.int8,
        calibration_images=args.calib,
        max_calibration_images=args.calib_max,
        postprocess=postprocess,
    )


@command(PROG)
def main(argv: list[str] | None = None, *, prog: str = PROG) -> int:
    from ssdlite.deploy.export.base import exported_files

    path = run(build_parser(prog).parse_args(argv))
    files = exported_files(path)
    size_mb = sum(file.stat().st_size for file in files) / 1e6
    beside = [file.name for file in files if file != path and path not in file.parents]
    print(f"wrote {path}{' with ' + ', '.join(beside) if beside else ''} ({size_mb:.1f} MB)")
    return 0
