"""COCO, VOC and YOLO readers: the Sample contract, format details, agreement, and bad input."""

from __future__ import annotations

import contextlib
import io
import json
import pickle
import warnings

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from ssdlite.data.annotations import DatasetWarning
from ssdlite.data.coco import CocoDetection
from ssdlite.data.convert import voc_to_coco, yolo_to_coco
from ssdlite.data.voc import VOC_CLASSES, VOCDetection
from ssdlite.data.yolo import YOLODetection
from ssdlite_runtime.image_io import ImageReadError

from .scene import SCENE, SCENE_BOXES, SCENE_CATEGORY_IDS, SCENE_CLASSES, voc_xml

# YOLO stores 6 decimals of normalised coordinates: < 1e-3 px on these small images.
YOLO_TOLERANCE = 1e-3


def build(format: str, paths: dict, **kwargs):
    if format == "coco":
        return CocoDetection(paths["images"], paths["annotations"], **kwargs)
    if format == "voc":
        return VOCDetection(paths["root"], "trainval", **kwargs)
    return YOLODetection(paths["images"], paths["labels"], classes=paths["classes"], **kwargs)


def boxes_by_stem(dataset) -> dict[str, tuple[np.ndarray, list[str]]]:
    """{file stem: (boxes sorted row-wise, their class names)} over the whole dataset."""
    result = {}
    for index in range(len(dataset)):
        sample = dataset[index]
        order = np.lexsort(sample["boxes"].T[::-1]) if len(sample["boxes"]) else np.zeros(0, dtype=int)
        names = [dataset.class_names[label - 1] for label in sample["labels"][order]]
        result[sample["file_name"].rsplit(".", 1)[0]] = (sample["boxes"][order], names)
    return result


def expected_by_stem() -> dict[str, tuple[np.ndarray, list[str]]]:
    result = {}
    for stem, (boxes, names) in SCENE_BOXES.items():
        order = np.lexsort(boxes.T[::-1]) if len(boxes) else np.zeros(0, dtype=int)
        result[stem] = (boxes[order], [names[i] for i in order])
    return result


def assert_same_boxes(actual: dict, expected: dict, *, atol: float) -> None:
    assert actual.keys() == expected.keys()
    for stem in expected:
        np.testing.assert_allclose(actual[stem][0], expected[stem][0], atol=atol, err_msg=stem)
        assert actual[stem][1] == expected[stem][1], stem


@pytest.mark.parametrize("format", ["coco", "voc", "yolo"])
def test_sample_contract_and_scene_boxes(make_scene, format):
    dataset = build(format, make_scene(format))
    assert len(dataset) == len(SCENE)
    assert dataset.class_names == list(SCENE_CLASSES)
    expected_ids = list(SCENE_CATEGORY_IDS) if format == "coco" else [1, 2, 3]
    assert dataset.category_ids == expected_ids
    for index in range(len(dataset)):
        sample = dataset[index]
        stem = sample["file_name"].rsplit(".", 1)[0]
        (height, width), objects = SCENE[stem]
        assert sample["image"].dtype == np.uint8 and sample["image"].shape == (height, width, 3)
        assert sample["orig_size"] == (height, width)
        assert sample["boxes"].dtype == np.float32 and sample["boxes"].shape == (len(objects), 4)
        assert sample["labels"].dtype == np.int64 and set(sample["labels"].tolist()) <= {1, 2, 3}
        assert sample["iscrowd"].dtype == bool and not sample["iscrowd"].any()
        assert isinstance(sample["image_id"], int) and sample["image_id"] == int(stem)
        assert ("difficult" in sample) == (format == "voc")
    atol = YOLO_TOLERANCE if format == "yolo" else 0.0  # COCO xywh->xyxy and VOC 1-based->0-based are exact
    assert_same_boxes(boxes_by_stem(dataset), expected_by_stem(), atol=atol)


def test_box_pixels_hold_the_class_colour(make_scene):
    """Boxes follow the pixels: the centre of each box has its class's colour (catches 1-pixel-shift bugs too)."""
    dataset = build("voc", make_scene("voc"))
    colours = {"cat": 0, "dog": 1, "person": 2}  # dominant channel of CLASS_COLOURS
    for index in range(len(dataset)):
        sample = dataset[index]
        for box, label in zip(sample["boxes"].astype(int), sample["labels"]):
            x1, y1, x2, y2 = box
            inside = sample["image"][y1 + 1 : y2 - 1, x1 + 1 : x2 - 1].reshape(-1, 3).mean(axis=0)
            assert inside.argmax() == colours[dataset.class_names[label - 1]]


def test_coco_crowd_kept_in_ground_truth_but_not_in_targets(make_scene):
    paths = make_scene("coco")
    data = json.loads(paths["annotations"].read_text())
    data["annotations"].append(
        {"id": 99, "image_id": 1, "category_id": 18, "bbox": [1, 1, 10, 10], "area": 50.0, "iscrowd": 1}
    )
    paths["annotations"].write_text(json.dumps(data))
    default = CocoDetection(paths["images"], paths["annotations"])
    assert len(default[0]["boxes"]) == 2 and not default[0]["iscrowd"].any()
    with_crowd = CocoDetection(paths["images"], paths["annotations"], include_crowd=True)
    sample = with_crowd[0]
    assert len(sample["boxes"]) == 3 and sample["iscrowd"].tolist().count(True) == 1
    np.testing.assert_array_equal(sample["boxes"][sample["iscrowd"]], [[1, 1, 11, 11]])
    crowd = [a for a in default.to_coco()["annotations"] if a["iscrowd"]]
    assert crowd == [{"id": 99, "image_id": 1, "category_id": 18, "bbox": [1.0, 1.0, 10.0, 10.0], "area": 50.0,
                      "iscrowd": 1}]


def test_voc_difficult_flag(make_scene):
    paths = make_scene("voc")
    (height, width), objects = SCENE["000003"]
    (paths["annotations"] / "000003.xml").write_text(voc_xml("000003", height, width, objects, difficult={0}))
    dataset = VOCDetection(paths["root"], "trainval")
    sample = dataset[2]
    assert sample["difficult"].tolist() == [True, False, False] and len(sample["boxes"]) == 3
    easy = VOCDetection(paths["root"], "trainval", keep_difficult=False)[2]
    assert len(easy["boxes"]) == 2 and not easy["difficult"].any()
    difficult = [a for a in dataset.to_coco()["annotations"] if a["difficult"]]
    assert len(difficult) == 1 and difficult[0]["iscrowd"] == 1 and difficult[0]["bbox"] == [10.0, 10.0, 10.0, 20.0]


def test_voc_missing_split_file_uses_every_xml_and_says_so(make_scene):
    paths = make_scene("voc")
    assert len(VOCDetection(paths["root"], "train")) == 2
    with pytest.warns(DatasetWarning, match=r"test\.txt not found.*every XML"):
        dataset = VOCDetection(paths["root"], "test")
    assert len(dataset) == len(SCENE)


def test_voc_given_class_lists(make_scene):
    paths = make_scene("voc")
    full = VOCDetection(paths["root"], class_names=VOC_CLASSES)
    assert full.class_names == list(VOC_CLASSES) and full.category_ids == list(range(1, 21))
    assert full[0]["labels"].tolist() == [VOC_CLASSES.index("cat") + 1, VOC_CLASSES.index("person") + 1]
    with pytest.warns(DatasetWarning, match="1 x unknown class.*'person'"):
        partial = VOCDetection(paths["root"], class_names=["cat", "dog"])
    assert partial[0]["labels"].tolist() == [1]
    names_file = paths["root"] / "names.txt"
    names_file.write_text("dog\ncat\nperson\n")
    assert VOCDetection(paths["root"], class_names=names_file)[1]["labels"].tolist() == [1]


@pytest.mark.parametrize("source", ["list", "names_file", "yaml_mapping", "yaml_list"])
def test_yolo_class_sources(make_scene, source):
    paths = make_scene("yolo")
    if source == "list":
        classes = list(SCENE_CLASSES)
    elif source == "names_file":
        classes = paths["classes"]
    elif source == "yaml_mapping":
        classes = paths["yaml"]
    else:
        classes = paths["yaml"].with_name("list.yaml")
        classes.write_text(f"names: {list(SCENE_CLASSES)}\n")
    dataset = YOLODetection(paths["images"], paths["labels"], classes=classes)
    assert dataset.class_names == list(SCENE_CLASSES)
    assert_same_boxes(boxes_by_stem(dataset), expected_by_stem(), atol=YOLO_TOLERANCE)


def test_yolo_negative_and_label_without_image(make_scene):
    paths = make_scene("yolo")
    orphan = paths["labels"] / "000099.txt"
    orphan.write_text("0 0.5 0.5 0.2 0.2\n")
    with pytest.warns(DatasetWarning, match="label without image.*000099.txt"):
        dataset = YOLODetection(paths["images"], paths["labels"], classes=paths["classes"])
    negative = dataset[3]
    assert negative["file_name"] == "000004.jpg" and negative["boxes"].shape == (0, 4)


def test_readers_agree_after_conversion_to_coco(make_scene, tmp_path):
    voc_paths, yolo_paths = make_scene("voc"), make_scene("yolo")
    voc_json = tmp_path / "voc.json"
    voc_to_coco(voc_paths["images"], voc_paths["annotations"], split_file=voc_paths["split"], out_file=voc_json)
    yolo_json = tmp_path / "yolo.json"
    yolo_to_coco(yolo_paths["images"], yolo_paths["labels"], classes=yolo_paths["yaml"], out_file=yolo_json)
    direct_voc = VOCDetection(voc_paths["root"])
    via_voc = CocoDetection(voc_paths["images"], voc_json)
    direct_yolo = YOLODetection(yolo_paths["images"], yolo_paths["labels"], classes=yolo_paths["classes"])
    via_yolo = CocoDetection(yolo_paths["images"], yolo_json)
    reference = boxes_by_stem(direct_voc)
    for dataset in (via_voc, direct_yolo, via_yolo):
        assert dataset.class_names == direct_voc.class_names
        assert_same_boxes(boxes_by_stem(dataset), reference, atol=YOLO_TOLERANCE)
        assert [dataset[i]["image_id"] for i in range(len(dataset))] == [1, 2, 3, 4]


def _count_dataset_warnings(build_dataset):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dataset = build_dataset()
    messages = [str(w.message) for w in caught if issubclass(w.category, DatasetWarning)]
    return dataset, messages


def test_degenerate_boxes_dropped_and_outside_boxes_clipped_with_one_warning_coco(make_scene):
    paths = make_scene("coco")
    data = json.loads(paths["annotations"].read_text())
    bad_boxes = [[5, 5, 0, 10], [5, 5, -3, 10], [5, 5, 10, float("nan")], [50, 40, 30, 20], [70, 50, 5, 5]]
    for offset, bbox in enumerate(bad_boxes):
        data["annotations"].append({"id": 100 + offset, "image_id": 1, "category_id": 3, "bbox": bbox,
                                    "area": 1.0, "iscrowd": 0})
    paths["annotations"].write_text(json.dumps(data).replace("NaN", "NaN"))
    dataset, messages = _count_dataset_warnings(lambda: CocoDetection(paths["images"], paths["annotations"]))
    assert len(messages) == 1
    assert "3 x degenerate box" in messages[0] and "2 x out of image box" in messages[0]
    boxes = dataset[0]["boxes"]
    assert len(boxes) == 3  # two scene boxes + the clipped one; the fully outside box is dropped
    np.testing.assert_array_equal(boxes[-1], [50, 40, 64, 48])


def test_degenerate_boxes_voc_and_yolo(make_scene):
    voc = make_scene("voc")
    objects = [("cat", 30, 10, 20, 40), ("dog", 5, 5, 70, 30), ("cat", 1, 1, 9, 9)]  # x2<x1, out of 64 px
    (voc["annotations"] / "000001.xml").write_text(voc_xml("000001", 48, 64, objects))
    dataset, messages = _count_dataset_warnings(lambda: VOCDetection(voc["root"]))
    assert len(messages) == 1 and "1 x degenerate box" in messages[0] and "1 x out of image box" in messages[0]
    np.testing.assert_array_equal(dataset[0]["boxes"], [[5, 5, 64, 30], [1, 1, 9, 9]])

    yolo = make_scene("yolo")
    (yolo["labels"] / "000001.txt").write_text("0 0.5 0.5 0 0.2\n1 1.0 0.5 0.5 0.5\n2 0.5 0.5 0.5 0.5\n")
    dataset, messages = _count_dataset_warnings(
        lambda: YOLODetection(yolo["images"], yolo["labels"], classes=yolo["classes"])
    )
    assert len(messages) == 1 and "1 x degenerate box" in messages[0] and "1 x out of image box" in messages[0]
    np.testing.assert_allclose(dataset[0]["boxes"], [[48, 12, 64, 36], [16, 12, 48, 36]])


@pytest.mark.parametrize("format", ["coco", "voc", "yolo"])
def test_clean_dataset_loads_without_warnings(make_scene, format):
    paths = make_scene(format)
    _, messages = _count_dataset_warnings(lambda: build(format, paths))
    assert messages == []


def test_malformed_voc_xml_names_file_and_line(make_scene):
    paths = make_scene("voc")
    broken = paths["annotations"] / "000002.xml"
    broken.write_text("<annotation>\n<size><width>40</width>\n<object><name>dog</name>\n</annotation>\n")
    with pytest.raises(ValueError, match=r"000002\.xml:4: malformed XML"):
        VOCDetection(paths["root"])
    (height, width), _ = SCENE["000002"]
    text = voc_xml("000002", height, width, [("dog", 0, 0, 10, 10), ("dog", 0, 0, 10, 10)])
    broken.write_text(text.replace("<xmax>10</xmax>", "<xmax>ten</xmax>", 2).replace("<xmax>ten", "<xmax>10", 1))
    line = text.split("\n").index("<object>", 3) + 1  # the second <object> element
    with pytest.raises(ValueError, match=rf"000002\.xml:{line}: object 1 has bndbox .*'ten'"):
        VOCDetection(paths["root"])


def test_voc_split_id_without_xml(make_scene):
    paths = make_scene("voc")
    (paths["annotations"] / "000003.xml").unlink()
    with pytest.raises(FileNotFoundError, match=r"000003\.xml.*image id '000003' not found"):
        VOCDetection(paths["root"])


def test_malformed_coco_json_names_file_and_line(make_scene):
    paths = make_scene("coco")
    text = json.dumps(json.loads(paths["annotations"].read_text()), indent=1)
    paths["annotations"].write_text(text[:-40] + "\n,,\n")
    with pytest.raises(ValueError, match=r"annotations\.json:\d+: invalid JSON at column"):
        CocoDetection(paths["images"], paths["annotations"])
    data = json.loads(text)
    del data["annotations"][2]["bbox"]
    paths["annotations"].write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"annotations\.json: annotations\[2\] \(id 3\) lacks \['bbox'\]"):
        CocoDetection(paths["images"], paths["annotations"])
    data = json.loads(text)
    data["annotations"][0]["bbox"] = [1, 2, 3]
    paths["annotations"].write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"annotation id 1 has bbox \[1, 2, 3\]"):
        CocoDetection(paths["images"], paths["annotations"])
    data = json.loads(text)
    data["annotations"][1]["id"] = data["annotations"][0]["id"]
    paths["annotations"].write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"'annotations' repeats ids \(\[1\]\)"):
        CocoDetection(paths["images"], paths["annotations"])
    with pytest.raises(FileNotFoundError, match="missing.json"):
        CocoDetection(paths["images"], paths["annotations"].with_name("missing.json"))


def test_malformed_yolo_files_name_file_and_line(make_scene):
    paths = make_scene("yolo")
    label = paths["labels"] / "000003.txt"
    label.write_text(label.read_text() + "\n1 0.5 0.5 0.1\n")  # line 5 (a blank line 4 is ignored)
    with pytest.raises(ValueError, match=r"000003\.txt:5: expected 'class cx cy w h'"):
        YOLODetection(paths["images"], paths["labels"], classes=paths["classes"])
    label.write_text("cat 0.5 0.5 0.1 0.1\n")
    with pytest.raises(ValueError, match=r"000003\.txt:1:"):
        YOLODetection(paths["images"], paths["labels"], classes=paths["classes"])
    bad_yaml = paths["yaml"].with_name("bad.yaml")
    bad_yaml.write_text("names: [cat, dog\nnc: 2\n")
    with pytest.raises(ValueError, match=r"bad\.yaml:\d+: malformed YAML"):
        YOLODetection(paths["images"], paths["labels"], classes=bad_yaml)
    bad_yaml.write_text("names:\n  0: cat\n  2: dog\n")
    with pytest.raises(ValueError, match=r"keys must be the class indices"):
        YOLODetection(paths["images"], paths["labels"], classes=bad_yaml)


def test_unreadable_image_is_reported_once_and_becomes_a_placeholder_of_its_own_id(make_scene):
    # The default (evaluation): the unreadable image stands for itself, empty, never as another image.
    paths = make_scene("coco")
    truncated = paths["images"] / "000002.jpg"
    truncated.write_bytes(truncated.read_bytes()[:300])
    dataset = CocoDetection(paths["images"], paths["annotations"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        first = dataset[1]
        second = dataset[1]
        samples = [dataset[i] for i in range(len(dataset))]
    assert [sample["file_name"] for sample in samples] == ["000001.jpg", "000002.jpg", "000003.jpg", "000004.jpg"]
    assert [sample["image_id"] for sample in samples] == [1, 2, 3, 4]
    assert [sample.get("unreadable", False) for sample in samples] == [False, True, False, False]
    assert first["image_id"] == second["image_id"] == 2 and first["orig_size"] == (64, 40)
    assert first["image"].shape == (64, 40, 3) and not first["image"].any()
    assert first["boxes"].shape == (0, 4) and len(first["labels"]) == len(first["iscrowd"]) == 0
    reports = [str(w.message) for w in caught if issubclass(w.category, DatasetWarning)]
    assert len(reports) == 1 and str(truncated) in reports[0] and "no detections" in reports[0]


def test_unreadable_image_in_training_is_replaced_by_the_next_readable_one(make_scene):
    paths = make_scene("coco")
    truncated = paths["images"] / "000002.jpg"
    truncated.write_bytes(truncated.read_bytes()[:300])
    dataset = CocoDetection(paths["images"], paths["annotations"], unreadable="substitute")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        names = [dataset[i]["file_name"] for i in range(len(dataset))]
    assert names == ["000001.jpg", "000003.jpg", "000003.jpg", "000004.jpg"]
    reports = [str(w.message) for w in caught if issubclass(w.category, DatasetWarning)]
    assert len(reports) == 1 and str(truncated) in reports[0] and "training" in reports[0]
    with pytest.raises(ValueError, match="unreadable='skip'.*placeholder, substitute, raise"):
        CocoDetection(paths["images"], paths["annotations"], unreadable="skip")


def test_strict_raises_for_an_unreadable_image(make_scene):
    paths = make_scene("coco")
    truncated = paths["images"] / "000002.jpg"
    truncated.write_bytes(truncated.read_bytes()[:300])
    for strict in (CocoDetection(paths["images"], paths["annotations"], strict=True),
                   CocoDetection(paths["images"], paths["annotations"], unreadable="raise")):
        with pytest.raises(ImageReadError, match="000002.jpg"):
            strict[1]
    (paths["images"] / "000001.jpg").unlink()
    with pytest.raises(ImageReadError, match=r"000001\.jpg: file not found"):
        strict[0]


def test_image_cache_serves_decoded_pixels_read_only_and_leaves_unreadable_images_to_the_usual_report(make_scene):
    paths = make_scene("coco")
    truncated = paths["images"] / "000002.jpg"
    truncated.write_bytes(truncated.read_bytes()[:300])
    dataset = CocoDetection(paths["images"], paths["annotations"])
    expected = [dataset.load_sample(i)["image"] for i in (0, 2, 3)]
    held = dataset.cache_images()
    assert held == sum(image.nbytes for image in expected) and dataset.num_cached_images == 3
    for name in ("000001.jpg", "000003.jpg", "000004.jpg"):
        (paths["images"] / name).unlink()  # from now on only the cache can serve them
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        samples = [dataset[i] for i in range(len(dataset))]
    assert [sample["file_name"] for sample in samples] == ["000001.jpg", "000002.jpg", "000003.jpg", "000004.jpg"]
    assert samples[1]["unreadable"] and "unreadable" not in samples[0]
    for sample, image in zip([samples[0], samples[2], samples[3]], expected):
        np.testing.assert_array_equal(sample["image"], image)
        with pytest.raises(ValueError, match="read-only"):
            sample["image"][0, 0, 0] = 1  # a transform writing into the pixels would corrupt later epochs
    reports = [str(w.message) for w in caught if issubclass(w.category, DatasetWarning)]
    assert len(reports) == 1 and str(truncated) in reports[0]
    # Too big for the memory: refused before decoding anything, naming the switch.
    fresh = CocoDetection(paths["images"], paths["annotations"])
    with pytest.raises(ValueError, match=r"needs about .* GiB.*data\.cache_images false"):
        fresh.cache_images(memory_share=1e-12)
    assert fresh.num_cached_images == 0


def test_size_in_annotation_differs_from_image(make_scene):
    paths = make_scene("voc")
    objects = [("dog", 0, 0, 40, 64), ("cat", 30, 60, 70, 90)]  # the annotation claims 100x100
    (paths["annotations"] / "000002.xml").write_text(voc_xml("000002", 100, 100, objects))
    dataset = VOCDetection(paths["root"])
    with pytest.warns(DatasetWarning, match=r"000002\.jpg is 40x64 but .* says 100x100"):
        sample = dataset[1]
    np.testing.assert_array_equal(sample["boxes"], [[0, 0, 40, 64], [30, 60, 40, 64]])
    assert sample["labels"].tolist() == [2, 1] and sample["difficult"].tolist() == [False, False]


def flip_and_tag(sample):
    sample["image"] = sample["image"][:, ::-1]
    sample["tag"] = sample["image_id"] * 10
    return sample


def test_transform_receives_the_sample_and_dataset_pickles(make_scene):
    paths = make_scene("coco")
    dataset = CocoDetection(paths["images"], paths["annotations"], transform=flip_and_tag)
    assert dataset[2]["tag"] == 30
    restored = pickle.loads(pickle.dumps(dataset))  # DataLoader workers with spawn
    assert restored[2]["tag"] == 30 and len(restored) == len(dataset)


class MixingTransform:
    """Asks for given other samples (as the mosaic does) and records what it was handed."""

    def __init__(self, extra_indices):
        self.extra_indices = list(extra_indices)

    def draw_extra_indices(self, dataset_size):
        assert dataset_size == 4
        return self.extra_indices

    def __call__(self, sample, extra_samples=()):
        return {"first": sample["file_name"], "extras": [extra["file_name"] for extra in extra_samples]}


def test_a_mixing_transform_gets_the_other_samples_it_asks_for(make_scene):
    paths = make_scene("coco")
    dataset = CocoDetection(paths["images"], paths["annotations"], transform=MixingTransform([3, 0, 0]))
    assert dataset[1] == {"first": "000002.jpg", "extras": ["000004.jpg", "000001.jpg", "000001.jpg"]}
    dataset.transform = MixingTransform([])  # not mixing this time: called with the sample alone
    assert dataset[1] == {"first": "000002.jpg", "extras": []}
    # In training, an unreadable extra photo is reported and replaced by the next readable one, like a sample.
    truncated = paths["images"] / "000001.jpg"
    truncated.write_bytes(truncated.read_bytes()[:300])
    dataset = CocoDetection(paths["images"], paths["annotations"], transform=MixingTransform([0, 2]),
                            unreadable="substitute")
    with pytest.warns(DatasetWarning, match="000001.jpg"):
        assert dataset[1] == {"first": "000002.jpg", "extras": ["000002.jpg", "000003.jpg"]}


@pytest.mark.parametrize("format", ["coco", "voc", "yolo"])
def test_to_coco_is_ground_truth_pycocotools_scores_perfectly(make_scene, format):
    dataset = build(format, make_scene(format))
    ground_truth = dataset.to_coco()
    assert [c["id"] for c in ground_truth["categories"]] == dataset.category_ids
    assert [c["name"] for c in ground_truth["categories"]] == dataset.class_names
    assert len(ground_truth["images"]) == len(SCENE) and len(ground_truth["annotations"]) == 6
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = ground_truth
        coco.createIndex()
        detections = [dict(image_id=a["image_id"], category_id=a["category_id"], bbox=a["bbox"], score=1.0)
                      for a in ground_truth["annotations"]]
        evaluator = COCOeval(coco, coco.loadRes(detections), "bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    assert evaluator.stats[0] == pytest.approx(1.0) and evaluator.stats[1] == pytest.approx(1.0)


def test_readers_never_modify_the_users_files(make_scene, tmp_path):
    roots = {format: make_scene(format) for format in ("coco", "voc", "yolo")}
    (roots["yolo"]["labels"] / "000001.txt").write_text("0 0.5 0.5 0 0.2\n7 0.5 0.5 0.2 0.2\n")
    truncated = roots["coco"]["images"] / "000001.jpg"
    truncated.write_bytes(truncated.read_bytes()[:200])
    before = {path: (path.stat().st_mtime_ns, path.read_bytes()) for path in tmp_path.rglob("*") if path.is_file()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for format, paths in roots.items():
            dataset = build(format, paths)
            [dataset[i] for i in range(len(dataset))]
            dataset.to_coco()
    after = {path: (path.stat().st_mtime_ns, path.read_bytes()) for path in tmp_path.rglob("*") if path.is_file()}
    assert after == before
