"""postprocess_detections runs NMS best first (on the best candidates, more only when needed): same result as one
class-wise NMS over every candidate, including the cases where the first prefix cannot decide an image."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import batched_nms

from ssdlite.core.anchors import DefaultBoxConfig, default_boxes
from ssdlite.core.box_coder import decode
from ssdlite.core.postprocess import postprocess_detections

ANCHORS = default_boxes(DefaultBoxConfig.paper(), ((20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)))


def reference(cls_logits, box_deltas, *, score, topk, nms_iou, max_detections):
    """Per image and class: top-k, threshold; then one batched_nms over all candidates and the best D."""
    results = []
    for logits, deltas in zip(cls_logits, box_deltas):
        scores = F.softmax(logits, dim=-1)[:, 1:]
        boxes = decode(deltas, ANCHORS).clamp(0, 1)
        all_boxes, all_scores, all_labels = [], [], []
        for label in range(scores.shape[1]):
            top, index = scores[:, label].topk(min(topk, scores.shape[0]))
            keep = top > score
            all_boxes.append(boxes[index[keep]])
            all_scores.append(top[keep])
            all_labels.append(torch.full((int(keep.sum()),), label + 1))
        boxes_, scores_, labels_ = torch.cat(all_boxes), torch.cat(all_scores), torch.cat(all_labels)
        kept = batched_nms(boxes_.double(), scores_.double(), labels_, nms_iou)[:max_detections]
        results.append({"boxes": boxes_[kept], "scores": scores_[kept], "labels": labels_[kept]})
    return results


@pytest.mark.parametrize(
    ("num_columns", "logit_scale", "score", "topk", "nms_iou", "max_detections"),
    [
        (31, 1.0, 0.001, 300, 0.55, 300),  # many candidates, the first prefix decides
        (2, 1.0, 0.001, 2000, 0.3, 300),  # heavy suppression: the prefix grows until every image is decided
        (3, 3.0, 0.001, 5, 0.5, 300),  # fewer candidates than max_detections
        (5, 3.0, 0.2, 50, 0.45, 7),
    ],
)
def test_best_first_nms_equals_nms_over_all_candidates(num_columns, logit_scale, score, topk, nms_iou, max_detections):
    generator = torch.Generator().manual_seed(num_columns)
    cls_logits = torch.randn(3, ANCHORS.shape[0], num_columns, generator=generator) * logit_scale
    box_deltas = torch.randn(3, ANCHORS.shape[0], 4, generator=generator) * 0.5
    cls_logits[1] -= 10 * (torch.arange(num_columns) > 0)  # image 1: (almost) nothing but background
    settings = dict(score=score, topk=topk, nms_iou=nms_iou, max_detections=max_detections)
    expected = reference(cls_logits, box_deltas, **settings)
    detections = postprocess_detections(
        cls_logits,
        box_deltas,
        ANCHORS,
        torch.ones(3, 2, dtype=torch.int64),
        score_threshold=score,
        topk_per_class=topk,
        nms_iou=nms_iou,
        max_detections=max_detections,
    )
    for ours, theirs in zip(detections, expected):
        torch.testing.assert_close(ours["scores"], theirs["scores"])
        torch.testing.assert_close(ours["labels"], theirs["labels"])
        torch.testing.assert_close(ours["boxes"], theirs["boxes"])
