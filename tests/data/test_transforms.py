"""Train / eval pipelines: boxes follow the pixels, labels follow the boxes, output contract, collate."""

from __future__ import annotations

import albumentations as A
import cv2
import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from ssdlite.data.transforms import (
    IMAGE_MEAN_RGB,
    MinIoURandomCrop,
    ZoomOut,
    collate_detections,
    eval_transforms,
    mosaic_augmentation,
    photometric_distort,
    seed_augmentation,
    train_augmentation,
    train_transforms,
)

IMAGE_SIZE = 320
# Masks are resized with nearest neighbour, boxes exactly: they may differ by < 1 output pixel per edge.
PIXEL_TOLERANCE = 1.0 + 1e-3


def _random_scene(rng: np.random.Generator, *, max_boxes: int = 6):
    """A random-size noise image with integer boxes (min side 16 px) and one filled-rectangle mask per box.

    The masks hold one extra, empty, mask at the end (albumentations cannot stack zero masks).
    """
    height, width = (int(v) for v in rng.integers(120, 480, size=2))
    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    count = int(rng.integers(0, max_boxes + 1))
    boxes = np.zeros((count, 4), dtype=np.float32)
    masks = np.zeros((count + 1, height, width), dtype=np.uint8)
    for index in range(count):
        box_width, box_height = int(rng.integers(16, width + 1)), int(rng.integers(16, height + 1))
        x1, y1 = int(rng.integers(0, width - box_width + 1)), int(rng.integers(0, height - box_height + 1))
        boxes[index] = (x1, y1, x1 + box_width, y1 + box_height)
        masks[index, y1 : y1 + box_height, x1 : x1 + box_width] = 1
    return image, boxes, masks


def _mask_box(mask: np.ndarray) -> np.ndarray | None:
    """Pixel-edge xyxy bounding box of a binary mask, None when empty."""
    ys, xs = np.nonzero(mask)
    if xs.size == 0:
        return None
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], dtype=np.float64)


def _transform_of(augmentation, kind):
    return next(t for t in augmentation.transforms if isinstance(t, kind))


def _expected_geometry(augmentation, boxes: np.ndarray):
    """Re-derives, from the parameters the pipeline drew, where every input box must land (before dropping).

    Returns (expected boxes [N, 4] in output pixels, clipped; bool [N] which boxes SSD's centre rule keeps;
    bool [N] boxes whose centre is on the crop edge (either outcome is right); visible fraction [N] of each box's
    area inside the crop).
    """
    zoom = _transform_of(augmentation, ZoomOut).params
    crop = _transform_of(augmentation, MinIoURandomCrop).params
    flipped = bool(_transform_of(augmentation, A.HorizontalFlip).params)
    canvas_height, canvas_width = crop["shape"][:2]
    offset = np.array([zoom.get("pad_left", 0), zoom.get("pad_top", 0)] * 2, dtype=np.float64)
    x1, y1, x2, y2 = crop["crop_coords"]
    canvas_boxes = boxes.astype(np.float64) + offset
    whole = (x1, y1, x2, y2) == (0, 0, canvas_width, canvas_height)
    centre_x = (canvas_boxes[:, 0] + canvas_boxes[:, 2]) / 2
    centre_y = (canvas_boxes[:, 1] + canvas_boxes[:, 3]) / 2
    kept = (
        np.ones(len(boxes), bool)
        if whole
        else (centre_x > x1) & (centre_x < x2) & (centre_y > y1) & (centre_y < y2)
    )
    # A centre exactly on the crop edge may go either way (albumentations' normalised coordinates round).
    on_edge = np.zeros(len(boxes), bool)
    if not whole:
        on_edge = (np.abs(centre_x[:, None] - [x1, x2]) < 1e-3).any(1) | (
            np.abs(centre_y[:, None] - [y1, y2]) < 1e-3
        ).any(1)
    local = canvas_boxes - np.array([x1, y1, x1, y1], dtype=np.float64)
    limits = np.array([x2 - x1, y2 - y1] * 2, dtype=np.float64)
    clipped = np.clip(local, 0, limits)
    area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])  # noqa: E731
    visible = area(clipped) / np.maximum(area(local), 1e-9)
    scaled = clipped * np.array([IMAGE_SIZE / (x2 - x1), IMAGE_SIZE / (y2 - y1)] * 2)
    if flipped:
        scaled[:, [0, 2]] = IMAGE_SIZE - scaled[:, [2, 0]]
    return scaled, kept, on_edge, visible


def test_train_boxes_follow_pixels_and_labels_follow_boxes():
    rng = np.random.default_rng(0)
    augmentation = train_augmentation(IMAGE_SIZE)
    seed_augmentation(augmentation, 1)
    checked_boxes = dropped_boxes = 0
    for draw in range(250):
        image, boxes, masks = _random_scene(rng)
        labels = rng.integers(1, 5, size=len(boxes))
        out = augmentation(
            image=image, masks=masks, bboxes=boxes, labels=labels, box_indices=np.arange(len(boxes))
        )
        assert out["image"].shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and out["image"].dtype == np.uint8
        out_boxes = np.asarray(out["bboxes"], dtype=np.float64).reshape(-1, 4)
        indices = np.asarray(out["box_indices"], dtype=np.int64)
        np.testing.assert_array_equal(np.asarray(out["labels"]), labels[indices], err_msg=f"draw {draw}")
        expected, kept, on_edge, visible = _expected_geometry(augmentation, boxes)
        decided = np.flatnonzero(~on_edge)
        assert set(indices.tolist()) & set(decided) == set(np.flatnonzero(kept & ~on_edge)), (
            f"draw {draw}: centre rule"
        )
        assert (out_boxes >= 0).all() and (out_boxes <= IMAGE_SIZE).all(), f"draw {draw}: box left the image"
        out_masks = np.asarray(out["masks"])
        assert out_masks[-1].sum() == 0
        for out_box, index in zip(out_boxes, indices):
            np.testing.assert_allclose(
                out_box, expected[index], atol=1e-3, err_msg=f"draw {draw} box {index}"
            )
            mask_box = _mask_box(out_masks[index])
            if mask_box is None:
                # a box thinner than one output pixel may miss every nearest-neighbour sample
                assert min(out_box[2] - out_box[0], out_box[3] - out_box[1]) < PIXEL_TOLERANCE
                continue
            assert np.abs(mask_box - out_box).max() <= PIXEL_TOLERANCE, (
                f"draw {draw}: {out_box} vs {mask_box}"
            )
            checked_boxes += 1
        for index in np.setdiff1d(np.arange(len(boxes)), indices):
            # Dropped: the centre left the crop, so at most half of the box (per axis) is still visible.
            assert visible[index] <= 0.5 + 1e-6, (
                f"draw {draw}: dropped box {index} was {visible[index]:.2f} visible"
            )
            full_area = np.prod(expected[index, 2:] - expected[index, :2]) / max(visible[index], 1e-9)
            if visible[index] > 0:
                assert out_masks[index].sum() <= 0.5 * full_area + 2 * IMAGE_SIZE, f"draw {draw} box {index}"
            else:
                assert out_masks[index].sum() == 0
            dropped_boxes += 1
    assert checked_boxes > 300 and dropped_boxes > 20, (checked_boxes, dropped_boxes)


def test_min_iou_crop_obeys_iou_constraint_and_centre_rule():
    crop = MinIoURandomCrop()
    augmentation = A.Compose(
        [crop],
        bbox_params=A.BboxParams(
            format="pascal_voc", label_fields=["box_indices"], check_each_transform=False
        ),
    )
    seed_augmentation(augmentation, 3)
    rng = np.random.default_rng(3)
    options_seen = set()
    for draw in range(300):
        image, boxes, _ = _random_scene(rng, max_boxes=4)
        out = augmentation(image=image, bboxes=boxes, box_indices=np.arange(len(boxes)))
        x1, y1, x2, y2 = crop.params["crop_coords"]
        min_iou = crop.params["min_iou"]
        options_seen.add(min_iou)
        height, width = image.shape[:2]
        assert out["image"].shape[:2] == (y2 - y1, x2 - x1)
        np.testing.assert_array_equal(out["image"], image[y1:y2, x1:x2])
        if min_iou is None:
            assert (x1, y1, x2, y2) == (0, 0, width, height)
            continue
        crop_width, crop_height = x2 - x1, y2 - y1
        assert crop_width >= int(0.3 * width) and crop_height >= int(0.3 * height)
        assert 0.5 <= crop_width / crop_height <= 2.0
        if len(boxes):
            ious = box_iou(torch.tensor([[x1, y1, x2, y2]], dtype=torch.float32), torch.from_numpy(boxes))
            assert ious.max().item() >= min_iou - 1e-6, f"draw {draw}"
            assert len(out["box_indices"]) >= 1, f"draw {draw}: a crop must keep at least one box"
    assert options_seen == {None, 0.0, 0.1, 0.3, 0.5, 0.7, 0.9}


def test_zoom_out_places_the_image_on_a_mean_filled_canvas():
    zoom = ZoomOut(max_ratio=4.0, p=1.0)
    augmentation = A.Compose([zoom], bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"]))
    seed_augmentation(augmentation, 5)
    rng = np.random.default_rng(5)
    fill = np.array(IMAGE_MEAN_RGB).round().astype(np.uint8)
    ratios = []
    for _ in range(50):
        image, boxes, _ = _random_scene(rng, max_boxes=3)
        out = augmentation(image=image, bboxes=boxes, labels=np.arange(len(boxes)))
        height, width = image.shape[:2]
        top, left = zoom.params["pad_top"], zoom.params["pad_left"]
        canvas = out["image"]
        ratios.append(canvas.shape[1] / width)
        assert 1.0 <= canvas.shape[0] / height <= 4.0 + 1e-9 and 1.0 <= canvas.shape[1] / width <= 4.0 + 1e-9
        np.testing.assert_array_equal(canvas[top : top + height, left : left + width], image)
        outside = np.ones(canvas.shape[:2], bool)
        outside[top : top + height, left : left + width] = False
        assert (np.abs(canvas[outside].astype(int) - fill).max(initial=0)) <= 1
        np.testing.assert_allclose(
            np.asarray(out["bboxes"]).reshape(-1, 4), boxes + [left, top, left, top], atol=1e-3
        )
    assert max(ratios) > 3.0 and min(ratios) < 1.5


def test_photometric_distort_applies_each_step_half_of_the_time():
    distort = photometric_distort()
    seed_augmentation(distort, 7)
    image = np.random.default_rng(7).integers(30, 220, size=(64, 64, 3), dtype=np.uint8)
    unchanged = 0
    draws = 600
    for _ in range(draws):
        out = distort(image=image.copy())["image"]
        assert out.dtype == np.uint8 and out.shape == image.shape
        unchanged += int(np.array_equal(out, image))
    # Four independent steps with p = 0.5 leave the image untouched 1/16 of the time.
    assert 0.03 < unchanged / draws < 0.10, unchanged / draws


def _sample(rng: np.random.Generator, *, count: int = 3):
    image, boxes, _ = _random_scene(rng, max_boxes=count)
    return {
        "image": image,
        "boxes": boxes,
        "labels": np.arange(1, len(boxes) + 1, dtype=np.int64),
        "iscrowd": rng.random(len(boxes)) < 0.5,
        "image_id": 42,
        "orig_size": image.shape[:2],
        "file_name": "x.jpg",
    }


def test_train_transform_output_contract_and_per_box_fields_stay_aligned():
    transform = train_transforms(IMAGE_SIZE)
    transform.set_random_seed(11)
    rng = np.random.default_rng(11)
    for _ in range(60):
        sample = _sample(rng, count=6)
        out = transform(sample)
        assert out["image"].shape == (3, IMAGE_SIZE, IMAGE_SIZE) and out["image"].dtype == torch.float32
        assert out["image"].is_contiguous()
        assert out["image"].min() >= -1.0 and out["image"].max() <= 1.0
        assert out["boxes"].dtype == torch.float32 and out["boxes"].shape == (len(out["labels"]), 4)
        assert out["labels"].dtype == torch.int64
        assert ((out["boxes"] >= 0) & (out["boxes"] <= 1)).all()
        assert (out["boxes"][:, 2:] > out["boxes"][:, :2]).all()
        assert (
            out["image_id"] == 42 and out["orig_size"] == sample["orig_size"] and out["file_name"] == "x.jpg"
        )
        # labels are 1 + original index, so iscrowd must be the original entry at that index
        np.testing.assert_array_equal(out["iscrowd"].numpy(), sample["iscrowd"][out["labels"].numpy() - 1])


def test_train_transform_is_reproducible_for_a_seed():
    sample = _sample(np.random.default_rng(0), count=4)
    first, second, other = train_transforms(128), train_transforms(128), train_transforms(128)
    first.set_random_seed(0)
    second.set_random_seed(0)
    other.set_random_seed(1)
    runs = [[t(sample) for _ in range(5)] for t in (first, second, other)]
    for a, b in zip(runs[0], runs[1]):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["boxes"], b["boxes"])
    assert any(not torch.equal(a["image"], c["image"]) for a, c in zip(runs[0], runs[2]))


def test_eval_transform_geometry_is_exact():
    rng = np.random.default_rng(1)
    transform = eval_transforms(IMAGE_SIZE)
    for _ in range(10):
        sample = _sample(rng, count=5)
        out = transform(sample)
        height, width = sample["image"].shape[:2]
        np.testing.assert_allclose(
            out["boxes"].numpy(), sample["boxes"] / [width, height, width, height], atol=1e-6
        )
        np.testing.assert_array_equal(out["labels"].numpy(), sample["labels"])
        resized = cv2.resize(sample["image"], (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_LINEAR)
        expected = torch.from_numpy(resized).permute(2, 0, 1).float() / 127.5 - 1.0
        torch.testing.assert_close(out["image"], expected, atol=1e-6, rtol=0)
        assert out["orig_size"] == (height, width) and out["image_id"] == 42


def test_transforms_clip_boxes_that_stick_out_of_the_image():
    sample = _sample(np.random.default_rng(2), count=1)
    height, width = sample["image"].shape[:2]
    sample["boxes"] = np.array([[-3.0, -2.0, width + 2.5, height + 1.0]], dtype=np.float32)
    sample["labels"] = np.array([1])
    sample["iscrowd"] = np.array([False])
    out = eval_transforms(IMAGE_SIZE)(sample)
    torch.testing.assert_close(out["boxes"], torch.tensor([[0.0, 0.0, 1.0, 1.0]]))


def test_collate_pads_to_the_largest_box_count_with_label_zero():
    transform = eval_transforms(64)
    rng = np.random.default_rng(4)
    samples = []
    for count in (0, 2, 5):
        sample = _sample(rng, count=0)
        sample["boxes"] = np.tile(np.array([[1, 2, 30, 40]], dtype=np.float32), (count, 1))
        sample["labels"] = np.arange(1, count + 1)
        sample["iscrowd"] = np.zeros(count, bool)
        sample["image_id"] = 10 + count
        samples.append(transform(sample))
    batch = collate_detections(samples)
    assert batch["images"].shape == (3, 3, 64, 64) and batch["images"].dtype == torch.float32
    assert batch["boxes"].shape == (3, 5, 4) and batch["labels"].shape == (3, 5)
    assert batch["labels"].dtype == torch.int64 and batch["image_ids"].tolist() == [10, 12, 15]
    assert batch["orig_sizes"].dtype == torch.int64
    assert batch["orig_sizes"].tolist() == [list(s["orig_size"]) for s in samples]
    assert batch["labels"].tolist() == [[0] * 5, [1, 2, 0, 0, 0], [1, 2, 3, 4, 5]]
    assert (batch["boxes"][0] == 0).all() and (batch["boxes"][1, 2:] == 0).all()
    torch.testing.assert_close(batch["boxes"][2], samples[2]["boxes"])


def test_collate_of_images_without_boxes_keeps_one_padding_slot():
    sample = _sample(np.random.default_rng(5), count=0)
    batch = collate_detections([eval_transforms(32)(sample)] * 2)
    assert batch["boxes"].shape == (2, 1, 4) and batch["labels"].tolist() == [[0], [0]]
    with pytest.raises(ValueError, match="empty"):
        collate_detections([])


def _step_types(augmentation: A.BaseCompose) -> set[type]:
    found: set[type] = set()
    for step in augmentation.transforms:
        found.add(type(step))
        if isinstance(step, A.BaseCompose):
            found |= _step_types(step)
    return found


def test_ssdlite_preset_is_iou_crop_and_flip_only():
    full, lite = _step_types(train_augmentation(64, "ssd")), _step_types(train_augmentation(64, "ssdlite"))
    assert {ZoomOut, MinIoURandomCrop, A.HorizontalFlip, A.ColorJitter} <= full
    assert lite == {MinIoURandomCrop, A.Resize, A.HorizontalFlip}
    assert _step_types(train_augmentation(64)) == full  # "ssd" stays the default
    assert _step_types(train_augmentation(64, "ssd_no_zoom")) == full - {ZoomOut}
    assert _step_types(train_augmentation(64, "ssd_mosaic")) == full  # + the mosaic step, see the mosaic tests
    # No colour step: every output pixel of an unflipped, uncropped run is an input pixel resized (a flat image
    # stays flat), where the photometric distortion of "ssd" changes it.
    flat = np.full((64, 64, 3), 77, dtype=np.uint8)
    boxes = np.array([[8.0, 8.0, 40.0, 40.0]], dtype=np.float32)
    for seed in range(5):
        augmentation = train_augmentation(64, "ssdlite")
        seed_augmentation(augmentation, seed)
        out = augmentation(image=flat, bboxes=boxes, labels=[1], box_indices=[0])
        assert (out["image"] == 77).all()
    with pytest.raises(ValueError, match="augmentation preset 'heavy'"):
        train_augmentation(64, "heavy")


# ------------------------------------------------------------------------------------------------------ mosaic

def _flat_photo(height: int, width: int, label: int, *, flag: bool = False):
    """A grey photo with one box filled with a colour that encodes its label (a reader sample)."""
    image = np.full((height, width, 3), 60, dtype=np.uint8)
    x1, y1, x2, y2 = width // 4, height // 5, 3 * width // 4, 4 * height // 5
    image[y1:y2, x1:x2] = (40 * label, 255 - 40 * label, 200)
    return {
        "image": image,
        "boxes": np.array([[x1, y1, x2, y2]], dtype=np.float32),
        "labels": np.array([label], dtype=np.int64),
        "difficult": np.array([flag]),
        "image_id": label,
        "orig_size": (height, width),
        "file_name": f"{label}.jpg",
    }


def test_mosaic_puts_four_photos_whole_in_a_grid_and_boxes_follow_their_pixels():
    size = 64
    photos = [_flat_photo(90, 150, 1), _flat_photo(120, 80, 2), _flat_photo(64, 64, 3), _flat_photo(200, 100, 4)]
    mosaic = mosaic_augmentation(size)
    seed_augmentation(mosaic, 0)
    out = mosaic(
        image=photos[0]["image"], bboxes=photos[0]["boxes"], labels=photos[0]["labels"], box_indices=[0],
        mosaic_metadata=[
            {"image": p["image"], "bboxes": p["boxes"], "labels": p["labels"], "box_indices": [index]}
            for index, p in enumerate(photos[1:], start=1)
        ],
    )
    image, boxes = out["image"], np.asarray(out["bboxes"])
    assert image.shape == (2 * size, 2 * size, 3)
    # Every photo is there whole ("contain"): one box per photo, its label and index kept together.
    assert sorted(np.asarray(out["labels"]).tolist()) == [1, 2, 3, 4]
    np.testing.assert_array_equal(np.asarray(out["labels"]), np.asarray(out["box_indices"]) + 1)
    cells = set()
    for box, label in zip(boxes, out["labels"]):
        x1, y1, x2, y2 = box
        # Each photo is scaled to fit its cell: the box keeps its aspect ratio (up to rounding)...
        photo = photos[int(label) - 1]
        px1, py1, px2, py2 = photo["boxes"][0]
        assert (x2 - x1) / (y2 - y1) == pytest.approx((px2 - px1) / (py2 - py1), rel=0.1)
        # ... lies inside one cell, and covers exactly the pixels of the box's colour.
        cells.add((int(x1 // size), int(y1 // size)))
        assert int((x2 - 1e-3) // size) == int(x1 // size) and int((y2 - 1e-3) // size) == int(y1 // size)
        colour = np.array((40 * label, 255 - 40 * label, 200))
        inside = image[int(np.ceil(y1)) + 1 : int(y2) - 1, int(np.ceil(x1)) + 1 : int(x2) - 1].reshape(-1, 3)
        assert inside.size and (np.abs(inside.astype(int) - colour).max(axis=1) <= 2).all()
        painted = (np.abs(image.astype(int) - colour).max(axis=2) <= 2)
        found = _mask_box(painted)
        np.testing.assert_allclose(found, box, atol=1.5)
    assert cells == {(0, 0), (1, 0), (0, 1), (1, 1)}
    # What the cells leave uncovered is the mean colour.
    assert (np.abs(image.astype(float) - IMAGE_MEAN_RGB).max(axis=2) <= 1).any()


def test_mosaic_transform_mixes_on_its_share_of_samples_and_per_box_fields_follow():
    size = 96
    transform = train_transforms(size, "ssd_mosaic")
    transform.set_random_seed(3)
    draws = [transform.draw_extra_indices(10) for _ in range(400)]
    mixed = [indices for indices in draws if indices]
    assert all(len(indices) == 3 and all(0 <= i < 10 for i in indices) for indices in mixed)
    assert 0.4 < len(mixed) / len(draws) < 0.6  # MOSAIC_PROBABILITY = 0.5
    assert train_transforms(size, "ssd").draw_extra_indices(10) == []
    # Only photo 3 is difficult: the flag must travel with label 3 wherever the boxes end up.
    photos = [_flat_photo(100, 140, label, flag=label == 3) for label in (1, 2, 3, 4)]
    seen_labels = set()
    for _ in range(40):
        out = transform(photos[0], photos[1:])
        labels = out["labels"].numpy()
        seen_labels |= set(labels.tolist())
        np.testing.assert_array_equal(out["difficult"].numpy(), labels == 3)
        assert out["image"].shape == (3, size, size) and out["image_id"] == 1
        assert ((out["boxes"] >= 0) & (out["boxes"] <= 1)).all()
    assert seen_labels == {1, 2, 3, 4}
    with pytest.raises(ValueError, match="no mosaic step"):
        train_transforms(size, "ssd")(photos[0], photos[1:])


def test_mosaic_samples_skip_the_zoom_out():
    """The mosaic already shows its photos at half scale; SSD's zoom-out on top would make them tiny (and costs a
    canvas of up to 8S x 8S)."""
    transform = train_transforms(64, "ssd_mosaic")
    assert ZoomOut in _step_types(transform.augmentation)
    assert _step_types(transform.after_mosaic) == _step_types(transform.augmentation) - {ZoomOut}

    def refuse(**_):
        raise AssertionError("the single-photo pipeline ran on a mosaic")

    transform.augmentation = refuse
    photos = [_flat_photo(100, 140, label) for label in (1, 2, 3, 4)]
    assert transform(photos[0], photos[1:])["image"].shape == (3, 64, 64)
    with pytest.raises(AssertionError, match="single-photo"):
        transform(photos[0])


def test_mosaic_transform_is_reproducible_for_a_seed():
    photos = [_flat_photo(100, 140, label) for label in (1, 2, 3, 4)]
    first, second = train_transforms(64, "ssd_mosaic"), train_transforms(64, "ssd_mosaic")
    first.set_random_seed(5)
    second.set_random_seed(5)
    for _ in range(6):
        assert first.draw_extra_indices(50) == second.draw_extra_indices(50)
        a, b = first(photos[0], photos[1:]), second(photos[0], photos[1:])
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["boxes"], b["boxes"])
