"""Training data pipeline: images per second per worker (one thread), ours vs torchvision.transforms.v2.

Ours is the train pipeline at --size with the "ssdlite" augmentation; torchvision's is the SSDLite preset of its
detection references (RandomIoUCrop + RandomHorizontalFlip) plus the Resize / ToDtype / Normalize that produce the
same network input, on the same decoded images (the raccoon photos when --raccoon is a folder, else generated
shapes). Also timed, for reference: our full "ssd" augmentation and the decode rate of ``read_image``. Rounds
alternate between the pipelines and the median round is reported; the ratio
``data_pipeline_ssdlite_vs_torchvision_v2`` is ours / torchvision's in images per second, higher is better.
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from .options import BenchmarkOptions
from .timing import alternating_rates, rate_of

PIPELINE_DESCRIPTIONS = {
    "ssdlite": "augment 'ssdlite': MinIoURandomCrop + Resize + HorizontalFlip + [-1, 1]",
    "ssd_full": "augment 'ssd': ZoomOut(p=0.5) + MinIoURandomCrop + Resize + HorizontalFlip + photometric "
    "+ [-1, 1]",
    "torchvision_v2": "Image (CHW view) + RandomIoUCrop + RandomHorizontalFlip + Resize + ToDtype + Normalize "
    "+ SanitizeBoundingBoxes (antialias default)",
}


def measure_data_pipeline(options: BenchmarkOptions) -> dict[str, dict[str, Any]]:
    """Train-pipeline images / s on one thread: ours vs torchvision v2's SSDLite preset (see the module docstring)."""
    from ssdlite_runtime.image_io import read_image

    torch.set_num_threads(1)  # a DataLoader worker runs torch on one thread; OpenCV likewise here
    cv2.setNumThreads(1)
    with tempfile.TemporaryDirectory(prefix="ssdlite_benchmark_") as scratch:
        samples, source, files = _benchmark_samples(options, scratch=Path(scratch))
        rates = alternating_rates(_pipelines(options.image_size), samples,
                                  seconds=0.2 if options.smoke else options.seconds)
        decode_rate = rate_of(read_image, files, seconds=0.1 if options.smoke else 1.0)
    sides = [float(np.sqrt(sample["image"].shape[0] * sample["image"].shape[1])) for sample in samples]
    return {
        "throughput": {
            "data_pipeline_ssdlite_images_per_s": rates["ssdlite"],
            "data_pipeline_torchvision_v2_images_per_s": rates["torchvision_v2"],
            "data_pipeline_ssd_full_images_per_s": rates["ssd_full"],
            "data_pipeline_read_image_images_per_s": decode_rate,
        },
        "latency_ms": {
            "data_pipeline_ssdlite_per_image": 1000.0 / rates["ssdlite"],
            "data_pipeline_torchvision_v2_per_image": 1000.0 / rates["torchvision_v2"],
        },
        "ratios": {"data_pipeline_ssdlite_vs_torchvision_v2": rates["ssdlite"] / rates["torchvision_v2"]},
        "info": {
            "data_pipeline": {
                "images": len(samples),
                "source": source,
                "image_size": options.image_size,
                "mean_image_side_px": round(statistics.fmean(sides), 1),
                "threads": 1,
                **PIPELINE_DESCRIPTIONS,
            }
        },
    }


def _pipelines(image_size: int) -> dict[str, Callable[[dict], Any]]:
    """The timed pipelines, seeded: ours ("ssdlite"), torchvision v2's same recipe, our full SSD augmentation.

    Like for like: our "ssdlite" preset is the same recipe as torchvision's (IoU crop + flip); our full SSD
    augmentation (zoom-out + photometric as well) is timed beside them for reference.
    """
    from ssdlite.data.transforms import train_transforms

    ours = train_transforms(image_size, "ssdlite")
    ours.set_random_seed(0)
    ours_full = train_transforms(image_size, "ssd")
    ours_full.set_random_seed(0)
    torch.manual_seed(0)
    torchvision_preset = _torchvision_ssdlite_preset(image_size)
    return {
        "ssdlite": ours,
        "torchvision_v2": lambda sample: torchvision_preset(*_torchvision_inputs(sample)),
        "ssd_full": ours_full,
    }


def _benchmark_samples(options: BenchmarkOptions, *, scratch: Path) -> tuple[list[dict], str, list[Path]]:
    """Decoded reader samples and their files: every raccoon photo (train + val), else shapes written to
    ``scratch`` (smoke: 8 images)."""
    from ssdlite.data.coco import CocoDetection
    from ssdlite.data.synthetic import make_shapes
    from ssdlite.data.voc import VOCDetection

    limit = 8 if options.smoke else None
    if options.raccoon_root is not None and options.raccoon_root.is_dir():
        datasets = [VOCDetection(options.raccoon_root, split) for split in ("train", "val")]
        source = f"raccoon ({options.raccoon_root})"
    else:
        paths = make_shapes(scratch, num_train=8 if options.smoke else 200, num_val=0, size=480, seed=0)
        datasets = [CocoDetection(paths["train_images"], paths["train_annotations"])]
        source = "generated shapes (480 px)"
    samples, files = [], []
    for dataset in datasets:
        for index in range(len(dataset)):
            samples.append(dataset[index])
            files.append(dataset.records[index].path)
    return samples[:limit], source, files[:limit]


def _torchvision_ssdlite_preset(image_size: int) -> Callable:
    """torchvision's detection-reference "ssdlite" train preset (v2), resized and scaled like ours to [-1, 1]."""
    from torchvision.transforms import v2

    return v2.Compose(
        [
            v2.RandomIoUCrop(),
            v2.RandomHorizontalFlip(p=0.5),
            v2.Resize((image_size, image_size)),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5]),
            v2.SanitizeBoundingBoxes(),
        ]
    )


def _torchvision_inputs(sample: dict) -> tuple[Any, dict]:
    """The sample as torchvision's references hand it to the v2 transforms: a CHW uint8 image and a target."""
    from torchvision import tv_tensors

    height, width = sample["image"].shape[:2]
    image = tv_tensors.Image(torch.from_numpy(sample["image"]).permute(2, 0, 1))
    boxes = tv_tensors.BoundingBoxes(
        torch.from_numpy(sample["boxes"]), format="XYXY", canvas_size=(height, width)
    )
    return image, {"boxes": boxes, "labels": torch.from_numpy(sample["labels"])}
