"""``--size 512`` is drawn at 512 from the photo (issue 38): the crop is cut from the photo's
pixels straight to 512² and the mesh draws at the crop's size, so a photo whose face is large
enough gives frames with more detail than a 256 video enlarged (docs/design.md, "Generation
pipeline", "Size")."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from skimage import data

from motion import source
from render import renderer as render_api
from syncers.data import face
from syncers.data.layout import LANDMARK_SPACE


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    """The astronaut at 2048² (float in [0, 1]): her face box ~350 pixels, its 1.8× crop ~630,
    more than 512."""
    big = Image.fromarray(data.astronaut()).resize((2048, 2048), Image.LANCZOS)
    return np.asarray(big, np.float32) / 255


def detail(frames: np.ndarray) -> float:
    """Mean squared Laplacian of the frames' grey levels ``[..., S, S, 3]``, per pixel: the
    energy of the highest spatial frequencies."""
    grey = np.asarray(frames, np.float64).mean(axis=-1)
    lap = (grey[..., 1:-1, :-2] + grey[..., 1:-1, 2:] + grey[..., :-2, 1:-1]
           + grey[..., 2:, 1:-1] - 4 * grey[..., 1:-1, 1:-1])
    return float(np.mean(lap ** 2))


def enlarged(frames: np.ndarray, size: int) -> np.ndarray:
    return face.resize_frames(frames, size)


@pytest.fixture(scope="module")
def sources(photo):
    return {size: source.prepare_source(photo, LANDMARK_SPACE, size=size) for size in (256, 512)}


def test_the_512_crop_is_cut_from_the_photo(photo, sources):
    small, large = sources[256].crop, sources[512].crop
    assert small.box == large.box                      # one face box, one crop box
    x0, y0, x1, y1 = large.box
    assert x1 - x0 > 512, large.box                    # the photo holds more than 512 pixels
    patch = photo[y0:y1, x0:x1]
    np.testing.assert_array_equal(large.image, face.resize_frames(patch[None], 512)[0])
    up = enlarged(small.image[None], 512)[0]
    # measured 2.1x: the 726-pixel crop box holds that much more than 256 pixels keep
    assert detail(large.image) > 1.6 * detail(up), (detail(large.image), detail(up))


def test_the_mesh_draws_512_frames_at_512(sources):
    frames = {}
    for size, photo_source in sources.items():
        drawn = render_api.prepare("mesh", photo_source.crop.image, photo_source.keypoints,
                                   photo_source.landmarks, chunk=1)
        assert drawn.size == size
        kp = np.repeat(photo_source.keypoints[None], 2, axis=0)
        kp[1, 8:, 1] += 0.03                           # the lips move: a drawn frame
        frames[size] = drawn.render(kp)
        assert frames[size].shape == (2, size, size, 3)
    # posed as the photo, the frame is the photo's crop (a few painted pixels aside)
    assert np.mean(np.abs(frames[512][0] - sources[512].crop.image)) < 0.01
    up = enlarged(frames[256], 512)
    for t in range(2):
        assert detail(frames[512][t]) > 1.6 * detail(up[t]), (detail(frames[512][t]),
                                                              detail(up[t]))
