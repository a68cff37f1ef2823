"""Conversion of VOC and YOLO annotations to COCO json (the format evaluation and the COCO reader use)."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from ssdlite.data.voc import VOCDetection
from ssdlite.data.yolo import YOLODetection

__all__ = ["voc_to_coco", "write_coco_json", "yolo_to_coco"]


def voc_to_coco(
    images_dir: str | Path,
    annotations_dir: str | Path,
    *,
    split_file: str | Path | None = None,
    class_names: Sequence[str] | str | Path | None = None,
    out_file: str | Path | None = None,
) -> dict:
    """Converts VOC XML annotations to a COCO ground truth.

    Boxes become 0-based (xmin - 1, ymin - 1, xmax - xmin + 1, ymax - ymin + 1) in COCO's [x, y, w, h]; category
    ids are 1..K in the order of ``class_names`` (default: sorted union of the names in the files); difficult
    objects get ``iscrowd=1`` and ``difficult=1`` (COCOeval then ignores them, as the VOC protocol does, and a
    CocoDetection of the result trains on them only with ``include_crowd=True``). Degenerate boxes are dropped and
    boxes outside the image clipped (one warning counts them).

    Args:
        images_dir: folder of the images (file names and, where <size> is missing, sizes come from it).
        annotations_dir: folder of the ``<id>.xml`` files.
        split_file: ids to convert, one per line; None converts every XML.
        class_names: list or names file; None for the sorted union of the files' names.
        out_file: where to write the json (parent folders created); None writes nothing.

    Returns:
        The COCO dict (``images``, ``annotations``, ``categories``).
    """
    dataset = VOCDetection.from_folders(images_dir, annotations_dir, split_file=split_file, class_names=class_names)
    coco = dataset.to_coco()
    if out_file is not None:
        write_coco_json(coco, out_file)
    return coco


def yolo_to_coco(
    images_dir: str | Path,
    labels_dir: str | Path,
    *,
    classes: Sequence[str] | str | Path,
    out_file: str | Path | None = None,
) -> dict:
    """Converts YOLO txt labels to a COCO ground truth.

    Normalised (cx, cy, w, h) are scaled by each image's size (read from its header, EXIF rotation applied) to
    absolute [x, y, w, h]; YOLO class c gets category id c+1; images without a label file are kept as negatives.

    Args:
        images_dir: folder of the images.
        labels_dir: folder of the txt label files.
        classes: list, names file, or dataset YAML with ``names``.
        out_file: where to write the json; None writes nothing.

    Returns:
        The COCO dict.
    """
    coco = YOLODetection(images_dir, labels_dir, classes=classes).to_coco()
    if out_file is not None:
        write_coco_json(coco, out_file)
    return coco


def write_coco_json(coco: dict, out_file: str | Path) -> Path:
    """Writes a COCO dict atomically (temporary file + rename), so a failed run never leaves half a json.

    The file gets the permissions any new file gets (0644 under the usual umask 022), not mkstemp's 0600.
    """
    out_file = Path(out_file)
    out_file.parent.mkdir(parents=True, exist_ok=True)
    temporary = out_file.with_name(f".{out_file.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for open()
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(coco, stream)
        os.replace(temporary, out_file)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return out_file
