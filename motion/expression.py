"""The span of real faces' expressions, and generated motion kept within it (a departure from
the paper for ``landmarks-v1`` models; docs/design.md, "Expression space").

MS-Sync's generator moves its 10 keypoints' 60 values freely (eq. 8–10). Trained on a small real
corpus against syncers that reward any motion following the speech, the bundled one moves each
keypoint on its own: its two brows rise and fall against each other eleven times as much as
recorded brows do (a wink or a grimace), and its eyes and nose wander from the head's pose two to
three times as far as recorded ones. Real faces move in few ways: on the corpus's training
frames, in the head's frame, 6 directions of the upper face's 30 keypoint values hold 90 % of its
non-rigid motion. Keeping every generated frame's non-rigid motion in the span of real faces'
(the way a morphable face model does) leaves the head's pose as generated and the motion real
faces make. A space spans some of the keypoints, by default the upper face (brows, eyes, nose:
``UPPER_FACE``); the mouth's shape is the lip model's, itself fitted on real mouths.

- **Head's frame.** Per frame, the similarity taking the keypoints' rigid landmarks (17–47,
  decoded from keypoints 0–4) onto the mean face's (``syncers.data.measures.head_similarity``),
  applied to every keypoint: positions ``p' = s (p − c) R + m`` (row vectors), jacobians
  ``J' = s Rᵀ J``. A change ``d`` of the spanned keypoints' values is measured as the change it
  makes to the decoded landmarks (``landmark_space.decode`` is linear: ``‖D d‖``).
- **Fit** (:func:`fit`). Per clip of the training split (its mirrored copy too), the spanned
  keypoints' aligned values minus their median over the clip; the principal directions of
  ``L d`` (``L`` the square root of ``DᵀD``), in order, until they hold ``variance`` of it
  (default 0.9).
- **Use** (:func:`project`). ``a'_t = a_0 + B (A (a_t − a_0))`` with ``a_0`` the first
  keypoints' (x0) values in their head's frame, ``A = Wᵀ L [k, 6n]`` (a change → its k
  coefficients) and ``B = L⁻¹ W [6n, k]``; the result is put back with frame t's own
  similarity, the other keypoints left exactly as they were. A frame moved rigidly from x0 is
  unchanged; a change in the span is kept; the rest is taken out. Each frame is projected alone
  (no look-ahead): ``Streamer`` applies it frame by frame, exactly.
"""
from __future__ import annotations

import dataclasses
from typing import Sequence

import numpy as np

from syncers.data import anatomy, landmark_space
from syncers.data.landmark_space import KEYPOINT_DIM, N_KEYPOINTS
from syncers.data.measures import head_similarity

N_VALUES = N_KEYPOINTS * KEYPOINT_DIM        # 60


def values_of(keypoints=(), positions=()) -> tuple[int, ...]:
    """The indices among a frame's 60 values of ``keypoints``' six values and of ``positions``'
    two (x, y), increasing."""
    out = [k * KEYPOINT_DIM + j for k in keypoints for j in range(KEYPOINT_DIM)]
    out += [k * KEYPOINT_DIM + j for k in positions for j in range(2)]
    return tuple(sorted(out))


# The values a space spans by default: the upper face, the brows and the nose whole and the
# eyes' positions (22 values). The eyes' shapes (how open they are) are left as generated: in
# the recordings an eye closing moves its centroid, and a space holding both explained the
# generator's eye motion as half-closed eyes on loud syllables; blinks are ``motion.blink``'s.
# The mouth's shape is the lip model's (``motion.lips``), itself fitted on real mouths.
UPPER_FACE = values_of(keypoints=(0, 1, 4), positions=(2, 3))
DEFAULT_VARIANCE = 0.9
MIN_FIT_FRAMES = 200


@dataclasses.dataclass(frozen=True)
class ExpressionSpace:
    """``values``: the n of a frame's 60 keypoint values it spans (:func:`values_of`; the
    others are left as they are); ``coefficients [k, n]``: a head-frame change of those values →
    its coefficients; ``components [n, k]``: coefficients → the change (``coefficients @
    components`` is the identity ``[k, k]``); ``variance``: the share of the training faces'
    non-rigid motion of those values the k directions hold."""

    coefficients: np.ndarray
    components: np.ndarray
    variance: float
    values: tuple[int, ...] = UPPER_FACE

    @property
    def n_components(self) -> int:
        return int(self.coefficients.shape[0])

    def to_json(self) -> dict:
        return {"values": list(self.values),
                "coefficients": np.round(self.coefficients, 7).tolist(),
                "components": np.round(self.components, 7).tolist(),
                "variance": float(self.variance)}


def from_json(raw) -> ExpressionSpace:
    """The space ``model.json`` stores (:meth:`ExpressionSpace.to_json`); ``ValueError`` saying
    what is wrong with it."""
    if not isinstance(raw, dict) or \
            set(raw) != {"values", "coefficients", "components", "variance"}:
        raise ValueError("expression must be a mapping of values, coefficients, components "
                         "and variance")
    values = raw["values"]
    if not (isinstance(values, list) and values
            and all(isinstance(v, int) and not isinstance(v, bool) for v in values)
            and values == sorted(set(values)) and 0 <= values[0] and values[-1] < N_VALUES):
        raise ValueError(f"expression values must be increasing indices 0..{N_VALUES - 1}; "
                         f"got {values!r}")
    try:
        coefficients = np.asarray(raw["coefficients"], np.float64)
        components = np.asarray(raw["components"], np.float64)
        variance = float(raw["variance"])
    except (TypeError, ValueError):
        raise ValueError("expression coefficients and components must be arrays of numbers") \
            from None
    n = len(values)
    k = coefficients.shape[0] if coefficients.ndim == 2 else -1
    if not (1 <= k <= n and coefficients.shape == (k, n) and components.shape == (n, k)):
        raise ValueError(f"expression coefficients must be [k, {n}] and components [{n}, k] "
                         f"for {n} values, 1 <= k <= {n}; got "
                         f"{list(coefficients.shape)} and {list(components.shape)}")
    if not (np.all(np.isfinite(coefficients)) and np.all(np.isfinite(components))
            and 0.0 < variance <= 1.0):
        raise ValueError("expression coefficients and components must be finite and its "
                         "variance in (0, 1]")
    if not np.allclose(coefficients @ components, np.eye(k), atol=1e-4):
        raise ValueError("expression coefficients and components must invert each other "
                         "(coefficients @ components = identity)")
    return ExpressionSpace(coefficients, components, variance, tuple(values))


def _check(keypoints: np.ndarray) -> np.ndarray:
    keypoints = np.asarray(keypoints, np.float64)
    if keypoints.ndim != 3 or keypoints.shape[1:] != (N_KEYPOINTS, KEYPOINT_DIM):
        raise ValueError(f"keypoints must be [T, {N_KEYPOINTS}, {KEYPOINT_DIM}]; got "
                         f"{list(keypoints.shape)}")
    return keypoints


def _rigid_similarity(keypoints_Tx10x6: np.ndarray):
    return head_similarity(landmark_space.decode(keypoints_Tx10x6))


def to_head_frame(keypoints_Tx10x6: np.ndarray, similarity=None) -> tuple[np.ndarray, tuple]:
    """Keypoints ``[T, 10, 6]`` in their head's frame (mean-face coordinates) and the similarity
    ``(rotation [T, 2, 2], scale [T], centre [T, 2])`` that took them there."""
    keypoints = _check(keypoints_Tx10x6)
    rotation, scale, centre = _rigid_similarity(keypoints) if similarity is None else similarity
    mean_centre = landmark_space.mean_face()[anatomy.RIGID].mean(axis=0)
    out = np.empty_like(keypoints)
    out[..., :2] = np.einsum("tki,tij->tkj", keypoints[..., :2] - centre[:, None], rotation) \
        * scale[:, None, None] + mean_centre
    jacobians = keypoints[..., 2:].reshape(keypoints.shape[:2] + (2, 2))
    out[..., 2:] = (np.einsum("tji,tkjl->tkil", rotation, jacobians)
                    * scale[:, None, None, None]).reshape(keypoints.shape[:2] + (4,))
    return out, (rotation, scale, centre)


def from_head_frame(aligned_Tx10x6: np.ndarray, similarity: tuple) -> np.ndarray:
    """The inverse of :func:`to_head_frame` for the same ``similarity``."""
    aligned = _check(aligned_Tx10x6)
    rotation, scale, centre = similarity
    mean_centre = landmark_space.mean_face()[anatomy.RIGID].mean(axis=0)
    out = np.empty_like(aligned)
    out[..., :2] = np.einsum("tkj,tij->tki", (aligned[..., :2] - mean_centre)
                             / scale[:, None, None], rotation) + centre[:, None]
    jacobians = aligned[..., 2:].reshape(aligned.shape[:2] + (2, 2))
    out[..., 2:] = (np.einsum("tij,tkjl->tkil", rotation, jacobians)
                    / scale[:, None, None, None]).reshape(aligned.shape[:2] + (4,))
    return out


def _landmark_metric(values: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``(L, L⁻¹)`` for ``values``: the square root of ``DᵀD`` (``D`` the linear decode of
    those values to the 68 landmarks), with a floor of 1e-6 of its mean eigenvalue so that
    directions the landmarks barely see (a straight brow's shear) stay invertible."""
    unit = np.eye(N_VALUES)[list(values)].reshape(len(values), N_KEYPOINTS, KEYPOINT_DIM)
    decode = landmark_space.decode(unit).astype(np.float64).reshape(len(unit), -1).T
    values, vectors = np.linalg.eigh(decode.T @ decode)
    values = np.maximum(values, 1e-6 * values.mean())
    root = (vectors * np.sqrt(values)) @ vectors.T
    inverse = (vectors / np.sqrt(values)) @ vectors.T
    return root, inverse


def fit(clips: Sequence[np.ndarray], variance: float = DEFAULT_VARIANCE,
        values: tuple[int, ...] = UPPER_FACE) -> tuple[ExpressionSpace, dict]:
    """The space of the keypoint clips' (each ``[T, 10, 6]``, a recording's ``landmarks-v1``
    keypoints; mirrored copies may be among them) non-rigid motion of ``values`` holding
    ``variance`` of it, and a report (frames, components, the variance each cumulative count
    holds)."""
    if not 0.0 < variance <= 1.0:
        raise ValueError(f"variance must be in (0, 1]; got {variance}")
    values = tuple(int(v) for v in values)
    columns = list(values)
    root, inverse = _landmark_metric(values)
    changes = []
    for clip in clips:
        aligned, _ = to_head_frame(clip)
        flat = aligned.reshape(len(aligned), N_VALUES)[:, columns]
        changes.append(flat - np.median(flat, axis=0))
    n_frames = sum(len(change) for change in changes)
    if n_frames < MIN_FIT_FRAMES:
        raise ValueError(f"the expression space is fitted on {MIN_FIT_FRAMES} frames at least; "
                         f"the training split has {n_frames}")
    weighted = np.concatenate(changes) @ root               # rows: L d (root is symmetric)
    eigenvalues, vectors = np.linalg.eigh(weighted.T @ weighted)
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues, vectors = eigenvalues[order], vectors[:, order]
    held = np.cumsum(eigenvalues) / eigenvalues.sum()
    k = int(np.searchsorted(held, variance - 1e-12) + 1)
    kept = vectors[:, :k]
    space = ExpressionSpace(kept.T @ root, inverse @ kept, float(held[k - 1]), values)
    report = {"frames": int(n_frames), "clips": len(changes), "values": len(values),
              "components": k,
              "variance": round(float(held[k - 1]), 4),
              "variance_by_components": [round(float(v), 4) for v in held[:16]]}
    return space, report


def project(space: ExpressionSpace, keypoints_Tx10x6: np.ndarray, reference_Kx6: np.ndarray
            ) -> np.ndarray:
    """``keypoints [T, 10, 6]`` float32 with each frame's change from ``reference [10, 6]`` (x0)
    in its head's frame kept within ``space`` (module docstring); T may be 0."""
    keypoints = _check(keypoints_Tx10x6)
    if len(keypoints) == 0:
        return keypoints.astype(np.float32)
    columns = list(space.values)
    reference, _ = to_head_frame(np.asarray(reference_Kx6, np.float64)[None])
    aligned, similarity = to_head_frame(keypoints)
    flat = aligned.reshape(len(aligned), N_VALUES)
    base = reference.reshape(1, N_VALUES)[:, columns]
    change = flat[:, columns] - base
    flat[:, columns] = base + (change @ space.coefficients.T) @ space.components.T
    out = from_head_frame(flat.reshape(aligned.shape), similarity).reshape(len(flat), N_VALUES)
    others = [v for v in range(N_VALUES) if v not in space.values]
    out[:, others] = keypoints.reshape(len(flat), N_VALUES)[:, others]   # as generated, exactly
    return out.reshape(keypoints.shape).astype(np.float32)
