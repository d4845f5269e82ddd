"""A trained generator on disk: the file layout that ``generate``, ``evaluate --model`` and the
bundled demo model share.

A saved model is a directory holding

- ``model.json``: ``{"format": "msync-generator", "version": 1, "config": {GeneratorConfig
  fields}, "keypoint_space": str, "features": {feature config}, "syncers_run": str | null,
  "step": int, ...}`` (extra keys are kept in ``info``); ``"arch": "ms-sync-official"`` marks
  the released MS-Sync generator converted by ``msync motion convert`` (``motion.official``:
  ``config`` then holds ``OfficialConfig``'s fields; absent = msync's own generator), and
  optionally
  ``"feature_stats": {"quantiles": [Q][F], "source": str}`` — per-band quantiles (levels
  ``linspace(0, 1, Q)``) of the training split's audio features, which ``msync generate`` matches
  an utterance's features onto (``syncers.data.features.match_features``; models without them are
  used as they are) — and ``"drift_window_s": float``, the drift-removal window ``msync
  generate`` applies by default (``motion.generate.remove_drift``; absent = none; a model that
  needs one has a drift problem, and ``generate`` says so), and ``"long_horizon"``: the record of
  a long-rollout check (``motion.long_horizon.record``; absent = none), ``"articulation"``
  (the loudness mouth, ``motion.articulation``), ``"lips"`` (the content mouth,
  ``motion.lips``; ``msync train lips``) and ``"expression"`` (``motion.expression``; ``msync
  train expression``), each with its fit's report (absent = none);
- ``params.msgpack``: the generator's parameters, ``flax.serialization.msgpack_serialize`` of a
  plain nested dict of float32 arrays. msgpack carries data only, so loading one never runs code.

:func:`load_model` also accepts a generator *training run* (``msync train generator --out RUN``),
whose exported model lives in ``RUN/model``.

``msync evaluate --model`` measures a model's long rollouts; the trainer exports before that, so
evaluate records them in a sidecar ``long_horizon.json`` beside ``model.json`` (the same record,
with the model's step and the SHA-256 of its ``params.msgpack``: a later export at another step,
or other parameters, leaves it stale and it is not read). :func:`long_rollout_warning` is what
``generate`` says when a model has no such record or drifts.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import flax.serialization
import jax
import numpy as np

from motion import articulation, expression, lips, long_horizon
from motion.generator import GeneratorConfig, init_params
from motion.model import GeneratorModel, ready
from motion.official import config as official_config
from motion.official.layout import template as official_template
from motion.official.model import OfficialModel
from syncers.data.layout import LANDMARK_SPACE
from syncers.run import config as config_lib
from syncers.run.errors import InputError, one_line
from syncers.run.inputs import check_allocation, existing, read_bounded, read_json
from syncers.run.outputs import published, staging_dir

FORMAT = "msync-generator"
VERSION = 1
META = "model.json"
PARAMS = "params.msgpack"
LONG_HORIZON = "long_horizon.json"    # evaluate's record of the long rollouts (sidecar)
N_QUANTILES = 101          # percentiles 0, 1, ..., 100: about 30 KB of JSON at 26 bands
MAX_STATS_FRAMES = 2_000_000   # ≈ 5.5 h of audio: percentiles are settled long before that
MAX_META_BYTES = 16_000_000    # model.json: about 40 KB with feature_stats and articulation
# params.msgpack may exceed the float32 bytes of its config's parameters by msgpack's framing
# (names and headers: a few bytes per leaf) and no more.
PARAMS_SLACK_BYTES = 1_000_000


def corpus_feature_stats(features: list[np.ndarray], source: str) -> dict:
    """``feature_stats`` for ``model.json`` from a corpus's clips' features (each ``[4T, F]``):
    per-band quantiles at ``linspace(0, 1, N_QUANTILES)``, rounded to 1e-4 (far below the
    features' spread) so the file stays small and the same corpus gives the same bytes.

    A corpus of more than ``MAX_STATS_FRAMES`` frames is read at a fixed stride (every k-th frame
    of every clip), so a large dataset's statistics cost bounded memory and stay deterministic."""
    total = sum(len(f) for f in features)
    stride = max(1, -(-total // MAX_STATS_FRAMES))
    stacked = np.concatenate([np.asarray(f[::stride], np.float64) for f in features])
    quantiles = np.quantile(stacked, np.linspace(0.0, 1.0, N_QUANTILES), axis=0)
    sampled = f", one in {stride} read" if stride > 1 else ""
    return {"quantiles": np.round(quantiles, 4).tolist(),
            "source": f"{source} ({len(features)} clips, {total} feature frames{sampled})"}


def save_model(directory: str | os.PathLike, model: GeneratorModel | OfficialModel, *,
               keypoint_space: str,
               features: dict | None = None, syncers_run: str | None = None, step: int = 0,
               feature_stats: dict | None = None, **extra: Any) -> Path:
    """Write ``model`` and what it was trained on to ``directory``; ``feature_stats`` (from
    :func:`corpus_feature_stats`) is written only when given.

    Both files are written whole into a staging directory beside ``directory``
    (``syncers.run.outputs.staging_dir``: ``.<name>.<random>.partial``), then moved in,
    ``params.msgpack`` first and ``model.json`` last: a reader sees each file whole, and a
    ``model.json`` is never newer than the parameters beside it — a kill between the two moves
    leaves the previous ``model.json``, whose step says the export is stale
    (:func:`exported_step`; ``motion.train`` exports again)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    params = jax.tree.map(lambda a: np.asarray(a, np.float32), flax.core.unfreeze(model.params))
    arch = {"arch": model.arch} if isinstance(model, OfficialModel) else {}
    meta = {"format": FORMAT, "version": VERSION, **arch,
            "config": dataclasses.asdict(model.config),
            "keypoint_space": keypoint_space, "features": features or {},
            "syncers_run": syncers_run, "step": int(step), **extra}
    if feature_stats is not None:
        meta["feature_stats"] = feature_stats
    staging = staging_dir(directory)
    try:
        (staging / PARAMS).write_bytes(flax.serialization.msgpack_serialize(params))
        (staging / META).write_text(json.dumps(meta, indent=1) + "\n")
        for name in (PARAMS, META):
            _move_in(staging / name, directory / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory


def _move_in(staged: Path, final: Path) -> None:
    os.replace(staged, final)


def exported_step(directory: str | os.PathLike) -> int | None:
    """The step of the model exported to ``directory`` (``model.json``'s), or None when there
    is no complete export there: a file missing, or a ``model.json`` that is not one."""
    directory = Path(directory)
    try:
        info = read_json(directory / META, MAX_META_BYTES)
    except InputError:
        return None
    if not (directory / PARAMS).is_file() or not isinstance(info, dict) or \
            info.get("format") != FORMAT or not isinstance(info.get("step"), int):
        return None
    return info["step"]


def load_model(path: str | os.PathLike) -> tuple[GeneratorModel | OfficialModel, dict]:
    """``(GeneratorModel, info)`` from a saved model directory or a generator training run;
    ``(OfficialModel, info)`` for a converted release (``arch: ms-sync-official``).

    ``info`` is the parsed ``model.json`` (``keypoint_space``, ``features``, ``syncers_run``,
    ``step``, ...) plus ``params_sha256``, the digest of the parameters read (not a key of the
    file). Anything malformed is an :class:`InputError` naming the file.

    A model directory is untrusted input: links are resolved safely
    (``syncers.run.inputs.existing``), ``model.json`` is read bounded in size and depth, every
    number of its config is checked against its range, and the parameters the config implies
    are refused, with the figure, when they would not fit this machine's memory — all before
    anything of that size is allocated or read.
    """
    config, params, info, _ = _read_model(path)
    if isinstance(config, official_config.OfficialConfig):
        return OfficialModel(params=params, config=config), info
    return ready(GeneratorModel(params=params, config=config)), info


def check_model(path: str | os.PathLike) -> dict:
    """Every check :func:`load_model` makes (``model.json``, the config's ranges, the
    parameters' names, shapes and size), without building the model: a server's start-up check
    of a model it will load later. Returns ``info``."""
    return _read_model(path)[2]


def _read_model(path: str | os.PathLike):
    """``(config, params, info, model.json's path)`` of :func:`load_model`."""
    path = Path(path)
    if not os.path.lexists(path):
        raise InputError(path, "no such model (a directory from `msync train generator`)")
    existing(path, "dir")
    path = model_dir(path)
    meta_path = path / META
    if not os.path.lexists(meta_path):
        raise InputError(path, f"not a generator model (no {META}; train one with "
                               "`msync train generator`)")
    info = read_json(meta_path, MAX_META_BYTES)
    if not isinstance(info, dict) or info.get("format") != FORMAT:
        raise InputError(meta_path, f"not an {FORMAT} file")
    if info.get("version") != VERSION:
        raise InputError(meta_path, f"format version {info.get('version')} is not supported "
                                    f"(this msync reads version {VERSION})")
    arch = info.get("arch")
    if arch == official_config.ARCH:
        config = official_config.from_dict(info.get("config"), meta_path)
        _check_generate_settings(info, config, meta_path)
        params = _read_params(path / PARAMS, official_template(config), info, meta_path)
        return config, params, info, meta_path
    if arch is not None:
        raise InputError(meta_path, f"unknown arch {arch!r} (this msync runs its own generator "
                                    f"and {official_config.ARCH})")
    config = _generator_config(info.get("config"), meta_path)
    _check_generate_settings(info, config, meta_path)
    # Shapes only: building real initial values would cost a minute of eager Flax on a CPU.
    try:
        template = jax.eval_shape(functools.partial(init_params, config), jax.random.key(0))
    except Exception as err:  # noqa: BLE001 - sizes no generator can have
        raise InputError(meta_path, f"config cannot build a generator ({one_line(err)})") \
            from None
    params = _read_params(path / PARAMS, template, info, meta_path)
    return config, params, info, meta_path


def model_articulation(info: dict) -> articulation.Articulation | None:
    """The articulation a loaded model's ``info`` holds (``model.json`` "articulation",
    validated by :func:`load_model`), or None."""
    raw = info.get("articulation")
    return None if raw is None else articulation.from_json(raw)


def model_lips(info: dict) -> lips.LipModel | None:
    """The content mouth a loaded model's ``info`` holds (``model.json`` "lips", validated by
    :func:`load_model`), or None."""
    raw = info.get("lips")
    return None if raw is None else lips.from_json(raw)


def model_expression(info: dict) -> expression.ExpressionSpace | None:
    """The expression space a loaded model's ``info`` holds (``model.json`` "expression",
    validated by :func:`load_model`), or None."""
    raw = info.get("expression")
    return None if raw is None else expression.from_json(raw)


def write_articulation(path: str | os.PathLike,
                       fitted: articulation.Articulation | lips.LipModel
                       | expression.ExpressionSpace, report: dict) -> Path:
    """Store ``fitted`` (and its fit ``report``) in the model's ``model.json`` under
    ``"articulation"`` (a loudness articulation), ``"lips"`` (a :class:`lips.LipModel`) or
    ``"expression"`` (a :class:`expression.ExpressionSpace`), replacing any earlier one; the file
    is replaced whole, so a reader never sees half of it."""
    key = "lips" if isinstance(fitted, lips.LipModel) else \
        "expression" if isinstance(fitted, expression.ExpressionSpace) else "articulation"
    meta_path = model_dir(path) / META
    info = read_json(meta_path, MAX_META_BYTES)
    info[key] = fitted.to_json()
    info[f"{key}_report"] = report
    with published(meta_path) as partial:
        partial.write_text(json.dumps(info, indent=1) + "\n")
    return meta_path


def model_dir(path: str | os.PathLike) -> Path:
    """The directory holding ``model.json``: ``path`` itself, or a training run's ``RUN/model``."""
    path = Path(path)
    if not os.path.lexists(path / META) and (path / "model" / META).is_file():
        return path / "model"
    return path


def write_long_horizon(path: str | os.PathLike, record: dict) -> Path:
    """Write ``record`` (``motion.long_horizon.record``) beside the model's ``model.json``
    (atomically); returns the file."""
    target = model_dir(path) / LONG_HORIZON
    with published(target) as partial:
        partial.write_text(json.dumps(record, indent=1, allow_nan=False) + "\n")
    return target


def long_horizon_record(path: str | os.PathLike, info: dict) -> dict | None:
    """The long-rollout record of the model ``load_model(path)`` returned with ``info``:
    ``model.json``'s ``long_horizon``, else the sidecar when it was measured on this very model
    (its step and parameter digest), else None."""
    own = info.get("long_horizon")
    if isinstance(own, dict):
        return own
    try:
        record = read_json(model_dir(path) / LONG_HORIZON, MAX_META_BYTES)
    except InputError:
        return None
    if not isinstance(record, dict) or record.get("format") != long_horizon.RECORD_FORMAT:
        return None
    if record.get("model_step") != info.get("step") or \
            record.get("params_sha256") != info.get("params_sha256"):
        return None                      # measured on an earlier export: stale
    return record


def long_rollout_warning(path: str | os.PathLike, info: dict, name: str) -> str | None:
    """What ``msync generate`` warns about a model's long rollouts (one line, without the
    ``msync: warning:`` prefix), or None: a model that records ``drift_window_s`` (it needed its
    slow motion removed), one whose record says it drifts, or one with no record at all. A
    converted release is not checked (``evaluate --model`` cannot score it)."""
    if info.get("arch") is not None:
        return None
    check = (f"`msync evaluate --model {name} --data DATA --syncers SYNCERS` measures it "
             "and records the result")
    record = long_horizon_record(path, info)
    drifts, figures = long_horizon.verdict(record) if record else (None, None)
    window = info.get("drift_window_s") or 0
    if window:
        measured = f" (last check: {figures})" if record else ""
        return (f"{name}: this model's long rollouts drift{measured}: it records drift_window_s "
                f"= {window:g} s, so generate removes motion slower than {window:g} s, slow "
                f"head motion with it; {check}")
    if record is None:
        return (f"{name}: no long-rollout check is recorded for this model (step "
                f"{info.get('step')}): its motion may drift over long audio; {check}")
    if drifts:
        return (f"{name}: this model drifts in long rollouts ({figures}; {LONG_HORIZON}); "
                "pass --drift-window S to remove slow motion, or retrain with "
                "model.restore_seconds > 0")
    return None


# GeneratorConfig's integer fields that may be 0 (all others count something and must be >= 1).
_MAY_BE_ZERO = ("fpn_post_convs", "fpn_lookahead")


def _generator_config(raw, meta_path: Path) -> GeneratorConfig:
    """``model.json``'s ``config`` as a :class:`GeneratorConfig`: known keys of the right types
    (``syncers.run.config``), counts >= 1, finite non-negative ``restore_seconds``."""
    if not isinstance(raw, dict):
        raise InputError(meta_path, "config must be a mapping of GeneratorConfig's fields")
    config = config_lib.from_dict(GeneratorConfig, raw, source=os.fspath(meta_path),
                                  prefix="config.")
    for field in dataclasses.fields(GeneratorConfig):
        value = getattr(config, field.name)
        if isinstance(value, int) and not isinstance(value, bool) and \
                value < (0 if field.name in _MAY_BE_ZERO else 1):
            raise InputError(meta_path, f"config.{field.name} must be >= "
                                        f"{0 if field.name in _MAY_BE_ZERO else 1}; got {value}")
        if isinstance(value, float) and not np.isfinite(value):
            raise InputError(meta_path, f"config.{field.name} must be finite; got {value}")
    if config.restore_seconds < 0:
        raise InputError(meta_path, f"config.restore_seconds must be >= 0; got "
                                    f"{config.restore_seconds}")
    return config


def _read_params(params_path: Path, template, info: dict, meta_path: Path):
    """``params.msgpack`` as float32 numpy leaves of ``template``'s tree: exactly its names
    and shapes (a leaf missing, one more, or one of another shape is refused); the digest of
    the bytes read goes to ``info["params_sha256"]``.

    Before anything is read, the parameters ``template`` implies must fit this machine's memory
    (refused with the figure, naming ``model.json``), and the file may hold no more than they
    take plus msgpack's framing."""
    n_bytes = sum(int(np.prod(leaf.shape)) * 4 for leaf in jax.tree.leaves(template))
    check_allocation(meta_path, f"its config's parameters ({n_bytes // 4:,} floats)", n_bytes)
    if not os.path.lexists(params_path):
        raise InputError(params_path, "missing")
    data = read_bounded(params_path, n_bytes + PARAMS_SLACK_BYTES)
    info["params_sha256"] = hashlib.sha256(data).hexdigest()
    try:
        state = flax.serialization.msgpack_restore(data)
    except (ValueError, KeyError, TypeError) as err:
        raise InputError(params_path, f"cannot be read as generator parameters ({err})") from None
    want, got = _leaves(template), _leaves(state)
    missing = [k for k in want if k not in got]
    extra = [k for k in got if k not in want]
    if missing or extra:
        parts = [f"{what} {', '.join(keys[:3])}{' ...' * (len(keys) > 3)} ({len(keys)})"
                 for what, keys in (("missing", missing), ("not in the config", extra)) if keys]
        raise InputError(params_path, f"parameters do not match model.json's config: "
                                      f"{'; '.join(parts)}")
    bad = [k for k, leaf in got.items()
           if not isinstance(leaf, np.ndarray) or leaf.dtype.kind != "f"
           or leaf.shape != tuple(want[k].shape)]
    if bad:
        raise InputError(params_path, f"parameter shapes do not match model.json's config: "
                                      f"{', '.join(bad[:3])}")
    params = flax.serialization.from_state_dict(template, state)
    return jax.tree.map(lambda a: np.asarray(a, np.float32), params)


def _leaves(tree) -> dict[str, Any]:
    """``{"['a']['b']": leaf}`` of a parameter tree (as a plain state dict)."""
    flat = jax.tree_util.tree_flatten_with_path(flax.serialization.to_state_dict(tree))[0]
    return {jax.tree_util.keystr(path): leaf for path, leaf in flat}


def _check_generate_settings(info: dict, config: GeneratorConfig | official_config.OfficialConfig,
                             meta_path: Path) -> None:
    """``feature_stats`` must be ``[Q ≥ 2][audio_features]`` finite quantiles, non-decreasing
    along Q; ``drift_window_s`` a number >= 0. Either may be absent (older models)."""
    stats = info.get("feature_stats")
    if stats is not None:
        try:
            quantiles = np.asarray(stats["quantiles"], np.float64)
        except (TypeError, KeyError, ValueError):
            raise InputError(meta_path, "feature_stats must hold \"quantiles\": a [Q][bands] "
                                        "list of numbers") from None
        if (quantiles.ndim != 2 or quantiles.shape[0] < 2
                or quantiles.shape[1] != config.audio_features):
            raise InputError(meta_path, f"feature_stats quantiles must be [Q >= 2, "
                                        f"{config.audio_features}]; got {list(quantiles.shape)}")
        if not np.all(np.isfinite(quantiles)) or np.any(np.diff(quantiles, axis=0) < 0):
            raise InputError(meta_path, "feature_stats quantiles must be finite and "
                                        "non-decreasing in every band")
    if info.get("long_horizon") is not None and not isinstance(info["long_horizon"], dict):
        raise InputError(meta_path, "long_horizon must be a record of msync evaluate --model "
                                    "(a mapping)")
    for key, from_json in (("articulation", articulation.from_json), ("lips", lips.from_json),
                           ("expression", expression.from_json)):
        if info.get(key) is None:
            continue
        if info.get("keypoint_space") != LANDMARK_SPACE:
            raise InputError(meta_path, f"{key} moves {LANDMARK_SPACE} faces; this "
                                        f"model's space is {info.get('keypoint_space')!r}")
        try:
            from_json(info[key])
        except ValueError as err:
            raise InputError(meta_path, str(err)) from None
    window = info.get("drift_window_s")
    if window is not None and (isinstance(window, bool) or not isinstance(window, (int, float))
                               or not np.isfinite(window) or window < 0):
        raise InputError(meta_path, f"drift_window_s must be a number >= 0; got {window!r}")
