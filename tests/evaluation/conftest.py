"""Session fixtures of the evaluation tests."""

import pytest

from .coco_eval_fixtures import make_coco_fixture, pycocotools_reference


@pytest.fixture(scope="session")
def coco_fixture() -> tuple[dict, list[dict]]:
    """(ground truth, detections) of the default synthetic fixture; tests must not modify them."""
    return make_coco_fixture()


@pytest.fixture(scope="session")
def coco_reference(coco_fixture):
    """pycocotools' COCOeval of ``coco_fixture``."""
    return pycocotools_reference(*coco_fixture)
