"""The phantom corpus: its coupling is real, at the stated lags, and absent in the controls.

Couplings are measured the way a dataset user would: from the written ``.wav`` samples and the
stored keypoints, never from the generator's hidden state.
"""
from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
from tolerance import assert_close

from motion.app.cli import main
from syncers.data import dataset, measures
from syncers.data.features import load_audio
from syncers.data.layout import FPS
from syncers.data.phantom import audio as pa
from syncers.data.phantom import corpus as phantom
from syncers.data.phantom.template import LOWER_LIP, RIGID, UPPER_LIP
from syncers.run.errors import InputError

N_CLIPS, SECONDS = 40, 8.0
LIP_LAG = round(phantom.PhantomParams().lip_lag * FPS)     # 1 frame
HEAD_LAG = round(phantom.PhantomParams().head_lag * FPS)   # 4 frames
BAND = phantom.PhantomParams().head_band


def _corpus(root: Path, **coupling: float) -> Path:
    phantom.synth_corpus(root, clips=N_CLIPS, seconds=SECONDS, seed=7, coupling=coupling,
                         progress=False, workers=1)
    return root


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("phantom")
    return {"coupled": _corpus(base / "coupled"), "lips0": _corpus(base / "lips0", lips=0.0),
            "head0": _corpus(base / "head0", head=0.0)}


@functools.lru_cache(maxsize=None)
def _signals(root: Path) -> dict[str, list[np.ndarray]]:
    """Per clip: mouth opening, head-pitch proxy (band-passed), wav RMS, wav energy
    (band-passed). Cached: treat as read-only."""
    out: dict[str, list[np.ndarray]] = {"mouth": [], "pitch": [], "rms": [], "energy": []}
    manifest = dataset.read_manifest(root)
    for split in dataset.SPLITS:
        for info in manifest.clips(split):
            clip = dataset.read_clip(root, split, info.clip_id, info.n_frames)
            rms = measures.frame_rms(load_audio(root / split / f"{info.clip_id}.wav"))
            kp = clip.keypoints
            out["mouth"].append(kp[:, LOWER_LIP, 1] - kp[:, UPPER_LIP, 1])
            out["pitch"].append(phantom.band_pass(kp[:, list(RIGID), 1].mean(axis=1), BAND))
            out["rms"].append(rms)
            out["energy"].append(phantom.band_pass(rms ** 2, BAND))
    return out


def _lip_r(signals: dict) -> tuple[np.ndarray, np.ndarray]:
    return phantom.lagged_correlation(signals["mouth"], signals["rms"], 8)


def _head_r(signals: dict) -> tuple[np.ndarray, np.ndarray]:
    return phantom.lagged_correlation(signals["pitch"], signals["energy"], 12)


def test_lips_follow_the_audio_envelope_at_lip_lag(corpora):
    lags, r = _lip_r(_signals(corpora["coupled"]))
    assert abs(lags[np.argmax(r)] - LIP_LAG) <= 1, dict(zip(lags.tolist(), r.round(3)))
    assert r.max() > 0.8


def test_head_pitch_follows_speech_energy_at_head_lag(corpora):
    lags, r = _head_r(_signals(corpora["coupled"]))
    assert abs(lags[np.argmax(r)] - HEAD_LAG) <= 1, dict(zip(lags.tolist(), r.round(3)))
    # 0 dB coupling SNR: the speech-driven half of the nod caps r near 1/sqrt(2).
    assert 0.4 < r.max() < 0.85


def test_lips0_removes_lip_coupling_only(corpora):
    signals = _signals(corpora["lips0"])
    _, r_lips = _lip_r(signals)
    assert np.abs(r_lips).max() < 0.15, r_lips.round(3)
    lags, r_head = _head_r(signals)
    assert abs(lags[np.argmax(r_head)] - HEAD_LAG) <= 1 and r_head.max() > 0.4


def test_head0_removes_head_coupling_only(corpora):
    signals = _signals(corpora["head0"])
    lags, r_head = _head_r(signals)
    near = np.abs(lags - HEAD_LAG) <= 4
    assert np.abs(r_head[near]).max() < 0.15, r_head.round(3)
    lags, r_lips = _lip_r(signals)
    assert abs(lags[np.argmax(r_lips)] - LIP_LAG) <= 1 and r_lips.max() > 0.8


def test_controls_keep_audio_and_motion_power(corpora):
    for name in ("lips0", "head0"):
        for split in dataset.SPLITS:
            for wav in sorted((corpora["coupled"] / split).glob("*.wav")):
                assert wav.read_bytes() == (corpora[name] / split / wav.name).read_bytes()
    coupled, lips0, head0 = (_signals(corpora[k]) for k in ("coupled", "lips0", "head0"))

    def power(signals, key):
        return np.mean([np.var(s) for s in signals[key]])

    assert power(lips0, "mouth") == pytest.approx(power(coupled, "mouth"), rel=0.25)
    assert power(head0, "pitch") == pytest.approx(power(coupled, "pitch"), rel=0.25)


def test_corpus_layout_and_manifest(corpora):
    root = corpora["coupled"]
    manifest = dataset.read_manifest(root)
    assert manifest.keypoint_space == "phantom-v1"
    assert {s: len(manifest.clips(s)) for s in dataset.SPLITS} == {"train": 32, "val": 4,
                                                                 "test": 4}
    assert manifest.extra["coupling"] == {"head": 1.0, "lips": 1.0}
    clip = dataset.read_clip(root, "test", manifest.clips("test")[0].clip_id)
    assert clip.keypoints.shape == (200, 10, 6) and clip.audio_features.shape == (800, 26)
    assert load_audio(root / "test" / f"{clip.clip_id}.wav").shape == (200 * 640,)
    assert clip.meta["params"]["lip_lag"] == 0.04 and clip.meta["params"]["head_lag"] == 0.16
    assert clip.meta["keypoint_space"] == "phantom-v1" and clip.meta["seed"] == 7
    # 200 clips put at least 10 % (20) in test.
    assert [dataset.split_for(i, 200) for i in range(200)].count("test") >= 20


def test_same_seed_same_clip_and_meta_records_everything():
    a, b = phantom.synth_clip(3, 5, 4.0), phantom.synth_clip(3, 5, 4.0)
    np.testing.assert_array_equal(a.samples, b.samples)
    np.testing.assert_array_equal(a.keypoints, b.keypoints)
    assert json.loads(json.dumps(a.meta)) == a.meta == b.meta
    for other in (phantom.synth_clip(4, 5, 4.0), phantom.synth_clip(3, 6, 4.0)):
        assert not np.array_equal(a.samples, other.samples)
        assert not np.array_equal(a.keypoints, other.keypoints)
    # The stored plan regenerates the ground-truth envelope.
    plan = pa.SpeechPlan(**{k: np.asarray(v) if isinstance(v, list) else v
                            for k, v in a.meta["plan"].items()})
    # the envelope is 0 in pauses: rtol alone would fail on rounding there
    assert_close(pa.frame_envelope(plan, 100), a.truth["speech_envelope"], rel=1e-6)
    assert a.meta["coupling"] == {"head": 1.0, "lips": 1.0}
    assert a.meta["n_frames"] == 100 and a.keypoints.shape == (100, 10, 6)


def test_same_seed_same_bytes(tmp_path):
    for name in ("a", "b"):
        phantom.synth_corpus(tmp_path / name, clips=3, seconds=2.0, seed=1, progress=False)
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*")
                   if p.is_file())
    assert len(files) == 7     # 3 × (npz + wav) + manifest
    for rel in files:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel


def test_speech_plan_statistics():
    for i in range(5):
        plan = pa.plan_speech(np.random.default_rng(i), 30.0, 150.0)
        assert np.all((plan.durations >= 0.12) & (plan.durations <= 0.30))
        lengths = plan.phrase_ends - plan.phrase_starts
        pauses = plan.phrase_starts[1:] - plan.phrase_ends[:-1]
        assert np.all(lengths <= 3.0) and np.all((pauses >= 0.15) & (pauses <= 0.6))
        assert 3.0 <= len(plan.onsets) / lengths.sum() <= 8.4
        assert plan.stressed.any() and (plan.bursts > 0).any()
        f0, formants = pa._control_tracks(plan, 30 * pa.CONTROL_RATE)
        assert f0.min() >= 90.0 and f0.max() <= 250.0 and formants.shape[1] == 3


def test_keypoints_are_template_like():
    clip = phantom.synth_clip(0, 0, 4.0)
    kp = clip.keypoints
    assert kp.dtype == np.float32 and np.all(np.abs(kp[..., :2]) < 1.0)
    jac = kp[..., 2:].reshape(-1, 10, 2, 2)
    assert np.abs(jac - np.eye(2)).mean() < 0.15
    assert np.all(kp[:, LOWER_LIP, 1] > kp[:, UPPER_LIP, 1])     # y down: lower lip below
    assert np.all(kp[:, 0, 1] < kp[:, 9, 1])                      # brow above chin


def test_cli_smoke(tmp_path, capsys):
    out = tmp_path / "corpus"
    assert main(["data", "synth", "--out", str(out), "--clips", "3", "--seconds", "2",
                 "--coupling", "head=0"]) == 0
    assert (out / "manifest.json").is_file()
    assert dataset.read_manifest(out).extra["coupling"] == {"head": 0.0, "lips": 1.0}
    assert "3 clips" in capsys.readouterr().out


@pytest.mark.parametrize("extra", [["--seconds", "1.0"], ["--seed", "-1"]])
def test_cli_bad_numbers_exit_2(tmp_path, capsys, extra):
    assert main(["data", "synth", "--out", str(tmp_path / "c"), "--clips", "2", *extra]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("extra, message", [
    (["--seconds", "inf"], "--seconds: must be 1.6 to 3600 seconds a clip; got inf"),
    (["--seconds", "3600.5"], "--seconds: must be 1.6 to 3600 seconds a clip; got 3600.5"),
    (["--clips", "100001"], "--clips: must be 1 to 100000; got 100001"),
])
def test_cli_bounds_are_checked_before_any_work(tmp_path, capsys, extra, message):
    assert main(["data", "synth", "--out", str(tmp_path / "c"), *extra]) == 2
    assert capsys.readouterr().err.strip() == f"msync: error: {message}"
    assert not (tmp_path / "c").exists()


def test_cli_out_is_a_file_exits_2(tmp_path, capsys):
    target = tmp_path / "file"
    target.write_text("x")
    assert main(["data", "synth", "--out", str(target), "--clips", "1"]) == 2
    assert str(target) in capsys.readouterr().err


def test_bad_coupling_is_input_error(tmp_path):
    with pytest.raises(InputError):
        phantom.synth_corpus(tmp_path / "c", clips=1, seconds=2.0, coupling={"jaw": 1.0})
    with pytest.raises(SystemExit) as exit_info:
        main(["data", "synth", "--out", str(tmp_path / "c"), "--coupling", "jaw=1"])
    assert exit_info.value.code == 2
