"""Matcher: torchvision's SSDMatcher + box_iou, image by image, as the oracle."""

import torch
from torchvision.models.detection._utils import SSDMatcher
from torchvision.ops import box_convert, box_iou

from ssdlite.core.anchors import DefaultBoxConfig, default_boxes
from ssdlite.core.matcher import match_anchors, match_indices, sanitize_targets

FEATURE_SIZES = ((10, 10), (5, 5), (3, 3), (2, 2), (1, 1), (1, 1))


def anchors() -> torch.Tensor:
    return default_boxes(DefaultBoxConfig.paper(), FEATURE_SIZES)


def padded_targets():
    """Three images: several objects with a padded row in the middle, one tiny object, no objects."""
    boxes = torch.zeros(3, 4, 4)
    labels = torch.zeros(3, 4, dtype=torch.int64)
    boxes[0, 0] = torch.tensor([0.1, 0.1, 0.4, 0.5])
    boxes[0, 1] = torch.tensor([0.7, 0.2, 0.75, 0.24])  # small: best IoU < 0.5, must be forced
    boxes[0, 2] = torch.tensor([0.3, 0.3, 0.9, 0.9])  # padding row (label 0) with a real-looking box
    boxes[0, 3] = torch.tensor([0.05, 0.55, 0.6, 0.95])
    labels[0] = torch.tensor([1, 2, 0, 3])
    boxes[1, 0] = torch.tensor([0.45, 0.45, 0.48, 0.49])  # tiny: forced
    labels[1, 0] = 2
    return boxes, labels


def torchvision_matches(anchors_cxcywh, boxes, labels):
    """Per image: SSDMatcher on the valid rows, mapped back to indices of the padded rows."""
    matcher = SSDMatcher(0.5)
    anchors_xyxy = box_convert(anchors_cxcywh, "cxcywh", "xyxy")
    result = []
    for image_boxes, image_labels in zip(boxes, labels):
        valid_rows = torch.nonzero(image_labels > 0).flatten()
        if valid_rows.numel() == 0:
            result.append(torch.full((anchors_xyxy.shape[0],), -1, dtype=torch.int64))
            continue
        matches = matcher(box_iou(image_boxes[valid_rows], anchors_xyxy))
        result.append(torch.where(matches >= 0, valid_rows[matches.clamp(min=0)], matches))
    return torch.stack(result)


def test_match_indices_equal_torchvision_ssd_matcher():
    boxes, labels = padded_targets()
    expected = torchvision_matches(anchors(), boxes, labels)
    matches = match_indices(anchors(), boxes, labels > 0)
    torch.testing.assert_close(matches, expected)
    # the test exercises what it claims: forced matches below 0.5 and a fully padded image
    best_iou_small = box_iou(boxes[0, 1:2], box_convert(anchors(), "cxcywh", "xyxy")).max()
    assert best_iou_small < 0.5 and (matches[0] == 1).sum() == 1
    assert (matches[1] == 0).sum() == 1
    assert (matches[2] == -1).all()
    assert not (matches == 2).any()  # the padding row never matches


def test_match_indices_equal_torchvision_on_random_batch():
    generator = torch.Generator().manual_seed(0)
    centres = torch.rand(4, 6, 2, generator=generator) * 0.8 + 0.1
    sizes = torch.rand(4, 6, 2, generator=generator) * 0.4 + 0.02
    boxes = box_convert(torch.cat((centres, sizes), -1), "cxcywh", "xyxy").clamp(0, 1)
    labels = torch.randint(1, 5, (4, 6), generator=generator)
    labels[1, 3:] = 0
    labels[2, :] = 0
    labels[3, 0] = 0
    expected = torchvision_matches(anchors(), boxes, labels)
    torch.testing.assert_close(match_indices(anchors(), boxes, labels > 0), expected)


def test_shared_best_anchor_goes_to_later_ground_truth_like_torchvision():
    boxes = torch.tensor([[[0.0, 0.0, 0.04, 0.04], [0.0, 0.0, 0.041, 0.041]]])
    labels = torch.tensor([[1, 2]])
    expected = torchvision_matches(anchors(), boxes, labels)
    matches = match_indices(anchors(), boxes, labels > 0)
    torch.testing.assert_close(matches, expected)
    assert matches[0, 0] == 1 and (matches[0] == 0).sum() == 0  # both are best at anchor 0, the later wins


def test_match_anchors_labels_and_boxes():
    boxes, labels = padded_targets()
    matches = torchvision_matches(anchors(), boxes, labels)
    matched_labels, matched_boxes = match_anchors(anchors(), boxes, labels)
    assert matched_labels.dtype == torch.int64 and matched_labels.shape == (3, anchors().shape[0])
    for image in range(3):
        foreground = matches[image] >= 0
        torch.testing.assert_close(
            matched_labels[image][foreground], labels[image][matches[image][foreground]]
        )
        assert (matched_labels[image][~foreground] == 0).all()
        torch.testing.assert_close(matched_boxes[image][foreground], boxes[image][matches[image][foreground]])
        # background default boxes carry their own box
        anchors_xyxy = box_convert(anchors(), "cxcywh", "xyxy")
        torch.testing.assert_close(matched_boxes[image][~foreground], anchors_xyxy[~foreground])


def test_degenerate_non_finite_and_outside_boxes_never_match():
    boxes = torch.tensor(
        [
            [
                [0.2, 0.2, 0.2, 0.6],  # zero width
                [0.5, 0.5, 0.4, 0.9],  # x2 < x1
                [float("nan"), 0.1, 0.3, 0.3],
                [1.2, 0.1, 1.5, 0.4],  # entirely right of the image
                [0.1, 0.1, float("inf"), 0.5],
            ]
        ]
    )
    labels = torch.tensor([[1, 1, 1, 1, 1]])
    matched_labels, matched_boxes = match_anchors(anchors(), boxes, labels)
    assert (matched_labels == 0).all()
    assert torch.isfinite(matched_boxes).all()


def test_sanitize_clamps_partially_outside_boxes():
    boxes = torch.tensor([[[-0.2, 0.5, 0.5, 1.3], [0.1, 0.1, 0.3, 0.3]]])
    labels = torch.tensor([[2, 0]])
    clean_boxes, clean_labels = sanitize_targets(boxes, labels)
    torch.testing.assert_close(clean_boxes[0, 0], torch.tensor([0.0, 0.5, 0.5, 1.0]))
    torch.testing.assert_close(clean_labels, torch.tensor([[2, 0]]))


def test_batch_without_ground_truth_slots():
    matched_labels, matched_boxes = match_anchors(
        anchors(), torch.zeros(2, 0, 4), torch.zeros(2, 0, dtype=torch.int64)
    )
    assert (matched_labels == 0).all() and matched_boxes.shape == (2, anchors().shape[0], 4)
