"""EMA of weights, parameter groups without weight decay on norms and biases, and weight transfer for fine-tuning."""

import math

import pytest
import torch
from torch import nn

from ssdlite.engine.ema import ModelEMA
from ssdlite.engine.finetune import freeze_backbone, frozen_block_count, load_compatible_weights
from ssdlite.engine.optim import build_optimizer, parameter_groups
from ssdlite.models import build_model


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))


def test_ema_follows_the_decay_warmup_formula_and_copies_integer_buffers():
    model = small_net()
    ema = ModelEMA(model, decay=0.9, warmup_steps=3.0)
    expected = {name: value.clone() for name, value in model.state_dict().items()}
    for step in range(1, 6):
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.add_(torch.randn_like(parameter))
            model[1].running_mean.add_(1.0)
            model[1].num_batches_tracked += 1
        decay = 0.9 * (1 - math.exp(-step / 3.0))
        for name, value in model.state_dict().items():
            if value.is_floating_point():
                expected[name] = decay * expected[name] + (1 - decay) * value
            else:
                expected[name] = value.clone()
        ema.update(model)
    for name, value in ema.module.state_dict().items():
        torch.testing.assert_close(value, expected[name], msg=name)
    assert int(ema.n_averaged) == 5
    assert not any(parameter.requires_grad for parameter in ema.module.parameters())
    assert set(ema.state_dict()) == {f"module.{name}" for name in model.state_dict()} | {"n_averaged"}


def test_ema_copy_stays_in_eval_mode():
    ema = ModelEMA(small_net())
    ema.train()
    assert not ema.module.training


def test_no_weight_decay_on_batchnorm_and_biases():
    model = build_model("ssdlite_mobilenet_v2", num_classes=3, width_mult=0.35, image_size=128)
    decayed, not_decayed = parameter_groups(model, weight_decay=4e-5)
    names = {id(parameter): name for name, parameter in model.named_parameters()}
    assert decayed["weight_decay"] == 4e-5 and not_decayed["weight_decay"] == 0.0
    assert all(names[id(p)].endswith("weight") and p.ndim == 4 for p in decayed["params"])
    assert all(p.ndim == 1 for p in not_decayed["params"])
    assert any(names[id(p)].endswith("bias") for p in not_decayed["params"])
    assert len(decayed["params"]) + len(not_decayed["params"]) == len(list(model.parameters()))
    for name in ("sgd", "adamw", "rmsprop"):
        optimizer = build_optimizer(name, [decayed, not_decayed], lr=0.01)
        assert [group["weight_decay"] for group in optimizer.param_groups] == [4e-5, 0.0]
    with pytest.raises(ValueError, match="unknown optimizer"):
        build_optimizer("lamb", [decayed], lr=0.01)


def test_weight_decay_overrides_follow_the_longest_module_name_and_reject_unknown_names():
    model = build_model("ssdlite_mobilenet_v2", num_classes=3, width_mult=0.35, image_size=128)
    overrides = {"regression_head": 4e-5, "regression_head.5": 0.0}
    groups = parameter_groups(model, weight_decay=5e-4, overrides=overrides)
    decay_of = {id(p): group["weight_decay"] for group in groups for p in group["params"]}
    assert len(decay_of) == len(list(model.parameters()))
    for name, parameter in model.named_parameters():
        if parameter.ndim < 2:
            expected = 0.0
        elif name.startswith("regression_head.5."):
            expected = 0.0
        elif name.startswith("regression_head."):
            expected = 4e-5
        else:
            expected = 5e-4
        assert decay_of[id(parameter)] == expected, name
    assert sum(1 for name, p in model.named_parameters() if p.ndim >= 2 and name.startswith("regression_head.")) > 2
    optimizer = build_optimizer("sgd", groups, lr=0.01)
    assert sorted(group["weight_decay"] for group in optimizer.param_groups) == [0.0, 4e-5, 5e-4]
    for bad in ({"regresion_head": 4e-5}, {"": 4e-5}, {"regression": 4e-5}):
        with pytest.raises(ValueError, match="no module named .*regression_head"):
            parameter_groups(model, weight_decay=5e-4, overrides=bad)
    # torch's SGD checks only its default decay, not the groups': a negative one would grow the weights silently.
    for decay, overrides in ((-1e-4, None), (float("nan"), None), (5e-4, {"regression_head": -4e-5})):
        with pytest.raises(ValueError, match="weight_decay.* must be a finite number >= 0"):
            parameter_groups(model, weight_decay=decay, overrides=overrides)


def test_a_backbone_learning_rate_factor_scales_the_backbone_groups_only():
    model = build_model("ssdlite_mobilenet_v2", num_classes=3, width_mult=0.35, image_size=128)
    groups = parameter_groups(model, weight_decay=5e-4, lr_factors={"backbone": 0.1})
    optimizer = build_optimizer("sgd", groups, lr=0.02)
    lr_of = {id(p): group["lr"] for group in optimizer.param_groups for p in group["params"]}
    decay_of = {id(p): group["weight_decay"] for group in optimizer.param_groups for p in group["params"]}
    assert len(lr_of) == len(list(model.parameters()))
    for name, parameter in model.named_parameters():
        assert lr_of[id(parameter)] == pytest.approx(0.002 if name.startswith("backbone.") else 0.02), name
        assert decay_of[id(parameter)] == (0.0 if parameter.ndim < 2 else 5e-4), name
    assert all("lr_factor" not in group for group in optimizer.param_groups)
    for bad in ({"backbone": -0.1}, {"backbone": float("inf")}):
        with pytest.raises(ValueError, match="learning-rate factor of backbone must be a finite number >= 0"):
            parameter_groups(model, weight_decay=5e-4, lr_factors=bad)
    with pytest.raises(ValueError, match="learning-rate factors: no module named 'backbones'"):
        parameter_groups(model, weight_decay=5e-4, lr_factors={"backbones": 0.1})


def save_model_file(model, path, class_names):
    torch.save({"model_config": model.config, "state_dict": model.state_dict(), "class_names": class_names,
                "category_ids": list(range(1, len(class_names) + 1))}, path)


def test_init_from_loads_what_fits_and_resets_the_class_head_when_classes_differ(tmp_path):
    source = build_model("ssdlite_mobilenet_v2", num_classes=3, width_mult=0.35, image_size=128)
    save_model_file(source, tmp_path / "source.pth", ["a", "b", "c"])

    same = build_model("ssdlite_mobilenet_v2", num_classes=3, width_mult=0.35, image_size=160)
    transfer = load_compatible_weights(same, tmp_path / "source.pth", class_names=["a", "b", "c"])
    assert not transfer.skipped and not transfer.class_head_reset
    for name, value in same.state_dict().items():
        torch.testing.assert_close(value, source.state_dict()[name])

    renamed = build_model("ssdlite_mobilenet_v2", num_classes=3, width_mult=0.35, image_size=128)
    before = {name: value.clone() for name, value in renamed.state_dict().items()}
    transfer = load_compatible_weights(renamed, tmp_path / "source.pth", class_names=["x", "b", "c"])
    assert transfer.class_head_reset
    assert sorted(transfer.skipped) == sorted(
        name for name in before if name.startswith("classification_head.") and name.split(".")[2] == "1"
    )
    for name, value in renamed.state_dict().items():
        reference = before[name] if name in transfer.skipped else source.state_dict()[name]
        torch.testing.assert_close(value, reference, msg=name)
    assert "class head re-initialised" in transfer.summary()

    more_classes = build_model("ssdlite_mobilenet_v2", num_classes=5, width_mult=0.35, image_size=128)
    transfer = load_compatible_weights(more_classes, tmp_path / "source.pth", class_names=list("abcde"))
    assert transfer.class_head_reset and len(transfer.loaded) == len(before) - len(transfer.skipped)


def test_init_from_a_file_that_fits_nothing_or_is_not_a_model(tmp_path):
    v1 = build_model("ssdlite_mobilenet_v1", num_classes=3, width_mult=0.25, image_size=128)
    save_model_file(v1, tmp_path / "v1.pth", ["a", "b", "c"])
    target = build_model("ssdlite_mobilenet_v2", num_classes=3, width_mult=0.35, image_size=128)
    transfer = load_compatible_weights(target, tmp_path / "v1.pth", class_names=["a", "b", "c"])
    assert transfer.skipped  # a different backbone: most tensors are left as initialised
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="junk.pth"):
        load_compatible_weights(target, tmp_path / "junk.pth")
    with pytest.raises(FileNotFoundError):
        load_compatible_weights(target, tmp_path / "missing.pth")


def test_freeze_backbone():
    model = build_model("ssdlite_mobilenet_v2", num_classes=3, width_mult=0.35, image_size=128)
    frozen = freeze_backbone(model)
    assert frozen == sum(p.numel() for p in model.backbone.parameters())
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.extras.parameters())


@pytest.mark.parametrize(("arch", "stride", "blocks"), [
    ("ssdlite_mobilenet_v2", 2, 2), ("ssdlite_mobilenet_v2", 4, 4), ("ssdlite_mobilenet_v2", 8, 7),
    ("ssdlite_mobilenet_v2", 16, 14), ("ssdlite_mobilenet_v1", 8, 6),
])
def test_frozen_blocks_are_those_up_to_the_stride(arch, stride, blocks):
    model = build_model(arch, num_classes=3, width_mult=0.35, image_size=128)
    assert frozen_block_count(model, stride) == blocks
    # the next block is the first at a larger stride: the blocks counted are exactly those up to it
    stem = model.backbone.features[:blocks](torch.zeros(1, 3, 128, 128))
    assert stem.shape[-1] == 128 // stride
    assert model.backbone.features[: blocks + 1](torch.zeros(1, 3, 128, 128)).shape[-1] == 128 // (2 * stride)


@pytest.mark.parametrize("stride", [3, 32, 64])
def test_a_stride_that_is_no_block_boundary_is_refused(stride):
    model = build_model("ssdlite_mobilenet_v2", num_classes=3, width_mult=0.35, image_size=128)
    with pytest.raises(ValueError, match=r"freeze_backbone_stride=.*\[2, 4, 8, 16\].*freeze_backbone: true"):
        frozen_block_count(model, stride)
