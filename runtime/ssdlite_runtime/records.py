"""COCO-style result records: what ``ssdlite-detect --json`` writes, what COCO evaluation reads.

One record per detection, ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``, in the dataset's own
category ids and image pixels (the format of COCO's results files; the full package's evaluation and validation
write the same records).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["predictions_to_coco_results"]

_LISTED_IDS = 10
"""Wrong labels listed in an error at most."""


def predictions_to_coco_results(
    predictions: Sequence[Mapping[str, Any]],
    image_ids: Sequence[int] | Any,
    category_ids: Sequence[int],
    *,
    box_decimals: int = 3,
    score_decimals: int = 5,
) -> list[dict[str, Any]]:
    """Convert per-image detections (postprocess output) to COCO results.

    Args:
        predictions (list[dict]): one dict per image with ``boxes`` (Tensor | ndarray [D, 4], xyxy, absolute
            pixels), ``scores`` [D] and ``labels`` [D] (contiguous training labels 1..K).
        image_ids (Sequence[int] | Tensor[B]): dataset image id of each prediction.
        category_ids (Sequence[int]): ``category_ids[i]`` is the dataset category id of label ``i + 1``.
        box_decimals (int): decimals kept in the boxes (3 = a thousandth of a pixel).
        score_decimals (int): decimals kept in the scores.

    Returns:
        list[dict]: ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}`` with plain Python numbers.

    Raises:
        ValueError: lengths differ, or a label is outside 1..K.
    """
    image_ids = _as_numpy(image_ids).reshape(-1).tolist()
    if len(image_ids) != len(predictions):
        raise ValueError(f"Got {len(predictions)} predictions but {len(image_ids)} image ids; pass one id per image.")
    category_lookup = np.asarray(category_ids, dtype=np.int64).reshape(-1)
    results = []
    for image_id, prediction in zip(image_ids, predictions):
        boxes = _as_numpy(prediction["boxes"]).astype(np.float64).reshape(-1, 4)
        scores = _as_numpy(prediction["scores"]).astype(np.float64).reshape(-1)
        labels = _as_numpy(prediction["labels"]).astype(np.int64).reshape(-1)
        if not len(boxes) == len(scores) == len(labels):
            raise ValueError(
                f"Prediction for image {image_id} has {len(boxes)} boxes, {len(scores)} scores and {len(labels)} "
                "labels; they must have one entry per detection."
            )
        bad_labels = labels[(labels < 1) | (labels > len(category_lookup))]
        if bad_labels.size:
            raise ValueError(
                f"Prediction for image {image_id} has labels {sorted(set(bad_labels.tolist()))[:_LISTED_IDS]} "
                f"outside 1..{len(category_lookup)} (the {len(category_lookup)} category ids given); "
                "labels must be 1..K with 0 = background removed."
            )
        xywh = np.column_stack((boxes[:, :2], boxes[:, 2:] - boxes[:, :2])).round(box_decimals)
        results.extend(
            {"image_id": int(image_id), "category_id": category_id, "bbox": box, "score": score}
            for category_id, box, score in zip(
                category_lookup[labels - 1].tolist(), xywh.tolist(), scores.round(score_decimals).tolist()
            )
        )
    return results


def _as_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch.Tensor (of the full package's validation); this package has no torch
        value = value.detach().cpu().numpy()
    return np.asarray(value)
