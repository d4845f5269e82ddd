"""How far a photo's face turns away from the camera, from its 68 landmarks, and the refusal of
one msync cannot animate (docs/design.md, "Photos msync refuses").

msync moves a face in the image plane (``render.mesh``: 2-D triangles carried by 2-D
keypoints), so it cannot draw the hidden half of a face in profile. dlib's frontal detector
misses most profiles, but it has side-looking filters and finds some faces turned far to the
side, whose landmarks then crowd the far half of the face against the nose. The measure here
is that crowding: for pairs of points mirrored across the face (outer eye corners, nostrils,
the jaw at the cheeks), the distance from the nose tip to the far one over that to the near
one, the median over the pairs. It is 1 for a frontal face; with the points of a pair at
half-width ``w`` and the nose tip ``d`` in front of them, a turn by θ gives
``(w + d tan θ) / (w − d tan θ)`` (``d ≈ 0.6 w`` for the eye corners): 2 at about 30°, 4 at
about 45°, 10 at about 55°, and it grows without bound towards a profile.

Measured on the crops msync makes: 1.08–1.14 on three real frontal portraits, 1.02–1.05 on
the astronaut; with one half of her face narrowed to 50 %, 40 %, 30 % of its width 2.0, 3.2,
4.3 (narrower, dlib no longer finds it). On the first frames of the 193 clips of the
in-the-wild corpus where dlib finds a face: median 2.8, 90 % under 5.7, max 20.4; the
three-quarter views there (a speaker at about 45°, ratios 2.8–6.9 from clip to clip: the
measure is noisy once the near distances are small) animate with the mesh, so only a far
half crowded to under a tenth of the near one (``MAX_SIDE_RATIO``), a near profile, is
refused (one clip of the 193: a face turned and looking down, whose mouth the mesh paints
badly).
"""
from __future__ import annotations

import os

import numpy as np

from syncers.data import anatomy
from syncers.run.errors import InputError

NOSE_TIP = 30
# Mirrored pairs (the image's left, right): jaw at the cheeks, outer eye corners, nostrils.
MIRRORED = ((1, 15), (2, 14), (36, 45), (31, 35))
MAX_SIDE_RATIO = 10.0         # about 55° of turn: the far half a sliver, a near profile
# Landmarks spanning less than this share of the detector's face box are the predictor's
# answer on something that is not a frontal face (points collapsed onto one spot).
MIN_SPAN_SHARE = 0.3


def side_ratio(points_68x2: np.ndarray) -> float:
    """The turn measure of landmarks ``[68, 2]`` (any units): ≥ 1, 1 for a frontal face,
    infinite when a side has collapsed onto the nose."""
    points = np.asarray(points_68x2, np.float64)
    nose = points[NOSE_TIP, 0]
    ratios = []
    for left, right in MIRRORED:
        near_far = sorted((nose - points[left, 0], points[right, 0] - nose))
        ratios.append(np.inf if near_far[0] <= 0 else near_far[1] / near_far[0])
    return float(np.median(ratios))


def check_frontal(points_68x2: np.ndarray, face_box: tuple[float, float, float, float],
                  path: str | os.PathLike | None = None) -> None:
    """Raise a one-line ``InputError`` naming ``path`` when landmarks ``[68, 2]`` (in the
    coordinates of ``face_box`` ``(x0, y0, x1, y1)``, the detector's box) show a face turned
    more than ``MAX_SIDE_RATIO`` allows, or collapsed within the box."""
    points = np.asarray(points_68x2, np.float64)
    x0, y0, x1, y1 = face_box
    span = np.ptp(points[anatomy.JAW, 0])
    if not np.all(np.isfinite(points)) or span < MIN_SPAN_SHARE * (x1 - x0):
        raise InputError(path, "no frontal face found: the landmarks of the detected face "
                               "collapse onto one spot; msync animates a face seen from the "
                               "front")
    ratio = side_ratio(points)
    if ratio > MAX_SIDE_RATIO:
        raise InputError(path, f"the face is turned to the side (its nose is {ratio:.1f}x "
                               f"nearer one side of the face than the other; at most "
                               f"{MAX_SIDE_RATIO:g}x, about 55 degrees); msync animates a face "
                               "seen from the front or three-quarters, not in profile")
