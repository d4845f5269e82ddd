"""Long-horizon evaluation of a generator: does minute-long motion stay natural?
(docs/design.md, "Long generation").

A generator that integrates velocities (eq. 9) can walk off: a small bias or an unstable
feedback makes the face leave its rest pose, speed up, or the mouth open wider and wider. These
measures compare a long rollout with the ground truth of the same clip, driven by that clip's
own audio, over the same time windows:

- ``displacement``: mean over the rigid keypoints 0–4 (brows, eyes, nose) of ‖p_t − p_0‖₂ at
  each horizon (10, 30, 60 s), generated and ground truth;
- per window (the first and the last ``window_s`` seconds): the position distribution of every
  keypoint as the Wasserstein-1 distance to the ground truth's distribution over the whole
  sequence (the sum of the x and y 1-D distances), beside the same distance between the two
  disjoint halves of the ground truth (how much a real sequence differs from itself) and beside
  the same distance for the ground truth's own motion re-centred at its first frame
  (:func:`start_recentred`: the best a generator that sees only frame 0 can reach, since where
  the head rests over the minute is not in that frame); the speed and acceleration of the
  positions (mean ‖Δp‖, ‖Δ²p‖ per frame) of generated over ground truth; and the mouth opening
  during speech and during pauses;
- pauses and mouth opening as ``syncers.data.measures`` defines them (``pauses``,
  ``keypoint_mouth_opening``).
"""
from __future__ import annotations

import numpy as np
from scipy.stats import wasserstein_distance

from syncers.data.layout import FPS
from syncers.data.measures import keypoint_mouth_opening, pauses

RIGID = (0, 1, 2, 3, 4)
HORIZONS_S = (10, 30, 60)
WINDOW_S = 10


def displacement(keypoints_Tx10x6: np.ndarray) -> np.ndarray:
    """``[T]``: mean over the rigid keypoints of ‖p_t − p_0‖₂."""
    p = np.asarray(keypoints_Tx10x6, np.float64)[:, list(RIGID), :2]
    return np.linalg.norm(p - p[:1], axis=-1).mean(axis=-1)


def position_w1(a_Tx10x6: np.ndarray, b_Sx10x6: np.ndarray) -> np.ndarray:
    """``[10]``: per keypoint, W1(x) + W1(y) between the positions of two sequences."""
    return np.array([sum(wasserstein_distance(a_Tx10x6[:, k, c], b_Sx10x6[:, k, c])
                         for c in (0, 1)) for k in range(a_Tx10x6.shape[1])])


def start_recentred(gt_Tx10x6: np.ndarray) -> np.ndarray:
    """``[T, 10, 6]``: the ground truth moved so that the mean of each value sits at its first
    frame. A generator started at frame 0 cannot know the speaker's mean pose over the sequence
    (on the phantom corpus a speaker's face box is drawn over ±0.1 of the frame, and the head
    moves about 0.02 around it), so this is the sequence it would make with perfect dynamics and
    no drift."""
    gt = np.asarray(gt_Tx10x6, np.float64)
    return gt + (gt[:1] - gt.mean(axis=0, keepdims=True))


def _speed(x_Tx10x6: np.ndarray, order: int) -> float:
    return float(np.linalg.norm(np.diff(x_Tx10x6[..., :2], n=order, axis=0), axis=-1).mean())


def _mouth_summary(opening: np.ndarray | None, paused: np.ndarray) -> dict | None:
    if opening is None:
        return None
    speech = opening[~paused]
    quiet = opening[paused]
    return {"speech_mean": float(speech.mean()) if speech.size else None,
            "pause_mean": float(quiet.mean()) if quiet.size else None,
            "pause_p75": float(np.quantile(quiet, 0.75)) if quiet.size else None,
            "pause_frames": int(paused.sum())}


def compare(generated_Tx10x6: np.ndarray, gt_Tx10x6: np.ndarray, audio_features_4TxF: np.ndarray,
            space: str, horizons_s=HORIZONS_S, window_s: int = WINDOW_S) -> dict:
    """The long-horizon measures of one generated sequence against the ground truth of the
    same clip (both ``[T, 10, 6]``, frame 0 shared) and its audio features ``[4T, F]``."""
    gen = np.asarray(generated_Tx10x6, np.float64)
    gt = np.asarray(gt_Tx10x6, np.float64)
    if gen.shape != gt.shape or gen.ndim != 3 or gen.shape[1:] != (10, 6):
        raise ValueError(f"generated and ground truth must both be [T, 10, 6]; got {gen.shape} "
                         f"and {gt.shape}")
    n_frames = gen.shape[0]
    out: dict = {"frames": n_frames, "finite": bool(np.isfinite(gen).all())}
    if not out["finite"]:
        return out
    d_gen, d_gt = displacement(gen), displacement(gt)
    # A 60 s clip holds frames 0..1499: its last frame stands for the 60 s horizon.
    at = {h: min(FPS * h, n_frames - 1) for h in horizons_s if FPS * h <= n_frames}
    out["displacement"] = {f"{h}s": {"generated": float(d_gen[t]), "gt": float(d_gt[t])}
                           for h, t in at.items()}
    half = n_frames // 2
    halves = position_w1(gt[:half], gt[half:])
    recentred = start_recentred(gt)
    paused = pauses(audio_features_4TxF)[:n_frames]
    open_gen, open_gt = keypoint_mouth_opening(gen, space), keypoint_mouth_opening(gt, space)
    size = FPS * window_s
    windows = {"first": slice(0, min(size, n_frames)),
               "last": slice(max(0, n_frames - size), n_frames)}
    for name, span in windows.items():
        w1 = position_w1(gen[span], gt)
        reachable = position_w1(recentred[span], gt)
        out[name] = {
            "w1_per_keypoint": w1.tolist(),
            "w1_gt_halves_per_keypoint": halves.tolist(),
            "w1_ratio_mean": float(np.mean(w1 / np.maximum(halves, 1e-9))),
            "w1_mean": float(w1.mean()), "w1_gt_halves_mean": float(halves.mean()),
            "w1_start_recentred_per_keypoint": reachable.tolist(),
            "w1_start_recentred_mean": float(reachable.mean()),
            # Means over keypoints, not a mean of ratios: a keypoint whose first frame happens
            # to sit at its mean has a reference near 0.
            "w1_ratio_to_start_recentred": float(w1.mean() / max(reachable.mean(), 1e-12)),
            "velocity_ratio": _speed(gen[span], 1) / max(_speed(gt[span], 1), 1e-12),
            "acceleration_ratio": _speed(gen[span], 2) / max(_speed(gt[span], 2), 1e-12),
            "mouth_generated": _mouth_summary(
                None if open_gen is None else open_gen[span], paused[span]),
            "mouth_gt": _mouth_summary(None if open_gt is None else open_gt[span], paused[span]),
        }
    return out


def aggregate(per_sequence: list[dict]) -> dict:
    """The mean of each measure over sequences (keys as :func:`compare`'s)."""
    finite = [r for r in per_sequence if r["finite"]]
    out: dict = {"sequences": len(per_sequence), "finite": len(finite) == len(per_sequence)}
    if not finite:
        return out
    out["displacement"] = {
        h: {who: float(np.mean([r["displacement"][h][who] for r in finite]))
            for who in ("generated", "gt")}
        for h in finite[0]["displacement"]}
    for name in ("first", "last"):
        entry = {}
        for key in ("w1_mean", "w1_gt_halves_mean", "w1_ratio_mean", "w1_start_recentred_mean",
                    "w1_ratio_to_start_recentred", "velocity_ratio", "acceleration_ratio"):
            entry[key] = float(np.mean([r[name][key] for r in finite]))
        for who in ("mouth_generated", "mouth_gt"):
            values = [r[name][who] for r in finite if r[name][who] is not None]
            if values:
                entry[who] = {k: _mean_or_none([v[k] for v in values])
                              for k in ("speech_mean", "pause_mean", "pause_p75")}
        out[name] = entry
    return out


def _mean_or_none(values):
    values = [v for v in values if v is not None]
    return float(np.mean(values)) if values else None


def plot(generated_Tx10x6: np.ndarray, gt_Tx10x6: np.ndarray, space: str, path) -> None:
    """Three trajectories, generated vs ground truth: the nose's x and y (head motion) and the
    mouth opening (or the lower lip's y where the space has no mouth measure)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gen, gt = np.asarray(generated_Tx10x6), np.asarray(gt_Tx10x6)
    seconds = np.arange(gen.shape[0]) / FPS
    open_gen, open_gt = keypoint_mouth_opening(gen, space), keypoint_mouth_opening(gt, space)
    rows = [("nose x (head turns)", gen[:, 4, 0], gt[:, 4, 0]),
            ("nose y (nods)", gen[:, 4, 1], gt[:, 4, 1])]
    rows.append(("mouth opening", open_gen, open_gt) if open_gen is not None
                else ("lower lip y", gen[:, 8, 1], gt[:, 8, 1]))
    figure, axes = plt.subplots(3, 1, figsize=(10, 7), sharex=True)
    for axis, (title, g, t) in zip(axes, rows):
        axis.plot(seconds, t, color="0.5", lw=0.8, label="ground truth")
        axis.plot(seconds, g, color="C3", lw=0.8, label="generated")
        axis.set_ylabel(title)
    axes[0].legend(loc="upper right")
    axes[-1].set_xlabel("seconds")
    figure.suptitle("Long generation from the clip's first frame, driven by its own audio")
    figure.tight_layout()
    figure.savefig(path, dpi=90)
    plt.close(figure)


# --------------------------------------------------------------------------- the record

# A long rollout "drifts" when its rigid keypoints end farther than this many times the ground
# truth's from where they started (the longest horizon measured: 60 s of a clip of its own, else
# 60 s of concatenated test audio against a test clip's end). Real and phantom heads stay within
# a band around their rest pose, so a generator that follows them ends within about 1–2 times
# the ground truth's displacement; one that walks off keeps growing past it.
DRIFT_RATIO_LIMIT = 3.0
RECORD_FORMAT = "msync-long-horizon"


def record(result: dict, *, step: int | None, params_sha256: str | None,
           measured_by: str) -> dict:
    """What ``msync evaluate --model`` records about a model's long rollouts (the sidecar
    ``long_horizon.json`` beside its ``model.json``, or ``model.json``'s ``long_horizon`` key):
    the 60 s drift (``motion.evaluate.drift``), the long-horizon summary when the split has clips
    of 60 s (:func:`aggregate`, without the per-sequence entries), the model step and parameter
    digest it was measured on, and the verdict (:func:`verdict`)."""
    drift = {k: v for k, v in (result.get("drift") or {}).items()
             if k in ("finite", "starts", "frames", "after_10s", "after_60s", "max_over_run",
                      "gt_end_of_clip", "gt_clip_seconds")}
    long = {k: v for k, v in (result.get("long_horizon") or {}).items()
            if k not in ("per_sequence",)}
    out = {"format": RECORD_FORMAT, "version": 1, "model_step": step,
           "params_sha256": params_sha256, "measured_by": measured_by, "drift": drift,
           "long_horizon": long}
    drifts, figures = verdict(out)
    out["verdict"] = {"drifts": drifts, "figures": figures,
                      "rule": f"drifts when the rigid keypoints end more than "
                              f"{DRIFT_RATIO_LIMIT:g} times as far from their start as the "
                              f"ground truth's, or a value is not finite"}
    return out


def width_percent(distance: float) -> float:
    """A distance in keypoint units (positions span −1…1 across the frame) as % of its width."""
    return 50.0 * distance


def percent_of_width(distance: float) -> str:
    """:func:`width_percent` in words: ``"4.4 % of the frame width"``."""
    return f"{width_percent(distance):.1f} % of the frame width"


def verdict(rec: dict) -> tuple[bool, str]:
    """``(drifts, the figures behind it)`` of a :func:`record` (see :data:`DRIFT_RATIO_LIMIT`)."""
    drift, long = rec.get("drift") or {}, rec.get("long_horizon") or {}
    if drift.get("finite") is False or (long.get("sequences") and long.get("finite") is False):
        return True, "its long rollouts reach NaN or infinite values"
    horizons = long.get("displacement") or {}
    if horizons:
        name = max(horizons, key=lambda h: float(h.rstrip("s")))
        gen, gt = horizons[name]["generated"], horizons[name]["gt"]
        figures = (f"rigid keypoints {percent_of_width(gen)} from their start after "
                   f"{name[:-1]} s, ground truth {percent_of_width(gt)}")
    elif drift.get("after_60s") is not None and drift.get("gt_end_of_clip") is not None:
        gen, gt = drift["after_60s"], drift["gt_end_of_clip"]
        figures = (f"rigid keypoints {percent_of_width(gen)} from their start after 60 s, "
                   f"ground truth {percent_of_width(gt)} after {drift['gt_clip_seconds']:g} s")
    else:
        return False, "no long rollout measured"
    return bool(gen > DRIFT_RATIO_LIMIT * max(gt, 1e-9)), figures
