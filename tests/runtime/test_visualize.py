"""Drawing: class colours, readable labels, the FPS overlay."""

from __future__ import annotations

import numpy as np
import pytest

from ssdlite_runtime.visualize import (
    class_color,
    contrasting_text_color,
    draw_detections,
    draw_stream_overlay,
    relative_luminance,
)


def contrast_ratio(first, second) -> float:
    """WCAG 2 contrast ratio, written out from the definition."""
    lighter, darker = sorted((relative_luminance(first), relative_luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def test_relative_luminance_of_reference_colours():
    assert relative_luminance((0, 0, 0)) == pytest.approx(0.0)
    assert relative_luminance((255, 255, 255)) == pytest.approx(1.0)
    assert relative_luminance((255, 0, 0)) == pytest.approx(0.2126)
    assert relative_luminance((128, 128, 128)) == pytest.approx(0.2158605, abs=1e-6)  # sRGB mid grey


def test_label_text_contrasts_with_every_class_colour():
    for label in range(1, 81):
        fill = class_color(label)
        text = contrasting_text_color(fill)
        assert text in ((0, 0, 0), (255, 255, 255))
        other = (255, 255, 255) if text == (0, 0, 0) else (0, 0, 0)
        assert contrast_ratio(fill, text) >= contrast_ratio(fill, other)
        assert contrast_ratio(fill, text) >= 4.5  # WCAG AA for normal text
    assert contrasting_text_color((255, 255, 0)) == (0, 0, 0)
    assert contrasting_text_color((0, 0, 128)) == (255, 255, 255)


def test_class_colours_are_stable_and_neighbours_differ():
    assert class_color(3) == class_color(3)
    colours = [np.array(class_color(label)) for label in range(1, 21)]
    for first, second in zip(colours, colours[1:]):
        assert np.abs(first - second).max() > 60


def detections(boxes, labels, scores):
    return {
        "boxes": np.array(boxes, np.float32).reshape(-1, 4),
        "labels": np.array(labels, np.int64),
        "scores": np.array(scores, np.float32),
    }


@pytest.mark.parametrize("background", [0, 128, 255])
def test_boxes_and_labels_are_drawn_in_class_colours_on_any_background(background):
    image = np.full((200, 300, 3), background, np.uint8)
    result = draw_detections(image, detections([[50, 60, 150, 180], [0, 0, 80, 50]], [1, 2], [0.9, 0.5]), ["a", "b"])
    assert (image == background).all(), "the input is drawn on a copy"
    for label, (x1, y1, x2, y2) in ((1, (50, 60, 150, 180)), (2, (0, 0, 80, 50))):
        colour = np.array(class_color(label))
        assert (result[(y1 + y2) // 2, x2] == colour).all()  # right edge of the box
        assert (result[y2, (x1 + x2) // 2] == colour).all()  # bottom edge
    # The label of the first box sits on a filled box above it, with text in the contrasting colour.
    fill, text = np.array(class_color(1)), np.array(contrasting_text_color(class_color(1)))
    above = result[:60, 50:200]
    rows, cols = np.nonzero((above == fill).all(axis=-1))
    assert rows.max() == 59 and rows.max() - rows.min() >= 10 and cols.max() - cols.min() >= 20
    label_area = above[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1].reshape(-1, 3)
    assert (label_area == fill).all(axis=1).mean() > 0.5
    assert (np.abs(label_area.astype(int) - text).max(axis=1) < 60).sum() > 20
    # The second box touches the top edge: its label moves inside the image instead of vanishing.
    assert (result[0:20, 0:40].reshape(-1, 3) == np.array(class_color(2))).all(axis=1).mean() > 0.4


def test_drawing_nothing_changes_nothing_and_unknown_labels_still_draw():
    image = np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8)
    assert (draw_detections(image, detections([], [], []), ["a"]) == image).all()
    drawn = draw_detections(image, detections([[10, 10, 50, 50]], [7], [0.7]), ["a"])
    assert (drawn != image).any()


def test_stream_overlay_is_drawn_in_place_top_left():
    image = np.full((240, 320, 3), 200, np.uint8)
    result = draw_stream_overlay(image, fps=12.3, latency_ms=45)
    assert result is image
    corner = image[:20, :100].reshape(-1, 3)
    assert (corner == 24).all(axis=1).mean() > 0.5  # the dark box
    assert (corner > 200).all(axis=1).sum() > 10  # white text on it
    assert (image[100:, 150:] == 200).all()
