"""Anchor <-> ground-truth assignment (SSD paper, section 2.2 "Matching strategy"), batched over images.

Each default box takes the ground truth it overlaps most if that IoU is >= 0.5; in addition every valid ground
truth is forced onto its best default box, so no object is left without a positive. The same rule as torchvision's
``SSDMatcher`` (a later ground truth wins when two share a best default box, as there), on padded [B, M] targets.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.ops import box_convert, box_iou


def sanitize_targets(gt_boxes: Tensor, gt_labels: Tensor) -> tuple[Tensor, Tensor]:
    """Clamp boxes into the image and turn unusable ones into padding.

    A box is dropped (label set to 0) when any coordinate is non-finite or, after clamping to [0, 1], it has
    x2 <= x1 or y2 <= y1 (degenerate, or entirely outside the image).

    Args:
        gt_boxes (Tensor[B, M, 4]): xyxy normalised.
        gt_labels (Tensor[B, M]): int64, 0 = padding.

    Returns:
        (boxes (Tensor[B, M, 4]) finite and in [0, 1], labels (Tensor[B, M]) with dropped boxes set to 0).
    """
    finite = torch.isfinite(gt_boxes).all(dim=-1)
    boxes = torch.where(finite[..., None], gt_boxes, torch.zeros_like(gt_boxes)).clamp(min=0.0, max=1.0)
    non_degenerate = (boxes[..., 2] > boxes[..., 0]) & (boxes[..., 3] > boxes[..., 1])
    valid = finite & non_degenerate & (gt_labels > 0)
    return boxes, torch.where(valid, gt_labels, torch.zeros_like(gt_labels))


def match_indices(
    anchors: Tensor, gt_boxes: Tensor, gt_valid: Tensor, *, iou_threshold: float = 0.5
) -> Tensor:
    """Index of the ground truth each default box is matched to.

    Args:
        anchors (Tensor[A, 4]): default boxes (cx, cy, w, h) normalised.
        gt_boxes (Tensor[B, M, 4]): xyxy normalised, finite.
        gt_valid (Tensor[B, M]): bool, False for padding / degenerate rows (they never match).
        iou_threshold: minimum IoU of a regular match.

    Returns:
        Tensor[B, A]: int64 index into M, or -1 for background.
    """
    batch_size, num_gt = gt_valid.shape
    num_anchors = anchors.shape[0]
    if num_gt == 0:
        return torch.full((batch_size, num_anchors), -1, dtype=torch.int64, device=anchors.device)
    # torchvision's box_iou is 2-D ([N, 4] x [A, 4]); the anchors are shared by every image, so the ground truths
    # of the whole batch are flattened into one [B * M, 4] call -- no loop over images.
    anchors_xyxy = box_convert(anchors, "cxcywh", "xyxy").to(gt_boxes.dtype)
    iou = box_iou(gt_boxes.reshape(-1, 4), anchors_xyxy).reshape(batch_size, num_gt, num_anchors)
    iou = iou.masked_fill(~gt_valid[..., None], -1.0)  # invalid rows lose every max below

    best_iou, best_gt = iou.max(dim=1)  # [B, A]
    matches = torch.where(best_iou >= iou_threshold, best_gt, torch.full_like(best_gt, -1))

    # Force each valid ground truth onto its best default box. amax makes the later ground truth win when two
    # share a best box, which is what torchvision's in-place `matches[best] = arange(M)` does.
    best_anchor = iou.argmax(dim=2)  # [B, M]
    gt_index = torch.arange(num_gt, device=iou.device).expand(batch_size, num_gt)
    forced = torch.full_like(matches, -1).scatter_reduce(
        1, best_anchor, torch.where(gt_valid, gt_index, torch.full_like(gt_index, -1)), reduce="amax"
    )
    return torch.where(forced >= 0, forced, matches)


def match_anchors(
    anchors: Tensor, gt_boxes: Tensor, gt_labels: Tensor, *, iou_threshold: float = 0.5
) -> tuple[Tensor, Tensor]:
    """Classification and box targets of every default box of every image.

    Targets are sanitised first (:func:`sanitize_targets`): padding (label 0), non-finite and degenerate boxes
    never match; boxes reaching outside the image are clamped to it.

    Args:
        anchors (Tensor[A, 4]): default boxes (cx, cy, w, h) normalised.
        gt_boxes (Tensor[B, M, 4]): xyxy normalised.
        gt_labels (Tensor[B, M]): int64 1..K, 0 = padding.
        iou_threshold: minimum IoU of a regular match.

    Returns:
        matched_labels (Tensor[B, A]): int64, label of the matched ground truth, 0 = background.
        matched_boxes (Tensor[B, A, 4]): xyxy of the matched ground truth; background default boxes carry their
        own box, so encoding them gives finite (zero) deltas.
    """
    if gt_boxes.dim() != 3 or gt_boxes.shape[-1] != 4 or gt_labels.shape != gt_boxes.shape[:2]:
        raise ValueError(
            f"match_anchors expects gt_boxes [B, M, 4] and gt_labels [B, M], got {tuple(gt_boxes.shape)} and "
            f"{tuple(gt_labels.shape)}; pad the targets of a batch to a common M with label 0"
        )
    boxes, labels = sanitize_targets(gt_boxes, gt_labels)
    matches = match_indices(anchors, boxes, labels > 0, iou_threshold=iou_threshold)
    foreground = matches >= 0
    gather_index = matches.clamp(min=0)
    if boxes.shape[1] == 0:  # no ground-truth slots at all: gather needs one row to index
        boxes = boxes.new_zeros(boxes.shape[0], 1, 4)
        labels = labels.new_zeros(labels.shape[0], 1)
    matched_labels = torch.where(foreground, labels.gather(1, gather_index), torch.zeros_like(matches))
    matched_gt_boxes = boxes.gather(1, gather_index[..., None].expand(-1, -1, 4))
    anchors_xyxy = box_convert(anchors, "cxcywh", "xyxy").to(boxes.dtype).expand_as(matched_gt_boxes)
    matched_boxes = torch.where(foreground[..., None], matched_gt_boxes, anchors_xyxy)
    return matched_labels, matched_boxes
