"""Evaluation figures: precision-recall curves, per-class AP bars, the confusion matrix and the error breakdown (PNG, matplotlib's Agg canvas).

Figures are drawn on ``matplotlib.figure.Figure`` objects directly, never through pyplot, so plotting neither
needs a display nor changes the caller's matplotlib backend, and leaves no open figures behind.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ssdlite.evaluation.confusion import ConfusionMatrix
from ssdlite.evaluation.errors import COLOURS, ERROR_NAMES, ERROR_TYPES, ErrorBreakdown

# Per-class PR lines are drawn only up to this many classes; beyond it the plot shows the class mean only.
MAX_CLASS_LINES = 10
_DPI = 100
_MEAN_LINE_STYLES = ("-", "--", ":", "-.")


@dataclass(frozen=True)
class PrecisionRecallCurves:
    """COCOeval's interpolated precision for area "all" and 100 detections per image.

    Attributes:
        precision (ndarray[T, R, K]): precision at each IoU threshold, recall point and class; -1 where the
            class has no ground truth.
        recall_points (ndarray[R]): the recall values (COCO: 0, 0.01, ..., 1).
        iou_thresholds (ndarray[T]): the IoU thresholds (COCO: 0.50, 0.55, ..., 0.95).
        class_names (list[str]): name of each of the K classes.
    """

    precision: np.ndarray
    recall_points: np.ndarray
    iou_thresholds: np.ndarray
    class_names: list[str]

    @classmethod
    def from_coco_eval(cls, coco_eval: Any) -> PrecisionRecallCurves:
        """Read the curves of an accumulated pycocotools / faster-coco-eval COCOeval."""
        params = coco_eval.params
        categories = coco_eval.cocoGt.cats
        return cls(
            precision=np.asarray(coco_eval.eval["precision"])[:, :, :, 0, -1],
            recall_points=np.asarray(params.recThrs),
            iou_thresholds=np.asarray(params.iouThrs),
            class_names=[str(categories[i].get("name", i)) for i in params.catIds],
        )

    def at_iou(self, iou_threshold: float) -> np.ndarray:
        """Precision [R, K] at one IoU threshold."""
        matches = np.flatnonzero(np.isclose(self.iou_thresholds, iou_threshold))
        if not matches.size:
            raise ValueError(f"IoU {iou_threshold} is not among the evaluated thresholds {self.iou_thresholds}.")
        return self.precision[matches[0]]


def plot_precision_recall(
    curves: PrecisionRecallCurves,
    path: str | os.PathLike,
    *,
    iou_thresholds: Sequence[float] = (0.5, 0.75),
    max_class_lines: int = MAX_CLASS_LINES,
) -> Path:
    """Draw the class-mean PR curve at each IoU threshold, plus one line per class at the first threshold.

    Args:
        curves (PrecisionRecallCurves): COCOeval's precision.
        path (str | Path): PNG to write.
        iou_thresholds (Sequence[float]): thresholds of the mean curves.
        max_class_lines (int): per-class lines are drawn only when there are at most this many classes.

    Returns:
        Path: the written file.
    """
    figure, axes = _figure((6.4, 5.2))
    measured_classes = (curves.precision > -1).any(axis=(0, 1))
    if len(curves.class_names) <= max_class_lines:
        precision = curves.at_iou(iou_thresholds[0])
        for index in np.flatnonzero(measured_classes):
            ap = precision[:, index].mean()
            axes.plot(curves.recall_points, precision[:, index], linewidth=0.8, alpha=0.6,
                      label=f"{curves.class_names[index]} (AP{_percent(iou_thresholds[0])} {ap:.3f})")
    for iou_threshold, line_style in zip(iou_thresholds, itertools.cycle(_MEAN_LINE_STYLES)):
        mean = _class_mean(curves.at_iou(iou_threshold)[:, measured_classes])
        axes.plot(curves.recall_points, mean, color="black", linestyle=line_style, linewidth=2.0,
                  label=f"all classes, IoU {iou_threshold:.2f} (AP {mean.mean():.3f})")
    axes.set(xlabel="Recall", ylabel="Precision", xlim=(0, 1), ylim=(0, 1.02),
             title="Precision-recall (COCO interpolation, area all, 100 detections)")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper right", fontsize=7)
    return _save(figure, path)


def plot_per_class_ap(per_class_ap: Mapping[str, float], path: str | os.PathLike) -> Path:
    """Horizontal bar chart of AP per class, best first.

    Args:
        per_class_ap (Mapping[str, float]): class name -> AP (IoU 0.50:0.95).
        path (str | Path): PNG to write.

    Returns:
        Path: the written file.
    """
    ranked = sorted(per_class_ap.items(), key=lambda item: item[1], reverse=True)
    figure, axes = _figure((6.4, 1.2 + 0.22 * max(len(ranked), 1)))
    if ranked:
        names, values = zip(*ranked)
        positions = np.arange(len(ranked))
        axes.barh(positions, values, color="tab:blue")
        axes.set_yticks(positions, labels=names, fontsize=7 if len(ranked) > 30 else 9)
        axes.invert_yaxis()
        for position, value in zip(positions, values):
            axes.text(value + 0.005, position, f"{value:.3f}", va="center", fontsize=7)
    else:
        axes.text(0.5, 0.5, "no class with ground truth", ha="center", va="center")
    axes.set(xlim=(0, 1), xlabel="AP @[IoU 0.50:0.95]", title="AP per class")
    return _save(figure, path)


def plot_confusion_matrix(matrix: ConfusionMatrix, path: str | os.PathLike) -> Path:
    """The confusion matrix twice, side by side: counts, and each row normalised by its true class.

    Args:
        matrix: see :mod:`ssdlite.evaluation.confusion`.
        path: PNG to write.
    """
    labels, size = matrix.labels, len(matrix.labels)
    side = min(3.0 + 0.45 * size, 14.0)
    figure = Figure(figsize=(2 * side + 1.0, side + 0.6), dpi=_DPI)
    FigureCanvasAgg(figure)
    panels = (("counts", matrix.counts, "d"), ("normalised by true class", matrix.normalized(), ".2f"))
    for position, (title, values, number_format) in enumerate(panels, start=1):
        axes = figure.add_subplot(1, 2, position)
        axes.imshow(values / max(values.max(), 1e-12), cmap="Blues", vmin=0, vmax=1)
        axes.set_xticks(range(size), labels=labels, rotation=90, fontsize=8)
        axes.set_yticks(range(size), labels=labels, fontsize=8)
        axes.set(xlabel="predicted", ylabel="true",
                 title=f"{title} (score >= {matrix.score_threshold:g}, IoU >= {matrix.iou_threshold:g})")
        if size <= 30:
            for (row, column), value in np.ndenumerate(values):
                if value:
                    dark = value / max(values.max(), 1e-12) > 0.5
                    axes.text(column, row, format(value, number_format), ha="center", va="center", fontsize=7,
                              color="white" if dark else "black")
    return _save(figure, path)


def plot_error_breakdown(breakdown: ErrorBreakdown, path: str | os.PathLike) -> Path:
    """Bars of TIDE's dAP per error type (the AP50 gained if that type were fixed), with the error counts."""
    figure, axes = _figure((6.4, 3.6))
    names = [ERROR_NAMES[name] for name in ERROR_TYPES]
    values = [breakdown.delta_ap[name] for name in ERROR_TYPES]
    positions = np.arange(len(names))
    axes.bar(positions, values, color=[COLOURS[name] for name in ERROR_TYPES])
    for position, name, value in zip(positions, ERROR_TYPES, values):
        axes.text(position, value, f"{value:.3f}\n({breakdown.counts[name]})", ha="center", va="bottom", fontsize=7)
    axes.set_xticks(positions, labels=names, fontsize=8)
    axes.set(ylabel="dAP (AP50 gained)", ylim=(0, max(max(values) * 1.3, 0.01)),
             title=f"Errors by type (TIDE), AP50 {breakdown.ap50:.3f}")
    return _save(figure, path)


def _class_mean(precision: np.ndarray) -> np.ndarray:
    """Mean over classes [R, K] -> [R]; zeros when no class has ground truth."""
    return precision.mean(axis=1) if precision.shape[1] else np.zeros(precision.shape[0])


def _percent(iou_threshold: float) -> str:
    return str(round(iou_threshold * 100))


def _figure(size: tuple[float, float]) -> tuple[Figure, Any]:
    figure = Figure(figsize=size, dpi=_DPI)
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _save(figure: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, format="png")
    return path
