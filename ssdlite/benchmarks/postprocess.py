"""Postprocessing alone, batch 1: our ``postprocess_detections`` vs torchvision's.

torchvision's side is ``SSD.postprocess_detections`` + ``GeneralizedRCNNTransform.postprocess`` (back to the
original image size) on the same head outputs, both with the evaluation settings.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import torch

from .inputs import benchmark_model, camera_frames
from .options import BenchmarkOptions
from .timing import interleaved_latencies_ms, use_threads


def measure_postprocess(options: BenchmarkOptions) -> dict[str, dict[str, Any]]:
    """Our postprocess_detections vs torchvision's SSD postprocessing on the same head outputs (batch 1)."""
    from torchvision.ops import box_convert

    from ssdlite.core.postprocess import EVALUATION_POSTPROCESS, postprocess_detections
    from ssdlite.deploy.metadata import INPUT_SCALING
    from ssdlite_runtime.preprocess import preprocess_images

    from .torchvision_reference import torchvision_ssd

    use_threads(options.threads)
    model, model_info = benchmark_model(options)
    size = int(model.image_size)
    frames = camera_frames(2 if options.smoke else 16, seed=1)
    with torch.inference_mode():
        head_outputs = [
            model(torch.from_numpy(preprocess_images([frame], size, channels_last=False, **INPUT_SCALING)))
            for frame in frames
        ]
    original_size = torch.tensor([frames[0].shape[:2]])
    theirs = torchvision_ssd(model, postprocess=EVALUATION_POSTPROCESS).eval()
    anchors_pixels = [box_convert(model.anchors, "cxcywh", "xyxy") * size]

    def ours(outputs: dict) -> Any:
        return postprocess_detections(
            outputs["cls_logits"], outputs["box_deltas"], model.anchors, original_size,
            **asdict(EVALUATION_POSTPROCESS),
        )

    def torchvision_postprocess(outputs: dict) -> Any:
        head = {"cls_logits": outputs["cls_logits"], "bbox_regression": outputs["box_deltas"]}
        detections = theirs.postprocess_detections(head, anchors_pixels, [(size, size)])
        return theirs.transform.postprocess(detections, [(size, size)], [tuple(frames[0].shape[:2])])

    with torch.inference_mode():
        latency = interleaved_latencies_ms(
            {"postprocess_ours": ours, "postprocess_tv": torchvision_postprocess},
            head_outputs,
            rounds=2 if options.smoke else 10,
        )
    return {
        "latency_ms": latency,
        "ratios": {"postprocess_vs_tv": latency["postprocess_ours"] / latency["postprocess_tv"]},
        "info": {"postprocess": {
            **model_info, "settings": asdict(EVALUATION_POSTPROCESS), "inputs": f"{len(frames)} frames",
        }},
    }
