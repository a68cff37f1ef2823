"""Default boxes: torchvision's DefaultBoxGenerator as the oracle, TF's ssd_anchor_generator by hand."""

import math

import pytest
import torch
from torchvision.models.detection.anchor_utils import DefaultBoxGenerator
from torchvision.models.detection.image_list import ImageList
from torchvision.ops import box_convert

from ssdlite.core.anchors import DefaultBoxConfig, boxes_per_location, default_boxes

FEATURE_SIZES = {
    320: ((20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)),
    300: ((19, 19), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)),
}


def torchvision_default_boxes(image_size: int, feature_sizes) -> torch.Tensor:
    """torchvision's boxes of ssdlite320_mobilenet_v3_large as (cx, cy, w, h) normalised."""
    generator = DefaultBoxGenerator([[2, 3] for _ in range(6)], min_ratio=0.2, max_ratio=0.95)
    images = ImageList(torch.zeros(1, 3, image_size, image_size), [(image_size, image_size)])
    feature_maps = [torch.zeros(1, 1, h, w) for h, w in feature_sizes]
    boxes_xyxy_pixels = generator(images, feature_maps)[0]
    return box_convert(boxes_xyxy_pixels / image_size, "xyxy", "cxcywh")


@pytest.mark.parametrize("image_size", [320, 300])
def test_torchvision_preset_equals_default_box_generator(image_size):
    feature_sizes = FEATURE_SIZES[image_size]
    expected = torchvision_default_boxes(image_size, feature_sizes)
    boxes = default_boxes(DefaultBoxConfig.torchvision(), feature_sizes)
    assert boxes.shape == expected.shape
    torch.testing.assert_close(boxes, expected, rtol=0, atol=1e-6)


def test_torchvision_preset_counts():
    config = DefaultBoxConfig.torchvision()
    assert boxes_per_location(config) == [6] * 6
    assert default_boxes(config, FEATURE_SIZES[320]).shape == (3234, 4)


@pytest.mark.parametrize(("image_size", "expected_count"), [(320, 2034), (300, 1917)])
def test_paper_preset_counts(image_size, expected_count):
    config = DefaultBoxConfig.paper()
    assert boxes_per_location(config) == [3, 6, 6, 6, 6, 6]
    assert default_boxes(config, FEATURE_SIZES[image_size]).shape == (expected_count, 4)


def test_paper_preset_matches_tf_anchor_definition():
    # TF create_ssd_anchors: scales 0.2 + 0.15 k, then 1.0; box (scale, ratio) -> w = s sqrt(r), h = s / sqrt(r);
    # lowest layer (0.1, 1), (0.2, 2), (0.2, 0.5); other layers ratios 1, 2, 1/2, 3, 1/3 then sqrt(s_k s_k+1).
    boxes = default_boxes(DefaultBoxConfig.paper(), FEATURE_SIZES[320])
    lowest_first_cell = torch.tensor(
        [
            [0.025, 0.025, 0.1, 0.1],
            [0.025, 0.025, 0.2 * math.sqrt(2), 0.2 / math.sqrt(2)],
            [0.025, 0.025, 0.2 / math.sqrt(2), 0.2 * math.sqrt(2)],
        ]
    )
    torch.testing.assert_close(boxes[:3], lowest_first_cell)
    # Row-major over (y, x): the first box of cell (y=1, x=0) comes after the 20 cells of row 0.
    torch.testing.assert_close(boxes[20 * 3, :2], torch.tensor([0.025, 0.075]))

    second_map = boxes[20 * 20 * 3 : 20 * 20 * 3 + 6]
    s = 0.35
    expected_wh = torch.tensor(
        [
            [s, s],
            [s * math.sqrt(2), s / math.sqrt(2)],
            [s / math.sqrt(2), s * math.sqrt(2)],
            [s * math.sqrt(3), s / math.sqrt(3)],
            [s / math.sqrt(3), s * math.sqrt(3)],
            [math.sqrt(0.35 * 0.5), math.sqrt(0.35 * 0.5)],
        ]
    )
    torch.testing.assert_close(second_map[:, 2:], expected_wh)
    torch.testing.assert_close(second_map[:, :2], torch.full((6, 2), 0.05))

    last_map = boxes[-6:]  # 1x1 map, scale 0.95, interpolated sqrt(0.95 * 1.0); not clipped, as in TF
    torch.testing.assert_close(last_map[:, :2], torch.full((6, 2), 0.5))
    torch.testing.assert_close(last_map[0, 2:], torch.tensor([0.95, 0.95]))
    torch.testing.assert_close(last_map[3, 2:], torch.tensor([0.95 * math.sqrt(3), 0.95 / math.sqrt(3)]))
    torch.testing.assert_close(last_map[5, 2:], torch.tensor([math.sqrt(0.95), math.sqrt(0.95)]))


def test_paper_preset_at_300_has_19x19_lowest_map():
    boxes = default_boxes(DefaultBoxConfig.paper(), FEATURE_SIZES[300])
    torch.testing.assert_close(boxes[0, :2], torch.tensor([0.5 / 19, 0.5 / 19]))
    torch.testing.assert_close(boxes[19 * 19 * 3 - 1, :2], torch.tensor([18.5 / 19, 18.5 / 19]))


def test_config_is_hashable_and_results_are_cached_copies():
    assert DefaultBoxConfig.paper() == DefaultBoxConfig.paper()
    assert hash(DefaultBoxConfig.paper()) == hash(DefaultBoxConfig.paper())
    assert DefaultBoxConfig.paper() != DefaultBoxConfig.torchvision()
    first = default_boxes(DefaultBoxConfig.paper(), FEATURE_SIZES[320])
    first.zero_()  # callers may modify their copy without corrupting the cache
    second = default_boxes(DefaultBoxConfig.paper(), FEATURE_SIZES[320])
    assert second.abs().sum() > 0


def test_config_from_json_lists_is_hashable():
    config = DefaultBoxConfig(aspect_ratios=[[1, 2, 0.5]] * 6, reduce_lowest=True)
    assert hash(config) == hash(DefaultBoxConfig(aspect_ratios=((1.0, 2.0, 0.5),) * 6, reduce_lowest=True))
    assert boxes_per_location(config) == [3, 4, 4, 4, 4, 4]


def test_wrong_number_of_feature_sizes_is_a_clear_error():
    with pytest.raises(ValueError, match="6 feature maps"):
        default_boxes(DefaultBoxConfig.paper(), ((20, 20), (10, 10)))


def test_invalid_config_is_rejected():
    with pytest.raises(ValueError, match="min_ratio"):
        DefaultBoxConfig(aspect_ratios=((1.0,), (1.0,)), min_ratio=0.9, max_ratio=0.2)
