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
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ssdlite.evaluation.coco import CocoEvaluator
from ssdlite.evaluation.plots import PrecisionRecallCurves, plot_per_class_ap, plot_precision_recall

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
) -> dict[str, Any]:
    """Evaluate a COCO results file against a COCO ground-truth file and write the report.

    Args:
        annotation_file (str | Path): COCO ground truth JSON.
        results_file (str | Path): COCO results JSON (a list of {image_id, category_id, bbox, score}).
        out_dir (str | Path): report directory (see :func:`write_report`); the results file is not copied.
        backend (str): "pycocotools" or "faster".

    Returns:
        dict: the metrics.

    Raises:
        FileNotFoundError: a file does not exist.
        ValueError: a file is malformed or the results name ids that are not in the ground truth.
    """
    evaluation = CocoEvaluator(annotation_file, backend=backend).run(results_file)
    write_report(evaluation.metrics, out_dir, coco_eval=evaluation.coco_eval)
    return evaluation.metrics


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
