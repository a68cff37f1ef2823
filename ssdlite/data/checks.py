"""Dataset checks: every problem with its file, counts per class, box-size histograms.

The checker parses annotations with the readers' own parsers (so it sees exactly what training would see), but
records every problem instead of raising at the first one, and decodes every image to find missing, truncated
and unreadable files and images whose size differs from the annotation. A set without a single box is an error
and one where most images have none a warning, as when the DataModule sets up
(``ssdlite.data.annotations.box_coverage_problem``). An annotation file that cannot be parsed at all (malformed,
empty or non-UTF-8 JSON, repeated or non-integer ids, ...) gives a report whose errors say exactly why.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ssdlite.data.annotations import (
    IMAGE_TOO_LARGE,
    MISSING_IMAGE,
    SIZE_MISMATCH,
    ImageRecord,
    ParsedDataset,
    Problem,
    ProblemLog,
    box_coverage_problem,
    image_problem_kind,
)
from ssdlite.data.coco import load_coco_records
from ssdlite.data.voc import load_voc_records, read_split_file
from ssdlite.data.yolo import load_yolo_records
from ssdlite_runtime.image_io import ImageReadError, read_image

__all__ = ["FORMATS", "DatasetReport", "check_dataset", "plot_box_sizes"]

FORMATS = ("coco", "voc", "yolo")
# COCO's object-size limits on sqrt(box area), in pixels.
SMALL_OBJECT_LIMIT, LARGE_OBJECT_LIMIT = 32.0, 96.0


@dataclasses.dataclass
class DatasetReport:
    """What :func:`check_dataset` found.

    Attributes:
        format, images_dir, annotations: what was checked.
        num_images: images with usable annotations.
        class_names: label i+1 = class_names[i].
        class_counts: boxes per class name (crowd / difficult included).
        images_without_objects: file names of the images with no box (negatives).
        box_sizes (np.ndarray[N, 2] float64): (width, height) of every kept box, pixels.
        relative_box_sizes (np.ndarray[N] float64): sqrt(box area / image area) of every kept box.
        problems: every problem, errors first.
        records: the parsed images, sorted by file name, for views of the annotations themselves (the gallery of
            ``ssdlite-check-dataset --gallery``); not written by :meth:`to_dict`.
    """

    format: str
    images_dir: str
    annotations: str
    num_images: int
    class_names: list[str]
    class_counts: dict[str, int]
    images_without_objects: list[str]
    box_sizes: np.ndarray
    relative_box_sizes: np.ndarray
    problems: list[Problem]
    records: list[ImageRecord] = dataclasses.field(default_factory=list, repr=False)

    @property
    def errors(self) -> list[Problem]:
        return [problem for problem in self.problems if problem.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [problem for problem in self.problems if problem.severity != "error"]

    @property
    def num_boxes(self) -> int:
        return len(self.box_sizes)

    def size_counts(self) -> dict[str, int]:
        """Boxes per COCO size range (small < 32^2 <= medium < 96^2 <= large, box area in pixels)."""
        side = np.sqrt(self.box_sizes.prod(axis=1)) if self.num_boxes else np.zeros(0)
        return {
            "small": int((side < SMALL_OBJECT_LIMIT).sum()),
            "medium": int(((side >= SMALL_OBJECT_LIMIT) & (side < LARGE_OBJECT_LIMIT)).sum()),
            "large": int((side >= LARGE_OBJECT_LIMIT).sum()),
        }

    def sample_per_class(self, per_class: int) -> list[ImageRecord]:
        """Up to ``per_class`` images holding each class, then up to ``per_class`` images without any object (where
        missing labels hide), evenly spaced over the images sorted by file name (the same sample on every run,
        spread over the whole set); an image chosen for several classes appears once.

        Returns:
            the chosen records, class by class (in label order), each class's in file-name order, then the images
            without objects.
        """
        if per_class < 1:
            raise ValueError(f"per_class must be at least 1, got {per_class}")
        without_objects = len(self.class_names) + 1
        holding: dict[int, list[ImageRecord]] = {label: [] for label in range(1, without_objects + 1)}
        for record in self.records:  # one pass: COCO's train set is 118k images of 80 classes
            for label in np.unique(record.labels).tolist() or [without_objects]:
                holding[label].append(record)
        chosen: dict[str, ImageRecord] = {}
        for records in holding.values():
            picks = np.linspace(0, len(records) - 1, min(per_class, len(records))).round().astype(int)
            for index in picks.tolist():
                chosen.setdefault(records[index].file_name, records[index])
        return list(chosen.values())

    def to_dict(self) -> dict:
        """JSON-able summary plus every error and warning (``kind``, ``file``, ``message``, ``severity``)."""
        return {
            "format": self.format,
            "images_dir": self.images_dir,
            "annotations": self.annotations,
            "num_images": self.num_images,
            "num_boxes": self.num_boxes,
            "class_counts": self.class_counts,
            "box_size_counts": self.size_counts(),
            "num_images_without_objects": len(self.images_without_objects),
            "images_without_objects": self.images_without_objects,
            "num_errors": len(self.errors),
            "num_warnings": len(self.warnings),
            "problem_counts": dict(collections.Counter(problem.kind for problem in self.problems)),
            "errors": [problem.as_dict() for problem in self.errors],
            "warnings": [problem.as_dict() for problem in self.warnings],
        }

    def write_json(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=2), encoding="utf-8")
        return path

    def summary(self) -> str:
        """A few human-readable lines: counts per class, negatives, sizes, problem counts."""
        width = max((len(name) for name in self.class_counts), default=5)
        lines = [f"{self.format} dataset {self.annotations}: {self.num_images} images, {self.num_boxes} boxes, "
                 f"{len(self.class_names)} classes"]
        lines += [f"  {name:<{width}}  {count}" for name, count in self.class_counts.items()]
        sizes = self.size_counts()
        lines.append(f"images without objects: {len(self.images_without_objects)}")
        lines.append(f"box sizes: {sizes['small']} small (<32 px), {sizes['medium']} medium, {sizes['large']} large "
                     "(>=96 px)")
        lines.append(f"problems: {len(self.errors)} errors, {len(self.warnings)} warnings")
        return "\n".join(lines)


ANNOTATIONS_HINT = {
    "coco": "COCO json file",
    "voc": "Annotations folder of the .xml files or the dataset root holding Annotations/ and JPEGImages/",
    "yolo": "folder of the .txt label files",
}


def check_dataset(
    format: str,
    images_dir: str | Path,
    annotations: str | Path,
    *,
    classes: Sequence[str] | str | Path | None = None,
    split_file: str | Path | None = None,
    num_workers: int | None = None,
) -> DatasetReport:
    """Checks a detection dataset and returns every problem found.

    Args:
        format: "coco", "voc" or "yolo".
        images_dir: folder of the images.
        annotations: COCO json file, VOC Annotations folder (or the dataset root), or YOLO labels folder.
        classes: class list or names file (YOLO: required, names file or dataset YAML; VOC: optional, objects of
            other classes are then reported as unknown; COCO: ignored, the json's categories are used).
        split_file: VOC only: ids to check, a split file or a split name of the root's ImageSets/Main (default
            every XML).
        num_workers: threads decoding images (default min(8, CPU count)).

    Returns:
        DatasetReport. When no image could be parsed because of errors (e.g. a malformed COCO json), a report of
        0 images whose errors give the reason.

    Raises:
        ValueError: unknown format, YOLO without classes, a malformed classes file, or no annotated image and no
            error that explains it.
        FileNotFoundError: a folder that does not exist.
    """
    log = ProblemLog(raise_malformed=False)
    parsed, labels_location = _parse(format, Path(images_dir), Path(annotations), classes, split_file, log)
    if not parsed.records:
        if log.errors():  # the reason nothing was parsed: report it rather than hide it behind "no images"
            return _report(format, images_dir, annotations, parsed, log.problems)
        raise ValueError(f"no annotated images found in {annotations} ({format}); give the "
                         f"{ANNOTATIONS_HINT[format]}")
    coverage = box_coverage_problem(parsed.records, format=format, annotations=labels_location)
    if coverage is not None:
        log.add(coverage.kind, coverage.file, coverage.message, severity=coverage.severity)
    _check_images(parsed.records, log, num_workers or min(8, os.cpu_count() or 1))
    return _report(format, images_dir, annotations, parsed, log.problems)


def _parse(format, images_dir, annotations, classes, split_file, log) -> tuple[ParsedDataset, Path]:
    """The parsed records and where their labels are (COCO json, VOC Annotations folder, YOLO labels folder)."""
    if format == "coco":
        return load_coco_records(images_dir, annotations, log=log), annotations
    if format == "voc":
        images_dir, annotations, split_file = _voc_paths(images_dir, annotations, split_file)
        ids = read_split_file(split_file) if split_file is not None else None
        return load_voc_records(images_dir, annotations, ids=ids, class_names=classes, log=log), annotations
    if format == "yolo":
        if classes is None:
            raise ValueError("YOLO labels hold class indices only: pass the class names (--classes names.txt or "
                             "the dataset YAML)")
        return load_yolo_records(images_dir, annotations, classes=classes, log=log), annotations
    raise ValueError(f"unknown dataset format {format!r}; use one of {FORMATS}")


def _voc_paths(images_dir: Path, annotations: Path, split: str | Path | None) -> tuple[Path, Path, Path | None]:
    """VOC folders given as the dataset root (JPEGImages/, Annotations/, ImageSets/Main/) become the images and XML
    folders; a split given by name (``train``) becomes ROOT/ImageSets/Main/train.txt."""
    if (annotations / "Annotations").is_dir():
        annotations = annotations / "Annotations"
    root = annotations.parent
    if (images_dir / "JPEGImages").is_dir():
        images_dir = images_dir / "JPEGImages"
    if split is not None and not Path(split).is_file():
        named = root / "ImageSets" / "Main" / f"{split}.txt"
        if Path(split).suffix or not named.is_file():
            raise FileNotFoundError(f"VOC split {str(split)!r} is neither a file nor a split of {root} ({named} does "
                                    "not exist); pass ImageSets/Main/<split>.txt or a split name such as 'trainval'")
        split = named
    return images_dir, annotations, Path(split) if split is not None else None


def _check_images(records: list[ImageRecord], log: ProblemLog, num_workers: int) -> None:
    """Decodes every image; reports missing / truncated / unreadable files and sizes that differ."""
    with ThreadPoolExecutor(max_workers=max(1, num_workers)) as pool:  # cv2 decodes without the GIL
        for record, outcome in zip(records, pool.map(_decoded_size, records)):
            if isinstance(outcome, ImageReadError):
                kind = image_problem_kind(outcome)
                message = {
                    MISSING_IMAGE: f"image listed in {record.source} does not exist",
                    IMAGE_TOO_LARGE: outcome.reason,  # which says what to do
                }.get(kind, f"{outcome.reason}; re-download, re-encode or remove the image")
                log.add(kind, record.path, message)
            elif outcome != (record.height, record.width):
                log.add(SIZE_MISMATCH, record.path, f"image is {outcome[1]}x{outcome[0]} (w x h) but "
                        f"{record.source} says {record.width}x{record.height}; fix the annotation's size")


def _decoded_size(record: ImageRecord) -> tuple[int, int] | ImageReadError:
    try:
        return read_image(record.path).shape[:2]
    except ImageReadError as error:
        return error


def _report(format, images_dir, annotations, parsed: ParsedDataset, problems: list[Problem]) -> DatasetReport:
    records = parsed.records
    labels = np.concatenate([record.labels for record in records]) if records else np.zeros(0, dtype=np.int64)
    counts = np.bincount(labels, minlength=len(parsed.class_names) + 1)[1:]
    boxes = np.concatenate([record.boxes for record in records]) if records else np.zeros((0, 4))
    image_areas = np.concatenate([np.full(len(record.boxes), record.height * record.width) for record in records]) \
        if records else np.zeros(0)
    box_sizes = boxes[:, 2:] - boxes[:, :2]
    return DatasetReport(
        format=format,
        images_dir=str(images_dir),
        annotations=str(annotations),
        num_images=len(records),
        class_names=list(parsed.class_names),
        class_counts={name: int(count) for name, count in zip(parsed.class_names, counts)},
        images_without_objects=[record.file_name for record in records if len(record.boxes) == 0],
        box_sizes=box_sizes,
        relative_box_sizes=np.sqrt(box_sizes.prod(axis=1) / np.maximum(image_areas, 1)),
        problems=sorted(problems, key=lambda problem: problem.severity != "error"),
        records=sorted(records, key=lambda record: record.file_name),
    )


def plot_box_sizes(report: DatasetReport, path: str | Path) -> Path:
    """Writes a PNG: histogram of box size in pixels (COCO size limits marked), of size relative to the image,
    and boxes per class. Uses the Agg canvas directly, leaving the user's matplotlib backend alone."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(15, 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    absolute, relative, per_class = figure.subplots(1, 3)
    side = np.sqrt(report.box_sizes.prod(axis=1)) if report.num_boxes else np.zeros(0)
    bins = np.geomspace(1, max(2.0, float(side.max(initial=2.0))) * 1.05, 40)
    absolute.hist(side, bins=bins, color="tab:blue")
    absolute.set_xscale("log")
    for limit in (SMALL_OBJECT_LIMIT, LARGE_OBJECT_LIMIT):
        absolute.axvline(limit, color="tab:red", linestyle="--", linewidth=1)
    absolute.set(title=f"box size ({report.num_boxes} boxes)", xlabel="sqrt(box area), pixels", ylabel="boxes")
    relative.hist(report.relative_box_sizes, bins=np.linspace(0, 1, 41), color="tab:green")
    relative.set(title="box size relative to the image", xlabel="sqrt(box area / image area)", ylabel="boxes")
    names = list(report.class_counts)
    per_class.barh(range(len(names)), list(report.class_counts.values()), color="tab:orange")
    per_class.set_yticks(range(len(names)), names, fontsize=max(4, min(10, 400 // max(1, len(names)))))
    per_class.invert_yaxis()
    per_class.set(title=f"boxes per class ({len(report.images_without_objects)} images without objects)",
                  xlabel="boxes")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path
