"""Video I/O: H.264 + AAC round trip, audio-length policy, fps resampling, real clips, bad files."""
from __future__ import annotations

import numpy as np
import pytest

from syncers.data import video
from syncers.run.errors import InputError

FPS, SR = 25, 16000


def _frames(n, h=64, w=96):
    """Frame i is a flat grey of level 4·i (+ a gradient), so frame identity survives H.264."""
    y, x = np.mgrid[0:h, 0:w]
    base = (x * 40 // w)[..., None].repeat(3, -1)
    return np.stack([np.clip(4 * i + base, 0, 255) for i in range(n)]).astype(np.uint8)


def _tone(seconds):
    t = np.arange(int(seconds * SR)) / SR
    return (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


def test_round_trip_h264_aac(tmp_path):
    frames = _frames(50)
    path = tmp_path / "out.mp4"
    video.write_video(path, frames.astype(np.float32) / 255, fps=FPS, audio=_tone(2.0),
                      sample_rate=SR)
    info = video.probe(path)
    assert info.video_codec == "h264" and info.audio_codec == "aac" and info.has_audio
    assert info.fps == FPS and (info.width, info.height) == (96, 64)
    assert abs(info.duration - 2.0) < 0.05
    back = video.read_video(path, fps=FPS)
    assert back.shape == (50, 64, 96, 3) and back.dtype == np.uint8
    assert np.abs(back.astype(float) - frames).mean() < 3


@pytest.mark.parametrize("n_frames", [30, 80])
def test_video_is_as_long_as_the_audio(tmp_path, n_frames):
    path = tmp_path / "out.mp4"
    frames = _frames(n_frames)
    video.write_video(path, frames, fps=FPS, audio=_tone(2.0), sample_rate=SR)
    back = video.read_video(path)
    assert len(back) == 50 and abs(video.probe(path).duration - 2.0) < 0.05
    if n_frames < 50:    # padded by repeating the last frame
        assert np.abs(back[-1].astype(float) - frames[-1]).mean() < 3


def test_odd_size_without_audio(tmp_path):
    path = tmp_path / "odd.mp4"
    video.write_video(path, _frames(10, 33, 47), fps=FPS)
    info = video.probe(path)
    assert not info.has_audio and (info.width, info.height) == (48, 34)
    assert len(video.read_video(path)) == 10


def test_read_resamples_to_25_fps_by_nearest_timestamp(tmp_path):
    path = tmp_path / "fast.mp4"
    video.write_video(path, _frames(50), fps=50)          # 1 s at 50 fps
    back = video.read_video(path, fps=25)
    assert len(back) == 25
    levels = back[:, :, 0].astype(float).mean(axis=(1, 2)) - _frames(1)[0, :, 0].mean()
    np.testing.assert_allclose(levels, 8 * np.arange(25), atol=2)   # source frames 0, 2, 4, ...


def test_real_clips_read_as_200_frames_at_25_fps(real_media):
    for clip in sorted(real_media.glob("*.mp4")):
        frames = video.read_video(clip)
        assert abs(len(frames) - 200) <= 1 and frames.shape[1:] == (512, 512, 3), clip.name
        info = video.probe(clip)
        assert info.fps == 25 and abs(info.duration - 8.0) < 0.1


def test_track_box_on_a_real_clip(real_media):
    from syncers.data import face

    clip = sorted(real_media.glob("*.mp4"))[0]
    frames = video.read_video(clip)
    x0, y0, x1, y1 = face.track_box(frames, stride=40)
    assert 100 < x1 - x0 < 450 and 128 < (x0 + x1) / 2 < 384 and 64 < (y0 + y1) / 2 < 384


@pytest.mark.parametrize("content", [
    b"", b"this is not a video\n", b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8])
def test_corrupt_video_is_an_input_error(tmp_path, content):
    path = tmp_path / "broken.mp4"
    path.write_bytes(content)
    with pytest.raises(InputError, match="broken.mp4: "):
        video.read_video(path)


def test_truncated_real_clip_is_an_input_error(tmp_path, real_media):
    clip = sorted(real_media.glob("*.mp4"))[0]
    path = tmp_path / "cut.mp4"
    path.write_bytes(clip.read_bytes()[:20000])
    try:
        frames = video.read_video(path)   # a moov-first file may still give a few frames
    except InputError as err:
        assert "cut.mp4" in str(err)
    else:
        assert 0 < len(frames) < 200


def test_missing_video_is_an_input_error(tmp_path):
    with pytest.raises(InputError, match="nope.mp4: no such video file"):
        video.read_video(tmp_path / "nope.mp4")
    with pytest.raises(InputError, match="nope.mp4"):
        video.probe(tmp_path / "nope.mp4")
