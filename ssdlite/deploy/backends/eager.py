"""The "eager" backend: PyTorch itself, on a training checkpoint or an in-memory ``SSDLite``.

BatchNorm folded into the convolutions, channels_last memory, ``torch.inference_mode``; on any torch device.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ssdlite.deploy.backends.base import Backend, ModelInfo, RawOutputs, register_backend
from ssdlite.deploy.metadata import model_labels
from ssdlite.deploy.model_files import model_and_labels
from ssdlite.models.fold_bn import fold_batchnorm

__all__ = ["EagerBackend"]


class EagerBackend(Backend):
    """Plain PyTorch: BatchNorm folded into the convolutions, channels_last memory, ``torch.inference_mode``."""

    name = "eager"

    def __init__(
        self,
        model: nn.Module,
        info: ModelInfo,
        *,
        device: str | torch.device = "cpu",
        fold_bn: bool = True,
        channels_last: bool = True,
    ) -> None:
        super().__init__(info)
        self.device = torch.device(device)
        self.fold_bn = fold_bn
        self.channels_last = channels_last
        if fold_bn:
            model = fold_batchnorm(model)  # an eval-mode copy: the caller's model stays as it was
        else:
            model = copy.deepcopy(model)
        model = model.eval().to(self.device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.model = model
        self.info.anchors = model.anchors

    @torch.inference_mode()
    def run(self, batch: np.ndarray) -> RawOutputs:
        # `batch` is an NCHW view of NHWC memory, so from_numpy gives a channels_last tensor without a copy.
        images = torch.from_numpy(batch).to(self.device)
        if not self.channels_last:
            images = images.contiguous()
        outputs = self.model(images)
        return RawOutputs(outputs["cls_logits"], outputs["box_deltas"])

    def describe(self) -> str:
        details = [str(self.device)]
        if self.fold_bn:
            details.append("BN folded")
        if self.channels_last:
            details.append("channels_last")
        return f"eager ({', '.join(details)})"


@register_backend("eager", suffixes=(".ckpt", ".pt", ".pth"))
def load_eager(
    model_or_path: nn.Module | str | Path,
    *,
    device: str | torch.device = "cpu",
    class_names: Sequence[str] | None = None,
    category_ids: Sequence[int] | None = None,
    fold_bn: bool = True,
    channels_last: bool = True,
) -> EagerBackend:
    """A training checkpoint (its class names and category ids unless given) or an ``SSDLite`` module."""
    model, class_names, category_ids = model_and_labels(model_or_path, class_names, category_ids)
    names, ids = model_labels(int(model.num_classes), class_names, category_ids)
    info = ModelInfo(class_names=names, category_ids=ids, image_size=int(model.image_size))
    return EagerBackend(model, info, device=device, fold_bn=fold_bn, channels_last=channels_last)
