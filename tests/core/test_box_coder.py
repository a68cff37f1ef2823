"""Box coder: torchvision's BoxCoder(weights=(10, 10, 5, 5)) as the oracle."""

import torch
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import box_convert

from ssdlite.core.box_coder import decode, encode


def random_boxes_xyxy(num: int, generator: torch.Generator) -> torch.Tensor:
    centres = torch.rand(num, 2, generator=generator)
    sizes = torch.rand(num, 2, generator=generator) * 0.5 + 0.01
    return box_convert(torch.cat((centres, sizes), dim=1), "cxcywh", "xyxy")


def test_encode_equals_torchvision_box_coder():
    generator = torch.Generator().manual_seed(0)
    boxes, anchors_xyxy = random_boxes_xyxy(500, generator), random_boxes_xyxy(500, generator)
    expected = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0)).encode_single(boxes, anchors_xyxy)
    deltas = encode(boxes, box_convert(anchors_xyxy, "xyxy", "cxcywh"))
    torch.testing.assert_close(deltas, expected, rtol=1e-5, atol=1e-4)


def test_decode_equals_torchvision_box_coder_including_clamp():
    generator = torch.Generator().manual_seed(1)
    anchors_xyxy = random_boxes_xyxy(500, generator)
    deltas = torch.randn(500, 4, generator=generator) * 2
    deltas[:5, 2:] = 100.0  # exp() overflow territory: both clamp at log(1000 / 16)
    expected = BoxCoder(weights=(10.0, 10.0, 5.0, 5.0)).decode_single(deltas, anchors_xyxy)
    boxes = decode(deltas, box_convert(anchors_xyxy, "xyxy", "cxcywh"))
    assert torch.isfinite(boxes).all()
    torch.testing.assert_close(boxes, expected, rtol=1e-5, atol=1e-5)


def test_round_trip_and_broadcast_over_batch():
    generator = torch.Generator().manual_seed(2)
    anchors = box_convert(random_boxes_xyxy(100, generator), "xyxy", "cxcywh")  # [A, 4]
    boxes = torch.stack([random_boxes_xyxy(100, generator) for _ in range(3)])  # [B, A, 4]
    deltas = encode(boxes, anchors)
    assert deltas.shape == (3, 100, 4)
    torch.testing.assert_close(decode(deltas, anchors), boxes, rtol=1e-5, atol=1e-5)
    # Each image of the batch coded on its own gives the same deltas.
    torch.testing.assert_close(deltas[1], encode(boxes[1], anchors))


def test_custom_variances():
    anchors = torch.tensor([[0.5, 0.5, 0.2, 0.4]])
    boxes = torch.tensor([[0.42, 0.34, 0.62, 0.74]])  # centre (0.52, 0.54), size (0.2, 0.4)
    deltas = encode(boxes, anchors, variances=(0.5, 1.0))
    torch.testing.assert_close(deltas, torch.tensor([[0.02 / 0.1, 0.04 / 0.2, 0.0, 0.0]]))
    torch.testing.assert_close(decode(deltas, anchors, variances=(0.5, 1.0)), boxes)
