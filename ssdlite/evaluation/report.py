"""Evaluation reports: the COCO summary table and the files of an evaluation run.

``write_report`` writes into ``out_dir``:

* ``metrics.json``: the metrics dict of :meth:`CocoEvaluator.evaluate` (12 COCO numbers, VOC07_AP50,
  VOC12_AP50, per_class_AP; in checkpoint mode also ``unreadable_images``, the file names of the images that could
  not be read and were scored with no detections, see :func:`unreadable_images_note`);
* ``per_class_ap.csv``: ``class,AP`` one row per class with ground truth;
* ``per_class_ap.png``: AP per class, bars;
* ``pr_curve.png``: precision-recall curves, only when the COCOeval object is given (the metrics alone do not
  hold the curves);
* ``detections.json``: only when the detections are given (checkpoint mode writes the detections it made;
  results-file mode does not copy a file that already exists).

``write_error_analysis`` adds where the model fails (:func:`analyse_errors`):

* ``confusion_matrix.csv`` and ``confusion_matrix.png``: the (K+1) x (K+1) matrix, background included, at a score
  threshold (default 0.25) and IoU 0.5 (:mod:`ssdlite.evaluation.confusion`); the PNG has the counts and the rows
  normalised by true class;
* ``errors.png``: TIDE's error breakdown, the AP50 each error type costs (:mod:`ssdlite.evaluation.errors`);
* in ``metrics.json``: ``errors`` (the breakdown), ``AP_by_objects_per_image`` and ``confusion_matrix``;
* ``errors.html``: the error gallery, when the images are at hand (:mod:`ssdlite.evaluation.error_gallery`).
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ssdlite.evaluation.coco import CocoEvaluation, CocoEvaluator
from ssdlite.evaluation.confusion import DEFAULT_SCORE_THRESHOLD, ConfusionMatrix, confusion_matrix
from ssdlite.evaluation.errors import ErrorBreakdown, error_breakdown
from ssdlite.evaluation.plots import (
    PrecisionRecallCurves,
    plot_confusion_matrix,
    plot_error_breakdown,
    plot_per_class_ap,
    plot_precision_recall,
)
from ssdlite.evaluation.voc import BoxTable

# (metric key, AP or AR, IoU, area, max detections): the rows of COCOeval.summarize() for boxes.
COCO_TABLE_ROWS = (
    ("AP", "AP", "0.50:0.95", "all", 100),
    ("AP50", "AP", "0.50", "all", 100),
    ("AP75", "AP", "0.75", "all", 100),
    ("APs", "AP", "0.50:0.95", "small", 100),
    ("APm", "AP", "0.50:0.95", "medium", 100),
    ("APl", "AP", "0.50:0.95", "large", 100),
    ("AR1", "AR", "0.50:0.95", "all", 1),
    ("AR10", "AR", "0.50:0.95", "all", 10),
    ("AR100", "AR", "0.50:0.95", "all", 100),
    ("ARs", "AR", "0.50:0.95", "small", 100),
    ("ARm", "AR", "0.50:0.95", "medium", 100),
    ("ARl", "AR", "0.50:0.95", "large", 100),
)


def format_coco_table(metrics: Mapping[str, Any]) -> str:
    """The 12-line summary that COCOeval.summarize() prints, from a metrics dict.

    Args:
        metrics (Mapping[str, Any]): at least the keys AP ... ARl.

    Returns:
        str: 12 lines, no trailing newline, formatted exactly like pycocotools.
    """
    lines = []
    for key, kind, iou, area, max_detections in COCO_TABLE_ROWS:
        title = "Average Precision" if kind == "AP" else "Average Recall"
        lines.append(
            f" {title:<18} ({kind}) @[ IoU={iou:<9} | area={area:>6s} | maxDets={max_detections:>3d} ] = "
            f"{metrics[key]:0.3f}"
        )
    return "\n".join(lines)


def unreadable_images_note(file_names: Sequence[str], *, shown: int = 20) -> str:
    """The line that names the images an evaluation could not read (each scored as an image with no detections).

    Args:
        file_names: the images' ``file_name`` entries.
        shown: how many names to list before "and N more".

    Returns:
        str: e.g. "2 images could not be read and were scored with no detections: a.jpg, b.jpg".
    """
    names = ", ".join(file_names[:shown]) + (f" and {len(file_names) - shown} more" if len(file_names) > shown else "")
    count = len(file_names)
    return f"{count} image{'s' if count != 1 else ''} could not be read and {'were' if count != 1 else 'was'} scored " \
           f"with no detections: {names}"


def format_voc_lines(metrics: Mapping[str, Any]) -> str:
    """Two lines with the VOC-style AP at IoU 0.5."""
    return (f" VOC07 11-point AP @[ IoU=0.50 ] = {metrics['VOC07_AP50']:0.3f}\n"
            f" VOC12 all-point AP @[ IoU=0.50 ] = {metrics['VOC12_AP50']:0.3f}")


def write_report(
    metrics: Mapping[str, Any],
    out_dir: str | os.PathLike,
    *,
    coco_eval: Any = None,
    detections: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Path]:
    """Write the files of one evaluation (see the module docstring).

    Args:
        metrics (Mapping[str, Any]): output of :meth:`CocoEvaluator.evaluate`.
        out_dir (str | Path): directory, created if missing; existing report files are overwritten.
        coco_eval: the accumulated COCOeval (``CocoEvaluator.run(...).coco_eval``); enables ``pr_curve.png``.
        detections (list[dict] | None): COCO results to save as ``detections.json``.

    Returns:
        dict[str, Path]: written files by name (``metrics``, ``per_class_csv``, ``per_class_plot``, and
        ``pr_curve`` / ``detections`` when written).
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {"metrics": _write_json(dict(metrics), out_dir / "metrics.json")}
    per_class_ap = metrics.get("per_class_AP", {})
    written["per_class_csv"] = _write_per_class_csv(per_class_ap, out_dir / "per_class_ap.csv")
    written["per_class_plot"] = plot_per_class_ap(per_class_ap, out_dir / "per_class_ap.png")
    if coco_eval is not None:
        curves = PrecisionRecallCurves.from_coco_eval(coco_eval)
        written["pr_curve"] = plot_precision_recall(curves, out_dir / "pr_curve.png")
    if detections is not None:
        written["detections"] = _write_json(list(detections), out_dir / "detections.json", indent=None)
    return written


def evaluate_results_file(
    annotation_file: str | os.PathLike,
    results_file: str | os.PathLike,
    *,
    out_dir: str | os.PathLike,
    backend: str = "pycocotools",
    images_dir: str | os.PathLike | None = None,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
) -> dict[str, Any]:
    """Evaluate a COCO results file against a COCO ground-truth file and write the report, with the error analysis.

    Args:
        annotation_file (str | Path): COCO ground truth JSON.
        results_file (str | Path): COCO results JSON (a list of {image_id, category_id, bbox, score}).
        out_dir (str | Path): report directory (see :func:`write_report`); the results file is not copied.
        backend (str): "pycocotools" or "faster".
        images_dir: the images of the ground truth, for errors.html (None: no gallery).
        score_threshold: the confusion matrix's and the gallery's lowest score.

    Returns:
        dict: the metrics, with the entries of :meth:`ErrorAnalysis.as_dict` and ``analysis`` (the
        ErrorAnalysis itself, not written to metrics.json).

    Raises:
        FileNotFoundError: a file or the image folder does not exist.
        ValueError: a file is malformed or the results name ids that are not in the ground truth.
    """
    if images_dir is not None and not Path(images_dir).is_dir():
        raise FileNotFoundError(f"image folder {str(images_dir)!r} does not exist; --images is the folder the ground "
                                "truth's file_name entries are relative to (leave it out for no error gallery)")
    evaluator = CocoEvaluator(annotation_file, backend=backend)
    evaluation = evaluator.run(results_file)
    return report_with_errors(evaluator, evaluation, out_dir, images_dir=images_dir, score_threshold=score_threshold)


def report_with_errors(
    evaluator: CocoEvaluator,
    evaluation: CocoEvaluation,
    out_dir: str | os.PathLike,
    *,
    images_dir: str | os.PathLike | None = None,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
    extra_metrics: Mapping[str, Any] | None = None,
    detections: Sequence[Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """The whole report of one evaluation (``evaluator.run(...)``): :func:`write_report` with the error analysis's
    files and entries added. Returns the metrics, ``extra_metrics`` and ``analysis``."""
    analysis = analyse_errors(evaluator, evaluation.detections, score_threshold=score_threshold)
    write_error_analysis(analysis, evaluator, out_dir, images_dir=images_dir)
    metrics = {**evaluation.metrics, **(extra_metrics or {}), **analysis.as_dict()}
    write_report(metrics, out_dir, coco_eval=evaluation.coco_eval, detections=detections)
    return {**metrics, "analysis": analysis}


# Images grouped by how many objects (non-crowd ground truth) they hold: (label, fewest, most or None).
OBJECT_COUNT_BINS = (("1", 1, 1), ("2-5", 2, 5), ("6-10", 6, 10), (">10", 11, None))
# COCO's area buckets (pixels^2): small < 32^2 <= medium < 96^2 <= large.
SIZE_BUCKETS = (("small", "APs", 0.0, 32.0**2), ("medium", "APm", 32.0**2, 96.0**2), ("large", "APl", 96.0**2, np.inf))


@dataclass(frozen=True)
class ErrorAnalysis:
    """Where a model fails on one dataset: see :func:`analyse_errors`."""

    confusion: ConfusionMatrix
    breakdown: ErrorBreakdown
    ap_by_objects_per_image: dict[str, float]
    objects_by_size: dict[str, int]
    detections: BoxTable

    def as_dict(self) -> dict[str, Any]:
        """The entries of metrics.json."""
        return {
            "errors": self.breakdown.as_dict(),
            "AP_by_objects_per_image": dict(self.ap_by_objects_per_image),
            "confusion_matrix": {"score_threshold": self.confusion.score_threshold,
                                 "iou_threshold": self.confusion.iou_threshold, "labels": self.confusion.labels,
                                 "counts": self.confusion.counts.tolist()},
        }

    def lines(self, metrics: Mapping[str, Any]) -> str:
        """The report's text: the error table, AP by object size (buckets with objects) and by objects per image."""
        sizes = "  ".join(f"{name} {metrics[key]:0.3f} ({self.objects_by_size[name]} objects)"
                          for name, key, _, _ in SIZE_BUCKETS if self.objects_by_size[name] and key in metrics)
        counts = "  ".join(f"{name}: {ap:0.3f}" for name, ap in self.ap_by_objects_per_image.items())
        return "\n".join([self.breakdown.table(), f" AP by object size:        {sizes or 'no objects'}",
                          f" AP by objects per image:  {counts or 'no objects'}"])


def analyse_errors(
    evaluator: CocoEvaluator,
    results: Sequence[Mapping[str, Any]] | str | os.PathLike | BoxTable,
    *,
    score_threshold: float = DEFAULT_SCORE_THRESHOLD,
) -> ErrorAnalysis:
    """The confusion matrix (at ``score_threshold``), TIDE's error breakdown (every detection) and the AP of the
    images grouped by their number of objects (``OBJECT_COUNT_BINS``; images without objects are in no group).
    ``results``: COCO results, or their table as :meth:`CocoEvaluator.run` already checked it."""
    detections = results if isinstance(results, BoxTable) else evaluator.detection_table(results)
    truth = evaluator.ground_truth
    image_ids = [image["id"] for image in evaluator.images]
    names = [evaluator.class_names[category] for category in evaluator.category_ids]
    matrix = confusion_matrix(truth, detections, evaluator.category_ids, names, score_threshold=score_threshold)
    objects = truth.image_ids[~truth.is_crowd]
    per_image = {image_id: int(count) for image_id, count in zip(*np.unique(objects, return_counts=True))}
    groups = {label: [i for i in image_ids if low <= per_image.get(i, 0) and (high is None or per_image[i] <= high)]
              for label, low, high in OBJECT_COUNT_BINS}
    areas = truth.areas[~truth.is_crowd]
    return ErrorAnalysis(
        confusion=matrix,
        breakdown=error_breakdown(truth, detections, image_ids),
        ap_by_objects_per_image=evaluator.ap_of_images(detections, groups),
        objects_by_size={name: int(((areas >= low) & (areas < high)).sum()) for name, _, low, high in SIZE_BUCKETS},
        detections=detections,
    )


def write_error_analysis(
    analysis: ErrorAnalysis,
    evaluator: CocoEvaluator,
    out_dir: str | os.PathLike,
    *,
    images_dir: str | os.PathLike | None = None,
) -> dict[str, Path]:
    """confusion_matrix.csv, confusion_matrix.png, errors.png and, with ``images_dir`` (the folder of the ground
    truth's ``file_name`` entries), errors.html in ``out_dir``; returns them by name."""
    from ssdlite.evaluation.error_gallery import write_error_gallery

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {
        "confusion_csv": analysis.confusion.write_csv(out_dir / "confusion_matrix.csv"),
        "confusion_plot": plot_confusion_matrix(analysis.confusion, out_dir / "confusion_matrix.png"),
        "errors_plot": plot_error_breakdown(analysis.breakdown, out_dir / "errors.png"),
    }
    if images_dir is not None:
        written["gallery"] = write_error_gallery(evaluator, analysis.detections, images_dir, out_dir / "errors.html",
                                                 score_threshold=analysis.confusion.score_threshold)
    return written


def _write_json(content: Any, path: Path, *, indent: int | None = 2) -> Path:
    with path.open("w") as file:
        json.dump(content, file, indent=indent)
        file.write("\n")
    return path


def _write_per_class_csv(per_class_ap: Mapping[str, float], path: Path) -> Path:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["class", "AP"])
        writer.writerows((name, f"{ap:.6f}") for name, ap in per_class_ap.items())
    return path
