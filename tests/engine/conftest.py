"""Fixtures for the engine tests: a tiny shapes dataset (non-contiguous category ids) and a base training config.

Training runs use width 0.35 at 128x128, num_workers 0 and one intra-op thread: on the shared 2-core machine (and
under pytest -n 2) two OpenMP threads per process oversubscribe the cores and training gets many times slower.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from ssdlite.data.synthetic import SHAPE_CLASSES, make_shapes

ROOT = Path(__file__).resolve().parents[2]
RACCOON = ROOT.parent / "shared" / "data" / "raccoon"
CATEGORY_IDS = [10, 20, 30, 40]  # the shapes' ids 1..4 rewritten, so results must map labels back to them


def remap_categories(annotation_file: Path) -> None:
    """Rewrites category ids 1..4 of a shapes annotation file to CATEGORY_IDS."""
    coco = json.loads(annotation_file.read_text())
    mapping = dict(zip(range(1, 5), CATEGORY_IDS))
    for category in coco["categories"]:
        category["id"] = mapping[category["id"]]
    for annotation in coco["annotations"]:
        annotation["category_id"] = mapping[annotation["category_id"]]
    annotation_file.write_text(json.dumps(coco))


@pytest.fixture(scope="session")
def shapes(tmp_path_factory) -> dict[str, Path]:
    """16 train + 8 val shapes images (128x128), category ids 10..40."""
    paths = make_shapes(tmp_path_factory.mktemp("shapes"), num_train=16, num_val=8, size=128, seed=0)
    for split in ("train", "val"):
        remap_categories(paths[f"{split}_annotations"])
    return paths


def write_config(path: Path, shapes: dict[str, Path], runs_dir: Path, **sections) -> Path:
    """A training config for the tiny dataset; ``sections`` update the trainer/model/data dicts."""
    config = {
        "name": "test",
        "runs_dir": str(runs_dir),
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "max_epochs": 2,
            "num_sanity_val_steps": 0,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "deterministic": True,
            "log_every_n_steps": 1,
        },
        "model": {
            "arch": "ssdlite_mobilenet_v2",
            "width_mult": 0.35,
            "image_size": 128,
            "optimizer": "adamw",
            "lr": 0.004,
            "weight_decay": 1.0e-4,
            "warmup_epochs": 1,
            "ema_decay": 0.99,
            "ema_warmup_steps": 20,
            "bn_calibration_batches": 2,
        },
        "data": {
            "format": "coco",
            "train_images": str(shapes["train_images"]),
            "train_annotations": str(shapes["train_annotations"]),
            "val_images": str(shapes["val_images"]),
            "val_annotations": str(shapes["val_annotations"]),
            "batch_size": 8,
            "num_workers": 0,
        },
    }
    for section, values in sections.items():
        config[section].update(values)
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def config_factory(shapes, tmp_path):
    """``config_factory(**sections) -> path`` of a config writing its runs under ``tmp_path / "runs"``."""
    counter = iter(range(1000))

    def factory(**sections) -> Path:
        return write_config(tmp_path / f"config{next(counter)}.yaml", shapes, tmp_path / "runs", **sections)

    return factory


__all__ = ["CATEGORY_IDS", "RACCOON", "ROOT", "SHAPE_CLASSES", "write_config"]
