"""``msync evaluate``: the multi-scale sync metrics of a syncer run on a split, and with ``--model``
those of a trained generator's sequences (``syncers.evaluate``, ``motion.evaluate``). Writes
``DIR/metrics.json`` and ``DIR/metrics.md`` and prints a one-line summary.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from motion import against_recording, long_horizon, talking_head
from motion import evaluate as gen_eval
from motion.official.model import OfficialModel
from motion.saved_model import META, model_dir, write_long_horizon
from motion.talking_head import GenerationOptions
from syncers import evaluate as sync_eval
from syncers.data.dataset import read_manifest
from syncers.data.features import feature_mismatch
from syncers.data.layout import LANDMARK_SPACE
from syncers.run.errors import InputError, warn
from syncers.train import load_run


def evaluate_command(args) -> None:
    """``msync evaluate --data DIR --syncers RUN --out DIR [--model RUN] [--split]
    [--clip-frames]``: the syncers' multi-scale metrics of the split (``syncers.evaluate``),
    and with ``--model`` those of the generator's sequences too (``motion.evaluate``)."""
    if not getattr(args, "model", None):
        _evaluate_syncers(args)
        return
    loaded = talking_head.load(args.model)
    model, info = loaded.generator, loaded.info
    model_json = _model_json(Path(args.model), META)
    if isinstance(model, OfficialModel):
        raise InputError(model_json, "a converted MS-Sync release reads its own audio front-end "
                                     "from the recordings, not the dataset's features: msync "
                                     "evaluate --model scores msync-trained generators only")
    run = load_run(args.syncers)
    manifest = read_manifest(args.data)
    if info.get("keypoint_space") != manifest.keypoint_space:
        raise InputError(model_json, f"keypoint_space {info.get('keypoint_space')!r} differs "
                                     f"from the data's {manifest.keypoint_space!r} "
                                     f"({manifest.root / 'manifest.json'})")
    if info.get("keypoint_space") != run.info.get("keypoint_space"):
        raise InputError(model_json, f"keypoint_space {info.get('keypoint_space')!r} differs "
                                     f"from the syncers' {run.info.get('keypoint_space')!r} "
                                     f"({Path(args.syncers) / 'run.json'})")
    if run.config.data.motion != "keypoints":
        raise InputError(Path(args.syncers) / "config.yaml",
                         f"these syncers read {run.config.data.motion}, not keypoints: they "
                         "cannot score a generator")
    for whose, theirs, where in (("the data's", manifest.features,
                                  manifest.root / "manifest.json"),
                                 ("the syncers'", run.info.get("features"),
                                  Path(args.syncers) / "run.json")):
        mismatch = feature_mismatch(info.get("features"), theirs)
        if mismatch:
            raise InputError(model_json, f"the model's audio features differ from {whose} "
                                         f"({mismatch}; {where})")
    n_bands = manifest.features.get("n_bands")
    if n_bands is not None and n_bands != model.config.audio_features:
        raise InputError(model_json, f"the model reads {model.config.audio_features} audio "
                                     f"features; the data has {n_bands}")

    # What generate draws with its defaults: corpus matching, drift removal; the mouth is the
    # loudness articulation, since the clips scored are feature windows without their samples,
    # which the content mouth reads. The model's own mouth, content included, is measured on
    # whole clips with their wavs against the recording (--against, motion.against_recording).
    options = talking_head.resolve(loaded, GenerationOptions(mouth="loudness"), draws=False)

    if getattr(args, "against", None) != "none" and manifest.keypoint_space == LANDMARK_SPACE:
        # before the syncer metrics, so a missing wav is said at once, not after them
        against_recording.check_wavs(manifest, args.split)

    def generate_fn(x0, audio):
        return talking_head.model_keypoints_batch(loaded, x0, audio, options)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = gen_eval.evaluate_model(run, args.data, args.split, args.clip_frames, generate_fn,
                                     out_dir=out)
    result["syncers"] = str(args.syncers)
    result["model"] = str(args.model)
    result["model_step"] = info.get("step")
    against = _against_the_recording(args, loaded, manifest)
    markdown = gen_eval.markdown(result)
    if against is not None:
        result["against_recording"] = against_recording.json_ready(against)
        markdown = markdown.rstrip("\n") + "\n\n" + against_recording.markdown(against)
    (out / "metrics.json").write_text(json.dumps(result, indent=1, allow_nan=False) + "\n")
    (out / "metrics.md").write_text(markdown)
    _record_long_rollouts(args, info, result)
    levels = ", ".join(f"L{lv} {e['generated']['av_off_mean']:.2f} (gt {e['gt']['av_off_mean']:.2f}"
                       f", random {e['random']['av_off_mean']:.2f})"
                       for lv, e in result["levels"].items())
    d = result["drift"]
    after_10s, after_60s = (gen_eval.format_metric(d.get(k)) for k in ("after_10s", "after_60s"))
    if against is not None:
        print(f"msync: against the recording: {_against_line(against)}", file=sys.stderr)
    print(f"msync: generated mean |AV-Off| {levels}; L_rec "
          f"{result['generated_stats']['l_rec']:.4g}; drift 10 s {after_10s}, "
          f"60 s {after_60s}, finite {str(d['finite']).lower()} "
          f"({sync_eval.describe_clips(result)}) -> {out}", file=sys.stderr)


def _against_the_recording(args, loaded, manifest) -> dict | None:
    """``--against`` (``motion.against_recording``) on the split's whole clips, or None: asked
    for none, or left to the default where it cannot run (a model or data of another keypoint
    space than ``landmarks-v1``, which it decodes to landmarks); asked for there, it is refused."""
    level = getattr(args, "against", None)
    if level == "none":
        return None
    if manifest.keypoint_space != LANDMARK_SPACE:     # the model's: checked to be the data's
        if level is None:
            return None
        raise InputError(manifest.root / "manifest.json",
                         f"--against {level} compares {LANDMARK_SPACE} keypoints and landmarks "
                         f"with the recording; this data is {manifest.keypoint_space!r}")
    return against_recording.evaluate(loaded, args.data, args.split, level or "rendered")


def _against_line(against: dict) -> str:
    """r with the recorded opening and LMD, generated vs still photo, per space measured."""
    parts = []
    for space, rows in against["summary"].items():
        g, still = rows.get("generated", {}), rows.get("still", {})
        parts.append(f"{space} r {gen_eval.format_metric(g.get('r_opening'))}, LMD "
                     f"{gen_eval.format_metric(g.get('lmd'))} (still photo "
                     f"{gen_eval.format_metric(still.get('lmd'))})")
    checks = against["targets"]["checks"]
    met = sum(check["met"] is True for check in checks)
    return "; ".join(parts) + (f"; lip targets met {met} of {len(checks)} "
                               f"({len(against['clips'])} clips)")


def _record_long_rollouts(args, info: dict, result: dict) -> None:
    """The long-rollout figures go beside the model (``motion.saved_model.LONG_HORIZON``), where
    ``msync generate`` reads them; a model folder msync cannot write to (an installed, read-only
    one) keeps none, with a warning."""
    record = long_horizon.record(
        result, step=info.get("step"), params_sha256=info.get("params_sha256"),
        measured_by=f"msync evaluate --model {args.model} --data {args.data} --syncers "
                    f"{args.syncers} --split {args.split}")
    try:
        path = write_long_horizon(args.model, record)
    except OSError as err:
        warn(model_dir(args.model), f"cannot record the long-rollout check beside the model "
                                    f"({err.strerror or err}); generate will not see it")
        return
    verdict = record["verdict"]
    print(f"msync: long rollouts {'drift' if verdict['drifts'] else 'stay in place'} "
          f"({verdict['figures']}) -> {path}", file=sys.stderr)


def _evaluate_syncers(args) -> None:
    """Without ``--model``: the syncers' metrics on ground-truth and random pairs."""
    run = load_run(args.syncers)
    result = sync_eval.evaluate(run, args.data, args.split, args.clip_frames)
    result["syncers"] = str(args.syncers)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(result, indent=1) + "\n")
    (out / "metrics.md").write_text(sync_eval.markdown(result))
    summary = ", ".join(f"L{lv} gt {e['gt']['av_off_mean']:.2f} / random "
                        f"{e['random']['av_off_mean']:.2f}" for lv, e in result["levels"].items())
    print(f"msync: mean |AV-Off| {summary} ({sync_eval.describe_clips(result)}) -> {out}",
          file=sys.stderr)


def _model_json(path: Path, meta: str) -> Path:
    return path / meta if (path / meta).is_file() else path / "model" / meta
