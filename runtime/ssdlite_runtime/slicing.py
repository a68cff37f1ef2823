"""Sliced inference for small objects in large images: the tiles of an image and how their detections are merged.

The network sees every image squeezed to its S x S input, so a 20-pixel object in a 1920 x 1080 frame shrinks to a
few pixels and is lost. Slicing (SAHI, Akyon et al., "Slicing Aided Hyper Inference and Fine-tuning for Small Object
Detection", ICIP 2022) runs the network on overlapping tiles of the image as well as on the whole frame, so small
objects reach the network at the size of a tile, and large ones, cut by every tile, are still seen whole in the full
frame. The Predictor does it with ``Predictor(..., slice_size=S, slice_overlap=F)``; this module holds its two parts,
numpy only:

* :func:`slice_windows`: S x S tiles on a grid with steps of ``S - round(F * S)`` pixels from the top-left corner,
  the last row and column moved back to end at the image's edge (so the last pair may overlap by more); a tile is
  never larger than the image (a side shorter than S gets tiles of that side's length), and an image no larger than
  S in both sides gets no tiles: the full frame alone, as without slicing (SAHI's ``get_slice_bboxes`` grid).
* :func:`merge_sliced_detections`: the detections of the full frame and of every tile, in image pixels, become one
  list in three steps. A tile's detection is *cut* when it touches one of the tile's inner edges (an edge inside the
  image, within :data:`CUT_MARGIN` of the tile's side): it shows an object the tile cut.

  1. A cut detection is dropped when another tile holds its whole box away from that tile's own inner edges: that
     tile saw the object's part beyond the cut as well (with a grid overlap of at least an object's size, some tile
     holds the object whole).
  2. Class-wise NMS at the Predictor's IoU (:func:`~ssdlite_runtime.postprocess.class_wise_nms`, torchvision's
     ``batched_nms``), best first, cut at the Predictor's ``max_detections``.
  3. A cut detection is dropped when a better-scoring detection of its class that the NMS kept covers more than
     :data:`COVERED` of its box: the full frame's view of an object larger than a tile, or another tile's larger
     part of an object that no tile holds whole.

  So an object comes out once, with the box of a view that saw it whole, wherever a view did; an object that no
  view saw whole comes out as its best-scoring part (and as another part only where the two overlap little).

  SAHI merges with greedy non-maximum merging instead: boxes matched by intersection over the smaller box (0.5) are
  joined into their union box. On the benchmark's small shapes (``ssdlite-benchmark --only slicing``'s 20 frames,
  the ``make demo`` model, scores above 0.05; SAHI's ``greedy_nmm`` ported to numpy for the comparison, measured
  once on 2026-12-07) the two were close: with 112 px tiles AP 51.0 / AP50 73.1 / AP_small
  50.0 here against 51.9 / 70.4 / 51.9 for SAHI's merge, with 168 px tiles 25.9 / 38.1 / 24.4 against 24.2 / 36.0 /
  23.2 (plain NMS without the cut rule: 49.6 / 70.8 / 48.7 and 25.4 / 37.3 / 23.7). NMS keeps the boxes the network
  predicted and never joins two objects into one box, and it is the Predictor's own NMS, so it stays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ssdlite_runtime.postprocess import class_wise_nms

__all__ = [
    "COVERED",
    "CUT_MARGIN",
    "DEFAULT_SLICE_OVERLAP",
    "MIN_SLICE_SIZE",
    "check_slicing",
    "merge_sliced_detections",
    "slice_windows",
]

MIN_SLICE_SIZE = 32
"""The smallest tile side, in pixels (the network's smallest feature map is stride 32)."""

DEFAULT_SLICE_OVERLAP = 0.2
"""Tiles overlap by this fraction of their side by default (SAHI's default, 0.2)."""

CUT_MARGIN = 0.02
"""A box whose edge lies within this fraction of the tile's side of an inner edge of its tile counts as cut there."""

COVERED = 0.5
"""A cut detection is covered by another detection when their intersection is more than this fraction of its box."""

Detections = dict[str, np.ndarray]


def check_slicing(slice_size: int | None, slice_overlap: float) -> tuple[int | None, float]:
    """The slicing options, checked: ``slice_size`` None (no slicing) or an integer >= :data:`MIN_SLICE_SIZE`, and
    ``0 <= slice_overlap < 1``.

    Raises:
        ValueError: either out of range (one line naming it, its value and what it takes).
    """
    if slice_size is not None:
        if isinstance(slice_size, bool) or not float(slice_size).is_integer() or int(slice_size) < MIN_SLICE_SIZE:
            raise ValueError(
                f"slice_size must be a whole number of pixels >= {MIN_SLICE_SIZE}, got {slice_size!r} "
                "(None: no slicing)"
            )
        slice_size = int(slice_size)
    overlap = float(slice_overlap)
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"slice_overlap must be a fraction of the tile in [0, 1), got {slice_overlap!r}")
    return slice_size, overlap


def _starts(length: int, tile: int, overlap: float) -> list[int]:
    """Tile starts along one side: steps of ``tile - round(overlap * tile)`` from 0, the last at ``length - tile``."""
    if length <= tile:
        return [0]
    step = max(1, tile - round(overlap * tile))
    return [*range(0, length - tile, step), length - tile]


def slice_windows(height: int, width: int, slice_size: int, overlap: float = DEFAULT_SLICE_OVERLAP) -> np.ndarray:
    """The tiles of an image (see the module docstring), row by row from the top-left corner.

    Args:
        height, width: the image's size in pixels.
        slice_size: the tile side S.
        overlap: the fraction F of a tile that its neighbours overlap, in [0, 1).

    Returns:
        int64 [T, 4] (x1, y1, x2, y2) pixel edges (the tile is ``image[y1:y2, x1:x2]``); [0, 4] when the image is
        no larger than S in both sides.
    """
    if height <= slice_size and width <= slice_size:
        return np.zeros((0, 4), np.int64)
    tile_height, tile_width = min(slice_size, height), min(slice_size, width)
    windows = [
        (x, y, x + tile_width, y + tile_height)
        for y in _starts(height, tile_height, overlap)
        for x in _starts(width, tile_width, overlap)
    ]
    return np.array(windows, np.int64)


def _touches_inner_edges(boxes: np.ndarray, windows: np.ndarray, image_size: Sequence[int]) -> np.ndarray:
    """bool [N, T]: whether box n lies within :data:`CUT_MARGIN` of an inner edge of window t (an edge inside the
    image; the image's own border cuts nothing that another tile would see). ``boxes`` [N, 4], ``windows`` [N or 1,
    T, 4]."""
    height, width = image_size
    x1, y1, x2, y2 = np.moveaxis(windows.astype(np.float64), -1, 0)
    margin_x, margin_y = CUT_MARGIN * (x2 - x1), CUT_MARGIN * (y2 - y1)
    bx1, by1, bx2, by2 = (boxes[:, i, None].astype(np.float64) for i in range(4))
    return (
        ((x1 > 0) & (bx1 <= x1 + margin_x))
        | ((y1 > 0) & (by1 <= y1 + margin_y))
        | ((x2 < width) & (bx2 >= x2 - margin_x))
        | ((y2 < height) & (by2 >= y2 - margin_y))
    )


def _seen_whole_elsewhere(boxes: np.ndarray, windows: np.ndarray, image_size: Sequence[int]) -> np.ndarray:
    """bool [N]: whether a window holds box n away from the window's inner edges."""
    inside = (boxes[:, None, :2] >= windows[None, :, :2]).all(axis=-1) & (
        boxes[:, None, 2:] <= windows[None, :, 2:]
    ).all(axis=-1)
    return (inside & ~_touches_inner_edges(boxes, windows[None], image_size)).any(axis=1)


def merge_sliced_detections(
    full_frame: Detections,
    tiles: Sequence[Detections],
    windows: np.ndarray,
    *,
    image_size: Sequence[int],
    iou_threshold: float,
    max_detections: int,
) -> Detections:
    """One image's detections from those of its full frame and its tiles (the rule: the module docstring).

    Args:
        full_frame: the full frame's detections, boxes in image pixels.
        tiles: each tile's detections, boxes in the tile's pixels, in the order of ``windows``.
        windows: int [T, 4] the tiles (:func:`slice_windows`).
        image_size: (height, width) of the image.
        iou_threshold: the NMS IoU (the Predictor's ``nms_iou``).
        max_detections: detections kept at most (the Predictor's ``max_detections``).

    Returns:
        ``boxes`` float32 [D, 4] xyxy image pixels, ``scores`` float32 [D], ``labels`` int64 [D], best first.
    """
    if len(tiles) != len(windows):
        raise ValueError(f"{len(tiles)} tiles' detections for {len(windows)} windows")
    windows = np.asarray(windows, np.int64).reshape(-1, 4)
    tile_of = np.repeat(np.arange(len(windows)), [len(result["scores"]) for result in tiles])
    offsets = windows[tile_of][:, [0, 1, 0, 1]].astype(np.float32)
    tile_boxes = np.concatenate([np.zeros((0, 4), np.float32), *(result["boxes"].reshape(-1, 4) for result in tiles)])
    tile_boxes = tile_boxes + offsets
    tile_cut = _touches_inner_edges(tile_boxes, windows[tile_of][:, None], image_size)[:, 0]
    dropped = tile_cut.copy()
    dropped[tile_cut] = _seen_whole_elsewhere(tile_boxes[tile_cut], windows, image_size)
    from_full_frame = np.ones(len(full_frame["scores"]), bool)
    keep = np.concatenate([from_full_frame, ~dropped])
    boxes = np.concatenate([full_frame["boxes"].reshape(-1, 4), tile_boxes])[keep].astype(np.float32)
    scores = np.concatenate([full_frame["scores"], *(result["scores"] for result in tiles)])[keep].astype(np.float32)
    labels = np.concatenate([full_frame["labels"], *(result["labels"] for result in tiles)])[keep].astype(np.int64)
    cut = np.concatenate([~from_full_frame, tile_cut])[keep]
    order = class_wise_nms(boxes, scores, labels, iou_threshold=iou_threshold, max_detections=max_detections)
    order = order[~_covered_by_better(boxes[order], labels[order], cut[order])]
    return {"boxes": boxes[order], "scores": scores[order], "labels": labels[order]}


def _covered_by_better(boxes: np.ndarray, labels: np.ndarray, cut: np.ndarray) -> np.ndarray:
    """bool [N] of boxes sorted best first: cut, with more than :data:`COVERED` of its box inside an earlier (better)
    box of its label."""
    covered = np.zeros(len(boxes), bool)
    rows = np.flatnonzero(cut)
    if not rows.size:
        return covered
    boxes = boxes.astype(np.float64)
    top_left = np.maximum(boxes[rows, None, :2], boxes[None, :, :2])
    bottom_right = np.minimum(boxes[rows, None, 2:], boxes[None, :, 2:])
    intersection = np.prod(np.clip(bottom_right - top_left, 0.0, None), axis=-1)  # [cut, N]
    areas = np.prod(boxes[rows, 2:] - boxes[rows, :2], axis=-1)
    earlier_same_label = (np.arange(len(boxes))[None, :] < rows[:, None]) & (labels[rows, None] == labels[None, :])
    covered[rows] = ((intersection > COVERED * areas[:, None]) & earlier_same_label).any(axis=1)
    return covered
