"""The ``landmarks-v1`` keypoint space: 10 first-order keypoints from the 68 iBUG landmarks
(docs/design.md, "Keypoint spaces").

The 68 landmarks live on the 256×256 face crop in FOMM's normalised coordinates (x right, y down,
−1/+1 = centres of the first/last pixel). Every landmark belongs to exactly one of 10 groups, in
the phantom's order and meaning:

    0 left brow 17–21     1 right brow 22–26    2 left eye 36–41     3 right eye 42–47
    4 nose 27–35          5 left mouth corner 48, 49, 59, 60        6 right mouth corner 53–55, 64
    7 upper lip 50–52, 61–63                    8 lower lip 56–58, 65–67               9 jaw 0–16

("left"/"right" are the image's.) Keypoint ``k`` is its group's centroid ``p_k`` and its jacobian
``J_k`` the least-squares affine map from the group's shape in a canonical mean face (``c_l``,
centroid ``c̄_k``; shipped as ``landmarks_v1_mean_face.json``, built from real faces by
``bench/build_mean_face.py``) to the observed shape, so the first-order model

    l ≈ p_k + J_k (c_l − c̄_k)                                     (FOMM's eq. 4, per group)

reconstructs every landmark from the keypoints, which is what a renderer needs. The fit is
regularised towards the group's best similarity transform (rotation and uniform scale), so a
nearly straight group (a brow, the jaw seen frontally) keeps a well-conditioned jacobian across
its thin direction instead of collapsing it. Keypoints 0–4 (brows, eyes, nose = landmarks
17–47, the paper's rigid subset) are the head-pose subset, as in the phantom space.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np

from syncers.data import anatomy
from syncers.data.layout import KEYPOINT_DIM, LANDMARK_SPACE, N_KEYPOINTS

N_LANDMARKS = anatomy.N_LANDMARKS
GROUPS: tuple[tuple[int, ...], ...] = (
    tuple(anatomy.LEFT_BROW.tolist()),        # 0 left brow
    tuple(anatomy.RIGHT_BROW.tolist()),       # 1 right brow
    tuple(anatomy.LEFT_EYE.tolist()),         # 2 left eye
    tuple(anatomy.RIGHT_EYE.tolist()),        # 3 right eye
    tuple(anatomy.NOSE.tolist()),             # 4 nose
    (48, 49, 59, 60),                         # 5 left mouth corner
    (53, 54, 55, 64),                         # 6 right mouth corner
    (50, 51, 52, 61, 62, 63),                 # 7 upper lip
    (56, 57, 58, 65, 66, 67),                 # 8 lower lip
    tuple(anatomy.JAW.tolist()),              # 9 jaw
)
GROUP_NAMES = ("left brow", "right brow", "left eye", "right eye", "nose", "left mouth corner",
               "right mouth corner", "upper lip", "lower lip", "jaw")
RIGID = (0, 1, 2, 3, 4)                       # brows, eyes, nose: landmarks 17–47
# Weight of the similarity prior, relative to the group's spread in the mean face: small enough
# that a well-spread group is fitted by least squares, large enough to pin a thin one.
SIMILARITY_PRIOR = 0.05
MEAN_FACE_FILE = Path(__file__).with_name("landmarks_v1_mean_face.json")


GROUP_OF = np.empty(N_LANDMARKS, np.int32)   # [68]: the keypoint each landmark belongs to
for _k, _members in enumerate(GROUPS):
    GROUP_OF[list(_members)] = _k
assert sorted(i for g in GROUPS for i in g) == list(range(N_LANDMARKS)), "groups must partition"
assert len(GROUPS) == N_KEYPOINTS


@functools.lru_cache(maxsize=1)
def mean_face() -> np.ndarray:
    """The canonical face ``[68, 2]`` float64 in crop coordinates (the shipped file)."""
    data = json.loads(MEAN_FACE_FILE.read_text())
    if data.get("keypoint_space") != LANDMARK_SPACE:
        raise ValueError(f"{MEAN_FACE_FILE}: not a {LANDMARK_SPACE} mean face")
    face = np.asarray(data["landmarks"], np.float64)
    if face.shape != (N_LANDMARKS, 2):
        raise ValueError(f"{MEAN_FACE_FILE}: landmarks must be [68, 2]; got {face.shape}")
    return face


# The mean face is built from crops whose side is 1.5× dlib's face box (``syncers.data.face``'s
# default margin), so the box it fills is the middle two thirds of the crop.
MEAN_FACE_BOX = (-2 / 3, -2 / 3, 2 / 3, 2 / 3)


def template(face_box: tuple[float, float, float, float]) -> np.ndarray:
    """The mean face ``[68, 2]`` float32 placed in ``face_box`` ``(x0, y0, x1, y1)`` (normalised
    crop coordinates): the landmarks of a face msync cannot see (``generate --no-crop``)."""
    x0, y0, x1, y1 = face_box
    mx0, my0, mx1, my1 = MEAN_FACE_BOX
    scale = np.array([(x1 - x0) / (mx1 - mx0), (y1 - y0) / (my1 - my0)])
    centre, mean_centre = np.array([x0 + x1, y0 + y1]) / 2, np.array([mx0 + mx1, my0 + my1]) / 2
    return ((mean_face() - mean_centre) * scale + centre).astype(np.float32)


def _check(landmarks: np.ndarray) -> np.ndarray:
    landmarks = np.asarray(landmarks)
    if landmarks.ndim < 2 or landmarks.shape[-2:] != (N_LANDMARKS, 2):
        raise ValueError(f"landmarks must be [..., 68, 2]; got {tuple(landmarks.shape)}")
    return landmarks


def encode(landmarks: np.ndarray, canonical: np.ndarray | None = None) -> np.ndarray:
    """Landmarks ``[..., 68, 2]`` → keypoints ``[..., 10, 6]`` float32 (centroid and the
    regularised least-squares jacobian of each group; see the module docstring)."""
    observed = _check(landmarks).astype(np.float64)
    canonical = mean_face() if canonical is None else np.asarray(canonical, np.float64)
    out = np.empty(observed.shape[:-2] + (N_KEYPOINTS, KEYPOINT_DIM), np.float64)
    for k, members in enumerate(GROUPS):
        idx = list(members)
        source = canonical[idx] - canonical[idx].mean(axis=0)          # [n, 2]
        target_abs = observed[..., idx, :]                             # [..., n, 2]
        centroid = target_abs.mean(axis=-2)
        target = target_abs - centroid[..., None, :]
        # Least squares J = argmin Σ‖y − J x‖² + λ‖J − S‖², S the best similarity.
        cross = np.einsum("...ni,nj->...ij", target, source)          # Σ y xᵀ  [..., 2, 2]
        gram = source.T @ source                                       # Σ x xᵀ  [2, 2]
        spread = np.trace(gram)
        # the similarity [[a, −b], [b, a]]
        a = (cross[..., 0, 0] + cross[..., 1, 1]) / spread
        b = (cross[..., 1, 0] - cross[..., 0, 1]) / spread
        similarity = np.stack([np.stack([a, -b], -1), np.stack([b, a], -1)], -2)
        lam = SIMILARITY_PRIOR * spread
        jacobian = (cross + lam * similarity) @ np.linalg.inv(gram + lam * np.eye(2))
        out[..., k, :2] = centroid
        out[..., k, 2:] = jacobian.reshape(jacobian.shape[:-2] + (4,))
    return out.astype(np.float32)


def decode(keypoints: np.ndarray, canonical: np.ndarray | None = None) -> np.ndarray:
    """Keypoints ``[..., 10, 6]`` → landmarks ``[..., 68, 2]`` float32 by the first-order model
    ``l = p_k + J_k (c_l − c̄_k)``."""
    keypoints = np.asarray(keypoints, np.float64)
    if keypoints.ndim < 2 or keypoints.shape[-2:] != (N_KEYPOINTS, KEYPOINT_DIM):
        raise ValueError(f"keypoints must be [..., 10, 6]; got {tuple(keypoints.shape)}")
    canonical = mean_face() if canonical is None else np.asarray(canonical, np.float64)
    offsets = np.empty((N_LANDMARKS, 2))
    for members in GROUPS:
        idx = list(members)
        offsets[idx] = canonical[idx] - canonical[idx].mean(axis=0)
    value = keypoints[..., GROUP_OF, :2]                               # [..., 68, 2]
    jacobian = keypoints[..., GROUP_OF, 2:].reshape(keypoints.shape[:-2] + (N_LANDMARKS, 2, 2))
    return (value + np.einsum("...lij,lj->...li", jacobian, offsets)).astype(np.float32)


def mirror(landmarks: np.ndarray) -> np.ndarray:
    """The landmarks ``[..., 68, 2]`` of the horizontally mirrored crop (x → −x, left and right
    points swapped), for the flip augmentation."""
    flipped = _check(landmarks)[..., anatomy.MIRROR, :].copy()
    flipped[..., 0] *= -1
    return flipped


def build_mean_face(landmarks: np.ndarray, iterations: int = 10) -> np.ndarray:
    """Generalised Procrustes mean ``[68, 2]`` of faces ``[N, 68, 2]``: each face aligned to the
    running mean by a similarity, the mean then placed at the faces' average centroid and size
    (so a frontal face in the crop has jacobians near the identity)."""
    faces = _check(landmarks).astype(np.float64)
    if faces.ndim != 3 or len(faces) == 0:
        raise ValueError(f"landmarks must be [N, 68, 2] with N > 0; got {faces.shape}")
    centroids = faces.mean(axis=1, keepdims=True)
    centred = faces - centroids
    sizes = np.sqrt((centred ** 2).sum(axis=(1, 2)))
    shapes = centred / sizes[:, None, None]
    mean = shapes[0]
    for _ in range(iterations):
        aligned = []
        for shape in shapes:
            u, _, vt = np.linalg.svd(shape.T @ mean)
            rotation = u @ vt
            aligned.append(shape @ rotation * np.trace((shape @ rotation).T @ mean)
                           / np.trace(shape.T @ shape))
        mean = np.mean(aligned, axis=0)
        mean /= np.sqrt((mean ** 2).sum())
    return mean * sizes.mean() + centroids.mean(axis=0)
