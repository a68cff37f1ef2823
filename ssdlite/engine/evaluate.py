"""Detections for COCO evaluation: one code path for validation during training and for ``tools/eval_coco.py``.

Both run the network on the evaluation transform's batches (resize to S x S, scale to [-1, 1]), decode with
:func:`ssdlite.core.postprocess.postprocess_detections` with the evaluation settings
(``ssdlite.core.postprocess.EVALUATION_POSTPROCESS``: score threshold 0.001, 300 per class and per image) back to
the original image sizes, and convert to COCO results with the dataset's own category ids -- so the AP that
``eval_coco.py --checkpoint`` reports for ``best.ckpt`` is the AP the training run logged for it.

An image that cannot be read reaches both as its dataset's placeholder (``unreadable`` in the batch, see
``DetectionDataset``): its detections are dropped, so it is scored once, as an image with no detections (its ground
truth counts as missed), and the evaluation names it (:func:`ssdlite.evaluation.unreadable_images_note`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ssdlite.core.postprocess import EVALUATION_POSTPROCESS, PostprocessSettings, postprocess_detections
from ssdlite.evaluation import CocoEvaluator, unreadable_images_note, write_report
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


def evaluate_checkpoint(
    checkpoint: str | Path,
    *,
    annotations: str | Path,
    images: str | Path,
    out_dir: str | Path,
    backend: str = "pycocotools",
    batch_size: int = 8,
    num_workers: int = 0,
    device: str | torch.device = "cpu",
) -> dict[str, Any]:
    """Runs a checkpoint over the images of a COCO ground-truth file and writes the evaluation report.

    Args:
        checkpoint: a training checkpoint (EMA weights when present; see ``load_checkpoint``).
        annotations: the COCO ground-truth JSON (its category ids must be the checkpoint's ``category_ids``).
        images: the folder its ``file_name`` entries are relative to.
        out_dir: report folder: metrics.json, detections.json, per_class_ap.csv, per_class_ap.png, pr_curve.png.
        backend: COCO evaluation backend, "pycocotools" or "faster".
        batch_size: images per forward pass.
        num_workers: DataLoader workers reading the images.
        device: where the model runs.

    Returns:
        The metrics dict of :meth:`CocoEvaluator.evaluate`, with ``unreadable_images``: the file names of the images
        that could not be read, scored as images with no detections (also logged as a warning).

    Raises:
        FileNotFoundError: a missing checkpoint, annotation file or image folder.
        ValueError: a file that is not what it should be (not a checkpoint, not COCO), or a checkpoint whose
            category ids are not those of the ground truth.
    """
    from ssdlite.data.coco import CocoDetection
    from ssdlite.data.transforms import collate_detections, eval_transforms
    from ssdlite.models import load_checkpoint

    evaluator = CocoEvaluator(annotations, backend=backend)
    model, meta = load_checkpoint(checkpoint, map_location="cpu")
    unknown = sorted(set(meta["category_ids"]) - set(evaluator.category_ids))
    if unknown:
        raise ValueError(
            f"checkpoint {str(checkpoint)!r} predicts category ids {unknown} that {str(annotations)!r} does not "
            f"have (it has {evaluator.category_ids[:10]}); evaluate on the dataset the model was trained for"
        )
    dataset = CocoDetection(images, annotations, transform=eval_transforms(meta["image_size"]))
    loader = DataLoader(
        dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate_detections
    )
    detections = dataset_coco_results(model, loader, meta["category_ids"], device=device)
    evaluation = evaluator.run(detections.results)
    file_name_of = {record.image_id: record.file_name for record in dataset.records}
    unreadable = [file_name_of[image_id] for image_id in sorted(set(detections.unreadable_image_ids))]
    if unreadable:
        logger.warning(unreadable_images_note(unreadable))
    metrics = {**evaluation.metrics, "unreadable_images": unreadable}
    write_report(metrics, out_dir, coco_eval=evaluation.coco_eval, detections=detections.results)
    return metrics
