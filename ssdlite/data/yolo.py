"""YOLO txt detection datasets: one ``class cx cy w h`` line per box, normalised to [0, 1]."""

from __future__ import annotations

import math
import shlex
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import yaml

from ssdlite.data.annotations import (
    LABEL_WITHOUT_IMAGE,
    MISSING_ANNOTATION,
    UNKNOWN_CLASS,
    ImageRecord,
    ParsedDataset,
    ProblemLog,
    check_class_names,
    read_class_names_file,
    report_image_error,
    sanitize_boxes,
    stable_image_ids,
)
from ssdlite.data.detection_dataset import DetectionDataset, UnreadableMode
from ssdlite.data.image_io import read_image_size
from ssdlite_runtime.image_io import IMAGE_EXTENSIONS, ImageReadError

__all__ = ["YOLODetection", "load_yolo_class_names", "load_yolo_records"]


class YOLODetection(DetectionDataset):
    """A YOLO-format detection dataset.

    ``labels_dir/<relative path of the image>.txt`` holds the boxes of ``images_dir/<relative path>.<ext>``
    (subfolders are followed), one ``class cx cy w h`` line per box, coordinates normalised by the image's
    displayed (EXIF-rotated) size. YOLO class c becomes label c+1 and category id c+1. An image without a label
    file is a negative; a label file without an image is reported in the load warning.

    The image sizes come from the image headers (no pixel decoding), read once when the dataset is built.

    Args:
        images_dir: folder of the images.
        labels_dir: folder of the txt label files.
        classes: class names as a list, a names file (one per line) or a dataset YAML with ``names`` (a list, or a
            mapping ``{0: name, 1: name, ...}``).
        transform: callable ``sample -> sample``.
        strict: raise :class:`ImageReadError` for an unreadable image (``unreadable="raise"``).
        unreadable: what stands in for an unreadable image: "placeholder" (evaluation), "substitute"
            (training) or "raise"; see :class:`DetectionDataset`.

    Raises:
        FileNotFoundError: missing folder or classes file.
        ValueError: malformed label line (file and line) or classes file, or an image over Pillow's
            decompression-bomb limit (named, with what to do).
    """

    def __init__(
        self,
        images_dir: str | Path,
        labels_dir: str | Path,
        *,
        classes: Sequence[str] | str | Path,
        transform: Callable[[dict], dict] | None = None,
        strict: bool = False,
        unreadable: UnreadableMode = "placeholder",
    ) -> None:
        log = ProblemLog(raise_malformed=True)
        parsed = load_yolo_records(images_dir, labels_dir, classes=classes, log=log)
        self.images_dir, self.labels_dir = Path(images_dir), Path(labels_dir)
        self._classes_file = str(classes) if isinstance(classes, str | Path) else "NAMES_FILE"
        super().__init__(
            parsed.records,
            class_names=parsed.class_names,
            category_ids=parsed.category_ids,
            transform=transform,
            strict=strict,
            unreadable=unreadable,
            name=f"YOLODetection({labels_dir})",
        )
        log.warn_summary(self.name)

    def check_command(self) -> str:
        return shlex.join(["ssdlite-check-dataset", "--format", "yolo", "--images", str(self.images_dir),
                           "--annotations", str(self.labels_dir), "--classes", self._classes_file])


def load_yolo_class_names(classes: Sequence[str] | str | Path) -> list[str]:
    """Class names from a list, a names file or a dataset YAML (``names`` list or ``{index: name}`` mapping)."""
    if not isinstance(classes, str | Path):
        names = [str(name) for name in classes]
        check_class_names(names, source="classes")
        return names
    path = Path(classes)
    if path.suffix.lower() not in (".yaml", ".yml"):
        return read_class_names_file(path)
    if not path.is_file():
        raise FileNotFoundError(f"dataset YAML {path} does not exist; pass the YAML with a 'names' entry")
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise ValueError(f"{path}{line}: malformed YAML ({getattr(error, 'problem', error)})") from None
    names = config.get("names") if isinstance(config, dict) else None
    if isinstance(names, dict):
        if sorted(names) != list(range(len(names))):
            raise ValueError(f"{path}: 'names' keys must be the class indices 0..{len(names) - 1}, got "
                             f"{sorted(names)}")
        names = [names[index] for index in range(len(names))]
    if not isinstance(names, list):
        raise ValueError(f"{path}: expected a 'names' list or {{index: name}} mapping, got {names!r}")
    names = [str(name) for name in names]
    check_class_names(names, source=str(path))
    return names


def load_yolo_records(
    images_dir: str | Path,
    labels_dir: str | Path,
    *,
    classes: Sequence[str] | str | Path,
    log: ProblemLog,
) -> ParsedDataset:
    """Parses YOLO label files into records (boxes in absolute xyxy pixels), reporting problems to ``log``."""
    images_dir, labels_dir = Path(images_dir), Path(labels_dir)
    for folder, what in ((images_dir, "images"), (labels_dir, "labels")):
        if not folder.is_dir():
            raise FileNotFoundError(f"YOLO {what} folder {folder} does not exist; pass the folder of the {what}")
    names = load_yolo_class_names(classes)
    images = sorted(
        path for path in images_dir.rglob("*") if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS
    )
    relative_stems = [path.relative_to(images_dir).with_suffix("") for path in images]
    _report_labels_without_images(labels_dir, set(relative_stems), classes, log)
    image_ids = stable_image_ids([stem.name for stem in relative_stems])
    records = []
    for path, stem, image_id in zip(images, relative_stems, image_ids):
        record = _image_record(path, images_dir, labels_dir / f"{stem}.txt", image_id, len(names), log)
        if record is not None:
            records.append(record)
    return ParsedDataset(records=records, class_names=names, category_ids=list(range(1, len(names) + 1)))


def _report_labels_without_images(labels_dir: Path, image_stems: set[Path], classes, log: ProblemLog) -> None:
    classes_file = Path(classes).resolve() if isinstance(classes, str | Path) else None
    for label_path in sorted(labels_dir.rglob("*.txt")):
        if label_path.relative_to(labels_dir).with_suffix("") in image_stems or label_path.resolve() == classes_file:
            continue
        log.add(LABEL_WITHOUT_IMAGE, label_path, "label file has no image of the same name; ignored")


def _image_record(
    path: Path, images_dir: Path, label_path: Path, image_id: int, num_classes: int, log: ProblemLog
) -> ImageRecord | None:
    try:
        height, width = read_image_size(path)
    except ImageReadError as error:
        report_image_error(log, error, f"{error.reason}; image skipped")
        return None
    classes, normalised = _read_label_file(label_path, log) if label_path.is_file() else ([], [])
    classes = np.array(classes, dtype=np.int64)
    known = (classes >= 0) & (classes < num_classes)
    for class_index in sorted(set(classes[~known].tolist())):
        log.add(UNKNOWN_CLASS, label_path, f"class index {class_index} is outside 0..{num_classes - 1} of the "
                "class list; its boxes were dropped")
    with np.errstate(over="ignore", invalid="ignore"):  # a coordinate such as 1e308 becomes inf or NaN: a
        # degenerate box, reported by sanitize_boxes
        cxcywh = np.array(normalised, dtype=np.float64).reshape(-1, 4) * [width, height, width, height]
        xyxy = np.concatenate([cxcywh[:, :2] - cxcywh[:, 2:] / 2, cxcywh[:, :2] + cxcywh[:, 2:] / 2], axis=1)
    boxes, valid = sanitize_boxes(xyxy, height=height, width=width, file=label_path, log=log)
    record = ImageRecord(
        image_id=image_id,
        file_name=path.relative_to(images_dir).as_posix(),
        path=path,
        height=height,
        width=width,
        boxes=boxes,
        labels=classes + 1,
        iscrowd=np.zeros(len(classes), dtype=bool),
        source=str(label_path),
    )
    return record.select(known & valid)


def _read_label_file(label_path: Path, log: ProblemLog) -> tuple[list[int], list[list[float]]]:
    """(class indices, [cx, cy, w, h] rows) of a label file; malformed lines go to ``log`` with their number."""
    classes, boxes = [], []
    try:
        lines = label_path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        log.malformed(label_path, f"cannot read the label file ({error})", kind=MISSING_ANNOTATION
                      if isinstance(error, FileNotFoundError) else "malformed_annotation")
        return classes, boxes
    for line_number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        parsed = _parse_label_line(fields)
        if isinstance(parsed, str):
            log.malformed(label_path, f"{parsed}, got {line.strip()!r}", line=line_number)
            continue
        classes.append(parsed[0])
        boxes.append(parsed[1])
    return classes, boxes


def _parse_label_line(fields: list[str]) -> tuple[int, list[float]] | str:
    """(class index, [cx, cy, w, h]) of a label line's fields, or what is wrong with them."""
    expected = "expected 'class cx cy w h' (integer class, 4 numbers)"
    if len(fields) != 5:
        return expected
    try:
        class_value = float(fields[0])
        values = [float(field) for field in fields[1:]]
    except ValueError:
        return expected
    if not math.isfinite(class_value) or class_value != int(class_value):
        return expected
    if abs(class_value) >= _CLASS_INDEX_LIMIT:  # int64 (the labels' type) would not even hold 1e30
        return f"class {fields[0]} is not a class index (0, 1, 2, ...); {expected}"
    return int(class_value), values


_CLASS_INDEX_LIMIT = 2**31
"""A class index at least this large (either sign) is a corrupt line, not a class; one outside 0..K-1 but below it
is an unknown class, whose boxes are dropped with a warning."""
