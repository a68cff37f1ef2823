"""Synthetic "shapes" detection dataset in COCO format: the embedded default for demos, tests and smoke training.

Every image has a textured background (a colour gradient, smooth blotches, sometimes stripes, clutter lines that are
not objects, and sensor noise) and zero to six filled shapes (``max_shapes``) -- circles, squares, triangles and
stars -- from small (5 % of the image side by default, see ``object_sizes``; or given in pixels, ``object_pixels``)
to large (half of it), rotated, shaded, often overlapping (each keeps at least 60 % of its pixels visible) and
sometimes cut by the image border. Images are square (``size``) or ``width`` x ``height``, e.g. 1920 x 1080 frames
with 12-40 pixel shapes for sliced inference (``ssdlite-make-shapes --width 1920 --height 1080 --object-pixels 12 40
--max-shapes 30``); a side of a rectangle is the shorter side. A shape's box is the tight box of its visible
pixels, taken from the mask it was drawn with, so it matches the pixels exactly. About one image in ten has no
object.

Output for ``make_shapes(out_dir, num_train=N, num_val=M, size=S, seed=K)``::

    OUT/train/000001.jpg ...         N images, S x S (or width x height)
    OUT/val/000001.jpg ...           M images
    OUT/annotations/train.json       COCO detection ground truth (categories 1..4, image ids 1..N)
    OUT/annotations/val.json

The annotation files' ``info`` records the generator's arguments (``ssdlite_shapes``), so a consumer can tell
whether a folder on disk was made with the settings it expects.

Deterministic: image ``i`` of a split is drawn from its own generator seeded by (seed, split, i), so the same
arguments give byte-identical JSON and images (and image ``i`` does not depend on how many images are drawn).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

__all__ = ["SHAPE_CLASSES", "make_shapes", "render_shapes_image"]

SHAPE_CLASSES: tuple[str, ...] = ("circle", "square", "triangle", "star")
_SPLITS = ("train", "val")
DEFAULT_MAX_SHAPES = 6
_EMPTY_IMAGE_PROBABILITY = 0.1
_MIN_VISIBLE_FRACTION = 0.6  # of each shape's drawn pixels, after later shapes and the image border
# Default shape extent relative to the image side (drawn log-uniformly in this range).
DEFAULT_OBJECT_SIZES: tuple[float, float] = (0.05, 0.5)
_MIN_COLOUR_DISTANCE = 90.0  # RGB distance between a shape and the background under it
_PLACEMENT_TRIALS = 12
_JPEG_QUALITY = 92


@dataclass(frozen=True)
class ShapeObject:
    """One drawn shape: its label (1..K), tight xyxy box in pixel edges and visible pixel count."""

    label: int
    box: tuple[int, int, int, int]
    area: int


def make_shapes(
    out_dir: str | Path,
    *,
    num_train: int,
    num_val: int,
    size: int = 320,
    seed: int = 0,
    object_sizes: tuple[float, float] = DEFAULT_OBJECT_SIZES,
    width: int | None = None,
    height: int | None = None,
    object_pixels: tuple[float, float] | None = None,
    max_shapes: int = DEFAULT_MAX_SHAPES,
) -> dict[str, Path]:
    """Writes the shapes dataset (see the module docstring); writes nothing outside ``out_dir``.

    Args:
        out_dir: output folder (created; existing files with the same names are overwritten).
        num_train: number of train images (>= 0).
        num_val: number of validation images (>= 0).
        size: image side in pixels (>= 32), for both sides that ``width`` and ``height`` leave unset.
        seed: random seed; the same arguments give identical files.
        object_sizes: (smallest, largest) shape extent as a fraction of the image's (shorter) side,
            0 < min <= max <= 1.
        width, height: the image's sides in pixels (>= 32), instead of ``size``.
        object_pixels: (smallest, largest) shape extent in pixels, instead of ``object_sizes``.
        max_shapes: shapes per image at most (>= 1; drawn uniformly from 1 to it, one image in ten has none).

    Returns:
        dict with ``root``, ``train_images``, ``train_annotations``, ``val_images``, ``val_annotations`` -- the last
        four are the ``DetectionDataModule`` arguments of the same names (format "coco").

    Raises:
        ValueError: a negative count, a side below 32, object sizes outside 0 < min <= max <= 1 (in pixels: above
            0 and at most the shorter side), or ``max_shapes`` below 1.
    """
    if num_train < 0 or num_val < 0:
        raise ValueError(f"make_shapes needs num_train, num_val >= 0, got {num_train}, {num_val}")
    shape = (size if height is None else height, size if width is None else width)
    if min(shape) < 32:
        got = size if width is None and height is None else f"width {shape[1]}, height {shape[0]}"
        raise ValueError(f"make_shapes size must be >= 32 pixels (shapes need room), got {got}")
    if object_pixels is not None:
        object_sizes = _object_sizes_from_pixels(object_pixels, min(shape))
    object_sizes = _check_object_sizes(object_sizes)
    if isinstance(max_shapes, bool) or int(max_shapes) != max_shapes or max_shapes < 1:
        raise ValueError(f"make_shapes max_shapes must be a whole number >= 1, got {max_shapes}")
    size = shape[0] if shape[0] == shape[1] else shape  # a square is drawn exactly as it always was
    root = Path(out_dir)
    paths: dict[str, Path] = {"root": root}
    for split_index, (split, count) in enumerate(zip(_SPLITS, (num_train, num_val))):
        images_dir = root / split
        annotation_file = root / "annotations" / f"{split}.json"
        images_dir.mkdir(parents=True, exist_ok=True)
        annotation_file.parent.mkdir(parents=True, exist_ok=True)
        coco = _write_split(
            images_dir, count=count, size=size, seed=seed, split_index=split_index, object_sizes=object_sizes,
            max_shapes=int(max_shapes),
        )
        annotation_file.write_text(json.dumps(coco, separators=(",", ":")) + "\n", encoding="utf-8")
        paths[f"{split}_images"] = images_dir
        paths[f"{split}_annotations"] = annotation_file
    return paths


def _object_sizes_from_pixels(object_pixels: Any, side: int) -> tuple[float, float]:
    smallest, largest = (float(value) for value in object_pixels)
    if not 0.0 < smallest <= largest <= side:
        raise ValueError(
            f"object_pixels must be (min, max) shape extents in pixels with 0 < min <= max <= {side} (the image's "
            f"shorter side), got {tuple(object_pixels)}"
        )
    return smallest / side, largest / side


def _check_object_sizes(object_sizes: Any) -> tuple[float, float]:
    smallest, largest = (float(value) for value in object_sizes)
    if not 0.0 < smallest <= largest <= 1.0:
        raise ValueError(
            f"object_sizes must be (min, max) fractions of the image side with 0 < min <= max <= 1, "
            f"got {tuple(object_sizes)}"
        )
    return smallest, largest


def _write_split(
    images_dir: Path, *, count: int, size: int | tuple[int, int], seed: int, split_index: int,
    object_sizes: tuple[float, float], max_shapes: int,
) -> dict[str, Any]:
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    height, width = _sides(size)
    for image_id in range(1, count + 1):
        rng = np.random.default_rng([seed, split_index, image_id])
        image, objects, _ = render_shapes_image(rng, size=size, object_sizes=object_sizes, max_shapes=max_shapes)
        file_name = f"{image_id:06d}.jpg"
        ok, encoded = cv2.imencode(
            ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY]
        )
        if not ok:
            raise OSError(f"OpenCV could not encode {images_dir / file_name} as JPEG")
        (images_dir / file_name).write_bytes(encoded.tobytes())
        images.append({"id": image_id, "file_name": file_name, "width": width, "height": height})
        for shape in objects:
            x1, y1, x2, y2 = shape.box
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": shape.label,
                    "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                    "area": float(shape.area),
                    "iscrowd": 0,
                }
            )
    return {
        "info": {
            "description": "ssdlite synthetic shapes",
            "version": "1.0",
            "ssdlite_shapes": {
                "split": _SPLITS[split_index],
                "count": count,
                "size": size if isinstance(size, int) else [width, height],
                "seed": seed,
                "object_sizes": list(object_sizes),
                **({} if max_shapes == DEFAULT_MAX_SHAPES else {"max_shapes": max_shapes}),
            },
        },
        "licenses": [],
        "images": images,
        "annotations": annotations,
        "categories": [
            {"id": index + 1, "name": name, "supercategory": "shape"}
            for index, name in enumerate(SHAPE_CLASSES)
        ],
    }


def _sides(size: int | tuple[int, int]) -> tuple[int, int]:
    """(height, width) of ``size``: a square's side, or (height, width) itself."""
    return (size, size) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))


def render_shapes_image(
    rng: np.random.Generator,
    *,
    size: int | tuple[int, int],
    object_sizes: tuple[float, float] = DEFAULT_OBJECT_SIZES,
    max_shapes: int = DEFAULT_MAX_SHAPES,
) -> tuple[np.ndarray, list[ShapeObject], np.ndarray]:
    """Draws one image and its objects.

    Args:
        rng: the image's random generator.
        size: image side, or (height, width).
        object_sizes: (smallest, largest) shape extent as a fraction of the (shorter) side.
        max_shapes: shapes drawn at most.

    Returns:
        image: np.ndarray[height, width, 3] uint8 RGB.
        objects: labels 1..4, tight boxes and areas of the visible pixels, in drawing order.
        instance_map: np.ndarray[height, width] int16, the index in ``objects`` of the shape each pixel shows, -1
            for background.
    """
    canvas = _background(rng, size)
    owner = np.full(_sides(size), -1, dtype=np.int16)  # which shape each pixel shows, -1 = background
    drawn_areas: list[int] = []
    labels: list[int] = []
    count = 0 if rng.random() < _EMPTY_IMAGE_PROBABILITY else int(rng.integers(1, max_shapes + 1))
    for _ in range(count):
        label = int(rng.integers(1, len(SHAPE_CLASSES) + 1))
        mask = _place_shape(rng, label, size, owner, drawn_areas, object_sizes)
        if mask is None:
            continue
        _paint(rng, canvas, mask)
        owner[mask] = len(labels)
        labels.append(label)
        drawn_areas.append(int(mask.sum()))
    _add_sensor_noise(rng, canvas)
    return canvas.astype(np.uint8), _objects_from_owner(owner, labels), owner


def _place_shape(
    rng: np.random.Generator,
    label: int,
    size: int | tuple[int, int],
    owner: np.ndarray,
    drawn_areas: list[int],
    object_sizes: tuple[float, float],
) -> np.ndarray | None:
    """A mask for a new shape that leaves every earlier shape >= 60 % visible and itself >= 60 % inside."""
    height, width = _sides(size)
    for _ in range(_PLACEMENT_TRIALS):
        extent = min(height, width) * math.exp(rng.uniform(math.log(object_sizes[0]), math.log(object_sizes[1])))
        if height == width:
            centre = rng.uniform(-0.1 * extent, width + 0.1 * extent, size=2)
        else:
            centre = rng.uniform(-0.1 * extent, np.array([width, height]) + 0.1 * extent)
        mask = _shape_mask(rng, label, size, centre, extent)
        full_area = _full_shape_area(label, extent)
        if mask.sum() < max(_MIN_VISIBLE_FRACTION * full_area, 6):
            continue
        covered = np.bincount(owner[mask].astype(np.int64) + 1, minlength=len(drawn_areas) + 1)[1:]
        if all(
            _visible_after(index, owner, covered[index]) >= _MIN_VISIBLE_FRACTION * area
            for index, area in enumerate(drawn_areas)
            if covered[index]
        ):
            return mask
    return None


def _visible_after(index: int, owner: np.ndarray, newly_covered: int) -> int:
    return int((owner == index).sum()) - int(newly_covered)


def _full_shape_area(label: int, extent: float) -> float:
    """Approximate area of an uncut shape of the given extent (diameter / side), for the border check."""
    radius = extent / 2
    name = SHAPE_CLASSES[label - 1]
    if name == "circle":
        return math.pi * radius**2
    if name == "square":
        return extent**2
    if name == "triangle":
        return 3 * math.sqrt(3) / 4 * radius**2
    # star: ten triangles between the outer radius and the inner radius (0.45 of it)
    return 5 * radius * (0.45 * radius) * math.sin(math.radians(36))


def _shape_mask(
    rng: np.random.Generator, label: int, size: int | tuple[int, int], centre: np.ndarray, extent: float
) -> np.ndarray:
    """A boolean [height, width] mask of one shape; rotation random (squares, triangles, stars)."""
    return shape_mask(label, size, centre, extent, rotation=rng.uniform(0, 2 * math.pi))


def shape_mask(
    label: int, size: int | tuple[int, int], centre: np.ndarray, extent: float, rotation: float
) -> np.ndarray:
    """A boolean mask of one shape (label 1..4) centred at ``centre`` (x, y), rotated by ``rotation`` radians
    (circles ignore it), [size, size] or [height, width] for ``size`` (height, width); the shapes of the still
    images and of the video sequences (synthetic_video.py)."""
    mask = np.zeros(_sides(size), dtype=np.uint8)
    name = SHAPE_CLASSES[label - 1]
    radius = extent / 2
    if name == "circle":
        cx, cy = (int(round(v)) for v in centre)
        cv2.circle(mask, (cx, cy), max(int(round(radius)), 2), 1, thickness=-1, lineType=cv2.LINE_8)
        return mask.astype(bool)
    if name == "square":
        angles = rotation + np.arange(4) * (math.pi / 2)
        radii = np.full(4, radius * math.sqrt(2))
    elif name == "triangle":
        angles = rotation + np.arange(3) * (2 * math.pi / 3)
        radii = np.full(3, radius)
    else:  # star: five outer points, five inner
        angles = rotation + np.arange(10) * (math.pi / 5)
        radii = np.where(np.arange(10) % 2 == 0, radius, 0.45 * radius)
    points = np.stack([centre[0] + radii * np.cos(angles), centre[1] + radii * np.sin(angles)], axis=1)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 1, lineType=cv2.LINE_8)
    return mask.astype(bool)


def _background(rng: np.random.Generator, size: int | tuple[int, int]) -> np.ndarray:
    """float32 [height, width, 3] in 0..255: gradient + smooth blotches (+ stripes) + clutter lines."""
    height, width = _sides(size)
    side = max(height, width)  # the gradient and the stripes run over the longer side's scale
    ramp_x = np.linspace(-0.5, 0.5, width, dtype=np.float32) * (width / side)
    ramp_y = np.linspace(-0.5, 0.5, height, dtype=np.float32) * (height / side)
    angle = rng.uniform(0, 2 * math.pi)
    # [height, width] in about +-0.7
    gradient = math.cos(angle) * ramp_x[None, :] + math.sin(angle) * ramp_y[:, None]
    start, end = rng.uniform(20, 235, size=(2, 3)).astype(np.float32)
    canvas = (start + end) / 2 + gradient[..., None] * (end - start)
    grid = int(rng.integers(3, 9))
    blotches = rng.normal(0, rng.uniform(8, 30), size=(grid, grid, 3)).astype(np.float32)
    canvas += cv2.resize(blotches, (width, height), interpolation=cv2.INTER_CUBIC)
    if rng.random() < 0.4:
        period = rng.uniform(6, 30)
        phase = (
            math.cos(rng.uniform(0, math.pi)) * ramp_x[None, :]
            + math.sin(rng.uniform(0, math.pi)) * ramp_y[:, None]
        )
        canvas += (rng.uniform(5, 20) * np.sin(phase * side * 2 * math.pi / period))[..., None]
    for _ in range(int(rng.integers(0, 6))):
        start_point, end_point = (_random_point(rng, height, width) for _ in range(2))
        colour = tuple(float(v) for v in rng.uniform(0, 255, size=3))
        cv2.line(
            canvas, start_point, end_point, colour, thickness=int(rng.integers(1, 4)), lineType=cv2.LINE_AA
        )
    return canvas


def _random_point(rng: np.random.Generator, height: int, width: int) -> tuple[int, int]:
    """(x, y) of a random pixel (a square image draws as it always has, so its files stay the same)."""
    if height == width:
        return tuple(int(v) for v in rng.integers(0, width, size=2))
    return tuple(int(v) for v in rng.integers(0, (width, height)))


def _paint(rng: np.random.Generator, canvas: np.ndarray, mask: np.ndarray) -> None:
    """Fills a shape with a colour far from the background under it, shaded by a soft linear gradient."""
    under = canvas[mask].mean(axis=0)
    colour = rng.uniform(0, 255, size=3)
    for _ in range(20):
        if np.linalg.norm(colour - under) >= _MIN_COLOUR_DISTANCE:
            break
        colour = rng.uniform(0, 255, size=3)
    ys, xs = np.nonzero(mask)
    direction = rng.normal(size=2)
    direction /= np.linalg.norm(direction) + 1e-9
    extent = max(np.ptp(xs), np.ptp(ys), 1)
    shade = ((xs - xs.mean()) * direction[0] + (ys - ys.mean()) * direction[1]) / extent * rng.uniform(0, 40)
    canvas[ys, xs] = (colour[None, :] + shade[:, None]).astype(np.float32)


def _add_sensor_noise(rng: np.random.Generator, canvas: np.ndarray) -> None:
    """Gaussian luminance noise (one draw per pixel, shared by the channels: a third of the cost of RGB noise)."""
    sigma = np.float32(rng.uniform(2, 10))
    canvas += rng.standard_normal(canvas.shape[:2] + (1,), dtype=np.float32) * sigma
    np.clip(canvas, 0, 255, out=canvas)


def _objects_from_owner(owner: np.ndarray, labels: list[int]) -> list[ShapeObject]:
    """Tight boxes (pixel edges: x2 = last column + 1) and areas of each shape's visible pixels.

    Every shape has visible pixels (placement keeps >= 60 % of each), so ``objects[i]`` is owner value ``i``.
    """
    objects = []
    for index, label in enumerate(labels):
        ys, xs = np.nonzero(owner == index)
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
        objects.append(ShapeObject(label=label, box=box, area=int(xs.size)))
    return objects
