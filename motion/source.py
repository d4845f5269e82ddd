"""The source image's side of generation: the face crop, the first frame x0 ``[10, 6]`` in the
model's keypoint space and the map from the model's coordinates to the crop's (docs/design.md,
"Keypoint spaces", "Generation pipeline").

:func:`prepare_source` is the one place a photo becomes a :class:`SourceFace`; the offline
pipeline (``motion.talking_head``) and the streaming one (``motion.stream``) both start from it,
so they crop and pose the face alike:

- ``landmarks-v1``: the model runs from the corpus's mean face (``landmark_space.mean_face``,
  in its training framing) and its motion is carried onto the source's own keypoints (the
  landmark-space encoding of the crop's 68 dlib landmarks, or the mean face in the crop's face
  box when dlib finds none, scaled into that framing by :func:`model_frame_scale`) relatively,
  as FOMM's relative mode does: ``p = p_src + (p_gen − p_mean)``, ``J = J_gen J_mean⁻¹ J_src``.
  Run from a face's own shape, a generator trained on a few hundred speakers pulls that shape
  towards theirs (a smile twisted into a smirk, brows lowered into a frown); from the mean face
  it starts where it was trained, and the photo keeps its own expression;
- ``phantom-v1``: the phantom template in the corpus's typical face box, mapped onto the
  detected face by a similarity (uniform scale + shift of the positions);
- FOMM spaces: the KPDetector on the crop (resized to FOMM's 256×256), identity map.
"""
from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from render.keypoints import join
from syncers.data import face, head_pose, landmark_space, landmarks
from syncers.data.layout import LANDMARK_SPACE, PHANTOM_SPACE
from syncers.data.phantom.template import fit_to_box

# The phantom corpus draws each speaker's face box around this centre with about this half side
# (syncers.data.phantom.motion.synth_clip: centre x ∈ ±0.1, y ∈ [−0.15, 0.05], half width 0.30–0.45,
# height 1.0–1.2× the width). A phantom model runs in such a box; its output is then mapped onto
# the detected face by a similarity (scale + shift), which leaves the jacobians unchanged.
PHANTOM_BOX_CENTRE = (0.0, -0.05)
PHANTOM_BOX_HALF = 0.39
FOMM_SIZE = 256               # the vox-256 checkpoints' resolution


@dataclasses.dataclass(frozen=True)
class SourceFace:
    """A photo ready to animate: ``crop`` (``syncers.data.face.FaceCrop``, its image
    ``[S, S, 3]`` float in [0, 1]), the 68 ``landmarks [68, 2]`` on it (``landmarks-v1`` models,
    else None), ``x0 [10, 6]`` the generator starts from (the model's frame) and ``to_image``,
    the map of the model's keypoints ``[..., 10, 6]`` onto the crop's coordinates."""

    crop: Any
    landmarks: np.ndarray | None
    x0: np.ndarray
    to_image: Callable[[np.ndarray], np.ndarray]

    @property
    def keypoints(self) -> np.ndarray:
        """The source's own pose ``[10, 6]`` in the crop's coordinates: what the renderer warps
        from. Frame 0 of a generation carries the articulation of the first 40 ms, so it is not
        used: a mouth opened there would make every quieter frame close the photo's mouth."""
        return np.asarray(self.to_image(self.x0), np.float32)

    @property
    def size(self) -> int:
        return int(self.crop.image.shape[0])


def prepare_source(image: np.ndarray, space: str, *, crop: bool = True, size: int = 256,
                   crop_scale: float = 1.8, fomm=None, image_name: str | None = None
                   ) -> SourceFace:
    """``image [H, W, 3]`` (float in [0, 1] or uint8) → :class:`SourceFace` for a model of
    keypoint space ``space``: a ``size``² square crop ``crop_scale`` times the face box's side
    around the largest face (``crop=False``: the image's centre square,
    ``syncers.data.face.no_crop``), its landmarks when the space needs them, x0 and the map
    (:func:`source_keypoints`; FOMM's KPDetector with ``fomm``). ``image_name`` names the image
    in the one-line error raised when it shows no face, or one turned to the side
    (``syncers.data.head_pose.check_frontal``)."""
    image = np.asarray(image)
    # copy=False: a 6000x4000 photo is 288 MB of float32, not to be copied for reading
    image = image.astype(np.float32) / 255.0 if image.dtype == np.uint8 else \
        image.astype(np.float32, copy=False)
    if crop:
        face_crop = face.crop(image, size=size, margin=(crop_scale - 1) / 2, path=image_name)
        found = landmarks.crop_landmarks(face_crop.image)
        if found is not None:       # a face turned to the side is refused, whatever the space
            head_pose.check_frontal(found, face_crop.face_box, image_name)
    else:
        face_crop = face.no_crop(image, size)
        found = landmarks.crop_landmarks(face_crop.image) if space == LANDMARK_SPACE else None
    points = _placed(found, face_crop) if space == LANDMARK_SPACE else None
    x0, to_image = source_keypoints(face_crop, fomm, space, points)
    return SourceFace(face_crop, points, np.asarray(x0, np.float32), to_image)


def source_landmarks(crop) -> np.ndarray:
    """The source's 68 landmarks ``[68, 2]`` on the crop: dlib's, or the mean face placed in the
    crop's face box when dlib finds no face (``--no-crop`` on a painting or a cartoon)."""
    return _placed(landmarks.crop_landmarks(crop.image), crop)


def _placed(found_68x2: np.ndarray | None, crop) -> np.ndarray:
    """dlib's landmarks ``[68, 2]`` on the crop, or the mean face in its face box when None."""
    return found_68x2 if found_68x2 is not None else landmark_space.template(crop.face_box)


def model_frame_scale(face_box: tuple[float, float, float, float]) -> float:
    """The factor from a crop's normalised coordinates to those of a training crop (whose face
    box is ``1 / face.TRAINING_CROP_SCALE`` of its side), from the face box's half side in the
    crop: 1 for a training crop, 2 for a crop twice as loose."""
    x0, y0, x1, y1 = face_box
    half = ((x1 - x0) + (y1 - y0)) / 4
    return float(1.0 / face.TRAINING_CROP_SCALE / half)


def source_keypoints(crop, fomm, space: str = PHANTOM_SPACE, points: np.ndarray | None = None
                     ) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """x0 ``[10, 6]`` in the model's frame and the map from it to the crop's image coordinates.

    FOMM: the KPDetector on the crop, identity map. Landmarks: the landmark-space encoding of
    the source's landmarks (``points``, default :func:`source_landmarks`) in the model's
    training framing, scaled back by the map.
    Phantom: the template in the corpus's typical face box, mapped onto the detected face
    (uniform scale + shift of the positions).
    """
    if fomm is not None:
        image = face.resize_frames(crop.image[None], FOMM_SIZE)
        return join(fomm.keypoints(image))[0].astype(np.float32), _identity
    if space == LANDMARK_SPACE:
        points = source_landmarks(crop) if points is None else points
        # The model moves faces framed as in its training crops (the face box 1/1.5 of the
        # side); this crop may be looser (--crop-scale, --no-crop). Positions and jacobians
        # scale together about the crop's centre (encode is linear in the landmarks).
        k = np.float32(model_frame_scale(crop.face_box))
        return relative_transfer(landmark_space.encode(points) * k,
                                 landmark_space.encode(landmark_space.mean_face()), k)
    x0, y0, x1, y1 = crop.face_box
    centre = np.array([(x0 + x1) / 2, (y0 + y1) / 2], np.float32)
    half = np.array([(x1 - x0) / 2, (y1 - y0) / 2], np.float32)
    scale = np.float32(half.mean() / PHANTOM_BOX_HALF)
    model_centre = np.asarray(PHANTOM_BOX_CENTRE, np.float32)
    model_half = half / scale                    # the face's aspect at the corpus's size
    x0_model = fit_to_box((*(model_centre - model_half), *(model_centre + model_half)))

    def to_image(kp_Tx10x6: np.ndarray) -> np.ndarray:
        out = np.array(kp_Tx10x6, np.float32)
        out[..., :2] = centre + scale * (out[..., :2] - model_centre)
        return out

    return x0_model, to_image


def relative_transfer(source_Kx6: np.ndarray, start_Kx6: np.ndarray, scale: float
                      ) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]]:
    """``(start, map)``: the model runs from ``start`` ``[K, 6]``; the map carries its keypoints
    ``[..., K, 6]`` onto ``source`` ``[K, 6]`` (both in the model's frame) by FOMM's relative
    motion, ``p = p_src + (p − p_start)``, ``J = J J_start⁻¹ J_src``, then divides by ``scale``
    (the model frame to the crop's). ``map(start)`` is ``source / scale``."""
    source = np.asarray(source_Kx6, np.float32)
    start = np.asarray(start_Kx6, np.float32)
    n = source.shape[0]
    jacobian_src = source[:, 2:].reshape(n, 2, 2)
    # pinv: a degenerate start (a recorded clip's first frame) keeps the map finite
    start_inverse = np.linalg.pinv(start[:, 2:].reshape(n, 2, 2))
    carry = (start_inverse @ jacobian_src).astype(np.float32)          # [K, 2, 2]

    def to_image(kp_TxKx6: np.ndarray) -> np.ndarray:
        kp = np.asarray(kp_TxKx6, np.float32)
        out = np.empty_like(kp)
        out[..., :2] = source[:, :2] + (kp[..., :2] - start[:, :2])
        jacobian = kp[..., 2:].reshape(kp.shape[:-1] + (2, 2)) @ carry
        out[..., 2:] = jacobian.reshape(kp.shape[:-1] + (4,))
        return out / np.float32(scale)

    return start, to_image


def _identity(kp: Any) -> Any:
    return kp
