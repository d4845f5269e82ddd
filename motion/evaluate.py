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
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from motion import long_horizon
from syncers import evaluate as sync_eval
from syncers.data import measures
from syncers.data.dataset import Clip, load_split, read_manifest
from syncers.data.layout import FEATURES_PER_FRAME, FPS, PHANTOM_RIGID
from syncers.run.progress import bar as progress_bar
from syncers.sampling import motion_features
from syncers.train import TrainedSyncers

GenerateFn = Callable[[np.ndarray, np.ndarray], np.ndarray]

RIGID = PHANTOM_RIGID
DRIFT_SECONDS = (10, 60)
DRIFT_STARTS = 4
BATCH = 16
LONG_SECONDS = 60              # the long-horizon evaluation's rollouts (motion.long_horizon)
LONG_SEQUENCES = 8

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
    x0 = np.stack([c.keypoints[0] for c in clips])
    audio = np.stack([c.audio_features[:FEATURES_PER_FRAME * clip_frames] for c in clips])
    size = min(batch, len(clips))
    out = []
    with progress_bar(len(clips), "generate", "clip", disable=not progress) as bar:
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


def mouth_sync(generated_CxTxKx6: np.ndarray, gt_CxTxKx6: np.ndarray,
               audio_features: Sequence[np.ndarray], space: str) -> dict | None:
    """Mean over clips of the mouth opening's r with the frame mel loudness of the clip's
    features (``syncers.data.measures``: ``keypoint_mouth_opening``, ``frame_mel_loudness``,
    ``envelope_r``, best lag 0–3 frames) of generated and ground-truth motion; clips where r is
    undefined (a constant series) are skipped. None for a keypoint space without a mouth
    measure."""
    if measures.keypoint_mouth_opening(gt_CxTxKx6[0], space) is None:
        return None
    out = {}
    for who, sequences in (("generated", generated_CxTxKx6), ("gt", gt_CxTxKx6)):
        openings = [measures.keypoint_mouth_opening(x, space) for x in sequences]
        rs = [measures.envelope_r(o, measures.frame_mel_loudness(a))
              for o, a in zip(openings, audio_features)]
        rs = [r for r in rs if np.isfinite(r)]
        out[who] = float(np.mean(rs)) if rs else None
        out[f"{who}_mouth_mean"] = float(np.mean([o.mean() for o in openings]))
    out["definition"] = ("mean over clips of Pearson r(mouth opening, frame mel loudness) at the "
                         "best lag of 0-3 frames (syncers.data.measures)")
    return out


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


def long_generation(generate_fn: GenerateFn, clips: Sequence[Clip], space: str,
                    max_sequences: int = LONG_SEQUENCES, out_dir=None) -> dict:
    """``motion.long_horizon`` on the clips of at least ``LONG_SECONDS`` (each generated from
    its first frame with its own audio, compared with its ground truth); with ``out_dir`` also
    ``long_horizon.png`` (the first sequence's trajectories)."""
    long = [c for c in clips if c.n_frames >= FPS * LONG_SECONDS][:max_sequences]
    if not long:
        return {"sequences": 0,
                "note": f"needs clips of at least {LONG_SECONDS} s in the split (phantom: msync "
                        f"data synth --seconds {LONG_SECONDS}; real: prepare long videos)"}
    n_frames = FPS * LONG_SECONDS
    x0 = np.stack([c.keypoints[0] for c in long])
    audio = np.stack([c.audio_features[:FEATURES_PER_FRAME * n_frames] for c in long])
    frames = np.asarray(generate_fn(x0, audio))
    per = [long_horizon.compare(g, c.keypoints[:n_frames], a, space)
           for g, c, a in zip(frames, long, audio)]
    if out_dir is not None and per[0]["finite"]:
        long_horizon.plot(frames[0], long[0].keypoints[:n_frames], space,
                          Path(out_dir) / "long_horizon.png")
    return {**long_horizon.aggregate(per), "clips": [c.clip_id for c in long],
            "per_sequence": per}


def evaluate_model(run: TrainedSyncers, root, split: str, clip_frames: int,
                   generate_fn: GenerateFn, *, drift_seconds: Sequence[int] = DRIFT_SECONDS,
                   drift_starts: int = DRIFT_STARTS, batch: int = BATCH,
                   progress: bool = True, out_dir=None) -> dict:
    """``syncers.evaluate.evaluate`` plus ``generated``, ``generated_stats``, ``drift`` and
    ``long_horizon`` (:func:`long_generation`)."""
    kept = {}

    def generated(clips, n_frames):
        gen = generate_clips(generate_fn, clips, n_frames, batch, progress)
        gt = np.stack([c.keypoints[:n_frames] for c in clips])
        if not kept:                # the shortest length (most clips) for the statistics
            kept.update(clips=clips, generated=gen, gt=gt, n_frames=n_frames)
        data = run.config.data
        motion = np.stack([motion_features(dataclasses.replace(c, keypoints=g), data)
                           for c, g in zip(clips, gen)])
        reference = np.stack([motion_features(c, data)[:n_frames] for c in clips])
        return {"generated": (motion, reference)}

    result = sync_eval.evaluate(run, root, split, clip_frames, extra=generated)
    result["generated_stats"] = motion_stats(kept["generated"], kept["gt"])
    space = read_manifest(root).keypoint_space
    result["mouth_sync"] = mouth_sync(
        kept["generated"], kept["gt"],
        [c.audio_features[:FEATURES_PER_FRAME * kept["n_frames"]] for c in kept["clips"]],
        space)
    result["drift"] = drift(generate_fn, kept["clips"], kept["n_frames"], drift_seconds,
                            drift_starts)
    manifest = read_manifest(root)
    result["long_horizon"] = long_generation(
        generate_fn, load_split(manifest.root, split, manifest), manifest.keypoint_space,
        out_dir=out_dir)
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
    sync = result.get("mouth_sync")
    if sync:
        lines += ["", f"Mouth opening vs mel loudness (Pearson r, best lag 0–3 frames, mean "
                      f"over clips): generated {format_metric(sync['generated'])}, ground truth "
                      f"{format_metric(sync['gt'])}; mean opening generated "
                      f"{sync['generated_mouth_mean']:.3f}, ground truth "
                      f"{sync['gt_mouth_mean']:.3f}."]
    lines += long_markdown(result.get("long_horizon") or {})
    return "\n".join(lines) + "\n"


def long_markdown(long: dict) -> list[str]:
    """The long-horizon section of ``metrics.md``."""
    lines = ["", f"## Long generation ({LONG_SECONDS} s, motion.long_horizon)", ""]
    if not long.get("sequences"):
        return lines + [long.get("note", "not measured")]
    lines += [f"{long['sequences']} sequences generated from their first frame with their own "
              f"audio; finite: {str(long['finite']).lower()}.", ""]
    if not long["finite"]:
        return lines
    lines += ["| horizon | rigid displacement, generated | ground truth | ratio |",
              "|---|---|---|---|"]
    for h, d in long["displacement"].items():
        ratio = d["generated"] / d["gt"] if d["gt"] else float("nan")
        lines.append(f"| {h} | {d['generated']:.4f} | {d['gt']:.4f} | {ratio:.2f} |")
    lines += ["", "| window | W1 position (gen vs gt) | W1 gt halves | mean ratio | W1 gt "
                  "re-centred at frame 0 | ratio to it | velocity ratio | acceleration ratio | "
                  "mouth in speech, gen / gt | mouth in pauses, gen / gt p75 |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for name in ("first", "last"):
        w = long[name]
        mg, mt = w.get("mouth_generated"), w.get("mouth_gt")
        speech = f"{mg['speech_mean']:.3f} / {mt['speech_mean']:.3f}" if mg and mt and \
            mg["speech_mean"] is not None and mt["speech_mean"] is not None else "–"
        pause = f"{mg['pause_mean']:.3f} / {mt['pause_p75']:.3f}" if mg and mt and \
            mg["pause_mean"] is not None and mt["pause_p75"] is not None else "–"
        lines.append(f"| {name} 10 s | {w['w1_mean']:.4f} | {w['w1_gt_halves_mean']:.4f} | "
                     f"{w['w1_ratio_mean']:.2f} | {w['w1_start_recentred_mean']:.4f} | "
                     f"{w['w1_ratio_to_start_recentred']:.2f} | {w['velocity_ratio']:.2f} | "
                     f"{w['acceleration_ratio']:.2f} | {speech} | {pause} |")
    lines += ["", "W1 gt halves: how much the truth's two halves differ. W1 gt re-centred at "
                  "frame 0: the truth's own motion moved so that its mean sits at its first "
                  "frame, the best a generator that sees only frame 0 can reach (where the head "
                  "rests over the minute is not in that frame)."]
    return lines


def _finite_or_none(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def format_metric(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"
