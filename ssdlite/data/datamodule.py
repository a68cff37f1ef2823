"""LightningDataModule: datasets in COCO, VOC or YOLO format -> batches of the data contract.

What the path arguments mean per ``format``:

========  ====================================  ==============================================================
format    ``train_images`` / ``val_images``      ``train_annotations`` / ``val_annotations``
========  ====================================  ==============================================================
coco      folder the ``file_name`` entries       the COCO json file
          are relative to
voc       the dataset root (holding JPEGImages/, a split: a name such as ``"trainval"`` (the file
          Annotations/, ImageSets/Main/)         ROOT/ImageSets/Main/<name>.txt must exist) or the path of a
                                                 split file (anything ending in ``.txt``); the images and XML
                                                 files are always ROOT/JPEGImages and ROOT/Annotations
yolo      folder of the images                   folder of the txt label files (``class_names`` is required)
========  ====================================  ==============================================================

``class_names``: VOC -- the class list or a names file (default: the sorted class names found in the training
split); YOLO -- a list, a names file or a dataset YAML with ``names``; COCO -- unused (the json has the
categories). The validation set always uses the training set's classes, so labels and category ids agree.

A set without a single box is refused at ``setup()`` (it would train at loss 0 and score nothing), naming where the
labels were looked for; one where more than half of the images have no box gets a ``DatasetWarning`` with the count
(see ``ssdlite.data.annotations.box_coverage_problem``). An image that cannot be read is replaced by another one in
training, and in validation scored as an image with no detections (``DetectionDataset``'s ``unreadable``).

Example (the raccoon set, VOC layout)::

    DetectionDataModule(format="voc", train_images="../shared/data/raccoon", train_annotations="train",
                        val_images="../shared/data/raccoon", val_annotations="val", image_size=320)
"""

from __future__ import annotations

import copy
import logging
import random
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import lightning as L
import numpy as np
import torch
from lightning.pytorch.utilities import rank_zero_only
from torch.utils.data import DataLoader, get_worker_info

from ssdlite.data.annotations import DatasetWarning, box_coverage_problem
from ssdlite.data.coco import CocoDetection
from ssdlite.data.detection_dataset import DetectionDataset
from ssdlite.data.transforms import AUGMENTATIONS, collate_detections, eval_transforms, train_transforms
from ssdlite.data.voc import VOCDetection
from ssdlite.data.yolo import YOLODetection

__all__ = ["DetectionDataModule", "seed_worker"]

logger = logging.getLogger(__name__)
_info_on_rank_zero = rank_zero_only(logger.info)

DatasetFormat = Literal["coco", "voc", "yolo"]
_FORMATS = ("coco", "voc", "yolo")


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: gives each worker its own ``random``, numpy and augmentation streams.

    torch seeds worker ``i`` with ``base_seed + i`` (``base_seed`` drawn from the main process's generator, so it
    changes every epoch and follows ``seed_everything``); the same seed goes to ``random``, numpy's global state and
    the dataset's transform, which would otherwise repeat the parent's state in every forked worker.

    It does not call ``cv2.setNumThreads``: in a worker forked after the parent used OpenCV's thread pool that call
    deadlocks (OpenCV 5, seen with the test suite's DataLoader workers).
    """
    seed = torch.initial_seed() % 2**32
    random.seed(seed)
    np.random.seed(seed)
    info = get_worker_info()
    transform = getattr(info.dataset, "transform", None) if info is not None else None
    if hasattr(transform, "set_random_seed"):
        transform.set_random_seed(seed)


class DetectionDataModule(L.LightningDataModule):
    """Train / validation data for SSDLite (see the module docstring for the meaning of the paths per format).

    Args:
        format: "coco", "voc" or "yolo".
        train_images: training images (folder, or VOC root).
        train_annotations: training annotations (json, VOC split, or YOLO labels folder).
        val_images: validation images.
        val_annotations: validation annotations.
        class_names: VOC / YOLO classes (list, names file, or YOLO dataset YAML); see the module docstring.
        image_size: network input side S.
        batch_size: images per batch (train and validation).
        num_workers: DataLoader worker processes.
        pin_memory: page-locked batches for faster host-to-GPU copies; None = when CUDA is available.
        persistent_workers: keep workers alive between epochs (only with ``num_workers > 0``).
        augment: the train augmentation: "ssd" (or True) SSD's full one, "ssdlite" the SSDLite recipes' min-IoU crop
            + flip, "ssd_no_zoom" SSD's without the zoom-out, "ssd_mosaic" SSD's on half the samples made mosaics
            of four photos, which skip the zoom-out (see ``ssdlite.data.transforms.train_augmentation`` /
            ``train_transforms``); False trains on the evaluation transform (resize only) -- for memorisation
            tests, or data so plentiful that every image is seen about once.
        cache_images: decode every train and validation image once into memory at ``setup()`` (Ultralytics'
            ``cache=ram``; see ``DetectionDataset.cache_images``): for small datasets seen hundreds of times, where
            JPEG decoding is a large share of the loader's time; refused with a clear error when the decoded
            images would not fit in half the available memory.

    Attributes (after ``setup()``):
        train_dataset, val_dataset: the readers (``DetectionDataset``), with the train / eval transforms.
        class_names (list[str]): label i+1 is ``class_names[i]``.
        category_ids (list[int]): label i+1 is category id ``category_ids[i]`` in COCO results.

    Raises:
        FileNotFoundError (in ``setup``): a path that does not exist, naming the path and its argument.
        ValueError: an unknown format, YOLO without ``class_names``, validation classes that differ from the
            training classes, or (in ``setup``) a set with no box at all.
    """

    def __init__(
        self,
        *,
        format: DatasetFormat = "coco",  # noqa: A002 -- the config key
        train_images: str | Path | None = None,
        train_annotations: str | Path | None = None,
        val_images: str | Path | None = None,
        val_annotations: str | Path | None = None,
        class_names: Sequence[str] | str | Path | None = None,
        image_size: int = 320,
        batch_size: int = 32,
        num_workers: int = 2,
        pin_memory: bool | None = None,
        persistent_workers: bool = True,
        augment: bool | Literal["ssd", "ssdlite", "ssd_no_zoom", "ssd_mosaic"] = True,
        cache_images: bool = False,
    ) -> None:
        super().__init__()
        if format not in _FORMATS:
            raise ValueError(f"format={format!r} is not supported; use one of {', '.join(_FORMATS)}")
        if format == "yolo" and class_names is None:
            raise ValueError("format='yolo' needs class_names: a list, a names file or the dataset YAML")
        if image_size < 32 or batch_size < 1 or num_workers < 0:
            raise ValueError(
                f"need image_size >= 32, batch_size >= 1, num_workers >= 0; got {image_size}, {batch_size}, "
                f"{num_workers}"
            )
        if not isinstance(augment, bool) and augment not in AUGMENTATIONS:
            raise ValueError(f"augment={augment!r}: use true, false or one of {', '.join(AUGMENTATIONS)}")
        self.save_hyperparameters()
        self.format = format
        self.train_images, self.train_annotations = train_images, train_annotations
        self.val_images, self.val_annotations = val_images, val_annotations
        self.class_names_source = class_names
        self.image_size = image_size
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else pin_memory
        self.persistent_workers = persistent_workers and num_workers > 0
        self.augment = augment
        self.cache_images = cache_images
        self.train_dataset: DetectionDataset | None = None
        self.val_dataset: DetectionDataset | None = None
        self.class_names: list[str] = []
        self.category_ids: list[int] = []
        self._val_coco_gt: dict | None = None
        self._calibration_dataset: DetectionDataset | None = None
        self._calibration_seed = 0

    @property
    def num_classes(self) -> int:
        """K, the number of object classes (after ``setup()``)."""
        return len(self.class_names)

    def setup(self, stage: str | None = None) -> None:
        """Builds the datasets the stage needs (once): "fit" both, "validate" / "test" / "predict" validation."""
        needs_train = stage in (None, "fit")
        if needs_train and self.train_dataset is None:
            if self.augment is False:
                transform = eval_transforms(self.image_size)
            else:
                transform = train_transforms(self.image_size, "ssd" if self.augment is True else self.augment)
            self.train_dataset = self._build_dataset("train", transform=transform)
            if self.cache_images:
                self._cache("train", self.train_dataset)
            # Seeds the main-process augmentation (num_workers=0) from torch's generator, i.e. seed_everything.
            augment_seed = int(torch.randint(0, 2**31 - 1, ()).item())
            self.train_dataset.transform.set_random_seed(augment_seed)
            self._calibration_dataset = _calibration_copy(self.train_dataset)
            # Derived from that seed rather than drawn: another draw would move every later training draw.
            self._calibration_seed = random.Random(augment_seed).randrange(2**31 - 1)
            self.class_names = list(self.train_dataset.class_names)
            self.category_ids = list(self.train_dataset.category_ids)
        if self.val_dataset is None and (self.val_images is not None or not needs_train):
            self.val_dataset = self._build_dataset("val", transform=eval_transforms(self.image_size))
            if self.cache_images:
                self._cache("val", self.val_dataset)
            if self.class_names and self.val_dataset.class_names != self.class_names:
                raise ValueError(
                    f"validation classes {self.val_dataset.class_names} ({self.val_annotations}) differ from the "
                    f"training classes {self.class_names} ({self.train_annotations}); use the same category list "
                    "in both annotation files"
                )
            if not self.class_names:
                self.class_names = list(self.val_dataset.class_names)
                self.category_ids = list(self.val_dataset.category_ids)

    def train_dataloader(self) -> DataLoader:
        dataset = self._require("train")
        # Drop the last partial batch (a batch of one breaks BatchNorm) unless the set is smaller than a batch.
        return self._loader(dataset, shuffle=True, drop_last=len(dataset) >= self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._require("val"), shuffle=False, drop_last=False)

    def calibration_dataloader(self) -> DataLoader | None:
        """Training batches to recompute BatchNorm statistics on before validation ("precise BN", see
        ``SSDLiteModule.calibrate_batchnorm``): training augmentation, shuffled, read in the main process (a few
        batches do not pay for starting workers), from a copy of the training set with its own random state (see
        ``_calibration_copy``), seeded by the step. None before ``setup("fit")``.
        """
        dataset = self._calibration_dataset
        if dataset is None:
            return None
        # Seeded by the step it is drawn at: the same batches at a step however often the run validated before.
        seed = self._calibration_seed + (self.trainer.global_step if self.trainer is not None else 0)
        dataset.transform.set_random_seed(seed)
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=True,
            drop_last=len(dataset) > self.batch_size,
            collate_fn=collate_detections,
            generator=torch.Generator().manual_seed(seed),
        )

    def val_coco_gt(self) -> dict:
        """COCO-format ground truth of the validation set, with the dataset's category ids (cached)."""
        if self._val_coco_gt is None:
            self._val_coco_gt = self._require("val").to_coco()
        return self._val_coco_gt

    def _loader(self, dataset: DetectionDataset, *, shuffle: bool, drop_last: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle,
            drop_last=drop_last,
            num_workers=self.num_workers,
            collate_fn=collate_detections,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            worker_init_fn=seed_worker if self.num_workers > 0 else None,
            # The training loader draws its order and worker seeds from torch's generator (seed_everything); the
            # validation loader gets its own, so that validating does not move the training's random draws.
            generator=None if shuffle else torch.Generator().manual_seed(0),
        )

    @staticmethod
    def _cache(split: str, dataset: DetectionDataset) -> None:
        held = dataset.cache_images()
        _info_on_rank_zero(f"{split} images cached in memory: {dataset.num_cached_images} of {len(dataset)}, "
                           f"{held / 2**20:.0f} MiB")

    def _require(self, split: str) -> DetectionDataset:
        dataset = self.train_dataset if split == "train" else self.val_dataset
        if dataset is None:
            stage = "fit" if split == "train" else "validate"
            raise RuntimeError(
                f"the {split} dataset is not built: call setup('{stage}') first and pass {split}_images / "
                f"{split}_annotations"
            )
        return dataset

    def _build_dataset(self, split: str, *, transform: Any) -> DetectionDataset:
        """The reader of ``split``, checked to hold boxes. An unreadable training image is replaced by another (fine
        for learning); an unreadable validation image becomes a placeholder that is scored with no detections."""
        dataset, labels_location = self._read_dataset(split, transform=transform)
        problem = box_coverage_problem(dataset.records, format=self.format, annotations=labels_location)
        if problem is not None and problem.severity == "error":
            raise ValueError(f"{split} set: {problem.message}")
        if problem is not None:
            warnings.warn(f"{split} set: {problem.message}", DatasetWarning, stacklevel=2)
        return dataset

    def _read_dataset(self, split: str, *, transform: Any) -> tuple[DetectionDataset, Path]:
        """The reader of ``split`` and where its labels are (COCO json, VOC Annotations folder, YOLO labels folder)."""
        images = _required_path(getattr(self, f"{split}_images"), f"{split}_images")
        annotations = getattr(self, f"{split}_annotations")
        if annotations is None:
            raise ValueError(f"{split}_annotations is not set; pass the {self._annotations_hint()}")
        unreadable = "substitute" if split == "train" else "placeholder"
        if self.format == "coco":
            annotation_file = _existing(Path(annotations), f"{split}_annotations", "the COCO json file")
            _existing(images, f"{split}_images", "the folder the json's file_name entries are relative to")
            return CocoDetection(images, annotation_file, transform=transform, unreadable=unreadable), annotation_file
        if self.format == "voc":
            return self._build_voc(split, images, str(annotations), transform, unreadable), images / "Annotations"
        _existing(images, f"{split}_images", "the folder of the images")
        labels = _existing(
            Path(annotations), f"{split}_annotations", "the folder of the YOLO txt label files"
        )
        dataset = YOLODetection(
            images, labels, classes=self._classes_for(split), transform=transform, unreadable=unreadable
        )
        return dataset, labels

    def _build_voc(
        self, split: str, root: Path, annotations: str, transform: Any, unreadable: str
    ) -> DetectionDataset:
        _existing(
            root, f"{split}_images", "the VOC root holding JPEGImages/, Annotations/ and ImageSets/Main/"
        )
        for folder in ("JPEGImages", "Annotations"):
            _existing(root / folder, f"{split}_images", f"a VOC root must hold {folder}/")
        if annotations.endswith(".txt"):
            split_file = _existing(
                Path(annotations), f"{split}_annotations", "a split file, one image id per line"
            )
        else:
            split_file = _existing(
                root / "ImageSets" / "Main" / f"{annotations}.txt",
                f"{split}_annotations",
                f"a split name whose file ImageSets/Main/<name>.txt exists under {root}",
            )
        return VOCDetection.from_folders(
            root / "JPEGImages",
            root / "Annotations",
            split_file=split_file,
            class_names=self._classes_for(split),
            transform=transform,
            unreadable=unreadable,
        )

    def _classes_for(self, split: str) -> Sequence[str] | str | Path | None:
        """The validation set takes the training set's classes; the training set the configured ones."""
        if split == "val" and self.class_names:
            return self.class_names
        source = self.class_names_source
        if isinstance(source, str | Path) and not Path(source).is_file():
            raise FileNotFoundError(
                f"class_names: {source} does not exist (expected a names file, one class per line"
                f"{', or a dataset YAML' if self.format == 'yolo' else ''}); fix the path or give a list"
            )
        return source

    def _annotations_hint(self) -> str:
        return {
            "coco": "COCO json file",
            "voc": "VOC split name (e.g. 'trainval') or split file",
            "yolo": "folder of the YOLO label files",
        }[self.format]


def _calibration_copy(train: DetectionDataset) -> DetectionDataset:
    """The training set (sharing its image cache) with its own augmentation: BatchNorm calibration before a
    validation then draws nothing from the training's random state, so how often a run validates does not change
    the weights it trains."""
    dataset = copy.copy(train)
    dataset.transform = copy.deepcopy(train.transform)
    return dataset


def _required_path(value: str | Path | None, key: str) -> Path:
    if value is None:
        raise ValueError(f"{key} is not set; pass the path in the data config")
    return Path(value)


def _existing(path: Path, key: str, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(
            f"{key}: {path} does not exist (expected {what}); fix the path in the data config"
        )
    return path
