"""COCO box evaluation: pycocotools (the reference) or faster-coco-eval (same numbers, C++ speed).

Typical use in a validation loop (load the ground truth once, evaluate every N epochs)::

    evaluator = CocoEvaluator(datamodule.val_coco_gt(), backend="faster")
    results = predictions_to_coco_results(predictions, image_ids, datamodule.category_ids)  # ssdlite_runtime.records
    metrics = evaluator.evaluate(results)   # {"AP": ..., "AP50": ..., "per_class_AP": {...}, ...}

Values that COCOeval reports as -1 ("no ground truth to measure") are mapped as follows:

* an area range (small / medium / large) without ground truth reports 0.0 for its AP and AR;
* a category without non-crowd ground truth is left out of ``per_class_AP`` (and, as in COCOeval, out of the means);
* no detections at all give 0.0 everywhere.

Both backends are run with their default COCO parameters (IoU 0.50:0.05:0.95, 101 recall points, maxDets 1/10/100,
area ranges 32^2 / 96^2) and give identical numbers (tests/evaluation/test_coco.py checks 1e-6). faster-coco-eval
needs no option for parity; its ``extra_calc`` (mIoU / mAUC) stays off.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ssdlite.evaluation.voc import BoxTable, voc_metrics

BACKENDS = ("pycocotools", "faster")
# COCOeval.stats order, bbox evaluation.
COCO_METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
VOC_METRIC_NAMES = ("VOC07_AP50", "VOC12_AP50")
RESULT_KEYS = ("image_id", "category_id", "bbox", "score")
_LISTED_IDS = 10


@dataclass(frozen=True)
class CocoEvaluation:
    """One evaluation: the metrics and the COCOeval object behind them (for PR curves).

    Attributes:
        metrics (dict): see :meth:`CocoEvaluator.evaluate`.
        coco_eval: the backend's COCOeval after ``accumulate()``/``summarize()``; ``eval["precision"]`` is
            [T=10 IoUs, R=101 recalls, K categories, A=4 areas, M=3 maxDets].
        detections: the evaluated detections as a checked table (what the error analysis reads).
    """

    metrics: dict[str, Any]
    coco_eval: Any
    detections: BoxTable | None = None


class CocoEvaluator:
    """COCO bbox metrics plus VOC-style AP@0.5 for one ground-truth set.

    The ground truth is validated, indexed and handed to the backend once; :meth:`evaluate` can then be called
    every validation epoch. The caller's ground-truth dict is not modified.

    Args:
        ground_truth (dict | str | Path | COCO): COCO-format ground truth (``images``, ``annotations``,
            ``categories``), a path to such a JSON file, or a pycocotools / faster-coco-eval ``COCO`` object.
            Missing ``area`` defaults to width * height and missing ``iscrowd`` to 0. Annotation ids that are
            not unique positive integers are renumbered 1..N (COCOeval treats id 0 as "unmatched").
        backend (str): ``"pycocotools"`` (reference) or ``"faster"`` (faster-coco-eval, same numbers).

    Raises:
        FileNotFoundError: the ground-truth file does not exist.
        ValueError: unknown backend, or the ground truth is not COCO format (message names source and key).
    """

    def __init__(self, ground_truth: dict | str | os.PathLike | Any, *, backend: str = "pycocotools"):
        if backend not in BACKENDS:
            raise ValueError(f"Unknown evaluation backend {backend!r}; choose one of {', '.join(BACKENDS)}.")
        self.backend = backend
        dataset, self.ground_truth_source = _load_ground_truth(ground_truth)
        self.category_ids: list[int] = sorted(category["id"] for category in dataset["categories"])
        self.class_names: dict[int, str] = _class_names(dataset["categories"])
        self._image_ids = np.array(sorted(image["id"] for image in dataset["images"]), dtype=np.int64)
        self._dataset = dataset
        self._ground_truth_boxes = _ground_truth_table(dataset["annotations"])
        self._coco_ground_truth = _make_coco(backend, dataset)

    def evaluate(self, results: Sequence[Mapping[str, Any]] | str | os.PathLike) -> dict[str, Any]:
        """Evaluate detections.

        Args:
            results (list[dict] | str | Path): COCO results, ``[{image_id, category_id, bbox: [x, y, w, h],
                score}, ...]`` in absolute pixels, or a path to such a JSON file. Not modified.

        Returns:
            dict: floats ``AP AP50 AP75 APs APm APl AR1 AR10 AR100 ARs ARm ARl`` (COCOeval.stats order),
            ``VOC07_AP50`` and ``VOC12_AP50``, and ``per_class_AP`` {class name: AP at IoU 0.50:0.95, area all,
            100 detections} for the categories with non-crowd ground truth, in category-id order.

        Raises:
            FileNotFoundError: the results file does not exist.
            ValueError: malformed results (not a list, a missing key, a bad box or score), or image / category
                ids that are not in the ground truth. The message names the file and the key or ids.
        """
        return self.run(results).metrics

    def run(self, results: Sequence[Mapping[str, Any]] | str | os.PathLike) -> CocoEvaluation:
        """Like :meth:`evaluate`, but also returns the COCOeval object (for plots)."""
        detection_boxes = self.detection_table(results)
        coco_eval = _run_coco_eval(self.backend, self._coco_ground_truth, self._detections_coco(detection_boxes))
        metrics: dict[str, Any] = {
            name: _measured_or_zero(value) for name, value in zip(COCO_METRIC_NAMES, coco_eval.stats[:12])
        }
        metrics.update(voc_metrics(self._ground_truth_boxes, detection_boxes))
        metrics["per_class_AP"] = self._per_class_ap(coco_eval)
        return CocoEvaluation(metrics=metrics, coco_eval=coco_eval, detections=detection_boxes)

    @property
    def ground_truth(self) -> BoxTable:
        """The ground-truth boxes (crowd regions flagged ``is_crowd``), one row per annotation, in file order."""
        return self._ground_truth_boxes

    @property
    def images(self) -> list[dict[str, Any]]:
        """The ground truth's ``images`` entries (``id``, ``file_name``, ``width``, ``height``), in file order."""
        return self._dataset["images"]

    def detection_table(self, results: Sequence[Mapping[str, Any]] | str | os.PathLike) -> BoxTable:
        """The detections of ``results`` (list or JSON file) as a table, checked: well formed, and every image and
        category id one of the ground truth's (ValueError naming the source otherwise)."""
        detections, source = load_results(results)
        detection_boxes = _detection_table(detections, source)
        self._check_known_ids(detection_boxes, source)
        return detection_boxes

    def ap_of_images(self, detections: BoxTable, image_groups: Mapping[str, Sequence[int]]) -> dict[str, float]:
        """COCO AP (IoU 0.50:0.95, area all, 100 detections) on each group of images alone: COCOeval with
        ``params.imgIds`` set to the group. A group without ground truth is left out.

        Args:
            detections: from :meth:`detection_table`.
            image_groups: group name -> image ids.
        """
        coco_detections = self._detections_coco(detections)
        aps = {}
        for name, image_ids in image_groups.items():
            if len(image_ids):
                coco_eval = _run_coco_eval(self.backend, self._coco_ground_truth, coco_detections,
                                           image_ids=sorted(int(i) for i in image_ids))
                if coco_eval.stats[0] > -1:
                    aps[name] = float(coco_eval.stats[0])
        return aps

    def _check_known_ids(self, detections: BoxTable, source: str) -> None:
        for what, ids, known, fix in (
            ("image", detections.image_ids, self._image_ids, "the ground truth's image ids"),
            ("category", detections.category_ids, np.array(self.category_ids, dtype=np.int64),
             "the dataset's category ids (not the 1..K training labels; see predictions_to_coco_results)"),
        ):
            unknown = np.setdiff1d(ids, known).tolist()
            if unknown:
                raise ValueError(
                    f"{source} names {len(unknown)} {what} id(s) that are not in the {self.ground_truth_source}: "
                    f"{_list_ids(unknown)}. Detections must use {fix}."
                )

    def _detections_coco(self, detections: BoxTable) -> Any:
        """The backend's COCO object of the detections, built as ``COCO.loadRes`` builds it (bbox results)."""
        annotations = [
            {"id": index, "image_id": image_id, "category_id": category_id, "bbox": box, "score": score,
             "area": area, "iscrowd": 0}
            for index, (image_id, category_id, box, score, area) in enumerate(
                zip(detections.image_ids.tolist(), detections.category_ids.tolist(), detections.boxes.tolist(),
                    detections.scores.tolist(), detections.areas.tolist()),
                start=1,
            )
        ]
        dataset = {"images": self._dataset["images"], "categories": self._dataset["categories"],
                   "annotations": annotations}
        return _make_coco(self.backend, dataset)

    def _per_class_ap(self, coco_eval: Any) -> dict[str, float]:
        # precision: [T, R, K, A, M]; area "all" is index 0, maxDets 100 the last.
        precision = coco_eval.eval["precision"][:, :, :, 0, -1]
        per_class = {}
        for index, category_id in enumerate(coco_eval.params.catIds):
            measured = precision[:, :, index][precision[:, :, index] > -1]
            if measured.size:
                per_class[self.class_names[category_id]] = float(measured.mean())
        return per_class


def load_results(results: Sequence[Mapping[str, Any]] | str | os.PathLike) -> tuple[list, str]:
    """Read COCO results from a list or a JSON file.

    Args:
        results (list[dict] | str | Path): detections or a path to a JSON list of detections.

    Returns:
        tuple[list, str]: the detections and a description of their source for error messages.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is not JSON, or its top level is not a list.
    """
    if isinstance(results, (str, os.PathLike)):
        source = f"results file {str(results)!r}"
        detections = _read_json(Path(results), what="results")
    else:
        source = "results"
        detections = results
    if not isinstance(detections, (list, tuple)):
        raise ValueError(
            f"{source} must be a JSON list of detections [{{\"image_id\", \"category_id\", \"bbox\", \"score\"}}, "
            f"...], not a {type(detections).__name__}."
        )
    return list(detections), source


def _load_ground_truth(ground_truth: Any) -> tuple[dict, str]:
    """A validated private copy of the ground truth and a description of its source."""
    if isinstance(ground_truth, (str, os.PathLike)):
        source = f"ground truth file {str(ground_truth)!r}"
        dataset = _read_json(Path(ground_truth), what="ground truth")
    elif isinstance(ground_truth, Mapping):
        source, dataset = "ground truth dict", ground_truth
    elif isinstance(getattr(ground_truth, "dataset", None), Mapping):  # a pycocotools / faster-coco-eval COCO
        source, dataset = f"ground truth {type(ground_truth).__name__} object", ground_truth.dataset
    else:
        raise TypeError(
            f"ground_truth must be a COCO dict, a path to a COCO JSON file or a COCO object, "
            f"not {type(ground_truth).__name__}."
        )
    return _validated_copy(dataset, source), source


def _validated_copy(dataset: Any, source: str) -> dict:
    if not isinstance(dataset, Mapping):
        raise ValueError(f"{source} must be a COCO object with images, annotations and categories.")
    for key in ("images", "annotations", "categories"):
        if not isinstance(dataset.get(key), list):
            raise ValueError(f"{source} has no {key!r} list; COCO ground truth needs images, annotations and "
                             "categories.")
    images = [_with_keys(image, ("id",), source, "images", index) for index, image in
              enumerate(dataset["images"])]
    categories = [_with_keys(category, ("id",), source, "categories", index)
                  for index, category in enumerate(dataset["categories"])]
    annotations = [_annotation(annotation, source, index) for index, annotation in
                   enumerate(dataset["annotations"])]
    _check_references(annotations, images, categories, source)
    annotation_ids = [annotation["id"] for annotation in annotations]
    if any(not isinstance(i, int) or i <= 0 for i in annotation_ids) or len(set(annotation_ids)) < len(annotation_ids):
        for new_id, annotation in enumerate(annotations, start=1):
            annotation["id"] = new_id
    return {"images": images, "categories": categories, "annotations": annotations}


def _with_keys(entry: Any, keys: tuple[str, ...], source: str, section: str, index: int) -> dict:
    if not isinstance(entry, Mapping):
        raise ValueError(f"{source}: {section}[{index}] is a {type(entry).__name__}, not an object.")
    for key in keys:
        if key not in entry:
            raise ValueError(f"{source}: {section}[{index}] has no {key!r} key.")
    copy = dict(entry)
    if "id" in keys:
        copy["id"] = _integer(copy["id"], source, f"{section}[{index}].id")
    return copy


def _annotation(entry: Any, source: str, index: int) -> dict:
    annotation = _with_keys(entry, ("image_id", "category_id", "bbox"), source, "annotations", index)
    where = f"annotations[{index}]"
    annotation["image_id"] = _integer(annotation["image_id"], source, f"{where}.image_id")
    annotation["category_id"] = _integer(annotation["category_id"], source, f"{where}.category_id")
    box = annotation["bbox"]
    if not (isinstance(box, (list, tuple)) and len(box) == 4 and all(_is_finite_number(v) for v in box)):
        raise ValueError(f"{source}: {where}.bbox must be [x, y, width, height] (4 finite numbers), got {box!r}.")
    annotation.setdefault("area", float(box[2]) * float(box[3]))
    annotation["iscrowd"] = int(bool(annotation.get("iscrowd", 0)))
    annotation.setdefault("id", 0)  # renumbered below
    return annotation


def _check_references(annotations: list[dict], images: list[dict], categories: list[dict], source: str) -> None:
    for what, key, known in (("image", "image_id", {image["id"] for image in images}),
                             ("category", "category_id", {category["id"] for category in categories})):
        unknown = sorted({annotation[key] for annotation in annotations} - known)
        if unknown:
            raise ValueError(f"{source} has annotations whose {key} is not among its {what}s: {_list_ids(unknown)}.")


def _class_names(categories: list[dict]) -> dict[int, str]:
    names = {category["id"]: str(category.get("name", category["id"])) for category in categories}
    counts = Counter(names.values())
    return {i: (name if counts[name] == 1 else f"{name} (id {i})") for i, name in names.items()}


def _ground_truth_table(annotations: list[dict]) -> BoxTable:
    return BoxTable(
        image_ids=np.array([a["image_id"] for a in annotations], dtype=np.int64),
        category_ids=np.array([a["category_id"] for a in annotations], dtype=np.int64),
        boxes=np.array([a["bbox"] for a in annotations], dtype=np.float64).reshape(-1, 4),
        areas=np.array([a["area"] for a in annotations], dtype=np.float64),
        scores=np.ones(len(annotations)),
        is_crowd=np.array([a["iscrowd"] for a in annotations], dtype=bool),
    )


def _detection_table(detections: list, source: str) -> BoxTable:
    """Columns of the detections, validated: ids integral, boxes [N, 4] finite with width and height >= 0, scores
    finite."""
    try:
        columns = {key: [detection[key] for detection in detections] for key in RESULT_KEYS}
        boxes = np.array(columns["bbox"], dtype=np.float64).reshape(-1, 4)
        if boxes.shape[0] != len(detections):
            raise ValueError
        scores = np.array(columns["score"], dtype=np.float64).reshape(len(detections))
        image_ids = _integer_array(columns["image_id"])
        category_ids = _integer_array(columns["category_id"])
        if not (np.isfinite(boxes).all() and np.isfinite(scores).all()) or (boxes[:, 2:] < 0).any():
            raise ValueError  # a negative width or height would be scored as a false positive, silently
    except (KeyError, TypeError, ValueError, IndexError):
        raise ValueError(f"{source}: {_first_malformed(detections)}") from None
    return BoxTable(image_ids=image_ids, category_ids=category_ids, boxes=boxes, areas=boxes[:, 2] * boxes[:, 3],
                    scores=scores, is_crowd=np.zeros(len(detections), dtype=bool))


def _first_malformed(detections: list) -> str:
    """Describe the first detection that breaks the results format."""
    for index, detection in enumerate(detections):
        if not isinstance(detection, Mapping):
            return f"detection [{index}] is a {type(detection).__name__}, not an object with {', '.join(RESULT_KEYS)}."
        for key in RESULT_KEYS:
            if key not in detection:
                return f"detection [{index}] has no {key!r} key (each needs {', '.join(RESULT_KEYS)})."
        box = detection["bbox"]
        if not (isinstance(box, (list, tuple, np.ndarray)) and len(box) == 4 and all(_is_finite_number(v) for v in box)):
            return f"detection [{index}] has 'bbox' {box!r}; it must be [x, y, width, height], 4 finite numbers."
        if box[2] < 0 or box[3] < 0:
            return (
                f"detection [{index}] has 'bbox' {box!r} with a negative width or height; it must be "
                "[x, y, width, height] with width, height >= 0 (from xyxy: [x1, y1, x2 - x1, y2 - y1])."
            )
        if not _is_finite_number(detection["score"]):
            return f"detection [{index}] has 'score' {detection['score']!r}; it must be a finite number."
        for key in ("image_id", "category_id"):
            if not _is_integral(detection[key]):
                return f"detection [{index}] has {key!r} {detection[key]!r}; it must be an integer."
    return "malformed detections."


def _make_coco(backend: str, dataset: dict) -> Any:
    """The backend's COCO object over ``dataset`` (indexed, without printing)."""
    if backend == "faster":
        from faster_coco_eval import COCO

        return COCO(dataset)
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _run_coco_eval(
    backend: str, coco_ground_truth: Any, coco_detections: Any, *, image_ids: list[int] | None = None
) -> Any:
    """evaluate + accumulate + summarize with the backend's COCOeval (on ``image_ids`` only, when given), its
    progress prints suppressed."""
    if backend == "faster":
        from faster_coco_eval import COCOeval_faster

        coco_eval = COCOeval_faster(coco_ground_truth, coco_detections, "bbox", print_function=_ignore)
    else:
        from pycocotools.cocoeval import COCOeval

        coco_eval = COCOeval(coco_ground_truth, coco_detections, "bbox")
    if image_ids is not None:
        coco_eval.params.imgIds = image_ids
    with contextlib.redirect_stdout(io.StringIO()):
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval


def _read_json(path: Path, *, what: str) -> Any:
    if not path.is_file():
        raise FileNotFoundError(f"{what} file {str(path)!r} does not exist.")
    try:
        with path.open() as file:
            return json.load(file)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{what} file {str(path)!r} is not valid JSON: {error}.") from None


def _measured_or_zero(value: float) -> float:
    """COCOeval's -1 (nothing to measure) -> 0.0."""
    return 0.0 if value < 0 else float(value)


def _integer(value: Any, source: str, where: str) -> int:
    if not _is_integral(value):
        raise ValueError(f"{source}: {where} must be an integer, got {value!r}.")
    return int(value)


def _integer_array(values: list) -> np.ndarray:
    array = np.asarray(values)
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if array.dtype.kind not in "iuf" or array.ndim != 1:
        raise ValueError
    if array.dtype.kind == "f" and not np.array_equal(array, np.round(array)):
        raise ValueError
    return array.astype(np.int64)


def _is_integral(value: Any) -> bool:
    return (isinstance(value, (int, np.integer)) and not isinstance(value, bool)) or (
        isinstance(value, (float, np.floating)) and math.isfinite(value) and float(value).is_integer()
    )


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and math.isfinite(
        value
    )


def _list_ids(ids: list) -> str:
    shown = ", ".join(str(i) for i in ids[:_LISTED_IDS])
    return f"[{shown}{', ...' if len(ids) > _LISTED_IDS else ''}]"


def _ignore(*args: Any, **kwargs: Any) -> None:
    """A print function that prints nothing."""
