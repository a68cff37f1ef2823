"""The map-style dataset the three readers share: records in, Samples out."""

from __future__ import annotations

import collections
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Literal

import numpy as np
from torch.utils.data import Dataset

from ssdlite.data.annotations import DatasetWarning, ImageRecord, records_to_coco
from ssdlite_runtime.image_io import ImageReadError, read_image

__all__ = [
    "LISTED_IMAGE_PROBLEMS", "UNREADABLE_MODES", "DetectionDataset", "NoReadableImageError", "UnreadableMode",
]

UnreadableMode = Literal["placeholder", "substitute", "raise"]
UNREADABLE_MODES: tuple[str, ...] = ("placeholder", "substitute", "raise")
LISTED_IMAGE_PROBLEMS = 10
"""Unreadable images (and images of another size than annotated) a dataset reports one warning each; after that one
more warning says how to list them all, and the rest are silent (a set of 50,000 missing images would otherwise
print 50,000 warnings)."""


class NoReadableImageError(ImageReadError):
    """No image of a dataset can be read, so training has nothing to substitute for an unreadable one.

    ``path`` is the dataset's name; the message counts the images per reason and names the first few."""

    def __init__(self, path: str, reason: str = "none of its images can be read", kind: str = "unreadable") -> None:
        super().__init__(path, reason, kind)
        self.args = (f"{path}: {reason}",)


class DetectionDataset(Dataset):
    """Images and boxes from parsed annotation records, yielding Samples.

    A Sample is a dict: ``image`` np.ndarray[H, W, 3] uint8 RGB, ``boxes`` np.ndarray[N, 4] float32 xyxy absolute
    pixels, ``labels`` np.ndarray[N] int64 in 1..K, ``image_id`` int, ``orig_size`` (h, w), ``iscrowd``
    np.ndarray[N] bool, ``difficult`` np.ndarray[N] bool (VOC only) and ``file_name`` str. ``transform`` (if any) is
    applied to that dict; a transform with ``draw_extra_indices(dataset_size)`` (a mixing augmentation such as the
    mosaic) also gets the Samples of the other images it asks for.

    An image that cannot be read is reported once (a :class:`DatasetWarning` naming the file; after
    :data:`LISTED_IMAGE_PROBLEMS` of them, one more warning points to ``ssdlite-check-dataset`` for the full list and
    the rest are not reported), and ``unreadable`` says what takes its place:

    * ``"placeholder"`` (the default; evaluation): a Sample of the same ``image_id``, ``file_name`` and
      ``orig_size`` with black pixels, no boxes and ``unreadable=True``. Evaluation drops its detections, so the
      image counts as one with no detections (its ground truth is missed) -- scored once, never in another's name;
    * ``"substitute"`` (training only): the Sample of the next readable image, under that image's own id. Fine for
      learning (one image is seen twice that epoch) but wrong for scoring, where that image would count twice.
      A set none of whose image files exists is refused when it is made (FileNotFoundError), and one none of whose
      images can be decoded at the first sample (:class:`NoReadableImageError`), each with the count and the first
      few;
    * ``"raise"``: the :class:`ImageReadError` is raised (``strict=True`` means the same).

    :meth:`cache_images` decodes every image once into memory (Ultralytics' ``cache=ram``), for small datasets
    seen hundreds of times, where decoding the same JPEGs again each epoch is a large share of a sample's time
    (configs/raccoon.yaml's header gives the figures).

    Args:
        records: one per image.
        class_names: label i+1 is ``class_names[i]``.
        category_ids: label i+1 is written as category id ``category_ids[i]`` in COCO files / results.
        transform: callable ``sample -> sample``.
        strict: raise on unreadable images (the same as ``unreadable="raise"``).
        unreadable: what stands in for an unreadable image: "placeholder", "substitute" or "raise" (see above).
        include_crowd: keep crowd boxes (``iscrowd``) in the Sample's training targets.
        keep_difficult: keep VOC difficult boxes in the Sample's training targets.
        name: how messages name this dataset.
    """

    def __init__(
        self,
        records: Sequence[ImageRecord],
        *,
        class_names: Sequence[str],
        category_ids: Sequence[int],
        transform: Callable[[dict], dict] | None = None,
        strict: bool = False,
        unreadable: UnreadableMode = "placeholder",
        include_crowd: bool = False,
        keep_difficult: bool = True,
        name: str = "dataset",
    ) -> None:
        if unreadable not in UNREADABLE_MODES:
            raise ValueError(
                f"{name}: unreadable={unreadable!r} is not a mode; use one of {', '.join(UNREADABLE_MODES)}"
            )
        self.records = list(records)
        self.class_names = list(class_names)
        self.category_ids = [int(category_id) for category_id in category_ids]
        self.transform = transform
        self.unreadable = "raise" if strict else unreadable
        self.include_crowd = include_crowd
        self.keep_difficult = keep_difficult
        self.name = name
        self._reported_paths: set[str] = set()
        self._reports: collections.Counter[str] = collections.Counter()  # warnings given, per kind of problem
        self._unreadable_indices: set[int] = set()  # what "substitute" no longer tries
        self._image_cache: dict[int, np.ndarray] = {}
        if self.unreadable == "substitute":
            self._require_an_image_file()

    @property
    def num_classes(self) -> int:
        """K, the number of object classes (labels run 1..K)."""
        return len(self.class_names)

    @property
    def num_cached_images(self) -> int:
        """How many images :meth:`cache_images` holds decoded in memory."""
        return len(self._image_cache)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"{self.name}: index {index} out of range for {len(self)} images")
        sample = self._sample(index % len(self))
        if self.transform is None:
            return sample
        draw_extra_indices = getattr(self.transform, "draw_extra_indices", None)
        extra_indices = draw_extra_indices(len(self)) if draw_extra_indices is not None else []
        if not extra_indices:
            return self.transform(sample)
        # A mixing augmentation (mosaic) asked for other samples of the dataset.
        return self.transform(sample, [self._sample(extra) for extra in extra_indices])

    @property
    def strict(self) -> bool:
        """Whether an unreadable image raises (``unreadable == "raise"``)."""
        return self.unreadable == "raise"

    def _sample(self, index: int) -> dict:
        """The Sample of image ``index``, or what stands in for it when it cannot be read (see ``unreadable``)."""
        try:
            return self.load_sample(index)
        except ImageReadError as error:
            if self.unreadable == "raise":
                raise
            failures = {index: error}
        if self.unreadable == "placeholder":
            self._report_unreadable(failures[index])
            return self.placeholder_sample(index)
        for offset in range(1, len(self)):
            other = (index + offset) % len(self)
            if other in self._unreadable_indices:
                continue
            try:
                sample = self.load_sample(other)
            except ImageReadError as other_error:
                failures[other] = other_error
                continue
            for failed, failure in failures.items():
                self._unreadable_indices.add(failed)
                self._report_unreadable(failure)
            return sample
        raise self._no_readable_image(failures)

    def placeholder_sample(self, index: int) -> dict:
        """The Sample that stands in for unreadable image ``index``: black pixels of the annotated size, no boxes,
        the image's own ``image_id``, ``file_name`` and ``orig_size``, and ``unreadable=True``."""
        record = self.records[index]
        sample = {
            "image": np.zeros((record.height, record.width, 3), dtype=np.uint8),
            "boxes": np.zeros((0, 4), dtype=np.float32),
            "labels": np.zeros(0, dtype=np.int64),
            "image_id": int(record.image_id),
            "orig_size": (int(record.height), int(record.width)),
            "iscrowd": np.zeros(0, dtype=bool),
            "file_name": record.file_name,
            "unreadable": True,
        }
        if record.difficult is not None:
            sample["difficult"] = np.zeros(0, dtype=bool)
        return sample

    def cache_images(self, *, memory_share: float = 0.5) -> int:
        """Decodes every image into memory now; later reads take the cached (read-only) pixels. Returns the bytes held.

        Call it before the DataLoader starts its workers: forked workers then share the decoded pixels with this
        process instead of each filling a copy. Unreadable images are left out (reading them later reports them as
        usual).

        Args:
            memory_share: refuse (ValueError, before decoding anything) when the images' decoded size, from the
                sizes the annotations state, exceeds this share of the memory available now.
        """
        needed = sum(3 * record.height * record.width for record in self.records)
        available = _available_memory()
        if available is not None and needed > memory_share * available:
            raise ValueError(
                f"{self.name}: caching its {len(self)} decoded images needs about {needed / 2**30:.1f} GiB, more than "
                f"{memory_share:.0%} of the {available / 2**30:.1f} GiB of memory available; turn the image cache off "
                "(data.cache_images false)"
            )
        for index, record in enumerate(self.records):
            if index in self._image_cache:
                continue
            try:
                image = read_image(record.path)
            except ImageReadError:
                continue
            image.flags.writeable = False  # a transform that wrote into the pixels would corrupt every later epoch
            self._image_cache[index] = image
        return sum(image.nbytes for image in self._image_cache.values())

    def load_sample(self, index: int) -> dict:
        """The Sample of one image, before ``transform``; raises ImageReadError for an unreadable image."""
        record = self.records[index]
        image = self._image_cache.get(index)
        if image is None:
            image = read_image(record.path)
        height, width = image.shape[:2]
        keep = self.training_mask(record)
        boxes = record.boxes[keep]
        if (height, width) != (record.height, record.width):
            # The annotation file states another size: keep the Sample consistent with the pixels.
            self._report_size_mismatch(record, height, width)
            boxes = np.clip(boxes, 0.0, [width, height, width, height])
            valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            keep = np.flatnonzero(keep)[valid]
            boxes = boxes[valid]
        sample = {
            "image": image,
            "boxes": boxes.astype(np.float32).reshape(-1, 4),
            "labels": record.labels[keep].astype(np.int64),
            "image_id": int(record.image_id),
            "orig_size": (int(height), int(width)),
            "iscrowd": record.iscrowd[keep].astype(bool),
            "file_name": record.file_name,
        }
        if record.difficult is not None:
            sample["difficult"] = record.difficult[keep].astype(bool)
        return sample

    def training_mask(self, record: ImageRecord) -> np.ndarray:
        """bool [N]: which of the record's annotations are training targets (crowd / difficult filtering)."""
        keep = np.ones(len(record.labels), dtype=bool)
        if not self.include_crowd:
            keep &= ~record.iscrowd
        if not self.keep_difficult and record.difficult is not None:
            keep &= ~record.difficult
        return keep

    def to_coco(self) -> dict:
        """COCO-format ground truth with the dataset's category ids (crowd and difficult as ``iscrowd=1``)."""
        return records_to_coco(
            self.records, class_names=self.class_names, category_ids=self.category_ids, description=self.name
        )

    def _require_an_image_file(self) -> None:
        """Raises FileNotFoundError, naming the count and the first few, when not one image file of the set exists
        (a wrong images folder): training could only stop at its first batch, and from inside a DataLoader worker."""
        if not self.records or any(record.path.is_file() for record in self.records):
            return
        first = [str(record.path) for record in self.records[:LISTED_IMAGE_PROBLEMS]]
        named = f"the first {len(first)}" if len(self.records) > len(first) else "they are"
        raise FileNotFoundError(
            f"{self.name}: none of its {len(self.records)} image files exists ({named}: {', '.join(first)}); check "
            f"the images folder, or restore the images. {self.check_command()} lists every problem of the set"
        )

    def check_command(self) -> str:
        """The ``ssdlite-check-dataset`` command that lists every problem of this set (the warnings point to it)."""
        return "ssdlite-check-dataset (with this set's --format, --images and --annotations)"

    def _report_unreadable(self, error: ImageReadError) -> None:
        instead = {
            "placeholder": "it is evaluated as an image with no detections",
            "substitute": "another image takes its place in training",
        }[self.unreadable]
        self._report_image_problem("unreadable", error.path, f"{error}; {instead}")

    def _report_size_mismatch(self, record: ImageRecord, height: int, width: int) -> None:
        self._report_image_problem(
            "of another size than annotated",
            str(record.path),
            f"{record.path} is {width}x{height} but {record.source or 'its annotation'} says "
            f"{record.width}x{record.height}; boxes were clipped to the real image. Fix the annotation.",
        )

    def _report_image_problem(self, kind: str, path: str, message: str) -> None:
        """One DatasetWarning per image, for the first LISTED_IMAGE_PROBLEMS images of a kind; then one saying the
        rest are not reported; then nothing."""
        if path in self._reported_paths:
            return
        self._reported_paths.add(path)
        self._reports[kind] += 1
        if self._reports[kind] <= LISTED_IMAGE_PROBLEMS:
            warnings.warn(f"{self.name}: {message}", DatasetWarning, stacklevel=4)
        elif self._reports[kind] == LISTED_IMAGE_PROBLEMS + 1:
            warnings.warn(
                f"{self.name}: more than {LISTED_IMAGE_PROBLEMS} images are {kind}; the others are not reported one "
                f"by one. {self.check_command()} lists them all.",
                DatasetWarning,
                stacklevel=4,
            )

    def _no_readable_image(self, failures: dict[int, ImageReadError]) -> NoReadableImageError:
        """The error for a set none of whose images can be read: the count per reason and the first few files."""
        reasons = collections.Counter(error.reason for error in failures.values())
        counts = ", ".join(f"{count} x {reason}" for reason, count in reasons.most_common())
        first = [failures[index].path for index in sorted(failures)[:LISTED_IMAGE_PROBLEMS]]
        named = f"the first {len(first)}" if len(failures) > len(first) else "they are"
        return NoReadableImageError(
            self.name,
            f"none of its {len(failures)} images can be read ({counts}; {named}: {', '.join(first)}); "
            f"{self.check_command()} lists them all. Check the images folder, or restore the images",
        )

    def __repr__(self) -> str:
        return f"<{self.name}: {len(self)} images, {self.num_classes} classes>"


def _available_memory() -> int | None:
    """Bytes of memory available to a new allocation now (Linux ``MemAvailable``); None where unknown."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None
