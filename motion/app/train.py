"""``msync train syncers`` (stage 1, ``syncers.train``) and ``msync train generator`` (stage 2,
``motion.train``): a YAML from ``configs/`` plus ``--set`` overrides, then the trainer; after
them ``msync train lips`` (the content mouth, ``motion.lips``), ``msync train articulation``
(the loudness mouth, ``motion.articulation``) and ``msync train expression`` (the span of real
faces' motion, ``motion.expression``), each stored in the model's ``model.json``."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from motion import articulation, expression, lips, saved_model, talking_head
from motion import train as generator_train
from motion.config import GeneratorRunConfig
from motion.generate import generate_batch
from syncers import train as syncer_train
from syncers.data import content, dataset, landmark_space
from syncers.data.features import load_audio, match_features
from syncers.data.layout import LANDMARK_SPACE
from syncers.run import config as config_lib
from syncers.run.errors import InputError
from syncers.run.progress import bar as progress_bar
from syncers.train import SyncersConfig


def train_syncers_command(args) -> None:
    """``msync train syncers --data DIR --out RUN [--config YAML] [--set k=v] [--levels]
    [--distributed]`` (``motion.app.cli`` has started ``jax.distributed`` for ``--distributed``)."""
    overrides = list(args.overrides or [])
    if args.levels:
        overrides.append(f"train.levels=[{','.join(map(str, args.levels))}]")
    config = config_lib.load(SyncersConfig, args.config or syncer_train.DEFAULT_CONFIG, overrides)
    # Set directly, not as a --set value: a path is not YAML (an escaped emoji would come back
    # as two surrogates that no file system accepts).
    config = dataclasses.replace(config, data_root=str(args.data))
    syncer_train.train_and_evaluate(config, args.out)


def train_generator_command(args) -> None:
    """``msync train generator --data DIR --syncers RUN --out RUN [--config YAML] [--set k=v]
    [--init-from MODEL]``."""
    config = config_lib.load(GeneratorRunConfig, args.config or generator_train.DEFAULT_CONFIG,
                             list(args.overrides or []))
    if args.init_from is not None:
        # Set directly, not as a --set value: a path is not YAML.
        config = dataclasses.replace(config, train=dataclasses.replace(
            config.train, init_from=str(args.init_from)))
    generator_train.train(config, args.data, args.syncers, args.out)


def _mouth_splits(args, what: str) -> tuple[dict, list, list]:
    """The model's ``info`` and the train and val clips of ``--data`` for fitting a mouth
    (``what`` names it in messages): both must be ``landmarks-v1``, with clips in both splits."""
    _, info = saved_model.load_model(args.model)
    if info.get("keypoint_space") != LANDMARK_SPACE:
        raise InputError(saved_model.model_dir(args.model),
                         f"the {what} moves {LANDMARK_SPACE} faces; this model's keypoint "
                         f"space is {info.get('keypoint_space')!r}")
    manifest = dataset.read_manifest(args.data)
    if manifest.keypoint_space != LANDMARK_SPACE:
        raise InputError(args.data, f"the {what} is fitted on a {LANDMARK_SPACE} dataset "
                                    f"(msync data prepare); this one is "
                                    f"{manifest.keypoint_space!r}")
    train_clips = dataset.load_split(args.data, "train", manifest)
    val_clips = dataset.load_split(args.data, "val", manifest)
    if not train_clips or not val_clips:
        raise InputError(args.data, f"the {what} needs clips in the train and val splits")
    return info, train_clips, val_clips


def _fit_and_store(args, fit, *fit_args) -> tuple[dict, Path]:
    """``fit(*fit_args) -> (mouth, report)``, a refusal of the data as one line naming
    ``--data``, the mouth stored in ``--model``'s ``model.json``: ``(report, that file)``."""
    try:
        fitted, report = fit(*fit_args)
    except ValueError as err:
        raise InputError(args.data, str(err)) from None
    return report, saved_model.write_articulation(saved_model.model_dir(args.model), fitted,
                                                  report)


def train_articulation_command(args) -> None:
    """``msync train articulation --data DIR --model RUN``: fit ``motion.articulation`` on the
    dataset's train split (ridge weight on val) and store it in the model's ``model.json``."""
    info, train_clips, val_clips = _mouth_splits(args, "articulation")
    stats = info.get("feature_stats")
    quantiles = None if stats is None else np.asarray(stats["quantiles"], np.float32)
    report, path = _fit_and_store(args, articulation.fit, train_clips, val_clips, quantiles)
    print(f"msync train articulation: {report['train_frames']} training frames (mirrored "
          f"copies included), ridge {report['ridge']:g}, validation r per component "
          f"{report['val_r']} -> {path}")


def _lip_clip(root, split: str, clip: dataset.Clip, content_lookahead: int) -> lips.LipClip:
    """A dataset clip as ``motion.lips.fit`` reads it: its landmarks, features and the content
    of the 16 kHz wav beside it (``syncers.data.content`` with ``content_lookahead`` frames of
    look-ahead, as generation computes it)."""
    path = dataset.clip_path(root, split, clip.clip_id)
    if clip.landmarks is None:
        raise InputError(path, "has no landmarks: the lip model is fitted on a "
                               f"{LANDMARK_SPACE} dataset (msync data prepare)")
    wav = path.with_suffix(".wav")
    if not wav.is_file():
        raise InputError(wav, "the lip model reads what is said: each clip needs its wav "
                              "(msync data prepare writes one)")
    return lips.LipClip(clip.landmarks,
                        content.content_features(load_audio(wav), content_lookahead),
                        clip.audio_features)


def train_lips_command(args) -> None:
    """``msync train lips --data DIR --model RUN [--after N] [--content-lookahead N]``: fit
    ``motion.lips`` (content and prosody
    → mouth) on the dataset's train split (ridge weight on val) and store it in the model's
    ``model.json``."""
    for flag, value in (("--after", args.after), ("--content-lookahead",
                                                  args.content_lookahead)):
        if not 0 <= value <= 50:
            raise InputError(None, f"{flag} must be 0..50 frames; got {value}")
    _, train_clips, val_clips = _mouth_splits(args, "lip model")
    fit_clips = [_lip_clip(args.data, "train", clip, args.content_lookahead)
                 for clip in train_clips]
    val = [_lip_clip(args.data, "val", clip, args.content_lookahead) for clip in val_clips]
    report, path = _fit_and_store(args, lips.fit, fit_clips, val, "both", lips.DEFAULT_BEFORE,
                                  args.after, lips.DEFAULT_COMPONENTS, args.content_lookahead)
    print(f"msync train lips: {report['train_frames']} training frames (mirrored copies "
          f"included), ridge {report['ridge']:g}, validation r per shape {report['val_r']} "
          f"(kept {report['kept']}) -> {path}")


def _mirrored(clip: dataset.Clip) -> np.ndarray:
    """The clip's keypoints of its mirrored video: stored (``prepare --flip``), else its
    landmarks mirrored and grouped again."""
    if clip.keypoints_flipped is not None:
        return clip.keypoints_flipped
    source = clip.landmarks if clip.landmarks is not None else \
        landmark_space.decode(clip.keypoints)
    return landmark_space.encode(landmark_space.mirror(source))


def _generated(args, clips: list[dataset.Clip]) -> tuple[list, list]:
    """Each clip's keypoints and its mirror image's, and the model's generator's keypoints from
    each one's first frame with the clip's speech (its features matched to the model's corpus,
    as generation matches any speech): ``(recorded, generated)``, each ``[T, 10, 6]``, paired."""
    model = talking_head.load(args.model)
    recorded, generated = [], []
    with progress_bar(len(clips), "expression space: generate", "clip") as progress:
        for clip in clips:
            features = clip.audio_features if model.corpus_quantiles is None else \
                match_features(clip.audio_features, model.corpus_quantiles)
            pair = np.stack([clip.keypoints, _mirrored(clip)])
            made = generate_batch(model.generator, pair[:, 0],
                                  np.repeat(features[None], 2, axis=0))
            n_frames = min(made.shape[1], pair.shape[1])
            recorded += list(pair[:, :n_frames])
            generated += list(made[:, :n_frames])
            progress.update(1)
    return recorded, generated


def train_expression_command(args) -> None:
    """``msync train expression --data DIR --model RUN [--variance F] [--lower-variance F]
    [--no-calibration]``: fit ``motion.expression`` (``fit_face``) on the dataset's train split
    (each clip and its mirror image), calibrated on the model's generator run on the same clips,
    and store it in the model's ``model.json``."""
    if not 0.5 <= args.variance <= 1.0:
        raise InputError(None, f"--variance must be from 0.5 to 1; got {args.variance}")
    if not (args.lower_variance == 0 or 0.5 <= args.lower_variance <= 1.0):
        raise InputError(None, f"--lower-variance must be 0 (the lower face as generated) or "
                               f"from 0.5 to 1; got {args.lower_variance}")
    _, train_clips, _ = _mouth_splits(args, "expression space")
    if args.calibration:
        clips, generated = _generated(args, train_clips)
    else:
        clips = [kp for clip in train_clips for kp in (clip.keypoints, _mirrored(clip))]
        generated = None
    report, path = _fit_and_store(args, expression.fit_face, clips, args.variance,
                                  args.lower_variance or None, generated)
    count = report["components"]
    line = (f"msync train expression: {report['frames']} training frames (mirrored copies "
            f"included), {count} direction{'s' if count > 1 else ''} holding "
            f"{report['variance']:.1%} of the upper face's non-rigid motion")
    if "lower_face" in report:
        lower = report["lower_face"]
        line += f", {lower['components']} holding {lower['variance']:.1%} of the lower face's"
    if "generated_over_recorded_spread" in report:
        spread = report["generated_over_recorded_spread"][:report["carried"]]
        line += (f"; the upper face's sizes carried onto the recorded faces' (the generator's "
                 f"{min(spread):.2f}-{max(spread):.2f}x theirs)")
        if report["limited_share"]:
            line += (f", the lower face kept within their range (the generator leaves it on "
                     f"{max(report['limited_share']):.0%} of frames at most, per direction)")
    print(f"{line} -> {path}")
