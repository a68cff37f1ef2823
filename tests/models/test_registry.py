"""The model registry: presets named by their function, listed by pattern."""

import pytest

from ssdlite.models import SSDLiteConfig, _registry, build_model, list_models, register_model
from tests.models.tiny_models import TINY


def test_presets_are_registered():
    assert {"ssdlite_mobilenet_v2", "ssdlite320_mobilenet_v2", "ssdlite_mobilenet_v1"} <= set(list_models())
    assert build_model.__defaults__ == ("ssdlite_mobilenet_v2",)


def test_register_model_adds_a_name_and_refuses_duplicates(monkeypatch):
    monkeypatch.setattr(_registry, "_model_entrypoints", dict(_registry._model_entrypoints))  # undone after the test

    @register_model
    def ssdlite_mobilenet_v2_test_tiny() -> SSDLiteConfig:
        return SSDLiteConfig(backbone="mobilenet_v2", default_boxes="paper", **TINY)

    assert "ssdlite_mobilenet_v2_test_tiny" in list_models()
    assert build_model("ssdlite_mobilenet_v2_test_tiny").image_size == 64
    with pytest.raises(ValueError, match="already registered"):
        register_model(ssdlite_mobilenet_v2_test_tiny)


def test_unknown_model_name_lists_the_available_ones():
    with pytest.raises(
        ValueError, match=r"unknown model name 'ssd_resnet'; available: .*ssdlite_mobilenet_v2"
    ):
        build_model("ssd_resnet")


def test_list_models_filters_by_a_shell_pattern():
    assert list_models("ssdlite*mobilenet_v2") == ["ssdlite320_mobilenet_v2", "ssdlite_mobilenet_v2"]
    assert list_models("*_v1") == ["ssdlite_mobilenet_v1"]
    assert list_models("resnet*") == []
    assert list_models() == list_models("*")
