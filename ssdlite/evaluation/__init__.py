"""How good a detector is: COCO metrics (pycocotools / faster-coco-eval), VOC AP@0.5, plots and reports."""

from ssdlite.evaluation.coco import (
    BACKENDS,
    COCO_METRIC_NAMES,
    VOC_METRIC_NAMES,
    CocoEvaluation,
    CocoEvaluator,
    load_results,
)
from ssdlite.evaluation.plots import PrecisionRecallCurves, plot_per_class_ap, plot_precision_recall
from ssdlite.evaluation.report import (
    evaluate_results_file,
    format_coco_table,
    format_voc_lines,
    unreadable_images_note,
    write_report,
)

__all__ = [
    "BACKENDS",
    "COCO_METRIC_NAMES",
    "VOC_METRIC_NAMES",
    "CocoEvaluation",
    "CocoEvaluator",
    "PrecisionRecallCurves",
    "evaluate_results_file",
    "format_coco_table",
    "format_voc_lines",
    "load_results",
    "plot_per_class_ap",
    "plot_precision_recall",
    "unreadable_images_note",
    "write_report",
]
