"""SSDLite: output shapes, default-box counts and order, head flattening against torchvision."""

import math

import pytest
import torch
from torch import nn
from torchvision.models.detection.ssd import SSDScoringHead

from ssdlite.core.anchors import DefaultBoxConfig, default_boxes
from ssdlite.models import build_model

SIZES = [224, 300, 320, 512, 333]


def _expected_anchor_count(image_size: int, boxes_per_map: list[int]) -> int:
    strides = [16, 32, 64, 128, 256, 512]
    return sum(math.ceil(image_size / s) ** 2 * n for s, n in zip(strides, boxes_per_map))


def _run(model: nn.Module, batch: int = 1) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return model.eval()(torch.randn(batch, 3, model.image_size, model.image_size))


@pytest.mark.parametrize("image_size", SIZES)
@pytest.mark.parametrize(
    ("name", "boxes_per_map"),
    [
        ("ssdlite_mobilenet_v2", [3, 6, 6, 6, 6, 6]),
        ("ssdlite320_mobilenet_v2", [6] * 6),
        ("ssdlite_mobilenet_v1", [3, 6, 6, 6, 6, 6]),
    ],
)
def test_output_shapes_match_anchors_at_width_035(name, boxes_per_map, image_size):
    model = build_model(name, width_mult=0.35, image_size=image_size, num_classes=5)
    outputs = _run(model, batch=2)
    anchors = _expected_anchor_count(image_size, boxes_per_map)
    assert model.anchors.shape == (anchors, 4)
    assert outputs["cls_logits"].shape == (2, anchors, 6)
    assert outputs["box_deltas"].shape == (2, anchors, 4)


@pytest.mark.parametrize(("width_mult", "image_size"), [(0.5, 300), (0.75, 333), (1.0, 224), (1.4, 320)])
def test_output_shapes_at_other_widths(width_mult, image_size):
    model = build_model("ssdlite_mobilenet_v2", width_mult=width_mult, image_size=image_size)
    outputs = _run(model)
    anchors = _expected_anchor_count(image_size, [3, 6, 6, 6, 6, 6])
    assert outputs["cls_logits"].shape == (1, anchors, 91)
    assert outputs["box_deltas"].shape == (1, anchors, 4)
    assert model.anchors.shape == (anchors, 4)


@pytest.mark.parametrize(
    ("name", "image_size", "count"),
    [
        ("ssdlite_mobilenet_v2", 320, 2034),
        ("ssdlite_mobilenet_v2", 300, 1917),
        ("ssdlite320_mobilenet_v2", 320, 3234),
    ],
)
def test_anchor_counts_of_the_presets(name, image_size, count):
    model = build_model(name, width_mult=0.35, image_size=image_size)
    assert model.anchors.shape == (count, 4)


def test_preset_defaults_are_the_paper_coco_model():
    model = build_model("ssdlite_mobilenet_v2", width_mult=0.35)
    assert (model.image_size, model.num_classes, model.anchors.shape[0]) == (320, 90, 2034)
    assert model.feature_sizes == ((20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1))
    torch.testing.assert_close(model.anchors, default_boxes(DefaultBoxConfig.paper(), model.feature_sizes))


def test_head_flattening_equals_torchvision_ssd_head():
    model = build_model("ssdlite_mobilenet_v2", width_mult=0.35, image_size=128, num_classes=4).eval()
    images = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        outputs = model(images)
        maps = model.features(images)
        cls_reference = SSDScoringHead(model.classification_head, 5)(maps)
        box_reference = SSDScoringHead(model.regression_head, 4)(maps)
    torch.testing.assert_close(outputs["cls_logits"], cls_reference)
    torch.testing.assert_close(outputs["box_deltas"], box_reference)


def test_output_row_is_the_anchor_of_that_row():
    """Bias-only head: box delta row r must carry (box index in location, map index, y, x) of anchor r."""
    model = build_model("ssdlite_mobilenet_v2", width_mult=0.35, image_size=96, num_classes=1).eval()
    for map_index, block in enumerate(model.regression_head):
        projection = block[1]
        boxes = projection.out_channels // 4
        nn.init.zeros_(projection.weight)
        projection.bias.data = torch.tensor(
            [[b, map_index, 0, 0] for b in range(boxes)], dtype=torch.float32
        ).flatten()
    deltas = _run(model)["box_deltas"][0]
    expected = []
    for map_index, ((height, width), block) in enumerate(zip(model.feature_sizes, model.regression_head)):
        for _y in range(height):
            for _x in range(width):
                expected += [[b, map_index] for b in range(block[1].out_channels // 4)]
    torch.testing.assert_close(deltas[:, :2], torch.tensor(expected, dtype=torch.float32))
    # anchors: the boxes of one location share its centre; locations are row-major (x moves fastest)
    height, width = model.feature_sizes[0]
    first_map = model.anchors[: height * width * 3].view(height, width, 3, 4)
    centres_x = (torch.arange(width) + 0.5) / width
    centres_y = (torch.arange(height) + 0.5) / height
    torch.testing.assert_close(first_map[..., 0], centres_x.view(1, width, 1).expand(height, width, 3))
    torch.testing.assert_close(first_map[..., 1], centres_y.view(height, 1, 1).expand(height, width, 3))


def test_extra_layers_follow_the_width_multiplier_like_tf():
    model = build_model("ssdlite_mobilenet_v2", width_mult=1.0, image_size=64)
    assert [block[-1][0].out_channels for block in model.extras] == [512, 256, 256, 128]
    model = build_model("ssdlite_mobilenet_v2", width_mult=0.35, image_size=64)
    assert [block[-1][0].out_channels for block in model.extras] == [179, 89, 89, 44]


def test_anchors_are_a_buffer_that_moves_with_the_model_but_not_in_state_dict():
    model = build_model("ssdlite_mobilenet_v2", width_mult=0.35, image_size=96)
    assert "anchors" in dict(model.named_buffers())
    assert "anchors" not in model.state_dict()
    assert model.double().anchors.dtype == torch.float64


def test_smallest_input_is_64():
    model = build_model("ssdlite_mobilenet_v2", width_mult=0.35, image_size=64)
    assert model.feature_sizes[-1] == (1, 1)
    with pytest.raises(ValueError, match=r"image_size must be an integer >= 64.*got 63"):
        build_model("ssdlite_mobilenet_v2", width_mult=0.35, image_size=63)


def test_wrong_input_size_is_a_clear_error():
    model = build_model("ssdlite_mobilenet_v2", width_mult=0.35, image_size=96)
    with pytest.raises(ValueError, match=r"image_size=96.*got \[1, 3, 128, 128\]"):
        model(torch.zeros(1, 3, 128, 128))


def test_training_mode_gradients_reach_backbone_and_head():
    model = build_model("ssdlite320_mobilenet_v2", width_mult=0.35, image_size=64, num_classes=2).train()
    outputs = model(torch.randn(2, 3, 64, 64))
    (outputs["cls_logits"].sum() + outputs["box_deltas"].sum()).backward()
    assert model.backbone.features[0][0].weight.grad.abs().sum() > 0
    assert model.regression_head[-1][1].weight.grad.abs().sum() > 0
