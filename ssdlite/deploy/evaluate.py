"""COCO evaluation of a Predictor (any backend): the AP of an exported / INT8 model on a dataset.

Unlike validation during training (``ssdlite.engine.evaluate``, which feeds the evaluation transform's batches to
the PyTorch model), this runs the deployment path end to end: images read from disk as uint8 RGB, the Predictor's
preprocessing, its backend and postprocessing. Settings are the evaluation ones (``EVALUATION_POSTPROCESS``: score
0.001, 300 per class and per image), so the AP of eager, ONNX Runtime and INT8 can be compared directly.

An image that cannot be read is scored as in validation: as an image with no detections (its ground truth counts as
missed), named in a warning and in the metrics' ``unreadable_images``.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple

from ssdlite.core.postprocess import EVALUATION_POSTPROCESS
from ssdlite.deploy.predictor import AUTO_BACKEND, Predictor

logger = logging.getLogger(__name__)

EVALUATION_SETTINGS: dict[str, float | int] = asdict(EVALUATION_POSTPROCESS)
"""Predictor keyword arguments for evaluation: the fields of ``ssdlite.core.postprocess.EVALUATION_POSTPROCESS``, the
settings of validation during training and of torchvision's SSDLite."""

__all__ = ["EVALUATION_SETTINGS", "PredictedResults", "evaluate_model_file", "evaluate_predictor",
           "predict_coco_results"]


class PredictedResults(NamedTuple):
    """What :func:`predict_coco_results` returns.

    Attributes:
        results: ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}, ...]`` of the readable images.
        unreadable_images: ``file_name`` of each image that could not be read (no results: scored with no
            detections).
    """

    results: list[dict[str, Any]]
    unreadable_images: list[str]


def predict_coco_results(
    predictor: Predictor, annotations: str | Path | dict, images_dir: str | Path
) -> PredictedResults:
    """Run ``predictor`` on every image of a COCO ground truth and return COCO results.

    An image that cannot be read (missing, truncated, not an image) gets no results and is named in a warning.

    Args:
        predictor: any backend; its ``category_ids`` map labels to the dataset's category ids.
        annotations: COCO ground-truth JSON (path or dict); its ``images[*].file_name`` are read from ``images_dir``.
        images_dir: folder of the images.

    Returns:
        PredictedResults: the results and the file names of the unreadable images.

    Raises:
        FileNotFoundError: the annotation file does not exist.
    """
    from ssdlite.evaluation import unreadable_images_note
    from ssdlite_runtime.image_io import ImageReadError, read_image
    from ssdlite_runtime.records import predictions_to_coco_results

    if not isinstance(annotations, dict):
        path = Path(annotations)
        if not path.is_file():
            raise FileNotFoundError(f"annotation file not found: {path}")
        annotations = json.loads(path.read_text(encoding="utf-8"))
    images_dir = Path(images_dir)
    results: list[dict[str, Any]] = []
    unreadable: list[str] = []
    for entry in annotations["images"]:
        try:
            image = read_image(images_dir / entry["file_name"])
        except ImageReadError as error:
            logger.warning(f"{error}; it is scored as an image with no detections")
            unreadable.append(str(entry["file_name"]))
            continue
        [detections] = predictor.predict(image)
        results.extend(predictions_to_coco_results([detections], [int(entry["id"])], predictor.category_ids))
    if unreadable:
        logger.warning(unreadable_images_note(unreadable))
    return PredictedResults(results, unreadable)


def evaluate_predictor(
    predictor: Predictor,
    annotations: str | Path,
    images_dir: str | Path,
    *,
    evaluator_backend: str = "faster",
) -> dict[str, Any]:
    """COCO metrics (AP, AP50, ..., see ``ssdlite.evaluation.CocoEvaluator.evaluate``, and ``unreadable_images``)
    of ``predictor`` on a dataset.

    Args:
        predictor: a Predictor built with :data:`EVALUATION_SETTINGS` (low threshold) for meaningful AP.
        annotations: COCO ground-truth JSON.
        images_dir: folder of its images.
        evaluator_backend: "pycocotools" or "faster" (faster-coco-eval, same numbers).
    """
    from ssdlite.evaluation.coco import CocoEvaluator

    predicted = predict_coco_results(predictor, annotations, images_dir)
    metrics = CocoEvaluator(annotations, backend=evaluator_backend).evaluate(predicted.results)
    return {**metrics, "unreadable_images": predicted.unreadable_images}


def evaluate_model_file(
    model_path: str | Path,
    *,
    annotations: str | Path,
    images: str | Path,
    out_dir: str | Path,
    backend: str | None = None,
    evaluator_backend: str = "pycocotools",
    calibration_images: str | Path | None = None,
) -> dict[str, Any]:
    """What ``tools/eval_coco.py --checkpoint M --model-backend B`` does: a Predictor over every image, the COCO
    evaluation, and the report (metrics.json, detections.json, per-class AP, PR curve) in ``out_dir``.

    Args:
        model_path: a training checkpoint, or a file exported by ``tools/export.py`` (any format with a backend).
        annotations: COCO ground-truth JSON.
        images: folder of its images.
        out_dir: report folder.
        backend: a registered backend, "eager", "ort", "int8", "openvino", ... (None: from the file's name).
        evaluator_backend: "pycocotools" or "faster".
        calibration_images: INT8 calibration folder, for ``backend="int8"`` with a training checkpoint.

    Returns:
        The metrics dict of ``CocoEvaluator.evaluate``, with ``unreadable_images`` (the file names of the images
        that could not be read, scored with no detections).
    """
    from ssdlite.evaluation import CocoEvaluator, write_report

    backend = backend or AUTO_BACKEND
    options = {"calibration_images": calibration_images} if calibration_images is not None else {}
    predictor = Predictor(model_path, backend=backend, **EVALUATION_SETTINGS, **options)
    evaluator = CocoEvaluator(annotations, backend=evaluator_backend)
    predicted = predict_coco_results(predictor, annotations, images)
    evaluation = evaluator.run(predicted.results)
    metrics = {**evaluation.metrics, "unreadable_images": predicted.unreadable_images}
    write_report(metrics, out_dir, coco_eval=evaluation.coco_eval, detections=predicted.results)
    return metrics
