"""The weight-free warp renderer: identity, translation, chunking, and jaw motion on real faces."""
from __future__ import annotations

import numpy as np
import pytest

from render import warp
from syncers.data.phantom.template import fit_to_box

H = W = 64


def _smooth_image(h=H, w=W, seed=0):
    """Band-limited random image: bilinear sampling of it is accurate, unlike white noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    img = np.zeros((h, w, 3), np.float32)
    for c in range(3):
        for _ in range(4):
            fx, fy, ph = rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0), rng.uniform(0, 2 * np.pi)
            img[..., c] += np.cos(2 * np.pi * (fx * x + fy * y) + ph) / 8
    return np.clip(img + 0.5, 0, 1)


def _template():
    return fit_to_box((-0.5, -0.5, 0.5, 0.5))


def test_identity_keypoints_reproduce_source():
    src = _smooth_image()
    kp = _template()
    out = warp.render(src, kp, np.repeat(kp[None], 3, axis=0))
    assert out.shape == (3, H, W, 3) and out.dtype == np.float32
    assert np.abs(out - src).max() < 1e-3


def test_identity_holds_for_any_jacobian():
    src = _smooth_image(seed=1)
    kp = _template()
    kp[:, 2:] = [1.3, 0.2, -0.1, 0.8]     # same (non-trivial) local frame in source and driving
    out = warp.render(src, kp, kp[None])
    assert np.abs(out[0] - src).max() < 1e-3


def test_translating_all_keypoints_translates_the_image():
    src = _smooth_image(seed=2)
    kp = _template()
    shift_px = 5
    drv = kp.copy()
    drv[:, 0] += shift_px * 2.0 / (W - 1)           # x: pixel step is 2/(W−1) in normalised units
    cfg = warp.WarpConfig(background_weight=0.0)    # keypoints only: the whole image moves
    out = warp.render(src, kp, drv[None], cfg)[0]
    np.testing.assert_allclose(out[:, shift_px:], src[:, :-shift_px], atol=1e-3)


def test_chunking_matches_single_call_and_pads_the_last_chunk():
    src = _smooth_image(seed=3)
    kp = _template()
    rng = np.random.default_rng(0)
    drv = kp[None] + rng.normal(0, 0.02, (10, 10, 6)).astype(np.float32) * [1, 1, 0, 0, 0, 0]
    sizes = [c.shape[0] for c in warp.render_chunks(src, kp, drv, warp.WarpConfig(chunk=4))]
    assert sizes == [4, 4, 2]
    a = warp.render(src, kp, drv, warp.WarpConfig(chunk=4))
    b = warp.render(src, kp, drv, warp.WarpConfig(chunk=16))
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_bad_shapes_are_clear_errors():
    src, kp = _smooth_image(), _template()
    with pytest.raises(ValueError, match=r"source must be \[H, W, 3\]"):
        warp.render(src[..., :2], kp, kp[None])
    with pytest.raises(ValueError, match=r"kp_source must be \[K, 6\]"):
        warp.render(src, kp[:, :2], kp[None])
    with pytest.raises(ValueError, match=r"kp_driving must be \[B, K, 6\]"):
        warp.render(src, kp, kp)


@pytest.mark.parametrize("name", ["happy.png", "people_0.png", "art_0.png"])
def test_jaw_motion_moves_the_mouth_not_the_upper_face(real_media, name):
    from syncers.data import face

    crop = face.crop(face.load_image(real_media / name))
    kp = fit_to_box(crop.face_box)
    fps, seconds = 25, 4
    t = np.arange(fps * seconds) / fps
    opening = 0.06 * (1 - np.cos(2 * np.pi * 2.0 * t)) / 2       # 2 Hz, 0..0.06 normalised
    drv = np.repeat(kp[None], len(t), axis=0)
    drv[:, 8, 1] += opening                                      # lower lip
    drv[:, 9, 1] += opening                                      # chin
    frames = warp.render(crop.image, kp, drv)
    assert frames.shape == (len(t), 256, 256, 3)

    def region(x0, x1, y0, y1):  # normalised box → pixel slices
        px = lambda v: int(round((v + 1) / 2 * 255))
        return slice(px(y0), px(y1) + 1), slice(px(x0), px(x1) + 1)

    diff = np.abs(frames - crop.image[None]).mean(axis=-1)       # [T, 256, 256]
    mouth = region(kp[5, 0], kp[6, 0], kp[7, 1], kp[9, 1] + 0.1)
    upper = region(kp[0, 0] - 0.1, kp[1, 0] + 0.1, kp[0, 1] - 0.1, kp[2, 1] + 0.05)
    mouth_change = diff[:, mouth[0], mouth[1]].mean(axis=(1, 2))
    upper_change = diff[:, upper[0], upper[1]].mean(axis=(1, 2))
    r = np.corrcoef(mouth_change, opening)[0, 1]
    print(f"{name}: r={r:.3f} mouth max={mouth_change.max():.4f} "
          f"upper max={upper_change.max():.5f}")
    assert r > 0.8
    assert mouth_change.max() > 0.01
    assert upper_change.max() < 0.005


def test_any_video_length_compiles_once():
    src, kp = _smooth_image(seed=4), _template()
    cfg = warp.WarpConfig(chunk=8)
    warp.render(src, kp, np.repeat(kp[None], 3, axis=0), cfg)
    before = warp._render_chunk._cache_size()
    for n in (5, 8, 19):
        assert warp.render(src, kp, np.repeat(kp[None], n, axis=0), cfg).shape[0] == n
    assert warp._render_chunk._cache_size() == before


def test_render_library_imports_only_the_ground_floor_of_msync():
    """The renderers load nothing of motion, and of syncers only the error type, the layout,
    the compilation cache (standard library only: the mesh keeps its traced program there)
    and (for the mesh renderer) the landmark space and its anatomy (docs/design.md, "Layout"):
    no JAX model of either stage comes with them."""
    import subprocess
    import sys
    code = ("import sys, render.warp, render.mesh; "
            "allowed = {'syncers', 'syncers.run', 'syncers.run.errors', "
            "'syncers.run.compile_cache', 'syncers.data', "
            "'syncers.data.layout', 'syncers.data.landmark_space', 'syncers.data.anatomy'}; "
            "bad = [m for m in sys.modules if m.split('.')[0] in ('syncers', 'motion') "
            "and m not in allowed]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
