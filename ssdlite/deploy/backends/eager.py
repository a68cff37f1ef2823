"""The "eager" backend: PyTorch itself, on a training checkpoint or an in-memory ``SSDLite``.

BatchNorm folded into the convolutions, channels_last memory, ``torch.inference_mode``; on any torch device. It
decodes and runs NMS itself, with ``ssdlite.core.postprocess`` on the model's device (the function validation
uses), and hands the Predictor detections.

``ssdlite_runtime``'s registry learns of this module from the entry point ``eager`` of the root pyproject.toml,
which names :data:`ssdlite.deploy.backends.EAGER` (the suffixes, and what to install without torch);
:func:`load_eager` is the loader it calls.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ssdlite.core.postprocess import PostprocessSettings, postprocess_detections
from ssdlite.deploy.metadata import model_info
from ssdlite.deploy.model_files import model_and_labels
from ssdlite.models.fold_bn import fold_batchnorm
from ssdlite_runtime.backends.base import Backend, Detections
from ssdlite_runtime.metadata import ModelInfo
from ssdlite_runtime.postprocess import EVALUATION_POSTPROCESS

__all__ = ["EagerBackend", "load_eager"]


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
        self.settings = EVALUATION_POSTPROCESS

    def configure_postprocess(self, settings: PostprocessSettings) -> None:
        self.settings = settings

    @torch.inference_mode()
    def run(self, batch: np.ndarray) -> list[Detections]:
        # `batch` is an NCHW view of NHWC memory, so from_numpy gives a channels_last tensor without a copy.
        images = torch.from_numpy(batch).to(self.device)
        if not self.channels_last:
            images = images.contiguous()
        outputs = self.model(images)
        unit_sizes = torch.ones(len(batch), 2, dtype=torch.int64, device=self.device)  # boxes stay in [0, 1]
        results = postprocess_detections(
            outputs["cls_logits"].float(),
            outputs["box_deltas"].float(),
            self.model.anchors,
            unit_sizes,
            **asdict(self.settings),
        )
        return [{key: value.cpu().numpy() for key, value in result.items()} for result in results]

    def describe(self) -> str:
        details = [str(self.device)]
        if self.fold_bn:
            details.append("BN folded")
        if self.channels_last:
            details.append("channels_last")
        return f"eager ({', '.join(details)})"


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
    info = model_info(model, class_names=class_names, category_ids=category_ids)
    return EagerBackend(model, info, device=device, fold_bn=fold_bn, channels_last=channels_last)
