"""Synthetic COCO ground truth + detections for the evaluation tests, and pycocotools run directly as the oracle."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

# Side lengths (pixels) per COCO area bucket: small < 32^2 <= medium < 96^2 <= large.
SIDE_RANGES = {"small": (6.0, 30.0), "medium": (34.0, 90.0), "large": (100.0, 260.0)}


def make_coco_fixture(
    *,
    num_images: int = 60,
    num_classes: int = 5,
    seed: int = 0,
    empty_every: int = 7,
    crowd_every: int = 9,
    max_objects: int = 6,
    false_positives: int = 3,
) -> tuple[dict, list[dict]]:
    """Ground truth and detections with crowd regions, empty images, all area buckets and tied scores.

    Category ids are non-contiguous and one extra category ("unused") has no annotation at all. Detections are
    jittered copies of the ground truth (good and poor IoU), duplicates, wrong classes, detections inside crowd
    regions, detections on images without ground truth and random false positives; scores have 2 decimals, so
    many tie.

    Returns:
        tuple[dict, list[dict]]: COCO ground truth and COCO results.
    """
    rng = np.random.default_rng(seed)
    categories = [{"id": 3 + 4 * k, "name": f"class_{k}"} for k in range(num_classes)]
    categories.append({"id": 99, "name": "unused"})
    category_ids = [c["id"] for c in categories[:num_classes]]
    images, annotations, detections = [], [], []
    buckets = list(SIDE_RANGES)
    for index in range(num_images):
        width, height = int(rng.integers(320, 640)), int(rng.integers(320, 640))
        image_id = 1000 + 3 * index
        images.append({"id": image_id, "width": width, "height": height, "file_name": f"{image_id}.jpg"})
        num_objects = 0 if index % empty_every == 0 else int(rng.integers(1, max_objects + 1))
        for _ in range(num_objects):
            low, high = SIDE_RANGES[buckets[len(annotations) % 3]]
            box_w, box_h = rng.uniform(low, high), rng.uniform(low, high)
            x, y = rng.uniform(0, width - box_w), rng.uniform(0, height - box_h)
            category_id = int(rng.choice(category_ids))
            is_crowd = int(len(annotations) % crowd_every == crowd_every - 1)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": category_id,
                                "bbox": [x, y, box_w, box_h], "area": box_w * box_h, "iscrowd": is_crowd})
            for _ in range(int(rng.integers(0, 4))):
                noise = rng.normal(0, 0.12, 4) * [box_w, box_h, box_w, box_h]
                label = category_id if rng.random() < 0.85 else int(rng.choice(category_ids))
                detections.append({"image_id": image_id, "category_id": label,
                                   "bbox": [x + noise[0], y + noise[1], max(1.0, box_w + noise[2]),
                                            max(1.0, box_h + noise[3])],
                                   "score": round(float(rng.random()), 2)})
        for _ in range(int(rng.integers(0, false_positives + 1))):
            box_w, box_h = rng.uniform(4, width / 2), rng.uniform(4, height / 2)
            detections.append({"image_id": image_id, "category_id": int(rng.choice(category_ids)),
                               "bbox": [rng.uniform(0, width - box_w), rng.uniform(0, height - box_h), box_w, box_h],
                               "score": round(float(rng.random()), 2)})
    return {"images": images, "annotations": annotations, "categories": categories}, detections


def pycocotools_reference(ground_truth: dict, detections: list[dict]) -> COCOeval:
    """COCOeval run the documented way (COCO + loadRes + evaluate/accumulate/summarize), on copies."""
    with contextlib.redirect_stdout(io.StringIO()):
        coco_ground_truth = COCO()
        coco_ground_truth.dataset = copy.deepcopy(ground_truth)
        coco_ground_truth.createIndex()
        coco_eval = COCOeval(coco_ground_truth, coco_ground_truth.loadRes(copy.deepcopy(detections)), "bbox")
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval


CAT, DOG = 1, 2


def hand_built_coco(images, annotations, detections):
    """A COCO set from {image_id: (w, h)}, [(image_id, category, xywh)], [(image_id, category, xywh, score)]."""
    ground_truth = {
        "images": [{"id": i, "width": w, "height": h, "file_name": f"{i}.jpg"} for i, (w, h) in images.items()],
        "annotations": [{"id": n + 1, "image_id": i, "category_id": c, "bbox": list(box), "area": box[2] * box[3],
                         "iscrowd": 0} for n, (i, c, box) in enumerate(annotations)],
        "categories": [{"id": CAT, "name": "cat"}, {"id": DOG, "name": "dog"}],
    }
    results = [{"image_id": i, "category_id": c, "bbox": list(box), "score": s} for i, c, box, s in detections]
    return ground_truth, results
