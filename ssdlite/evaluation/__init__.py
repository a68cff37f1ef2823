"""How good a detector is and where it fails: COCO metrics (pycocotools / faster-coco-eval), VOC AP@0.5, the confusion
matrix, TIDE's error breakdown, plots, reports and the error gallery."""

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
    ErrorAnalysis,
    analyse_errors,
    evaluate_results_file,
    format_coco_table,
    format_voc_lines,
    report_with_errors,
    unreadable_images_note,
    write_error_analysis,
    write_report,
)

__all__ = [
    "BACKENDS",
    "COCO_METRIC_NAMES",
    "VOC_METRIC_NAMES",
    "CocoEvaluation",
    "CocoEvaluator",
    "ErrorAnalysis",
    "PrecisionRecallCurves",
    "analyse_errors",
    "evaluate_results_file",
    "format_coco_table",
    "format_voc_lines",
    "load_results",
    "plot_per_class_ap",
    "plot_precision_recall",
    "report_with_errors",
    "unreadable_images_note",
    "write_error_analysis",
    "write_report",
]
