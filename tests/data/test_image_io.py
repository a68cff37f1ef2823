"""read_image: every supported format and pixel layout ends as uint8 HxWx3 RGB; bad files name themselves."""

from __future__ import annotations

import io
import pickle

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from ssdlite.data.image_io import read_image_size
from ssdlite_runtime.image_io import ImageReadError, list_images, read_image

EXIF_ORIENTATION = 0x0112


@pytest.fixture
def rgb():
    """A 30x40 RGB picture with four distinct quadrants (so any rotation or channel swap shows)."""
    image = np.zeros((30, 40, 3), dtype=np.uint8)
    image[:15, :20] = (255, 0, 0)
    image[:15, 20:] = (0, 255, 0)
    image[15:, :20] = (0, 0, 255)
    image[15:, 20:] = (250, 250, 30)
    return image


@pytest.mark.parametrize("suffix, save_kwargs", [(".png", {}), (".bmp", {}), (".webp", {"lossless": True})])
def test_lossless_formats_read_exactly(tmp_path, rgb, suffix, save_kwargs):
    path = tmp_path / f"image{suffix}"
    Image.fromarray(rgb).save(path, **save_kwargs)
    image = read_image(path)
    assert image.dtype == np.uint8 and image.shape == (30, 40, 3) and image.flags.c_contiguous
    np.testing.assert_array_equal(image, rgb)


def test_jpeg_reads_as_rgb_not_bgr(tmp_path, rgb):
    path = tmp_path / "image.jpg"
    Image.fromarray(rgb).save(path, quality=95, subsampling=0)
    image = read_image(path)
    assert image.shape == (30, 40, 3)
    assert np.abs(image.astype(int) - rgb).mean() < 4
    assert image[5, 5].argmax() == 0 and image[25, 5].argmax() == 2  # red stays red, blue stays blue


def test_grayscale_becomes_three_equal_channels(tmp_path):
    gray = np.arange(24 * 32, dtype=np.uint8).reshape(24, 32)
    path = tmp_path / "gray.png"
    Image.fromarray(gray, mode="L").save(path)
    image = read_image(path)
    assert image.shape == (24, 32, 3)
    for channel in range(3):
        np.testing.assert_array_equal(image[..., channel], gray)


def test_rgba_drops_alpha(tmp_path, rgb):
    alpha = np.zeros((30, 40), dtype=np.uint8)
    alpha[:, :10] = 255  # mostly transparent: the colour must survive anyway
    path = tmp_path / "rgba.png"
    Image.fromarray(np.dstack([rgb, alpha]), mode="RGBA").save(path)
    np.testing.assert_array_equal(read_image(path), rgb)


def test_16_bit_grayscale_png_is_scaled_not_clipped(tmp_path):
    values = np.linspace(0, 65535, 20 * 30).astype(np.uint16).reshape(20, 30)
    path = tmp_path / "depth16.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I;16")
    image = read_image(path)
    assert image.dtype == np.uint8 and image.shape == (20, 30, 3)
    np.testing.assert_array_equal(image[..., 0], (values >> 8).astype(np.uint8))
    assert image.max() == 255 and image.min() == 0


def test_16_bit_colour_png_keeps_channel_order(tmp_path):
    rgb16 = np.zeros((10, 12, 3), dtype=np.uint16)
    rgb16[..., 0] = 65535  # pure red at 16 bit
    rgb16[:, 6:, 2] = 32768
    path = tmp_path / "colour16.png"
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb16, cv2.COLOR_RGB2BGR))
    image = read_image(path)
    np.testing.assert_array_equal(image, (rgb16 >> 8).astype(np.uint8))


def _jpeg_with_orientation(path, image: np.ndarray, orientation: int):
    pil = Image.fromarray(image)
    exif = pil.getexif()
    exif[EXIF_ORIENTATION] = orientation
    pil.save(path, quality=95, subsampling=0, exif=exif.tobytes())  # 4:4:4, sharp edges
    return path


def test_exif_orientation_6_rotates_shape_and_pixels(tmp_path, rgb):
    path = _jpeg_with_orientation(tmp_path / "rotated.jpg", rgb, orientation=6)
    image = read_image(path)
    # Orientation 6: the stored picture must be turned 90 degrees clockwise to be displayed.
    assert image.shape == (40, 30, 3)
    expected = np.rot90(rgb, k=-1)
    assert np.abs(image.astype(int) - expected).mean() < 4
    assert image[2, 27].argmax() == 0  # the red top-left quadrant is now top-right
    oracle = np.asarray(ImageOps.exif_transpose(Image.open(path)).convert("RGB"))
    assert np.abs(image.astype(int) - oracle).max() <= 3
    assert read_image_size(path) == (40, 30)


def test_exif_orientation_1_changes_nothing(tmp_path, rgb):
    path = _jpeg_with_orientation(tmp_path / "upright.jpg", rgb, orientation=1)
    assert read_image(path).shape == (30, 40, 3)
    assert read_image_size(path) == (30, 40)


@pytest.mark.parametrize("keep_fraction", [0.5, 0.9, None])
def test_truncated_jpeg_raises_naming_the_file(tmp_path, rgb, keep_fraction):
    buffer = io.BytesIO()
    Image.fromarray(np.tile(rgb, (4, 4, 1))).save(buffer, format="JPEG", quality=90)
    data = buffer.getvalue()
    cut = data[:-2] if keep_fraction is None else data[: int(len(data) * keep_fraction)]  # None: only EOI lost
    path = tmp_path / "truncated.jpg"
    path.write_bytes(cut)
    with pytest.raises(ImageReadError, match="truncated") as caught:
        read_image(path)
    assert str(path) in str(caught.value) and caught.value.path == str(path)
    assert isinstance(caught.value, OSError)


def test_jpeg_with_bytes_after_the_end_marker_still_reads(tmp_path, rgb):
    path = tmp_path / "trailer.jpg"
    Image.fromarray(rgb).save(path, quality=95, subsampling=0)
    path.write_bytes(path.read_bytes() + b"\x00" * 64)
    assert read_image(path).shape == (30, 40, 3)


@pytest.mark.parametrize(
    "content, reason", [(None, "not found"), (b"", "empty"), (b"this is not an image at all" * 10, "corrupt")]
)
def test_missing_empty_and_garbage_files(tmp_path, content, reason):
    path = tmp_path / "broken.jpg"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageReadError, match=reason) as caught:
        read_image(path)
    assert str(path) in str(caught.value)


def test_corrupt_png_body_raises(tmp_path, rgb):
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[60:-20] = bytes(len(data) - 80)  # keep the signature and header, zero the compressed data
    path = tmp_path / "corrupt.png"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageReadError):
        read_image(path)


def test_error_survives_pickling_for_dataloader_workers(tmp_path):
    error = ImageReadError(tmp_path / "x.jpg", "truncated JPEG")
    restored = pickle.loads(pickle.dumps(error))
    assert restored.path == error.path and str(restored) == str(error)


def test_non_ascii_path(tmp_path, rgb):
    path = tmp_path / "été 写真.png"
    Image.fromarray(rgb).save(path)
    np.testing.assert_array_equal(read_image(path), rgb)


def test_read_image_size_errors_and_listing(tmp_path, rgb):
    with pytest.raises(ImageReadError, match="not found"):
        read_image_size(tmp_path / "missing.png")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "fake.jpg").write_text("not an image")
    with pytest.raises(ImageReadError, match="header"):
        read_image_size(tmp_path / "fake.jpg")
    Image.fromarray(rgb).save(tmp_path / "b.PNG")
    assert [path.name for path in list_images(tmp_path)] == ["b.PNG", "fake.jpg"]
    with pytest.raises(FileNotFoundError):
        list_images(tmp_path / "nowhere")
