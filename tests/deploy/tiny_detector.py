"""A tiny SSDLite overfit on two numpy-drawn scenes, shared by the export / ONNX Runtime / INT8 / CLI tests (and
tests/core/test_overfit.py, which checks what the training achieved).

Width 0.35 at 128 px, 150 Adam steps on two images (a few seconds on one thread), then BatchNorm statistics
re-estimated on the same two images so that eval mode reproduces what training saw: the model finds its five
objects with scores near 1. Trained, and each export made, once per test run by whichever pytest process asks first
(tests/shared_files.py); each process loads the model once (``functools.cache``).
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

from ssdlite.core.loss import MultiBoxLoss
from ssdlite.models import build_model
from tests.shared_files import built_once

IMAGE_SIZE = 128
CLASS_NAMES = ["box", "disc"]
CATEGORY_IDS = [5, 9]
STEPS = 150
SCENES = [
    [(1, (10, 12, 60, 50)), (2, (70, 60, 118, 108)), (1, (20, 80, 50, 120))],
    [(2, (15, 20, 65, 70)), (1, (75, 10, 115, 90))],
]
"""Per scene: (label, (x1, y1, x2, y2)) in pixels of a 128 x 128 image."""

COLOURS = {1: (230, 40, 40), 2: (40, 90, 230)}


def draw_scene(objects: list[tuple[int, tuple[int, int, int, int]]]) -> np.ndarray:
    """uint8 RGB (128, 128, 3): label 1 filled rectangles, label 2 filled ellipses on grey."""
    image = np.full((IMAGE_SIZE, IMAGE_SIZE, 3), 200, dtype=np.uint8)
    ys, xs = np.mgrid[0:IMAGE_SIZE, 0:IMAGE_SIZE]
    for label, (x1, y1, x2, y2) in objects:
        if label == 1:
            inside = (xs >= x1) & (xs < x2) & (ys >= y1) & (ys < y2)
        else:
            cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / 2, (y2 - y1) / 2
            inside = ((xs + 0.5 - cx) / rx) ** 2 + ((ys + 0.5 - cy) / ry) ** 2 <= 1.0
        image[inside] = COLOURS[label]
    return image


def scene_images() -> list[np.ndarray]:
    return [draw_scene(objects) for objects in SCENES]


def scene_targets() -> list[tuple[np.ndarray, np.ndarray]]:
    """Per scene: (boxes float32 [N, 4] xyxy pixels, labels int64 [N])."""
    return [
        (
            np.array([box for _, box in objects], dtype=np.float32),
            np.array([label for label, _ in objects], dtype=np.int64),
        )
        for objects in SCENES
    ]


def training_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The two scenes as training feeds them: images [2, 3, S, S] in [-1, 1], boxes [2, 3, 4] xyxy in [0, 1] and
    labels [2, 3] (0: padding)."""
    images = torch.stack(
        [torch.from_numpy(image).permute(2, 0, 1).float() / 127.5 - 1.0 for image in scene_images()]
    )
    slots = max(len(objects) for objects in SCENES)
    boxes = torch.zeros(len(SCENES), slots, 4)
    labels = torch.zeros(len(SCENES), slots, dtype=torch.int64)
    for index, (scene_boxes, scene_labels) in enumerate(scene_targets()):
        boxes[index, : len(scene_labels)] = torch.from_numpy(scene_boxes) / IMAGE_SIZE
        labels[index, : len(scene_labels)] = torch.from_numpy(scene_labels)
    return images, boxes, labels


@functools.cache
def overfit_tiny_detector() -> torch.nn.Module:
    """The trained tiny SSDLite, eval mode (callers must not modify it), from :func:`checkpoint_file`."""
    saved = torch.load(checkpoint_file(), map_location="cpu", weights_only=True)
    model = build_model("ssdlite_mobilenet_v2", num_classes=len(CLASS_NAMES), width_mult=0.35, image_size=IMAGE_SIZE)
    model.load_state_dict(saved["state_dict"])
    _use_cumulative_batchnorm_statistics(model)
    return model.eval()


def _train() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("ssdlite_mobilenet_v2", num_classes=len(CLASS_NAMES), width_mult=0.35, image_size=IMAGE_SIZE)
    images, boxes, labels = training_batch()
    criterion = MultiBoxLoss()
    optimizer = torch.optim.Adam(model.parameters(), lr=5e-3)
    model.train()
    for _ in range(STEPS):
        outputs = model(images)
        losses = criterion(outputs["cls_logits"], outputs["box_deltas"], model.anchors, boxes, labels)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
    _use_cumulative_batchnorm_statistics(model)  # eval statistics = the statistics training normalised with
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
    with torch.no_grad():
        model(images)
    return model.eval()


def _use_cumulative_batchnorm_statistics(model: torch.nn.Module) -> None:
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None


@functools.cache
def scratch_dir() -> Path:
    """A folder for the files of this process's tests (removed at exit)."""
    path = Path(tempfile.mkdtemp(prefix="ssdlite_deploy_tests_"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


@functools.cache
def calibration_folder() -> Path:
    """The two scenes (and their mirror images) as PNG files: INT8 calibration images."""
    folder = scratch_dir() / "calibration"
    folder.mkdir(exist_ok=True)
    for index, image in enumerate(scene_images()):
        for flipped, variant in enumerate((image, image[:, ::-1])):
            cv2.imwrite(str(folder / f"scene{index}_{flipped}.png"), cv2.cvtColor(variant, cv2.COLOR_RGB2BGR))
    return folder


@functools.cache
def checkpoint_file() -> Path:
    """The tiny model as a checkpoint ``load_checkpoint`` reads (model_config + state_dict + names)."""
    return built_once("tiny_detector", _save_trained_model) / "tiny.ckpt"


def _save_trained_model(folder: Path) -> None:
    model = _train()
    checkpoint = {
        "model_config": model.config,
        "state_dict": model.state_dict(),
        "class_names": CLASS_NAMES,
        "category_ids": CATEGORY_IDS,
    }
    torch.save(checkpoint, folder / "tiny.ckpt")


@functools.cache
def exported_file(kind: str) -> Path:
    """The tiny model exported once per test run: "onnx_nms" (dynamic batch), "onnx_raw" (batch 1), "torchscript".

    "onnx_nms" is the file of :func:`exported_for_predictor` ``("ort")``, copied: ``export_for_predictor`` exports
    a checkpoint for ONNX Runtime by calling ``export_model`` with exactly these options (format onnx, NMS inside,
    dynamic batch, the checkpoint's class names and category ids), so one torch -> ONNX export serves both.
    """
    from ssdlite.deploy.export import export_model

    file_name = f"{kind}.pt" if kind == "torchscript" else f"{kind}.onnx"
    options = {"onnx_nms": None, "onnx_raw": dict(format="onnx"), "torchscript": dict(format="torchscript")}[kind]

    def export(folder: Path) -> None:
        if options is None:  # onnx_nms
            shutil.copyfile(exported_for_predictor("ort")[1], folder / file_name)
        else:
            export_model(overfit_tiny_detector(), folder / file_name, **options, class_names=CLASS_NAMES,
                         category_ids=CATEGORY_IDS)

    return built_once(f"tiny_detector_{kind}", export) / file_name


@functools.cache
def exported_for_predictor(backend: str) -> tuple[Path, Path]:
    """``ssdlite.deploy.model_files.export_for_predictor`` run once per test run: (the ``out_dir`` it was given, the
    path it returned).

    "ort": the checkpoint (:func:`checkpoint_file`, labels from it); "int8": the model with its class names only,
    calibrated on :func:`calibration_folder`. tests/deploy/test_predictor_ort.py checks both files; evaluating a
    checkpoint with ``backend="ort"`` (tests/deploy/test_evaluate.py) exports it as "ort" does.
    """
    from ssdlite.deploy.model_files import export_for_predictor

    def export(folder: Path) -> None:
        out_dir = folder / "out"
        if backend == "int8":
            path = export_for_predictor(overfit_tiny_detector(), "int8", out_dir,
                                        calibration_images=calibration_folder(), class_names=CLASS_NAMES)
        else:
            path = export_for_predictor(checkpoint_file(), backend, out_dir)
        (folder / "returned.txt").write_text(str(path))

    folder = built_once(f"tiny_detector_for_{backend}", export)
    return folder / "out", Path((folder / "returned.txt").read_text())


@functools.cache
def scenes_coco_dataset() -> tuple[Path, Path]:
    """The two scenes as a COCO dataset: (images folder, annotation file ``annotations/val.json``)."""
    import json

    root = scratch_dir() / "scenes_coco"
    images_dir = root / "val"
    images_dir.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for index, (image, (boxes, labels)) in enumerate(zip(scene_images(), scene_targets()), start=1):
        cv2.imwrite(str(images_dir / f"{index}.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        images.append({"id": index, "file_name": f"{index}.png", "width": image.shape[1], "height": image.shape[0]})
        for (x1, y1, x2, y2), label in zip(boxes.tolist(), labels.tolist()):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": index,
                    "category_id": CATEGORY_IDS[label - 1],
                    "bbox": [x1, y1, x2 - x1, y2 - y1],
                    "area": (x2 - x1) * (y2 - y1),
                    "iscrowd": 0,
                }
            )
    categories = [{"id": i, "name": name} for i, name in zip(CATEGORY_IDS, CLASS_NAMES)]
    annotation_file = root / "annotations" / "val.json"
    annotation_file.parent.mkdir(exist_ok=True)
    annotation_file.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return images_dir, annotation_file
