"""Sliced inference on small objects in large frames: AP, AP50, AP_small and time per image, full frame vs tiles.

COCO AP, AP50 and AP_small, and the time per image, of the full frame alone and of tiles of several sizes.

The set is generated: 20 frames of 1920 x 1080 with 1 to 30 shapes of 12-40 px each (seed 0; ``ssdlite-make-shapes
--num-train 0 --num-val 20 --width 1920 --height 1080 --object-pixels 12 40 --max-shapes 30``), nearly all of them
COCO "small" (an area under 32 x 32 px), so AP_small is measured on most objects. The model is --checkpoint (a
model trained on the shapes, e.g. runs/demo/last.ckpt; without one, a shapes model with random weights, whose AP
means nothing), exported to ONNX (NMS in the graph) and run by the ONNX Runtime Predictor
with the evaluation postprocessing, batches of 8 views, --threads threads: the full frame alone, then sliced
(``Predictor(slice_size=S)``, overlap 0.2) with tiles of 0.5, 0.75, 1 and 1.5 times the network's input side. A tile
is resized to the network's input as a frame is, so tiles of half the input side show their objects at twice
their size: the tile size that works is the one that brings the objects to the sizes the model learnt. Smoke: one
480 x 270 frame, tiles of the input's side, the model run eager (an export takes longer than the rest).

Time per image: the wall time of detecting the whole set (reading each JPEG, the forward passes of its views, the
merge), over the images, after one image of warm-up; it depends on the machine and its load.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

from .options import BenchmarkOptions
from .timing import use_threads

TILE_SCALES = (0.5, 0.75, 1.0, 1.5)
"""The tile sides measured, as multiples of the network's input side (smoke: 1.0 only)."""
SLICE_OVERLAP = 0.2
FRAMES = {"count": 20, "width": 1920, "height": 1080, "object_pixels": (12, 40), "max_shapes": 30}
SMOKE_FRAMES = {"count": 1, "width": 480, "height": 270, "object_pixels": (12, 40), "max_shapes": 30}
SMALL_AREA = 32 * 32
"""COCO's "small": an area below 32 x 32 pixels."""


def measure_slicing(options: BenchmarkOptions) -> dict[str, dict[str, Any]]:
    """AP, AP50, AP_small and time per image, full frame vs tiles (see the module docstring)."""
    from ssdlite.data.synthetic import SHAPE_CLASSES, make_shapes
    from ssdlite.deploy.model_files import export_for_predictor

    use_threads(options.threads)
    frames = SMOKE_FRAMES if options.smoke else FRAMES
    model, labels, model_name = _model(options, list(SHAPE_CLASSES))
    with tempfile.TemporaryDirectory(prefix="ssdlite_slicing_") as scratch:
        scratch = Path(scratch)
        paths = make_shapes(
            scratch / "frames", num_train=0, num_val=frames["count"], width=frames["width"], height=frames["height"],
            object_pixels=frames["object_pixels"], max_shapes=frames["max_shapes"], seed=0,
        )
        if options.smoke:
            source = {"model_or_path": model, "backend": "eager", **labels}
        else:
            source = {"model_or_path": export_for_predictor(model, "ort", scratch / "model", **labels),
                      "threads": options.threads}
        input_size = int(model.image_size)
        scales = (1.0,) if options.smoke else TILE_SCALES
        slice_sizes = [None] + [int(round(scale * input_size)) for scale in scales]
        results = {_key(size): _run(source, size, paths) for size in slice_sizes}
        ground_truth = json.loads(paths["val_annotations"].read_text())
    areas = [annotation["area"] for annotation in ground_truth["annotations"]]
    accuracy, latency = {}, {}
    for key, result in results.items():
        accuracy.update({f"slicing_ap_{key}": result["AP"], f"slicing_ap50_{key}": result["AP50"],
                         f"slicing_ap_small_{key}": result["AP_small"]})
        latency[f"slicing_{key}_per_image"] = result["ms_per_image"]
    return {
        "accuracy": accuracy,
        "latency_ms": latency,
        "info": {
            "slicing": {
                "model": model_name or "shapes model, random weights (pass --checkpoint for a meaningful AP)",
                "input_size": input_size,
                "frames": f"{frames['count']} generated {frames['width']} x {frames['height']} frames, 1 to "
                f"{frames['max_shapes']} shapes of {frames['object_pixels'][0]}-{frames['object_pixels'][1]} px",
                "objects": len(areas),
                "small_objects": sum(area < SMALL_AREA for area in areas),
                "overlap": SLICE_OVERLAP,
                "tiles_per_image": {key: result["tiles_per_image"] for key, result in results.items()},
                "ap": "COCO AP x 100 (faster-coco-eval), evaluation postprocessing; AP_small: objects under 32 x 32 px",
                "threads": options.threads,
            }
        },
    }


def _model(options: BenchmarkOptions, shape_classes: list[str]) -> tuple[Any, dict[str, list], str | None]:
    """(the model, its class names and category ids, its name): --checkpoint's, or a random shapes model (width
    0.35, 128 px) and None.

    Raises:
        ValueError: a checkpoint whose category ids are not the shapes' (1 to 4).
    """
    import torch

    from ssdlite.deploy.model_files import load_checkpoint_for_inference
    from ssdlite.models import build_model

    shape_ids = list(range(1, len(shape_classes) + 1))
    if options.checkpoint is None:
        torch.manual_seed(0)
        model = build_model("ssdlite_mobilenet_v2", num_classes=len(shape_classes), width_mult=0.35, image_size=128)
        return model.eval(), {"class_names": shape_classes, "category_ids": shape_ids}, None
    model, meta = load_checkpoint_for_inference(options.checkpoint)
    if not set(meta["category_ids"]) <= set(shape_ids):
        raise ValueError(
            f"the slicing measurement runs on the generated shapes (category ids {shape_ids}); --checkpoint "
            f"{options.checkpoint} has category ids {meta['category_ids']}: pass a model trained on the shapes, e.g. "
            "runs/demo/last.ckpt"
        )
    labels = {"class_names": meta["class_names"], "category_ids": meta["category_ids"]}
    return model, labels, str(options.checkpoint)


def _key(slice_size: int | None) -> str:
    return "full_frame" if slice_size is None else f"tiles_{slice_size}"


def _run(source: dict[str, Any], slice_size: int | None, paths: dict[str, Path]) -> dict[str, float]:
    """COCO metrics (x 100) and milliseconds per image of one Predictor (``Predictor(**source)``) over the set."""
    from ssdlite.deploy.evaluate import EVALUATION_SETTINGS, predict_coco_results
    from ssdlite.evaluation.coco import CocoEvaluator
    from ssdlite_runtime.image_io import read_image
    from ssdlite_runtime.predictor import Predictor
    from ssdlite_runtime.slicing import slice_windows

    predictor = Predictor(**source, slice_size=slice_size, slice_overlap=SLICE_OVERLAP, **EVALUATION_SETTINGS)
    first = read_image(next(iter(sorted(paths["val_images"].glob("*.jpg")))))
    predictor.predict(first)  # warm-up
    started = time.perf_counter()
    detections = predict_coco_results(predictor, paths["val_annotations"], paths["val_images"])
    seconds = time.perf_counter() - started
    count = len(json.loads(paths["val_annotations"].read_text())["images"])
    metrics = CocoEvaluator(paths["val_annotations"], backend="faster").run(detections.results).metrics
    tiles = 0 if slice_size is None else len(slice_windows(*first.shape[:2], slice_size, SLICE_OVERLAP))
    return {
        "AP": 100.0 * metrics["AP"],
        "AP50": 100.0 * metrics["AP50"],
        "AP_small": 100.0 * metrics["APs"],
        "ms_per_image": 1000.0 * seconds / count,
        "tiles_per_image": tiles,
    }
