"""Train and eval pipelines: a reader's sample in, the network's input and normalised targets out.

The train pipeline is SSD's data augmentation (Liu et al. 2016, "SSD: Single Shot MultiBox Detector", Sec. 2.2
"Data augmentation" and Sec. 3.6 "Data Augmentation for Small Object Accuracy"), as Caffe SSD and torchvision's
``RandomPhotometricDistort`` / ``RandomZoomOut`` / ``RandomIoUCrop`` implement it:

1. zoom out ("expand", Sec. 3.6): with probability 0.5 the image is placed at a random position on a canvas 1 to 4
   times its size filled with the mean colour -- custom :class:`ZoomOut` (a thin subclass of ``A.Pad``:
   albumentations has no random-ratio expand; ``A.Affine(scale<1)`` would shrink the pixels instead of growing the
   canvas, and ``A.CropAndPad`` samples the four sides independently, which changes the aspect ratio);
2. SSD's random crop: the whole image, or a crop of 0.3 to 1 of each side (aspect 1/2 to 2) whose IoU with at least
   one box is >= a minimum drawn from {0.1, 0.3, 0.5, 0.7, 0.9}, or with no IoU constraint (the paper's "randomly
   sample a patch"), each of the seven options equally likely; boxes whose centre falls outside the crop are
   dropped, the others clipped -- custom :class:`MinIoURandomCrop` (on albumentations' ``BaseCrop``):
   ``RandomSizedBBoxSafeCrop``, ``BBoxSafeRandomCrop`` and ``AtLeastOneBBoxRandomCrop`` keep all / one box whole and
   have no IoU constraint nor centre rule;
3. resize to S x S (``A.Resize``, cv2 ``INTER_LINEAR``), horizontal flip (``A.HorizontalFlip``);
4. photometric distortion (``A.RandomBrightnessContrast`` for SSD's additive brightness +-32 and multiplicative
   contrast 0.5-1.5, ``A.ColorJitter`` for saturation 0.5-1.5 and hue +-18 degrees; each with probability 0.5,
   contrast first or last at random, as Caffe SSD's ``DistortImage``);
5. scale to [-1, 1] (x / 127.5 - 1) and convert to a CHW float32 tensor.

Order, for speed (the pipeline feeds a CPU trainer): every geometric step but the zoom-out is a view or an O(S^2)
operation -- the crop is a slice, the resize reads only the pixels it samples, and the flip and the colour
operations run on the S x S result instead of the full-size photo. The colour operations are per pixel, so moving
them after the crop, flip and resize changes nothing but rounding, with one exception we accept: the zoom-out fill
is jittered along with the picture (SSD fills after distorting). The image stays uint8 until the final scaling.

Boxes go through albumentations in ``pascal_voc`` format with ``labels`` (and the boxes' original indices, to keep
``iscrowd`` / ``difficult`` aligned) as label fields, so labels follow dropped boxes.
"""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Sequence
from typing import Any

# albumentations asks PyPI for a newer release when imported: a network call (and a warning after a DNS timeout)
# on every start of a training or test process, and on offline machines. The user's own setting wins.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import cv2
import numpy as np
import torch
from albumentations.augmentations.crops import functional as crop_functional
from albumentations.augmentations.crops.transforms import BaseCrop
from albumentations.core.bbox_utils import denormalize_bboxes
from torch import Tensor
from torchvision.ops import box_iou

from ssdlite.core.normalization import PIXEL_LOOKUP

__all__ = [
    "IMAGE_MEAN_RGB",
    "DetectionTransform",
    "MinIoURandomCrop",
    "ZoomOut",
    "collate_detections",
    "eval_transforms",
    "image_to_tensor",
    "mosaic_augmentation",
    "photometric_distort",
    "seed_augmentation",
    "train_transforms",
]

# ImageNet mean in 0..255 RGB: the zoom-out fill (SSD fills with the mean pixel; it maps to about 0 in [-1, 1]).
IMAGE_MEAN_RGB: tuple[float, float, float] = (123.675, 116.28, 103.53)
# SSD's sampling options (Sec. 2.2): None keeps the whole image, a number is the minimum IoU with some box, and 0.0
# is the paper's third option, "randomly sample a patch" (as torchvision's RandomIoUCrop and Caffe SSD's samplers).
SSD_MIN_IOUS: tuple[float | None, ...] = (None, 0.0, 0.1, 0.3, 0.5, 0.7, 0.9)
# Per-sample fields with one entry per box that must follow dropped boxes.
_PER_BOX_FIELDS = ("iscrowd", "difficult")


class ZoomOut(A.Pad):
    """SSD's "expand" (Sec. 3.6): put the image at a random spot of a mean-filled canvas ``ratio`` times its size.

    A custom transform because albumentations has no random-ratio expand; it reuses ``A.Pad`` for the pixels,
    masks and boxes and only draws the ratio and the position (as Caffe SSD's ``ExpandImage`` and torchvision's
    ``RandomZoomOut``).

    Args:
        max_ratio: the canvas side is ``ratio`` times the image side, ``ratio`` uniform in [1, max_ratio].
        fill: canvas colour (RGB, 0..255).
        p: probability of zooming out.
    """

    def __init__(
        self,
        *,
        max_ratio: float = 4.0,
        fill: tuple[float, ...] | float = IMAGE_MEAN_RGB,
        p: float = 0.5,
    ) -> None:
        if max_ratio < 1.0:
            raise ValueError(
                f"ZoomOut max_ratio must be >= 1 (the canvas is at least the image), got {max_ratio}"
            )
        super().__init__(padding=0, fill=fill, fill_mask=0, border_mode=cv2.BORDER_CONSTANT, p=p)
        self.max_ratio = max_ratio

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, int]:
        height, width = params["shape"][:2]
        ratio = self.py_random.uniform(1.0, self.max_ratio)
        pad_height = int(height * ratio) - height
        pad_width = int(width * ratio) - width
        pad_top = self.py_random.randint(0, pad_height)
        pad_left = self.py_random.randint(0, pad_width)
        return {
            "pad_top": pad_top,
            "pad_bottom": pad_height - pad_top,
            "pad_left": pad_left,
            "pad_right": pad_width - pad_left,
        }

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("max_ratio", "fill")


class MinIoURandomCrop(BaseCrop):
    """SSD's random crop (Sec. 2.2): a patch with a minimum IoU to some object, or the whole image.

    Each call draws one option of ``min_ious``; ``None`` keeps the whole image. For a number, up to ``trials``
    candidate patches are drawn at once (sides ``min_scale``..1 of the image's, aspect ratio within
    ``aspect_ratio_range``); the first whose IoU with at least one box is >= the option and that contains at least
    one box centre wins. When none qualifies another option is drawn, up to ``max_rounds`` times, then the whole
    image is kept. Boxes whose centre lies outside the patch are dropped, the others clipped to it (SSD keeps
    "the overlapped part of the ground truth box if the center of it is in the sampled patch"). An image without
    boxes gets an unconstrained patch.

    A custom transform because albumentations' box-safe crops (``RandomSizedBBoxSafeCrop``, ``BBoxSafeRandomCrop``,
    ``AtLeastOneBBoxRandomCrop``) keep every box (or one) whole, with no IoU constraint and no centre rule.
    Follows torchvision's ``RandomIoUCrop`` sampling (independent side scales, aspect checked in pixels).

    Args:
        min_ious: the options, drawn uniformly.
        min_scale: smallest patch side as a fraction of the image side.
        aspect_ratio_range: allowed patch width / height.
        trials: candidate patches per option.
        max_rounds: options drawn before giving up and keeping the whole image.
        p: probability of applying the transform.
    """

    def __init__(
        self,
        *,
        min_ious: Sequence[float | None] = SSD_MIN_IOUS,
        min_scale: float = 0.3,
        aspect_ratio_range: tuple[float, float] = (0.5, 2.0),
        trials: int = 50,
        max_rounds: int = 20,
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        if not min_ious:
            raise ValueError("MinIoURandomCrop needs at least one option in min_ious, e.g. (None, 0.1, 0.3)")
        if not 0.0 < min_scale <= 1.0:
            raise ValueError(f"MinIoURandomCrop min_scale must be in (0, 1], got {min_scale}")
        self.min_ious = tuple(min_ious)
        self.min_scale = min_scale
        self.aspect_ratio_range = aspect_ratio_range
        self.trials = trials
        self.max_rounds = max_rounds

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        bboxes = data.get("bboxes")
        boxes = (
            denormalize_bboxes(bboxes[:, :4], (height, width))
            if bboxes is not None and len(bboxes)
            else np.zeros((0, 4), dtype=np.float32)
        )
        for _ in range(self.max_rounds):
            min_iou = self.py_random.choice(self.min_ious)
            if min_iou is None:
                break
            crop = self._sample_crop(boxes, min_iou, height, width)
            if crop is not None:
                return {"crop_coords": crop, "min_iou": min_iou}
        return {"crop_coords": (0, 0, width, height), "min_iou": None}

    def _sample_crop(
        self, boxes: np.ndarray, min_iou: float, height: int, width: int
    ) -> tuple[int, int, int, int] | None:
        """Draws ``trials`` patches at once; returns the first valid one as (x_min, y_min, x_max, y_max) or None."""
        uniform = self.random_generator.random((self.trials, 4))
        crop_width = (width * (self.min_scale + (1.0 - self.min_scale) * uniform[:, 0])).astype(np.int64)
        crop_height = (height * (self.min_scale + (1.0 - self.min_scale) * uniform[:, 1])).astype(np.int64)
        aspect = crop_width / np.maximum(crop_height, 1)
        valid = (crop_width >= 1) & (crop_height >= 1)
        valid &= (aspect >= self.aspect_ratio_range[0]) & (aspect <= self.aspect_ratio_range[1])
        left = ((width - crop_width) * uniform[:, 2]).astype(np.int64)
        top = ((height - crop_height) * uniform[:, 3]).astype(np.int64)
        crops = np.stack([left, top, left + crop_width, top + crop_height], axis=1)
        if len(boxes):
            valid &= _centres_inside(boxes, crops).any(axis=1)
            ious = box_iou(
                torch.from_numpy(crops.astype(np.float32)), torch.from_numpy(boxes.astype(np.float32))
            )
            valid &= ious.amax(dim=1).numpy() >= min_iou
        winners = np.flatnonzero(valid)
        if winners.size == 0:
            return None
        return tuple(int(v) for v in crops[winners[0]])

    def apply_to_bboxes(
        self, bboxes: np.ndarray, crop_coords: tuple[int, int, int, int], **params: Any
    ) -> np.ndarray:
        height, width = params["shape"][:2]
        if not len(bboxes) or tuple(crop_coords) == (0, 0, width, height):
            return bboxes
        pixel_boxes = denormalize_bboxes(bboxes[:, :4], (height, width))
        keep = _centres_inside(pixel_boxes, np.asarray([crop_coords]))[0]
        cropped = crop_functional.crop_bboxes_by_coords(bboxes[keep], crop_coords, (height, width))
        cropped[:, :4] = np.clip(cropped[:, :4], 0.0, 1.0)
        return cropped

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("min_ious", "min_scale", "aspect_ratio_range", "trials", "max_rounds")


def _centres_inside(boxes: np.ndarray, crops: np.ndarray) -> np.ndarray:
    """Which box centres lie strictly inside which crops.

    Args:
        boxes: np.ndarray[N, 4] xyxy pixels.
        crops: np.ndarray[T, 4] xyxy pixels.

    Returns:
        np.ndarray[T, N] bool.
    """
    centre_x = (boxes[:, 0] + boxes[:, 2]) * 0.5
    centre_y = (boxes[:, 1] + boxes[:, 3]) * 0.5
    return (
        (centre_x > crops[:, 0:1])
        & (centre_x < crops[:, 2:3])
        & (centre_y > crops[:, 1:2])
        & (centre_y < crops[:, 3:4])
    )


def photometric_distort() -> A.Sequential:
    """SSD's photometric distortion (Caffe SSD ``distort_param``), each step with probability 0.5.

    Brightness: add a value in [-32, 32]; contrast: multiply by [0.5, 1.5]; saturation: [0.5, 1.5] (as
    torchvision, a blend with the grey image instead of scaling HSV's S); hue: shift by up to 18 degrees.
    Contrast comes first or last with equal chance, as in SSD.
    """

    def contrast() -> A.BasicTransform:
        return A.RandomBrightnessContrast(brightness_limit=0.0, contrast_limit=0.5, p=0.5)

    def saturation() -> A.BasicTransform:
        return A.ColorJitter(brightness=0.0, contrast=0.0, saturation=0.5, hue=0.0, p=0.5)

    def hue() -> A.BasicTransform:
        return A.ColorJitter(brightness=0.0, contrast=0.0, saturation=0.0, hue=18.0 / 360.0, p=0.5)

    return A.Sequential(
        [
            A.RandomBrightnessContrast(brightness_limit=32.0 / 255.0, contrast_limit=0.0, p=0.5),
            A.OneOf(
                [
                    A.Sequential([contrast(), saturation(), hue()], p=1.0),
                    A.Sequential([saturation(), hue(), contrast()], p=1.0),
                ],
                p=1.0,
            ),
        ],
        p=1.0,
    )


def _bbox_params() -> A.BboxParams:
    # clip + filter_invalid_bboxes: readers may hand boxes a rounding error outside the image.
    # check_each_transform=False: boxes are filtered once at the end instead of after every step (a third of
    # the pipeline's time otherwise); no step here moves a box out of the image, MinIoURandomCrop clips its own.
    return A.BboxParams(
        format="pascal_voc",
        label_fields=["labels", "box_indices"],
        clip=True,
        filter_invalid_bboxes=True,
        check_each_transform=False,
    )


AUGMENTATIONS: tuple[str, ...] = ("ssd", "ssdlite", "ssd_no_zoom", "ssd_mosaic")
# The mosaic's share of training samples in the "ssd_mosaic" preset (YOLOv4 / Ultralytics use mosaic on most
# samples; half keeps the photos' own framing -- the close-ups of small datasets -- in every batch).
MOSAIC_PROBABILITY = 0.5


def train_augmentation(image_size: int, preset: str = "ssd") -> A.Compose:
    """The geometric and colour part of the train pipeline, on uint8 images (see the module docstring).

    Args:
        image_size: output side S.
        preset: "ssd", the SSD paper's full augmentation (zoom-out up to 4x, min-IoU crop, flip, photometric
            distortion), or "ssdlite", what the SSDLite recipes use: the TF Object Detection API's
            ssdlite_mobilenet_v2_coco config (random_horizontal_flip + ssd_random_crop) and torchvision's "ssdlite"
            preset (RandomIoUCrop + RandomHorizontalFlip) -- min-IoU crop and flip only; or "ssd_no_zoom", SSD's
            without the zoom-out (min-IoU crop, flip, photometric distortion), for data whose objects are large;
            "ssd_mosaic" is "ssd" here, its mosaic step is :func:`mosaic_augmentation` (see ``train_transforms``).

    Returns:
        An ``A.Compose`` taking ``image`` (uint8 HxWx3), ``bboxes`` (pascal_voc pixels), ``labels`` and
        ``box_indices`` (and optionally ``masks``), returning S x S uint8 images.
    """
    if preset not in AUGMENTATIONS:
        raise ValueError(f"unknown augmentation preset {preset!r}; use one of {', '.join(AUGMENTATIONS)}")
    steps = [
        *([ZoomOut(max_ratio=4.0, fill=IMAGE_MEAN_RGB, p=0.5)] if preset in ("ssd", "ssd_mosaic") else []),
        MinIoURandomCrop(),
        A.Resize(image_size, image_size, interpolation=cv2.INTER_LINEAR),
        A.HorizontalFlip(p=0.5),
        *([photometric_distort()] if preset != "ssdlite" else []),
    ]
    return A.Compose(steps, bbox_params=_bbox_params())


def mosaic_augmentation(image_size: int) -> A.Compose:
    """Four photos in a 2 x 2 grid (YOLOv4's mosaic, Bochkovskiy et al. 2020, Sec. 3.3) through ``A.Mosaic``.

    Each photo is scaled to fit an S x S cell whole (``fit_mode="contain"``, the rest of the cell filled with the
    mean colour), so no box is cut; the 2S x 2S result then goes through SSD's pipeline without the zoom-out,
    whose min-IoU crop picks a patch of it and resizes it to S -- objects at about half their usual scale, four
    photos' worth of objects and backgrounds in one sample. The extra photos come in ``mosaic_metadata`` (see
    :class:`DetectionTransform`).
    """
    return A.Compose(
        [
            A.Mosaic(
                grid_yx=(2, 2),
                target_size=(2 * image_size, 2 * image_size),
                cell_shape=(image_size, image_size),
                fit_mode="contain",
                fill=IMAGE_MEAN_RGB,
                interpolation=cv2.INTER_LINEAR,
                p=1.0,
            )
        ],
        bbox_params=_bbox_params(),
    )


def eval_augmentation(image_size: int) -> A.Compose:
    """Resize only (cv2 ``INTER_LINEAR``): the evaluation geometry."""
    return A.Compose(
        [A.Resize(image_size, image_size, interpolation=cv2.INTER_LINEAR)],
        bbox_params=_bbox_params(),
    )


def seed_augmentation(augmentation: A.BaseCompose | A.BasicTransform, seed: int | None) -> None:
    """Makes an albumentations pipeline reproducible: all its transforms draw from one generator seeded ``seed``.

    Not ``augmentation.set_random_seed(seed)``: albumentations 2.0 gives every transform its own generator with the
    same seed, so their draws coincide (the flip, the zoom-out and each colour step would fire together).
    """
    augmentation.set_random_state(np.random.default_rng(seed), random.Random(seed))


def image_to_tensor(image: np.ndarray) -> Tensor:
    """uint8 HxWx3 RGB -> float32 Tensor[3, H, W] in [-1, 1] (x / 127.5 - 1), the network input scaling.

    ``ssdlite.core.normalization.PIXEL_LOOKUP``, the scaling's 256 values, so the values equal
    ``normalize_pixels(image)`` and ``image.float() / 127.5 - 1`` bit for bit; ``cv2.LUT`` writes each channel
    straight into the CHW output, one single-threaded pass (half the time of ``np.take`` or torch's elementwise
    ops, which would also spread the work over threads the DataLoader workers already occupy).
    """
    height, width = image.shape[:2]
    output = np.empty((3, height, width), dtype=np.float32)
    for channel, plane in enumerate(cv2.split(image)):
        cv2.LUT(plane, PIXEL_LOOKUP, dst=output[channel])
    return torch.from_numpy(output)


class DetectionTransform:
    """Runs an albumentations pipeline on a reader sample and converts the result to tensors.

    Args:
        augmentation: an ``A.Compose`` with ``pascal_voc`` bbox params and label fields ``labels``,
            ``box_indices`` that outputs S x S uint8 images.
        mosaic: optional ``A.Compose`` (see :func:`mosaic_augmentation`) run first on a share ``mosaic_probability``
            of the samples, with ``MOSAIC_EXTRA_SAMPLES`` other samples of the dataset. The transform draws when to
            mix (:meth:`draw_extra_indices`) so that the dataset reads the other photos only then.
        mosaic_probability: the share of samples that become mosaics.
        after_mosaic: the pipeline a mosaic goes through instead of ``augmentation`` (default: ``augmentation``).

    Call:
        sample: a reader sample (``image`` uint8 HxWx3 RGB, ``boxes`` float32 [N, 4] xyxy pixels, ``labels``
            int64 [N], ``image_id``, ``orig_size``, ...).
        extra_samples: the samples :meth:`draw_extra_indices` asked for (reader samples too), or none.

        Returns the same dict with ``image`` float32 Tensor[3, S, S] in [-1, 1], ``boxes`` float32 Tensor[N', 4]
        xyxy normalised to [0, 1], ``labels`` int64 Tensor[N'], per-box ``iscrowd`` / ``difficult`` (when present)
        as bool Tensor[N'] kept aligned; every other key (``image_id``, ``orig_size``, ``file_name``) unchanged
        (a mosaic keeps the first sample's).
    """

    MOSAIC_EXTRA_SAMPLES = 3

    def __init__(
        self,
        augmentation: A.Compose,
        mosaic: A.Compose | None = None,
        mosaic_probability: float = 0.0,
        after_mosaic: A.Compose | None = None,
    ) -> None:
        if mosaic is not None and not 0.0 <= mosaic_probability <= 1.0:
            raise ValueError(f"mosaic_probability must be in [0, 1], got {mosaic_probability}")
        self.augmentation = augmentation
        self.mosaic = mosaic
        self.mosaic_probability = mosaic_probability if mosaic is not None else 0.0
        self.after_mosaic = after_mosaic if after_mosaic is not None else augmentation
        self._random = random.Random()

    def draw_extra_indices(self, dataset_size: int) -> list[int]:
        """Which other samples of a dataset of ``dataset_size`` the next call mixes in (empty: none)."""
        if self.mosaic_probability <= 0.0 or dataset_size < 1 or self._random.random() >= self.mosaic_probability:
            return []
        return [self._random.randrange(dataset_size) for _ in range(self.MOSAIC_EXTRA_SAMPLES)]

    def __call__(self, sample: dict[str, Any], extra_samples: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
        boxes, labels = _sample_boxes(sample)
        image = sample["image"]
        per_box = {key: np.asarray(sample[key], dtype=bool).reshape(-1) for key in _PER_BOX_FIELDS
                   if sample.get(key) is not None}
        if extra_samples:
            if self.mosaic is None:
                raise ValueError(f"{type(self).__name__} got extra samples but has no mosaic step")
            image, boxes, labels, per_box = self._mix(sample, (boxes, labels), extra_samples, per_box)
        augmentation = self.after_mosaic if extra_samples else self.augmentation
        augmented = augmentation(
            image=image,
            bboxes=boxes,
            labels=labels,
            box_indices=np.arange(len(boxes), dtype=np.int64),
        )
        image = augmented["image"]
        height, width = image.shape[:2]
        scale = np.array([width, height, width, height], dtype=np.float32)
        out_boxes = np.asarray(augmented["bboxes"], dtype=np.float32).reshape(-1, 4) / scale
        kept = np.asarray(augmented["box_indices"], dtype=np.int64).reshape(-1)
        result = dict(sample)
        result["image"] = image_to_tensor(image)
        result["boxes"] = torch.from_numpy(np.clip(out_boxes, 0.0, 1.0))
        result["labels"] = torch.from_numpy(np.asarray(augmented["labels"], dtype=np.int64).reshape(-1))
        for key, values in per_box.items():
            result[key] = torch.from_numpy(values[kept])
        return result

    def _mix(
        self,
        sample: dict[str, Any],
        sample_boxes: tuple[np.ndarray, np.ndarray],
        extra_samples: Sequence[dict[str, Any]],
        per_box: dict[str, np.ndarray],
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        """The mosaic of ``sample`` (its boxes and labels given) and ``extra_samples``: image, pixel boxes, labels
        and per-box fields. Box indices run through all the samples' boxes in order, so per-box fields follow."""
        samples = [sample, *extra_samples]
        parts = [sample_boxes, *(_sample_boxes(item) for item in extra_samples)]
        offsets = np.cumsum([0] + [len(labels) for _, labels in parts])
        metadata = [
            {"image": item["image"], "bboxes": boxes, "labels": labels,
             "box_indices": np.arange(offset, offset + len(labels), dtype=np.int64)}
            for item, (boxes, labels), offset in zip(extra_samples, parts[1:], offsets[1:])
        ]
        boxes, labels = sample_boxes
        mixed = self.mosaic(
            image=sample["image"],
            bboxes=boxes,
            labels=labels,
            box_indices=np.arange(len(labels), dtype=np.int64),
            mosaic_metadata=metadata,
        )
        origin = np.asarray(mixed["box_indices"], dtype=np.int64).reshape(-1)
        mixed_per_box = {
            key: np.concatenate([
                np.asarray(item[key], dtype=bool).reshape(-1) if item.get(key) is not None
                else np.zeros(len(item_labels), dtype=bool)
                for item, (_, item_labels) in zip(samples, parts)
            ])[origin]
            for key in per_box
        }
        return (
            mixed["image"],
            np.asarray(mixed["bboxes"], dtype=np.float32).reshape(-1, 4),
            np.asarray(mixed["labels"], dtype=np.int64).reshape(-1),
            mixed_per_box,
        )

    def set_random_seed(self, seed: int | None) -> None:
        """Re-seeds the augmentation (DataLoader workers call this, see ``datamodule.seed_worker``)."""
        seed_augmentation(self.augmentation, seed)
        if self.mosaic is not None:
            seed_augmentation(self.mosaic, None if seed is None else seed + 1)
            if self.after_mosaic is not self.augmentation:
                seed_augmentation(self.after_mosaic, None if seed is None else seed + 3)
        self._random.seed(None if seed is None else seed + 2)

    def __repr__(self) -> str:
        mosaic = (
            f", mosaic={self.mosaic!r}, mosaic_probability={self.mosaic_probability}, "
            f"after_mosaic={self.after_mosaic!r}" if self.mosaic else ""
        )
        return f"{type(self).__name__}({self.augmentation!r}{mosaic})"


def _sample_boxes(sample: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """A reader sample's boxes (float32 [N, 4] pixels) and labels (int64 [N])."""
    boxes = np.asarray(sample["boxes"], dtype=np.float32).reshape(-1, 4)
    labels = np.asarray(sample["labels"], dtype=np.int64).reshape(-1)
    return boxes, labels


def train_transforms(image_size: int, preset: str = "ssd") -> Callable[[dict[str, Any]], dict[str, Any]]:
    """The train augmentation ``preset`` (see ``train_augmentation``) at ``image_size``.

    "ssd_mosaic" is "ssd" whose input is, for ``MOSAIC_PROBABILITY`` of the samples, a mosaic of four photos
    (:func:`mosaic_augmentation`; the dataset hands the transform the other three, see ``DetectionDataset``).
    A mosaic then goes through "ssd_no_zoom": it already shows its photos at half scale, and SSD's zoom-out on
    top (up to 4x more) would shrink them below what the photos hold while filling a canvas of up to 8S x 8S.

    Returns a ``DetectionTransform``.
    """
    if preset == "ssd_mosaic":
        return DetectionTransform(
            train_augmentation(image_size, preset),
            mosaic=mosaic_augmentation(image_size),
            mosaic_probability=MOSAIC_PROBABILITY,
            after_mosaic=train_augmentation(image_size, "ssd_no_zoom"),
        )
    return DetectionTransform(train_augmentation(image_size, preset))


def eval_transforms(image_size: int) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Resize to ``image_size`` x ``image_size`` and scale to [-1, 1]. Returns a ``DetectionTransform``."""
    return DetectionTransform(eval_augmentation(image_size))


def collate_detections(samples: Sequence[dict[str, Any]]) -> dict[str, Tensor]:
    """Stacks transformed samples into a batch with padded targets.

    Args:
        samples: outputs of :func:`train_transforms` / :func:`eval_transforms` (same image size).

    Returns:
        dict with ``images`` float32 Tensor[B, 3, S, S]; ``boxes`` float32 Tensor[B, M, 4] xyxy in [0, 1] and
        ``labels`` int64 Tensor[B, M], padded with zero boxes and label 0 to M = the largest box count in the
        batch (at least 1, so reductions over M never meet an empty dimension); ``image_ids`` int64 Tensor[B];
        ``orig_sizes`` int64 Tensor[B, 2] (h, w); ``unreadable`` bool Tensor[B], True for the placeholder of an
        image that could not be read (see ``DetectionDataset``), whose detections evaluation drops.
    """
    if not samples:
        raise ValueError(
            "collate_detections got an empty list of samples; the DataLoader batch must hold >= 1"
        )
    batch_size = len(samples)
    max_boxes = max(1, max(len(sample["labels"]) for sample in samples))
    boxes = torch.zeros((batch_size, max_boxes, 4), dtype=torch.float32)
    labels = torch.zeros((batch_size, max_boxes), dtype=torch.int64)
    for index, sample in enumerate(samples):
        count = len(sample["labels"])
        boxes[index, :count] = torch.as_tensor(sample["boxes"], dtype=torch.float32).reshape(-1, 4)
        labels[index, :count] = torch.as_tensor(sample["labels"], dtype=torch.int64)
    return {
        "images": torch.stack([sample["image"] for sample in samples]),
        "boxes": boxes,
        "labels": labels,
        "image_ids": torch.tensor([int(sample["image_id"]) for sample in samples], dtype=torch.int64),
        "orig_sizes": torch.tensor([tuple(int(v) for v in sample["orig_size"]) for sample in samples]),
        "unreadable": torch.tensor([bool(sample.get("unreadable", False)) for sample in samples], dtype=torch.bool),
    }
