"""``msync evaluate --model``: how well a trained generator moves (docs/design.md,
"Sync metrics").

Every clip of the split (cut to ``clip_frames``, as for ground truth) is generated from its own
first frame and its own audio (``motion.generate.generate_batch``, batched), then:

- ``levels.<i>.generated``: the multi-scale sync metrics of ``syncers.evaluate`` (AV-Off,
  AV-Conf, AVS_u of each level; with the ground truth as reference also AVS_m and AVS_v), beside
  ``gt`` and ``random``, which stay exactly as without ``--model``;
- ``generated_stats``: ``l_rec`` (eq. 14: mean squared error of generated vs ground-truth
  keypoints over the clip, all 6 values, frame 0 included — it is x0 for both) and the mean
  speed and acceleration of generated and ground-truth motion, per frame (1/25 s) in keypoint
  units (image coordinates in [−1, 1]):

  - ``velocity_pos`` = mean over t, k of ‖p_{t+1,k} − p_{t,k}‖₂ with p the (x, y) position,
  - ``acceleration_pos`` = mean ‖p_{t+2,k} − 2p_{t+1,k} + p_{t,k}‖₂,
  - ``velocity_all`` / ``acceleration_all`` = mean |first / second difference| over all 6 values
    (positions and jacobians);

- ``drift``: a long generation from a test clip's first frame driven by the test clips' audio
  concatenated (clip j, j+1, ... cyclically; each cut to ``clip_frames``) for 60 s; at 10 s and
  60 s (frames 250 and 1500) the mean distance ‖p_t − p_0‖₂ of the rigid keypoints 0–4 from their
  starting positions, averaged over a few starts (different first frames and audio orders), and
  whether every generated value is finite.

The generator enters as a function ``generate_fn(x0 [B, 10, 6], audio [B, 4T, F]) -> [B, T, 10,
6]`` so that the evaluation can be checked with an oracle that returns the ground truth.
Writes ``DIR/metrics.json`` and ``DIR/metrics.md``.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Callable, Sequence

import numpy as np

from syncers import evaluate as sync_eval
from syncers.data.dataset import Clip
from syncers.data.layout import FEATURES_PER_FRAME, FPS, PHANTOM_RIGID
from syncers.sampling import motion_features
from syncers.train import TrainedSyncers

GenerateFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

RIGID = PHANTOM_RIGID
DRIFT_SECONDS = (10, 60)
DRIFT_STARTS = 4
BATCH = 16

DEFINITIONS = {
    "l_rec": "eq. 14: mean over clips of mean((generated − gt)²) over frames, keypoints, 6 values",
    "velocity_pos": "mean ‖Δp‖₂ per frame, p = (x, y) of each keypoint",
    "acceleration_pos": "mean ‖Δ²p‖₂ per frame², p = (x, y) of each keypoint",
    "velocity_all": "mean |Δ| over all 6 values (positions and jacobians)",
    "acceleration_all": "mean |Δ²| over all 6 values",
    "drift": "mean over rigid keypoints 0–4 and starts of ‖p_t − p_0‖₂ at t = 10 s, 60 s",
}


def generate_clips(generate_fn: GenerateFn, clips: Sequence[Clip], clip_frames: int,
                   batch: int = BATCH, progress: bool = True) -> np.ndarray:
    """Each clip's first ``clip_frames`` frames from its own first frame and audio:
    ``[C, T, 10, 6]``. Batches have a fixed size (the last one is padded by repetition), so a
    jitted generator compiles once."""
    from tqdm import tqdm

    x0 = np.stack([c.keypoints[0] for c in clips])
    audio = np.stack([c.audio_features[:FEATURES_PER_FRAME * clip_frames] for c in clips])
    size = min(batch, len(clips))
    out = []
    with tqdm(total=len(clips), desc="generate", unit="clip", dynamic_ncols=True,
              disable=not progress) as bar:
        for lo in range(0, len(clips), size):
            take = np.arange(lo, lo + size) % len(clips)
            frames = np.asarray(generate_fn(x0[take], audio[take]))
            out.append(frames[:min(size, len(clips) - lo)])
            bar.update(len(out[-1]))
    return np.concatenate(out)


def motion_stats(generated_CxTxKx6: np.ndarray, gt_CxTxKx6: np.ndarray) -> dict:
    """``l_rec`` and the speed/acceleration statistics of generated vs ground truth."""
    gen = np.asarray(generated_CxTxKx6, np.float64)
    gt = np.asarray(gt_CxTxKx6, np.float64)
    per_clip = np.mean((gen - gt) ** 2, axis=(1, 2, 3))
    stats = {"generated": _diff_stats(gen), "gt": _diff_stats(gt)}
    ratio = {k: (stats["generated"][k] / stats["gt"][k] if stats["gt"][k] else None)
             for k in stats["gt"]}
    return {"l_rec": float(per_clip.mean()), "l_rec_std": float(per_clip.std()), **stats,
            "ratio_generated_to_gt": ratio, "definitions": DEFINITIONS}


def _diff_stats(x_CxTxKx6: np.ndarray) -> dict:
    v = np.diff(x_CxTxKx6, n=1, axis=1)
    a = np.diff(x_CxTxKx6, n=2, axis=1)
    return {"velocity_pos": float(np.linalg.norm(v[..., :2], axis=-1).mean()),
            "acceleration_pos": float(np.linalg.norm(a[..., :2], axis=-1).mean()),
            "velocity_all": float(np.abs(v).mean()),
            "acceleration_all": float(np.abs(a).mean())}


def rigid_displacement(x_BxTxKx6: np.ndarray) -> np.ndarray:
    """``[B, T]``: mean over keypoints 0–4 of ‖p_t − p_0‖₂ (p = the first 2 of the 6 values)."""
    p = np.asarray(x_BxTxKx6, np.float64)[:, :, list(RIGID), :2]
    return np.linalg.norm(p - p[:, :1], axis=-1).mean(axis=-1)


def drift(generate_fn: GenerateFn, clips: Sequence[Clip], clip_frames: int,
          seconds: Sequence[int] = DRIFT_SECONDS, starts: int = DRIFT_STARTS) -> dict:
    """Long generation from ``starts`` test clips' first frames (see the module docstring)."""
    n_frames = FPS * max(seconds) + 1                      # frame 25·s is s seconds after x0
    starts = min(starts, len(clips))
    repeats = -(-n_frames // clip_frames)
    pieces = [c.audio_features[:FEATURES_PER_FRAME * clip_frames] for c in clips]
    audio = np.stack([np.concatenate([pieces[(j + r) % len(clips)] for r in range(repeats)])
                      [:FEATURES_PER_FRAME * n_frames] for j in range(starts)])
    x0 = np.stack([clips[j].keypoints[0] for j in range(starts)])
    frames = np.asarray(generate_fn(x0, audio))
    finite = bool(np.isfinite(frames).all())
    distance = rigid_displacement(frames)                  # [starts, T]
    out = {"finite": finite, "starts": starts, "frames": n_frames,
           "keypoints": list(RIGID),
           "audio": f"test clips' audio concatenated cyclically from clip j for start j "
                    f"(each cut to {clip_frames} frames)"}
    for s in seconds:
        out[f"after_{s}s"] = _finite_or_none(distance[:, FPS * s].mean())
    out["max_over_run"] = _finite_or_none(distance.max()) if finite else None
    gt = np.stack([c.keypoints[:clip_frames] for c in clips])
    out["gt_end_of_clip"] = float(rigid_displacement(gt)[:, -1].mean())   # for scale
    out["gt_clip_seconds"] = (clip_frames - 1) / FPS
    return out


def evaluate_model(run: TrainedSyncers, root, split: str, clip_frames: int,
                   generate_fn: GenerateFn, *, drift_seconds: Sequence[int] = DRIFT_SECONDS,
                   drift_starts: int = DRIFT_STARTS, batch: int = BATCH,
                   progress: bool = True) -> dict:
    """``syncers.evaluate.evaluate`` plus ``generated``, ``generated_stats`` and ``drift``."""
    kept = {}

    def generated(clips):
        gen = generate_clips(generate_fn, clips, clip_frames, batch, progress)
        gt = np.stack([c.keypoints[:clip_frames] for c in clips])
        kept.update(clips=clips, generated=gen, gt=gt)
        data = run.config.data
        motion = np.stack([motion_features(dataclasses.replace(c, keypoints=g), data)
                           for c, g in zip(clips, gen)])
        reference = np.stack([motion_features(c, data)[:clip_frames] for c in clips])
        return {"generated": (motion, reference)}

    result = sync_eval.evaluate(run, root, split, clip_frames, extra=generated)
    result["generated_stats"] = motion_stats(kept["generated"], kept["gt"])
    result["drift"] = drift(generate_fn, kept["clips"], clip_frames, drift_seconds,
                            drift_starts)
    return result


def markdown(result: dict) -> str:
    """``syncers.evaluate.markdown`` (gt/random/generated rows) plus the generator's figures."""
    lines = [sync_eval.markdown(result).rstrip("\n"), "",
             "## Generated vs ground truth", "",
             "| level | AVS_m | AVS_v |", "|---|---|---|"]
    for level, entry in result["levels"].items():
        g = entry["generated"]
        lines.append(f"| {level} | {g['avs_m_mean']:.3f} | {g['avs_v_mean']:.3f} |")
    stats = result["generated_stats"]
    lines += ["", f"L_rec (eq. 14) = {stats['l_rec']:.5f} (std over clips "
                  f"{stats['l_rec_std']:.5f})", "",
              "| statistic | generated | ground truth | ratio |", "|---|---|---|---|"]
    for key, gt in stats["gt"].items():
        ratio = stats["ratio_generated_to_gt"][key]
        lines.append(f"| {key} | {stats['generated'][key]:.5f} | {gt:.5f} | "
                     f"{'–' if ratio is None else f'{ratio:.3f}'} |")
    d = result["drift"]
    lines += ["", f"Drift of rigid keypoints 0–4 (mean ‖p_t − p_0‖₂ over {d['starts']} starts; "
                  f"{d['audio']}): " + ", ".join(
                      f"after {k[len('after_'):-1]} s: {format_metric(v)}" for k, v in d.items()
                      if k.startswith("after_")) +
              f" (ground truth after {d['gt_clip_seconds']:g} s: "
              f"{format_metric(d['gt_end_of_clip'])})"
              f"; finite: {str(d['finite']).lower()}.", "",
              "Definitions: " + "; ".join(f"{k}: {v}" for k, v in DEFINITIONS.items()) + "."]
    return "\n".join(lines) + "\n"


def _finite_or_none(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def format_metric(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"
