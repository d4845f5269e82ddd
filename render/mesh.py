"""Weight-free mesh renderer driven by landmarks-v1 keypoints (docs/design.md, "Renderer",
"Mesh renderer").

The source crop is covered by a triangle mesh (``render/face_mesh.py``): its 68 landmarks, a few
forehead points, a ring around the face and fixed points on the crop border, triangulated once
per source. Per frame the landmarks move by the relative first-order model of their keypoint
group ``k`` (``landmark_space.GROUP_OF``)

    l_drv = p_drv,k + J_drv,k J_src,k⁻¹ (l_src − p_src,k),

the forehead by the head's similarity (least squares on the brows, nose and eye corners), the
ring by ``ring_follow`` of it, and the border not at all. A triangle that would fold over is
clamped (``_clamp``). Every output pixel is then warped back into the source by its driven
triangle's affine map and sampled bilinearly (``render/piecewise.py``), and what the source
cannot show — the inside of an opening mouth, a lid closing over the eye — is painted
(``render/interior.py``). Everything per frame is one jitted function per image size, batched
over ``chunk`` frames.

    source = prepare(crop [S, S, 3], landmarks [68, 2])
    frames = render(source, kp_source [10, 6], kp_driving [T, 10, 6])    # [T, S, S, 3]
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Iterator

import flax
import jax
import jax.numpy as jnp
import numpy as np

from render import chunked, face_mesh, interior, piecewise
from syncers.data import anatomy, landmark_space
from syncers.run import compile_cache

N_LANDMARKS = landmark_space.N_LANDMARKS
MIN_SIZE = 64
# A mouth-interior triangle of at least this twice-area (pixels²) in the source (a photo's
# open mouth) is clamped like the face's: a closing mouth must not turn its teeth over.
# Smaller ones (a closed mouth's slivers) show nothing and are painted over as it opens.
MIN_AREA_PX = 1.0
# Points of the head's similarity: brows, nose and eye corners (not the lids, which blink).
HEAD_POINTS = np.concatenate([anatomy.BROWS, anatomy.NOSE, anatomy.EYE_CORNERS])
# Share of its group's first-order deformation each landmark takes beyond the head's rigid
# motion: all, but for the jaw's upper ends, which hinge near the ears. (One affine map for
# the whole jaw cannot bend it: a dropping chin stretches the group and lifts its ends
# towards the eyes, folding the thin triangles there.)
DEFORMS = np.ones(N_LANDMARKS, np.float32)
DEFORMS[[0, 1, 2, 3, 13, 14, 15, 16]] = [0.2, 0.45, 0.7, 0.9, 0.9, 0.7, 0.45, 0.2]


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Hyper-parameters of the mesh renderer; hashable, so it is a static jit argument."""

    ring_points: int = 16          # points of the ring around the face
    ring_margin: float = 0.3       # ring beyond the face hull, share of the hull's mean radius
    ring_follow: float = 0.8       # share of the head's motion the ring takes (border: none)
    forehead_height: float = 0.35  # forehead points above the brows, share of brow-to-chin
    border_points: int = 3         # points on each crop side between its corners
    min_area_ratio: float = 0.3    # a clamped triangle keeps this share of its source area,
    lip_min_area_ratio: float = 0.02   # ... one between lip landmarks this (corners squeeze)
    clamp_steps: int = 4           # rounds of limiting the motion of folding triangles
    tile: int = 8                  # side of the lookup tiles at 256², pixels (∝ size)
    candidates: int = 8            # triangles every tile tests
    busy_tiles: int = 32           # tiles that test more (at most 13 at 256² on real motion)
    busy_candidates: int = 32      # triangles those test (at most 27 overlap a tile there)
    chunk: int = 16                # driving frames per jitted call; the last chunk is padded


@flax.struct.dataclass
class MeshSource:
    """A source crop prepared for rendering (``prepare``); coordinates in centred pixels
    (``render/piecewise.py``) unless said otherwise.

    image ``[S, S, 3]``; table ``[S·S, 12]`` (``piecewise.neighbour_table``); landmarks
    ``[68, 2]`` in normalised crop coordinates as the mesh uses them (lips and lids uncrossed);
    vertices ``[N, 2]`` (landmarks, forehead, ring, border in this order); kind ``[N]``
    (``face_mesh.LANDMARK`` …); triangles ``[T, 3]`` int32; clampable ``[T]`` (all but a closed
    mouth's interior slivers, ``MIN_AREA_PX``); the colours and window sizes of the interior
    painting.
    """

    image: jnp.ndarray
    table: jnp.ndarray
    landmarks: jnp.ndarray
    vertices: jnp.ndarray
    kind: jnp.ndarray
    triangles: jnp.ndarray
    clampable: jnp.ndarray
    colours: interior.Colours
    windows: interior.Windows = flax.struct.field(pytree_node=False)

    @property
    def size(self) -> int:
        return int(self.image.shape[0])


def tile_size(config: MeshConfig, size: int) -> int:
    """The lookup's tile side for ``size``-pixel frames: ``config.tile`` at 256, in proportion
    elsewhere (the face's triangles shrink with the crop; a tile keeps about as many), ≥ 2."""
    return max(2, round(config.tile * size / 256))


def _check_landmarks(landmarks) -> np.ndarray:
    landmarks = np.asarray(landmarks, np.float64)
    if landmarks.shape != (N_LANDMARKS, 2):
        raise ValueError(f"source_landmarks must be [68, 2]; got {tuple(landmarks.shape)}")
    if not np.all(np.isfinite(landmarks)):
        raise ValueError("source_landmarks must be finite")
    return landmarks


def _check_image(image) -> np.ndarray:
    image = np.asarray(image, np.float32)
    if image.ndim != 3 or image.shape[-1] != 3 or image.shape[0] != image.shape[1] \
            or image.shape[0] < MIN_SIZE:
        raise ValueError(f"source_image must be [S, S, 3] with S >= {MIN_SIZE}; "
                         f"got {tuple(image.shape)}")
    return image


def prepare(source_image, source_landmarks, config: MeshConfig = MeshConfig()) -> MeshSource:
    """Build the mesh of ``source_image [S, S, 3]`` (float in [0, 1], S >= 64) whose 68
    landmarks ``source_landmarks [68, 2]`` are in normalised crop coordinates
    (``syncers.data.landmarks.to_crop_coords``)."""
    image = _check_image(source_image)
    size = image.shape[0]
    built = face_mesh.build(_check_landmarks(source_landmarks), ring_points=config.ring_points,
                            ring_margin=config.ring_margin,
                            forehead_height=config.forehead_height,
                            border_points=config.border_points)
    landmarks = built.points[:N_LANDMARKS].astype(np.float32)
    return MeshSource(
        image=jnp.asarray(image), table=piecewise.neighbour_table(jnp.asarray(image)),
        landmarks=jnp.asarray(landmarks),
        vertices=jnp.asarray((built.points * ((size - 1) / 2.0)).astype(np.float32)),
        kind=jnp.asarray(built.kind), triangles=jnp.asarray(built.triangles),
        clampable=jnp.asarray(built.clampable
                              | (_source_areas_px(built, size) >= MIN_AREA_PX)),
        colours=interior.sample_colours(image, landmarks),
        windows=interior.windows(landmarks, size))


def _source_areas_px(built: face_mesh.FaceMesh, size: int) -> np.ndarray:
    """Twice the source areas ``[T]`` of a built mesh's triangles, in pixels² of a
    ``size``-pixel crop."""
    return np.asarray(piecewise.areas(built.points * ((size - 1) / 2.0), built.triangles))


def _driven(landmarks, kp_source, kp_driving):
    """Relative first-order motion of ``landmarks [68, 2]`` from ``kp_source [10, 6]`` to each
    ``kp_driving [B, 10, 6]`` → ``[B, 68, 2]`` (normalised coordinates)."""
    j11, j12, j21, j22 = (kp_source[:, i] for i in range(2, 6))
    inv_s = jnp.stack([j22, -j12, -j21, j11], -1).reshape(-1, 2, 2) \
        / (j11 * j22 - j12 * j21)[:, None, None]          # closed form: compiles faster than inv
    jac_d = kp_driving[..., 2:].reshape(kp_driving.shape[:-1] + (2, 2))
    a = jac_d @ inv_s                                                          # [B, 10, 2, 2]
    group = jnp.asarray(landmark_space.GROUP_OF)
    offset = landmarks - kp_source[group, :2]                                  # [68, 2]
    return kp_driving[:, group, :2] + jnp.einsum("blij,lj->bli", a[:, group], offset)


def _similarity(source, driving):
    """The least-squares similarity ``source [P, 2]`` → ``driving [B, P, 2]`` as a function of
    points ``[N, 2]`` → ``[B, N, 2]``."""
    cs, cd = source.mean(axis=0), driving.mean(axis=1)
    x, y = source - cs, driving - cd[:, None]
    norm = jnp.sum(x * x)
    a = jnp.sum(x[None, :, 0] * y[..., 0] + x[None, :, 1] * y[..., 1], axis=-1) / norm     # [B]
    b = jnp.sum(x[None, :, 0] * y[..., 1] - x[None, :, 1] * y[..., 0], axis=-1) / norm
    def apply(points):
        p = points - cs
        return cd[:, None] + jnp.stack([a[:, None] * p[:, 0] - b[:, None] * p[:, 1],
                                        b[:, None] * p[:, 0] + a[:, None] * p[:, 1]], -1)
    return apply


def _targets(source: MeshSource, kp_source, kp_driving, config: MeshConfig):
    """``(targets, anchors, lids)``: the driven vertices ``[B, N, 2]``; what clamping moves
    them back towards ``[B, N, 2]`` (the landmarks: the head's rigid motion; the rest: their
    source positions); and the driven landmarks' offset from the mesh's ``[B, 68, 2]``
    (non-zero at lids held open). All in centred pixels."""
    scale = (source.size - 1) / 2.0
    driven = interior.uncross(_driven(source.landmarks, kp_source, kp_driving), mouth_gap=0.0)
    held = interior.hold_eyes_open(driven, source.landmarks)
    driven, held = driven * scale, held * scale
    head = _similarity(source.vertices[HEAD_POINTS], held[:, HEAD_POINTS])
    follow = jnp.asarray([1.0, 1.0, config.ring_follow, 0.0])[source.kind][:, None]
    rigid = source.vertices + follow * (head(source.vertices) - source.vertices)
    landmarks = rigid[:, :N_LANDMARKS] + DEFORMS[:, None] * (held - rigid[:, :N_LANDMARKS])
    anchors = jnp.broadcast_to(source.vertices, rigid.shape).at[:, :N_LANDMARKS].set(
        rigid[:, :N_LANDMARKS])
    return rigid.at[:, :N_LANDMARKS].set(landmarks), anchors, driven - landmarks


def _safe_share(start, end, triangles, floor):
    """``[B, T]``: the largest share ``s ≤ 1`` of the way from ``start`` to ``end`` (vertices
    ``[B, N, 2]``) over which each triangle keeps twice its area ≥ ``floor [T]`` — the first
    root of a quadratic in ``s``; 1 for a triangle already below the floor at ``start``
    (nothing on this path helps it). Continuous in its inputs, so clamped motion does not jump."""
    corner = lambda p, i: p[..., triangles[:, i], :]
    u, v = corner(start, 1) - corner(start, 0), corner(start, 2) - corner(start, 0)
    du = corner(end, 1) - corner(end, 0) - u
    dv = corner(end, 2) - corner(end, 0) - v
    cross = lambda p, q: p[..., 0] * q[..., 1] - p[..., 1] * q[..., 0]
    c0, c1, c2 = cross(u, v) - floor, cross(u, dv) + cross(du, v), cross(du, dv)
    disc = c1 * c1 - 4.0 * c2 * c0
    root = jnp.sqrt(jnp.maximum(disc, 0.0))
    # the two roots in a cancellation-free form: q/c2 and c0/q
    q = -0.5 * (c1 + jnp.where(c1 >= 0, root, -root))
    safe = lambda num, den: jnp.where(jnp.abs(den) > 1e-12, num / jnp.where(
        jnp.abs(den) > 1e-12, den, 1.0), jnp.inf)
    roots = jnp.stack([safe(q, c2), safe(c0, q)], -1)
    roots = jnp.where((disc >= 0)[..., None] & (roots > 0), roots, jnp.inf)
    return jnp.where(c0 > 0, jnp.clip(roots.min(-1), 0.0, 1.0), 1.0)


def _floor(triangles, config: MeshConfig):
    """``[T]``: the share of its source area each triangle keeps. Lower on the lips: the
    corner groups (``landmark_space.GROUPS``) hold the outer lip beside the corners while the
    lower lip's group drops, so the corner triangles squeeze as a mouth opens, as real lip
    corners do; a higher floor there stopped the whole lower lip."""
    lips = jnp.all((triangles >= 48) & (triangles < 68), axis=-1)
    return jnp.where(lips, config.lip_min_area_ratio, config.min_area_ratio)


def _clamp(source: MeshSource, targets, anchors, config: MeshConfig):
    """Vertices ``[B, N, 2]`` with no clampable triangle below ``min_area_ratio`` of its source
    area (``lip_min_area_ratio`` between lip landmarks). Each vertex takes the share of its
    motion beyond its anchor (a landmark's
    deformation beyond the head's rigid motion, so the head still turns; a forehead or ring
    point's whole motion) that its folding triangles allow, ``clamp_steps`` times over; a frame
    still folding after that (a motion too large for the crop) takes the share of its whole
    motion that does not fold. Every share is continuous in the motion: no frame jumps."""
    base, tri = source.vertices, source.triangles
    floor = _floor(tri, config) * piecewise.areas(base, tri)                  # [T]
    ignore = ~source.clampable
    alpha = jnp.ones(targets.shape[:2], jnp.float32)
    for _ in range(config.clamp_steps):
        points = anchors + alpha[..., None] * (targets - anchors)
        share = jnp.where(ignore, 1.0, _safe_share(anchors, points, tri, floor))   # [B, T]
        per_vertex = jnp.ones_like(alpha).at[:, tri].min(
            jnp.broadcast_to(share[..., None], share.shape + (3,)))
        alpha = alpha * per_vertex
    points = anchors + alpha[..., None] * (targets - anchors)
    share = jnp.where(ignore, 1.0, _safe_share(jnp.broadcast_to(base, points.shape), points,
                                               tri, floor))
    return base + share.min(axis=-1)[:, None, None] * (points - base)


def clamped_vertices(source: MeshSource, kp_source, kp_driving,
                     config: MeshConfig = MeshConfig()) -> np.ndarray:
    """The mesh's driven vertices ``[T, N, 2]`` after clamping, in centred pixels (for tests and
    plots; ``source.triangles`` indexes them)."""
    kp_source, kp_driving = _check_keypoints(kp_source, kp_driving)
    return np.asarray(_clamped(source, jnp.asarray(kp_source), jnp.asarray(kp_driving), config))


@functools.partial(jax.jit, static_argnames=("config",))
def _clamped(source: MeshSource, kp_source, kp_driving, config: MeshConfig):
    targets, anchors, _ = _targets(source, kp_source, kp_driving, config)
    return _clamp(source, targets, anchors, config)


@dataclasses.dataclass(frozen=True)
class Folds:
    """Per-frame fold measure of the mesh warp (``fold_measure``), each ``[T]``.

    min_jacobian: the smallest Jacobian determinant of the forward warp over the face's
    triangles (all but the mouth's interior, which is painted): a triangle's driven area over
    its source area, constant on it. 1 is no change, ≤ 0 a fold; the clamp keeps it at least
    ``MeshConfig.min_area_ratio`` (``lip_min_area_ratio`` between lip landmarks), where the
    skin is squeezed into a crease.
    folded: triangles of the whole mesh (mouth included, but for slivers under a pixel in the
    source: a closed mouth's interior) whose driven orientation reverses their source one.
    uncovered: pixels that no tested triangle holds (a crack: the lookup continued the nearest
    triangle's map past its edge, so the picture jumps there).
    """

    min_jacobian: np.ndarray
    folded: np.ndarray
    uncovered: np.ndarray

    def ok(self) -> np.ndarray:
        """``[T]`` bool: neither fold nor crack."""
        return (self.min_jacobian > 0) & (self.folded == 0) & (self.uncovered == 0)


def fold_measure(source: MeshSource, kp_source, kp_driving,
                 config: MeshConfig = MeshConfig()) -> Folds:
    """The fold measure (``Folds``) of ``kp_source [10, 6]`` → ``kp_driving [T, 10, 6]`` as
    ``render`` draws it: the clamped mesh, and the pixel lookup of every frame."""
    kp_source, kp_driving = _check_keypoints(kp_source, kp_driving)
    parts = [_fold_chunk(source, jnp.asarray(kp_source), jnp.asarray(kp_driving[i:i + 1]),
                         config) for i in range(kp_driving.shape[0])]
    if not parts:
        return Folds(*(np.zeros(0, t) for t in (np.float32, np.int32, np.int32)))
    return Folds(*(np.concatenate([np.asarray(p[i]) for p in parts]) for i in range(3)))


@functools.partial(jax.jit, static_argnames=("config",))
def _fold_chunk(source: MeshSource, kp_source, kp_driving, config: MeshConfig):
    targets, anchors, _ = _targets(source, kp_source, kp_driving, config)
    points = _clamp(source, targets, anchors, config)                            # [B, N, 2]
    before = piecewise.areas(source.vertices, source.triangles)                  # [T]
    after = piecewise.areas(points, source.triangles)                            # [B, T]
    ratio = jnp.where(source.clampable, after / jnp.maximum(before, 1e-6), jnp.inf)

    def uncovered(p):
        score = piecewise.source_coords(
            source.vertices, source.triangles, p, source.size, tile_size(config, source.size),
            config.candidates, config.busy_tiles, config.busy_candidates, with_score=True)[2]
        # beyond rounding: a pixel centre on the edge of a mouth pressed shut scores ~−4e-4
        return jnp.sum(score < -1e-3)

    # A mouth-interior sliver of a closed source mouth (under a pixel; it may even be reversed
    # there) shows nothing that could fold: the interior painting covers it as it opens.
    reversed_ = (jnp.abs(before) >= MIN_AREA_PX) & (after * jnp.sign(before) < 0)
    return (ratio.min(axis=-1), jnp.sum(reversed_, axis=-1).astype(jnp.int32),
            jax.lax.map(uncovered, points).astype(jnp.int32))


def driving_landmarks(source: MeshSource, kp_source, kp_driving) -> np.ndarray:
    """The driven landmarks ``[T, 68, 2]`` (normalised crop coordinates, inner lips uncrossed)
    of ``kp_source [10, 6]`` → ``kp_driving [T, 10, 6]``, relative to the source's landmarks."""
    kp_source, kp_driving = _check_keypoints(kp_source, kp_driving)
    driven = _driven(source.landmarks, jnp.asarray(kp_source), jnp.asarray(kp_driving))
    return np.asarray(interior.uncross(driven, mouth_gap=0.0))


@functools.partial(jax.jit, static_argnames=("config",))
def _render_chunk(source: MeshSource, kp_source, kp_driving, config: MeshConfig):
    targets, anchors, lids = _targets(source, kp_source, kp_driving, config)
    points = _clamp(source, targets, anchors, config)
    scale = (source.size - 1) / 2.0

    def frame(args):
        points, lids = args
        sx, sy = piecewise.source_coords(
            source.vertices, source.triangles, points, source.size,
            tile_size(config, source.size), config.candidates, config.busy_tiles,
            config.busy_candidates)
        image = piecewise.sample(source.table, sx[None], sy[None], source.size)
        held = points[None, :N_LANDMARKS]
        return interior.paint(image, held + lids[None], held, source.landmarks * scale,
                              source.colours, source.windows, source.image)[0]

    # One frame at a time: a frame's lookup tables stay in cache (batched, the chunk of 32 runs
    # 4× slower per frame than one).
    return jnp.clip(jax.lax.map(frame, (points, lids)), 0.0, 1.0)


def _check_keypoints(kp_source, kp_driving):
    kp_source = np.asarray(kp_source, np.float32)
    kp_driving = np.asarray(kp_driving, np.float32)
    if kp_source.shape != (landmark_space.N_KEYPOINTS, 6):
        raise ValueError(f"kp_source must be [10, 6]; got {tuple(kp_source.shape)}")
    if kp_driving.ndim != 3 or kp_driving.shape[1:] != kp_source.shape:
        raise ValueError(f"kp_driving must be [T, 10, 6]; got {tuple(kp_driving.shape)}")
    if not (np.all(np.isfinite(kp_source)) and np.all(np.isfinite(kp_driving))):
        raise ValueError("keypoints must be finite")
    return kp_source, kp_driving


def chunk_renderer(source: MeshSource, kp_source, config: MeshConfig = MeshConfig()
                   ) -> Callable[[np.ndarray], jnp.ndarray]:
    """The jitted call of a prepared source posed as ``kp_source [10, 6]``: driving keypoints
    ``[config.chunk, 10, 6]`` → frames ``[config.chunk, S, S, 3]``."""
    kp_source, _ = _check_keypoints(kp_source, np.zeros((1, landmark_space.N_KEYPOINTS, 6)))
    kp_source = jnp.asarray(kp_source)
    still = jnp.broadcast_to(kp_source, (config.chunk,) + kp_source.shape)
    draw = compile_cache.traced_jit(functools.partial(_render_chunk, config=config),
                                    (source, kp_source, still), "mesh", config)
    return lambda part: draw(source, kp_source, jnp.asarray(part, jnp.float32))


def render_chunks(source: MeshSource, kp_source, kp_driving,
                  config: MeshConfig = MeshConfig()) -> Iterator[np.ndarray]:
    """Yield frames ``[n, S, S, 3]`` float32 in [0, 1], ``config.chunk`` at a time (the last
    may be shorter), for ``kp_source [10, 6]`` (the source's keypoints, ``landmark_space.encode``
    of its landmarks) and ``kp_driving [T, 10, 6]``. Every jitted call has the same shapes
    (``render.chunked`` pads the last chunk with its final frame), so a video of any length
    compiles once."""
    kp_source, kp_driving = _check_keypoints(kp_source, kp_driving)
    return chunked.frames_in_chunks(chunk_renderer(source, kp_source, config), kp_driving,
                                    config.chunk)


def render(source: MeshSource, kp_source, kp_driving,
           config: MeshConfig = MeshConfig()) -> np.ndarray:
    """Frames ``[T, S, S, 3]`` float32 in [0, 1] (see ``render_chunks``)."""
    parts = list(render_chunks(source, kp_source, kp_driving, config))
    if not parts:
        return np.zeros((0, source.size, source.size, 3), np.float32)
    return np.concatenate(parts, axis=0)
