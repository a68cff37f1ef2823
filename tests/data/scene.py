"""One small scene written in COCO, VOC and YOLO formats (used through the ``make_scene`` fixture).

``WRITERS[format](folder)`` writes the scene below into ``folder`` and returns its paths:

* ``"coco"``: ``{"images": dir, "annotations": json}`` (category ids 3, 7, 18 -- deliberately not contiguous);
* ``"voc"``:  ``{"root", "images", "annotations", "split"}`` (VOCdevkit layout, 1-based coordinates,
  ImageSets/Main/trainval.txt lists every image, train.txt the first two);
* ``"yolo"``: ``{"images", "labels", "classes", "yaml"}`` (the negative image has no label file).

Every format holds the same images (same pixels) and the same boxes; ``SCENE_BOXES`` gives the truth in 0-based
continuous xyxy pixels, by file stem.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from xml.sax.saxutils import escape

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[2]
SCENE_CLASSES = ("cat", "dog", "person")  # alphabetical, so VOC's sorted union gives the same order
SCENE_CATEGORY_IDS = (3, 7, 18)
CLASS_COLOURS = {"cat": (220, 40, 40), "dog": (40, 200, 60), "person": (40, 60, 220)}
# stem -> ((height, width), [(class, x1, y1, x2, y2), ...]); integer 0-based continuous coordinates.
SCENE = {
    "000001": ((48, 64), [("cat", 4, 6, 30, 40), ("person", 30, 2, 60, 46)]),
    "000002": ((64, 40), [("dog", 0, 0, 40, 64)]),  # the whole image: VOC 1..40 x 1..64
    "000003": ((50, 50), [("dog", 10, 10, 20, 30), ("cat", 25, 5, 45, 45), ("cat", 2, 30, 12, 48)]),
    "000004": ((40, 56), []),  # a negative
}
SCENE_BOXES = {
    stem: (np.array([box[1:] for box in objects], dtype=np.float32).reshape(-1, 4), [box[0] for box in objects])
    for stem, (_, objects) in SCENE.items()
}


def scene_image(stem: str) -> np.ndarray:
    """The RGB pixels of one scene image: grey background, each box filled with its class colour."""
    (height, width), objects = SCENE[stem]
    image = np.full((height, width, 3), 128, dtype=np.uint8)
    for name, x1, y1, x2, y2 in objects:
        image[y1:y2, x1:x2] = CLASS_COLOURS[name]
    return image


def write_rgb(path: Path, image: np.ndarray) -> Path:
    """Writes RGB pixels with OpenCV (JPEG quality 95 for .jpg)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    return path


def _write_images(folder: Path) -> None:
    for stem in SCENE:
        write_rgb(folder / f"{stem}.jpg", scene_image(stem))


def write_coco(root: Path) -> dict[str, Path]:
    _write_images(root / "images")
    category_of = dict(zip(SCENE_CLASSES, SCENE_CATEGORY_IDS))
    images, annotations = [], []
    for image_id, (stem, ((height, width), objects)) in enumerate(SCENE.items(), start=1):
        images.append({"id": image_id, "file_name": f"{stem}.jpg", "height": height, "width": width})
        for name, x1, y1, x2, y2 in objects:
            annotations.append({
                "id": len(annotations) + 1, "image_id": image_id, "category_id": category_of[name],
                "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0,
            })
    categories = [{"id": cid, "name": name, "supercategory": "animal"} for name, cid in category_of.items()]
    path = root / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return {"images": root / "images", "annotations": path}


def voc_xml(stem: str, height: int, width: int, objects, *, difficult=()) -> str:
    """A VOC XML document; ``objects`` in 0-based continuous xyxy, written 1-based as VOC does."""
    parts = [f"<annotation><folder>VOC</folder><filename>{stem}.jpg</filename>",
             f"<size><width>{width}</width><height>{height}</height><depth>3</depth></size>"]
    for index, (name, x1, y1, x2, y2) in enumerate(objects):
        parts.append(
            f"<object>\n<name>{escape(name)}</name><pose>Unspecified</pose><truncated>0</truncated>"
            f"<difficult>{int(index in difficult)}</difficult>\n<bndbox><xmin>{x1 + 1}</xmin><ymin>{y1 + 1}</ymin>"
            f"<xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox>\n</object>"
        )
    parts.append("</annotation>")
    return "\n".join(parts)


def write_voc(root: Path) -> dict[str, Path]:
    _write_images(root / "JPEGImages")
    (root / "Annotations").mkdir(parents=True)
    for stem, ((height, width), objects) in SCENE.items():
        (root / "Annotations" / f"{stem}.xml").write_text(voc_xml(stem, height, width, objects))
    splits = root / "ImageSets" / "Main"
    splits.mkdir(parents=True)
    (splits / "trainval.txt").write_text("\n".join(SCENE) + "\n")
    (splits / "train.txt").write_text("\n".join(list(SCENE)[:2]) + "\n")
    return {"root": root, "images": root / "JPEGImages", "annotations": root / "Annotations",
            "split": splits / "trainval.txt"}


def write_yolo(root: Path) -> dict[str, Path]:
    _write_images(root / "images")
    (root / "labels").mkdir(parents=True)
    for stem, ((height, width), objects) in SCENE.items():
        if not objects:
            continue  # a negative: no label file at all
        lines = [
            f"{SCENE_CLASSES.index(name)} {(x1 + x2) / 2 / width:.6f} {(y1 + y2) / 2 / height:.6f} "
            f"{(x2 - x1) / width:.6f} {(y2 - y1) / height:.6f}"
            for name, x1, y1, x2, y2 in objects
        ]
        (root / "labels" / f"{stem}.txt").write_text("\n".join(lines) + "\n")
    (root / "classes.txt").write_text("\n".join(SCENE_CLASSES) + "\n")
    names = "\n".join(f"  {index}: {name}" for index, name in enumerate(SCENE_CLASSES))
    (root / "data.yaml").write_text(f"path: .\ntrain: images\nval: images\nnames:\n{names}\n")
    return {"images": root / "images", "labels": root / "labels", "classes": root / "classes.txt",
            "yaml": root / "data.yaml"}


WRITERS = {"coco": write_coco, "voc": write_voc, "yolo": write_yolo}


def load_script(relative_path: str):
    """Imports a script of the repository (tools/convert.py, data/download.py, ...) as a module."""
    path = REPO_ROOT / relative_path
    name = "script_" + relative_path.replace("/", "_").removesuffix(".py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
