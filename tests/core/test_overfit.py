"""Acceptance test: the detector, the loss and the post-processing together learn to find objects.

A tiny SSDLite (MobileNetV2 x0.35, 128x128 input) trained with ``MultiBoxLoss`` on two synthetic images must find
every object with IoU > 0.7, the right class and a score > 0.5, and nothing else at score 0.3. The training is that
of tests/deploy/tiny_detector.py (150 Adam steps, then BatchNorm statistics re-estimated on the two images), done
once per test run for this test and the deploy tests that use the trained model.
"""

import pytest
import torch
from torchvision.ops import box_iou

from ssdlite.core.loss import MultiBoxLoss
from ssdlite.core.postprocess import postprocess_detections
from tests.deploy import tiny_detector as tiny


@pytest.mark.slow  # trains the model unless another test of the run did
def test_tiny_model_overfits_two_synthetic_images():
    model = tiny.overfit_tiny_detector()
    images, gt_boxes, gt_labels = tiny.training_batch()
    with torch.no_grad():
        outputs = model(images)
        losses = MultiBoxLoss()(outputs["cls_logits"], outputs["box_deltas"], model.anchors, gt_boxes, gt_labels)
    # the loss of the trained model in eval mode (0.26 measured; 7.4 untrained)
    assert losses["loss"] < 0.3, f"training did not converge: {losses}"

    image_sizes = torch.tensor([[tiny.IMAGE_SIZE, tiny.IMAGE_SIZE]] * len(images))
    detections = postprocess_detections(
        outputs["cls_logits"], outputs["box_deltas"], model.anchors, image_sizes, score_threshold=0.3
    )
    for image_detections, boxes, labels in zip(detections, gt_boxes, gt_labels):
        valid = labels > 0
        boxes, labels = boxes[valid] * tiny.IMAGE_SIZE, labels[valid]
        # the detections at score 0.3 are exactly the objects, the most confident first
        assert len(image_detections["scores"]) == len(labels)
        iou = box_iou(boxes, image_detections["boxes"])
        best_iou, best = iou.max(dim=1)
        assert (best_iou > 0.7).all(), f"IoU {best_iou.tolist()} for boxes {boxes.tolist()}"
        assert (image_detections["labels"][best] == labels).all()
        assert best.unique().numel() == len(labels)
        assert (image_detections["scores"] > 0.5).all()
