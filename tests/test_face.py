"""Source images: loading odd formats, bad files, and the face crop on real portraits."""
from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from syncers.data import face
from syncers.run.errors import InputError


def _gradient(h=48, w=64):
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x / (w - 1), y / (h - 1), np.full((h, w), 0.5)], -1)


def test_rgb_png_round_trips(tmp_path):
    rgb = (_gradient() * 255).round().astype(np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    img = face.load_image(tmp_path / "a.png")
    assert img.shape == (48, 64, 3) and img.dtype == np.float32
    np.testing.assert_allclose(img, rgb / 255.0, atol=1e-6)


def test_rgba_is_composited_over_white(tmp_path):
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., 0] = 255                       # red ...
    rgba[:16, :, 3] = 255                    # ... opaque on top, transparent below
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    img = face.load_image(tmp_path / "a.png")
    np.testing.assert_allclose(img[0, 0], [1, 0, 0], atol=1e-6)
    np.testing.assert_allclose(img[-1, 0], [1, 1, 1], atol=1e-6)


def test_16bit_grayscale_is_scaled(tmp_path):
    gray = (np.linspace(0, 65535, 32 * 32).reshape(32, 32)).astype(np.uint16)
    Image.fromarray(gray).save(tmp_path / "a.png")
    assert Image.open(tmp_path / "a.png").mode.startswith("I")
    img = face.load_image(tmp_path / "a.png")
    assert img.shape == (32, 32, 3)
    np.testing.assert_allclose(img[..., 0], gray / 65535.0, atol=1e-6)
    np.testing.assert_array_equal(img[..., 0], img[..., 2])


def test_grayscale_is_expanded(tmp_path):
    Image.fromarray(np.full((20, 30), 128, np.uint8), "L").save(tmp_path / "a.png")
    img = face.load_image(tmp_path / "a.png")
    assert img.shape == (20, 30, 3)
    np.testing.assert_allclose(img, 128 / 255, atol=1e-6)


def test_cmyk_is_converted(tmp_path):
    rgb = Image.fromarray((_gradient() * 255).astype(np.uint8))
    rgb.convert("CMYK").save(tmp_path / "a.tiff")
    img = face.load_image(tmp_path / "a.tiff")
    assert img.shape == (48, 64, 3)
    np.testing.assert_allclose(img, np.asarray(rgb) / 255.0, atol=0.02)


@pytest.mark.parametrize("size", [(1, 1), (8, 100)])
def test_tiny_image_is_an_input_error(tmp_path, size):
    Image.new("RGB", size).save(tmp_path / "tiny.png")
    with pytest.raises(InputError, match="tiny.png.*pixels"):
        face.load_image(tmp_path / "tiny.png")


def _png_header_only(path, width, height):
    """A PNG whose header claims ``width`` x ``height`` (its pixel data is never reached)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" +
                     chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) +
                     chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("width, height", [(10000, 6000), (20000, 20000)])
def test_an_image_over_the_pixel_limit_is_refused_before_decoding(tmp_path, recwarn, width,
                                                                   height):
    """60 MP (under PIL's own 89 MP warning) and 400 MP (over its 179 MP error) alike: one
    line saying msync's limit, no PIL warning."""
    _png_header_only(tmp_path / "big.png", width, height)
    with pytest.raises(InputError, match="more than the 50,000,000 pixels msync reads") as err:
        face.load_image(tmp_path / "big.png")
    assert str(err.value).startswith(f"{tmp_path / 'big.png'}: image is ")
    assert not [w for w in recwarn if issubclass(w.category, Image.DecompressionBombWarning)]


def test_text_file_named_png_is_an_input_error(tmp_path):
    (tmp_path / "notes.png").write_text("not an image at all\n")
    with pytest.raises(InputError, match="notes.png: not a readable image"):
        face.load_image(tmp_path / "notes.png")


def test_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="missing.png: no such image file"):
        face.load_image(tmp_path / "missing.png")


def test_no_face_suggests_no_crop():
    with pytest.raises(InputError, match="no frontal face found.*--no-crop"):
        face.crop(np.full((200, 300, 3), 0.5, np.float32), path="flat.png")


def test_no_crop_is_the_centre_square():
    img = np.zeros((100, 300, 3), np.float32)
    img[:, 100:200] = 1.0                     # the centre square is white, the sides black
    c = face.no_crop(img, size=64)
    assert c.image.shape == (64, 64, 3) and c.box == (100, 0, 200, 100)
    assert c.face_box == face.DEFAULT_FACE_BOX
    assert c.image.min() > 0.99


def test_crop_pads_by_edge_replication_outside_the_image():
    img = np.zeros((100, 100, 3), np.float32)
    img[:, :50] = 1.0
    c = face.crop_around(img, (0, 20, 60, 80), size=64, margin=0.5)   # box runs off the left
    assert c.box[0] < 0
    assert c.image[:, 0].min() > 0.99         # left border replicated (white), not black


@pytest.mark.parametrize("name", ["happy.png", "people_0.png", "art_0.png"])
def test_crop_finds_the_face_on_real_portraits(real_media, name):
    img = face.load_image(real_media / name)
    h, w = img.shape[:2]
    x0, y0, x1, y1 = face.detect_faces(img)[0]
    side = x1 - x0
    print(f"{name}: image {w}x{h} face ({x0:.0f}, {y0:.0f}, {x1:.0f}, {y1:.0f})")
    assert 0.25 * min(h, w) < side < 0.9 * min(h, w)             # a portrait's face, sensibly sized
    assert 0.3 * w < (x0 + x1) / 2 < 0.7 * w and 0.2 * h < (y0 + y1) / 2 < 0.7 * h
    c = face.crop(img)
    assert c.image.shape == (256, 256, 3) and c.image.dtype == np.float32
    bx0, by0, bx1, by1 = c.box
    assert bx1 - bx0 == by1 - by0 and bx0 <= x0 and by0 <= y0 and bx1 >= x1 and by1 >= y1
    fx0, fy0, fx1, fy1 = c.face_box
    assert -0.8 < fx0 < -0.5 and 0.5 < fx1 < 0.8 and -0.8 < fy0 < -0.5 and 0.5 < fy1 < 0.8


def test_crop_frames_equals_crop_around_per_frame():
    rng = np.random.default_rng(4)
    frames = (rng.random((3, 90, 120, 3)) * 255).astype(np.uint8)
    # the second box leaves the frame
    for face_box in [(30.0, 20.0, 70.0, 60.0), (-5.0, 50.0, 40.0, 95.0)]:
        crops = face.crop_frames(frames, face_box, size=64)
        assert crops.shape == (3, 64, 64, 3) and crops.dtype == np.float32
        for frame, crop in zip(frames, crops):
            one = face.crop_around(frame.astype(np.float32) / 255.0, face_box, size=64)
            np.testing.assert_allclose(crop, one.image, atol=1e-6)


def test_8bit_images_read_as_float32_exactly_as_float64_division_rounds(tmp_path):
    # the float32 path saves a 6000x4000 photo ~0.9 GB; its values must not move
    values = np.arange(256, dtype=np.uint8)
    rgb = np.stack([values, values[::-1], values], -1).reshape(16, 16, 3)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    img = face.load_image(tmp_path / "a.png")
    assert img.dtype == np.float32
    np.testing.assert_array_equal(img, (rgb.astype(np.float64) / 255.0).astype(np.float32))
