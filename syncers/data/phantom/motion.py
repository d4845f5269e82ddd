"""Phantom motion: one clip's speech plan, audio and 10-point keypoints ``[T, 10, 6]``
(docs/design.md, "Phantom corpus"). :mod:`syncers.data.phantom.corpus` writes corpora of these
clips.

Each clip is drawn from its own random streams, derived from ``(seed, clip index)`` alone, so clips
can be made in any order or in parallel and the same seed gives the same bytes. Speech is planned
and rendered by :mod:`syncers.data.phantom.audio`; this module animates the 10-point template
(:mod:`syncers.data.phantom.template`) of a random speaker from the same plan:

* lips (fine scale): mouth opening = the syllable envelope delayed by ``lip_lag``;
* head (coarse scales): a nod (vertical translation, the pitch proxy) = speech energy band-passed
  to 0.3–2 Hz and delayed by ``head_lag`` (stress accents and phrase loudness survive the band,
  the syllable rhythm does not), plus an uncoupled drift of equal power in the same band
  (0 dB coupling SNR); uncoupled roll, sideways shift and scale drifts; the whole head moves as a
  2-D similarity transform of positions and jacobians;
* blinks (eye jacobians) at random; small Gaussian jitter on everything.

A coupling gain g ∈ [0, 1] keeps g of the speech-driven part and fills in sqrt(1 − g²) of an
*independent* speech-like plan's part, so motion power is the same for every g: ``head=0`` and
``lips=0`` are negative controls whose motion is statistically identical but unrelated to the audio.
The audio itself does not depend on the coupling.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Mapping

import numpy as np
from scipy import signal

from syncers.data.layout import FPS, PHANTOM_SPACE, SAMPLE_RATE, SAMPLES_PER_FRAME
from syncers.data.phantom import audio as pa
from syncers.data.phantom.template import LOWER_LIP, UPPER_LIP, fit_to_box

KEYPOINT_SPACE = PHANTOM_SPACE
GENERATOR_VERSION = 1
MIN_SECONDS = 1.6           # one 1600 ms segment: the coarsest syncer level needs a whole one
EYES, MOUTH_CORNERS, CHIN = (2, 3), (5, 6), 9


@dataclasses.dataclass(frozen=True)
class PhantomParams:
    """Motion constants. Lags in seconds; amplitudes in normalised image units unless noted."""
    lip_lag: float = 0.04
    head_lag: float = 0.16
    head_band: tuple[float, float] = (0.3, 2.0)    # Hz: the nod band (coupled part and drift)
    pose_band: tuple[float, float] = (0.05, 1.0)   # Hz: uncoupled roll / shift / scale drifts
    lip_amp: float = 0.06                          # face-box units of jaw drop per unit envelope
    nod_rms: float = 0.02
    roll_rms: float = 0.03                         # radians
    shift_rms: float = 0.01
    scale_rms: float = 0.01
    blink_rate: float = 0.25                       # per second
    jitter: float = 0.0015                         # positions; jacobians get 3×
    jacobian_spread: float = 0.03                  # per-speaker deviation from the box frame
    shape_spread: float = 0.03                     # per-speaker template offsets (box units)

    def to_meta(self) -> dict:
        """JSON form (bands as lists, so a meta read back from disk compares equal)."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}


@dataclasses.dataclass(frozen=True)
class PhantomClip:
    """One synthesised clip. ``samples [640 T]`` float32 16 kHz; ``keypoints [T, 10, 6]``;
    ``truth`` holds ground-truth signals ``[T]``: ``lip_drive`` (mouth-opening command),
    ``speech_envelope`` (the audio's intended loudness per frame, no lag), ``nod`` (vertical head
    translation), ``head_coupled`` (unit-RMS speech-driven nod, lag included), ``head_drift``
    (unit-RMS uncoupled nod drift), ``blink`` (0–1)."""
    samples: np.ndarray
    keypoints: np.ndarray
    meta: dict
    truth: dict[str, np.ndarray]


def clip_streams(seed: int, index: int) -> list[np.random.Generator]:
    """Six independent generators for clip ``index``: speaker, speech plan, audio noise,
    independent (control) plan, head drifts, blinks + jitter. Separate streams keep the audio
    identical whatever the coupling."""
    root = np.random.SeedSequence(entropy=int(seed), spawn_key=(int(index),))
    return [np.random.default_rng(s) for s in root.spawn(6)]


def band_pass(x: np.ndarray, band: tuple[float, float], fps: float = FPS) -> np.ndarray:
    """Zero-phase (forward-backward) 2nd-order Butterworth band-pass along axis 0: zero phase
    so a delay put into a signal is exactly the delay that comes out."""
    sos = signal.butter(2, band, btype="band", fs=fps, output="sos")
    return signal.sosfiltfilt(sos, x, axis=0)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / max(float(np.sqrt(np.mean(x * x))), 1e-12)


def _drift(rng: np.random.Generator, n_frames: int, band: tuple[float, float]) -> np.ndarray:
    """Unit-RMS band-limited Gaussian noise ``[T]`` (padded so the filter has no edge)."""
    pad = int(4 * FPS / band[0])
    return _unit(band_pass(rng.standard_normal(n_frames + 2 * pad), band)[pad:pad + n_frames])


def _energy_drive(plan: pa.SpeechPlan, n_frames: int, lag: float,
                  band: tuple[float, float]) -> np.ndarray:
    """Unit-RMS speech energy (envelope²) delayed by ``lag`` and band-passed ``[T]``; the plan
    extends (as silence) before and after the clip, so the filter sees no artificial edges."""
    pad = int(4 * FPS / band[0])
    energy = pa.frame_envelope(plan, n_frames + 2 * pad, lag + pad / FPS) ** 2
    return _unit(band_pass(energy, band)[pad:pad + n_frames])


def _mix(g: float, coupled: np.ndarray, independent: np.ndarray) -> np.ndarray:
    # Two independent components weighted g and sqrt(1 − g²): fluctuation power is kept for
    # every g in [0, 1]; g > 1 only amplifies the coupled part.
    return g * coupled + math.sqrt(max(0.0, 1.0 - g * g)) * independent


def synth_clip(seed: int, index: int, seconds: float = 8.0,
               coupling: Mapping[str, float] | None = None,
               params: PhantomParams = PhantomParams()) -> PhantomClip:
    """Synthesise clip ``index`` of the corpus with ``seed`` (pure: same inputs, same arrays)."""
    g_head = float((coupling or {}).get("head", 1.0))
    g_lips = float((coupling or {}).get("lips", 1.0))
    n_frames = int(round(seconds * FPS))
    r_speaker, r_plan, r_audio, r_indep, r_head, r_noise = clip_streams(seed, index)
    # Per-speaker face box (position, size, aspect) and template shape / local-frame offsets.
    centre = np.array([r_speaker.uniform(-0.1, 0.1), r_speaker.uniform(-0.15, 0.05)])
    half_w = float(r_speaker.uniform(0.30, 0.45))
    half = np.array([half_w, half_w * float(r_speaker.uniform(1.0, 1.2))])
    shape = r_speaker.normal(0.0, params.shape_spread, (10, 2))
    jac_offset = r_speaker.normal(0.0, params.jacobian_spread, (10, 2, 2))
    f0_base = float(r_speaker.uniform(100.0, 200.0))

    plan = pa.plan_speech(r_plan, n_frames / FPS, f0_base)
    samples = pa.render_speech(plan, n_frames * SAMPLES_PER_FRAME, r_audio)
    control = pa.plan_speech(r_indep, n_frames / FPS, f0_base)

    lips = _mix(g_lips, pa.frame_envelope(plan, n_frames, params.lip_lag),
                pa.frame_envelope(control, n_frames, params.lip_lag))
    coupled = _energy_drive(plan, n_frames, params.head_lag, params.head_band)
    stand_in = _energy_drive(control, n_frames, params.head_lag, params.head_band)
    drift = _drift(r_head, n_frames, params.head_band)
    nod = params.nod_rms * (_mix(g_head, coupled, stand_in) + drift) / math.sqrt(2.0)
    roll = params.roll_rms * _drift(r_head, n_frames, params.pose_band)
    shift_x = params.shift_rms * _drift(r_head, n_frames, params.pose_band)
    scale = 1.0 + params.scale_rms * _drift(r_head, n_frames, params.pose_band)

    n_blinks = int(r_noise.poisson(params.blink_rate * n_frames / FPS))
    blinks = np.stack([r_noise.uniform(0, n_frames / FPS, n_blinks),
                       r_noise.uniform(0.10, 0.25, n_blinks)], axis=1)
    u = ((np.arange(n_frames)[None, :] + 0.5) / FPS - blinks[:, :1]) / blinks[:, 1:]
    blink = np.max(np.where((u >= 0) & (u < 1), np.sin(np.pi * u), 0.0), axis=0,
                   initial=0.0)

    neutral = fit_to_box((*(centre - half), *(centre + half)))
    keypoints = _animate(neutral, centre, half, shape, jac_offset, lips,
                         params.lip_amp, blink, nod, roll, shift_x, scale)
    keypoints[..., :2] += r_noise.normal(0.0, params.jitter, keypoints[..., :2].shape)
    keypoints[..., 2:] += r_noise.normal(0.0, 3 * params.jitter, keypoints[..., 2:].shape)

    meta = {
        "source": "phantom", "generator_version": GENERATOR_VERSION,
        "keypoint_space": KEYPOINT_SPACE, "fps": float(FPS), "sample_rate": SAMPLE_RATE,
        "seed": int(seed), "index": int(index), "seconds": n_frames / FPS,
        "n_frames": n_frames, "coupling": {"head": g_head, "lips": g_lips},
        "params": params.to_meta(),
        "speaker": {"box_centre": centre.tolist(), "box_half": half.tolist(),
                    "shape_offsets": shape.tolist(), "jacobian_offsets": jac_offset.tolist(),
                    "f0_base": f0_base},
        "plan": plan.to_meta(), "control_plan": control.to_meta(),
        "blinks": blinks.tolist(),
    }
    truth = {"lip_drive": lips, "speech_envelope": pa.frame_envelope(plan, n_frames),
             "nod": nod, "head_coupled": coupled, "head_drift": drift, "blink": blink}
    return PhantomClip(samples=samples, keypoints=keypoints.astype(np.float32), meta=meta,
                       truth={k: v.astype(np.float32) for k, v in truth.items()})


def _animate(neutral: np.ndarray, centre: np.ndarray, half: np.ndarray, shape: np.ndarray,
             jac_offset: np.ndarray, lips: np.ndarray, lip_amp: float, blink: np.ndarray,
             nod: np.ndarray, roll: np.ndarray, shift_x: np.ndarray,
             scale: np.ndarray) -> np.ndarray:
    """Keypoints ``[T, 10, 6]``: the template in the speaker's box (``neutral [10, 6]``, from
    :func:`fit_to_box`) moved by per-speaker offsets (``shape [10, 2]`` box units,
    ``jac_offset [10, 2, 2]``) and per-frame signals ``[T]`` (lip drive, blink, nod, roll,
    sideways shift, scale)."""
    n_frames = lips.shape[0]
    pos = np.broadcast_to(shape, (n_frames, 10, 2)).copy()     # box-unit offsets from neutral
    jaw = lip_amp * lips
    # The jaw drops: lower lip most, chin with it, corners a little (and inwards), upper lip
    # slightly up; mouth opening = y(lower lip) − y(upper lip) grows by 1.2 × jaw.
    pos[:, LOWER_LIP, 1] += jaw
    pos[:, UPPER_LIP, 1] -= 0.2 * jaw
    pos[:, CHIN, 1] += 0.8 * jaw
    pos[:, MOUTH_CORNERS, 1] += 0.4 * jaw[:, None]
    pos[:, MOUTH_CORNERS, 0] += np.array([0.15, -0.15]) * jaw[:, None]
    pos = neutral[:, :2] + half * pos
    # Local frames: the box's anisotropy times a per-speaker deviation (near identity); the
    # lower lip stretches vertically as the mouth opens, the eyes flatten in a blink.
    stretch = np.ones((n_frames, 10))
    stretch[:, LOWER_LIP] += 0.5 * lips
    stretch[:, EYES] *= (1.0 - 0.8 * blink)[:, None]
    jac = neutral[:, 2:].reshape(10, 2, 2) @ (np.eye(2) + jac_offset)     # [10, 2, 2]
    jac = np.broadcast_to(jac, (n_frames, 10, 2, 2)).copy()
    jac[..., 1, :] *= stretch[..., None]
    # Head pose: similarity transform about the face centre, A = s·R(roll), then translation.
    cos, sin = np.cos(roll), np.sin(roll)
    a = scale[:, None, None] * np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], 1)
    pos = centre + np.einsum("tij,tkj->tki", a, pos - centre)
    pos += np.stack([shift_x, nod], axis=-1)[:, None, :]
    jac = np.einsum("tij,tkjl->tkil", a, jac)
    return np.concatenate([pos, jac.reshape(n_frames, 10, 4)], axis=-1)
