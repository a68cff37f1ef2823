"""COCO-format detection datasets (instances_*.json), read with pycocotools."""

from __future__ import annotations

import collections
import contextlib
import io
import json
import shlex
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO

from ssdlite.data.annotations import (
    LABEL_WITHOUT_IMAGE,
    MISSING_ANNOTATION,
    UNKNOWN_CLASS,
    ImageRecord,
    ParsedDataset,
    ProblemLog,
    image_side,
    report_image_error,
    sanitize_boxes,
)
from ssdlite.data.detection_dataset import DetectionDataset, UnreadableMode
from ssdlite.data.image_io import read_image_size
from ssdlite_runtime.image_io import ImageReadError

__all__ = ["CocoDetection", "load_coco_records"]


class CocoDetection(DetectionDataset):
    """A COCO-format detection dataset.

    Labels are contiguous (1..K) in the order of the file's category ids (sorted); ``category_ids[i]`` is the
    file's id of label i+1, so results map back to the file's own ids. Images without annotations are negatives.
    Crowd boxes stay in the Sample (``iscrowd``) only with ``include_crowd=True``; :meth:`to_coco` always keeps them.
    Degenerate boxes are dropped and boxes outside the image clipped, with one :class:`DatasetWarning` per load.

    Args:
        images_dir: folder the ``file_name`` entries are relative to.
        annotation_file: the COCO json.
        transform: callable ``sample -> sample``.
        include_crowd: keep ``iscrowd=1`` boxes as training targets.
        strict: raise :class:`ImageReadError` for an unreadable image (``unreadable="raise"``).
        unreadable: what stands in for an unreadable image: "placeholder" (evaluation), "substitute"
            (training) or "raise"; see :class:`DetectionDataset`.

    Raises:
        FileNotFoundError: missing annotation file or images folder, or in training (``unreadable="substitute"``), no image file of the set exists.
        ValueError: malformed json (with line and column) or malformed entries (with their index and id), or an
            image without a size in the json that is over Pillow's decompression-bomb limit.
    """

    def __init__(
        self,
        images_dir: str | Path,
        annotation_file: str | Path,
        *,
        transform: Callable[[dict], dict] | None = None,
        include_crowd: bool = False,
        strict: bool = False,
        unreadable: UnreadableMode = "placeholder",
    ) -> None:
        images_dir = Path(images_dir)
        if not images_dir.is_dir():
            raise FileNotFoundError(f"COCO images folder {images_dir} does not exist; pass the folder of the images")
        log = ProblemLog(raise_malformed=True)
        parsed = load_coco_records(images_dir, annotation_file, log=log)
        self.images_dir = images_dir
        self.annotation_file = Path(annotation_file)
        super().__init__(
            parsed.records,
            class_names=parsed.class_names,
            category_ids=parsed.category_ids,
            transform=transform,
            strict=strict,
            unreadable=unreadable,
            include_crowd=include_crowd,
            name=f"CocoDetection({annotation_file})",
        )
        log.warn_summary(self.name)

    def check_command(self) -> str:
        return shlex.join(["ssdlite-check-dataset", "--format", "coco", "--images", str(self.images_dir),
                           "--annotations", str(self.annotation_file)])


def load_coco_records(images_dir: str | Path, annotation_file: str | Path, *, log: ProblemLog) -> ParsedDataset:
    """Parses a COCO json into records (boxes xyxy, contiguous labels), reporting problems to ``log``.

    Args:
        images_dir: folder the ``file_name`` entries are relative to.
        annotation_file: the COCO json.
        log: where problems go (raises on malformed input when ``log.raise_malformed``).

    Returns:
        ParsedDataset (empty when the file is malformed and ``log`` only records).
    """
    annotation_file = Path(annotation_file)
    empty = ParsedDataset(records=[], class_names=[], category_ids=[])
    dataset = _read_json(annotation_file, log)
    if dataset is None or not _valid_structure(dataset, annotation_file, log):
        return empty
    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()

    category_ids = sorted(coco.cats)
    label_of_category = {category_id: label for label, category_id in enumerate(category_ids, start=1)}
    class_names = [str(coco.cats[category_id]["name"]) for category_id in category_ids]
    _report_orphan_annotations(coco, annotation_file, log)

    records = []
    for image_info in dataset["images"]:
        record = _image_record(coco, image_info, Path(images_dir), annotation_file, label_of_category, log)
        if record is not None:
            records.append(record)
    return ParsedDataset(records=records, class_names=class_names, category_ids=category_ids)


def _read_json(annotation_file: Path, log: ProblemLog) -> dict | None:
    if not annotation_file.is_file():
        log.malformed(annotation_file, "COCO annotation file not found; check the path", kind=MISSING_ANNOTATION)
        return None
    if annotation_file.stat().st_size == 0:
        log.malformed(annotation_file, "the file is empty; expected a COCO json with 'images', 'annotations' and "
                      "'categories'")
        return None
    try:
        with annotation_file.open("r", encoding="utf-8") as stream:
            return json.load(stream)
    except json.JSONDecodeError as error:
        log.malformed(annotation_file, f"invalid JSON at column {error.colno}: {error.msg}", line=error.lineno)
    except UnicodeDecodeError as error:
        log.malformed(annotation_file, f"not a UTF-8 text file ({error.reason}); is it really a COCO json?")
    return None


def _valid_structure(dataset, annotation_file: Path, log: ProblemLog) -> bool:
    """Checks the keys pycocotools indexes on, so that a bad file fails here with a message, not in a KeyError."""
    if isinstance(dataset, list):
        log.malformed(annotation_file, f"not a COCO detection file: it holds a JSON list of {len(dataset)} entries (a "
                      "results file of detections?), expected an object with 'images', 'annotations' and 'categories'")
        return False
    if not isinstance(dataset, dict) or not isinstance(dataset.get("images"), list):
        log.malformed(annotation_file, "not a COCO detection file: expected an object with an 'images' list")
        return False
    dataset.setdefault("annotations", [])
    for key, required in (
        ("categories", ("id", "name")),
        ("images", ("id", "file_name")),
        ("annotations", ("id", "image_id", "category_id", "bbox")),
    ):
        entries = dataset.get(key)
        if not isinstance(entries, list):
            log.malformed(annotation_file, f"'{key}' must be a list of objects")
            return False
        for index, entry in enumerate(entries):
            missing = [field for field in required if not isinstance(entry, dict) or field not in entry]
            if missing:
                entry_id = entry.get("id") if isinstance(entry, dict) else None
                log.malformed(annotation_file, f"{key}[{index}] (id {entry_id}) lacks {missing}")
                return False
            bad_ids = [field for field in required if field.endswith("id") and not _is_integer(entry[field])]
            if bad_ids:
                log.malformed(annotation_file, f"{key}[{index}] has non-integer {bad_ids}: "
                              f"{[entry[field] for field in bad_ids]}; COCO ids are integers")
                return False
            huge_ids = [field for field in required
                        if field.endswith("id") and not _INT64_MIN <= entry[field] <= _INT64_MAX]
            if huge_ids:
                log.malformed(annotation_file, f"{key}[{index}] has {huge_ids} {[entry[field] for field in huge_ids]} "
                              "outside the 64-bit integers that ids are stored in; renumber them")
                return False
    for key in ("categories", "images", "annotations"):
        ids = [entry["id"] for entry in dataset[key]]
        if len(set(ids)) != len(ids):
            repeated = sorted(value for value, count in collections.Counter(ids).items() if count > 1)[:5]
            log.malformed(annotation_file, f"'{key}' repeats ids ({repeated}); every {key[:-1]} needs a unique id")
            return False
    if not dataset["categories"]:
        log.malformed(annotation_file, "'categories' is empty; a detection file lists its classes there")
        return False
    return True


def _report_orphan_annotations(coco: COCO, annotation_file: Path, log: ProblemLog) -> None:
    orphans = [image_id for image_id in coco.imgToAnns if image_id not in coco.imgs]
    for image_id in orphans:
        count = len(coco.imgToAnns[image_id])
        log.add(LABEL_WITHOUT_IMAGE, annotation_file, f"{count} annotation(s) refer to image_id {image_id}, "
                "which is not in 'images'; ignored")


def _image_record(
    coco: COCO,
    image_info: dict,
    images_dir: Path,
    annotation_file: Path,
    label_of_category: dict[int, int],
    log: ProblemLog,
) -> ImageRecord | None:
    path = images_dir / image_info["file_name"]
    size = _image_size(image_info, path, annotation_file, log)
    if size is None:
        return None
    height, width = size
    annotations = []
    for annotation in coco.imgToAnns.get(image_info["id"], []):
        if annotation["category_id"] not in label_of_category:
            log.add(UNKNOWN_CLASS, annotation_file, f"annotation id {annotation['id']} (image {path.name}) has "
                    f"category_id {annotation['category_id']}, which is not in 'categories'; dropped")
            continue
        if not _is_xywh(annotation["bbox"]):
            log.malformed(annotation_file, f"annotation id {annotation['id']} has bbox {annotation['bbox']!r}; "
                          "expected [x, y, width, height] numbers")
            continue
        annotations.append(annotation)
    xywh = np.array([annotation["bbox"] for annotation in annotations], dtype=np.float64).reshape(-1, 4)
    with np.errstate(over="ignore"):  # x + w beyond float64 is inf: a degenerate box, reported by sanitize_boxes
        xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)
    boxes, keep = sanitize_boxes(xyxy, height=height, width=width, file=f"{annotation_file} ({path.name})", log=log)
    areas = [annotation.get("area") for annotation in annotations]
    record = ImageRecord(
        image_id=int(image_info["id"]),
        file_name=str(image_info["file_name"]),
        path=path,
        height=height,
        width=width,
        boxes=boxes,
        labels=np.array([label_of_category[a["category_id"]] for a in annotations], dtype=np.int64),
        iscrowd=np.array([bool(a.get("iscrowd", 0)) for a in annotations], dtype=bool),
        areas=np.array(areas, dtype=np.float64) if all(_is_number(a) for a in areas) else None,
        annotation_ids=np.array([a["id"] for a in annotations], dtype=np.int64),
        source=str(annotation_file),
    )
    return record.select(keep)


_JSON_NUMBERS = (int, float)  # exact types: json gives int / float, and bool must not pass as a number
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_FLOAT_MAX = sys.float_info.max  # a larger int does not fit a float64 (OverflowError)


def _is_number(value) -> bool:
    """A JSON number that a float64 holds (json reads integers of any size)."""
    return type(value) in _JSON_NUMBERS and (type(value) is float or -_FLOAT_MAX <= value <= _FLOAT_MAX)


def _is_xywh(bbox) -> bool:
    return type(bbox) is list and len(bbox) == 4 and all(_is_number(value) for value in bbox)


def _image_size(image_info: dict, path: Path, annotation_file: Path, log: ProblemLog) -> tuple[int, int] | None:
    """(height, width) from the file, else from the image header; None (reported) when neither is usable."""
    height, width = image_side(image_info.get("height")), image_side(image_info.get("width"))
    if height is not None and width is not None:
        return height, width
    try:
        return read_image_size(path)
    except ImageReadError as error:
        report_image_error(log, error, f"{annotation_file} gives no height/width for image id {image_info['id']} "
                           f"and the image cannot be read ({error.reason}); image skipped")
        return None


def _is_integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
