"""What is said, per video frame: viseme occupancies from all-phone decoding, the input of the
mouth model ``motion.lips`` (a departure from the paper, which reads only log-mel features).

A mouth follows the phones being said (closed for p/b/m, rounded for oo/w, spread for ee, open
for open vowels), not how loud they are. The phones come from PocketSphinx's all-phone search
(``pocketsphinx`` 5.x, BSD licence): its en-US acoustic model and phone language model are files
inside the wheel, so nothing is downloaded at run time. The recogniser is English; other speech
is heard as the nearest English phones: on a recited Mandarin poem the pauses rest, 15 % of the
speech frames rest too (English recordings: 0–1 %), and the others are labelled mostly spread
(25 %), open, alveolar and rounded, in phones as short as English ones (3.7 frames on average).

- **Phones.** PocketSphinx's 10 ms frames: row ``m`` reads the 25.6 ms from sample ``160 m``,
  so rows ``4t .. 4t+3`` are video frame ``t`` as for ``syncers.data.features`` (its windows are
  centred on the hop, PocketSphinx's start there: 8 ms later on average). Cepstral mean
  normalisation is the live one, so a row's phone depends on the audio before it only. On the
  real corpus's ten GRID sentences (their words are in their file names) the error rate of the
  viseme sequence is 44 % (of the phone sequence 59 %).
- **Visemes.** Each phone maps to one of ``VISEMES`` (the mouth shapes English phones share);
  a frame's feature ``[V]`` is the share of its 4 rows each viseme occupies (sums to 1).
- **Look-ahead.** The search's best path changes as audio arrives. :class:`ContentStream` emits
  frame ``t`` once the decoder holds ``lookahead`` video frames past it and labels it with the
  best path at that moment; later audio never changes an emitted frame. :func:`content_features`
  is that stream fed the whole clip at once, so offline features equal streamed ones exactly,
  for any chunking (the decoder always receives whole 40 ms blocks); :func:`speech_content`
  feeds it a :class:`syncers.data.features.Speech` block by block (an hour of speech is never
  held whole) and gives those features too. ``lookahead=None`` waits for the end of the audio
  (the utterance's final best path).

Coarticulation (a shape spread over neighbouring phones, the mouth moving before the sound) is
left to the model that reads these features over a window of frames (``motion.lips``).
"""
from __future__ import annotations

import time

import numpy as np
import pocketsphinx

from syncers.data.features import Speech, n_video_frames
from syncers.data.layout import FEATURES_PER_FRAME, SAMPLES_PER_FRAME
from syncers.run.errors import warn
from syncers.run.progress import bar

VISEMES = ("rest", "closed", "labiodental", "dental", "alveolar", "postalveolar", "velar",
           "w", "r", "spread", "open", "mid", "rounded", "noise")
_VISEME_PHONES = {
    "rest": ("SIL", "+NSN+"),                        # silence, non-speech noise
    "closed": ("P", "B", "M"),
    "labiodental": ("F", "V"),
    "dental": ("TH", "DH"),
    "alveolar": ("T", "D", "N", "L", "S", "Z"),
    "postalveolar": ("SH", "ZH", "CH", "JH"),        # protruded lips
    "velar": ("K", "G", "NG", "HH"),
    "w": ("W",),
    "r": ("R", "ER"),
    "spread": ("IY", "IH", "EY", "Y"),
    "open": ("AA", "AE", "AH", "AO", "AY", "AW"),
    "mid": ("EH",),
    "rounded": ("UW", "UH", "OW", "OY"),
    "noise": ("+SPN+",),                             # speech the model cannot place
}
PHONE_VISEME = {phone: VISEMES.index(viseme)
                for viseme, phones in _VISEME_PHONES.items() for phone in phones}
N_VISEMES = len(VISEMES)
REST = VISEMES.index("rest")
# Frames of audio past a frame before it is labelled: 480 ms. On ten English recordings the
# viseme labelled then is the final best path's on 99 % of frames (3 frames: 84 %, 6: 94 %), and a
# generator stream already waits 1.2 s for its own look-ahead.
DEFAULT_LOOKAHEAD = 12
# A stream starts a new utterance in a pause (frames all rest in a row) once the utterance holds
# MIN_UTTERANCE frames, and at MAX_UTTERANCE frames in any case (ContentStream: bounded work).
PAUSE_FRAMES, MIN_UTTERANCE, MAX_UTTERANCE = 5, 125, 750      # 200 ms, 5 s, 30 s


# Where live cepstral mean normalisation starts: the median of the means it ends on over the
# real corpus's training recordings (PocketSphinx's default start, 40 in c0, is a quieter
# recording's: the first second of an utterance decodes worse from it).
CMN_START = "51.2,7.3,4.0,6.0,0.0,-5.3,-8.1,-4.3,-2.3,-2.0,1.1,-0.7,-2.1"


def _decoder() -> pocketsphinx.Decoder:
    """A decoder for all-phone search with the wheel's en-US model and phone language model."""
    return pocketsphinx.Decoder(allphone=pocketsphinx.get_model_path("en-us/en-us-phone.lm.bin"),
                                lm=None, samprate=16000, cmn="live", cmninit=CMN_START,
                                loglevel="FATAL")


def _to_pcm16(samples: np.ndarray) -> np.ndarray:
    samples = np.asarray(samples)
    if samples.ndim != 1:
        raise ValueError(f"samples must be [n_samples] mono; got shape {samples.shape}")
    if samples.dtype == np.int16:
        return samples
    samples = samples.astype(np.float64)
    if not np.all(np.isfinite(samples)):
        raise ValueError("samples must be finite")
    return np.round(np.clip(samples, -1.0, 1.0) * 32767.0).astype(np.int16)


def row_visemes(segments, n_rows: int) -> np.ndarray:
    """``[n_rows]`` viseme index per 10 ms row from PocketSphinx segments (``word``,
    ``start_frame``, ``end_frame`` inclusive); rows past the last segment keep its viseme
    (``REST`` when there is none)."""
    rows = np.full(n_rows, -1, np.int32)
    for segment in segments:
        start, end = max(segment.start_frame, 0), min(segment.end_frame + 1, n_rows)
        if start < end:
            rows[start:end] = PHONE_VISEME.get(segment.word, VISEMES.index("noise"))
    # a gap (rows the path has not reached yet, or past the audio) takes the row before it
    last = REST
    for m in range(n_rows):
        if rows[m] < 0:
            rows[m] = last
        last = rows[m]
    return rows


def occupancy(row_visemes_R: np.ndarray, first_frame: int, n_frames: int) -> np.ndarray:
    """``[n_frames, V]``: per video frame ``first_frame ..``, the share of its 4 rows each viseme
    occupies, from ``row_visemes [R]`` (R ≥ 4 (first_frame + n_frames))."""
    rows = np.asarray(row_visemes_R)[FEATURES_PER_FRAME * first_frame:
                                     FEATURES_PER_FRAME * (first_frame + n_frames)]
    one_hot = np.eye(N_VISEMES, dtype=np.float32)[rows]
    return one_hot.reshape(n_frames, FEATURES_PER_FRAME, N_VISEMES).mean(axis=1)


class ContentStream:
    """Speech in, viseme occupancies ``[n, V]`` out as each frame is settled (module docstring).

        stream = ContentStream(lookahead=12)
        for chunk in chunks:                     # float in [-1, 1] or int16, 16 kHz mono
            frames = stream.push(chunk)          # [n, V], frames emitted, in order
        frames = stream.close()                  # the rest: n_video_frames(total) in all

    Frame ``t`` is emitted by the push that completes the samples up to
    ``640 (t + 1 + lookahead)``; ``lookahead=None`` emits everything at :meth:`close`.
    Each push decodes its whole 40 ms blocks (``bench/bench_content.py`` has the speed).

    Bounded work: reading the best path costs time in proportion to the utterance's phones, so
    a stream with a look-ahead starts a new utterance once ``PAUSE_FRAMES`` settled frames in a
    row rest and the utterance holds ``MIN_UTTERANCE`` frames (or ``MAX_UTTERANCE`` frames in
    any case), feeding the new one the look-ahead's audio again (not yet settled, it belongs to
    the new utterance)."""

    def __init__(self, lookahead: int | None = DEFAULT_LOOKAHEAD):
        if lookahead is not None and (not isinstance(lookahead, int) or lookahead < 0):
            raise ValueError(f"lookahead must be a whole number of frames ≥ 0 or None; "
                             f"got {lookahead!r}")
        self.lookahead = lookahead
        self._decoder = _decoder()
        self._decoder.start_utt()
        self._pending = np.zeros(0, np.int16)     # samples short of a whole block
        self._unsettled = np.zeros(0, np.int16)   # the blocks after the last emitted frame
        self._n_samples = 0
        self._n_blocks = 0
        self._emitted = 0
        self._utterance_start = 0                 # the frame the decoder's row 0 belongs to
        self._rest_run = 0                        # emitted frames in a row that were all rest
        self._closed = False

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Feed ``[n]`` samples; returns the frames ``[k, V]`` this settles (k may be 0)."""
        if self._closed:
            raise ValueError("push after close")
        pcm = _to_pcm16(samples)
        self._n_samples += len(pcm)
        self._pending = np.concatenate([self._pending, pcm])
        n_blocks = len(self._pending) // SAMPLES_PER_FRAME
        blocks = self._pending[:n_blocks * SAMPLES_PER_FRAME].reshape(n_blocks, SAMPLES_PER_FRAME)
        self._pending = self._pending[n_blocks * SAMPLES_PER_FRAME:]
        emitted = []
        # One block at a time, each frame labelled right after the block that settles it: the
        # output cannot depend on how the audio was chunked.
        for block in blocks:
            self._decoder.process_raw(block.tobytes(), no_search=False, full_utt=False)
            self._n_blocks += 1
            if self.lookahead is None:
                continue
            self._unsettled = np.concatenate([self._unsettled, block])
            emitted.append(self._emit(self._n_blocks - self.lookahead))
            keep = SAMPLES_PER_FRAME * self.lookahead
            self._unsettled = self._unsettled[max(len(self._unsettled) - keep, 0):] \
                if keep else self._unsettled[:0]
            length = self._emitted - self._utterance_start
            if (self._rest_run >= PAUSE_FRAMES and length >= MIN_UTTERANCE) or \
                    length >= MAX_UTTERANCE:
                self._restart()
        return np.concatenate(emitted) if emitted else np.zeros((0, N_VISEMES), np.float32)

    def close(self) -> np.ndarray:
        """The remaining frames ``[k, V]``, labelled by the utterance's final best path."""
        if self._closed:
            raise ValueError("close called twice")
        if len(self._pending):
            self._decoder.process_raw(self._pending.tobytes(), no_search=False, full_utt=False)
        self._decoder.end_utt()
        self._closed = True
        return self._emit(n_video_frames(self._n_samples))

    def _restart(self) -> None:
        self._decoder.end_utt()
        self._decoder.start_utt()
        for block in self._unsettled.reshape(-1, SAMPLES_PER_FRAME):
            self._decoder.process_raw(block.tobytes(), no_search=False, full_utt=False)
        self._utterance_start = self._emitted
        self._rest_run = 0

    def _emit(self, until: int) -> np.ndarray:
        until = min(until, n_video_frames(self._n_samples))
        if until <= self._emitted:
            return np.zeros((0, N_VISEMES), np.float32)
        rows = row_visemes(self._decoder.seg() or (),
                           FEATURES_PER_FRAME * (until - self._utterance_start))
        frames = occupancy(rows, self._emitted - self._utterance_start, until - self._emitted)
        for frame in frames:
            self._rest_run = self._rest_run + 1 if frame[REST] == 1.0 else 0
        self._emitted = until
        return frames


def content_features(samples: np.ndarray, lookahead: int | None = DEFAULT_LOOKAHEAD
                     ) -> np.ndarray:
    """``[n_samples]`` 16 kHz mono → viseme occupancies ``[T, V]`` (T = whole video frames),
    exactly what a :class:`ContentStream` with this ``lookahead`` emits for the same audio."""
    stream = ContentStream(lookahead)
    pcm = _to_pcm16(samples)
    return np.concatenate([stream.push(pcm), stream.close()])


def speech_content(speech: Speech, lookahead: int | None = DEFAULT_LOOKAHEAD) -> np.ndarray:
    """:func:`content_features` of a :class:`Speech` ``[T, V]``, its blocks fed to one
    :class:`ContentStream` in order (the same frames as feeding it everything), with a progress
    bar: decoding is the slow part of a long generation (``bench/bench_content.py``), and the
    bar's rate after the first block gives the time it will take."""
    stream = ContentStream(lookahead)
    pieces = []
    n_blocks = speech.n_blocks()
    started = time.perf_counter()
    with bar(n_video_frames(speech.n_samples), "what is said", "frame",
             disable=n_blocks < 2) as progress:                          # one block: quick
        for block in speech.blocks():
            pieces.append(stream.push(block))
            progress.update(len(pieces[-1]))
            if len(pieces) == 1 and n_blocks > 2:
                # at the start, as the rollout does after its first piece: the time it takes
                spent = time.perf_counter() - started
                warn(speech.path, f"reading what is said in {speech.seconds / 60:.1f} min of "
                                  f"speech in {n_blocks} blocks; it will take about "
                                  f"{spent * (n_blocks - 1) / 60:.1f} min more")
        pieces.append(stream.close())
        progress.update(len(pieces[-1]))
    return np.concatenate(pieces)
