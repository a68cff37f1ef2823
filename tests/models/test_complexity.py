"""Parameters and multiply-adds against the figures of the MobileNets and MobileNetV2 papers."""

import pytest
import torchvision

from ssdlite.models import build_classifier, build_model
from ssdlite.models.complexity import count_parameters, format_table, profile


def _within(value: float, expected: float, tolerance: float) -> bool:
    return abs(value - expected) <= tolerance * expected


def test_mobilenet_v2_224_matches_torchvision_and_the_paper():
    result = profile(build_classifier("mobilenet_v2"), 224)
    assert (
        result.params == 3_504_872 == torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.meta["num_params"]
    )
    assert _within(result.macs, 300.8e6, 0.01)


def test_mobilenet_v1_224_is_table_1():
    result = profile(build_classifier("mobilenet_v1"), 224)
    assert result.params == 4_231_976
    assert _within(result.macs, 569e6, 0.01)
    first, last = result.layers[0], result.layers[-1]
    assert (first.type_stride, first.filter_shape, first.input_size) == ("Conv / s2", "3x3x3x32", "224x224x3")
    assert (last.type_stride, last.filter_shape, last.input_size) == ("FC", "1024x1000", "1024")
    depthwise = result.layers[1]
    assert (depthwise.type_stride, depthwise.filter_shape, depthwise.input_size) == (
        "Conv dw / s1",
        "3x3x32 dw",
        "112x112x32",
    )
    assert depthwise.macs == 112 * 112 * 32 * 9


@pytest.mark.parametrize(("width_mult", "macs"), [(0.75, 325e6), (0.5, 149e6), (0.25, 41e6)])
def test_mobilenet_v1_width_multiplier_table_6(width_mult, macs):
    assert _within(profile(build_classifier("mobilenet_v1", width_mult=width_mult), 224).macs, macs, 0.01)


@pytest.mark.parametrize(("image_size", "macs"), [(192, 418e6), (160, 290e6), (128, 186e6)])
def test_mobilenet_v1_resolution_table_7(image_size, macs):
    assert _within(profile(build_classifier("mobilenet_v1"), image_size).macs, macs, 0.01)


def test_shallow_mobilenet_v1_table_4():
    result = profile(build_classifier("mobilenet_v1", shallow=True), 224)
    assert _within(result.macs, 307e6, 0.02)
    assert _within(result.params, 2.9e6, 0.02)


def test_ssdlite_mobilenet_v2_320_is_table_6():
    model = build_model("ssdlite_mobilenet_v2", image_size=320, num_classes=90)
    result = profile(model, 320)
    assert model.training  # mode restored
    assert _within(result.params, 4.5e6, 0.05)
    assert _within(result.macs, 0.80e9, 0.05)


def test_params_include_batchnorm_and_table_has_totals():
    model = build_classifier("mobilenet_v1", width_mult=0.25)
    result = profile(model, 128)
    assert result.params == count_parameters(model) > result.layer_params
    table = format_table(result)
    assert "Conv dw / s1" in table and f"{result.params:,}" in table and f"{result.macs:,}" in table
