"""Issue 6's corrections for speech unlike the training corpus: per-band quantile matching of audio
features onto the corpus's (``syncers.data.features.match_features``), the corpus statistics a saved
model records (``motion.saved_model``), and drift removal (``motion.generate.remove_drift``)."""
from __future__ import annotations

import json

import numpy as np
import pytest
from generator_helpers import tiny_params
from scipy.stats import spearmanr
from tolerance import assert_close

from motion import generate as gen
from motion import model as model_lib
from motion import talking_head
from motion.generator import TINY
from motion.saved_model import META, N_QUANTILES, corpus_feature_stats, load_model, save_model
from syncers.data.features import feature_config, match_features
from syncers.run.errors import InputError

BANDS = TINY.audio_features


def _corpus(seed=0, n_clips=6, n=400):
    """Clips whose bands are two-mode like the phantom's: pauses at the log floor, speech around
    a band-dependent level."""
    rng = np.random.default_rng(seed)
    clips = []
    for _ in range(n_clips):
        speech = np.maximum(rng.normal(-6.0 - 0.3 * np.arange(BANDS), 2.0, size=(n, BANDS)),
                            -18.42)
        pause = rng.random((n, 1)) < 0.15
        clips.append(np.where(pause, -18.42, speech).astype(np.float32))
    return clips


def test_matching_maps_each_bands_distribution_onto_the_corpus_and_keeps_the_time_course():
    stats = corpus_feature_stats(_corpus(), "synthetic")
    quantiles = np.asarray(stats["quantiles"], np.float32)
    assert quantiles.shape == (N_QUANTILES, BANDS)
    # a recording with another gain per band and a noise floor instead of digital silence
    rng = np.random.default_rng(1)
    utterance = _corpus(seed=2, n_clips=1, n=2000)[0]
    utterance = np.maximum(utterance, -11.0) * 0.5 + np.linspace(3.0, -4.0, BANDS)
    utterance += rng.normal(0, 1e-3, utterance.shape).astype(np.float32)   # no ties
    matched = match_features(utterance, quantiles)
    levels = np.linspace(0, 1, N_QUANTILES)[5:-5]          # the tails depend on single frames
    # within 0.1, or within a step's worth of the pause/speech jump where quantiles are steep
    steep = np.abs(np.gradient(quantiles, axis=0))[5:-5]
    assert np.all(np.abs(np.quantile(matched, levels, axis=0) - quantiles[5:-5])
                  <= 0.1 + 0.5 * steep)
    corpus = np.concatenate(_corpus())
    np.testing.assert_allclose(matched.mean(0), corpus.mean(0), atol=0.2)
    np.testing.assert_allclose(matched.std(0), corpus.std(0), rtol=0.05)
    # which frame is louder than which is the utterance's: a non-decreasing map per band
    for band in (0, BANDS - 1):
        order = np.argsort(utterance[:, band])
        assert np.all(np.diff(matched[order, band]) >= 0)
        assert spearmanr(matched[:, band], utterance[:, band]).statistic > 0.95


def test_matching_ties_share_a_rank_and_a_constant_band_becomes_the_corpus_median():
    quantiles = np.stack([np.linspace(-10.0, 10.0, 5)] * 2, axis=1)        # [5, 2]
    features = np.array([[-1.0, 7.0], [-1.0, 7.0], [3.0, 7.0], [5.0, 7.0]], np.float32)
    matched = match_features(features, quantiles)
    # ranks 1.5, 1.5, 3, 4 of 4 → mid-ranks 0.25, 0.25, 0.625, 0.875 → -5, -5, 2.5, 7.5
    # interpolated between quantiles of magnitude 10 (one ulp 9.5e-7): scale to that; a wrong
    # rank moves a value by 2.5 or more
    assert_close(matched[:, 0], [-5.0, -5.0, 2.5, 7.5], rel=2e-6, scale=10.0)
    assert_close(matched[:, 1], 0.0, rel=2e-6, scale=10.0)
    with pytest.raises(ValueError, match="share F"):
        match_features(features, quantiles[:, :1])


def test_drift_removal_keeps_syllable_motion_and_removes_a_walk_off():
    t = np.arange(200, dtype=np.float32)
    x0 = np.random.default_rng(0).normal(size=(10, 6)).astype(np.float32)
    lips = 0.01 * np.sin(2 * np.pi * 4.0 * t / 25.0)                       # 4 Hz syllables
    walk = 0.003 * t + 0.2 * (1 - np.exp(-t / 20.0))                        # biased velocity
    keypoints = np.repeat(x0[None], 200, axis=0)
    keypoints[:, 8, 1] += lips + walk
    keypoints[:, 3, 0] -= walk
    out = gen.remove_drift(keypoints, 25)
    np.testing.assert_array_equal(out[0], x0)                               # frame 0 is x0
    np.testing.assert_array_equal(out[-1], x0)                              # so is the last
    np.testing.assert_allclose(out[:, 3, 0], x0[3, 0], atol=0.02)           # the walk is gone
    middle = slice(40, 160)
    lips_out = out[middle, 8, 1] - x0[8, 1]
    assert np.corrcoef(lips_out, lips[middle])[0, 1] > 0.95
    assert 0.9 < lips_out.std() / lips[middle].std() < 1.15
    untouched = np.delete(np.arange(10), [3, 8])
    np.testing.assert_allclose(out[:, untouched], keypoints[:, untouched], atol=1e-6)
    np.testing.assert_array_equal(gen.remove_drift(keypoints, 1), keypoints)   # off
    assert gen.remove_drift(keypoints[:5], 25).shape == (5, 10, 6)         # window > clip


def test_stats_and_drift_window_round_trip_through_save_and_load(tmp_path):
    model = model_lib.GeneratorModel(tiny_params(TINY), TINY)
    stats = corpus_feature_stats(_corpus(), "synthetic corpus")
    save_model(tmp_path / "with", model, keypoint_space="phantom-v1",
               features=feature_config("logmel"), feature_stats=stats, drift_window_s=1.0)
    _, info = load_model(tmp_path / "with")
    assert info["feature_stats"]["quantiles"] == stats["quantiles"]
    assert info["feature_stats"]["source"] == "synthetic corpus (6 clips, 2400 feature frames)"
    assert info["drift_window_s"] == 1.0
    expected = np.quantile(np.concatenate(_corpus()), np.linspace(0, 1, N_QUANTILES), axis=0)
    # a bare atol on purpose: stored quantiles are rounded to 1e-4 (|error| <= 5e-5 at any size)
    np.testing.assert_allclose(info["feature_stats"]["quantiles"], expected, atol=6e-5)
    # an older model: neither key, and it still loads
    save_model(tmp_path / "old", model, keypoint_space="phantom-v1",
               features=feature_config("logmel"))
    _, old = load_model(tmp_path / "old")
    assert "feature_stats" not in old and "drift_window_s" not in old


def test_a_large_corpus_is_read_at_a_fixed_stride(monkeypatch):
    import motion.saved_model as saved_model

    clips = _corpus(n_clips=4, n=300)
    monkeypatch.setattr(saved_model, "MAX_STATS_FRAMES", 500)          # 1200 frames → every 3rd
    stats = saved_model.corpus_feature_stats(clips, "big")
    expected = np.quantile(np.concatenate([c[::3] for c in clips]),
                           np.linspace(0, 1, N_QUANTILES), axis=0)
    np.testing.assert_allclose(stats["quantiles"], expected, atol=6e-5)
    assert stats["source"] == "big (4 clips, 1200 feature frames, one in 3 read)"


@pytest.mark.parametrize("patch,message", [
    ({"feature_stats": {"quantiles": [[0.0] * 3] * 4}}, "quantiles must be"),
    ({"feature_stats": {"quantiles": [[1.0] * BANDS, [0.0] * BANDS]}}, "non-decreasing"),
    ({"feature_stats": {"quantiles": "lots"}}, "must hold"),
    ({"feature_stats": [1, 2]}, "must hold"),
    ({"drift_window_s": -1}, "drift_window_s must be"),
    ({"drift_window_s": "1s"}, "drift_window_s must be"),
])
def test_malformed_stats_are_refused_naming_model_json(tmp_path, patch, message):
    model = model_lib.GeneratorModel(tiny_params(TINY), TINY)
    directory = save_model(tmp_path / "m", model, keypoint_space="phantom-v1",
                           features=feature_config("logmel"))
    meta = json.loads((directory / META).read_text())
    (directory / META).write_text(json.dumps({**meta, **patch}))
    with pytest.raises(InputError, match=message) as err:
        load_model(directory)
    assert META in str(err.value)


def test_bundled_model_records_its_corpus_statistics():
    _, info = load_model(talking_head.DEMO_MODEL_DIR)
    quantiles = np.asarray(info["feature_stats"]["quantiles"])
    assert quantiles.shape == (N_QUANTILES, 26)
    assert "train split" in info["feature_stats"]["source"]
    assert np.all(np.diff(quantiles, axis=0) >= 0)
    # recorded speech: its median sits far above the log floor (a few clips do hold digital
    # silence, so the lowest percentile may touch it)
    assert np.all(quantiles[N_QUANTILES // 2] > np.log(1e-8) + 3)
    assert "drift_window_s" not in info      # its rollouts stay in place without detrending
