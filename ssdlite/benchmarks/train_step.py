"""Training images / s (batch 32 at --size: forward + loss + backward + SGD step).

Our model with MultiBoxLoss (batched matching) vs torchvision's SSD class on the same network computing its own
loss (:mod:`ssdlite.benchmarks.torchvision_reference`); the ratio ``train_vs_tv_ssd`` is ours / theirs in images
per second, higher is better.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from .inputs import benchmark_model
from .options import BenchmarkOptions
from .timing import interleaved_latencies_ms, use_threads


def measure_train_step(options: BenchmarkOptions) -> dict[str, dict[str, Any]]:
    """Training images / s: our model + MultiBoxLoss + SGD vs torchvision's SSD (same network) + its loss + SGD."""
    use_threads(options.threads)
    model, model_info = benchmark_model(options)
    batch_size = 2 if options.smoke else 32
    images01, boxes, labels = _synthetic_batch(batch_size, int(model.image_size), int(model.num_classes))
    steps = {
        "ours": _our_step(model, images01, boxes, labels),
        "tv_ssd": _torchvision_step(model, images01, boxes, labels),
    }
    seconds = interleaved_latencies_ms(
        {name: (lambda _, step=step: step()) for name, step in steps.items()},
        [0] if options.smoke else [0, 1],
        rounds=1 if options.smoke else 3,
        warmup=1,
    )
    rates = {name: batch_size * 1000.0 / value for name, value in seconds.items()}
    return {
        "throughput": {"train_ours_images_per_s": rates["ours"], "train_tv_ssd_images_per_s": rates["tv_ssd"]},
        "ratios": {"train_vs_tv_ssd": rates["ours"] / rates["tv_ssd"]},
        "info": {
            "train_step": {
                **model_info,
                "batch_size": batch_size,
                "threads": options.threads,
                "ours": "SSDLite (channels_last) + MultiBoxLoss (batched matching) + SGD(momentum 0.9)",
                "tv_ssd": "torchvision SSD(our modules): GeneralizedRCNNTransform + per-image SSDMatcher + "
                "compute_loss + SGD(momentum 0.9); input [0, 1] images at the network size",
            }
        },
    }


def _synthetic_batch(batch_size: int, size: int, num_classes: int) -> tuple[Tensor, Tensor, Tensor]:
    """(images [B, 3, S, S] in [0, 1], boxes [B, 3, 4] normalised xyxy, labels [B, 3] in 1..K), seeded."""
    generator = torch.Generator().manual_seed(0)
    images01 = torch.rand(batch_size, 3, size, size, generator=generator)
    centres = torch.rand(batch_size, 3, 2, generator=generator) * 0.6 + 0.2
    sizes = torch.rand(batch_size, 3, 2, generator=generator) * 0.3 + 0.05
    boxes = torch.cat([centres - sizes / 2, centres + sizes / 2], dim=-1)
    labels = torch.randint(1, num_classes + 1, (batch_size, 3), generator=generator)
    return images01, boxes, labels


def _our_step(model: torch.nn.Module, images01: Tensor, boxes: Tensor, labels: Tensor) -> Callable[[], None]:
    """One SGD step of a copy of ``model`` (channels-last) with MultiBoxLoss on the batch scaled to [-1, 1]."""
    from ssdlite.core.loss import MultiBoxLoss

    ours = copy.deepcopy(model).train().to(memory_format=torch.channels_last)
    criterion = MultiBoxLoss()
    optimizer = torch.optim.SGD(ours.parameters(), lr=1e-3, momentum=0.9)
    images = (images01 * 2.0 - 1.0).contiguous(memory_format=torch.channels_last)

    def step() -> None:
        outputs = ours(images)
        losses = criterion(outputs["cls_logits"], outputs["box_deltas"], ours.anchors, boxes, labels)
        optimizer.zero_grad(set_to_none=True)
        losses["loss"].backward()
        optimizer.step()

    return step


def _torchvision_step(model: torch.nn.Module, images01: Tensor, boxes: Tensor, labels: Tensor) -> Callable[[], None]:
    """One SGD step of torchvision's SSD around a copy of ``model``, computing its own loss (boxes in pixels)."""
    from .torchvision_reference import torchvision_ssd

    size = int(model.image_size)
    theirs = torchvision_ssd(copy.deepcopy(model).train())
    optimizer = torch.optim.SGD(theirs.parameters(), lr=1e-3, momentum=0.9)
    images = list(images01)
    targets = [{"boxes": image_boxes * size, "labels": image_labels} for image_boxes, image_labels in
               zip(boxes, labels)]

    def step() -> None:
        losses = theirs(images, targets)
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()

    return step
