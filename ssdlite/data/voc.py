"""PASCAL VOC detection datasets (JPEGImages/, Annotations/*.xml, ImageSets/Main/<split>.txt)."""

from __future__ import annotations

import dataclasses
import math
import re
import shlex
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ssdlite.data.annotations import (
    MISSING_ANNOTATION,
    UNKNOWN_CLASS,
    DatasetWarning,
    ImageRecord,
    ParsedDataset,
    ProblemLog,
    check_class_names,
    image_side,
    read_class_names_file,
    report_image_error,
    sanitize_boxes,
    stable_image_ids,
)
from ssdlite.data.detection_dataset import DetectionDataset, UnreadableMode
from ssdlite.data.image_io import read_image_size
from ssdlite_runtime.image_io import IMAGE_EXTENSIONS, ImageReadError

__all__ = ["VOC_CLASSES", "VOCDetection", "load_voc_records", "read_split_file"]

# The 20 PASCAL VOC classes, in the devkit's (alphabetical) order.
VOC_CLASSES: tuple[str, ...] = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip

_COORDINATES = ("xmin", "ymin", "xmax", "ymax")


class VOCDetection(DetectionDataset):
    """A PASCAL VOC detection dataset (a VOCdevkit/VOC20xx folder or anything with the same layout).

    Coordinates: VOC boxes are 1-based inclusive pixel indices; they become 0-based continuous xyxy as in
    torchvision / mmdetection: (xmin - 1, ymin - 1, xmax, ymax). Category ids are 1..K (label i+1 -> id i+1).
    Samples carry ``difficult``; :meth:`to_coco` writes difficult objects with ``iscrowd=1`` (ignored by COCOeval
    as by the VOC protocol) and ``difficult=1``.

    Args:
        root: folder holding JPEGImages/, Annotations/ and ImageSets/Main/.
        split: name of ImageSets/Main/<split>.txt. When that file is missing, every Annotations/*.xml is used and a
            :class:`DatasetWarning` says so.
        class_names: the classes, as a list (e.g. :data:`VOC_CLASSES`) or a text file with one per line; objects
            of other classes are dropped (counted in the load warning). None: the sorted union of the names in
            this split's files (pass the training set's ``class_names`` to its validation set).
        transform: callable ``sample -> sample``.
        keep_difficult: keep difficult objects as training targets.
        strict: raise :class:`ImageReadError` for an unreadable image (``unreadable="raise"``).
        unreadable: what stands in for an unreadable image: "placeholder" (evaluation), "substitute"
            (training) or "raise"; see :class:`DetectionDataset`.

    Raises:
        FileNotFoundError: missing root / Annotations folder, an id of the split without its XML, or
            in training (``unreadable="substitute"``), no image file of the set exists.
        ValueError: malformed XML (file and line), or an image without a <size> that is over Pillow's
            decompression-bomb limit.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "trainval",
        *,
        class_names: Sequence[str] | str | Path | None = None,
        transform: Callable[[dict], dict] | None = None,
        keep_difficult: bool = True,
        strict: bool = False,
        unreadable: UnreadableMode = "placeholder",
    ) -> None:
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"VOC root {root} does not exist; pass a folder holding JPEGImages/ and "
                                    "Annotations/ (e.g. data/VOCdevkit/VOC2007)")
        log = ProblemLog(raise_malformed=True)
        split_file = root / "ImageSets" / "Main" / f"{split}.txt"
        ids = read_split_file(split_file) if split_file.is_file() else None
        if ids is None:
            _warn_missing_split(split_file)
        self._setup(
            root / "JPEGImages", root / "Annotations", ids=ids, class_names=class_names, transform=transform,
            keep_difficult=keep_difficult, strict=strict, unreadable=unreadable, name=f"VOCDetection({root}, {split})",
            log=log, split_file=split_file if ids is not None else None,
        )
        self.root = root
        self.split = split

    @classmethod
    def from_folders(
        cls,
        images_dir: str | Path,
        annotations_dir: str | Path,
        *,
        split_file: str | Path | None = None,
        class_names: Sequence[str] | str | Path | None = None,
        transform: Callable[[dict], dict] | None = None,
        keep_difficult: bool = True,
        strict: bool = False,
        unreadable: UnreadableMode = "placeholder",
    ) -> VOCDetection:
        """A VOC dataset from explicit folders (for layouts other than VOCdevkit).

        Args:
            images_dir: the images (``<id>.jpg`` or another image extension).
            annotations_dir: the ``<id>.xml`` files.
            split_file: ids to use, one per line; None uses every XML of ``annotations_dir``.
            class_names, transform, keep_difficult, strict, unreadable: as for the constructor.

        Raises:
            FileNotFoundError: a given split file or folder is missing.
        """
        log = ProblemLog(raise_malformed=True)
        ids = None
        if split_file is not None:
            if not Path(split_file).is_file():
                raise FileNotFoundError(f"split file {split_file} does not exist; pass a text file with one image id "
                                        "per line, or leave --split out to use every XML")
            ids = read_split_file(split_file)
        dataset = cls.__new__(cls)
        dataset._setup(
            Path(images_dir), Path(annotations_dir), ids=ids, class_names=class_names, transform=transform,
            keep_difficult=keep_difficult, strict=strict, unreadable=unreadable,
            name=f"VOCDetection({annotations_dir})", log=log, split_file=split_file,
        )
        dataset.root = Path(annotations_dir).parent
        dataset.split = Path(split_file).stem if split_file is not None else None
        return dataset

    def _setup(
        self, images_dir, annotations_dir, *, ids, class_names, transform, keep_difficult, strict, unreadable, name, log,
        split_file=None,
    ):
        parsed = load_voc_records(images_dir, annotations_dir, ids=ids, class_names=class_names, log=log)
        split = ["--split", str(split_file)] if split_file is not None else []
        self._check_arguments = ["--images", str(images_dir), "--annotations", str(annotations_dir), *split]
        DetectionDataset.__init__(
            self, parsed.records, class_names=parsed.class_names, category_ids=parsed.category_ids,
            transform=transform, strict=strict, unreadable=unreadable, keep_difficult=keep_difficult, name=name,
        )
        log.warn_summary(self.name)

    def check_command(self) -> str:
        return shlex.join(["ssdlite-check-dataset", "--format", "voc", *self._check_arguments])


def _warn_missing_split(split_file: Path) -> None:
    available = sorted(path.stem for path in split_file.parent.glob("*.txt")) if split_file.parent.is_dir() else []
    warnings.warn(
        f"VOC split file {split_file} not found (available: {available or 'none'}); using every XML in "
        "Annotations/. Create the split file to choose the images.",
        DatasetWarning,
        stacklevel=3,
    )


def read_split_file(path: str | Path) -> list[str]:
    """Image ids of an ImageSets file: the first word of each non-empty line."""
    return [line.split()[0] for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


@dataclasses.dataclass
class _ParsedXML:
    image_id: str
    xml_path: Path
    image_path: Path
    height: int
    width: int
    names: list[str]
    boxes: np.ndarray
    difficult: np.ndarray


def load_voc_records(
    images_dir: str | Path,
    annotations_dir: str | Path,
    *,
    ids: Sequence[str] | None = None,
    class_names: Sequence[str] | str | Path | None = None,
    log: ProblemLog,
) -> ParsedDataset:
    """Parses VOC XML files into records, reporting problems to ``log``.

    Args:
        images_dir: folder of the images.
        annotations_dir: folder of the XML files.
        ids: image ids (XML stems) to read; None reads every XML in ``annotations_dir`` (sorted).
        class_names: list, names file, or None for the sorted union of the files' names.
        log: where problems go.

    Returns:
        ParsedDataset with category ids 1..K.
    """
    images_dir, annotations_dir = Path(images_dir), Path(annotations_dir)
    if not annotations_dir.is_dir():
        raise FileNotFoundError(f"VOC annotations folder {annotations_dir} does not exist; it should hold "
                                "<id>.xml files")
    if ids is None:
        ids = sorted(path.stem for path in annotations_dir.glob("*.xml"))
    parsed = [
        xml for xml in (_parse_xml(annotations_dir / f"{image_id}.xml", image_id, images_dir, log) for image_id in ids)
        if xml is not None
    ]
    if class_names is None:
        names = sorted({name for xml in parsed for name in xml.names})
    elif isinstance(class_names, str | Path):
        names = read_class_names_file(class_names)
    else:
        names = [str(name) for name in class_names]
        check_class_names(names, source="class_names")
    label_of_name = {name: label for label, name in enumerate(names, start=1)}
    numeric_ids = stable_image_ids([xml.image_id for xml in parsed])
    records = [_to_record(xml, image_id, label_of_name, log) for xml, image_id in zip(parsed, numeric_ids)]
    return ParsedDataset(records=records, class_names=names, category_ids=list(range(1, len(names) + 1)))


def _to_record(xml: _ParsedXML, image_id: int, label_of_name: dict[str, int], log: ProblemLog) -> ImageRecord:
    known = np.array([name in label_of_name for name in xml.names], dtype=bool)
    for name in sorted({name for name in xml.names if name not in label_of_name}):
        log.add(UNKNOWN_CLASS, xml.xml_path, f"class '{name}' is not in the class list; its boxes were dropped")
    boxes, valid = sanitize_boxes(xml.boxes, height=xml.height, width=xml.width, file=xml.xml_path, log=log)
    record = ImageRecord(
        image_id=image_id,
        file_name=xml.image_path.name,
        path=xml.image_path,
        height=xml.height,
        width=xml.width,
        boxes=boxes,
        labels=np.array([label_of_name.get(name, 0) for name in xml.names], dtype=np.int64),
        iscrowd=np.zeros(len(xml.names), dtype=bool),
        difficult=xml.difficult,
        source=str(xml.xml_path),
    )
    return record.select(known & valid)


def _parse_xml(xml_path: Path, image_id: str, images_dir: Path, log: ProblemLog) -> _ParsedXML | None:
    if not xml_path.is_file():
        log.malformed(xml_path, f"annotation of image id '{image_id}' not found; remove the id from the split file "
                      "or restore the XML", kind=MISSING_ANNOTATION)
        return None
    try:
        root = ET.parse(xml_path).getroot()
    except ET.ParseError as error:
        log.malformed(xml_path, f"malformed XML ({error}); fix or remove the file", line=error.position[0])
        return None
    image_path = _find_image(images_dir, image_id, root.findtext("filename"))
    size = _image_size(root, image_path, xml_path, log)
    if size is None:
        return None
    names, boxes, difficult = [], [], []
    for index, element in enumerate(root.iter("object")):
        name = (element.findtext("name") or "").strip()
        coordinates = [element.findtext(f"bndbox/{key}") for key in _COORDINATES]
        try:
            if not name:
                raise ValueError("has no <name>")
            box = [float(value) for value in coordinates]
        except (TypeError, ValueError) as error:
            reason = str(error) if "name" in str(error) else f"has bndbox {dict(zip(_COORDINATES, coordinates))}"
            log.malformed(xml_path, f"object {index} {reason}; expected <name> and numeric "
                          "<bndbox><xmin/><ymin/><xmax/><ymax/></bndbox>", line=_object_line(xml_path, index))
            continue
        is_difficult = _difficult_flag(element.findtext("difficult"))
        if is_difficult is None:
            log.malformed(xml_path, f"object {index} has <difficult>{element.findtext('difficult')}</difficult>; "
                          "expected 0 or 1", line=_object_line(xml_path, index))
            continue
        names.append(name)
        boxes.append([box[0] - 1.0, box[1] - 1.0, box[2], box[3]])  # 1-based inclusive -> 0-based continuous
        difficult.append(is_difficult)
    return _ParsedXML(
        image_id=image_id, xml_path=xml_path, image_path=image_path, height=size[0], width=size[1], names=names,
        boxes=np.array(boxes, dtype=np.float64).reshape(-1, 4), difficult=np.array(difficult, dtype=bool),
    )


def _find_image(images_dir: Path, image_id: str, xml_file_name: str | None) -> Path:
    """``<id>.jpg`` when it exists, else the XML's <filename>, else ``<id>`` with another image extension."""
    candidates = [images_dir / f"{image_id}.jpg"]
    if xml_file_name and xml_file_name.strip():
        candidates.append(images_dir / Path(xml_file_name.strip()).name)
    candidates += [images_dir / f"{image_id}{extension}" for extension in IMAGE_EXTENSIONS]
    candidates += [images_dir / f"{image_id}{extension.upper()}" for extension in IMAGE_EXTENSIONS]
    return next((path for path in candidates if path.is_file()), candidates[0])


def _difficult_flag(text: str | None) -> bool | None:
    """<difficult> as a bool (absent or empty: False; a number: its integer part is nonzero), None when it is not a
    finite number."""
    try:
        value = float(text or 0)
    except ValueError:
        return None
    return bool(int(value)) if math.isfinite(value) else None


def _number(text: str | None) -> float | None:
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def _image_size(root: ET.Element, image_path: Path, xml_path: Path, log: ProblemLog) -> tuple[int, int] | None:
    """(height, width) from <size>, else from the image header; None (reported) when neither works."""
    width = image_side(_number(root.findtext("size/width")))
    height = image_side(_number(root.findtext("size/height")))
    if width is not None and height is not None:
        return height, width
    try:
        return read_image_size(image_path)
    except ImageReadError as error:
        report_image_error(log, error, f"{xml_path.name} has no usable <size> and the image cannot be read "
                           f"({error.reason}); image skipped")
        return None


def _object_line(xml_path: Path, index: int) -> int | None:
    """1-based line of the index-th <object> element (only computed for error messages)."""
    text = xml_path.read_text(encoding="utf-8", errors="replace")
    starts = [match.start() for match in re.finditer(r"<object[\s>]", text)]
    return text.count("\n", 0, starts[index]) + 1 if index < len(starts) else None
