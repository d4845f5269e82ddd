"""The triangle mesh of a face crop for the mesh renderer (docs/design.md, "Renderer", "Mesh
renderer"): which points, and how they are joined.

Points, in this order: the 68 landmarks; ``len(FOREHEAD_BROWS)`` forehead points above the brows
(the landmarks stop there; the forehead and hair move rigidly with the head); a ring around the
face (jaw and forehead), beyond it by a share of its radius but at most half way to the border;
and fixed points on the crop's border. Coordinates are the crop's normalised ones (x right,
y down, −1/+1 = centres of the first/last pixel).

Triangles: the Delaunay triangulation with the outlines of the lips (inner and outer) and of the
eyes inserted as required edges (``render/triangulation.py``), computed on a copy whose lips and
lids are held open a little: on a closed mouth Delaunay would join the upper lip to the lower
one across the mouth, and opening it would tear both. A triangle inside the inner lip is the
mouth's interior (its source area is about zero when the mouth is closed): it is not clamped,
and the interior painting covers it. Triangles are ordered mouth, eyes, other face triangles,
the rest: the renderer's lookup keeps the first ones when a tile overflows.
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
from scipy.spatial import ConvexHull
from skimage.measure import points_in_poly

from render import interior, triangulation
from syncers.data import anatomy, landmark_space

N_LANDMARKS = landmark_space.N_LANDMARKS
FOREHEAD_BROWS = (17, 19, 21, 22, 24, 26)     # a forehead point above each of these
OUTLINES = tuple(tuple(part.tolist()) for part in (anatomy.INNER_LIPS, anatomy.OUTER_LIPS,
                                                    anatomy.LEFT_EYE, anatomy.RIGHT_EYE))
REQUIRED_EDGES = tuple((o[i], o[(i + 1) % len(o)]) for o in OUTLINES for i in range(len(o)))
LANDMARK, FOREHEAD, RING, BORDER = range(4)   # point kinds
# Held-open gaps for the triangulation, as shares of the mouth's and eye's widths.
TRIANGULATION_MOUTH_GAP = 0.05
TRIANGULATION_EYE_GAP = 0.2


@dataclasses.dataclass(frozen=True)
class FaceMesh:
    """``points [N, 2]`` (normalised), ``kind [N]`` (``LANDMARK``, ``FOREHEAD``, ``RING``,
    ``BORDER``), ``triangles [T, 3]`` int32 (positive area on ``points``, priority order) and
    ``clampable [T]`` (every triangle but the mouth's interior). ``points[:68]`` are the
    landmarks as used: lips and lids uncrossed, and in the rare face whose inner-lip corner
    lies outside the outer lip, the inner lip pulled towards the mouth's centre."""

    points: np.ndarray
    kind: np.ndarray
    triangles: np.ndarray
    clampable: np.ndarray


def build(landmarks: np.ndarray, *, ring_points: int, ring_margin: float,
          forehead_height: float, border_points: int) -> FaceMesh:
    """The mesh of a face whose 68 landmarks are ``landmarks [68, 2]`` (normalised)."""
    lm = _separate(np.asarray(interior.uncross(jnp.asarray(landmarks, jnp.float32),
                                               mouth_gap=1e-3, eye_gap=1e-3), np.float64))
    forehead = _forehead(lm, forehead_height)
    ring = _ring(np.concatenate([lm[:17], forehead]), ring_points, ring_margin)
    border = _border(border_points)
    points = np.concatenate([lm, forehead, ring, border])
    kind = np.repeat(np.arange(4), [N_LANDMARKS, len(forehead), len(ring), len(border)])
    pose = points.copy()
    pose[:N_LANDMARKS] = np.asarray(interior.uncross(
        jnp.asarray(lm, jnp.float32), mouth_gap=TRIANGULATION_MOUTH_GAP,
        eye_gap=TRIANGULATION_EYE_GAP), np.float64)
    points, pose, triangles = _topology(points, pose)
    triangles = triangles[_priority(triangles, kind)]
    return FaceMesh(points=points, kind=kind.astype(np.int32), triangles=triangles,
                    clampable=~_in_mouth(pose, triangles))


def _ray_exit(origin: np.ndarray, direction: np.ndarray, bound: float = 1.0) -> np.ndarray:
    """Distance along unit ``direction [..., 2]`` from ``origin`` to the square ``[-b, b]²``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(direction > 0, (bound - origin) / direction,
                     np.where(direction < 0, (-bound - origin) / direction, np.inf))
    return t.min(axis=-1)


def _forehead(lm: np.ndarray, height_share: float) -> np.ndarray:
    """A point above each of ``FOREHEAD_BROWS``, ``height_share`` of the brow-to-chin distance
    up the face (at most 45 % of the way to the crop's border, leaving the ring room)."""
    brows = lm[anatomy.BROWS].mean(axis=0)
    up = brows - lm[anatomy.CHIN]
    height = np.linalg.norm(up)
    up = up / max(height, 1e-9)
    base = lm[list(FOREHEAD_BROWS)]
    reach = np.minimum(height_share * height, 0.45 * _ray_exit(base, up[None]))
    return base + reach[:, None] * up


def _ring(hull_points: np.ndarray, n_points: int, margin: float) -> np.ndarray:
    """``n_points`` around the face hull at uniform angles: beyond the hull by ``margin`` of
    its mean radius, but at most half way to the crop border."""
    centre = hull_points.mean(axis=0)
    polygon = hull_points[ConvexHull(hull_points).vertices]
    angles = np.linspace(0, 2 * np.pi, n_points, endpoint=False)
    rays = np.stack([np.cos(angles), np.sin(angles)], -1)                 # [R, 2]
    a, b = polygon - centre, np.roll(polygon, -1, axis=0) - centre        # hull edges [E, 2]
    # ray t·d meets edge a + s(b − a): solve per (ray, edge), keep the hit with 0 ≤ s ≤ 1
    edge = b - a
    den = rays[:, None, 0] * edge[None, :, 1] - rays[:, None, 1] * edge[None, :, 0]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = (a[None, :, 0] * edge[None, :, 1] - a[None, :, 1] * edge[None, :, 0]) / den
        s = (a[None, :, 0] * rays[:, None, 1] - a[None, :, 1] * rays[:, None, 0]) / den
    hit = np.where((s >= -1e-9) & (s <= 1 + 1e-9) & (t > 0), t, np.inf).min(axis=1)
    mean_radius = np.linalg.norm(polygon - centre, axis=1).mean()
    room = _ray_exit(np.broadcast_to(centre, rays.shape), rays) - hit
    return centre + rays * (hit + np.minimum(margin * mean_radius, 0.5 * room))[:, None]


def _border(per_side: int) -> np.ndarray:
    """The crop's corners and ``per_side`` points between them on each side."""
    steps = np.linspace(-1.0, 1.0, per_side + 2)
    side = [(x, -1.0) for x in steps[:-1]] + [(1.0, y) for y in steps[:-1]]
    side += [(-x, 1.0) for x in steps[:-1]] + [(-1.0, -y) for y in steps[:-1]]
    return np.asarray(side)


def _topology(vertices: np.ndarray, pose: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(vertices, pose, triangles)``: the outlines inserted into the triangulation of ``pose``
    (the
    vertices with lips and lids held open a little, so the outlines are simple polygons), valid
    (positive area outside the mouth) on the true vertices. When landmarks make the outlines
    cross (an inner-lip corner outside the outer lip), the inner lip is pulled towards the
    mouth's centre until they do not; failing that, the plain Delaunay of the vertices."""
    centre = vertices[anatomy.MOUTH].mean(axis=0)
    inner = list(anatomy.INNER_LIPS)
    for shrink in (1.0, 0.9, 0.8, 0.7, 0.6):
        true, held = vertices.copy(), pose.copy()
        true[inner] = centre + shrink * (vertices[inner] - centre)
        held[inner] = centre + shrink * (pose[inner] - centre)
        try:
            triangles = triangulation.triangulate(held, REQUIRED_EDGES)
        except triangulation.ConstraintError:
            continue
        outside = ~_in_mouth(held, triangles)
        if np.all(triangulation.signed_areas(true, triangles)[outside] > 0):
            return true, held, triangles
    return vertices, vertices, triangulation.triangulate(vertices)


def _in_mouth(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """``[T]``: the triangle's centroid lies inside the inner-lip polygon."""
    return points_in_poly(points[triangles].mean(axis=1), points[anatomy.INNER_LIPS])


def _priority(triangles: np.ndarray, kind: np.ndarray) -> np.ndarray:
    """Triangle order for the lookup's candidate lists: mouth, eyes, other landmark triangles,
    the rest (a tile that overflows drops the last ones)."""
    mouth = np.isin(triangles, anatomy.MOUTH).any(axis=1)
    eyes = np.isin(triangles, anatomy.EYES).any(axis=1)
    face = (kind[triangles] == LANDMARK).all(axis=1)
    rank = np.where(mouth, 0, np.where(eyes, 1, np.where(face, 2, 3)))
    return np.argsort(rank, kind="stable")


def _separate(points: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    """Nudge exactly coinciding points apart (dlib answers in whole pixels; Delaunay would
    drop a duplicate)."""
    out = points.copy()
    for i in range(1, len(out)):
        while np.any(np.linalg.norm(out[:i] - out[i], axis=1) < eps):
            out[i] += eps * np.array([0.6, 0.8])
    return out
