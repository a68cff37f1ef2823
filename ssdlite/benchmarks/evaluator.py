"""COCO evaluation time: faster-coco-eval vs pycocotools on the same ground truth and detections.

Timed: ``CocoEvaluator(ground_truth, backend).evaluate(results)`` (index, evaluate, accumulate, summarize) on a
generated ground truth of 300 images and 100 detections per image.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .options import BenchmarkOptions
from .timing import interleaved_latencies_ms

NUM_CATEGORIES = 20
DETECTIONS_NEAR_OBJECTS = 60
RANDOM_DETECTIONS = 40


def measure_evaluator(options: BenchmarkOptions) -> dict[str, dict[str, Any]]:
    """COCO evaluation time: faster-coco-eval vs pycocotools, same ground truth and detections."""
    from ssdlite.evaluation.coco import CocoEvaluator

    ground_truth, results = synthetic_coco(num_images=10 if options.smoke else 300, seed=0)
    evaluators = {
        name: (lambda _, name=name: CocoEvaluator(ground_truth, backend=name).evaluate(results))
        for name in ("pycocotools", "faster")
    }
    seconds = interleaved_latencies_ms(evaluators, [0], rounds=1 if options.smoke else 3, warmup=1)
    return {
        "latency_ms": {"evaluator_pycocotools": seconds["pycocotools"], "evaluator_faster": seconds["faster"]},
        "ratios": {"faster_eval_vs_pycocotools": seconds["faster"] / seconds["pycocotools"]},
        "info": {
            "evaluator": {
                "images": len(ground_truth["images"]),
                "annotations": len(ground_truth["annotations"]),
                "detections": len(results),
                "timed": "CocoEvaluator(ground_truth, backend).evaluate(results): index, evaluate, accumulate, "
                "summarize",
            }
        },
    }


def synthetic_coco(*, num_images: int, seed: int) -> tuple[dict, list[dict]]:
    """A COCO ground truth (20 categories, 1-10 boxes per 640 x 480 image) and 100 detections per image: the
    objects jittered, duplicated and mislabelled, plus random boxes, with random scores."""
    rng = np.random.default_rng(seed)
    categories = [{"id": i, "name": f"class_{i}"} for i in range(1, NUM_CATEGORIES + 1)]
    images, annotations, results = [], [], []
    for image_id in range(1, num_images + 1):
        images.append({"id": image_id, "width": 640, "height": 480, "file_name": f"{image_id}.jpg"})
        count = int(rng.integers(1, 11))
        xy = rng.uniform(0, [560, 400], size=(count, 2))
        wh = rng.uniform(16, 200, size=(count, 2))
        labels = rng.integers(1, NUM_CATEGORIES + 1, size=count)
        for box_xy, box_wh, label in zip(xy, wh, labels):
            annotations.append(
                {"id": len(annotations) + 1, "image_id": image_id, "category_id": int(label), "iscrowd": 0,
                 "bbox": [*map(float, box_xy), *map(float, box_wh)], "area": float(box_wh[0] * box_wh[1])}
            )
        results += _detections(rng, image_id, xy, wh, labels)
    return {"images": images, "annotations": annotations, "categories": categories}, results


def _detections(rng: np.random.Generator, image_id: int, xy: np.ndarray, wh: np.ndarray, labels: np.ndarray
                ) -> list[dict]:
    """60 detections near the objects (jittered, 20 % mislabelled) and 40 random ones, with random scores."""
    picks = rng.integers(0, len(labels), size=DETECTIONS_NEAR_OBJECTS)
    boxes = np.concatenate([xy[picks], wh[picks]], axis=1) + rng.normal(0, 8, size=(DETECTIONS_NEAR_OBJECTS, 4))
    noise = np.concatenate(
        [rng.uniform(0, [560, 400], (RANDOM_DETECTIONS, 2)), rng.uniform(8, 200, (RANDOM_DETECTIONS, 2))], axis=1
    )
    keeps_label = rng.random(DETECTIONS_NEAR_OBJECTS) < 0.8
    detection_labels = np.concatenate([
        np.where(keeps_label, labels[picks], rng.integers(1, NUM_CATEGORIES + 1, DETECTIONS_NEAR_OBJECTS)),
        rng.integers(1, NUM_CATEGORIES + 1, RANDOM_DETECTIONS),
    ])
    results = []
    for box, label, score in zip(np.concatenate([boxes, noise]), detection_labels, rng.random(100)):
        box[2:] = np.maximum(box[2:], 1.0)
        results.append({"image_id": image_id, "category_id": int(label), "bbox": box.round(2).tolist(),
                        "score": round(float(score), 5)})
    return results
