"""One Predictor API over the inference backends: PyTorch eager, ONNX Runtime ("ort") and INT8.

A Predictor owns what every backend shares: input checks, preprocessing (resize to the network's S x S with
cv2 INTER_LINEAR, scale to [-1, 1]), decoding + NMS (``ssdlite.core.postprocess.postprocess_detections``) back to
the original image sizes, and the class names. A backend only turns a preprocessed batch into raw network
outputs (or, if it does its own postprocessing, straight into detections). The "ort" and "int8" backends live in
``ssdlite.deploy.onnx_runtime`` (registered when this module is imported).

Adding a backend::

    @register_backend("ort")
    def _load_ort(model_or_path, *, device, **options) -> Backend: ...

Example::

    predictor = Predictor("runs/shapes/best.ckpt", score_threshold=0.4)
    [detections] = predictor.predict(image_rgb)      # uint8 RGB (H, W, 3)
    detections["boxes"], detections["scores"], detections["labels"]
"""

from __future__ import annotations

import abc
import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np
import torch
from torch import Tensor, nn

from ssdlite.core.postprocess import postprocess_detections
from ssdlite.deploy.model_files import ONNX_SUFFIXES, backend_for_path, find_latest_checkpoint
from ssdlite.evaluation.coco import predictions_to_coco_results
from ssdlite.models import load_checkpoint
from ssdlite.models.fold_bn import fold_batchnorm
from ssdlite.models.weights import NotACheckpointError

__all__ = [
    "DEFAULT_SCORE_THRESHOLD",
    "Backend",
    "Detections",
    "EagerBackend",
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

DEFAULT_SCORE_THRESHOLD = 0.4
"""Display threshold: what a person wants to see. Evaluation wants 0.001 (postprocess's own default)."""


Detections = dict[str, np.ndarray]
"""Per image: ``boxes`` float32 [D, 4] xyxy original pixels, ``scores`` float32 [D], ``labels`` int64 [D] (1..K),
sorted by score, highest first."""


class RawOutputs(NamedTuple):
    """What the network head returns, before decoding.

    Attributes:
        cls_logits: Tensor[B, A, K + 1], column 0 = background.
        box_deltas: Tensor[B, A, 4] (dx, dy, dw, dh) against the backend's anchors.
    """

    cls_logits: Tensor
    box_deltas: Tensor


@dataclass
class ModelInfo:
    """What a Predictor needs to know about the model behind a backend.

    Attributes:
        class_names: names of labels 1..K (``class_names[label - 1]``).
        category_ids: dataset category id of labels 1..K (written in COCO-style results).
        image_size: the network's square input side S in pixels.
        anchors: Tensor[A, 4] (cx, cy, w, h) normalised, for backends that return RawOutputs.
    """

    class_names: list[str]
    category_ids: list[int]
    image_size: int
    anchors: Tensor | None = None


class Backend(abc.ABC):
    """Runs the network on a preprocessed batch.

    Attributes:
        name: the registry name ("eager", "ort", "int8", ...).
        info: class names, category ids, input size and anchors of the loaded model.
        channels_last_input: True: ``run`` gets an NCHW view of NHWC memory (free for PyTorch channels_last);
            False: contiguous NCHW (ONNX Runtime), written directly by the preprocessing instead of transposed
            afterwards (a strided copy that costs ~1 ms at 320 px).
    """

    name: str = ""
    channels_last_input: bool = True

    def __init__(self, info: ModelInfo) -> None:
        self.info = info

    @abc.abstractmethod
    def run(self, batch: np.ndarray) -> RawOutputs | list[Detections]:
        """Forward a batch.

        Args:
            batch: float32 [B, 3, S, S] RGB in [-1, 1]: a channels-last view (NHWC memory), or contiguous NCHW
                if the backend sets ``channels_last_input = False``.

        Returns:
            RawOutputs for the Predictor to decode, or, if the backend postprocesses itself, one ``Detections``
            dict per image with boxes xyxy normalised to [0, 1]; the Predictor scales them to each image.
        """

    def configure_postprocess(
        self, *, score_threshold: float, nms_iou: float, topk_per_class: int, max_detections: int
    ) -> None:
        """The Predictor's postprocessing settings, for backends that postprocess themselves (default: unused)."""
        return None

    def describe(self) -> str:
        """One line for logs, e.g. ``eager (cpu, BN folded, channels_last)``."""
        return self.name


BackendLoader = Callable[..., Backend]
_BACKENDS: dict[str, BackendLoader] = {}


def register_backend(name: str) -> Callable[[BackendLoader], BackendLoader]:
    """Register ``loader(model_or_path, *, device, **options) -> Backend`` under ``name``."""

    def decorator(loader: BackendLoader) -> BackendLoader:
        _BACKENDS[name] = loader
        return loader

    return decorator


def available_backends() -> list[str]:
    """Names of the registered backends."""
    return sorted(_BACKENDS)


# ----------------------------------------------------------------------------------------------------- eager


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


def _model_info(model: nn.Module, class_names: Sequence[str] | None, category_ids: Sequence[int] | None) -> ModelInfo:
    num_classes = int(model.num_classes)
    names = list(class_names) if class_names is not None else [f"class_{label}" for label in range(1, num_classes + 1)]
    ids = list(category_ids) if category_ids is not None else list(range(1, num_classes + 1))
    if len(names) != num_classes or len(ids) != num_classes:
        raise ValueError(
            f"the model has {num_classes} classes but got {len(names)} class names and {len(ids)} category ids; "
            "pass one name and one id per object class (background excluded)"
        )
    return ModelInfo(class_names=names, category_ids=ids, image_size=int(model.image_size))


def load_checkpoint_for_inference(path: str | Path, *, map_location: str | torch.device = "cpu"):
    """``ssdlite.models.factory.load_checkpoint`` with one clear error for any file that is not our checkpoint.

    Returns:
        (model in eval mode, meta dict with class_names, category_ids, image_size).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not an ssdlite checkpoint, or not one this code can rebuild (names the file and
            what was wrong).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix.lower() in ONNX_SUFFIXES:
        raise ValueError(f"{path} is an ONNX file; load it with backend='ort', not as a training checkpoint")
    try:
        return load_checkpoint(path, map_location=map_location)
    except NotACheckpointError:
        raise  # already names the file and says what a checkpoint is
    except Exception as error:  # unreadable, foreign or mismatched: one message that names the file
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"cannot load {path}: {reason}; pass a checkpoint written by tools/train.py") from error


@register_backend("eager")
def _load_eager(
    model_or_path: nn.Module | str | Path,
    *,
    device: str | torch.device = "cpu",
    class_names: Sequence[str] | None = None,
    category_ids: Sequence[int] | None = None,
    fold_bn: bool = True,
    channels_last: bool = True,
) -> EagerBackend:
    if isinstance(model_or_path, nn.Module):
        model = model_or_path
    else:
        model, meta = load_checkpoint_for_inference(model_or_path, map_location="cpu")
        class_names = meta["class_names"] if class_names is None else class_names
        category_ids = meta["category_ids"] if category_ids is None else category_ids
    info = _model_info(model, class_names, category_ids)
    return EagerBackend(model, info, device=device, fold_bn=fold_bn, channels_last=channels_last)


# ------------------------------------------------------------------------------------------------- predictor


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
        backend: registry name, see ``available_backends()``; ``backend_for_path(path)`` picks one from a suffix.
        device: torch device for the eager backend.
        score_threshold: keep detections scoring above this (as postprocess_detections).
        nms_iou: IoU above which NMS suppresses a box of the same class.
        topk_per_class: candidates kept per class before NMS.
        max_detections: detections kept per image after NMS.
        classes: keep only these class names (None: all).
        batch_size: images per forward pass when ``predict`` gets a long list.
        **backend_options: passed to the backend loader (eager: class_names, category_ids, fold_bn,
            channels_last; ort / int8: threads, with_nms, class_names, category_ids, export_dir; int8 given a
            model or checkpoint: calibration_images, max_calibration_images -- see ``ssdlite.deploy.onnx_runtime``).

    Raises:
        FileNotFoundError: the model file does not exist.
        ValueError: unknown backend, a file that is not a model of ours, or unknown class names in ``classes``.
    """

    def __init__(
        self,
        model_or_path: nn.Module | str | Path,
        *,
        backend: str = "eager",
        device: str | torch.device = "cpu",
        score_threshold: float = DEFAULT_SCORE_THRESHOLD,
        nms_iou: float = 0.55,
        topk_per_class: int = 100,
        max_detections: int = 100,
        classes: Sequence[str] | None = None,
        batch_size: int = 8,
        **backend_options: Any,
    ) -> None:
        if backend not in _BACKENDS:
            raise ValueError(f"unknown backend {backend!r}; available: {', '.join(available_backends())}")
        if not 0.0 <= score_threshold <= 1.0:
            raise ValueError(f"score_threshold must be in [0, 1], got {score_threshold}")
        self.backend = _BACKENDS[backend](model_or_path, device=device, **backend_options)
        self.score_threshold = float(score_threshold)
        self.nms_iou = float(nms_iou)
        self.topk_per_class = int(topk_per_class)
        self.max_detections = int(max_detections)
        self.backend.configure_postprocess(
            score_threshold=self.score_threshold,
            nms_iou=self.nms_iou,
            topk_per_class=self.topk_per_class,
            max_detections=self.max_detections,
        )
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
                    score_threshold=self.score_threshold,
                    topk_per_class=self.topk_per_class,
                    nms_iou=self.nms_iou,
                    max_detections=self.max_detections,
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


def preprocess_images(images: Sequence[np.ndarray], image_size: int, *, channels_last: bool = True) -> np.ndarray:
    """Resize to S x S (cv2 INTER_LINEAR) and scale to [-1, 1] (``pixel / 127.5 - 1``, float32 arithmetic).

    Args:
        images: uint8 RGB (H, W, 3) arrays.
        image_size: S.
        channels_last: return an NCHW view of NHWC memory (True) or contiguous NCHW memory (False); the values
            are identical.

    Returns:
        float32 [B, 3, S, S].
    """
    size = (image_size, image_size)
    if channels_last:
        batch = np.stack([cv2.resize(image, size, interpolation=cv2.INTER_LINEAR) for image in images])
        batch = batch.astype(np.float32)
    else:  # channel planes written straight into NCHW: ~5x cheaper than transposing the float batch afterwards
        batch = np.empty((len(images), 3, image_size, image_size), np.float32)
        for index, image in enumerate(images):
            for channel, plane in enumerate(cv2.split(cv2.resize(image, size, interpolation=cv2.INTER_LINEAR))):
                batch[index, channel] = plane
    batch *= 1.0 / 127.5
    batch -= 1.0
    return batch.transpose(0, 3, 1, 2) if channels_last else batch


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


# The ONNX Runtime backends register themselves ("ort", "int8"); imported last because they build on this module.
from ssdlite.deploy import onnx_runtime as _onnx_runtime  # noqa: E402,F401
