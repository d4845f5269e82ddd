"""The four bad photos of issue 38, built from the bundled astronaut, through ``msync generate``:
a face filling the frame edge to edge (padded by edge replication, animated), a face turned to
the side (a profile refused in one line by dlib's frontal detector, or by
``syncers.data.head_pose`` when dlib still finds it crowded; three-quarter views animated), a
face under 40 pixels (found down to about 37 and enlarged; smaller refused in one line) and a
6000x4000 photo (detected on a shrunk copy, cropped at full resolution, in seconds and about
half a gigabyte)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile
from PIL import Image
from skimage import data

from motion import source
from motion.app import cli
from motion.app.ui import readable
from syncers.data import face, head_pose, landmarks
from syncers.data.layout import LANDMARK_SPACE
from syncers.data.video import read_video
from syncers.run.errors import InputError

# The astronaut's face as dlib boxes it in the 512x512 photo (x0, y0, x1, y1).
FACE = (179, 83, 267, 171)
NOSE_X = 223                 # the column of her nose


def _astronaut() -> np.ndarray:
    return data.astronaut()


def edge_to_edge() -> np.ndarray:
    """The face box alone, enlarged to 256x256: the face touches all four sides."""
    x0, y0, x1, y1 = FACE
    return np.asarray(Image.fromarray(_astronaut()[y0:y1, x0:x1]).resize((256, 256),
                                                                         Image.BICUBIC))


def turned(share: float) -> np.ndarray:
    """The astronaut with the half of her face right of the nose narrowed to ``share`` of its
    width (the rest of the row shifted in, the last column repeated): her far cheek crowds
    against the nose as a face turned to the side does."""
    img = _astronaut()
    width = 120
    out = img.copy()
    narrow = max(1, round(width * share))
    out[:, NOSE_X:NOSE_X + narrow] = np.asarray(Image.fromarray(
        img[:, NOSE_X:NOSE_X + width]).resize((narrow, img.shape[0]), Image.BILINEAR))
    rest = img[:, NOSE_X + width:]
    out[:, NOSE_X + narrow:NOSE_X + narrow + rest.shape[1]] = rest
    out[:, NOSE_X + narrow + rest.shape[1]:] = img[:, -1:]
    return out


def shrunk(side: int) -> np.ndarray:
    """The whole photo at ``side`` x ``side``: her face 88 · side / 512 pixels across."""
    return np.asarray(Image.fromarray(_astronaut()).resize((side, side), Image.BILINEAR))


def large(width: int = 6000, height: int = 4000) -> np.ndarray:
    """The photo enlarged to ``height`` pixels high, mirrored out to ``width``: her face about
    690 pixels across."""
    tall = np.asarray(Image.fromarray(_astronaut()).resize((height, height), Image.BILINEAR))
    side = (width - height) // 2
    return np.pad(tall, ((0, 0), (side, width - height - side), (0, 0)), mode="reflect")


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    """One second of the bundled speech."""
    from motion.talking_head import BUNDLED_SPEECH
    from syncers.data.features import load_audio
    path = tmp_path_factory.mktemp("speech") / "speech.wav"
    soundfile.write(path, load_audio(str(BUNDLED_SPEECH))[:16000], 16000)
    return path


def _generate(capsys, image, speech, out, *extra):
    code = cli.main(["generate", "--image", str(image), "--audio", str(speech),
                     "--out", str(out), *map(str, extra)])
    return code, capsys.readouterr().err


def _refused(capsys, tmp_path, name, pixels, speech, message):
    path = tmp_path / name
    Image.fromarray(pixels).save(path)
    out = tmp_path / "x.mp4"
    code, err = _generate(capsys, path, speech, out)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"msync: error: {path}: {message}"), err
    assert not out.exists()
    return err


# --------------------------------------------------------------------------- edge to edge

def test_a_face_filling_the_frame_is_padded_and_animated(tmp_path, capsys, speech):
    pixels = edge_to_edge()
    photo = source.prepare_source(pixels, LANDMARK_SPACE)
    x0, y0, x1, y1 = photo.crop.box
    assert x0 < 0 and y0 < 0 and x1 > 256 and y1 > 256, photo.crop.box     # padded all round
    # the landmarks are dlib's on the padded crop, not the mean face put in its place
    found = landmarks.crop_landmarks(photo.crop.image)
    assert found is not None
    np.testing.assert_array_equal(photo.landmarks, found)
    # the padding repeats the photo's edge: the crop's corner is the photo's corner pixel
    np.testing.assert_allclose(photo.crop.image[0, 0], pixels[0, 0] / 255.0, atol=1 / 255)
    Image.fromarray(pixels).save(tmp_path / "edge.png")
    code, err = _generate(capsys, tmp_path / "edge.png", speech, tmp_path / "edge.mp4")
    assert code == 0, err
    video = read_video(tmp_path / "edge.mp4")
    assert video.shape == (25, 256, 256, 3) and video.std() > 10


# --------------------------------------------------------------------------- turned face

def test_a_profile_dlib_does_not_find_is_one_line(tmp_path, capsys, speech):
    _refused(capsys, tmp_path, "profile.png", turned(0.2), speech,
             "no frontal face found; msync animates a face seen from the front")


def test_a_three_quarter_face_is_animated(tmp_path):
    # her far half narrowed to 30 %: side ratio 4.3, a face turned about 45 degrees, which the
    # mesh animates (so do the in-the-wild corpus's three-quarter views, head_pose's docstring)
    photo = source.prepare_source(turned(0.3), LANDMARK_SPACE)
    assert 3.8 <= head_pose.side_ratio(photo.landmarks) <= head_pose.MAX_SIDE_RATIO


def test_a_turned_face_dlib_finds_is_refused_by_its_landmarks(tmp_path, capsys, speech,
                                                              monkeypatch):
    # No synthetic face dlib still finds is turned past the limit (narrowed further, dlib
    # misses it: the test above); the path from the landmarks to the one line is checked with
    # the limit lowered under her 4.3, the limit itself on landmarks below.
    assert landmarks.detect_faces(turned(0.3)), "dlib should still find this face"
    monkeypatch.setattr(head_pose, "MAX_SIDE_RATIO", 3.0)
    err = _refused(capsys, tmp_path, "turned.png", turned(0.3), speech,
                   "the face is turned to the side (its nose is ")
    assert "at most 3x, about 55 degrees); msync animates a face seen from the front or " \
        "three-quarters, not in profile" in err


@pytest.mark.parametrize("share, low, high", [(1.0, 1.0, 1.1), (0.5, 1.8, 2.3),
                                              (0.4, 3.0, 3.5), (0.3, 3.8, 4.8)])
def test_the_side_ratio_grows_as_the_face_turns(share, low, high):
    crop = face.crop(turned(share).astype(np.float32) / 255, margin=0.4)
    ratio = head_pose.side_ratio(landmarks.crop_landmarks(crop.image))
    assert low <= ratio <= high, ratio


def test_the_refusal_logic_on_landmarks_directly():
    # the astronaut's own landmarks, frontal (the corpus's mean face is not: its ratio is 1.9)
    crop = face.crop(_astronaut().astype(np.float32) / 255, margin=0.4)
    mean = landmarks.crop_landmarks(crop.image).astype(np.float64)
    box = crop.face_box
    assert head_pose.side_ratio(mean) == pytest.approx(1.0, abs=0.1)
    head_pose.check_frontal(mean, box, "mean.png")                # passes
    nose = mean[head_pose.NOSE_TIP, 0]
    for squeeze, refused in ((0.5, False), (0.25, False), (0.05, True)):
        # the image's right half pulled towards the nose: a face turned away to the right
        side = mean.copy()
        right = side[:, 0] > nose
        side[right, 0] = nose + squeeze * (side[right, 0] - nose)
        assert head_pose.side_ratio(side) == pytest.approx(1 / squeeze, rel=0.2)
        if refused:
            with pytest.raises(InputError, match=r"^side.png: the face is turned to the side"):
                head_pose.check_frontal(side, box, "side.png")
        else:
            head_pose.check_frontal(side, box, "side.png")
    centre = mean.mean(axis=0)
    collapsed = centre + 0.05 * (mean - centre)                   # all 68 points on one spot
    with pytest.raises(InputError, match="landmarks of the detected face collapse"):
        head_pose.check_frontal(collapsed, box, "spot.png")
    with pytest.raises(InputError, match="collapse"):
        head_pose.check_frontal(np.full_like(mean, np.nan), box, "nan.png")
    beyond = mean.copy()                          # the nose beyond one cheek: no ratio at all
    beyond[head_pose.NOSE_TIP, 0] = mean[:, 0].max() + 0.1
    assert head_pose.side_ratio(beyond) == np.inf


# --------------------------------------------------------------------------- small face

def test_a_small_face_dlib_finds_is_enlarged_into_the_crop():
    photo = source.prepare_source(shrunk(200), LANDMARK_SPACE)     # her face ~34 pixels
    x0, y0, x1, y1 = photo.crop.box
    # the crop is 1.8 times her ~37-pixel box, enlarged to 256: about 4x
    assert 55 <= x1 - x0 <= 75, photo.crop.box
    assert photo.crop.image.shape == (256, 256, 3)
    assert head_pose.side_ratio(photo.landmarks) < 1.3


def test_a_face_too_small_to_find_is_one_line_naming_the_size(tmp_path, capsys, speech):
    _refused(capsys, tmp_path, "small.png", shrunk(150), speech,         # her face ~26 pixels
             "no frontal face found; msync animates a face seen from the front, at least "
             "about 40 pixels across; use --no-crop")


# --------------------------------------------------------------------------- large photo

def test_a_large_photo_is_searched_shrunk_and_cropped_at_full_resolution():
    pixels = large()
    photo = source.prepare_source(pixels, LANDMARK_SPACE, size=512)
    # her face where the enlarged photo has it: 4000 / 512 times the original box, shifted
    k, shift = 4000 / 512, 1000
    centre = ((FACE[0] + FACE[2]) / 2 * k + shift, (FACE[1] + FACE[3]) / 2 * k)
    x0, y0, x1, y1 = photo.crop.box
    side = 1.8 * (FACE[2] - FACE[0]) * k
    # dlib's boxes at two scales of one face differ by a few per cent of its side
    assert abs((x0 + x1) / 2 - centre[0]) < 0.06 * side
    assert abs((y0 + y1) / 2 - centre[1]) < 0.06 * side
    assert abs((x1 - x0) - side) < 0.1 * side
    # cut from the full-resolution photo's pixels in the box, not from the shrunk copy
    patch = pixels[y0:y1, x0:x1].astype(np.float32) / 255
    np.testing.assert_array_equal(photo.crop.image, face.resize_frames(patch[None], 512)[0])


def test_a_face_too_small_for_a_large_photo_names_the_size_looked_for():
    canvas = np.full((2000, 3000, 3), 0.5, np.float32)
    canvas[:512, :512] = _astronaut() / 255.0              # her 88-pixel face in 3000x2000
    with pytest.raises(InputError, match=r"^big.png: no frontal face found; .* at least about "
                                         r"188 pixels across in a photo this large"):
        face.crop(canvas, path="big.png")


_LARGE_PHOTO_RUN = """
import json, resource, sys, time
start = time.perf_counter()
from motion import source
from syncers.data import face
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
image = face.load_image(sys.argv[1])
photo = source.prepare_source(image, "landmarks-v1", size=512, image_name=sys.argv[1])
print(json.dumps({"seconds": time.perf_counter() - start, "base_kb": base,
                  "peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
                  "shape": list(photo.crop.image.shape)}))
"""


def test_a_6000x4000_photo_takes_seconds_and_little_memory(tmp_path):
    path = tmp_path / "large.jpg"
    Image.fromarray(large()).save(path, quality=90)
    run = subprocess.run([sys.executable, "-c", _LARGE_PHOTO_RUN, str(path)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["shape"] == [512, 512, 3]
    # 288 MB of float32 pixels, the decoded bytes and a few bands for detection: ~0.5 GB
    # (1.2 GB before issue 38: float64 decoding, float copies for dlib and for the crop)
    grown_mb = (report["peak_kb"] - report["base_kb"]) / 1024
    assert grown_mb < 700, report
    assert report["seconds"] < 30, report          # ~5 s on the loaded 2-core CPU


# --------------------------------------------------------------------------- the page

def test_the_page_shows_the_same_line(monkeypatch):
    monkeypatch.setattr(head_pose, "MAX_SIDE_RATIO", 3.0)      # her 4.3 refused, as above
    for pixels, problem in ((turned(0.3), "the face is turned to the side"),
                            (shrunk(150), "no frontal face found")):
        with pytest.raises(InputError) as caught:
            source.prepare_source(pixels, LANDMARK_SPACE, image_name="/tmp/gradio/a/x.png")
        text = readable(caught.value, {"/tmp/gradio/a/x.png": "the photo"})
        assert text.startswith(f"the photo: {problem}") and "/tmp" not in text, text
    assert text.endswith("tick \u201cNo face detection\u201d to animate the centre of the "
                         "picture"), text
