"""The mesh renderer (render/mesh.py and its modules): identity, translation, the mouth opening
and the eyes closing, no fold-over under head rotation, the exact per-tile triangle lookup,
shapes and compile-once, on a synthetic face and (when ../shared is there) a real portrait."""
from __future__ import annotations

import jax
import numpy as np
import pytest
from skimage.measure import points_in_poly
from tolerance import assert_close

from render import face_mesh, mesh, piecewise, triangulation
from syncers.data import anatomy, landmark_space

S = 96                                   # synthetic tests: one compilation at this size
CONFIG = mesh.MeshConfig(chunk=4)


def _skin_image(size=S, seed=0):
    """A bright, band-limited image (skin-like, so a painted mouth is the only dark thing)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:size, 0:size] / size
    img = np.zeros((size, size, 3), np.float32) + np.float32([0.85, 0.7, 0.6])
    for c in range(3):
        for _ in range(3):
            fx, fy, ph = rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0), rng.uniform(0, 2 * np.pi)
            img[..., c] += np.cos(2 * np.pi * (fx * x + fy * y) + ph) / 40
    return np.clip(img, 0, 1)


def _closed_mean_face():
    landmarks = landmark_space.mean_face().astype(np.float32)
    landmarks[[65, 66, 67]] = landmarks[[63, 62, 61]]          # lips shut
    return landmarks


@pytest.fixture(scope="module")
def synthetic():
    """The mean face with its lips shut, on a skin-coloured image."""
    landmarks = _closed_mean_face()
    image = _skin_image()
    return image, landmarks, landmark_space.encode(landmarks), mesh.prepare(image, landmarks)


@pytest.fixture(scope="module")
def portrait(real_media):
    """happy.png cropped as ``msync generate`` crops it, with dlib's landmarks on the crop."""
    from syncers.data import face
    from syncers.data import landmarks as lmk
    image = face.load_image(real_media / "happy.png")
    crop = face.crop_around(image, lmk.detect_faces(image)[0]).image
    points = lmk.to_crop_coords(lmk.landmarks(crop, lmk.detect_faces(crop)[0]), crop.shape[0])
    return crop, points, landmark_space.encode(points), mesh.prepare(crop, points)


def _opened(kp, amount):
    """Keypoints with the lower lip and (less) the jaw moved down by ``amount`` (normalised)."""
    out = kp.copy()
    out[8, 1] += amount
    out[9, 1] += 0.6 * amount
    return out


def _blinked(kp, share):
    """Keypoints with both eyes squashed to ``share`` of their height."""
    out = kp.copy()
    for k in (2, 3):
        out[k, 2:] = (np.diag([1.0, share]) @ out[k, 2:].reshape(2, 2)).ravel()
    return out


def _rotated(kp, degrees, centre):
    th = np.deg2rad(degrees)
    rot = np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]], np.float32)
    out = kp.copy()
    out[:, :2] = (kp[:, :2] - centre) @ rot.T + centre
    out[:, 2:] = (rot @ kp[:, 2:].reshape(-1, 2, 2)).reshape(-1, 4)
    return out


def _pixels(points, size):
    return (np.asarray(points) + 1.0) / 2.0 * (size - 1)


def _dark_pixels(frame, landmarks, size):
    """Dark pixels (luminance < 0.4; skin is ~0.7) in the mouth's box (landmarks 48–67, 4 px
    margin, 12 more below for the falling lip)."""
    px = _pixels(landmarks[48:68], size)
    (x0, y0), (x1, y1) = np.floor(px.min(0)).astype(int) - 4, np.ceil(px.max(0)).astype(int) + 4
    region = frame[max(y0, 0):y1 + 12, max(x0, 0):x1]
    return int(((region @ np.float32([0.299, 0.587, 0.114])) < 0.4).sum())


def test_identity_gives_back_the_source(synthetic):
    image, _, kp, source = synthetic
    out = mesh.render(source, kp, np.repeat(kp[None], 3, axis=0), CONFIG)
    assert out.shape == (3, S, S, 3) and out.dtype == np.float32
    assert np.abs(out - image).max() < 1 / 255


def test_translation_moves_the_face(synthetic):
    image, landmarks, kp, source = synthetic
    shift = 3
    drv = kp.copy()
    drv[:, 0] += shift * 2.0 / (S - 1)
    out = mesh.render(source, kp, drv[None], CONFIG)[0]
    # inside the face (jaw and brows, shrunk towards its centre) everything moves rigidly
    outline = _pixels(landmarks[list(range(17)) + list(range(26, 16, -1))], S)
    outline = outline.mean(0) + 0.8 * (outline - outline.mean(0))
    yy, xx = np.mgrid[0:S, 0:S]
    inside = points_in_poly(np.stack([xx.ravel(), yy.ravel()], -1), outline).reshape(S, S)
    expected = np.roll(image, shift, axis=1)
    assert inside.sum() > 500
    assert np.abs(out[inside] - expected[inside]).max() < 1 / 255
    # far from the face (the crop's border) nothing moves
    assert np.abs(out[:, :2] - image[:, :2]).max() < 1 / 255


def test_opening_the_lips_darkens_the_mouth_monotonically(synthetic):
    image, landmarks, kp, source = synthetic
    amounts = [0.0, 0.03, 0.06, 0.09, 0.12]
    out = mesh.render(source, kp, np.stack([_opened(kp, a) for a in amounts]), CONFIG)
    dark = [_dark_pixels(f, landmarks, S) for f in out]
    assert dark[0] == 0
    assert all(b > a for a, b in zip(dark, dark[1:])), dark
    assert np.all(np.isfinite(out)) and out.min() >= 0.0 and out.max() <= 1.0


def test_no_triangle_folds_under_head_rotation(synthetic):
    _, _, kp, source = synthetic
    centre = kp[:, :2].mean(axis=0)
    drv = np.stack([_rotated(kp, d, centre) for d in range(-20, 21, 5)])
    vertices = mesh.clamped_vertices(source, kp, drv, CONFIG)
    tri, keep = np.asarray(source.triangles), np.asarray(source.clampable)
    before = triangulation.signed_areas(np.asarray(source.vertices), tri)
    after = triangulation.signed_areas(vertices, tri)
    assert np.all(before[keep] > 0)
    assert np.all(after[:, keep] > 0)


def test_clamping_stops_a_fold(synthetic):
    """A lower lip driven up through the nose would fold the mesh; clamped, nothing folds."""
    _, _, kp, source = synthetic
    drv = kp.copy()
    drv[8, 1] -= 0.5
    tri, keep = np.asarray(source.triangles), np.asarray(source.clampable)
    targets = np.asarray(jax.jit(mesh._targets, static_argnums=3)(source, kp, drv[None], CONFIG)[0])
    assert np.any(triangulation.signed_areas(targets, tri)[:, keep] <= 0)     # would fold
    vertices = mesh.clamped_vertices(source, kp, drv[None], CONFIG)
    assert np.all(triangulation.signed_areas(vertices, tri)[:, keep] > 0)
    out = mesh.render(source, kp, drv[None], CONFIG)
    assert np.all(np.isfinite(out)) and out.min() >= 0.0 and out.max() <= 1.0


def test_tile_lookup_matches_a_brute_force_lookup(synthetic):
    """Every pixel's source position equals the one from testing it against every triangle."""
    _, _, kp, source = synthetic
    drv = _rotated(_opened(kp, 0.08), 8.0, kp[:, :2].mean(axis=0))
    points = mesh.clamped_vertices(source, kp, drv[None], CONFIG)
    tile = mesh.tile_size(CONFIG, S)
    load = int(jax.jit(piecewise.tile_load, static_argnums=(2, 3))(
        source.triangles, points, S, tile)[0])
    assert CONFIG.candidates < load <= CONFIG.busy_candidates   # the busy tiles' pass runs
    lookup = jax.jit(piecewise.source_coords, static_argnums=(3, 4, 5, 6, 7))
    sx, sy = (np.asarray(a) for a in lookup(
        source.vertices, source.triangles, points[0], S, tile, CONFIG.candidates,
        CONFIG.busy_tiles, CONFIG.busy_candidates))
    tri = np.asarray(source.triangles)
    src = np.asarray(source.vertices, np.float64)[tri]                          # [T, 3, 2]
    a, b, c = (points[0][tri[:, i]].astype(np.float64) for i in range(3))
    c0 = (S - 1) / 2
    yy, xx = np.mgrid[0:S, 0:S] - c0
    p = np.stack([xx.ravel(), yy.ravel()], -1)[:, None]                         # [P, 1, 2]
    cross = lambda u, v: u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]
    area = cross(b - a, c - a)
    lam = np.stack([cross(b - p, c - p), cross(c - p, a - p), cross(a - p, b - p)], -1) \
        / area[None, :, None]                                                  # [P, T, 3]
    lam[:, np.abs(area) <= 0.05] = -1e9
    best = lam.min(-1).argmax(-1)
    want = np.einsum("pv,pvk->pk", lam[np.arange(len(p)), best], src[best]).reshape(S, S, 2)
    assert_close(np.stack([sx, sy], -1), want, rel=1e-4, scale=S)


def test_lips_and_eyes_are_outlined_in_the_mesh():
    """A closed mouth (inner lips on one line) still gets its outlines as mesh edges."""
    built = face_mesh.build(_closed_mean_face(), ring_points=16, ring_margin=0.3,
                            forehead_height=0.35,
                            border_points=3)
    edges = {tuple(sorted(e)) for t in built.triangles for e in ((t[0], t[1]), (t[1], t[2]),
                                                                  (t[0], t[2]))}
    assert all(tuple(sorted(e)) in edges for e in face_mesh.REQUIRED_EDGES)
    assert np.all(triangulation.signed_areas(built.points, built.triangles) > 0)
    # the interior is the only unclamped part, and it is exactly the inner lip's triangles
    inner = built.triangles[~built.clampable]
    assert len(inner) == 6 and np.all(np.isin(inner, anatomy.INNER_LIPS))


def test_required_edge_is_inserted_by_flips():
    points = np.array([[0, 0], [4, 0], [2, 1], [2, -1], [-1, 3], [5, 3], [-1, -3], [5, -3]],
                      float)
    plain = triangulation.triangulate(points)
    has = lambda t, e: any(set(e) <= set(row) for row in t.tolist())
    assert not has(plain, (0, 1))                # Delaunay joins 2-3 across the segment 0-1
    assert has(triangulation.triangulate(points, [(0, 1)]), (0, 1))


def test_chunks_pad_the_last_one_and_compile_once(synthetic):
    _, _, kp, source = synthetic
    drv = np.stack([_opened(kp, a) for a in np.linspace(0, 0.1, 6)])
    sizes = [c.shape[0] for c in mesh.render_chunks(source, kp, drv, CONFIG)]
    assert sizes == [4, 2]
    before = mesh._render_chunk._cache_size()
    whole = mesh.render(source, kp, drv, CONFIG)
    single = np.concatenate([mesh.render(source, kp, d[None], CONFIG) for d in drv])
    assert_close(whole, single, rel=1e-5, scale=1.0)
    assert mesh._render_chunk._cache_size() == before


def test_bad_shapes_are_clear_errors(synthetic):
    image, landmarks, kp, source = synthetic
    with pytest.raises(ValueError, match=r"source_image must be \[S, S, 3\]"):
        mesh.prepare(image[:, :80], landmarks)
    with pytest.raises(ValueError, match=r"S >= 64"):
        mesh.prepare(image[:32, :32], landmarks)
    with pytest.raises(ValueError, match=r"source_landmarks must be \[68, 2\]"):
        mesh.prepare(image, landmarks[:60])
    with pytest.raises(ValueError, match=r"kp_source must be \[10, 6\]"):
        mesh.render(source, kp[:, :2], kp[None])
    with pytest.raises(ValueError, match=r"kp_driving must be \[T, 10, 6\]"):
        mesh.render(source, kp, kp)
    with pytest.raises(ValueError, match="finite"):
        mesh.render(source, kp, np.full((1, 10, 6), np.nan, np.float32))


def test_real_portrait_talks_and_blinks(portrait):
    crop, points, kp, source = portrait
    size = crop.shape[0]
    cfg = mesh.MeshConfig(chunk=8)
    drv = [kp] + [_opened(kp, a) for a in (0.03, 0.06, 0.09, 0.12)] + [_blinked(kp, 0.1)]
    drv += [kp] * (8 - len(drv))
    out = mesh.render(source, kp, np.stack(drv), cfg)
    mouth = ~points_in_poly(np.stack(np.meshgrid(np.arange(size), np.arange(size)), -1)
                            .reshape(-1, 2), _pixels(points[60:68], size)).reshape(size, size)
    assert np.abs(out[0] - crop)[mouth].max() < 1 / 255          # identity, mouth aside
    dark = [_dark_pixels(f, points, size) for f in out[:5]]
    assert all(b > a for a, b in zip(dark, dark[1:])), dark
    # a blink covers the dark iris and lashes with the lid's skin
    for eye in (range(36, 42), range(42, 48)):
        px = _pixels(points[list(eye)], size)
        inside = points_in_poly(np.stack(np.meshgrid(np.arange(size), np.arange(size)), -1)
                                .reshape(-1, 2), px).reshape(size, size)
        def dark(frame, inside=inside):
            return np.mean(frame[inside] @ np.float32([0.299, 0.587, 0.114]) < 0.15)
        assert dark(out[0]) > 0.3 and dark(out[5]) < 0.65 * dark(out[0])
    assert np.all(np.isfinite(out)) and out.min() >= 0.0 and out.max() <= 1.0


def test_a_blink_leaves_the_brow_where_it_is(portrait):
    """Brows lowered towards the eyes (a frown, as generators make), then the eyes shut: the
    skin stretched over a shutting eye stops below the brow, so the brow's pixels stay as they
    were in the same frame with the eyes open (the whole lid's reach dragged the brow's hairs
    down over the eye: a mean change of 0.06-0.10 there, against under 0.035 now)."""
    from render import interior
    crop, points, kp, source = portrait
    size = crop.shape[0]
    gap = points[list(interior.EYES[0][1]), 1].mean() - points[17:22, 1].mean()
    frown = kp.copy()
    frown[0:2, 1] += 0.35 * gap
    out = mesh.render(source, kp, np.stack([frown, _blinked(frown, 0.05)]),
                      mesh.MeshConfig(chunk=2))
    driven = _pixels(mesh.driving_landmarks(source, kp, frown[None])[0], size)
    change = np.abs(out[1] - out[0]).max(-1)
    for (corners, upper, _), brow in zip(interior.EYES, interior.BROW_OF_EYE):
        brow_px, lid_y = driven[list(brow)], driven[list(upper), 1].mean()
        width = np.linalg.norm(driven[corners[0]] - driven[corners[1]])
        brow_y = brow_px[:, 1].mean()
        assert interior.LID_REACH * width > lid_y - brow_y        # within the old reach
        rows = slice(int(round(brow_y - 0.2 * (lid_y - brow_y))),
                     int(round(brow_y + 0.2 * (lid_y - brow_y))) + 1)
        cols = slice(int(brow_px[:, 0].min()), int(brow_px[:, 0].max()))
        assert change[rows, cols].mean() < 0.045, change[rows, cols].mean()


def test_mouth_activity_follows_speech_driven_lips(portrait, real_media):
    """End to end: lips opened by a speech envelope give a high mouth-activity r."""
    from bench.mouth_activity import activity_r
    from syncers.data import features, measures

    crop, _, kp, source = portrait
    samples = features.load_audio(real_media / "chinese_poem1.wav")[:16000 * 4]
    envelope = measures.frame_rms(samples, 100)
    opening = 0.12 * envelope / envelope.max()
    frames = mesh.render(source, kp, np.stack([_opened(kp, a) for a in opening]),
                         mesh.MeshConfig(chunk=8))
    result = activity_r((frames * 255 + 0.5).astype(np.uint8), samples)
    assert result["r"] > 0.8 and result["lag"] == 0


def test_the_mouth_is_never_painted_outside_the_outer_lips():
    """Twisted inner lips (a bad generated frame) cannot paint a cavity over the cheek."""
    import jax.numpy as jnp

    from render import interior
    square = jnp.array([[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]])
    xy = jnp.stack(jnp.meshgrid(jnp.arange(-5.0, 15.0), jnp.arange(-5.0, 15.0), indexing="xy"),
                   -1)
    inside = np.asarray(interior._inside_polygon(xy, square))
    assert inside.sum() == 100 and inside[5 + 5, 5 + 5] == 1 and inside[0, 0] == 0


def test_twisted_lips_paint_no_nan():
    """A generated frame whose inner lips twist (the upper ones bunched at one corner, the
    lower curve far above the upper) gives finite pixels: the lip shadow outside the lips once
    overflowed to inf, and inf × 0 left NaN (black) pixels in the mouth window."""
    import jax.numpy as jnp

    from render import interior
    size = 256
    scale = (size - 1) / 2.0
    source = landmark_space.mean_face().astype(np.float32) * scale
    driven = source.copy()
    driven[60:68] = [[-11.8, 31.7], [8.6, 31.0], [13.9, 31.0], [18.0, 31.8], [19.4, 29.4],
                     [14.3, 36.0], [8.6, 35.8], [3.0, 35.6]]          # seen in a real rollout
    image = jnp.asarray(_skin_image(size))
    colours = interior.sample_colours(np.asarray(image), source / scale)
    windows = interior.windows(source / scale, size)
    frame = interior._blend_window(
        image, jnp.asarray(driven[60:68].mean(axis=0)), windows.mouth,
        lambda xy, patch, origin: interior._mouth(xy, jnp.asarray(driven), jnp.asarray(source),
                                                  colours, image))
    assert np.all(np.isfinite(np.asarray(frame)))


# The widest inner-lip opening of the real corpus is 0.75 of the mouth's inner width
# (python -m bench.blink_rate); on the mean face a lower-lip keypoint 0.27 down opens it that far.
WIDEST_OPENING = 0.27


def _sweep(kp):
    """Jaw openings up to the widest real one, at head rolls −25°…25°: ``[44, 10, 6]``."""
    centre = kp[:, :2].mean(axis=0)
    return np.stack([_rotated(_opened(kp, a), d, centre)
                     for a in np.linspace(0.0, WIDEST_OPENING, 4) for d in range(-25, 26, 5)])


def _assert_no_fold_or_crack(source, kp, drv, config):
    folds = mesh.fold_measure(source, kp, drv, config)
    assert folds.min_jacobian.shape == (drv.shape[0],)
    assert np.all(folds.folded == 0), folds.folded
    assert np.all(folds.uncovered == 0), folds.uncovered
    assert folds.min_jacobian.min() >= config.lip_min_area_ratio * (1 - 1e-3), \
        folds.min_jacobian
    floor = np.asarray(mesh._floor(source.triangles, config))
    points = mesh.clamped_vertices(source, kp, drv, config)
    tri, keep = np.asarray(source.triangles), np.asarray(source.clampable)
    ratio = triangulation.signed_areas(points, tri) / triangulation.signed_areas(
        np.asarray(source.vertices), tri)
    assert np.all(ratio[:, keep] >= floor[keep] * (1 - 1e-3))
    assert np.all(folds.ok())


def test_jaw_and_rotation_sweep_neither_folds_nor_cracks(synthetic):
    _, _, kp, source = synthetic
    _assert_no_fold_or_crack(source, kp, _sweep(kp), CONFIG)


def test_fold_measure_sees_an_unclamped_fold(synthetic):
    """With the clamp's floor below zero, a lower lip driven up through the nose folds: the
    measure reports reversed triangles and a negative Jacobian."""
    _, _, kp, source = synthetic
    drv = kp.copy()
    drv[8, 1] -= 0.5
    loose = mesh.MeshConfig(chunk=4, min_area_ratio=-10.0)
    folds = mesh.fold_measure(source, kp, drv[None], loose)
    assert folds.folded[0] > 0 and folds.min_jacobian[0] < 0 and not folds.ok()[0]
    identity = mesh.fold_measure(source, kp, kp[None], CONFIG)
    assert_close(identity.min_jacobian, np.ones(1), rel=1e-4)
    assert identity.ok()[0]


@pytest.mark.parametrize("name", ["happy.png", "people_0.png", "art_0.png"])
def test_real_photos_sweep_neither_folds_nor_cracks(real_media, name):
    from syncers.data import face
    from syncers.data import landmarks as lmk
    image = face.load_image(real_media / name)
    crop = face.crop(image, size=256, margin=0.4)
    points = lmk.to_crop_coords(lmk.landmarks(crop.image, lmk.detect_faces(crop.image)[0]),
                                crop.image.shape[0])
    kp = landmark_space.encode(points)
    source = mesh.prepare(crop.image, points)
    _assert_no_fold_or_crack(source, kp, _sweep(kp), mesh.MeshConfig(chunk=4))


def test_a_stored_render_program_draws_the_frames_of_the_plain_one(synthetic, monkeypatch,
                                                                   tmp_path):
    from syncers.run import compile_cache
    _, _, kp, source = synthetic
    drv = np.stack([_opened(kp, a) for a in np.linspace(0, 0.1, CONFIG.chunk)])
    plain = np.asarray(mesh.chunk_renderer(source, kp, CONFIG)(drv))
    monkeypatch.setattr(compile_cache, "_enabled", [tmp_path])
    monkeypatch.setattr(compile_cache, "_traced", {})
    exported = np.asarray(mesh.chunk_renderer(source, kp, CONFIG)(drv))
    assert len(list((tmp_path / "traced").glob("mesh-*.jaxexport"))) == 1
    monkeypatch.setattr(compile_cache, "_traced", {})          # a later run loads it
    loaded = np.asarray(mesh.chunk_renderer(source, kp, CONFIG)(drv))
    assert_close(exported, plain, rel=1e-5, scale=1.0)
    np.testing.assert_array_equal(loaded, exported)


def _open_mouth_face():
    """The mean face with its lips parted on its teeth: inside the inner lips the upper 70 % of
    the opening is white (teeth), the rest red."""
    landmarks = landmark_space.mean_face().astype(np.float32)
    landmarks[[65, 66, 67]] = landmarks[[63, 62, 61]] + np.float32([0.0, 0.16])
    image = _skin_image()
    px = _pixels(landmarks, S)
    yy, xx = np.mgrid[0:S, 0:S]
    inner = points_in_poly(np.stack([xx.ravel(), yy.ravel()], -1), px[60:68]).reshape(S, S)
    top, bottom = px[61:64, 1].mean(), px[65:68, 1].mean()
    teeth = inner & ((yy - top) / (bottom - top) < 0.7)
    image[inner] = [0.6, 0.3, 0.3]
    image[teeth] = [0.97, 0.96, 0.94]
    return image, landmarks


def _mouth_box(frame, landmarks):
    px = _pixels(landmarks[48:68], S)
    (x0, y0), (x1, y1) = np.floor(px.min(0)).astype(int) - 2, np.ceil(px.max(0)).astype(int) + 8
    return frame[y0:y1, x0:x1]


def test_an_open_mouths_teeth_keep_their_size_as_it_opens():
    """A photo whose mouth is open on its teeth: at its own pose the interior is the photo's;
    opened wider, the teeth stay as tall (they hang from the upper lip, not stretched) and a
    dark cavity opens below them."""
    image, landmarks = _open_mouth_face()
    source = mesh.prepare(image, landmarks)
    kp = landmark_space.encode(landmarks)
    out = mesh.render(source, kp, np.stack([kp, _opened(kp, 0.05), _opened(kp, 0.1)]), CONFIG)
    assert np.abs(out[0] - image).max() < 2 / 255
    white = [int(np.all(_mouth_box(f, landmarks) > 0.9, axis=-1).sum()) for f in out]
    dark = [int(((_mouth_box(f, landmarks) @ np.float32([0.299, 0.587, 0.114])) < 0.25).sum())
            for f in out]
    assert white[0] > 20
    assert all(abs(w - white[0]) <= 0.2 * white[0] for w in white[1:]), white
    assert dark[0] == 0 and dark[1] > 0 and dark[2] > dark[1], dark
