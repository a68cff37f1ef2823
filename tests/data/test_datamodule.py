"""DetectionDataModule: loaders on a tiny shapes set match the batch contract; VOC / YOLO wiring; clear errors."""

from __future__ import annotations

import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from pycocotools.coco import COCO

from ssdlite.data.annotations import DatasetWarning
from ssdlite.data.datamodule import DetectionDataModule, seed_worker
from ssdlite.data.synthetic import SHAPE_CLASSES, make_shapes

from .scene import SCENE, SCENE_CLASSES

IMAGE_SIZE = 96


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    return make_shapes(tmp_path_factory.mktemp("shapes"), num_train=10, num_val=5, size=96, seed=3)


def _coco_module(shapes, **overrides) -> DetectionDataModule:
    config = dict(
        format="coco",
        train_images=shapes["train_images"],
        train_annotations=shapes["train_annotations"],
        val_images=shapes["val_images"],
        val_annotations=shapes["val_annotations"],
        image_size=IMAGE_SIZE,
        batch_size=4,
        num_workers=0,
    )
    return DetectionDataModule(**(config | overrides))


def _check_batch(batch: dict, *, batch_size: int, num_classes: int) -> None:
    assert batch["images"].shape == (batch_size, 3, IMAGE_SIZE, IMAGE_SIZE)
    assert batch["images"].dtype == torch.float32
    assert batch["images"].min() >= -1 and batch["images"].max() <= 1
    max_boxes = batch["labels"].shape[1]
    assert max_boxes >= 1 and batch["boxes"].shape == (batch_size, max_boxes, 4)
    assert batch["labels"].dtype == torch.int64 and batch["boxes"].dtype == torch.float32
    assert ((batch["labels"] >= 0) & (batch["labels"] <= num_classes)).all()
    assert ((batch["boxes"] >= 0) & (batch["boxes"] <= 1)).all()
    valid = batch["labels"] > 0
    assert (batch["boxes"][valid][:, 2:] > batch["boxes"][valid][:, :2]).all()
    assert (batch["boxes"][~valid] == 0).all()
    assert batch["image_ids"].dtype == torch.int64 and batch["image_ids"].shape == (batch_size,)
    assert batch["orig_sizes"].dtype == torch.int64 and batch["orig_sizes"].shape == (batch_size, 2)


def test_coco_shapes_loaders_follow_the_batch_contract(shapes):
    module = _coco_module(shapes)
    module.setup("fit")
    assert module.class_names == list(SHAPE_CLASSES) and module.category_ids == [1, 2, 3, 4]
    assert module.num_classes == 4 and len(module.val_dataset) == 5
    train_batches = list(module.train_dataloader())
    assert len(train_batches) == 2  # 10 images, batch 4, last partial batch dropped
    for batch in train_batches:
        _check_batch(batch, batch_size=4, num_classes=4)
    val_batches = list(module.val_dataloader())
    assert [len(b["image_ids"]) for b in val_batches] == [4, 1]
    val_ids = torch.cat([b["image_ids"] for b in val_batches]).tolist()
    assert val_ids == [1, 2, 3, 4, 5]
    assert (torch.cat([b["orig_sizes"] for b in val_batches]) == 96).all()
    # Validation boxes are the annotation boxes scaled to [0, 1]: compare with the json through pycocotools.
    gt = COCO()
    gt.dataset = module.val_coco_gt()
    gt.createIndex()
    first = val_batches[0]
    for row, image_id in enumerate(first["image_ids"].tolist()):
        expected = sorted(
            tuple(np.round(np.array([x, y, x + w, y + h]) / 96, 5))
            for x, y, w, h in (a["bbox"] for a in gt.loadAnns(gt.getAnnIds(imgIds=image_id)))
        )
        count = int((first["labels"][row] > 0).sum())
        got = sorted(tuple(box) for box in np.round(first["boxes"][row, :count].double().numpy(), 5))
        assert got == expected


def test_calibration_batches_are_shuffled_training_batches_in_the_main_process(shapes):
    module = _coco_module(shapes, num_workers=2)
    assert module.calibration_dataloader() is None  # nothing to calibrate on before setup("fit")
    module.setup("fit")
    loader = module.calibration_dataloader()
    # the training images (one cache), with an augmentation of its own that draws nothing from the training's
    assert loader.dataset.records is module.train_dataset.records and loader.num_workers == 0 and loader.drop_last
    assert loader.dataset.transform is not module.train_dataset.transform
    batches = list(loader)
    assert len(batches) == 2
    for batch in batches:
        _check_batch(batch, batch_size=4, num_classes=4)

    def order() -> tuple[int, ...]:
        return tuple(torch.cat([b["image_ids"] for b in module.calibration_dataloader()]).tolist())

    module.trainer = SimpleNamespace(global_step=0)
    assert order() == order()  # seeded by the step: the same batches at a step, however often it is drawn
    orders = set()
    for step in range(5):
        module.trainer.global_step = step
        orders.add(order())
    assert len(orders) > 1  # and shuffled anew at another step


def test_worker_processes_draw_different_augmentations(shapes):
    module = _coco_module(shapes, num_workers=2, batch_size=1, persistent_workers=False)
    module.setup("fit")
    # Every item is the same sample: identical RNG states in the two workers would give identical outputs.
    dataset = module.train_dataset
    dataset.records = [dataset.records[0]] * 4
    loader = module.train_dataloader()
    assert loader.worker_init_fn is seed_worker
    images = [batch["images"][0] for batch in loader]
    assert len(images) == 4
    assert not torch.equal(images[0], images[1]), "workers 0 and 1 produced the same augmentation"


def test_voc_split_names_and_split_files(make_scene):
    scene = make_scene("voc")
    module = DetectionDataModule(
        format="voc",
        train_images=scene["root"],
        train_annotations="train",
        val_images=scene["root"],
        val_annotations=str(scene["split"]),
        image_size=IMAGE_SIZE,
        batch_size=2,
        num_workers=0,
    )
    module.setup("fit")
    assert len(module.train_dataset) == 2 and len(module.val_dataset) == len(SCENE)
    assert module.class_names == list(SCENE_CLASSES)
    _check_batch(next(iter(module.val_dataloader())), batch_size=2, num_classes=3)
    gt = module.val_coco_gt()
    assert len(gt["images"]) == len(SCENE) and {c["name"] for c in gt["categories"]} == set(SCENE_CLASSES)


def test_yolo_needs_and_uses_class_names(make_scene):
    scene = make_scene("yolo")
    config = dict(
        format="yolo",
        train_images=scene["images"],
        train_annotations=scene["labels"],
        val_images=scene["images"],
        val_annotations=scene["labels"],
        image_size=IMAGE_SIZE,
        batch_size=4,
        num_workers=0,
    )
    with pytest.raises(ValueError, match="class_names"):
        DetectionDataModule(**config)
    module = DetectionDataModule(**config, class_names=scene["yaml"])
    module.setup("validate")
    assert module.train_dataset is None and module.class_names == list(SCENE_CLASSES)
    _check_batch(next(iter(module.val_dataloader())), batch_size=4, num_classes=3)


@pytest.mark.parametrize(
    ("overrides", "key", "path_part"),
    [
        ({"train_annotations": "missing/train.json"}, "train_annotations", "missing/train.json"),
        ({"val_images": "no_such_dir"}, "val_images", "no_such_dir"),
    ],
)
def test_missing_coco_paths_name_the_path_and_the_key(shapes, overrides, key, path_part):
    module = _coco_module(shapes, **overrides)
    with pytest.raises(FileNotFoundError, match=key) as error:
        module.setup("fit")
    assert path_part in str(error.value)


def test_missing_voc_split_names_the_split_file(make_scene):
    scene = make_scene("voc")
    module = DetectionDataModule(
        format="voc",
        train_images=scene["root"],
        train_annotations="trainval",
        val_images=scene["root"],
        val_annotations="nope",
        num_workers=0,
    )
    with pytest.raises(FileNotFoundError, match="val_annotations") as error:
        module.setup("fit")
    assert "ImageSets/Main/nope.txt" in str(error.value)


def test_bad_format_and_unbuilt_loaders_are_clear_errors(shapes):
    with pytest.raises(ValueError, match="format='pascal'"):
        _coco_module(shapes, format="pascal")
    module = _coco_module(shapes)
    with pytest.raises(RuntimeError, match="setup"):
        module.train_dataloader()


def test_augment_presets_are_chosen_by_name(shapes):
    with pytest.raises(ValueError, match="augment='zoom'"):
        _coco_module(shapes, augment="zoom")
    module = _coco_module(shapes, augment="ssdlite")
    module.setup("fit")
    steps = [type(step).__name__ for step in module.train_dataset.transform.augmentation.transforms]
    assert steps == ["MinIoURandomCrop", "Resize", "HorizontalFlip"]
    # The mosaic preset: batches keep the contract when half the samples are mosaics made in a worker.
    module = _coco_module(shapes, augment="ssd_mosaic", num_workers=1, persistent_workers=False)
    module.setup("fit")
    assert module.train_dataset.transform.mosaic_probability == 0.5
    for batch in module.train_dataloader():
        _check_batch(batch, batch_size=batch["images"].shape[0], num_classes=module.num_classes)


def test_cached_images_reach_the_worker_processes(tmp_path):
    """cache_images decodes at setup, before the workers fork: they read the cache, not the files."""
    own = make_shapes(tmp_path, num_train=6, num_val=3, size=96, seed=4)
    module = _coco_module(own, augment="ssd_mosaic", num_workers=1, persistent_workers=False, cache_images=True)
    module.setup("fit")
    for dataset in (module.train_dataset, module.val_dataset):
        assert dataset.num_cached_images == len(dataset)
    for folder in (own["train_images"], own["val_images"]):
        for image in Path(folder).iterdir():
            image.unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error", DatasetWarning)  # a read from disk would find nothing and warn
        for loader in (module.train_dataloader(), module.val_dataloader()):
            for batch in loader:
                _check_batch(batch, batch_size=batch["images"].shape[0], num_classes=module.num_classes)


def test_an_unreadable_image_is_replaced_in_training_and_a_flagged_placeholder_in_validation(make_scene):
    scene = make_scene("coco")
    truncated = scene["images"] / "000002.jpg"
    truncated.write_bytes(truncated.read_bytes()[:300])
    module = DetectionDataModule(format="coco", train_images=scene["images"], train_annotations=scene["annotations"],
                                 val_images=scene["images"], val_annotations=scene["annotations"],
                                 image_size=IMAGE_SIZE, batch_size=4, num_workers=0, augment=False)
    module.setup("fit")
    with pytest.warns(DatasetWarning, match="000002.jpg.*takes its place in training"):
        trained = module.train_dataset[1]
    assert trained["file_name"] == "000003.jpg" and len(trained["labels"]) == 3
    with pytest.warns(DatasetWarning, match="000002.jpg.*evaluated as an image with no detections"):
        [batch] = list(module.val_dataloader())
    assert batch["image_ids"].tolist() == [1, 2, 3, 4]  # each image once, under its own id
    assert batch["unreadable"].tolist() == [False, True, False, False]
    assert (batch["labels"][1] == 0).all()
