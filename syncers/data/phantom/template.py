"""The 10-point face template of the phantom keypoint space (``phantom-v1``).

Keypoint order is fixed: 0 left brow, 1 right brow, 2 left eye, 3 right eye, 4 nose,
5 left mouth corner, 6 right mouth corner, 7 upper lip, 8 lower lip, 9 chin. "Left" is the
image's left (smaller x). Positions are given in *face-box* coordinates, where the detected
face box spans [−1, 1]² (x right, y down); :func:`fit_to_box` maps them into the normalised
image coordinates of docs/design.md, "Data model" (−1/+1 = centres of the first/last pixel).
"""
from __future__ import annotations

import numpy as np

from syncers.data.layout import PHANTOM_RIGID

RIGID = PHANTOM_RIGID  # brows, eyes, nose: the head-pose subset used by ``analyze``
LEFT_EYE, RIGHT_EYE = 2, 3
UPPER_LIP, LOWER_LIP = 7, 8

# [10, 2] positions in face-box coordinates (an LBP frontal-face box runs from about the brows
# to just below the mouth, so the chin sits near its lower edge).
FACE_BOX_POSITIONS = np.array([
    [-0.45, -0.55], [0.45, -0.55],   # brows
    [-0.40, -0.30], [0.40, -0.30],   # eyes
    [0.00, 0.15],                    # nose
    [-0.30, 0.55], [0.30, 0.55],     # mouth corners
    [0.00, 0.47], [0.00, 0.63],      # upper, lower lip
    [0.00, 0.95],                    # chin
], dtype=np.float32)


def fit_to_box(box: tuple[float, float, float, float]) -> np.ndarray:
    """The template as keypoints ``[10, 6]`` inside a face box.

    ``box`` = ``(x0, y0, x1, y1)`` in normalised image coordinates. Jacobians scale with the
    box (a keypoint's local frame is the face's), so a bigger face has bigger jacobians.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"face box must have x1 > x0 and y1 > y0; got {box}")
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2], np.float32)
    half = np.array([(x1 - x0) / 2, (y1 - y0) / 2], np.float32)
    value = centre + FACE_BOX_POSITIONS * half
    jacobian = np.broadcast_to(np.diag(half / half.mean()).reshape(4), (10, 4))
    return np.concatenate([value, jacobian], axis=1).astype(np.float32)
