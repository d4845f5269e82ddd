"""Delaunay triangulation with required edges, for the mesh renderer (docs/design.md, "Renderer").

``scipy.spatial.Delaunay`` gives the triangulation; a required edge it lacks (an outline of the
lips or of an eye: a closed mouth puts its inner-lip points a pixel apart, and Delaunay then
joins the upper lip to the lower one across the mouth line) is inserted by flipping the edges
that cross it, one convex quadrilateral at a time (Sloan, "A fast algorithm for generating
constrained Delaunay triangulations", 1993), then Lawson's flips restore the Delaunay property
wherever a required edge does not forbid it (so no needless slivers are left next to an
outline). Triangles come out with a positive signed area ``(b − a) × (c − a) > 0`` in the
points' own coordinates.
"""
from __future__ import annotations

import collections
from typing import Iterable

import numpy as np
from scipy.spatial import Delaunay


class ConstraintError(ValueError):
    """A required edge could not be inserted (it crosses another required edge or a point)."""


def _cross(o: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    return float((a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0]))


def _crosses(p: np.ndarray, a: int, b: int, c: int, d: int) -> bool:
    """Whether segments ``ab`` and ``cd`` cross at a point inside both (shared ends excluded)."""
    if len({a, b, c, d}) < 4:
        return False
    return (_cross(p[a], p[b], p[c]) * _cross(p[a], p[b], p[d]) < 0
            and _cross(p[c], p[d], p[a]) * _cross(p[c], p[d], p[b]) < 0)


def _orient(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    a, b, c = (points[triangles[:, i]] for i in range(3))
    area = (b[:, 0] - a[:, 0]) * (c[:, 1] - a[:, 1]) - (b[:, 1] - a[:, 1]) * (c[:, 0] - a[:, 0])
    out = triangles.copy()
    out[area < 0] = out[area < 0][:, [0, 2, 1]]
    return out


def _edge_map(triangles: list[list[int]]) -> dict[tuple[int, int], list[int]]:
    found: dict[tuple[int, int], list[int]] = {}
    for t, (a, b, c) in enumerate(triangles):
        for u, v in ((a, b), (b, c), (c, a)):
            found.setdefault((min(u, v), max(u, v)), []).append(t)
    return found


def _insert(points: np.ndarray, triangles: list[list[int]], a: int, b: int,
            fixed: set[tuple[int, int]], max_flips: int) -> None:
    """Flip the edges crossing ``ab`` until ``ab`` is an edge (in place). Sloan's queue: an
    edge whose quadrilateral is not convex, or whose flip still crosses ``ab``, goes to the back
    (flipping the first convex one every time can cycle)."""
    key = lambda u, v: (min(u, v), max(u, v))
    edges = _edge_map(triangles)
    if key(a, b) in edges:
        return
    queue = collections.deque(e for e, ts in edges.items()
                              if len(ts) == 2 and _crosses(points, a, b, *e))
    if not queue:
        raise ConstraintError(f"edge {a}-{b} passes through a point or leaves the hull")
    if fixed & set(queue):
        raise ConstraintError(f"edge {a}-{b} crosses another required edge")
    for _ in range(max_flips):
        if not queue:
            return
        c, d = queue.popleft()
        t1, t2 = _edge_map(triangles)[(c, d)]
        e = next(v for v in triangles[t1] if v not in (c, d))
        f = next(v for v in triangles[t2] if v not in (c, d))
        # The quadrilateral c-e-d-f is strictly convex exactly when its diagonals cross.
        if _crosses(points, c, d, e, f):
            triangles[t1], triangles[t2] = [e, f, c], [f, e, d]
            if _crosses(points, a, b, e, f):
                queue.append(key(e, f))
        else:
            queue.append((c, d))
    raise ConstraintError(f"edge {a}-{b} not inserted after {max_flips} flips")


def _in_circle(p: np.ndarray, a: int, b: int, c: int, d: int) -> float:
    """Positive when ``d`` lies inside the circle through ``a, b, c`` (relative to its size)."""
    rows = [p[i] - p[d] for i in (a, b, c)]
    m = np.array([[x, y, x * x + y * y] for x, y in rows])
    scale = max(float(np.abs(m[:, 2]).max()), 1e-300) ** 2
    return float(np.linalg.det(m)) * np.sign(_cross(p[a], p[b], p[c])) / scale


def _restore_delaunay(points: np.ndarray, triangles: list[list[int]],
                      fixed: set[tuple[int, int]], max_flips: int) -> None:
    """Flip every free edge whose opposite vertex lies inside the other triangle's circle."""
    for _ in range(max_flips):
        for (c, d), ts in _edge_map(triangles).items():
            if len(ts) != 2 or (c, d) in fixed:
                continue
            t1, t2 = ts
            e = next(v for v in triangles[t1] if v not in (c, d))
            f = next(v for v in triangles[t2] if v not in (c, d))
            if _in_circle(points, c, d, e, f) > 1e-9 and _crosses(points, c, d, e, f):
                triangles[t1], triangles[t2] = [e, f, c], [f, e, d]
                break
        else:
            return
    raise ConstraintError(f"Delaunay flips did not settle after {max_flips}")


def triangulate(points: np.ndarray, required: Iterable[tuple[int, int]] = ()) -> np.ndarray:
    """Triangles ``[T, 3]`` int32 of ``points [N, 2]`` (distinct, not all collinear): the
    Delaunay triangulation with every ``required`` edge ``(i, j)`` inserted. Raises
    :class:`ConstraintError` when required edges cross each other or pass through a point."""
    points = np.asarray(points, np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or len(points) < 3:
        raise ValueError(f"points must be [N, 2] with N >= 3; got {points.shape}")
    triangles = [list(t) for t in _orient(points, Delaunay(points).simplices)]
    fixed: set[tuple[int, int]] = set()
    for a, b in required:
        a, b = int(a), int(b)
        _insert(points, triangles, a, b, fixed, max_flips=len(triangles) ** 2)
        fixed.add((min(a, b), max(a, b)))
    if fixed:
        _restore_delaunay(points, triangles, fixed, max_flips=len(triangles) ** 2)
    return _orient(points, np.asarray(triangles, np.int32))


def signed_areas(points: np.ndarray, triangles: np.ndarray) -> np.ndarray:
    """Twice the signed area ``(b − a) × (c − a)`` of each triangle, ``[..., T]`` for points
    ``[..., N, 2]``."""
    p = np.asarray(points)
    a, b, c = (p[..., triangles[:, i], :] for i in range(3))
    return ((b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1])
            - (b[..., 1] - a[..., 1]) * (c[..., 0] - a[..., 0]))
