"""The span of real faces' expressions, and generated motion kept within it (a departure from
the paper for ``landmarks-v1`` models; docs/design.md, "Expression space").

MS-Sync's generator moves its 10 keypoints' 60 values freely (eq. 8–10). Trained on a small real
corpus against syncers that reward any motion following the speech, the bundled one moves each
keypoint on its own: its two brows rise and fall against each other eleven times as much as
recorded brows do (a wink or a grimace), and its eyes and nose wander from the head's pose two to
three times as far as recorded ones. Real faces move in few ways: on the corpus's training
frames, in the head's frame, 5 directions of the upper face's 22 keypoint values hold 90 % of its
non-rigid motion. Keeping every generated frame's non-rigid motion in the span of real faces'
(the way a morphable face model does) leaves the head's pose as generated and the motion real
faces make. A space spans some of the keypoints: the upper face (brows, eyes, nose:
``UPPER_FACE``) and, beside it, the lower face (mouth and jaw: ``LOWER_FACE``, all its
directions by default: nothing taken out there, only limited; the mouth's shape from speech is
the lip model's, added afterwards).

The generator also moves its face too far: on the training clips' speech its upper face's
directions move 1.3–2.7 times as far as the recorded faces', and the lower face's minor
directions (a corner of the mouth pulled in alone, a lip twisted) 2–7 times, leaving the range
real faces reach on up to three quarters of its frames; on a 60 s recording the mouth's width
fell to 55 % of the photo's (a "beak"). So each direction's coefficient goes through a map
fitted on the same clips (:func:`calibrate`): the upper face's onto the recorded distribution
by quantiles (the sizes real faces have, the generator's timing), the lower face's kept within
the recorded range (the identity inside it, approaching its edge softly beyond: what real faces
do is kept, since carrying the mouth onto the recorded sizes cost the drawn mouth's
correlation with the recording, docs/design.md).

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
  unchanged; a change in the span is kept; the rest is taken out. A calibrated space maps the
  coefficients ``A (a_t − a_0)`` first (:func:`map_coefficients`). Each frame is projected alone
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
# The lower face: the mouth's corners and lips and the jaw (30 values).
LOWER_FACE = values_of(keypoints=(5, 6, 7, 8, 9))
DEFAULT_VARIANCE = 0.9
DEFAULT_LOWER_VARIANCE = 1.0
MIN_FIT_FRAMES = 200
N_QUANTILES = 101                     # knots of each coefficient's map
LIMIT_LEVEL = 0.005                   # real faces' range: 0.5 % to 99.5 % of their frames
LIMIT_REACH = 6.0


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
    map_from: np.ndarray | None = None
    map_to: np.ndarray | None = None

    @property
    def n_components(self) -> int:
        return int(self.coefficients.shape[0])

    @property
    def calibrated(self) -> bool:
        return self.map_from is not None

    def to_json(self) -> dict:
        out = {"values": list(self.values),
               "coefficients": np.round(self.coefficients, 7).tolist(),
               "components": np.round(self.components, 7).tolist(),
               "variance": float(self.variance)}
        if self.calibrated:
            out["map_from"] = np.round(self.map_from, 7).tolist()
            out["map_to"] = np.round(self.map_to, 7).tolist()
        return out


def from_json(raw) -> ExpressionSpace:
    """The space ``model.json`` stores (:meth:`ExpressionSpace.to_json`); ``ValueError`` saying
    what is wrong with it."""
    required = {"values", "coefficients", "components", "variance"}
    map_keys = {"map_from", "map_to"}
    if not isinstance(raw, dict) or not required <= set(raw) <= required | map_keys \
            or len(set(raw) & map_keys) == 1:
        raise ValueError("expression must be a mapping of values, coefficients, components "
                         "and variance, and optionally both map_from and map_to")
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
    knots = [None, None]
    if "map_from" in raw:
        try:
            knots = [np.asarray(raw[key], np.float64) for key in ("map_from", "map_to")]
        except (TypeError, ValueError):
            raise ValueError("expression map_from and map_to must be arrays of numbers") \
                from None
        if not all(q.ndim == 2 and q.shape[0] == k and q.shape[1] >= 2
                   and q.shape == knots[0].shape and np.all(np.isfinite(q))
                   and np.all(np.diff(q, axis=1) >= 0) for q in knots):
            raise ValueError(f"expression map_from and map_to must be finite, non-decreasing "
                             f"[{k}, Q] with Q >= 2")
    return ExpressionSpace(coefficients, components, variance, tuple(values), *knots)


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


def fit_face(clips: Sequence[np.ndarray], variance: float = DEFAULT_VARIANCE,
             lower_variance: float | None = DEFAULT_LOWER_VARIANCE,
             generated: Sequence[np.ndarray] | None = None) -> tuple[ExpressionSpace, dict]:
    """The face's space as ``msync train expression`` fits it: the upper face's holding
    ``variance`` of its motion, with the lower face's holding ``lower_variance`` of its own
    beside it (None: the upper face only), calibrated on ``generated`` (the generator's clips
    from each of ``clips``' first frame and speech; None: not calibrated) with the upper face's
    directions carried onto real faces' and the lower face's kept within their range
    (:func:`calibrate`); and the fits' report (the upper face's keys, ``lower_face`` the lower
    face's, the calibration's)."""
    space, report = fit(clips, variance, UPPER_FACE)
    carried = space.n_components
    if lower_variance is not None:
        lower, lower_report = fit(clips, lower_variance, LOWER_FACE)
        space = combine([space, lower])
        report = {**report, "lower_face": lower_report}
    if generated is not None:
        space, calibration = calibrate(space, clips, generated, carried)
        report = {**report, **calibration}
    return space, report


def combine(spaces: Sequence[ExpressionSpace]) -> ExpressionSpace:
    """One space spanning the disjoint ``values`` of ``spaces`` (uncalibrated), each part's
    directions its own: projecting onto it projects each part onto its space. Its variance is
    the least of theirs. The landmark metric of disjoint keypoints is block-diagonal (every
    landmark belongs to one keypoint), so the parts' metrics compose exactly."""
    values = [v for space in spaces for v in space.values]
    if not spaces or len(set(values)) != len(values):
        raise ValueError("expression spaces to combine must be one or more over disjoint values")
    order = np.argsort(values)
    k_total = sum(space.n_components for space in spaces)
    coefficients = np.zeros((k_total, len(values)))
    components = np.zeros((len(values), k_total))
    row = col = 0
    for space in spaces:
        k, n = space.coefficients.shape
        coefficients[row:row + k, col:col + n] = space.coefficients
        components[col:col + n, row:row + k] = space.components
        row, col = row + k, col + n
    return ExpressionSpace(coefficients[:, order], components[order],
                           min(space.variance for space in spaces),
                           tuple(int(values[i]) for i in order))


def _changes(space: ExpressionSpace, keypoints_Tx10x6: np.ndarray, reference_Kx6: np.ndarray):
    """The head-frame change ``[T, n]`` of the space's values from ``reference`` (x0), the
    frames in their head's frame ``[T, 60]`` and the similarity that took them there."""
    columns = list(space.values)
    reference, _ = to_head_frame(np.asarray(reference_Kx6, np.float64)[None])
    aligned, similarity = to_head_frame(keypoints_Tx10x6)
    flat = aligned.reshape(len(aligned), N_VALUES)
    return flat[:, columns] - reference.reshape(1, N_VALUES)[:, columns], flat, similarity


def _coefficients(space: ExpressionSpace, clips: Sequence[np.ndarray],
                  references: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate([_changes(space, _check(clip), reference)[0] @ space.coefficients.T
                           for clip, reference in zip(clips, references)])


def _limit_knots(recorded_c: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Knots ``[Q]`` of the map that keeps a coefficient within real faces' range: the
    identity between the recorded coefficients' ``LIMIT_LEVEL`` and ``1 − LIMIT_LEVEL``
    quantiles, then ``edge ± w·tanh(excess / w)`` towards the recorded extreme (``w`` the gap
    from the edge to it), sampled to ``LIMIT_REACH`` widths, where tanh is within 2e-5 of 1;
    and the range's edges ``(low, high)``."""
    low, high = np.quantile(recorded_c, [LIMIT_LEVEL, 1.0 - LIMIT_LEVEL])
    below = max(low - recorded_c.min(), 1e-9)
    above = max(recorded_c.max() - high, 1e-9)
    side = (N_QUANTILES - 21) // 2
    reach = np.linspace(LIMIT_REACH, 0.0, side, endpoint=False)
    x = np.concatenate([low - below * reach, np.linspace(low, high, 21),
                        high + above * reach[::-1]])
    y = np.where(x > high, high + above * np.tanh((x - high) / above),
                 np.where(x < low, low - below * np.tanh((low - x) / below), x))
    return x, y, low, high


def calibrate(space: ExpressionSpace, recorded: Sequence[np.ndarray],
              generated: Sequence[np.ndarray], carried: int | None = None
              ) -> tuple[ExpressionSpace, dict]:
    """``space`` with a map of each coefficient fitted on the generator's clips
    (``generated[i] [T_i, 10, 6]``, made from ``recorded[i]``'s first frame and speech) and
    the recorded ones (each a change from its first frame, as generation measures from x0), and
    a report (each coefficient's spread, generated over recorded; the share of generated frames
    the limit moves).

    The first ``carried`` coefficients (default all) are carried onto the recorded ones'
    distribution by their quantiles (the value at rank u among the generator's → the recorded
    value at rank u, less that of no change, so that x0's own face is kept): the sizes of that
    motion come from real faces, its timing stays the generator's. The others are kept within
    the recorded range (:func:`_limit_knots`): the generator's motion as it is, except where it
    leaves what real faces do. Every map is shifted so that no change stays no change."""
    if len(recorded) != len(generated) or not recorded:
        raise ValueError("calibrating an expression space needs generated clips paired with "
                         "the recorded ones")
    carried = space.n_components if carried is None else carried
    if not 0 <= carried <= space.n_components:
        raise ValueError(f"carried must be 0..{space.n_components}; got {carried}")
    firsts = [np.asarray(clip, np.float64)[0] for clip in recorded]
    recorded_c = _coefficients(space, recorded, firsts)
    generated_c = _coefficients(space, generated, firsts)
    if min(len(recorded_c), len(generated_c)) < MIN_FIT_FRAMES:
        raise ValueError(f"the expression space is calibrated on {MIN_FIT_FRAMES} frames at "
                         f"least")
    levels = np.linspace(0.0, 1.0, N_QUANTILES)
    knots_from, knots_to, moved = [], [], []
    for j in range(space.n_components):
        if j < carried:
            x, y = np.quantile(generated_c[:, j], levels), np.quantile(recorded_c[:, j], levels)
        else:
            x, y, low, high = _limit_knots(recorded_c[:, j])
            moved.append(float(np.mean((generated_c[:, j] < low)
                                       | (generated_c[:, j] > high))))
        knots_from.append(x)
        knots_to.append(y - np.interp(0.0, x, y))       # x0's own face stays x0's
    calibrated = dataclasses.replace(space, map_from=np.stack(knots_from),
                                     map_to=np.stack(knots_to))
    ratio = generated_c.std(axis=0) / np.maximum(recorded_c.std(axis=0), 1e-12)
    return calibrated, {"calibration_frames": int(len(generated_c)), "carried": carried,
                        "generated_over_recorded_spread": [round(float(r), 3) for r in ratio],
                        "limited_share": [round(m, 3) for m in moved]}


def map_coefficients(space: ExpressionSpace, coefficients_Txk: np.ndarray) -> np.ndarray:
    """Coefficients ``[T, k]`` through the space's map (:func:`calibrate`); unchanged for an
    uncalibrated space."""
    if not space.calibrated:
        return coefficients_Txk
    return np.stack([np.interp(coefficients_Txk[:, j], space.map_from[j], space.map_to[j])
                     for j in range(space.n_components)], axis=1)


def project(space: ExpressionSpace, keypoints_Tx10x6: np.ndarray, reference_Kx6: np.ndarray
            ) -> np.ndarray:
    """``keypoints [T, 10, 6]`` float32 with each frame's change from ``reference [10, 6]`` (x0)
    in its head's frame kept within ``space`` and, for a calibrated space, its coefficients
    carried onto real faces' (module docstring); T may be 0."""
    keypoints = _check(keypoints_Tx10x6)
    if len(keypoints) == 0:
        return keypoints.astype(np.float32)
    columns = list(space.values)
    change, flat, similarity = _changes(space, keypoints, reference_Kx6)
    base = flat[:, columns] - change
    coefficients = map_coefficients(space, change @ space.coefficients.T)
    flat[:, columns] = base + coefficients @ space.components.T
    out = from_head_frame(flat.reshape(keypoints.shape), similarity).reshape(len(flat), N_VALUES)
    others = [v for v in range(N_VALUES) if v not in space.values]
    out[:, others] = keypoints.reshape(len(flat), N_VALUES)[:, others]   # as generated, exactly
    return out.reshape(keypoints.shape).astype(np.float32)
