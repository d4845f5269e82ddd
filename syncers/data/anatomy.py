"""The iBUG 68-point face anatomy: which landmark indices are which part of the face, named
once for every module that picks landmarks out (docs/design.md, "Keypoint spaces").

The 68 points are dlib's / iBUG 300-W's markup; "left" and "right" are the image's (a
subject's right eye is the image's left). Index sets are read-only int arrays, so they index
numpy and jax arrays alike (``landmarks[..., MOUTH, :]``) and cannot be changed by a caller.
"""
from __future__ import annotations

import numpy as np

N_LANDMARKS = 68


def _indices(*values: int) -> np.ndarray:
    out = np.array(values, np.int64)
    out.setflags(write=False)
    return out


def _span(first: int, last: int) -> np.ndarray:
    """Indices ``first..last``, both included (the way the markup's parts are quoted)."""
    return _indices(*range(first, last + 1))


JAW = _span(0, 16)
CHIN = 8                                   # the jaw line's lowest point
LEFT_BROW, RIGHT_BROW = _span(17, 21), _span(22, 26)
BROWS = _span(17, 26)
NOSE = _span(27, 35)
LEFT_EYE, RIGHT_EYE = _span(36, 41), _span(42, 47)
EYES = _span(36, 47)
# Each eye's corners (outer and inner) and the two outer ones, whose distance is the face's
# unit of length (the "eye distance", :func:`syncers.data.measures.eye_distance`).
EYE_CORNERS = _indices(36, 39, 42, 45)
OUTER_EYE_CORNERS = _indices(36, 45)
OUTER_LIPS = _span(48, 59)
INNER_LIPS = _span(60, 67)
MOUTH = _span(48, 67)                      # outer and inner lips
MOUTH_CORNERS = _indices(48, 54)           # the outer lips' corners
INNER_LIP_CORNERS = _indices(60, 64)
# Upper and lower inner-lip points facing each other across the mouth (61/67, 62/66, 63/65):
# the gap between them is the mouth's opening.
UPPER_INNER_LIP, LOWER_INNER_LIP = _indices(61, 62, 63), _indices(67, 66, 65)
# Brows, nose and eyes: the points that move with the skull, not with speech (the paper's
# rigid subset for head motion; ``msync analyze --points 17-47``).
RIGID = _span(17, 47)

# The landmark each landmark becomes in the mirror image (iBUG's left/right pairs).
MIRROR = _indices(
    *range(16, -1, -1),                                       # jaw
    *range(26, 16, -1),                                       # brows
    27, 28, 29, 30, 35, 34, 33, 32, 31,                       # nose
    45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40,           # eyes
    54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55,           # outer lips
    64, 63, 62, 61, 60, 67, 66, 65)                           # inner lips

assert sorted(MIRROR.tolist()) == list(range(N_LANDMARKS)), "the mirror must permute"
assert np.array_equal(MIRROR[MIRROR], np.arange(N_LANDMARKS)), "mirroring twice is identity"
