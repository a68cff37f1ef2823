"""Predictions written as a labelled dataset: ``ssdlite-detect ... --save-labels yolo|voc|coco OUT``.

Pre-labelling: what a model finds becomes a dataset that a labelling tool (CVAT, Label Studio) imports for a person
to correct, or that ssdlite trains on. Each format's layout is the one the full package's readers
(``ssdlite.data.yolo``, ``voc``, ``coco``) and ``ssdlite-check-dataset`` read back, box for box:

======  ===========================================================================================================
yolo    OUT/images/NAME; OUT/labels/STEM.txt, one ``class cx cy w h`` line per box (class = label - 1, the rest
        normalised by the image size); OUT/classes.txt (one name a line, as Label Studio reads it);
        OUT/data.yaml (``train: images``, ``names: {index: name}``, as Ultralytics reads it)
voc     OUT/JPEGImages/NAME; OUT/Annotations/STEM.xml (``filename``, ``size``, ``object/name/bndbox`` in VOC's
        1-based whole-pixel corners); OUT/ImageSets/Main/trainval.txt (the ids); OUT/labels.txt (one name a
        line, for ``--classes``); OUT/labelmap.txt (the names as CVAT's VOC import reads them)
coco    OUT/images/NAME; OUT/annotations.json (``categories`` with the model's own ids and names, ``images`` with
        width and height, ``annotations`` with ``bbox`` [x, y, w, h] in pixels, ``area``, ``iscrowd`` 0)
======  ===========================================================================================================

Images from files are copied byte for byte (their width and height are the decoded image's, after its EXIF
rotation, as the readers measure them); stream frames are written as JPEG. Every image gets its label, an empty one
when nothing was detected: for a labelling tool that says "nothing here", not "not labelled yet". Boxes are clipped
to the image; one less than :data:`MIN_BOX_SIDE` wide or high is left out (no object anyone can label, and the
formats that round would make it empty, which the readers reject). Two images with the same stem (label files are
named by stem) keep both: the second becomes ``STEM_2.EXT``.

A folder that already holds a dataset (any of :data:`DATASET_ENTRIES`) is refused by :func:`check_label_folder`
unless ``overwrite``; :func:`open_label_writer` with ``overwrite`` then removes those entries first, so the folder
holds this run's dataset alone. Other files in the folder (a ``--json`` file, say) are left alone.
"""

from __future__ import annotations

import abc
import json
import shlex
import shutil
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

import cv2
import numpy as np

__all__ = [
    "DATASET_ENTRIES",
    "LABEL_FORMATS",
    "LabelWriter",
    "check_label_folder",
    "labelled_boxes",
    "open_label_writer",
]

MIN_BOX_SIDE = 1.0
"""Boxes narrower or lower than this many pixels (after clipping) are not written."""
JPEG_QUALITY = 95
"""Quality of the JPEG a stream frame is saved as."""


class LabelWriter(abc.ABC):
    """A dataset being written in one format: images, a label per image and the class names.

    Call :meth:`add_file` or :meth:`add_frame` once per image, then :meth:`close` (also after Ctrl+C: it writes
    what the format keeps for the end, COCO's json); as a context manager it closes itself.

    Args:
        folder: the dataset's folder, OUT (made if missing).
        class_names: the model's classes; label i is ``class_names[i - 1]``.
        category_ids: the model's category id of each class (COCO keeps them).

    Attributes:
        images, boxes: how many have been written.
    """

    format: str
    """The ``--save-labels`` name."""
    images_dir: str
    """The folder of the images, under ``folder``."""
    entries: tuple[str, ...]
    """What the format writes directly under ``folder`` (what ``--overwrite`` removes)."""

    def __init__(self, folder: str | Path, *, class_names: Sequence[str], category_ids: Sequence[int]) -> None:
        self.folder = Path(folder)
        self.class_names = list(class_names)
        self.category_ids = [int(category_id) for category_id in category_ids]
        self.images = 0
        self.boxes = 0
        self._stems: set[str] = set()
        self._closed = False
        (self.folder / self.images_dir).mkdir(parents=True, exist_ok=True)
        self._begin()

    def add_file(self, path: str | Path, detections: Mapping[str, np.ndarray], *, height: int, width: int) -> str:
        """Copies an image file into the dataset and writes its label; returns its name there.

        Args:
            path: the image file, copied byte for byte.
            detections: ``boxes`` [D, 4] xyxy in the image's pixels and ``labels`` [D] in 1..K (the Predictor's).
            height, width: the decoded image's size (after EXIF rotation), which the boxes are in.
        """
        name = self._unique_name(Path(path).name)
        shutil.copyfile(path, self.folder / self.images_dir / name)
        self._add(name, detections, height=height, width=width)
        return name

    def add_frame(self, name: str, image_rgb: np.ndarray, detections: Mapping[str, np.ndarray]) -> str:
        """Writes a frame (uint8 RGB [H, W, 3]) as the JPEG ``name`` and its label; returns its name there."""
        name = self._unique_name(name)
        ok, encoded = cv2.imencode(
            ".jpg", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY]
        )
        if not ok:
            raise ValueError(f"cannot encode frame {name} as JPEG")
        (self.folder / self.images_dir / name).write_bytes(encoded.tobytes())
        height, width = image_rgb.shape[:2]
        self._add(name, detections, height=height, width=width)
        return name

    def close(self) -> None:
        """Finishes the dataset (once; later calls do nothing)."""
        if not self._closed:
            self._closed = True
            self._finish()

    def __enter__(self) -> LabelWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.close()

    @abc.abstractmethod
    def check_command(self) -> str:
        """The ``ssdlite-check-dataset`` command (full ssdlite package) that reads the dataset back."""

    def _add(self, name: str, detections: Mapping[str, np.ndarray], *, height: int, width: int) -> None:
        boxes, labels = labelled_boxes(detections, height=height, width=width)
        self._write_label(name, boxes, labels, height=height, width=width)
        self.images += 1
        self.boxes += len(labels)

    def _unique_name(self, name: str) -> str:
        """``name``, or ``STEM_2.EXT``, ``STEM_3.EXT``, ... when an earlier image had its stem (compared without
        case, for the file systems that ignore it): label files are named by stem."""
        stem, suffix = Path(name).stem, Path(name).suffix
        candidate, number = name, 1
        while Path(candidate).stem.casefold() in self._stems:
            number += 1
            candidate = f"{stem}_{number}{suffix}"
        self._stems.add(Path(candidate).stem.casefold())
        return candidate

    @abc.abstractmethod
    def _begin(self) -> None:
        """Writes what the format needs before the first image (the class names)."""

    @abc.abstractmethod
    def _write_label(self, name: str, boxes: np.ndarray, labels: np.ndarray, *, height: int, width: int) -> None:
        """Writes (or keeps) the label of image ``name``: ``boxes`` float64 [N, 4] xyxy pixels inside the image,
        ``labels`` int64 [N] in 1..K."""

    def _finish(self) -> None:
        """Writes what the format keeps for the end."""
        return None  # YOLO and VOC write each label as it comes


def labelled_boxes(detections: Mapping[str, np.ndarray], *, height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The detections' boxes clipped to the image, less those under :data:`MIN_BOX_SIDE` pixels a side, and their
    labels: (float64 [N, 4] xyxy, int64 [N])."""
    boxes = np.asarray(detections["boxes"], dtype=np.float64).reshape(-1, 4)
    boxes = np.clip(boxes, 0.0, np.array([width, height, width, height], dtype=np.float64))
    keep = ((boxes[:, 2:] - boxes[:, :2]) >= MIN_BOX_SIDE).all(axis=1)
    return boxes[keep], np.asarray(detections["labels"], dtype=np.int64).reshape(-1)[keep]


def _write_names(path: Path, names: Sequence[str]) -> None:
    path.write_text("".join(f"{name}\n" for name in names), encoding="utf-8")


class YoloLabels(LabelWriter):
    """YOLO txt: OUT/images, OUT/labels/STEM.txt, OUT/classes.txt, OUT/data.yaml (see the module docstring)."""

    format = "yolo"
    images_dir = "images"
    entries = ("images", "labels", "classes.txt", "data.yaml")

    def check_command(self) -> str:
        return shlex.join(["ssdlite-check-dataset", "--format", "yolo", "--images", str(self.folder / "images"),
                           "--annotations", str(self.folder / "labels"), "--classes", str(self.folder / "data.yaml")])

    def _begin(self) -> None:
        (self.folder / "labels").mkdir(exist_ok=True)
        _write_names(self.folder / "classes.txt", self.class_names)
        # JSON strings are YAML's double-quoted scalars: any class name is written safely without a YAML library.
        names = "".join(f"  {index}: {json.dumps(name)}\n" for index, name in enumerate(self.class_names))
        (self.folder / "data.yaml").write_text(
            f"# ssdlite-detect --save-labels yolo: the images and their labels, not yet split\n"
            f"train: images\nnc: {len(self.class_names)}\nnames:\n{names}",
            encoding="utf-8",
        )

    def _write_label(self, name: str, boxes: np.ndarray, labels: np.ndarray, *, height: int, width: int) -> None:
        size = np.array([width, height], dtype=np.float64)
        centres = (boxes[:, :2] + boxes[:, 2:]) / 2 / size
        sides = (boxes[:, 2:] - boxes[:, :2]) / size
        lines = [
            f"{label - 1} {cx:.6f} {cy:.6f} {w:.6f} {h:.6f}\n"
            for label, (cx, cy), (w, h) in zip(labels.tolist(), centres.tolist(), sides.tolist())
        ]
        (self.folder / "labels" / f"{Path(name).stem}.txt").write_text("".join(lines), encoding="utf-8")


class VocLabels(LabelWriter):
    """PASCAL VOC XML: OUT/JPEGImages, OUT/Annotations/STEM.xml, OUT/ImageSets/Main/trainval.txt, OUT/labels.txt,
    OUT/labelmap.txt (see the module docstring).

    Corners are VOC's 1-based whole pixels: a box (x1, y1, x2, y2) in continuous 0-based pixels is written as
    xmin = x1 + 1, ymin = y1 + 1, xmax = x2, ymax = y2, each rounded to the nearest pixel, which the reader
    (``ssdlite.data.voc``: x1 = xmin - 1) turns back into the rounded box.
    """

    format = "voc"
    images_dir = "JPEGImages"
    entries = ("JPEGImages", "Annotations", "ImageSets", "labels.txt", "labelmap.txt")
    split = "trainval"
    """The split file's name: the VOC reader's default split."""

    def check_command(self) -> str:
        return shlex.join(["ssdlite-check-dataset", "--format", "voc", "--images", str(self.folder),
                           "--annotations", str(self.folder), "--classes", str(self.folder / "labels.txt")])

    def _begin(self) -> None:
        (self.folder / "Annotations").mkdir(exist_ok=True)
        split_file = self.folder / "ImageSets" / "Main" / f"{self.split}.txt"
        split_file.parent.mkdir(parents=True, exist_ok=True)
        split_file.write_text("", encoding="utf-8")
        _write_names(self.folder / "labels.txt", self.class_names)
        _write_names(self.folder / "labelmap.txt", ["# label:color_rgb:parts:actions",
                                                    *(f"{name}:::" for name in self.class_names)])

    def _write_label(self, name: str, boxes: np.ndarray, labels: np.ndarray, *, height: int, width: int) -> None:
        stem = Path(name).stem
        annotation = ET.Element("annotation")
        ET.SubElement(annotation, "folder").text = self.images_dir
        ET.SubElement(annotation, "filename").text = name
        size = ET.SubElement(annotation, "size")
        for key, value in (("width", width), ("height", height), ("depth", 3)):
            ET.SubElement(size, key).text = str(value)
        ET.SubElement(annotation, "segmented").text = "0"
        for box, label in zip(voc_corners(boxes).tolist(), labels.tolist()):
            annotation.append(self._object(self.class_names[label - 1], box))
        ET.indent(annotation)
        xml = ET.tostring(annotation, encoding="utf-8", xml_declaration=True)
        (self.folder / "Annotations" / f"{stem}.xml").write_bytes(xml + b"\n")
        with (self.folder / "ImageSets" / "Main" / f"{self.split}.txt").open("a", encoding="utf-8") as split_file:
            split_file.write(f"{stem}\n")

    @staticmethod
    def _object(class_name: str, corners: list[int]) -> ET.Element:
        element = ET.Element("object")
        for key, value in (("name", class_name), ("pose", "Unspecified"), ("truncated", "0"), ("difficult", "0")):
            ET.SubElement(element, key).text = value
        bndbox = ET.SubElement(element, "bndbox")
        for key, value in zip(("xmin", "ymin", "xmax", "ymax"), corners):
            ET.SubElement(bndbox, key).text = str(value)
        return element


def voc_corners(boxes: np.ndarray) -> np.ndarray:
    """VOC's (xmin, ymin, xmax, ymax), 1-based whole pixels, of boxes (float [N, 4] xyxy, continuous 0-based
    pixels): the corners rounded half up, the top-left one plus 1. A box at least a pixel wide and high stays so."""
    rounded = np.floor(np.asarray(boxes, dtype=np.float64).reshape(-1, 4) + 0.5).astype(np.int64)
    return rounded + np.array([1, 1, 0, 0], dtype=np.int64)


class CocoLabels(LabelWriter):
    """COCO json: OUT/images and OUT/annotations.json, written at :meth:`close` (see the module docstring)."""

    format = "coco"
    images_dir = "images"
    entries = ("images", "annotations.json")

    def check_command(self) -> str:
        return shlex.join(["ssdlite-check-dataset", "--format", "coco", "--images", str(self.folder / "images"),
                           "--annotations", str(self.folder / "annotations.json")])

    def _begin(self) -> None:
        self._images: list[dict] = []
        self._annotations: list[dict] = []

    def _write_label(self, name: str, boxes: np.ndarray, labels: np.ndarray, *, height: int, width: int) -> None:
        image_id = len(self._images) + 1
        self._images.append({"id": image_id, "file_name": name, "width": width, "height": height})
        corners = boxes.round(2)  # x + w then ends where the box does, inside the image
        for (x1, y1, x2, y2), label in zip(corners.tolist(), labels.tolist()):
            w, h = round(x2 - x1, 2), round(y2 - y1, 2)
            self._annotations.append({
                "id": len(self._annotations) + 1, "image_id": image_id, "category_id": self.category_ids[label - 1],
                "bbox": [x1, y1, w, h], "area": round(w * h, 2), "iscrowd": 0,
            })

    def _finish(self) -> None:
        dataset = {
            "info": {"description": "ssdlite-detect --save-labels coco"},
            "licenses": [],
            "images": self._images,
            "annotations": self._annotations,
            "categories": [
                {"id": category_id, "name": name, "supercategory": ""}
                for category_id, name in zip(self.category_ids, self.class_names)
            ],
        }
        path = self.folder / "annotations.json"
        partial = path.with_name(f".{path.name}.partial")
        partial.write_text(json.dumps(dataset, indent=1), encoding="utf-8")
        partial.replace(path)  # whole or not at all


LABEL_WRITERS: dict[str, type[LabelWriter]] = {writer.format: writer for writer in (YoloLabels, VocLabels, CocoLabels)}
LABEL_FORMATS: tuple[str, ...] = tuple(LABEL_WRITERS)
"""The ``--save-labels`` formats."""
DATASET_ENTRIES: tuple[str, ...] = tuple(dict.fromkeys(entry for writer in LABEL_WRITERS.values()
                                                       for entry in writer.entries))
"""What any format writes in OUT: one of them there (a file, or a folder that holds anything) is a dataset."""


def existing_dataset(folder: str | Path) -> list[str]:
    """The :data:`DATASET_ENTRIES` present in ``folder``: files, and folders that are not empty."""
    folder = Path(folder)
    return [entry for entry in DATASET_ENTRIES if (folder / entry).is_file()
            or ((folder / entry).is_dir() and any((folder / entry).iterdir()))]


def check_label_folder(folder: str | Path, *, overwrite: bool, inputs: Sequence[str | Path] = ()) -> None:
    """Refuses an output folder for ``--save-labels`` before anything is loaded or written.

    Args:
        folder: OUT.
        overwrite: replace a dataset already there (``--overwrite``).
        inputs: the files detection reads, which must not lie where ``overwrite`` deletes.

    Raises:
        ValueError: ``folder`` is a file; it holds a dataset and not ``overwrite``; an input lies in what
            ``overwrite`` would delete.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"--save-labels {folder} is a file; give a folder for the dataset")
    found = existing_dataset(folder)
    if found and not overwrite:
        raise ValueError(f"--save-labels folder {folder} already holds a dataset ({', '.join(found)}); add "
                         "--overwrite to replace it, or give another folder")
    doomed = {(folder / entry).resolve(): folder / entry for entry in found} if overwrite else {}
    for path in inputs if doomed else ():
        resolved = Path(path).resolve()
        entry = next((doomed[place] for place in (resolved, *resolved.parents) if place in doomed), None)
        if entry is not None:
            raise ValueError(f"{path} lies in {entry}, which --overwrite would delete; write the labels to another "
                             "folder")


def open_label_writer(
    label_format: str,
    folder: str | Path,
    *,
    class_names: Sequence[str],
    category_ids: Sequence[int],
    overwrite: bool = False,
) -> LabelWriter:
    """The writer of ``label_format`` into ``folder``, after removing the dataset there if ``overwrite``.

    Raises:
        ValueError: an unknown format, or what :func:`check_label_folder` raises.
    """
    if label_format not in LABEL_WRITERS:
        raise ValueError(f"unknown label format {label_format!r}; use one of {', '.join(LABEL_FORMATS)}")
    check_label_folder(folder, overwrite=overwrite)
    if overwrite:
        _remove_dataset(Path(folder))
    return LABEL_WRITERS[label_format](folder, class_names=class_names, category_ids=category_ids)


def _remove_dataset(folder: Path) -> None:
    """Deletes every :data:`DATASET_ENTRIES` of ``folder`` (and a COCO json a stopped run left half-written)."""
    for entry in (*DATASET_ENTRIES, ".annotations.json.partial"):
        path = folder / entry
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()

