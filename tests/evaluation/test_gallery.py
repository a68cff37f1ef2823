"""write_gallery: the page and its thumbnails, boxes in source pixels, escaping, bad input, and the page's filters
in headless Chromium (the URL hash sets them; the page reports what it shows in body's data attributes)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from ssdlite.evaluation.gallery import GalleryBox, GalleryImage, class_kinds, write_gallery
from tests.browser import chromium, needs_chromium, page_elements

KINDS = {"correct": "#00c000", "missed": "#ff00ff"}
IMAGE_COLOUR = (60, 60, 110)  # RGB of the test images: found in a screenshot by it
SIZE = (120, 160)  # (height, width) of the test images


def write_image(path: Path, size: tuple[int, int] = SIZE) -> Path:
    image = np.empty((*size, 3), np.uint8)
    image[:] = IMAGE_COLOUR[::-1]  # OpenCV writes BGR
    assert cv2.imwrite(str(path), image)
    return path


@pytest.fixture
def images(tmp_path) -> list[GalleryImage]:
    """Three images: two boxes (a correct dog, a missed cat drawn dashed), one correct cat, none."""
    folder = tmp_path / "source"
    folder.mkdir()
    return [
        GalleryImage(write_image(folder / "one.jpg"), [
            GalleryBox((40, 30, 120, 90), "correct", "dog", "dog 0.87"),
            GalleryBox((8.5, 8, 30, 60.25), "missed", "cat", "cat", dashed=True),
        ], caption="one.jpg: 1 missed"),
        GalleryImage(write_image(folder / "two.png"), [GalleryBox((0, 0, 160, 120), "correct", "cat")]),
        GalleryImage(write_image(folder / "three.jpg"), [], caption="no boxes"),
    ]


def boxes_of(page: str) -> list[dict]:
    """Each drawn box: its group's attributes and its rectangle's, in page order."""
    elements = page_elements(page)
    return [{**group, **rect} for group, rect in zip(elements, elements[1:])
            if group.get("class") == "box" and rect["tag"] == "rect"]


def test_page_and_thumbnails_with_boxes_in_source_pixels(images, tmp_path):
    page_path = write_gallery(tmp_path / "errors.html", images, title="Errors", kinds=KINDS,
                              intro="Most errors first.", max_side=80)
    assert page_path == tmp_path / "errors.html"
    assert sorted(path.name for path in (tmp_path / "errors_files").iterdir()) == ["0001.jpg", "0002.jpg", "0003.jpg"]
    thumbnail = cv2.imread(str(tmp_path / "errors_files" / "0001.jpg"))
    assert thumbnail.shape == (60, 80, 3)  # longest side 80, aspect kept
    assert np.abs(thumbnail.astype(int) - IMAGE_COLOUR[::-1]).max() <= 3

    page = page_path.read_text(encoding="utf-8")
    assert [img["src"] for img in page_elements(page, "img")] == [f"errors_files/000{n}.jpg" for n in (1, 2, 3)]
    assert {svg["viewbox"] for svg in page_elements(page, "svg")} == {"0 0 160 120"}  # the source's pixels
    drawn = boxes_of(page)
    assert [(box["data-kind"], box["data-class"], box["x"], box["y"], box["width"], box["height"]) for box in drawn] \
        == [("correct", "dog", "40", "30", "80", "60"), ("missed", "cat", "8.5", "8", "21.5", "52.25"),
            ("correct", "cat", "0", "0", "160", "120")]
    assert [box["stroke"] for box in drawn] == ["#00c000", "#ff00ff", "#00c000"]
    assert ["stroke-dasharray" in box for box in drawn] == [False, True, False]
    assert ">dog 0.87</text>" in page and ">cat</text>" in page and "one.jpg: 1 missed" in page
    legend = re.findall(r'value="(\w+)" checked>.*?<span class="count">(\d+)</span>', page)
    assert legend == [("correct", "2"), ("missed", "1")]
    assert [option["value"] for option in page_elements(page, "option")] == ["", "cat", "dog"]
    assert "<script src" not in page and "http" not in page  # opens from the disk, no network


def test_small_images_are_not_enlarged(tmp_path):
    source = write_image(tmp_path / "small.png", (20, 30))
    write_gallery(tmp_path / "page.html", [GalleryImage(source, [])], title="t", kinds=KINDS, max_side=640)
    assert cv2.imread(str(tmp_path / "page_files" / "0001.jpg")).shape == (20, 30, 3)


def test_text_is_escaped(tmp_path):
    name = '<b>&"x"'
    source = write_image(tmp_path / "a&b <c>.jpg")
    kinds = {name: "red"}
    page_path = write_gallery(tmp_path / "page.html", [GalleryImage(source, [GalleryBox((1, 2, 3, 4), name, name, name)],
                                                                    caption=f"{name} <script>alert(1)</script>")],
                              title=f"title {name}", kinds=kinds, intro=f"intro {name}")
    page = page_path.read_text(encoding="utf-8")
    assert name not in page and "<script>alert" not in page and "<c>" not in page
    assert "&lt;b&gt;&amp;&quot;x&quot;" in page
    [box] = boxes_of(page)
    assert box["data-class"] == name and box["data-kind"] == name  # what the page's script compares
    assert [option["value"] for option in page_elements(page, "option")] == ["", name]
    assert page_elements(page, "figure")[0]["title"] == str(source)


def test_a_box_of_an_unknown_kind_or_a_bad_colour_is_a_value_error(images, tmp_path):
    images[1].boxes.append(GalleryBox((1, 1, 5, 5), "duplicate", "cat"))
    with pytest.raises(ValueError, match=r"kind 'duplicate'.*not in the kinds legend \['correct', 'missed'\]"):
        write_gallery(tmp_path / "page.html", images, title="t", kinds=KINDS)
    with pytest.raises(ValueError, match=r"kind 'missed' has colour 'red; x: url\(evil\)', not a CSS colour"):
        write_gallery(tmp_path / "page.html", images[:1], title="t", kinds={**KINDS, "missed": "red; x: url(evil)"})
    assert not (tmp_path / "page.html").exists()


def test_an_unreadable_image_is_listed_not_fatal(images, tmp_path, caplog):
    images[1].image_path.write_bytes(b"not an image")
    with caplog.at_level(logging.WARNING, logger="ssdlite.evaluation.gallery"):
        page_path = write_gallery(tmp_path / "page.html", images, title="t", kinds=KINDS)
    page = page_path.read_text(encoding="utf-8")
    assert "two.png: could not be read" in page
    assert sorted(path.name for path in (tmp_path / "page_files").iterdir()) == ["0001.jpg", "0003.jpg"]
    assert [record.getMessage() for record in caplog.records if "two.png" in record.getMessage()]
    assert [box["data-class"] for box in boxes_of(page)] == ["dog", "cat", "cat"]  # its box still filters


def test_rewriting_removes_stale_thumbnails(images, tmp_path):
    write_gallery(tmp_path / "page.html", images, title="t", kinds=KINDS)
    write_gallery(tmp_path / "page.html", images[2:], title="t", kinds=KINDS)
    assert [path.name for path in (tmp_path / "page_files").iterdir()] == ["0001.jpg"]
    assert len(page_elements((tmp_path / "page.html").read_text(encoding="utf-8"), "figure")) == 1


def test_a_thumbnail_folder_holding_other_files_is_left_alone(images, tmp_path):
    folder = tmp_path / "page_files"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"page_files holds files that are not gallery thumbnails \(notes.txt\)"):
        write_gallery(tmp_path / "page.html", images, title="t", kinds=KINDS)
    assert (folder / "notes.txt").read_text() == "mine"


def test_class_kinds_are_distinct_css_colours():
    kinds = class_kinds([f"class {index}" for index in range(80)])
    assert len(set(kinds.values())) == 80 and all(re.fullmatch(r"#[0-9a-f]{6}", colour) for colour in kinds.values())


# ------------------------------------------------------------------------------------------------ in Chromium


def shown_with(images: list[GalleryImage], kinds: set[str], class_name: str | None) -> int:
    """How many images the page must show: those with a box of one of ``kinds`` and of ``class_name`` (None: any)."""
    return sum(any(box.kind in kinds and class_name in (None, box.class_name) for box in image.boxes)
               for image in images)


def edges(lines: np.ndarray) -> list[int]:
    """The positions of the runs of True in ``lines``, each rounded to the even pixel it centres on (a 2-pixel
    stroke centred on x = 40 covers pixels 39 and 40)."""
    indices = np.nonzero(lines)[0]
    runs = np.split(indices, np.nonzero(np.diff(indices) > 1)[0] + 1) if len(indices) else []
    return [round((run.min() + run.max() + 1) / 2) for run in runs]


@pytest.mark.slow  # starts Chromium
@needs_chromium
def test_page_draws_the_boxes_in_chromium(images, tmp_path):
    page_path = write_gallery(tmp_path / "page.html", images, title="t", kinds=KINDS)
    screenshot = tmp_path / "page.png"
    shot = chromium(f"--screenshot={screenshot}", "--virtual-time-budget=2000", page_path.as_uri(),
                    user_data_dir=tmp_path / "profile")
    assert screenshot.is_file(), f"no screenshot: {shot.stderr[-2000:]}"
    page = cv2.cvtColor(cv2.imread(str(screenshot)), cv2.COLOR_BGR2RGB).astype(np.int16)
    # The first image, found by its colour (each image shows at its size, 160x120: no thumbnail was shrunk).
    rows, columns = np.nonzero(np.abs(page - IMAGE_COLOUR).max(axis=-1) <= 12)
    top, left = rows.min(), columns.min()
    first = page[top : top + SIZE[0], left : left + SIZE[1]]
    green = np.abs(first - (0, 192, 0)).max(axis=-1) <= 40
    assert green.sum() > 200, "no green box on the first image"
    # The dog's rectangle, (40, 30)-(120, 90) in source pixels: its edges are the only long green lines.
    assert edges(green.sum(axis=0) >= 50) == [40, 120]
    assert edges(green.sum(axis=1) >= 70) == [30, 90]
    magenta = np.abs(first - (255, 0, 255)).max(axis=-1) <= 40
    assert magenta[8:61, 7:31].sum() > 50 and magenta[70:, 40:].sum() == 0  # the dashed cat, only there


@pytest.mark.slow  # starts Chromium
@needs_chromium
@pytest.mark.parametrize(("fragment", "kinds", "class_name"), [
    ("", set(KINDS), None),
    ("#kind=missed&class=cat", {"missed"}, "cat"),
    ("#kind=correct,missed&class=cat", {"correct", "missed"}, "cat"),
])
def test_page_filters_from_the_url_hash_in_chromium(images, tmp_path, fragment, kinds, class_name):
    page_path = write_gallery(tmp_path / "page.html", images, title="t", kinds=KINDS)
    dom = chromium("--dump-dom", page_path.as_uri() + fragment, user_data_dir=tmp_path / "profile").stdout
    [body] = page_elements(dom, "body")
    assert body.get("data-ready") == "1" and "data-errors" not in body, dom[-3000:]
    expected = len(images) if not fragment else shown_with(images, kinds, class_name)
    assert int(body["data-shown"]) == expected
    visible = [box for box in page_elements(dom, "g") if "none" not in (box.get("style") or "")]
    assert all(box["data-kind"] in kinds and class_name in (None, box["data-class"]) for box in visible)
