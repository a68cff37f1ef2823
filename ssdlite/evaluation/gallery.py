"""Static HTML image galleries: thumbnails with boxes drawn over them, a legend and filters, in one page that opens
from the disk (no server, no network).

Two pages are built on it: the dataset preview of ``ssdlite-check-dataset --gallery`` (the ground truth of a
sample of images per class, each class in its colour, so wrong labels are found by eye) and the evaluation's error
gallery (ground truth and detections coloured by what went wrong).

:func:`write_gallery` writes ``OUT.html`` and its thumbnails into ``OUT_files/`` beside it (``0001.jpg``, ...,
by position; the folder is replaced on every write, so no thumbnail of an earlier page stays). Each box is an SVG
rectangle over its thumbnail in the source image's pixel coordinates (the SVG's ``viewBox`` is the source size),
so boxes need no rescaling; its colour and the kind filter come from the box's ``kind``, the class filter from its
``class_name``. The filters can be set from the URL hash (``OUT.html#kind=missed,background&class=dog``), so a
filtered view can be linked. Once set up, the page sets ``document.body.dataset.ready = "1"`` and
``dataset.shown`` (the number of images shown); a JavaScript error is recorded in ``dataset.errors``.
"""

from __future__ import annotations

import html
import logging
import os
import re
import shutil
import string
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from urllib.parse import quote

import cv2

from ssdlite_runtime.image_io import ImageReadError, read_image
from ssdlite_runtime.visualize import class_color

__all__ = ["GalleryBox", "GalleryImage", "class_kinds", "write_gallery"]

logger = logging.getLogger(__name__)

PAGE_FILE = "gallery.html"
"""The page's template, package data of ``ssdlite.evaluation`` (pyproject.toml puts it in the wheel)."""
JPEG_QUALITY = 85
_THUMBNAIL_NAME = re.compile(r"\d{4,}\.jpg")
# A CSS colour we put into style and SVG attributes: #rgb[a] / #rrggbb[aa], a name, or rgb()/hsl() of numbers.
_CSS_COLOUR = re.compile(r"#(?:[0-9a-fA-F]{3,4}|[0-9a-fA-F]{6}|[0-9a-fA-F]{8})|[a-zA-Z]+"
                         r"|(?:rgba?|hsla?)\([0-9.,%\s/]+\)")
# Sizes of the drawing, in pixels of the thumbnail as shown (the SVG scales them with the image).
_STROKE, _DASH, _FONT, _HALO = 2.0, (6.0, 4.0), 12.0, 3.0


@dataclass(frozen=True)
class GalleryBox:
    """One box drawn over an image.

    Attributes:
        xyxy: (x1, y1, x2, y2) in the source image's pixels.
        kind: a key of the ``kinds`` legend given to :func:`write_gallery`: decides the colour and the kind filter.
        class_name: decides the class filter.
        text: short label drawn at the box's top-left, e.g. "dog 0.87"; "" draws none.
        dashed: drawn dashed, e.g. ground truth beside solid detections.
    """

    xyxy: tuple[float, float, float, float]
    kind: str
    class_name: str
    text: str = ""
    dashed: bool = False


@dataclass
class GalleryImage:
    """One image of the gallery: the source file, its boxes, and the caption shown under it."""

    image_path: Path
    boxes: list[GalleryBox]
    caption: str = ""


@dataclass(frozen=True)
class _Thumbnail:
    """A thumbnail written for a source image: its file name and both sizes, (height, width) in pixels."""

    name: str
    source_size: tuple[int, int]
    size: tuple[int, int]


def class_kinds(class_names: Sequence[str]) -> dict[str, str]:
    """Kinds for a gallery that colours boxes by class: class name -> CSS colour, the colour ``ssdlite-detect``
    draws the class in (``ssdlite_runtime.visualize.class_color`` of label i + 1: distinct hues for any number of
    classes)."""
    return {name: "#{:02x}{:02x}{:02x}".format(*class_color(label)) for label, name in enumerate(class_names, 1)}


def write_gallery(path: str | Path, images: Sequence[GalleryImage], *, title: str, kinds: Mapping[str, str],
                  intro: str = "", max_side: int = 640) -> Path:
    """Writes a static HTML gallery of ``images`` with their boxes, a legend and class / kind filters.

    Args:
        path: the .html file to write; its thumbnails go to ``<stem>_files/`` beside it, replaced on every write.
        images: shown in this order (the error gallery puts the images with most errors first).
        title: the page's title and heading.
        kinds: kind -> CSS colour, in legend order; every box's ``kind`` must be one of them.
        intro: a paragraph under the title ("" for none).
        max_side: the longest side of a thumbnail, pixels (smaller images are not enlarged).

    Returns:
        ``path``. An image that cannot be read is listed by name as "could not be read" (and logged), not fatal.

    Raises:
        ValueError: a box whose kind is not in ``kinds``, a colour that is not a plain CSS colour, or
            ``max_side`` < 1.
    """
    _check_kinds(kinds, images)
    if max_side < 1:
        raise ValueError(f"max_side must be at least 1 pixel, got {max_side}")
    path = Path(path)
    folder = path.with_name(f"{path.stem}_files")
    _replace_folder(folder)
    thumbnails = _write_thumbnails([image.image_path for image in images], folder, max_side)
    cards = [_card(image, thumbnail, folder.name, kinds) for image, thumbnail in zip(images, thumbnails)]
    path.write_text(_page(images, cards, title=title, intro=intro, kinds=kinds), encoding="utf-8")
    return path


def _check_kinds(kinds: Mapping[str, str], images: Sequence[GalleryImage]) -> None:
    """Every colour a plain CSS colour (it goes into style attributes) and every box's kind in the legend."""
    for kind, colour in kinds.items():
        if not isinstance(colour, str) or not _CSS_COLOUR.fullmatch(colour.strip()):
            raise ValueError(f"kind {kind!r} has colour {colour!r}, not a CSS colour; use e.g. '#e6194b', 'red' or "
                             "'rgb(230, 25, 75)'")
    for image in images:
        for box in image.boxes:
            if box.kind not in kinds:
                raise ValueError(f"a box of {image.image_path} has kind {box.kind!r}, which is not in the kinds "
                                 f"legend {list(kinds)}; add it to kinds (kind -> colour)")


def _replace_folder(folder: Path) -> None:
    """An empty ``folder``: the thumbnails of an earlier write are removed, so none of them outlives its page. A
    folder holding anything else is left alone (FileExistsError): it is not ours to delete."""
    if folder.is_dir() and not folder.is_symlink():
        strangers = sorted(path.name for path in folder.iterdir()
                           if not (path.is_file() and _THUMBNAIL_NAME.fullmatch(path.name)))
        if strangers:
            raise FileExistsError(f"{folder} holds files that are not gallery thumbnails ({', '.join(strangers[:3])}"
                                  f"{', ...' if len(strangers) > 3 else ''}); the gallery replaces that folder, so "
                                  "give the page another name or move the folder")
        shutil.rmtree(folder)
    elif folder.exists() or folder.is_symlink():
        raise FileExistsError(f"{folder} exists and is not a folder; the gallery writes its thumbnails there, so "
                              "give the page another name or move it")
    folder.mkdir(parents=True)


def _write_thumbnails(sources: Sequence[Path], folder: Path, max_side: int) -> list[_Thumbnail | None]:
    """Writes ``0001.jpg``, ... for the sources in order (None where a source cannot be read); threads, since
    OpenCV decodes and encodes without the GIL."""
    names = [f"{number:04d}.jpg" for number in range(1, len(sources) + 1)]
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return list(pool.map(lambda source, name: _write_thumbnail(source, folder / name, max_side), sources, names))


def _write_thumbnail(source: Path, target: Path, max_side: int) -> _Thumbnail | None:
    """Writes ``source`` as a JPEG whose longest side is at most ``max_side``; None (and a warning) when the source
    cannot be read or OpenCV cannot encode the thumbnail."""
    try:
        image = read_image(source)
    except ImageReadError as error:
        logger.warning("gallery: %s could not be read (%s); listed without its picture", source, error.reason)
        return None
    height, width = image.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        logger.warning("gallery: OpenCV could not encode a thumbnail of %s; listed without its picture", source)
        return None
    target.write_bytes(encoded.tobytes())
    return _Thumbnail(target.name, (height, width), image.shape[:2])


def _page(images: Sequence[GalleryImage], cards: list[str], *, title: str, intro: str,
          kinds: Mapping[str, str]) -> str:
    """The whole page: the template of :data:`PAGE_FILE` with the header, the filters and the cards filled in."""
    template = resources.files("ssdlite.evaluation").joinpath(PAGE_FILE).read_text(encoding="utf-8")
    totals = Counter(box.kind for image in images for box in image.boxes)
    class_names = sorted({box.class_name for image in images for box in image.boxes})
    return string.Template(template).substitute(
        title=_escape(title),
        intro=f"<p>{_escape(intro)}</p>" if intro else "",
        class_options="".join(f'<option value="{_escape(name)}">{_escape(name)}</option>' for name in class_names),
        kind_options="\n".join(_kind_option(kind, colour, totals[kind]) for kind, colour in kinds.items()),
        num_images=str(len(images)),
        cards="\n".join(cards),
    )


def _kind_option(kind: str, colour: str, count: int) -> str:
    """The legend entry of a kind, which is also its filter: checkbox, colour swatch, name, total boxes."""
    return (f'<label><input type="checkbox" value="{_escape(kind)}" checked>{_swatch(colour)}{_escape(kind)} '
            f'<span class="count">{count}</span></label>')


def _card(image: GalleryImage, thumbnail: _Thumbnail | None, folder_name: str, kinds: Mapping[str, str]) -> str:
    """One image: its thumbnail with the boxes over it (or "could not be read"), its caption and per-kind counts."""
    if thumbnail is None:
        picture = (f'<div class="unreadable">{_escape(image.image_path.name)}: could not be read</div>'
                   f'<svg hidden>{"".join(_box_group(box, kinds[box.kind], 1.0) for box in image.boxes)}</svg>')
    else:
        picture = _picture(image, thumbnail, folder_name, kinds)
    counts = Counter(box.kind for box in image.boxes)
    items = "".join(f"<li>{_swatch(kinds[kind])}{_escape(kind)} {counts[kind]}</li>" for kind in kinds if counts[kind])
    caption = f"<div>{_escape(image.caption)}</div>" if image.caption else ""
    return (f'<figure class="card" title="{_escape(str(image.image_path))}">{picture}'
            f'<figcaption>{caption}<ul class="counts">{items}</ul></figcaption></figure>')


def _picture(image: GalleryImage, thumbnail: _Thumbnail, folder_name: str, kinds: Mapping[str, str]) -> str:
    """The thumbnail and, over it, an SVG in the source's pixel coordinates holding the boxes."""
    (source_height, source_width), (height, width) = thumbnail.source_size, thumbnail.size
    unit = max(source_height, source_width) / max(height, width)  # one thumbnail pixel, in source pixels
    boxes = "".join(_box_group(box, kinds[box.kind], unit) for box in image.boxes)
    source = f"{quote(folder_name)}/{thumbnail.name}"
    return (f'<div class="frame"><img src="{_escape(source)}" width="{width}" height="{height}" '
            f'alt="{_escape(image.image_path.name)}" loading="lazy">'
            f'<svg viewBox="0 0 {source_width} {source_height}" preserveAspectRatio="none">{boxes}</svg></div>')


def _box_group(box: GalleryBox, colour: str, unit: float) -> str:
    """A box's rectangle and label; ``unit`` (source pixels per thumbnail pixel) keeps strokes and text the same
    size on every image."""
    x1, y1, x2, y2 = (float(value) for value in box.xyxy)
    dash = f' stroke-dasharray="{_number(_DASH[0] * unit)} {_number(_DASH[1] * unit)}"' if box.dashed else ""
    parts = [f'<g class="box" data-kind="{_escape(box.kind)}" data-class="{_escape(box.class_name)}">',
             f'<rect x="{_number(x1)}" y="{_number(y1)}" width="{_number(x2 - x1)}" height="{_number(y2 - y1)}" '
             f'fill="none" stroke="{_escape(colour)}" stroke-width="{_number(_STROKE * unit)}"{dash}/>']
    if box.text:
        font = _FONT * unit
        baseline = y1 - 0.3 * font if y1 >= 1.1 * font else y1 + font  # above the box, or inside at the image's top
        parts.append(f'<text x="{_number(x1)}" y="{_number(baseline)}" fill="{_escape(colour)}" '
                     f'font-size="{_number(font)}" stroke-width="{_number(_HALO * unit)}">{_escape(box.text)}</text>')
    return "".join(parts) + "</g>"


def _swatch(colour: str) -> str:
    return f'<span class="swatch" style="background: {_escape(colour)}"></span>'


def _number(value: float) -> str:
    """A coordinate as SVG text: at most two decimals, no trailing zeros (12.5, 40)."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _escape(text: str) -> str:
    return html.escape(str(text), quote=True)
