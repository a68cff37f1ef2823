"""COCO AP of the eager, ONNX Runtime and INT8 Predictors of a trained model on a validation set.

Needs --checkpoint and --val (INT8 calibrated on --calib, else the ``train`` folder beside --val); without them
the report says "not measured".
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from .options import BenchmarkOptions
from .timing import use_threads

NOT_MEASURED = "not measured: pass --checkpoint (a trained model) and --val IMAGES_DIR [--val-ann ANN.json]"


def measure_int8_accuracy(options: BenchmarkOptions) -> dict[str, dict[str, Any]]:
    """COCO AP of eager, ONNX Runtime and INT8 on --val (needs --checkpoint); otherwise "not measured"."""
    from ssdlite.deploy.model_files import load_checkpoint_for_inference
    from ssdlite.engine.evaluate import evaluate

    if options.checkpoint is None or options.val_images is None:
        return {"info": {"int8_accuracy": NOT_MEASURED}}
    use_threads(options.threads)
    annotations = options.val_annotations or _default_annotations(options.val_images)
    calibration = options.calibration_images or _default_calibration(options.val_images)
    model, meta = load_checkpoint_for_inference(options.checkpoint)
    names = {"class_names": meta["class_names"], "category_ids": meta["category_ids"]}
    with tempfile.TemporaryDirectory(prefix="ssdlite_benchmark_") as scratch:
        predictors = _predictors(model, names, Path(scratch), calibration=calibration, threads=options.threads)
        metrics = {
            name: evaluate(predictor, annotations=annotations, images=options.val_images, evaluator="faster")
            for name, predictor in predictors.items()
        }
    accuracy = {f"ap_{name}": 100.0 * values["AP"] for name, values in metrics.items()}
    accuracy.update({f"ap50_{name}": 100.0 * values["AP50"] for name, values in metrics.items()})
    accuracy["int8_ap_drop_points"] = accuracy["ap_eager"] - accuracy["ap_int8"]
    return {
        "accuracy": accuracy,
        "info": {
            "int8_accuracy": {
                "checkpoint": str(options.checkpoint),
                "val_images": str(options.val_images),
                "val_annotations": str(annotations),
                "calibration_images": str(calibration),
                "ap": "COCO AP@[.5:.95] x 100 (faster-coco-eval), evaluation postprocessing",
            }
        },
    }


def _predictors(model: Any, names: dict[str, list], scratch: Path, *, calibration: Path, threads: int
                ) -> dict[str, Any]:
    """The eager Predictor and those of its ONNX (NMS in the graph) and INT8 exports, with evaluation settings."""
    from ssdlite.deploy.evaluate import EVALUATION_SETTINGS
    from ssdlite.deploy.export import export_network_onnx, export_onnx
    from ssdlite.deploy.export.int8 import quantize_model
    from ssdlite_runtime.predictor import Predictor

    settings = dict(EVALUATION_SETTINGS, batch_size=1)
    network = export_network_onnx(model, scratch / "network.onnx")
    ort_path = export_onnx(model, scratch / "ort.onnx", with_nms=True, network_onnx=network, **names)
    int8_path = quantize_model(
        model, scratch / "int8.onnx", calibration_images=calibration, with_nms=True, network_onnx=network, **names,
    )
    return {
        "eager": Predictor(model, **names, **settings),
        "ort": Predictor(ort_path, backend="ort", threads=threads, **settings),
        "int8": Predictor(int8_path, backend="int8", threads=threads, **settings),
    }


def _default_annotations(images_dir: Path) -> Path:
    """The make_shapes layout: ROOT/val/*.jpg -> ROOT/annotations/val.json."""
    return images_dir.parent / "annotations" / f"{images_dir.name}.json"


def _default_calibration(images_dir: Path) -> Path:
    train = images_dir.parent / "train"
    return train if train.is_dir() else images_dir
