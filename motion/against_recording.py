"""Against the recording: a generator's mouth compared frame by frame with the
recorded one, on a dataset's clips (docs/design.md, "Against the recording").

Per clip of a prepared ``landmarks-v1`` dataset (its dlib ``landmarks [T, 68, 2]``, its 16 kHz
``.wav`` beside the ``.npz``, ``meta["source"]`` the video): the clip's first video frame is the
photo, its wav the speech, and the one pipeline (``motion.talking_head``, the model's defaults)
generates keypoints ``[T, 10, 6]``. Each row's mouth is measured against the recording
(``syncers.data.measures``, their one definition):

- ``r_opening``: r of the row's inner-lip opening with the recorded one, best lag within ±2
  frames (``opening_r``);
- over the speech frames of the row's speech (``speech_frames`` of its envelope):
  ``mean``, ``p90``, ``closed_share``, ``closures_per_second`` (``opening_summary``);
- ``r_loudness``: r of the opening with the envelope of the speech it was driven by, the mouth
  0–3 frames after the sound (``envelope_r``): a mouth that only follows loudness scores high;
- ``lmd``: the mean over frames of the mouth landmark distance to the recording's, both faces
  frontalized to the mean face (``mouth_landmark_distance``; LMD of the MS-Sync paper's
  Table 1), in eye distances.

Rows (``ROWS``): ``generated`` (the model's default mouth, the content mouth for the bundled
model), ``loudness`` (the loudness articulation, ``mouth="loudness"``), ``still`` (the photo
held: its first frame repeated), ``shuffled`` (the default mouth driven by another clip's
speech, tiled or cut to this clip's length: which clip is a cyclic shift of the split, a
derangement with no random draw), and ``recording`` (the recorded landmarks against
themselves: r 1 and LMD 0 by construction; its summary is what the others are compared with).

Two spaces (``SPACES``): ``keypoints``, the generated keypoints decoded to 68 landmarks
(``landmark_space.decode``), with the row ``recording_keypoints`` (the recorded keypoints
decoded: what the keypoint round trip alone costs); ``rendered``, what a viewer sees: the frames
drawn by ``talking_head.frames`` re-tracked by the data layer's dlib tracker
(``syncers.data.landmarks.track``, as ``msync data prepare`` tracked the recording). The
recording's rendered row is the recording's own track. A clip whose video is missing is measured
in keypoint space only, from its recorded first-frame landmarks in the dataset's crop.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Callable

import numpy as np

from motion import talking_head
from motion.source import SourceFace, source_keypoints
from render import mesh
from syncers.data import dataset, face, landmark_space, measures
from syncers.data import landmarks as landmarker
from syncers.data import video as video_io
from syncers.data.features import load_audio
from syncers.data.layout import FPS, LANDMARK_SPACE, SAMPLES_PER_FRAME
from syncers.run.errors import InputError
from syncers.run.progress import bar as progress_bar

LEVELS = ("none", "keypoints", "rendered")   # how much of it ``msync evaluate --against`` runs
SPACES = ("keypoints", "rendered")
ROWS = ("generated", "loudness", "still", "shuffled", "recording", "recording_keypoints")
MEASURES = ("r_opening", "mean", "p90", "closed_share", "closures_per_second", "r_loudness",
            "lmd", "brow_spread", "brow_asymmetry", "brow_r_loudness")
RATIOS = ("mean", "p90", "closed_share", "closures_per_second",   # also reported / recording's
          "brow_spread", "brow_asymmetry")
MOUTH_RATIOS = RATIOS[:4]
MISSING_WAV = ("missing: against the recording generates from each clip's 16 kHz speech (msync "
               "data prepare writes it beside the npz); pass --against none to skip it")


def row_measures(landmarks_Tx68x2: np.ndarray, recorded_Tx68x2: np.ndarray,
                 samples: np.ndarray) -> dict[str, float]:
    """The :data:`MEASURES` of one row: its landmarks ``[T, 68, 2]`` against the recorded
    ``[T, 68, 2]`` (any crop: every measure is in eye distances or frontalized), its speech the
    16 kHz ``samples [N]`` that drove it (zero-padded or cut to T frames)."""
    landmarks = np.asarray(landmarks_Tx68x2, np.float64)
    recorded = np.asarray(recorded_Tx68x2, np.float64)
    if landmarks.shape != recorded.shape:
        raise ValueError(f"landmarks and recorded must both be [T, 68, 2]; got "
                         f"{landmarks.shape} and {recorded.shape}")
    opening = measures.mouth_opening(landmarks)
    envelope = measures.frame_rms(samples, len(opening))
    out = {"r_opening": measures.opening_r(opening, measures.mouth_opening(recorded))}
    out.update(measures.opening_summary(opening, measures.speech_frames(envelope)))
    out["r_loudness"] = measures.envelope_r(opening, envelope)
    out["lmd"] = float(measures.mouth_landmark_distance(landmarks, recorded).mean())
    out.update(measures.brow_motion(landmarks))
    # Brows raised or lowered with the syllables (a frown or a squint on loud frames) where the
    # recording's do not: their mean height's r with the envelope, at lag 0.
    out["brow_r_loudness"] = float(measures.lagged_r(
        measures.brow_heights(landmarks).mean(axis=1), envelope, [0])[0])
    return out


def tiled(samples: np.ndarray, n_samples: int) -> np.ndarray:
    """``samples [N]`` repeated or cut to exactly ``n_samples``: another clip's speech at this
    clip's length."""
    samples = np.asarray(samples, np.float32)
    if len(samples) == 0:
        raise ValueError("no samples to tile")
    return np.resize(samples, n_samples)


@dataclasses.dataclass(frozen=True)
class Recording:
    """One test clip: ``landmarks [T, 68, 2]`` (dlib, the dataset's crop), ``keypoints
    [T, 10, 6]``, ``samples [640·T]`` (16 kHz), ``photo [H, W, 3]`` uint8 (the first video frame)
    or None with ``note`` saying why."""

    clip_id: str
    landmarks: np.ndarray
    keypoints: np.ndarray
    samples: np.ndarray
    photo: np.ndarray | None
    note: str | None = None


def check_wavs(manifest: dataset.Manifest, split: str) -> None:
    """An ``InputError`` naming the first clip of ``split`` without its wav."""
    for info in manifest.clips(split):
        wav = dataset.clip_path(manifest.root, split, info.clip_id).with_suffix(".wav")
        if not wav.is_file():
            raise InputError(wav, MISSING_WAV)


def read_recordings(data: str | os.PathLike, split: str = "test") -> list[Recording]:
    """The clips of ``split`` with their wav and their video's first frame. A clip without its
    wav or landmarks is an ``InputError``; a missing or unreadable video leaves ``photo`` None."""
    manifest = dataset.read_manifest(data)
    if manifest.keypoint_space != LANDMARK_SPACE:
        raise InputError(manifest.root / dataset.MANIFEST,
                         f"against the recording needs a {LANDMARK_SPACE} dataset (one with "
                         f"dlib landmarks); this one is {manifest.keypoint_space!r}")
    out = []
    for clip in dataset.load_split(manifest.root, split, manifest):
        path = dataset.clip_path(manifest.root, split, clip.clip_id)
        if clip.landmarks is None or clip.landmarks.shape[1:] != (68, 2):
            raise InputError(path, "holds no 68 landmarks [T, 68, 2]: against the recording "
                                   "compares with them (msync data prepare stores them)")
        wav = path.with_suffix(".wav")
        if not wav.is_file():
            raise InputError(wav, MISSING_WAV)
        samples = load_audio(wav)[:clip.n_frames * SAMPLES_PER_FRAME]
        if len(samples) < clip.n_frames * SAMPLES_PER_FRAME:
            samples = np.pad(samples, (0, clip.n_frames * SAMPLES_PER_FRAME - len(samples)))
        photo, note = _first_frame(clip.meta.get("source"))
        out.append(Recording(clip.clip_id, clip.landmarks, clip.keypoints, samples, photo, note))
    if not out:
        raise InputError(manifest.root / dataset.MANIFEST, f"no clips in the {split} split")
    return out


def _first_frame(source) -> tuple[np.ndarray | None, str | None]:
    if not source:
        return None, "meta records no source video"
    try:
        return next(iter(video_io.iter_frames(source, FPS))), None
    except InputError as err:
        return None, str(err)
    except StopIteration:
        return None, f"{source}: no decodable frames"


def dataset_source(model: talking_head.TalkingHeadModel, recorded_68x2: np.ndarray
                   ) -> SourceFace:
    """A source without a photo: the recorded first-frame landmarks ``[68, 2]`` in the dataset's
    crop (whose face box is the middle two thirds, ``landmark_space.MEAN_FACE_BOX``); keypoints
    only, nothing to render."""
    crop = face.FaceCrop(None, None, landmark_space.MEAN_FACE_BOX)
    x0, to_image = source_keypoints(crop, None, model.keypoint_space,
                                    np.asarray(recorded_68x2, np.float32))
    return SourceFace(crop, np.asarray(recorded_68x2, np.float32), np.asarray(x0, np.float32),
                      to_image)


def retrack(frames_TxSxSx3: np.ndarray) -> np.ndarray:
    """Landmarks ``[T, 68, 2]`` of rendered frames (float in [0, 1] or uint8) by the data
    layer's tracker; ``landmarks.FaceLost`` when dlib loses the face."""
    return landmarker.track(_uint8(frames_TxSxSx3), FPS).landmarks


def _uint8(frames: np.ndarray) -> np.ndarray:
    """Frames as the data layer's crops are stored (uint8: a quarter of float32's memory)."""
    frames = np.asarray(frames)
    if frames.dtype == np.uint8:
        return frames
    return (np.clip(frames, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def measure_clip(model: talking_head.TalkingHeadModel, options: talking_head.GenerationOptions,
                 recording: Recording, other_samples: np.ndarray | None, rendered: bool = True,
                 retrack_fn: Callable[[np.ndarray], np.ndarray] = retrack) -> dict:
    """One clip's rows: ``{"keypoints": {row: measures}, "rendered": {row: measures} or None,
    "notes": [...]}`` (``options`` resolved; ``other_samples``: the shuffled row's speech, None
    = no such row; ``retrack_fn``: frames ``[T, S, S, 3]`` → landmarks ``[T, 68, 2]``)."""
    recorded = np.asarray(recording.landmarks, np.float64)
    n_frames, samples = len(recorded), recording.samples
    notes = [] if recording.note is None else [f"{recording.note}: keypoints only, from the "
                                               "recorded first frame"]
    source = None
    if recording.photo is not None:
        try:
            source = talking_head.prepare(model, recording.photo, options,
                                          image_name=f"{recording.clip_id} (first frame)")
        except InputError as err:      # dlib finds no face in the first frame
            notes.append(f"first frame: {err.problem.split(';')[0]}: keypoints only, from the "
                         "recorded first frame")
    if source is None:
        source = dataset_source(model, recorded[0])
    loudness = dataclasses.replace(options, mouth="loudness")
    speeches = {"generated": (options, samples), "loudness": (loudness, samples)}
    if other_samples is not None:
        speeches["shuffled"] = (options, tiled(other_samples, len(samples)))
    generated = {row: (talking_head.keypoints(model, source, speech, opts)[:n_frames], speech)
                 for row, (opts, speech) in speeches.items()}
    still = np.repeat(source.keypoints[None], n_frames, axis=0)

    kp_rows = {row: (landmark_space.decode(kp), speech) for row, (kp, speech) in generated.items()}
    kp_rows["still"] = (landmark_space.decode(still), samples)
    kp_rows["recording"] = (recorded, samples)
    kp_rows["recording_keypoints"] = (landmark_space.decode(recording.keypoints), samples)
    out = {"keypoints": {row: row_measures(lm, recorded, speech)
                         for row, (lm, speech) in kp_rows.items()},
           "rendered": None, "notes": notes}
    if not rendered or source.crop.image is None:
        return out

    rows = {}
    try:
        for row, (kp, speech) in generated.items():
            frames = np.concatenate([_uint8(chunk) for chunk in
                                     talking_head.frames(source, kp, options)])
            rows[row] = (retrack_fn(frames), speech)
        # A still photo's frames are all the crop: track it once, hold it.
        rows["still"] = (np.repeat(retrack_fn(source.crop.image[None]), n_frames, axis=0),
                         samples)
    except landmarker.FaceLost as err:
        notes.append(f"rendered: dlib lost the face ({err}); no rendered rows")
        return out
    rows["recording"] = (recorded, samples)
    out["rendered"] = {row: row_measures(lm, recorded, speech)
                       for row, (lm, speech) in rows.items()}
    if options.renderer == "mesh":
        out["folds"] = clip_folds(source, generated["generated"][0])
    return out


def clip_folds(source: SourceFace, keypoints_Tx10x6: np.ndarray) -> dict:
    """The mesh's fold measure (``render.mesh.fold_measure``) of the generated keypoints
    ``[T, 10, 6]`` (crop coordinates) drawn from ``source``: frames, frames with a folded
    triangle, frames with a crack, and the smallest Jacobian over them."""
    folds = mesh.fold_measure(mesh.prepare(source.crop.image, source.landmarks),
                              source.keypoints, keypoints_Tx10x6)
    return {"frames": int(len(folds.folded)), "folded": int(np.sum(folds.folded > 0)),
            "cracked": int(np.sum(folds.uncovered > 0)),
            "min_jacobian": float(folds.min_jacobian.min()) if len(folds.folded) else None}


def fold_totals(clips: list[dict]) -> dict | None:
    """The clips' fold measures summed (the smallest Jacobian: the smallest), or None when no
    clip was drawn by the mesh."""
    measured = [clip["folds"] for clip in clips if clip.get("folds")]
    if not measured:
        return None
    jacobians = [m["min_jacobian"] for m in measured if m["min_jacobian"] is not None]
    return {"clips": len(measured), "frames": sum(m["frames"] for m in measured),
            "folded": sum(m["folded"] for m in measured),
            "cracked": sum(m["cracked"] for m in measured),
            "min_jacobian": min(jacobians) if jacobians else None}


def evaluate(model: talking_head.TalkingHeadModel, data: str | os.PathLike,
             split: str = "test", level: str = "rendered",
             options: talking_head.GenerationOptions | None = None, progress: bool = True,
             retrack_fn: Callable[[np.ndarray], np.ndarray] = retrack) -> dict:
    """Every clip of ``split`` measured against its recording (``level``: ``keypoints`` or
    ``rendered``, see :data:`LEVELS`) with ``options`` (None = the model's defaults). Returns
    ``{"split", "level", "mouth", "clips": [{"clip_id", "keypoints", "rendered", "notes"}],
    "summary": {space: {row: {measure: mean over clips, ...}}}, "targets"}`` (:func:`summarize`,
    :func:`targets`)."""
    if level not in LEVELS[1:]:
        raise ValueError(f"level must be one of {LEVELS[1:]}; got {level!r}")
    if model.keypoint_space != LANDMARK_SPACE:
        raise InputError(model.path, f"against the recording decodes {LANDMARK_SPACE} keypoints "
                                     f"to landmarks; this model moves {model.keypoint_space}")
    options = talking_head.resolve(model, options or talking_head.GenerationOptions(),
                                   draws=level == "rendered")
    recordings = read_recordings(data, split)
    clips = []
    with progress_bar(len(recordings), "against the recording", "clip",
                      disable=not progress) as bar:
        for index, recording in enumerate(recordings):
            # The shuffled row speaks the next clip's speech (a cyclic shift: no clip keeps its
            # own), so it has the corpus's speech statistics but not this recording's timing.
            other = recordings[(index + 1) % len(recordings)].samples \
                if len(recordings) > 1 else None
            clip = measure_clip(model, options, recording, other, level == "rendered",
                                retrack_fn)
            clips.append({"clip_id": recording.clip_id, **clip})
            bar.update(1)
    return {"split": split, "level": level, "mouth": options.mouth,
            "clips": clips, "summary": (summary := summarize(clips)),
            "targets": targets(summary), "folds": fold_totals(clips)}


def summarize(clips: list[dict]) -> dict:
    """Per space and row, each measure's mean over the clips that have it (NaN skipped; ``n_*``
    says how many) and, for :data:`RATIOS`, the row's mean over the recording's mean
    (``*_ratio``: a ratio of means, since one clip's near-closed recording would make its own
    ratio explode)."""
    out = {}
    for space in SPACES:
        per_row = {}
        for row in ROWS:
            values = [clip[space][row] for clip in clips
                      if clip.get(space) and row in clip[space]]
            if not values:
                continue
            stats = {"clips": len(values)}
            for name in MEASURES:
                column = np.array([v[name] for v in values], np.float64)
                finite = np.isfinite(column)
                stats[name] = float(column[finite].mean()) if finite.any() else None
                stats[f"n_{name}"] = int(finite.sum())
            per_row[row] = stats
        recording = per_row.get("recording")
        for stats in per_row.values():
            for name in RATIOS:
                ref = None if recording is None else recording[name]
                stats[f"{name}_ratio"] = None if (ref is None or stats[name] is None or ref == 0) \
                    else stats[name] / ref
        if per_row:
            out[space] = per_row
    return out


# The lip targets for the generated mouth (docs/design.md, "Against the recording"), on what a
# viewer sees (the rendered space; the keypoint space where nothing was rendered): (name,
# measure, what it is compared with, how).
TARGETS = (
    ("r with the recorded opening >= 0.45", "r_opening", None, lambda v, ref: v >= 0.45),
    ("opening mean in speech 0.8-1.25x the recording's", "mean_ratio", None,
     lambda v, ref: 0.8 <= v <= 1.25),
    ("opening p90 in speech 0.8-1.25x the recording's", "p90_ratio", None,
     lambda v, ref: 0.8 <= v <= 1.25),
    ("closed share >= 0.5x the recording's", "closed_share_ratio", None, lambda v, ref: v >= 0.5),
    ("closures/s >= 0.6x the recording's", "closures_per_second_ratio", None,
     lambda v, ref: v >= 0.6),
    ("r with loudness at most 0.15 above the recording's", "r_loudness", "recording",
     lambda v, ref: v <= ref + 0.15),
    ("LMD below a still photo's", "lmd", "still", lambda v, ref: v < ref),
)


def targets(summary: dict) -> dict:
    """The lip :data:`TARGETS` for the ``generated`` row: ``{"space", "checks": [{"target",
    "value", "reference", "met"}]}`` (``met`` None where a figure is missing)."""
    space = "rendered" if "rendered" in summary else "keypoints"
    rows = summary.get(space, {})
    generated = rows.get("generated", {})
    checks = []
    for name, measure, against, test in TARGETS:
        value = generated.get(measure)
        reference = None if against is None else rows.get(against, {}).get(measure)
        missing = value is None or (against is not None and reference is None)
        checks.append({"target": name, "value": value, "reference": reference,
                       "met": None if missing else bool(test(value, reference))})
    return {"space": space, "checks": checks}


LABELS = {"generated": "generated ({mouth} mouth)", "loudness": "loudness articulation",
          "still": "still photo", "shuffled": "shuffled audio", "recording": "recording",
          "recording_keypoints": "recording's keypoints"}


def markdown(result: dict) -> str:
    """The section "Against the recording" of ``metrics.md``: one table per space."""
    lines = ["## Against the recording", "",
             f"{len(result['clips'])} clips of the {result['split']} split, each generated from "
             "its first frame and its speech and compared frame by frame with the recording "
             "(docs/design.md, \"Against the recording\"). r: best lag within ±2 frames (with "
             "the recorded opening) or 0–3 frames (with loudness); opening in eye distances "
             "over speech frames, × = over the recording's; LMD in eye distances (paper Table "
             "1); brow spread: the standard deviation of each brow's height above its eye, "
             "brow asymmetry: of one brow's height minus the other's (eye distances), brow r "
             "loudness: of their mean height with the envelope (lag 0). Means "
             "over clips; — where no clip has the figure.", ""]
    header = ("| row | r opening | mean (×) | p90 (×) | closed share (×) | closures/s (×) "
              "| r loudness | LMD | brow spread (×) | brow asymmetry (×) | brow r loudness |")
    for space, rows in result["summary"].items():
        lines += [f"**{space}**" + (" (re-tracked by dlib)" if space == "rendered" else
                                     " (decoded to landmarks)"), "", header,
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for row, s in rows.items():
            label = LABELS[row].format(mouth=result.get("mouth"))
            cells = [_fmt(s["r_opening"])]
            cells += [f"{_fmt(s[n], 3)} ({_fmt(s[f'{n}_ratio'])})" for n in MOUTH_RATIOS]
            cells += [_fmt(s["r_loudness"]), _fmt(s["lmd"], 3)]
            cells += [f"{_fmt(s[n], 3)} ({_fmt(s[f'{n}_ratio'])})"
                      for n in ("brow_spread", "brow_asymmetry")]
            cells.append(_fmt(s["brow_r_loudness"]))
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        lines.append("")
    if "targets" in result:
        t = result["targets"]
        lines += [f"The lip targets for the generated mouth ({t['space']}):", ""]
        for check in t["checks"]:
            verdict = {True: "met", False: "not met", None: "not measured"}[check["met"]]
            reference = "" if check["reference"] is None else \
                f" (against {_fmt(check['reference'], 3)})"
            lines.append(f"- {check['target']}: {_fmt(check['value'], 3)}{reference}: {verdict}")
        lines.append("")
    folds = result.get("folds")
    if folds:
        lines += [f"Mesh folds of the generated rows (render.mesh.fold_measure): "
                  f"{folds['folded']} of {folds['frames']} frames folded, {folds['cracked']} "
                  f"cracked, over {folds['clips']} clips; smallest Jacobian "
                  f"{_fmt(folds['min_jacobian'], 3)}.", ""]
    notes = [f"- {clip['clip_id']}: {note}" for clip in result["clips"] for note in clip["notes"]]
    if notes:
        lines += ["Notes:", ""] + notes + [""]
    return "\n".join(lines)


def _fmt(value, digits: int = 2) -> str:
    return "—" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"


def json_ready(result: dict) -> dict:
    """``result`` with every NaN replaced by None (metrics.json is strict JSON)."""
    def clean(value):
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        if isinstance(value, float) and not np.isfinite(value):
            return None
        return value
    return clean(result)

