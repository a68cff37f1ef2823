"""Drawing detections: one colour per class, labels readable on any background.

Everything here works on uint8 RGB images (H, W, 3), the same layout the Predictor takes; convert to BGR only
at the edge where OpenCV writes or shows a frame.
"""

from __future__ import annotations

import colorsys
from collections.abc import Mapping, Sequence

import cv2
import numpy as np

_FONT = cv2.FONT_HERSHEY_SIMPLEX
_GOLDEN_RATIO_CONJUGATE = 0.618033988749895
_BLACK = (0, 0, 0)
_WHITE = (255, 255, 255)


def class_color(label: int) -> tuple[int, int, int]:
    """A bright, stable RGB colour for a class label.

    Hues step around the colour wheel by the golden ratio, so neighbouring labels get clearly different colours
    and every run draws a class in the same colour.

    Args:
        label: class label (1..K; any int works).

    Returns:
        (r, g, b) in 0..255.
    """
    hue = (int(label) * _GOLDEN_RATIO_CONJUGATE) % 1.0
    red, green, blue = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return round(red * 255), round(green * 255), round(blue * 255)


def relative_luminance(color: Sequence[int]) -> float:
    """WCAG relative luminance of an sRGB colour (0 = black, 1 = white)."""
    channels = np.asarray(color, dtype=np.float64) / 255.0
    linear = np.where(channels <= 0.03928, channels / 12.92, ((channels + 0.055) / 1.055) ** 2.4)
    return float(linear @ np.array([0.2126, 0.7152, 0.0722]))


def contrasting_text_color(background: Sequence[int]) -> tuple[int, int, int]:
    """Black or white, whichever has the higher WCAG contrast ratio against ``background`` (RGB)."""
    luminance = relative_luminance(background)
    contrast_with_black = (luminance + 0.05) / 0.05
    contrast_with_white = 1.05 / (luminance + 0.05)
    return _BLACK if contrast_with_black >= contrast_with_white else _WHITE


def _line_thickness(image: np.ndarray) -> int:
    return max(1, round(min(image.shape[:2]) / 320))


def _font_scale(image: np.ndarray) -> float:
    return max(0.4, min(image.shape[:2]) / 900)


def _label_padding(thickness: int) -> int:
    return max(2, thickness + 1)


def label_size(text: str, *, font_scale: float, thickness: int) -> tuple[int, int]:
    """(width, height) in pixels of the filled box :func:`draw_label` draws for ``text``."""
    (text_width, text_height), baseline = cv2.getTextSize(text, _FONT, font_scale, thickness)
    pad = _label_padding(thickness)
    return text_width + 2 * pad, text_height + baseline + 2 * pad


def draw_label(
    image: np.ndarray,
    text: str,
    anchor_xy: tuple[int, int],
    background: Sequence[int],
    *,
    font_scale: float,
    thickness: int,
) -> None:
    """Draw ``text`` on a filled box in ``background`` colour, in place.

    The box sits above ``anchor_xy`` (a box's top-left corner) and moves inside the image when there is no room
    above or to the right; the text colour is black or white, whichever contrasts more with the fill.
    """
    (_, text_height), _ = cv2.getTextSize(text, _FONT, font_scale, thickness)
    pad = _label_padding(thickness)
    box_width, box_height = label_size(text, font_scale=font_scale, thickness=thickness)
    image_height, image_width = image.shape[:2]
    left = int(min(max(anchor_xy[0], 0), max(image_width - box_width, 0)))
    top = int(anchor_xy[1]) - box_height
    if top < 0:  # no room above the box: put the label just inside its top edge
        top = int(min(max(anchor_xy[1], 0), max(image_height - box_height, 0)))
    fill = tuple(int(c) for c in background)
    cv2.rectangle(image, (left, top), (left + box_width, top + box_height), fill, cv2.FILLED)
    origin = (left + pad, top + pad + text_height)
    cv2.putText(image, text, origin, _FONT, font_scale, contrasting_text_color(fill), thickness, cv2.LINE_AA)


def draw_detections(
    image: np.ndarray,
    detections: Mapping[str, np.ndarray],
    class_names: Sequence[str],
    *,
    copy: bool = True,
) -> np.ndarray:
    """Draw boxes, class names and scores on an RGB image.

    Args:
        image: uint8 RGB (H, W, 3).
        detections: ``boxes`` float [D, 4] xyxy absolute pixels, ``scores`` [D], ``labels`` int [D] in 1..K
            (the Predictor's output for this image); with ``track_ids`` int [D] (a ``Tracker``'s output) the
            labels read ``#ID class score``.
        class_names: names of labels 1..K (``class_names[label - 1]``).
        copy: draw on a copy (default) or on ``image`` itself.

    Returns:
        The annotated uint8 RGB image (H, W, 3).
    """
    canvas = image.copy() if copy else image
    thickness = _line_thickness(canvas)
    font_scale = _font_scale(canvas)
    text_thickness = max(1, thickness // 2)
    # Lowest score first, so the most confident label ends up on top where labels overlap.
    order = np.argsort(np.asarray(detections["scores"]), kind="stable")
    track_ids = detections.get("track_ids")
    for index in order:
        x1, y1, x2, y2 = (int(round(float(v))) for v in detections["boxes"][index])
        label = int(detections["labels"][index])
        color = class_color(label)
        cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness)  # axis-aligned: crisp, no anti-aliasing
        name = class_names[label - 1] if 1 <= label <= len(class_names) else f"class {label}"
        text = f"{name} {float(detections['scores'][index]):.2f}"
        if track_ids is not None:
            text = f"#{int(track_ids[index])} {text}"
        draw_label(canvas, text, (x1, y1), color, font_scale=font_scale, thickness=text_thickness)
    return canvas


def draw_tracks(
    image: np.ndarray,
    tracks: Mapping[str, np.ndarray],
    class_names: Sequence[str],
    trails: Mapping[int, Sequence[tuple[float, float]]],
    *,
    copy: bool = True,
) -> np.ndarray:
    """Draw tracked objects: each one's trail of recent centres, then its box labelled ``#ID class score``.

    Args:
        image: uint8 RGB (H, W, 3).
        tracks: a ``Tracker.update`` result (``boxes``, ``scores``, ``labels``, ``track_ids``).
        class_names: names of labels 1..K.
        trails: box centres (x, y) per track id, oldest first (``Tracker.trails``); the trail fades towards
            its oldest point by getting thinner.
        copy: draw on a copy (default) or on ``image`` itself.

    Returns:
        The annotated uint8 RGB image (H, W, 3).
    """
    canvas = image.copy() if copy else image
    thickness = _line_thickness(canvas)
    for track_id, label in zip(np.asarray(tracks["track_ids"]).tolist(), np.asarray(tracks["labels"]).tolist()):
        points = np.round(np.asarray(trails.get(track_id, ()), dtype=np.float64)).astype(np.int32).reshape(-1, 2)
        color = class_color(label)
        for step in range(1, len(points)):  # newest segments thickest
            width = max(1, round(thickness * 2 * step / len(points)))
            cv2.line(canvas, tuple(map(int, points[step - 1])), tuple(map(int, points[step])), color, width, cv2.LINE_AA)
    return draw_detections(canvas, tracks, class_names, copy=False)


def draw_stream_overlay(image: np.ndarray, *, fps: float, latency_ms: float, copy: bool = False) -> np.ndarray:
    """Draw the ``FPS`` and ``latency`` read-out in the top-left corner (white on a dark box), in place."""
    canvas = image.copy() if copy else image
    text = f"{fps:5.1f} FPS  {latency_ms:4.0f} ms"
    draw_label(
        canvas,
        text,
        (0, 0),
        (24, 24, 24),
        font_scale=_font_scale(canvas),
        thickness=max(1, _line_thickness(canvas) // 2),
    )
    return canvas
