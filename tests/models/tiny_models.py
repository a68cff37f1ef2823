"""Tiny detectors (width 0.35, 64 px: fast to build) for the registry, builder and checkpoint tests."""

from __future__ import annotations

import torch

from ssdlite.models import SSDLite, build_model

TINY = {"width_mult": 0.35, "image_size": 64}


def tiny_model(name="ssdlite_mobilenet_v2", **overrides) -> SSDLite:
    return build_model(name, **{**TINY, **overrides})


def perturbed_state_dict(model: SSDLite, seed: int) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {
        key: (value + torch.randn(value.shape, generator=generator)) if value.is_floating_point() else value
        for key, value in model.state_dict().items()
    }
