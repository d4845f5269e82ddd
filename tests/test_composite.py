"""Putting the animated crop back into the photo (render/composite.py): the photo's pixels
outside the blend region, its even size, a crop of the photo itself giving the photo back, a
box leaving the photo, and a weight without steps (no seam)."""
from __future__ import annotations

import numpy as np
import pytest

from render import composite


def _photo(height=121, width=160, seed=0):
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    base = np.stack([0.5 + 0.3 * np.sin(3 * x + c) * np.cos(2 * y - c) for c in range(3)], -1)
    return np.clip(base + rng.normal(0, 0.01, base.shape), 0, 1).astype(np.float32)


def _cut(photo, box, size):
    """The box of the photo resized to ``size`` (nearest-pixel box average stands in for the
    face crop's resize: the test only needs the photo's content in the crop)."""
    x0, y0, x1, y1 = box
    from jax.image import resize
    patch = np.pad(photo, ((max(0, -y0), max(0, y1 - photo.shape[0])),
                           (max(0, -x0), max(0, x1 - photo.shape[1])), (0, 0)), mode="edge")
    patch = patch[y0 + max(0, -y0):y1 + max(0, -y0), x0 + max(0, -x0):x1 + max(0, -x0)]
    return np.asarray(resize(patch, (size, size, 3), "linear"))


def test_outside_the_blend_region_the_output_is_the_photo():
    photo = _photo()
    box = (30, 10, 110, 90)
    frames = np.random.default_rng(1).random((3, 64, 64, 3)).astype(np.float32)
    out = composite.paste(photo, frames, box)
    assert out.shape == (3, 120, 160, 3)                    # 121 rows cut to an even 120
    weight = np.zeros(photo.shape[:2], np.float32)
    weight[10:90, 30:110] = composite.blend_weight(80)
    outside = weight[:120] == 0
    assert outside.sum() > 0.6 * outside.size
    np.testing.assert_array_equal(out[:, outside], np.broadcast_to(photo[:120][outside],
                                                                   out[:, outside].shape))
    inside = weight[:120] == 1
    assert inside.sum() > 0.3 * 80 * 80
    assert np.abs(out[:, inside] - photo[:120][inside]).mean() > 0.1     # the frames show there


def test_the_photos_own_crop_gives_the_photo_back():
    photo = _photo()
    box = (30, 10, 110, 90)
    crop = _cut(photo, box, 160)                            # rendered finer than the box
    out = composite.paste(photo, crop[None], box)[0]
    assert np.abs(out - photo[:120]).max() < 0.05


def test_a_box_leaving_the_photo_is_pasted_where_it_overlaps():
    photo = _photo(100, 100)
    box = (-20, 40, 60, 120)
    frames = np.full((1, 80, 80, 3), 0.25, np.float32)
    out = composite.paste(photo, frames, box)[0]
    assert out.shape == (100, 100, 3)
    assert np.allclose(out[80, 20], 0.25)                   # deep inside the box
    np.testing.assert_array_equal(out[:38], photo[:38])     # above it


def test_the_blend_weight_has_no_step():
    w = composite.blend_weight(200)
    assert w.min() == 0.0 and w.max() == 1.0
    # a smoothstep over FEATHER of the side: its steepest step is 1.5 / (FEATHER · side)
    steepest = 1.5 / (composite.FEATHER * 200)
    assert max(np.abs(np.diff(w, axis=0)).max(), np.abs(np.diff(w, axis=1)).max()) \
        <= steepest * 1.01
    np.testing.assert_array_equal(w, w.T)
    np.testing.assert_array_equal(w, w[::-1])


def test_bad_shapes_are_clear_errors():
    photo = _photo()
    with pytest.raises(ValueError, match="box must be a square"):
        composite.paste(photo, np.zeros((1, 8, 8, 3)), (0, 0, 10, 12))
    with pytest.raises(ValueError, match=r"frames must be \[T, S, S, 3\]"):
        composite.paste(photo, np.zeros((8, 8, 3)), (0, 0, 10, 10))
