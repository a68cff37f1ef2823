"""Acceptance test: the detector, the loss and the post-processing together learn to find objects.

A tiny SSDLite (MobileNetV2 x0.35, 128x128 input) trained for 300 steps on two synthetic images must
find every object with IoU > 0.7 and the right class.
"""

import time

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from ssdlite.core.loss import MultiBoxLoss
from ssdlite.core.postprocess import postprocess_detections

IMAGE_SIZE = 128
STEPS = 200  # BatchNorm in training mode
FROZEN_BN_STEPS = 100  # then on its running statistics, as evaluation will use them
COLOURS = {1: (230, 40, 40), 2: (40, 90, 230)}  # label 1: red rectangles, label 2: blue circles


def draw_scene(
    objects: list[tuple[int, tuple[int, int, int, int]]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An RGB uint8 image with filled shapes; objects are (label, (x1, y1, x2, y2)) in pixels."""
    image = np.full((IMAGE_SIZE, IMAGE_SIZE, 3), 200, dtype=np.uint8)
    ys, xs = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE]
    for label, (x1, y1, x2, y2) in objects:
        if label == 1:
            inside = (xs >= x1) & (xs < x2) & (ys >= y1) & (ys < y2)
        else:  # ellipse inscribed in the box
            cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
            inside = ((xs + 0.5 - cx) / rx) ** 2 + ((ys + 0.5 - cy) / ry) ** 2 <= 1.0
        image[inside] = COLOURS[label]
    boxes = np.array([box for _, box in objects], dtype=np.float32) / IMAGE_SIZE
    labels = np.array([label for label, _ in objects], dtype=np.int64)
    return image, boxes, labels


def synthetic_batch():
    scenes = [
        [(1, (10, 12, 60, 50)), (2, (70, 60, 118, 108)), (1, (20, 80, 50, 120))],
        [(2, (15, 20, 65, 70)), (1, (75, 10, 115, 90))],
    ]
    drawn = [draw_scene(objects) for objects in scenes]
    images = torch.stack(
        [torch.from_numpy(image).permute(2, 0, 1).float() / 127.5 - 1.0 for image, _, _ in drawn]
    )
    num_slots = max(len(objects) for objects in scenes)
    boxes = torch.zeros(len(scenes), num_slots, 4)
    labels = torch.zeros(len(scenes), num_slots, dtype=torch.int64)
    for index, (_, image_boxes, image_labels) in enumerate(drawn):
        boxes[index, : len(image_labels)] = torch.from_numpy(image_boxes)
        labels[index, : len(image_labels)] = torch.from_numpy(image_labels)
    return images, boxes, labels


@pytest.mark.slow
def test_tiny_model_overfits_two_synthetic_images(single_thread):
    build_model = pytest.importorskip("ssdlite.models").build_model
    torch.manual_seed(0)
    model = build_model("ssdlite_mobilenet_v2", num_classes=2, width_mult=0.35, image_size=IMAGE_SIZE)
    images, gt_boxes, gt_labels = synthetic_batch()
    criterion = MultiBoxLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)

    def train(steps: int, learning_rate: float) -> dict[str, torch.Tensor]:
        for group in optimizer.param_groups:
            group["lr"] = learning_rate
        for _ in range(steps):
            outputs = model(images)
            losses = criterion(
                outputs["cls_logits"], outputs["box_deltas"], model.anchors, gt_boxes, gt_labels
            )
            optimizer.zero_grad()
            losses["loss"].backward()
            optimizer.step()
        return losses

    start = time.perf_counter()
    model.train()
    train(STEPS, 3e-3)
    # Two images make a poor BatchNorm batch (the last maps are 1x1: two values per channel), so the running
    # statistics evaluation uses differ from the batch statistics training saw. Fine-tuning on the running
    # statistics (BN frozen, as before quantisation-aware training) makes evaluation behave as training did.
    model.eval()
    losses = train(FROZEN_BN_STEPS, 5e-4)
    assert time.perf_counter() - start < 120, "overfit loop too slow for the test suite"
    assert losses["loss"] < 0.2, f"training did not converge: {losses}"

    with torch.no_grad():
        outputs = model(images)
    image_sizes = torch.tensor([[IMAGE_SIZE, IMAGE_SIZE]] * len(images))
    detections = postprocess_detections(
        outputs["cls_logits"], outputs["box_deltas"], model.anchors, image_sizes, score_threshold=0.3
    )
    for image_detections, boxes, labels in zip(detections, gt_boxes, gt_labels):
        valid = labels > 0
        boxes, labels = boxes[valid] * IMAGE_SIZE, labels[valid]
        # the most confident detections, one per object, are exactly the objects
        top = slice(0, len(labels))
        iou = box_iou(boxes, image_detections["boxes"][top])
        best_iou, best = iou.max(dim=1)
        assert (best_iou > 0.7).all(), f"IoU {best_iou.tolist()} for boxes {boxes.tolist()}"
        assert (image_detections["labels"][top][best] == labels).all()
        assert best.unique().numel() == len(labels)
        assert (image_detections["scores"][top] > 0.5).all()
