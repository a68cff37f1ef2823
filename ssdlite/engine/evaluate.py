"""COCO evaluation: the detections of validation during training, and :func:`evaluate`, the one evaluation of a
checkpoint, an exported file or a model (``ssdlite-eval --model``).

Validation and the evaluation of a checkpoint run the network on the evaluation transform's batches (resize to
S x S, scale to [-1, 1]), decode with :func:`ssdlite.core.postprocess.postprocess_detections` with the evaluation
settings (``ssdlite.core.postprocess.EVALUATION_POSTPROCESS``: score threshold 0.001, 300 per class and per image)
back to the original image sizes, and convert to COCO results with the dataset's own category ids -- so the AP that
``ssdlite-eval --model best.ckpt`` reports is the AP the training run logged for it. An exported file runs through
the runtime's Predictor over the image files instead (``ssdlite.deploy.evaluate``), with the same settings; both
are then scored and reported alike.

An image that cannot be read reaches both as its dataset's placeholder (``unreadable`` in the batch, see
``DetectionDataset``): its detections are dropped, so it is scored once, as an image with no detections (its ground
truth counts as missed), and the evaluation names it (:func:`ssdlite.evaluation.unreadable_images_note`).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ssdlite.core.postprocess import EVALUATION_POSTPROCESS, PostprocessSettings, postprocess_detections
from ssdlite.deploy.evaluate import EVALUATION_SETTINGS, PredictedResults, predict_coco_results
from ssdlite.deploy.model_files import EXPORTED_FOR_BACKEND, export_for_predictor
from ssdlite.evaluation import CocoEvaluator, report_with_errors, unreadable_images_note
from ssdlite.evaluation.confusion import DEFAULT_SCORE_THRESHOLD
from ssdlite_runtime.backends.base import APPLE_ONLY_SUFFIXES, file_kind
from ssdlite_runtime.predictor import AUTO_BACKEND, Predictor
from ssdlite_runtime.records import predictions_to_coco_results

logger = logging.getLogger(__name__)


@torch.no_grad()
def detect_batch(
    model: nn.Module,
    images: Tensor,
    original_sizes: Tensor,
    settings: PostprocessSettings = EVALUATION_POSTPROCESS,
) -> list[dict[str, Tensor]]:
    """Runs ``model`` and decodes its output.

    Args:
        model: an SSDLite (``anchors`` buffer, output dict with ``cls_logits`` and ``box_deltas``).
        images: Tensor[B, 3, S, S] in [-1, 1].
        original_sizes: Tensor[B, 2] (h, w) of the images before resizing, in pixels.
        settings: post-processing thresholds (default: the evaluation settings).

    Returns:
        Per image: ``boxes`` Tensor[D, 4] xyxy in original pixels, ``scores`` Tensor[D], ``labels`` Tensor[D] in 1..K.
    """
    outputs = model(images)
    return postprocess_detections(
        outputs["cls_logits"].float(),
        outputs["box_deltas"].float(),
        model.anchors,
        original_sizes.to(images.device),
        **asdict(settings),
    )


def batch_coco_results(
    model: nn.Module,
    batch: Mapping[str, Tensor],
    category_ids: Sequence[int],
    settings: PostprocessSettings = EVALUATION_POSTPROCESS,
) -> list[dict[str, Any]]:
    """COCO results (``image_id, category_id, bbox [x, y, w, h], score``) of one collated batch.

    The images flagged ``unreadable`` (bool Tensor[B], placeholders of images that could not be read) get no
    results: they are scored as images with no detections.
    """
    predictions = detect_batch(model, batch["images"], batch["orig_sizes"], settings)
    unreadable = set(unreadable_image_ids(batch))
    results = predictions_to_coco_results(predictions, batch["image_ids"].cpu(), category_ids)
    return [result for result in results if result["image_id"] not in unreadable] if unreadable else results


def unreadable_image_ids(batch: Mapping[str, Tensor]) -> list[int]:
    """The ``image_ids`` of a collated batch's placeholders, the images that could not be read."""
    unreadable = batch.get("unreadable")
    if unreadable is None:
        return []
    return batch["image_ids"].cpu()[unreadable.cpu()].tolist()


@dataclass
class DatasetDetections:
    """What :func:`dataset_coco_results` returns.

    Attributes:
        results: COCO results (``image_id, category_id, bbox [x, y, w, h], score``) of every readable image.
        unreadable_image_ids: the images that could not be read; they have no results (scored with no detections).
    """

    results: list[dict[str, Any]] = field(default_factory=list)
    unreadable_image_ids: list[int] = field(default_factory=list)


def dataset_coco_results(
    model: nn.Module,
    batches: Iterable[Mapping[str, Tensor]],
    category_ids: Sequence[int],
    *,
    device: str | torch.device = "cpu",
    settings: PostprocessSettings = EVALUATION_POSTPROCESS,
) -> DatasetDetections:
    """COCO results of every batch of ``batches`` (a DataLoader with ``collate_detections``)."""
    model = model.eval().to(device)
    detections = DatasetDetections()
    for batch in batches:
        batch = {key: value.to(device) for key, value in batch.items()}
        detections.results.extend(batch_coco_results(model, batch, category_ids, settings))
        detections.unreadable_image_ids.extend(unreadable_image_ids(batch))
    return detections


def evaluate(
    model: str | Path | nn.Module | Predictor,
    *,
    annotations: str | Path,
    images: str | Path,
    out_dir: str | Path | None = None,
    backend: str | None = None,
    evaluator: str = "pycocotools",
    calibration_images: str | Path | None = None,
    class_names: Sequence[str] | None = None,
    category_ids: Sequence[int] | None = None,
    batch_size: int = 8,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
) -> dict[str, Any]:
    """COCO metrics of a model on a dataset, and its report: what ``ssdlite-eval --model`` does, for any model.

    How the detections are made depends on what ``model`` is, always with the evaluation postprocessing
    (``EVALUATION_POSTPROCESS``) and the dataset's own category ids:

    * a training checkpoint or an ``SSDLite``, ``backend`` None: as validation during training makes them (the
      evaluation transform's batches, :func:`dataset_coco_results`), so the AP of ``best.ckpt`` is the AP its run
      logged;
    * an exported file (.onnx, .xml, .tflite, .ncnn.param, ...), or any model given a ``backend`` ("eager", "ort",
      "int8", ...): the runtime's Predictor over the image files (``ssdlite.deploy.evaluate``); a checkpoint or
      model is first exported for "ort" / "int8" (``export_for_predictor``) into a temporary folder;
    * a Predictor (built with ``ssdlite.deploy.evaluate.EVALUATION_SETTINGS``): it, over the image files.

    Args:
        model: a training checkpoint, an exported file, an ``SSDLite`` or a Predictor.
        annotations: the COCO ground-truth JSON (the model's category ids must be among its own).
        images: the folder its ``file_name`` entries are relative to.
        out_dir: report folder: metrics.json, detections.json, per_class_ap.csv, per_class_ap.png, pr_curve.png,
            and the error analysis: confusion_matrix.csv/.png, errors.png, errors.html (None: no report, the
            metrics only; see ``ssdlite.evaluation.report``).
        backend: run ``model`` through the Predictor with this runtime backend (None: validation's path for a
            checkpoint or model, the file's own backend for an exported file).
        evaluator: the COCO library, "pycocotools" or "faster" (faster-coco-eval, the same numbers).
        calibration_images: INT8 calibration folder, for ``backend="int8"`` with a checkpoint or model.
        class_names, category_ids: the labels of an ``SSDLite`` (default: "1".."K" and 1..K; a file has its own).
        batch_size, num_workers: images per forward pass and DataLoader workers (validation's path).
        device: where a checkpoint or model runs (validation's path and the eager backend).
        score_threshold: the lowest score the confusion matrix counts and the error gallery draws (with out_dir).

    Returns:
        The metrics dict of :meth:`CocoEvaluator.evaluate`, with ``unreadable_images``: the file names of the images
        that could not be read, scored as images with no detections (also logged as a warning); with ``out_dir``
        also the error analysis (``errors``, ``AP_by_objects_per_image``, ``confusion_matrix``, and ``analysis``,
        the ``ErrorAnalysis``).

    Raises:
        FileNotFoundError: a missing model file, annotation file or image folder.
        ValueError: a file that is not what it should be (not a checkpoint, not COCO), a Predictor without the
            evaluation settings, or a model whose category ids are not those of the ground truth.
    """
    coco = CocoEvaluator(annotations, backend=evaluator)
    if isinstance(model, Predictor):
        detections = _predictor_detections(model, coco, annotations, images)
    elif backend is None and _runs_as_in_validation(model):
        detections = _validation_detections(
            model, coco, annotations, images, category_ids=category_ids, batch_size=batch_size,
            num_workers=num_workers, device=device,
        )
    else:
        detections = _deployed_detections(
            model, backend, coco, annotations, images, calibration_images=calibration_images,
            class_names=class_names, category_ids=category_ids, device=device,
        )
    if detections.unreadable_images:
        logger.warning(unreadable_images_note(detections.unreadable_images))
    evaluation = coco.run(detections.results)
    extra = {"unreadable_images": detections.unreadable_images}
    if out_dir is None:
        return {**evaluation.metrics, **extra}
    return report_with_errors(coco, evaluation, out_dir, images_dir=images,
                              score_threshold=score_threshold, extra_metrics=extra, detections=detections.results)


def _runs_as_in_validation(model: str | Path | nn.Module) -> bool:
    """An ``SSDLite``, or a file named as a training checkpoint (no runtime backend claims its name)."""
    return isinstance(model, nn.Module) or not _is_exported_file(model)


def _is_exported_file(model: Any) -> bool:
    """A path whose name a runtime backend other than eager claims (.onnx, .xml, ...), or a Core ML file."""
    if not isinstance(model, (str, os.PathLike)):
        return False
    return file_kind(model) is not None or str(model).lower().endswith(APPLE_ONLY_SUFFIXES)


def _check_category_ids(source: str, category_ids: Sequence[int], coco: CocoEvaluator, annotations: Any) -> None:
    unknown = sorted(set(category_ids) - set(coco.category_ids))
    if unknown:
        raise ValueError(
            f"{source} predicts category ids {unknown} that {str(annotations)!r} does not have (it has "
            f"{coco.category_ids[:10]}); evaluate on the dataset the model was trained for"
        )


def _validation_detections(
    model: str | Path | nn.Module,
    coco: CocoEvaluator,
    annotations: str | Path,
    images: str | Path,
    *,
    category_ids: Sequence[int] | None,
    batch_size: int,
    num_workers: int,
    device: str | torch.device,
) -> PredictedResults:
    """Detections as validation during training makes them: the evaluation transform's batches through the model."""
    from ssdlite.data.coco import CocoDetection
    from ssdlite.data.transforms import collate_detections, eval_transforms
    from ssdlite.deploy.model_files import load_checkpoint_for_inference

    if isinstance(model, nn.Module):
        source = f"the {type(model).__name__} model"
        category_ids = list(category_ids or range(1, model.num_classes + 1))
    else:
        source = f"checkpoint {str(model)!r}"
        model, meta = load_checkpoint_for_inference(model, map_location="cpu")
        category_ids = meta["category_ids"]
    _check_category_ids(source, category_ids, coco, annotations)
    dataset = CocoDetection(images, annotations, transform=eval_transforms(int(model.image_size)))
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate_detections
    )
    detections = dataset_coco_results(model, loader, category_ids, device=device)
    file_name_of = {record.image_id: record.file_name for record in dataset.records}
    unreadable = [file_name_of[image_id] for image_id in sorted(set(detections.unreadable_image_ids))]
    return PredictedResults(detections.results, unreadable)


def _deployed_detections(
    model: str | Path | nn.Module,
    backend: str | None,
    coco: CocoEvaluator,
    annotations: str | Path,
    images: str | Path,
    *,
    calibration_images: str | Path | None,
    class_names: Sequence[str] | None,
    category_ids: Sequence[int] | None,
    device: str | torch.device,
) -> PredictedResults:
    """Detections of a model file or model through the runtime's Predictor with ``backend`` (None: the file's);
    a checkpoint or model given "ort" / "int8" is exported for it into a folder that lives for this evaluation."""
    source = f"model {str(model)!r}" if isinstance(model, (str, os.PathLike)) else None
    with tempfile.TemporaryDirectory(prefix="ssdlite_eval_") as scratch:
        if backend in EXPORTED_FOR_BACKEND and not _is_exported_file(model):
            model = export_for_predictor(
                model, backend, scratch, calibration_images=calibration_images, class_names=class_names,
                category_ids=category_ids,
            )
        labels = {"class_names": class_names, "category_ids": category_ids} if isinstance(model, nn.Module) else {}
        predictor = Predictor(model, backend=backend or AUTO_BACKEND, device=str(device), **EVALUATION_SETTINGS,
                              **labels)
        return _predictor_detections(predictor, coco, annotations, images, source=source)


def _predictor_detections(
    predictor: Predictor, coco: CocoEvaluator, annotations: str | Path, images: str | Path, *, source: str | None = None
) -> PredictedResults:
    """Detections of the deployment path: the Predictor over the image files, with the evaluation settings.
    ``source`` names the model in messages (default: the backend's file, else its description)."""
    if asdict(predictor.postprocess) != EVALUATION_SETTINGS:
        raise ValueError(
            f"the Predictor's postprocessing is {predictor.postprocess}, not the evaluation settings; build it with "
            "Predictor(..., **ssdlite.deploy.evaluate.EVALUATION_SETTINGS) for an AP comparable with validation's"
        )
    if source is None:
        path = getattr(predictor.backend, "path", None)
        source = f"model {str(path)!r}" if path is not None else f"the {predictor.backend.describe()} model"
    _check_category_ids(source, predictor.category_ids, coco, annotations)
    return predict_coco_results(predictor, annotations, images)
