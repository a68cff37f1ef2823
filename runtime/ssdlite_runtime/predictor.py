"""One Predictor API over the inference backends: ONNX Runtime ("ort"), INT8, PyTorch eager, and those to come.

A Predictor owns what every backend shares: input checks, preprocessing (:mod:`ssdlite_runtime.preprocess`: resize
to the network's S x S with cv2 INTER_LINEAR, the file's input scaling), decoding + NMS for files that return the
raw outputs (:mod:`ssdlite_runtime.postprocess`), scaling boxes back to the original image sizes, and the class
names. A backend only turns a preprocessed batch into raw network outputs (or, if its file decodes and runs NMS
itself, straight into detections). Backends are found through the registry of :mod:`ssdlite_runtime.backends`:
``backend="auto"``, the default, picks the one that reads the file, from its name (``.onnx`` -> "ort", ``.ckpt`` ->
"eager", which needs the full ssdlite package).

Its defaults are display settings (:data:`DISPLAY_POSTPROCESS`: score > 0.4, 100 per class and per image);
evaluation passes :data:`~ssdlite_runtime.postprocess.EVALUATION_POSTPROCESS`'s (``ssdlite.deploy.evaluate``).

For small objects in large images, ``slice_size=S`` runs the network on overlapping S x S tiles of each image as
well as on the full frame, and merges their detections (:mod:`ssdlite_runtime.slicing`); ``predict`` returns the
same detections per image.

Example::

    predictor = Predictor("runs/shapes/model.onnx", score_threshold=0.4)
    [detections] = predictor.predict(image_rgb)      # uint8 RGB (H, W, 3)
    detections["boxes"], detections["scores"], detections["labels"]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ssdlite_runtime.backends.base import (
    Detections,
    RawOutputs,
    backend_for,
    load_backend,
)
from ssdlite_runtime.metadata import metadata_error
from ssdlite_runtime.postprocess import PostprocessSettings, postprocess_raw_outputs
from ssdlite_runtime.preprocess import preprocess_images
from ssdlite_runtime.records import predictions_to_coco_results
from ssdlite_runtime.slicing import (
    DEFAULT_SLICE_OVERLAP,
    check_slicing,
    merge_sliced_detections,
    slice_windows,
)

__all__ = ["AUTO_BACKEND", "DISPLAY_POSTPROCESS", "DISPLAY_SCORE_THRESHOLD", "Predictor"]

DISPLAY_SCORE_THRESHOLD = 0.4
"""Display threshold: what a person wants to see (the Predictor's and ``ssdlite-detect``'s default). Evaluation wants
every low-scoring box: ``EVALUATION_POSTPROCESS.score_threshold`` (0.001)."""

DISPLAY_POSTPROCESS = PostprocessSettings(
    score_threshold=DISPLAY_SCORE_THRESHOLD, topk_per_class=100, max_detections=100
)
"""The Predictor's default postprocessing: the display threshold, 100 candidates per class and 100 detections per
image, the evaluation NMS IoU."""

AUTO_BACKEND = "auto"
"""``Predictor(path, backend="auto")``, the default: the backend that reads the file, from its name
(``backend_for_path``); a model object: "eager"."""


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
        model_or_path: a model file: an exported file (``.onnx``, ...) or a training checkpoint (``.ckpt``, with
            the full ssdlite package); or what the chosen backend loads, e.g. an ``SSDLite`` module for "eager".
        backend: "auto" (the one that reads the file, from its name: ``backend_for_path``; a model object:
            "eager"), or a registry name, see :func:`~ssdlite_runtime.backends.base.available_backends`.
        device: device for the eager backend (a torch device name: "cpu", "cuda"); the others run on the CPU.
        score_threshold, nms_iou, topk_per_class, max_detections: the postprocessing, see
            :class:`~ssdlite_runtime.postprocess.PostprocessSettings`; the defaults are :data:`DISPLAY_POSTPROCESS`
            (evaluation passes ``**dataclasses.asdict(EVALUATION_POSTPROCESS)``).
        classes: keep only these class names (None: all).
        batch_size: images per forward pass when ``predict`` gets a long list (with slicing: tiles and full frames).
        slice_size: sliced inference (:mod:`ssdlite_runtime.slicing`): each image larger than this many pixels in
            a side also runs as overlapping tiles of this side, whose detections are merged with the full frame's
            (cut objects left to the view that saw them whole, class-wise NMS at ``nms_iou``, then
            ``max_detections``); at least 32. None: the full frame only.
        slice_overlap: the fraction of a tile its neighbours overlap, in [0, 1) (with ``slice_size``).
        **backend_options: passed to the backend loader (ort / int8: threads; eager: class_names, category_ids,
            fold_bn, channels_last).

    Attributes:
        backend: the loaded :class:`~ssdlite_runtime.backends.base.Backend`.
        postprocess: the postprocessing settings (``PostprocessSettings``).

    Raises:
        FileNotFoundError: the model file does not exist.
        ValueError: unknown backend, a setting out of range (slicing's too), a file that is not a model of ours, or
            unknown class names in ``classes``.
        MissingPackageError: the backend's package is not installed (names the file and what to install).
    """

    def __init__(
        self,
        model_or_path: Any,
        *,
        backend: str = AUTO_BACKEND,
        device: str = "cpu",
        score_threshold: float = DISPLAY_POSTPROCESS.score_threshold,
        nms_iou: float = DISPLAY_POSTPROCESS.nms_iou,
        topk_per_class: int = DISPLAY_POSTPROCESS.topk_per_class,
        max_detections: int = DISPLAY_POSTPROCESS.max_detections,
        classes: Sequence[str] | None = None,
        batch_size: int = 8,
        slice_size: int | None = None,
        slice_overlap: float = DEFAULT_SLICE_OVERLAP,
        **backend_options: Any,
    ) -> None:
        self.postprocess = PostprocessSettings(
            score_threshold=score_threshold,
            nms_iou=nms_iou,
            topk_per_class=topk_per_class,
            max_detections=max_detections,
        )
        self.slice_size, self.slice_overlap = check_slicing(slice_size, slice_overlap)
        if backend == AUTO_BACKEND:
            backend = backend_for(model_or_path)
        self.backend = load_backend(backend, model_or_path, device=device, **backend_options)
        self.backend.configure_postprocess(self.postprocess)
        self.batch_size = max(1, int(batch_size))
        self.kept_labels = self._labels_for(classes)

    @classmethod
    def from_model(
        cls,
        model: Any,
        *,
        class_names: Sequence[str] | None = None,
        category_ids: Sequence[int] | None = None,
        **kwargs: Any,
    ) -> Predictor:
        """An eager Predictor around an in-memory ``SSDLite`` (full package; names default to ``class_1..class_K``)."""
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
        """One line: backend, input size, classes (and the tiles, when slicing)."""
        sliced = "" if self.slice_size is None else (
            f", sliced into {self.slice_size} px tiles overlapping {self.slice_overlap:g}"
        )
        return (
            f"{self.backend.describe()}, input {self.image_size}x{self.image_size}, "
            f"{len(self.class_names)} classes, score > {self.score_threshold:g}{sliced}"
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
        """Resize to S x S (cv2 INTER_LINEAR) and apply the model's input scaling.

        Args:
            images: checked uint8 RGB (H, W, 3) arrays.

        Returns:
            float32 [B, 3, S, S] in the memory layout the backend wants (see ``Backend.run``).
        """
        info = self.backend.info
        return preprocess_images(
            images, info.image_size, mean=info.mean, scale=info.scale, channels_last=self.backend.channels_last_input
        )

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
        if self.slice_size is not None:
            return self._predict_sliced(images)
        return self._predict_in_batches(images)

    __call__ = predict

    def _predict_in_batches(self, images: list[np.ndarray]) -> list[Detections]:
        detections: list[Detections] = []
        for start in range(0, len(images), self.batch_size):
            detections.extend(self._predict_batch(images[start : start + self.batch_size]))
        return detections

    def _predict_sliced(self, images: list[np.ndarray]) -> list[Detections]:
        """Each image's full frame and tiles through the network in batches, then each image's merge."""
        windows = [slice_windows(*image.shape[:2], self.slice_size, self.slice_overlap) for image in images]
        views = []
        for image, image_windows in zip(images, windows):
            views.append(image)
            views.extend(image[y1:y2, x1:x2] for x1, y1, x2, y2 in image_windows.tolist())
        view_detections = iter(self._predict_in_batches(views))
        detections = []
        for image, image_windows in zip(images, windows):
            full_frame = next(view_detections)
            if not len(image_windows):  # no larger than a tile: the full frame alone, as without slicing
                detections.append(full_frame)
                continue
            tiles = [next(view_detections) for _ in image_windows]
            detections.append(merge_sliced_detections(
                full_frame, tiles, image_windows, image_size=image.shape[:2], iou_threshold=self.postprocess.nms_iou,
                max_detections=self.postprocess.max_detections,
            ))
        return detections

    def _predict_batch(self, images: list[np.ndarray]) -> list[Detections]:
        outputs = self.backend.run(self.preprocess(images))
        info = self.backend.info
        if isinstance(outputs, RawOutputs):
            self._check_raw_outputs(outputs)
            outputs = postprocess_raw_outputs(
                outputs.cls_logits, outputs.box_deltas, info.default_boxes, info.variances, self.postprocess
            )
        detections = [_as_detections(result) for result in outputs]
        self._check_labels(detections)
        detections = [_to_image_pixels(result, image.shape[:2]) for result, image in zip(detections, images)]
        detections = [_keep(result, result["scores"] > self.score_threshold) for result in detections]
        if self.kept_labels is not None:
            detections = [_keep(result, np.isin(result["labels"], self.kept_labels)) for result in detections]
        return detections

    # -- what the graph returned against what its metadata says (a backend checks what its format tells at load)

    @property
    def _source(self) -> str:
        """The model file, for messages (the backend's description where it has no file)."""
        path = getattr(self.backend, "path", None)
        return str(path) if path is not None else self.backend.describe()

    def _check_raw_outputs(self, outputs: RawOutputs) -> None:
        """``cls_logits`` of [B, A, K + 1], K the metadata's classes and A its default boxes."""
        info = self.backend.info
        logits = outputs.cls_logits
        if logits.ndim == 3:
            info.check_graph(
                source=self._source, num_classes=logits.shape[2] - 1, num_anchors=logits.shape[1],
                shown=f"its output cls_logits is {list(logits.shape)}, [B, A, K + 1]",
            )

    def _check_labels(self, detections: list[Detections]) -> None:
        """Labels in 1..K: a graph that decodes itself returns labels of its own class count."""
        labels = [result["labels"] for result in detections if result["labels"].size]
        if not labels:
            return
        lowest, highest = min(int(part.min()) for part in labels), max(int(part.max()) for part in labels)
        if lowest < 1 or highest > self.backend.info.num_classes:
            bad = highest if highest > self.backend.info.num_classes else lowest
            raise metadata_error(
                self._source, "class_names", f"lists {self.backend.info.num_classes} classes (labels 1 to "
                f"{self.backend.info.num_classes}) but the graph returned label {bad}; the metadata is not this "
                "graph's"
            )

    # -- results

    def to_records(self, detections: Detections, *, image_id: int, file_name: str | None = None) -> list[dict]:
        """COCO-style result records with class names.

        Returns:
            ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score", "category_name"}, ...]`` (plus
            ``file_name`` when given): :func:`~ssdlite_runtime.records.predictions_to_coco_results` records, in
            the dataset's own category ids and image pixels, with the class name added.
        """
        records = predictions_to_coco_results([detections], [image_id], self.category_ids, box_decimals=2)
        for record, label in zip(records, detections["labels"].tolist()):
            record["category_name"] = self.class_names[label - 1]
            if file_name is not None:
                record["file_name"] = file_name
        return records


def _as_detections(result: dict[str, Any]) -> Detections:
    return {
        "boxes": np.asarray(result["boxes"], dtype=np.float32).reshape(-1, 4),
        "scores": np.asarray(result["scores"], dtype=np.float32).reshape(-1),
        "labels": np.asarray(result["labels"], dtype=np.int64).reshape(-1),
    }


def _to_image_pixels(result: Detections, original_size: Sequence[int]) -> Detections:
    height, width = original_size
    scale = np.array([width, height, width, height], dtype=np.float32)
    boxes = np.clip(result["boxes"] * scale, 0, scale).astype(np.float32)
    return {**result, "boxes": boxes}


def _keep(result: Detections, mask: np.ndarray) -> Detections:
    return {key: value[mask] for key, value in result.items()}
