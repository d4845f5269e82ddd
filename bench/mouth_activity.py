"""Does the mouth move with the speech? The mouth-activity measure of a talking-head video.

Per frame, the mean absolute pixel change of the mouth region relative to the clip's median
frame (the mouth box comes from dlib's landmarks on that median frame, widened by a margin),
correlated (Pearson r) with the speech envelope, the RMS of the same 40 ms frames (25 fps); the
best lag of 0–3 frames with the video lagging the audio is kept (``syncers.data.measures``:
``frame_rms``, ``best_lag_r``; r is NaN where the change is constant). On real clips of the corpus r
is 0.1–0.35; a still photo gives r ≈ 0. Prints one JSON object ``{r, lag, n_frames}``:

    .venv/bin/python bench/mouth_activity.py VIDEO.mp4 [--audio SPEECH.wav]

From Python: ``bench.mouth_activity.mouth_activity(video, audio=None)`` (paths) or
``activity_r(frames, samples)`` (arrays).
"""
from __future__ import annotations

import argparse
import json
import os

import numpy as np

from syncers.data import anatomy, features, measures
from syncers.data import landmarks as lm
from syncers.data import video as video_io
from syncers.data.layout import FPS, SAMPLE_RATE
from syncers.run.errors import InputError

MARGIN = 0.35          # of the mouth's width, added on each side of its landmark box


def mouth_box(frame: np.ndarray) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` pixels of the mouth (landmarks 48–67) of the largest face in
    ``frame [H, W, 3]``, widened by ``MARGIN`` of the mouth's width; ValueError without a face."""
    faces = lm.detect_faces(frame)
    if not faces:
        raise ValueError("no face found in the median frame")
    mouth = lm.landmarks(frame, faces[0])[anatomy.MOUTH]
    (x0, y0), (x1, y1) = mouth.min(axis=0), mouth.max(axis=0)
    pad = MARGIN * (x1 - x0)
    h, w = frame.shape[:2]
    return (int(max(0, x0 - pad)), int(max(0, y0 - pad)),
            int(min(w, np.ceil(x1 + pad))), int(min(h, np.ceil(y1 + pad))))


def activity(frames: np.ndarray) -> np.ndarray:
    """Mouth change per frame ``[T]`` (mean |frame − median| over the mouth box, 0–1 scale) of
    ``frames [T, H, W, 3]`` uint8."""
    median = np.median(frames, axis=0).astype(np.uint8)
    x0, y0, x1, y1 = mouth_box(median)
    region = frames[:, y0:y1, x0:x1].astype(np.float32)
    return np.abs(region - median[y0:y1, x0:x1].astype(np.float32)).mean(axis=(1, 2, 3)) / 255.0


def activity_r(frames: np.ndarray, samples: np.ndarray) -> dict:
    """``{r, lag, n_frames, r_by_lag}`` for ``frames [T, H, W, 3]`` uint8 at 25 fps and their
    16 kHz speech ``samples [N]``."""
    min_frames = max(measures.ENVELOPE_LAGS) + measures.MIN_PAIRS
    if frames.ndim != 4 or frames.shape[-1] != 3 or len(frames) < min_frames:
        raise ValueError(f"frames must be [T, H, W, 3] with T >= {min_frames}; "
                         f"got {tuple(frames.shape)}")
    change = activity(frames)
    n = min(len(change), int(np.ceil(len(samples) / (SAMPLE_RATE // FPS))))
    envelope = measures.frame_rms(samples, n)
    r, lag = measures.best_lag_r(change[:n], envelope)
    by_lag = measures.lagged_r(change[:n], envelope, measures.ENVELOPE_LAGS)
    return {"r": round(r, 4), "lag": lag, "n_frames": int(n),
            "r_by_lag": {k: round(float(v), 4) for k, v in zip(measures.ENVELOPE_LAGS, by_lag)}}


def mouth_activity(video: str | os.PathLike, audio: str | os.PathLike | None = None) -> dict:
    """The measure for an mp4 (or any video) and its speech (default: the video's own audio)."""
    frames = video_io.read_video(video, fps=FPS)
    samples = features.load_audio(audio if audio is not None else video)
    try:
        return activity_r(frames, samples)
    except ValueError as err:
        raise InputError(video, str(err)) from None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("video")
    p.add_argument("--audio", default=None, help="speech file (default: the video's audio)")
    args = p.parse_args()
    result = mouth_activity(args.video, args.audio)
    result.pop("r_by_lag")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
