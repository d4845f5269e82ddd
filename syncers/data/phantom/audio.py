"""Speech-like audio for the phantom corpus (docs/design.md, "Phantom corpus").

A clip's speech is first *planned* as events — phrases of 1–3 s separated by 150–600 ms pauses,
each a run of syllables of 120–300 ms (3–8 per second) with a vowel, a loudness, a stress flag and
sometimes an unvoiced onset burst — and then *rendered* to 16 kHz samples: harmonics of a
phrase-level f0 contour (90–250 Hz, declination, accents on stressed syllables) shaped by the
vowel's formants, times the syllable envelope, plus high-passed noise bursts. Rendering is
vectorised over samples; Python loops run only over events (syllables, harmonics).

The plan is the ground truth the motion is coupled to: :func:`syllable_envelope` evaluates the
intended loudness at any times, and :func:`frame_envelope` averages it over 25 fps video frames,
optionally delayed. The carrier is power-normalised, so the audio's RMS follows the envelope.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from syncers.data.layout import FPS, SAMPLE_RATE

CONTROL_RATE = 400                 # Hz: f0 and formant tracks are built here, then interpolated

# Vowel formants (F1, F2, F3) in Hz, adult averages (Peterson & Barney style): /a/ /e/ /i/ /o/ /u/.
VOWELS = np.array([[730, 1090, 2440], [530, 1840, 2480], [270, 2290, 3010],
                   [570, 840, 2410], [300, 870, 2240]], dtype=np.float64)
FORMANT_BANDWIDTHS = np.array([80.0, 110.0, 160.0])
F0_RANGE = (90.0, 250.0)
MAX_HARMONIC_HZ = 4000.0           # above this the formant tail is negligible for the features


@dataclasses.dataclass(frozen=True)
class SpeechPlan:
    """The events of one clip's speech. Syllable arrays are ``[S]``, phrase arrays ``[P]``.

    ``amplitudes`` already include phrase loudness, in-phrase declination and stress, so the
    envelope is the loudness the speaker intends; ``bursts`` is an unvoiced onset's length in
    seconds (0: none).
    """
    onsets: np.ndarray
    durations: np.ndarray
    amplitudes: np.ndarray
    stressed: np.ndarray
    vowels: np.ndarray
    bursts: np.ndarray
    phrase_starts: np.ndarray
    phrase_ends: np.ndarray
    f0_base: float
    seconds: float

    def to_meta(self) -> dict:
        """JSON-serialisable form (every float exact: ``json`` writes shortest round-trips)."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in out.items()}


def plan_speech(rng: np.random.Generator, seconds: float, f0_base: float) -> SpeechPlan:
    """Draw phrases and syllables covering ``seconds`` of time (events only; no samples)."""
    onsets, durations, amplitudes, stressed, phrases = [], [], [], [], []
    t = float(rng.uniform(0.05, 0.4))                  # a short lead-in silence
    while t + 0.12 <= seconds:
        end = min(t + float(rng.uniform(1.0, 3.0)), seconds)
        loudness = float(rng.uniform(0.6, 1.0))        # phrase-level energy: the coarse scale
        first, start = len(onsets), t
        while True:
            d = float(rng.uniform(0.12, 0.30))
            if t + d > end:
                break
            onsets.append(t)
            durations.append(d)
            stress = bool(rng.random() < 0.3)
            # Loudness declines through a phrase; stress lifts a syllable well above it.
            decline = 1.0 - 0.35 * (t - start) / max(end - start, 1e-6)
            amplitudes.append(loudness * decline * (1.8 if stress else 1.0)
                              * float(rng.uniform(0.85, 1.15)))
            stressed.append(stress)
            t += d
        if len(onsets) > first:
            phrases.append((start, t))
        t = max(t, start + 0.12) + float(rng.uniform(0.15, 0.6))
    n = len(onsets)
    bursts = np.where(rng.random(n) < 0.5, rng.uniform(0.03, 0.07, n), 0.0)
    vowels = rng.integers(0, len(VOWELS), n)
    phrase_arr = np.array(phrases, dtype=np.float64).reshape(-1, 2)
    return SpeechPlan(onsets=np.array(onsets), durations=np.array(durations),
                      amplitudes=np.array(amplitudes), stressed=np.array(stressed, dtype=bool),
                      vowels=vowels.astype(np.int64), bursts=bursts.astype(np.float64),
                      phrase_starts=phrase_arr[:, 0], phrase_ends=phrase_arr[:, 1],
                      f0_base=float(f0_base), seconds=float(seconds))


def _syllable_index(plan: SpeechPlan, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each time, the syllable it falls in (index, or −1 outside) and its phase u ∈ [0, 1).

    Index −1 is chosen so that ``np.append(per_syllable, fill)[index]`` reads ``fill`` outside.
    """
    if len(plan.onsets) == 0:
        return np.full(times.shape, -1), np.zeros(times.shape)
    idx = np.searchsorted(plan.onsets, times, side="right") - 1
    safe = np.maximum(idx, 0)
    u = (times - plan.onsets[safe]) / plan.durations[safe]
    inside = (idx >= 0) & (u < 1.0)
    return np.where(inside, idx, -1), np.where(inside, u, 0.0)


def syllable_envelope(plan: SpeechPlan, times: np.ndarray) -> np.ndarray:
    """The intended loudness ``[N]`` at ``times`` ``[N]`` (s): a half-sine per syllable, so
    the mouth closes (envelope 0) at every syllable boundary and in pauses."""
    idx, u = _syllable_index(plan, np.asarray(times, np.float64))
    return np.append(plan.amplitudes, 0.0)[idx] * np.sin(np.pi * u)


def frame_envelope(plan: SpeechPlan, n_frames: int, lag: float = 0.0,
                   subframes: int = 8) -> np.ndarray:
    """The envelope averaged over each video frame ``[T]``, delayed by ``lag`` seconds.

    Averaging (not point sampling) mirrors what a frame's audio RMS sees and avoids aliasing
    the 3–8 Hz syllable rhythm at 25 fps.
    """
    offsets = (np.arange(subframes) + 0.5) / subframes
    times = (np.arange(n_frames)[:, None] + offsets[None, :]) / FPS - lag
    return syllable_envelope(plan, times.reshape(-1)).reshape(n_frames, subframes).mean(axis=1)


def _control_tracks(plan: SpeechPlan, n_control: int) -> tuple[np.ndarray, np.ndarray]:
    """f0 ``[C]`` (Hz) and formants ``[C, 3]`` (Hz) at :data:`CONTROL_RATE`."""
    times = np.arange(n_control) / CONTROL_RATE
    # Declination: f0 falls ~25 % from a phrase's start to its end, then resets.
    phrase = np.searchsorted(plan.phrase_starts, times, side="right") - 1
    phrase = np.clip(phrase, 0, max(len(plan.phrase_starts) - 1, 0))
    if len(plan.phrase_starts):
        span = np.maximum(plan.phrase_ends[phrase] - plan.phrase_starts[phrase], 1e-3)
        progress = np.clip((times - plan.phrase_starts[phrase]) / span, 0.0, 1.0)
    else:
        progress = np.zeros_like(times)
    contour = 1.12 - 0.25 * progress
    # Accents: a 100 ms-wide Gaussian f0 rise centred on each stressed syllable.
    impulses = np.zeros(n_control)
    centres = plan.onsets + plan.durations / 2
    hit = np.clip(np.round(centres[plan.stressed] * CONTROL_RATE).astype(int), 0, n_control - 1)
    np.add.at(impulses, hit, 1.0)
    sigma = 0.05 * CONTROL_RATE
    kernel = np.exp(-0.5 * (np.arange(-4 * sigma, 4 * sigma + 1) / sigma) ** 2)
    accents = np.convolve(impulses, kernel, mode="same")
    f0 = np.clip(plan.f0_base * contour * (1.0 + 0.3 * accents), *F0_RANGE)
    # Formants step per syllable's vowel, smoothed over 40 ms for coarticulation.
    idx, _ = _syllable_index(plan, times)
    nearest = np.clip(np.searchsorted(plan.onsets, times) - 1, 0, max(len(plan.onsets) - 1, 0))
    vowel = plan.vowels[np.where(idx >= 0, idx, nearest)] if len(plan.onsets) else np.zeros(
        n_control, np.int64)
    box = np.ones(int(0.04 * CONTROL_RATE)) / int(0.04 * CONTROL_RATE)
    formants = np.stack([np.convolve(np.pad(VOWELS[vowel, j], len(box), mode="edge"), box,
                                     mode="same")[len(box):-len(box)] for j in range(3)], axis=1)
    return f0, formants


def render_speech(plan: SpeechPlan, n_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Render a plan to ``[n_samples]`` float32 at 16 kHz, peak-normalised to 0.7.

    ``n_samples`` must be a multiple of 40 (one control step); clips are whole video frames.
    """
    if n_samples % (SAMPLE_RATE // CONTROL_RATE):
        raise ValueError(f"n_samples must be a multiple of {SAMPLE_RATE // CONTROL_RATE}; "
                         f"got {n_samples}")
    n_control = int(np.ceil(n_samples / SAMPLE_RATE * CONTROL_RATE)) + 2
    f0_c, formants_c = _control_tracks(plan, n_control)
    # Harmonic gains are smooth in time, so they are computed at the control rate ([K, C]):
    # resonance magnitude of each formant on a −6 dB/octave glottal tilt, harmonics past
    # MAX_HARMONIC_HZ muted, then normalised to a unit-power carrier so that loudness is
    # carried by the envelope alone (the audio's RMS follows the plan whatever the vowel).
    k = np.arange(1, int(MAX_HARMONIC_HZ // F0_RANGE[0]) + 1, dtype=np.float64)[:, None]
    freq = k * f0_c[None, :]
    gain = sum(bw * bw / ((freq - formants_c[None, :, j]) ** 2 + bw * bw)
               for j, bw in enumerate(FORMANT_BANDWIDTHS))
    gain = (gain + 0.02) / k * (freq < MAX_HARMONIC_HZ)
    gain /= np.sqrt(np.maximum((gain * gain).sum(axis=0) / 2, 1e-12))
    gain = gain.astype(np.float32)
    # The samples are viewed as [blocks, STEP] with one control point per block start, so the
    # linear interpolation of gains is a broadcast: Σ_k ((1−w)·g_k[b] + w·g_k[b+1])·sin(kφ)
    # = (1−w)·A + w·B with A, B accumulated per harmonic in place (no gathers, no temporaries).
    step = SAMPLE_RATE // CONTROL_RATE
    blocks = n_samples // step
    t = np.arange(n_samples) / SAMPLE_RATE
    f0 = np.interp(t, np.arange(n_control) / CONTROL_RATE, f0_c)
    phase = (2 * np.pi * np.cumsum(f0) / SAMPLE_RATE).reshape(blocks, step)
    # sin(kφ) by the Chebyshev recurrence sin(kφ) = 2cos(φ)·sin((k−1)φ) − sin((k−2)φ):
    # one multiply-subtract per harmonic instead of a sine.
    two_cos = (2 * np.cos(phase)).astype(np.float32)
    previous = np.zeros((blocks, step), np.float32)
    current = np.sin(phase).astype(np.float32)
    scratch = np.empty_like(current)
    acc_a, acc_b = np.zeros_like(current), np.zeros_like(current)
    for row in gain[:, :, None]:
        if not row.any():
            break                                   # every higher harmonic is muted too
        np.multiply(current, row[:blocks], out=scratch)
        acc_a += scratch
        np.multiply(current, row[1:blocks + 1], out=scratch)
        acc_b += scratch
        np.multiply(two_cos, current, out=scratch)
        scratch -= previous
        previous, current, scratch = current, scratch, previous
    w = (np.arange(step, dtype=np.float32) / step)[None, :]
    voiced = ((1 - w) * acc_a + w * acc_b).reshape(-1)
    idx, u = _syllable_index(plan, t)
    amp = np.append(plan.amplitudes, 0.0)[idx]
    envelope = amp * np.sin(np.pi * u)
    # Unvoiced onsets: high-passed (differenced) noise decaying over the burst length.
    since = u * np.append(plan.durations, 1.0)[idx]
    length = np.append(plan.bursts, 0.0)[idx]
    burst = np.where(since < length, 0.35 * amp * np.exp(-since / np.maximum(length, 1e-3)), 0.0)
    noise = np.diff(rng.standard_normal(n_samples + 1)) / np.sqrt(2)
    floor = 3e-4 * rng.standard_normal(n_samples)      # room noise: keeps log-mel finite
    samples = envelope * voiced + burst * noise + floor
    peak = np.max(np.abs(samples))
    return (samples * (0.7 / peak if peak > 0 else 1.0)).astype(np.float32)


def utterance(seconds: float, seed: int = 20240) -> np.ndarray:
    """A phantom speaker's utterance ``[n]`` float32 at 16 kHz, whole 40 ms frames: the same
    samples for the same arguments (tests and benchmarks use it as speech that needs no file)."""
    plan_rng, audio_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(2))
    n_frames = int(round(seconds * FPS))
    plan = plan_speech(plan_rng, n_frames / FPS, f0_base=140.0)
    return render_speech(plan, n_frames * (SAMPLE_RATE // FPS), audio_rng)
