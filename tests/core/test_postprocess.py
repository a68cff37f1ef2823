"""Post-processing: torchvision's SSD.postprocess_detections + GeneralizedRCNNTransform.postprocess as the oracle."""

import pytest
import torch
from torch import nn
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.ssd import SSD
from torchvision.ops import box_convert

from ssdlite.core.anchors import DefaultBoxConfig, default_boxes
from ssdlite.core.postprocess import postprocess_detections

IMAGE_SIZE = 320
FEATURE_SIZES = ((20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1))
ORIGINAL_SIZES = [(480, 640), (300, 200), (320, 320)]  # (h, w)


def torchvision_detections(cls_logits, box_deltas, anchors_cxcywh, *, score, topk, nms_iou, max_detections):
    generator = DefaultBoxGenerator([[2, 3] for _ in range(6)], min_ratio=0.2, max_ratio=0.95)
    ssd = SSD(
        nn.Identity(),
        generator,
        (IMAGE_SIZE, IMAGE_SIZE),
        cls_logits.shape[-1],
        head=nn.Identity(),
        score_thresh=score,
        nms_thresh=nms_iou,
        detections_per_img=max_detections,
        topk_candidates=topk,
    ).eval()
    anchors_pixels = box_convert(anchors_cxcywh, "cxcywh", "xyxy") * IMAGE_SIZE
    batch_size = cls_logits.shape[0]
    network_sizes = [(IMAGE_SIZE, IMAGE_SIZE)] * batch_size
    head_outputs = {"cls_logits": cls_logits, "bbox_regression": box_deltas}
    detections = ssd.postprocess_detections(head_outputs, [anchors_pixels] * batch_size, network_sizes)
    return ssd.transform.postprocess(detections, network_sizes, ORIGINAL_SIZES[:batch_size])


def random_head_outputs(seed, num_anchors, num_columns):
    generator = torch.Generator().manual_seed(seed)
    cls_logits = torch.randn(len(ORIGINAL_SIZES), num_anchors, num_columns, generator=generator) * 3
    box_deltas = torch.randn(len(ORIGINAL_SIZES), num_anchors, 4, generator=generator) * 0.7
    return cls_logits, box_deltas


@pytest.mark.parametrize(
    ("score", "topk", "nms_iou", "max_detections"),
    [(0.001, 300, 0.55, 300), (0.2, 50, 0.45, 40), (0.5, 300, 0.55, 10)],
)
def test_equals_torchvision_postprocess_and_rescale(score, topk, nms_iou, max_detections):
    anchors = default_boxes(DefaultBoxConfig.torchvision(), FEATURE_SIZES)
    cls_logits, box_deltas = random_head_outputs(0, anchors.shape[0], num_columns=4)
    expected = torchvision_detections(
        cls_logits,
        box_deltas,
        anchors,
        score=score,
        topk=topk,
        nms_iou=nms_iou,
        max_detections=max_detections,
    )
    detections = postprocess_detections(
        cls_logits,
        box_deltas,
        anchors,
        torch.tensor(ORIGINAL_SIZES),
        score_threshold=score,
        topk_per_class=topk,
        nms_iou=nms_iou,
        max_detections=max_detections,
    )
    assert len(detections) == len(expected)
    for ours, theirs, (height, width) in zip(detections, expected, ORIGINAL_SIZES):
        assert ours["boxes"].shape[0] > 0
        assert ours["labels"].dtype == torch.int64
        torch.testing.assert_close(ours["labels"], theirs["labels"])
        torch.testing.assert_close(ours["scores"], theirs["scores"])
        torch.testing.assert_close(ours["boxes"], theirs["boxes"], rtol=0, atol=1e-3)
        assert (ours["scores"][:-1] >= ours["scores"][1:]).all()
        assert (ours["boxes"][:, 0::2] <= width).all() and (ours["boxes"][:, 1::2] <= height).all()
        assert (ours["boxes"] >= 0).all()
    if max_detections == 10:
        assert all(len(d["scores"]) == 10 for d in detections)


def test_paper_anchors_and_many_classes():
    anchors = default_boxes(DefaultBoxConfig.paper(), FEATURE_SIZES)
    cls_logits, box_deltas = random_head_outputs(1, anchors.shape[0], num_columns=11)
    expected = torchvision_detections(
        cls_logits, box_deltas, anchors, score=0.05, topk=100, nms_iou=0.55, max_detections=100
    )
    detections = postprocess_detections(
        cls_logits,
        box_deltas,
        anchors,
        torch.tensor(ORIGINAL_SIZES),
        score_threshold=0.05,
        topk_per_class=100,
        max_detections=100,
    )
    for ours, theirs in zip(detections, expected):
        torch.testing.assert_close(ours["labels"], theirs["labels"])
        torch.testing.assert_close(ours["scores"], theirs["scores"])
        torch.testing.assert_close(ours["boxes"], theirs["boxes"], rtol=0, atol=1e-3)


def test_image_without_detections_gets_empty_tensors():
    anchors = default_boxes(DefaultBoxConfig.paper(), FEATURE_SIZES)
    cls_logits = torch.zeros(2, anchors.shape[0], 3)
    cls_logits[:, :, 0] = 20.0  # everything is background...
    cls_logits[1, 7, 2] = 40.0  # ...except one confident box in the second image
    detections = postprocess_detections(
        cls_logits,
        torch.zeros(2, anchors.shape[0], 4),
        anchors,
        torch.tensor([[100, 200], [50, 50]]),
        score_threshold=0.5,
    )
    assert detections[0]["boxes"].shape == (0, 4) and detections[0]["scores"].shape == (0,)
    assert detections[1]["labels"].tolist() == [2]
    expected_box = box_convert(anchors[7:8], "cxcywh", "xyxy").clamp(0, 1) * 50
    torch.testing.assert_close(detections[1]["boxes"], expected_box)


def test_wrong_image_sizes_shape_is_a_clear_error():
    anchors = default_boxes(DefaultBoxConfig.paper(), FEATURE_SIZES)
    with pytest.raises(ValueError, match=r"image_sizes"):
        postprocess_detections(
            torch.zeros(2, anchors.shape[0], 3),
            torch.zeros(2, anchors.shape[0], 4),
            anchors,
            torch.tensor([320, 320]),
        )
