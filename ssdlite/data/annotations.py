"""What every annotation format is parsed into, and how bad annotations are reported.

The three readers (COCO, VOC, YOLO) parse their files into :class:`ImageRecord` objects: one per image, boxes in
absolute xyxy pixels, labels already contiguous (1..K). Problems found while parsing go to a :class:`ProblemLog`:

* a reader (``raise_malformed=True``) raises ``ValueError`` naming the file and line on a malformed file, and at the
  end of loading emits ONE :class:`DatasetWarning` that counts the boxes it dropped or clipped;
* the dataset checker (``raise_malformed=False``) keeps every problem, with its file, to print and write as JSON.
"""

from __future__ import annotations

import collections
import dataclasses
import re
import warnings
from collections.abc import Sequence
from numbers import Real
from pathlib import Path

import numpy as np

from ssdlite.data.image_io import TOO_LARGE

__all__ = [
    "DatasetWarning",
    "ImageRecord",
    "ParsedDataset",
    "Problem",
    "ProblemLog",
    "box_coverage_problem",
    "image_side",
    "read_class_names_file",
    "records_to_coco",
    "report_image_error",
    "sanitize_boxes",
    "stable_image_ids",
]

# Problem kinds. Errors lose or corrupt data; warnings are fixed on the fly without loss.
MALFORMED = "malformed_annotation"
MISSING_ANNOTATION = "missing_annotation"
MISSING_IMAGE = "missing_image"
UNREADABLE_IMAGE = "unreadable_image"
TRUNCATED_IMAGE = "truncated_image"
IMAGE_TOO_LARGE = "image_too_large"
SIZE_MISMATCH = "size_mismatch"
DEGENERATE_BOX = "degenerate_box"
OUT_OF_IMAGE_BOX = "out_of_image_box"
UNKNOWN_CLASS = "unknown_class"
LABEL_WITHOUT_IMAGE = "label_without_image"
MISSING_SPLIT_FILE = "missing_split_file"
NO_BOXES = "no_boxes"
IMAGES_WITHOUT_BOXES = "images_without_boxes"

# A box that leaves the image by at most this many pixels is clipped and reported as a warning (rounding in the
# annotation tool); further out it is an error.
OUT_OF_IMAGE_TOLERANCE_PIXELS = 1.0
# Overshoot below this is rounding of normalised coordinates (YOLO's 6 decimals): clipped without a report.
ROUNDING_TOLERANCE_PIXELS = 0.01
# The largest image width or height an annotation file may state (larger values are not a size: the readers then
# read the image header); it keeps height * width within int64.
MAX_IMAGE_SIDE = 2**31 - 1


def image_problem_kind(error) -> str:
    """The problem kind of an :class:`~ssdlite_runtime.image_io.ImageReadError`."""
    return {"missing": MISSING_IMAGE, "truncated": TRUNCATED_IMAGE, TOO_LARGE: IMAGE_TOO_LARGE}.get(
        error.kind, UNREADABLE_IMAGE
    )


def report_image_error(log: ProblemLog, error, message: str) -> None:
    """Reports an image whose size a reader could not read (an :class:`~ssdlite_runtime.image_io.ImageReadError`).

    An image over Pillow's decompression-bomb limit stops a reader (``ValueError`` naming the image and what to do,
    through :meth:`ProblemLog.malformed`) and is an error in the checker; any other unreadable image is recorded with
    ``message`` (which says it was skipped) and the reader goes on.
    """
    if error.kind == TOO_LARGE:
        log.malformed(error.path, error.reason, kind=IMAGE_TOO_LARGE)
    else:
        log.add(image_problem_kind(error), error.path, message)


def image_side(value) -> int | None:
    """An image width or height stated in an annotation file, as an int: a number in 1..MAX_IMAGE_SIDE (fractions
    truncated, as ``int``), else None (not a number, NaN, infinite, too large): the caller reads the image header."""
    if isinstance(value, bool) or not isinstance(value, Real) or not 1 <= value <= MAX_IMAGE_SIDE:
        return None  # the comparison is False for NaN and converts nothing, so a huge int cannot overflow
    return int(value)


class DatasetWarning(UserWarning):
    """Annotations or images that a reader repaired or skipped (dropped boxes, unreadable images, ...)."""


@dataclasses.dataclass(frozen=True)
class Problem:
    """One problem in a dataset.

    Attributes:
        kind: one of the kind constants of this module (``degenerate_box``, ``missing_image``, ...).
        file: the file that holds the problem (annotation file, label file or image).
        message: what is wrong and, where it helps, what to do.
        severity: "error" (data is lost or wrong) or "warning" (repaired without loss).
    """

    kind: str
    file: str
    message: str
    severity: str = "error"

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        return f"{self.severity.upper()} [{self.kind}] {self.file}: {self.message}"


class ProblemLog:
    """Collects the problems found while loading annotations.

    Args:
        raise_malformed: raise ``ValueError`` (or ``FileNotFoundError`` for a missing annotation file) at the first
            malformed file (readers) instead of recording it and going on (dataset checker).
    """

    def __init__(self, *, raise_malformed: bool) -> None:
        self.raise_malformed = raise_malformed
        self.problems: list[Problem] = []

    def add(self, kind: str, file: str | Path, message: str, *, severity: str = "error") -> None:
        self.problems.append(Problem(kind=kind, file=str(file), message=message, severity=severity))

    def malformed(self, file: str | Path, message: str, *, line: int | None = None, kind: str = MALFORMED) -> None:
        """Reports a file that cannot be parsed; raises when ``raise_malformed``.

        Args:
            file: the offending file.
            message: what is wrong and how to fix it.
            line: 1-based line number in the file, when known.
            kind: MALFORMED, or MISSING_ANNOTATION for a file that does not exist.
        """
        location = f"{file}:{line}" if line is not None else str(file)
        if self.raise_malformed:
            error_type = FileNotFoundError if kind == MISSING_ANNOTATION else ValueError
            raise error_type(f"{location}: {message}")
        self.add(kind, file, f"line {line}: {message}" if line is not None else message)

    def errors(self) -> list[Problem]:
        return [problem for problem in self.problems if problem.severity == "error"]

    def warn_summary(self, dataset: str) -> None:
        """Emits ONE :class:`DatasetWarning` counting the problems of each kind (no warning when there are none)."""
        if not self.problems:
            return
        counts = collections.Counter(problem.kind for problem in self.problems)
        first_files: dict[str, str] = {}
        for problem in self.problems:
            first_files.setdefault(problem.kind, f"{problem.file}: {problem.message}")
        details = "; ".join(
            f"{count} x {kind.replace('_', ' ')} (first: {first_files[kind]})" for kind, count in counts.items()
        )
        warnings.warn(
            f"{dataset}: {details}. Degenerate boxes and boxes of unknown classes were dropped, boxes outside the "
            "image were clipped; run tools/check_dataset.py for the full list.",
            DatasetWarning,
            stacklevel=3,
        )


@dataclasses.dataclass
class ImageRecord:
    """The annotations of one image, in the Sample conventions.

    Attributes:
        image_id: int id (the dataset's own where it has one).
        file_name: path relative to the images directory (POSIX separators), as written in COCO ``file_name``.
        path: full path of the image file.
        height, width: image size in pixels from the annotation file (or the image header); boxes are clipped to it.
        boxes (np.ndarray[N, 4] float64): xyxy, absolute pixels, 0-based continuous coordinates.
        labels (np.ndarray[N] int64): contiguous labels 1..K.
        iscrowd (np.ndarray[N] bool): COCO crowd regions (and VOC difficult objects are written as crowd by
            :func:`records_to_coco`).
        difficult (np.ndarray[N] bool | None): VOC ``difficult`` flags; None for formats without them.
        areas (np.ndarray[N] float64 | None): COCO ``area`` (segmentation area) when the file has it, else None
            (box area is used).
        annotation_ids (np.ndarray[N] int64 | None): COCO annotation ids when the file has them.
        source: the annotation file the record came from (for messages).
    """

    image_id: int
    file_name: str
    path: Path
    height: int
    width: int
    boxes: np.ndarray
    labels: np.ndarray
    iscrowd: np.ndarray
    difficult: np.ndarray | None = None
    areas: np.ndarray | None = None
    annotation_ids: np.ndarray | None = None
    source: str = ""

    def select(self, keep: np.ndarray) -> ImageRecord:
        """Returns a copy that holds only the annotations where ``keep`` (bool [N]) is True (self if all are)."""
        if keep.all():
            return self

        def pick(values):
            return None if values is None else values[keep]

        return dataclasses.replace(
            self,
            boxes=self.boxes[keep],
            labels=self.labels[keep],
            iscrowd=self.iscrowd[keep],
            difficult=pick(self.difficult),
            areas=pick(self.areas),
            annotation_ids=pick(self.annotation_ids),
        )


@dataclasses.dataclass
class ParsedDataset:
    """What a format parser returns: the records and the label <-> class mapping.

    Attributes:
        records: one per image.
        class_names: label i+1 is ``class_names[i]``.
        category_ids: label i+1 is written as category id ``category_ids[i]``.
    """

    records: list[ImageRecord]
    class_names: list[str]
    category_ids: list[int]


def sanitize_boxes(
    boxes: np.ndarray, *, height: int, width: int, file: str | Path, log: ProblemLog
) -> tuple[np.ndarray, np.ndarray]:
    """Clips boxes to the image and finds degenerate ones, reporting both to ``log``.

    A box is degenerate when a coordinate is not finite, x2 <= x1 or y2 <= y1, or when nothing of it is left
    inside the image after clipping. Boxes are always clipped; an overshoot below ROUNDING_TOLERANCE_PIXELS is not
    reported, one up to OUT_OF_IMAGE_TOLERANCE_PIXELS is a warning, more is an error.

    Args:
        boxes (np.ndarray[N, 4]): xyxy absolute pixels.
        height, width: image size the boxes are clipped to.
        file: annotation file named in the problems.
        log: where problems go.

    Returns:
        (clipped boxes float64 [N, 4], keep bool [N]) -- keep is False for degenerate boxes.
    """
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    finite = np.isfinite(boxes).all(axis=1)
    safe = np.where(finite[:, None], boxes, 0.0)
    ordered = finite & (safe[:, 2] > safe[:, 0]) & (safe[:, 3] > safe[:, 1])
    limits = np.array([width, height, width, height], dtype=np.float64)
    clipped = np.clip(safe, 0.0, limits)
    overshoot = np.abs(clipped - safe).max(axis=1) if len(safe) else np.zeros(0)
    keep = ordered & (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    reported_clip = keep & (overshoot > ROUNDING_TOLERANCE_PIXELS)
    if keep.all() and not reported_clip.any():
        return clipped, keep  # the common case, without a Python loop
    for index in np.flatnonzero(~ordered):
        log.add(DEGENERATE_BOX, file, f"box {index} {_format_box(boxes[index])} has x2<=x1, y2<=y1 or a "
                "non-finite coordinate; dropped")
    for index in np.flatnonzero(ordered & ~keep):
        log.add(OUT_OF_IMAGE_BOX, file, f"box {index} {_format_box(boxes[index])} lies outside the "
                f"{width}x{height} image; dropped")
    for index in np.flatnonzero(reported_clip):
        severity = "warning" if overshoot[index] <= OUT_OF_IMAGE_TOLERANCE_PIXELS else "error"
        log.add(OUT_OF_IMAGE_BOX, file, f"box {index} {_format_box(boxes[index])} extends {overshoot[index]:.2f} px "
                f"outside the {width}x{height} image; clipped", severity=severity)
    return clipped, keep


def _format_box(box: np.ndarray) -> str:
    return "[" + ", ".join(f"{value:g}" for value in box) + "]"


def box_coverage_problem(records: Sequence[ImageRecord], *, format: str, annotations: str | Path) -> Problem | None:
    """What is wrong with a set whose images have few or no boxes, or None when more than half have one.

    No box at all is an error (:data:`NO_BOXES`): there is nothing to learn from (the loss is 0) or to score
    against, and it is nearly always a wrong path -- a YOLO labels folder without the images' label files, an empty
    COCO ``annotations`` list. More than half of the images without a box is a warning (:data:`IMAGES_WITHOUT_BOXES`)
    with the count: negatives are allowed, but that many usually means missing labels.

    Args:
        records: the parsed images (none is an error too).
        format: "coco", "voc" or "yolo" (what a label is, for the message).
        annotations: where the labels were looked for: the COCO json, the VOC Annotations folder or the YOLO labels
            folder (named in the message, and the problem's file).
    """
    without = [record for record in records if len(record.boxes) == 0]
    count = len(records)
    if count == 0:
        return Problem(NO_BOXES, str(annotations), f"no image of the set was found with {annotations}; check the "
                       "images and annotations paths")
    if 2 * len(without) <= count:
        return None
    # A YOLO record's source is the label file it was read from, or would have been (IMAGE_STEM.txt).
    unlabelled = [record for record in without if format == "yolo" and not Path(record.source).is_file()]
    if len(without) < count:
        detail = f" ({len(unlabelled)} without a label file; YOLO labels are IMAGE_STEM.txt)" if unlabelled else ""
        message = (f"{len(without)} of {count} images have no box in {annotations}{detail}; negatives are fine, but if "
                   "they should hold objects, check the annotations path")
        return Problem(IMAGES_WITHOUT_BOXES, str(annotations), message, severity="warning")
    if format == "yolo" and len(unlabelled) == count:
        example = records[0]
        message = (f"0 of {count} images have a label file in {annotations}; YOLO labels are IMAGE_STEM.txt (e.g. "
                   f"{example.source} for {example.path}); fix the labels path")
    elif format == "yolo":
        message = (f"none of the {count} images has a box: the {count - len(unlabelled)} label files found in "
                   f"{annotations} hold no usable 'class cx cy w h' line; fix the labels")
    elif format == "voc":
        message = (f"none of the {count} images has a box: no XML in {annotations} holds an <object> with a <name> of "
                   "the class list and a <bndbox>; fix the annotations path or the class names")
    else:
        message = (f"none of the {count} images of {annotations} has a box: its 'annotations' list holds no usable "
                   "one (image_id, category_id and bbox [x, y, w, h]); fix the annotation file")
    return Problem(NO_BOXES, str(annotations), message)


def stable_image_ids(stems: Sequence[str]) -> list[int]:
    """Image ids from the digits of the file stems when those are unique, else 1..N in the given order.

    The same image then gets the same id in every split: VOC ids ``000005`` and ``2008_000123`` become 5 and
    2008000123 (unique across VOC2007 + VOC2012, so the two can be concatenated), ``raccoon-17`` becomes 17, and
    COCO-style YOLO file names ``000000000139.jpg`` become their COCO image id 139.
    """
    digits = [re.sub(r"\D", "", stem) for stem in stems]
    if digits and all(digits) and all(len(value) <= 18 for value in digits):
        numeric = [int(value) for value in digits]
        if len(set(numeric)) == len(numeric):
            return numeric
    return list(range(1, len(stems) + 1))


def read_class_names_file(path: str | Path) -> list[str]:
    """Reads class names, one per line (blank lines ignored). Raises FileNotFoundError / ValueError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"class names file {path} does not exist; pass a text file with one name per line")
    names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not names:
        raise ValueError(f"class names file {path} holds no names; write one class name per line")
    check_class_names(names, source=str(path))
    return names


def check_class_names(names: Sequence[str], *, source: str) -> None:
    """Raises ValueError when names are empty or repeated."""
    if not names:
        raise ValueError(f"{source}: the class list is empty; give at least one class name")
    duplicates = sorted(name for name, count in collections.Counter(names).items() if count > 1)
    if duplicates:
        raise ValueError(f"{source}: class names must be unique, repeated: {duplicates}")


def records_to_coco(
    records: Sequence[ImageRecord],
    *,
    class_names: Sequence[str],
    category_ids: Sequence[int],
    description: str = "",
) -> dict:
    """Writes records as a COCO-format ground truth (for evaluation or conversion).

    Every annotation is written, whatever ``include_crowd`` / ``keep_difficult`` say about training: crowd regions
    with ``iscrowd=1``; VOC difficult objects also with ``iscrowd=1`` (so COCOeval ignores them, as the VOC protocol
    does) plus ``difficult=1``. ``area`` is the file's COCO area when there is one, else the box area.

    Returns:
        dict with ``info``, ``licenses``, ``images`` (id, file_name, height, width), ``annotations`` (id, image_id,
        category_id, bbox [x, y, w, h], area, iscrowd[, difficult]) and ``categories`` (id, name, supercategory).
    """
    category_ids = [int(category_id) for category_id in category_ids]
    images, annotations = [], []
    next_annotation_id = 1
    for record in records:
        image_id = int(record.image_id)
        images.append({"id": image_id, "file_name": record.file_name, "height": int(record.height),
                       "width": int(record.width)})
        count = len(record.labels)
        if count == 0:
            continue
        xywh = np.round(np.concatenate([record.boxes[:, :2], record.boxes[:, 2:] - record.boxes[:, :2]], axis=1), 4)
        areas = record.areas if record.areas is not None else np.round(xywh[:, 2] * xywh[:, 3], 4)
        difficult = record.difficult if record.difficult is not None else np.zeros(count, dtype=bool)
        if record.annotation_ids is not None:
            annotation_ids = record.annotation_ids.tolist()
        else:
            annotation_ids = list(range(next_annotation_id, next_annotation_id + count))
        next_annotation_id = max(next_annotation_id, max(annotation_ids) + 1)
        crowd = (record.iscrowd | difficult).tolist()
        for index, (bbox, area, label) in enumerate(zip(xywh.tolist(), areas.tolist(), record.labels.tolist())):
            annotation = {
                "id": annotation_ids[index],
                "image_id": image_id,
                "category_id": category_ids[label - 1],
                "bbox": bbox,
                "area": area,
                "iscrowd": int(crowd[index]),
            }
            if record.difficult is not None:
                annotation["difficult"] = int(difficult[index])
            annotations.append(annotation)
    categories = [
        {"id": int(category_id), "name": name, "supercategory": "none"}
        for name, category_id in zip(class_names, category_ids)
    ]
    info = {"description": description or "written by ssdlite", "version": "1.0"}
    return {"info": info, "licenses": [], "images": images, "annotations": annotations, "categories": categories}
