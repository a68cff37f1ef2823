"""What the model measurements run on: our detector and camera-like frames."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from .options import BenchmarkOptions


def benchmark_model(options: BenchmarkOptions) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Our detector: --checkpoint, else ssdlite_mobilenet_v2 with 90 classes and random weights (smoke: width 0.35
    at 128 px); and the facts the report states about it."""
    from ssdlite.deploy.model_files import load_checkpoint_for_inference
    from ssdlite.models import build_model

    if options.checkpoint is not None:
        model, meta = load_checkpoint_for_inference(options.checkpoint)
        return model, {"model": str(options.checkpoint), **model_facts(model)}
    torch.manual_seed(0)
    overrides = dict(width_mult=0.35, image_size=128) if options.smoke else dict(image_size=options.image_size)
    model = build_model("ssdlite_mobilenet_v2", num_classes=90, **overrides).eval()
    return model, {"model": "ssdlite_mobilenet_v2, random weights", **model_facts(model)}


def model_facts(model: torch.nn.Module) -> dict[str, Any]:
    return {
        "image_size": int(model.image_size),
        "num_classes": int(model.num_classes),
        "width_mult": model.config.get("width_mult"),
        "anchors": int(model.anchors.shape[0]),
    }


def camera_frames(count: int, *, seed: int) -> list[np.ndarray]:
    """uint8 RGB 480 x 640 frames of generated shapes (a 640 px scene, cropped to 4:3)."""
    from ssdlite.data.synthetic import render_shapes_image

    frames = []
    for index in range(count):
        image, _, _ = render_shapes_image(np.random.default_rng([seed, index]), size=640)
        frames.append(np.ascontiguousarray(image[80:560]))
    return frames


def write_images(images: Sequence[np.ndarray], folder: Path) -> Path:
    """Writes RGB images as ``0000.png``, ``0001.png``, ... into ``folder``; returns the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(images):
        cv2.imwrite(str(folder / f"{index:04d}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return folder
