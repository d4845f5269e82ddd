"""The time base and keypoint layout every part of msync shares (docs/design.md, "Data model").

Video runs at 25 fps and audio at 16 kHz, so one video frame is 40 ms = 640 samples; audio
features run at 100 Hz (a hop of 160 samples), so feature rows ``4t .. 4t+3`` belong to video
frame ``t``. A keypoint frame is ``[10, 6]``: 10 keypoints of ``(x, y, j11, j12, j21, j22)``,
positions in [-1, 1] (x right, y down) and the row-major 2×2 jacobian.

Keypoint spaces name what the 10 keypoints are: ``phantom-v1`` (the phantom corpus's face
template, ``syncers.data.phantom.template``, drawn by the warp renderer), ``landmarks-v1`` (the
68 dlib landmarks grouped into 10 first-order keypoints, ``syncers.data.landmark_space``, drawn
by the warp renderer) and ``fomm-vox256`` (FOMM's learned keypoints, drawn by FOMM). A model and
a renderer must share one.
"""
from __future__ import annotations

FPS = 25                                     # video frames per second
SAMPLE_RATE = 16_000                         # audio samples per second
SAMPLES_PER_FRAME = SAMPLE_RATE // FPS       # 640: 40 ms
# Input audio is read at any rate in this range (telephone speech to studio masters); a
# header outside it (a "1 Hz" wav) is refused rather than resampled into gigabytes.
MIN_INPUT_RATE, MAX_INPUT_RATE = 4_000, 768_000
FEATURE_HOP = 160                            # samples per audio-feature row: 100 Hz
FEATURES_PER_FRAME = SAMPLES_PER_FRAME // FEATURE_HOP   # 4 feature rows per video frame

N_KEYPOINTS = 10
KEYPOINT_DIM = 6                             # (x, y) and the row-major 2×2 jacobian

PHANTOM_SPACE = "phantom-v1"
LANDMARK_SPACE = "landmarks-v1"
FOMM_SPACE = "fomm-vox256"
PHANTOM_RIGID = (0, 1, 2, 3, 4)              # brows, eyes, nose: the phantom's head-pose subset
