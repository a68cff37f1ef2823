"""One Predictor API over the inference backends: PyTorch eager, ONNX Runtime ("ort"), INT8, and those to come.

A Predictor owns what every backend shares: input checks, preprocessing (``ssdlite.deploy.preprocess``: resize to
the network's S x S with cv2 INTER_LINEAR, scale to [-1, 1]), decoding + NMS
(``ssdlite.core.postprocess.postprocess_detections``) back to the original image sizes, and the class names. A
backend only turns a preprocessed batch into raw network outputs (or, if it does its own postprocessing, straight
into detections). Backends live in ``ssdlite.deploy.backends``, one module per runtime, and are found through its
registry (``backend="auto"`` picks one from the model file's name).

Its defaults are display settings (:data:`DISPLAY_POSTPROCESS`: score > 0.4, 100 per class and per image);
evaluation passes ``ssdlite.core.postprocess.EVALUATION_POSTPROCESS``'s (``ssdlite.deploy.evaluate``).

Example::

    predictor = Predictor("runs/shapes/best.ckpt", score_threshold=0.4)
    [detections] = predictor.predict(image_rgb)      # uint8 RGB (H, W, 3)
    detections["boxes"], detections["scores"], detections["labels"]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ssdlite.core.postprocess import PostprocessSettings, postprocess_detections
from ssdlite.deploy.backends.base import (
    FALLBACK_BACKEND,
    Backend,
    Detections,
    ModelInfo,
    RawOutputs,
    available_backends,
    backend_for_path,
    load_backend,
    register_backend,
)
from ssdlite.deploy.model_files import find_latest_checkpoint, load_checkpoint_for_inference
from ssdlite.deploy.preprocess import preprocess_images
from ssdlite.evaluation.coco import predictions_to_coco_results

# Backend, ModelInfo, ..., preprocess_images are defined where the backends and the exporters find them, and
# exported here too: the Predictor's public API as it always was.
__all__ = [
    "AUTO_BACKEND",
    "DISPLAY_POSTPROCESS",
    "DISPLAY_SCORE_THRESHOLD",
    "Backend",
    "Detections",
    "ModelInfo",
    "Predictor",
    "RawOutputs",
    "available_backends",
    "backend_for_path",
    "find_latest_checkpoint",
    "load_checkpoint_for_inference",
    "preprocess_images",
    "register_backend",
]

DISPLAY_SCORE_THRESHOLD = 0.4
"""Display threshold: what a person wants to see (the Predictor's and detect.py's default). Evaluation wants every
low-scoring box: ``EVALUATION_POSTPROCESS.score_threshold`` (0.001)."""

DISPLAY_POSTPROCESS = PostprocessSettings(
    score_threshold=DISPLAY_SCORE_THRESHOLD, topk_per_class=100, max_detections=100
)
"""The Predictor's default postprocessing: the display threshold, 100 candidates per class and 100 detections per
image, the evaluation NMS IoU."""

AUTO_BACKEND = "auto"
"""``Predictor(path, backend="auto")``: the backend that reads the file, from its name (``backend_for_path``)."""


def _check_image(image: Any, index: int) -> np.ndarray:
    where = f"image {index}"
    if not isinstance(image, np.ndarray):
        raise ValueError(f"{where} is a {type(image).__name__}; expected a numpy uint8 RGB array (H, W, 3)")
    if image.ndim == 2:
        raise ValueError(
            f"{where} has shape {image.shape} (grayscale, no channel axis); expected uint8 RGB (H, W, 3): "
            "convert with cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)"
        )
    if image.ndim != 3 or image.shape[2] != 3:
        hint = ""
        if image.ndim == 3 and image.shape[0] == 3:
            hint = " (channels first? use image.transpose(1, 2, 0))"
        elif image.ndim == 3 and image.shape[2] == 4:
            hint = " (RGBA? drop alpha with image[..., :3])"
        raise ValueError(f"{where} has shape {image.shape}; expected uint8 RGB (H, W, 3){hint}")
    if image.dtype != np.uint8:
        raise ValueError(
            f"{where} has dtype {image.dtype}; expected uint8 RGB in 0..255 "
            "(for floats in [0, 1] use (image * 255).round().astype(np.uint8))"
        )
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{where} is empty (shape {image.shape})")
    return image


class Predictor:
    """Detect objects in uint8 RGB images with any registered backend.

    Images must be RGB (OpenCV reads BGR: convert with ``cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)``); the channel
    order cannot be checked from the pixels, and BGR input silently gives worse detections.

    Args:
        model_or_path: a training checkpoint path (eager), an ``SSDLite`` module (eager), or whatever the chosen
            backend loads: an ``.onnx`` file for "ort" / "int8" (an ``SSDLite`` or checkpoint is exported, and
            for "int8" calibrated, on the fly).
        backend: registry name, see ``available_backends()``, or "auto": the one that reads the file, from its
            name (``backend_for_path``; an ``SSDLite`` module: "eager").
        device: torch device for the eager backend.
        score_threshold, nms_iou, topk_per_class, max_detections: the postprocessing, see
            ``ssdlite.core.postprocess.PostprocessSettings``; the defaults are :data:`DISPLAY_POSTPROCESS`
            (evaluation passes ``**dataclasses.asdict(EVALUATION_POSTPROCESS)``).
        classes: keep only these class names (None: all).
        batch_size: images per forward pass when ``predict`` gets a long list.
        **backend_options: passed to the backend loader (eager: class_names, category_ids, fold_bn,
            channels_last; ort / int8: threads, with_nms, class_names, category_ids, export_dir; int8 given a
            model or checkpoint: calibration_images, max_calibration_images -- see
            ``ssdlite.deploy.backends.onnx_runtime``).

    Attributes:
        backend: the loaded :class:`Backend`.
        postprocess: the postprocessing settings (``PostprocessSettings``).

    Raises:
        FileNotFoundError: the model file does not exist.
        ValueError: unknown backend, a setting out of range, a file that is not a model of ours, or unknown class
            names in ``classes``.
        MissingPackageError: the backend's optional package is not installed (names the pip extra).
    """

    def __init__(
        self,
        model_or_path: nn.Module | str | Path,
        *,
        backend: str = "eager",
        device: str | torch.device = "cpu",
        score_threshold: float = DISPLAY_POSTPROCESS.score_threshold,
        nms_iou: float = DISPLAY_POSTPROCESS.nms_iou,
        topk_per_class: int = DISPLAY_POSTPROCESS.topk_per_class,
        max_detections: int = DISPLAY_POSTPROCESS.max_detections,
        classes: Sequence[str] | None = None,
        batch_size: int = 8,
        **backend_options: Any,
    ) -> None:
        self.postprocess = PostprocessSettings(
            score_threshold=score_threshold,
            nms_iou=nms_iou,
            topk_per_class=topk_per_class,
            max_detections=max_detections,
        )
        if backend == AUTO_BACKEND:
            backend = FALLBACK_BACKEND if isinstance(model_or_path, nn.Module) else backend_for_path(model_or_path)
        self.backend = load_backend(backend, model_or_path, device=device, **backend_options)
        self.backend.configure_postprocess(self.postprocess)
        self.batch_size = max(1, int(batch_size))
        self.kept_labels = self._labels_for(classes)

    @classmethod
    def from_model(
        cls,
        model: nn.Module,
        *,
        class_names: Sequence[str] | None = None,
        category_ids: Sequence[int] | None = None,
        **kwargs: Any,
    ) -> Predictor:
        """An eager Predictor around an in-memory ``SSDLite`` (names default to ``class_1..class_K``)."""
        return cls(model, backend="eager", class_names=class_names, category_ids=category_ids, **kwargs)

    # -- model facts

    @property
    def score_threshold(self) -> float:
        """Detections score above this."""
        return self.postprocess.score_threshold

    @property
    def class_names(self) -> list[str]:
        return self.backend.info.class_names

    @property
    def category_ids(self) -> list[int]:
        return self.backend.info.category_ids

    @property
    def image_size(self) -> int:
        return self.backend.info.image_size

    def describe(self) -> str:
        """One line: backend, input size, classes."""
        return (
            f"{self.backend.describe()}, input {self.image_size}x{self.image_size}, "
            f"{len(self.class_names)} classes, score > {self.score_threshold:g}"
        )

    def _labels_for(self, classes: Sequence[str] | None) -> np.ndarray | None:
        if classes is None:
            return None
        unknown = [name for name in classes if name not in self.class_names]
        if unknown:
            raise ValueError(
                f"unknown class name(s) {', '.join(map(repr, unknown))}; this model knows: "
                f"{', '.join(self.class_names)}"
            )
        return np.array(sorted({self.class_names.index(name) + 1 for name in classes}), dtype=np.int64)

    # -- the pipeline

    def preprocess(self, images: Sequence[np.ndarray]) -> np.ndarray:
        """Resize to S x S (cv2 INTER_LINEAR) and scale to [-1, 1].

        Args:
            images: checked uint8 RGB (H, W, 3) arrays.

        Returns:
            float32 [B, 3, S, S] in the memory layout the backend wants (see ``Backend.run``).
        """
        return preprocess_images(images, self.image_size, channels_last=self.backend.channels_last_input)

    def predict(self, images: np.ndarray | Sequence[np.ndarray]) -> list[Detections]:
        """Detect objects.

        Args:
            images: one uint8 RGB (H, W, 3) array or a list of them (sizes may differ).

        Returns:
            One dict per image: ``boxes`` float32 [D, 4] xyxy in that image's pixels, ``scores`` float32 [D],
            ``labels`` int64 [D] in 1..K (``class_names[label - 1]``), sorted by score, highest first.

        Raises:
            ValueError: an image that is not uint8 RGB (H, W, 3), or an empty list.
        """
        if isinstance(images, np.ndarray) and images.ndim != 4:
            images = [images]
        images = [_check_image(image, index) for index, image in enumerate(images)]
        if not images:
            raise ValueError("predict() got no images")
        detections: list[Detections] = []
        for start in range(0, len(images), self.batch_size):
            detections.extend(self._predict_batch(images[start : start + self.batch_size]))
        return detections

    __call__ = predict

    def _predict_batch(self, images: list[np.ndarray]) -> list[Detections]:
        outputs = self.backend.run(self.preprocess(images))
        original_sizes = torch.tensor([image.shape[:2] for image in images], dtype=torch.int64)
        if isinstance(outputs, RawOutputs):
            with torch.inference_mode():
                results = postprocess_detections(
                    outputs.cls_logits.float(),
                    outputs.box_deltas.float(),
                    self.backend.info.anchors,
                    original_sizes.to(outputs.cls_logits.device),
                    **asdict(self.postprocess),
                )
            detections = [_to_numpy(result) for result in results]
        else:
            detections = [
                _to_image_pixels(_to_numpy(result), size)
                for result, size in zip(outputs, original_sizes.tolist())
            ]
            detections = [_keep(result, result["scores"] > self.score_threshold) for result in detections]
        if self.kept_labels is not None:
            detections = [_keep(result, np.isin(result["labels"], self.kept_labels)) for result in detections]
        return detections

    # -- results

    def to_records(self, detections: Detections, *, image_id: int, file_name: str | None = None) -> list[dict]:
        """COCO-style result records with class names.

        Returns:
            ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score", "category_name"}, ...]`` (plus
            ``file_name`` when given): ``ssdlite.evaluation.coco.predictions_to_coco_results`` records, in the
            dataset's own category ids and image pixels, with the class name added.
        """
        records = predictions_to_coco_results([detections], [image_id], self.category_ids, box_decimals=2)
        for record, label in zip(records, detections["labels"].tolist()):
            record["category_name"] = self.class_names[label - 1]
            if file_name is not None:
                record["file_name"] = file_name
        return records


def _to_numpy(result: dict[str, Any]) -> Detections:
    def as_array(value: Any, dtype: type) -> np.ndarray:
        if isinstance(value, Tensor):
            value = value.detach().cpu().numpy()
        return np.asarray(value, dtype=dtype)

    return {
        "boxes": as_array(result["boxes"], np.float32).reshape(-1, 4),
        "scores": as_array(result["scores"], np.float32).reshape(-1),
        "labels": as_array(result["labels"], np.int64).reshape(-1),
    }


def _to_image_pixels(result: Detections, original_size: Sequence[int]) -> Detections:
    height, width = original_size
    scale = np.array([width, height, width, height], dtype=np.float32)
    boxes = np.clip(result["boxes"] * scale, 0, scale).astype(np.float32)
    return {**result, "boxes": boxes}


def _keep(result: Detections, mask: np.ndarray) -> Detections:
    return {key: value[mask] for key, value in result.items()}
