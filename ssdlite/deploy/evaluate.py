"""The detections of a Predictor (any backend) on a COCO dataset, what evaluating an exported / INT8 model scores.

Unlike validation during training (which feeds the evaluation transform's batches to the PyTorch model), this runs
the deployment path end to end: images read from disk as uint8 RGB, the Predictor's preprocessing, its backend and
postprocessing. Settings are the evaluation ones (:data:`EVALUATION_SETTINGS`: score 0.001, 300 per class and per
image), so the AP of eager, ONNX Runtime and INT8 can be compared directly. Scoring them and writing the report is
``ssdlite.engine.evaluate.evaluate``, the one evaluation of any model file.

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
from ssdlite_runtime.predictor import Predictor

logger = logging.getLogger(__name__)

EVALUATION_SETTINGS: dict[str, float | int] = asdict(EVALUATION_POSTPROCESS)
"""Predictor keyword arguments for evaluation: the fields of ``ssdlite.core.postprocess.EVALUATION_POSTPROCESS``, the
settings of validation during training and of torchvision's SSDLite."""

__all__ = ["EVALUATION_SETTINGS", "PredictedResults", "predict_coco_results"]


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
    return PredictedResults(results, unreadable)
