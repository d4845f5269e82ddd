"""The phantom corpus: synthetic talking heads with known multi-scale speech/motion coupling
(docs/design.md, "Phantom corpus"; ``msync data synth``).

:mod:`syncers.data.phantom.audio` plans and renders the speech, :mod:`syncers.data.phantom.motion`
makes a clip's keypoints from the same plan (lips follow the syllable envelope at ``lip_lag``, head
nods follow band-passed speech energy at ``head_lag`` plus an equal-power uncoupled drift); this
module writes corpora of them (``<out>/<split>/phantom-NNNNN.{npz,wav}`` + ``manifest.json``,
80/10/10 splits by clip index) and holds the measurements tests and reports use to check the
coupling from what a dataset user sees: the wav samples (their envelope is
``syncers.data.measures.frame_rms``) and the stored keypoints.
"""
from __future__ import annotations

import math
import os
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from syncers.data import dataset
from syncers.data.features import audio_features, feature_config
from syncers.data.layout import FPS
from syncers.data.phantom.motion import (  # noqa: F401 - re-exported for the corpus's users
    GENERATOR_VERSION,
    KEYPOINT_SPACE,
    MIN_SECONDS,
    PhantomClip,
    PhantomParams,
    band_pass,
    synth_clip,
)
from syncers.run.errors import InputError
from syncers.run.progress import bar as progress_bar

# --- measuring the coupling from what a dataset user sees (the wav and the keypoints) -------------

def lagged_correlation(motion: list[np.ndarray], audio: list[np.ndarray],
                       max_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """Pooled Pearson correlation of ``motion[t]`` with ``audio[t − lag]`` over clips.

    Each element is one clip's ``[T]`` signal (means are removed per clip). Returns
    ``lags [2L+1]`` (frames; positive = motion follows audio) and ``r [2L+1]``.
    """
    lags = np.arange(-max_lag, max_lag + 1)
    num, den_m, den_a = np.zeros(lags.size), np.zeros(lags.size), np.zeros(lags.size)
    for m, a in zip(motion, audio):
        m, a = m - m.mean(), a - a.mean()
        for i, lag in enumerate(lags):
            mm, aa = (m[lag:], a[:a.size - lag]) if lag >= 0 else (m[:lag], a[-lag:])
            num[i] += mm @ aa
            den_m[i] += mm @ mm
            den_a[i] += aa @ aa
    return lags, num / np.sqrt(den_m * den_a)


# --- the corpus -----------------------------------------------------------------------------------

def clip_id(index: int) -> str:
    return f"phantom-{index:05d}"


def _write_one(job: tuple) -> tuple[str, str, int]:
    """Worker: synthesise, featurise and write clip ``index``; returns (split, id, n_frames)."""
    out, seed, index, n_clips, seconds, coupling, features = job
    clip = synth_clip(seed, index, seconds, coupling)
    split = dataset.split_for(index, n_clips)
    dataset.write_clip(out, split, clip_id(index), clip.keypoints,
                       audio_features(clip.samples, features), samples=clip.samples,
                       meta={**clip.meta, "features": feature_config(features)})
    return split, clip_id(index), clip.keypoints.shape[0]


MAX_CLIPS = 100_000        # a corpus of 220 h at 8 s a clip
MAX_SECONDS = 3600.0       # one clip: an hour


def _check(out: Path, clips: int, seconds: float, seed: int,
           coupling: Mapping[str, float], features: str) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(out, "exists and is not a directory")
    if not 1 <= clips <= MAX_CLIPS:
        raise InputError("--clips", f"must be 1 to {MAX_CLIPS}; got {clips}")
    if not seconds >= MIN_SECONDS:
        raise InputError(None, f"--seconds {seconds:g} is too short: a clip must hold one "
                               f"1600 ms segment (at least {MIN_SECONDS:g} s)")
    if not seconds <= MAX_SECONDS:          # inf too
        raise InputError("--seconds", f"must be {MIN_SECONDS:g} to {MAX_SECONDS:g} seconds a "
                                      f"clip; got {seconds:g}")
    if seed < 0:
        raise InputError(None, f"--seed must be >= 0; got {seed}")
    for key, value in coupling.items():
        if key not in ("head", "lips") or not isinstance(value, (int, float)) \
                or not math.isfinite(value):
            raise InputError(None, f"--coupling {key}={value}: keys are head and lips, "
                                   "values finite numbers")
    if features not in ("logmel", "mfcc"):
        raise InputError(None, f"--features must be logmel or mfcc; got {features!r}")


def synth_corpus(out: str | os.PathLike, clips: int = 200, seconds: float = 8.0, seed: int = 0,
                 coupling: Mapping[str, float] | None = None, features: str = "logmel",
                 progress: bool = True, workers: int | None = None) -> dict[str, Any]:
    """Write a phantom corpus: ``<out>/<split>/phantom-NNNNN.{npz,wav}`` and ``manifest.json``.

    ``seconds`` is rounded to whole 40 ms video frames (the audio is exactly 640 samples per
    frame). Splits are 80/10/10 by clip index (:func:`syncers.data.dataset.split_for`). ``workers``
    processes (default: 2 when there are at least 16 clips and 2 CPUs) share the clips; the
    result does not depend on it. Returns a summary dict (clips, seconds of audio, splits,
    wall_s). Bad arguments or an ``out`` that is a file raise :class:`InputError`.
    """
    started = time.perf_counter()
    out = Path(out)
    coupling = {"head": 1.0, "lips": 1.0, **dict(coupling or {})}
    _check(out, clips, seconds, seed, coupling, features)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise InputError(out, f"cannot create the directory ({err.strerror})") from None
    jobs = [(str(out), seed, i, clips, seconds, coupling, features) for i in range(clips)]
    if workers is None:
        workers = 2 if clips >= 16 and (os.cpu_count() or 1) >= 2 else 1
    bar = progress_bar(clips, "synth", "clip", disable=not progress)
    if workers > 1:
        import multiprocessing
        # spawn, not fork: the parent may have JAX (and its threads) loaded.
        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            results = []
            for result in pool.imap(_write_one, jobs, chunksize=4):
                results.append(result)
                bar.update()
    else:
        results = []
        for job in jobs:
            results.append(_write_one(job))
            bar.update()
    bar.close()
    splits: dict[str, list[tuple[str, int]]] = {s: [] for s in dataset.SPLITS}
    for split, clip_id, n_frames in results:
        splits[split].append((clip_id, n_frames))
    n_frames = results[0][2]
    dataset.write_manifest(out, splits, KEYPOINT_SPACE, feature_config(features), fps=float(FPS),
                           extra={"generator": "syncers.data.phantom.corpus",
                                  "generator_version": GENERATOR_VERSION, "seed": seed,
                                  "seconds": n_frames / FPS, "coupling": coupling,
                                  "params": PhantomParams().to_meta()})
    return {"out": str(out), "clips": clips, "seconds": clips * n_frames / FPS,
            "splits": {s: len(v) for s, v in splits.items()},
            "wall_s": time.perf_counter() - started}
