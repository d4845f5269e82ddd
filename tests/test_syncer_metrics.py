"""Sync metrics (SyncNet protocol): known shifts are found, the overlap rule, vectorisation."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from syncers.evaluate import check_clip_frames
from syncers.metrics import (
    MIN_OVERLAP,
    level_metrics,
    offset_metrics,
    overlap_counts,
    overlap_mask,
    summarise,
)
from syncers.models import EncoderConfig, ModelConfig, Syncer, init_params
from syncers.run.errors import InputError


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


@pytest.mark.parametrize("score", ["cos", "l1"])
def test_known_shift_gives_that_av_offset(score):
    rng = np.random.default_rng(0)
    shifts = np.array([-7, -1, 0, 3, 15])
    n = 200
    audio = unit(rng.standard_normal((len(shifts), n + 40, 32)))
    # Motion segment n carries the code of audio segment n + s: AV-Off must be s.
    motion = np.stack([np.roll(a, -s, axis=0) for a, s in zip(audio, shifts)])
    mask = overlap_mask(n, 1)
    out = jax.jit(offset_metrics, static_argnames="score")(
        jnp.asarray(motion[:, :n]), jnp.asarray(audio[:, :n]), mask, score=score)
    np.testing.assert_array_equal(out["av_off"], shifts)
    assert np.all(np.asarray(out["av_conf"]) > 0)
    summary = summarise({k: np.asarray(v) for k, v in out.items()} | {"avs_u": np.zeros(5)})
    assert summary["av_off_mean"] == pytest.approx(np.mean(np.abs(shifts)))


def test_overlap_rule_at_8_seconds():
    # 200 frames: level 4 has 25 frames and keeps exactly 5 pairs at δ = −15.
    counts = overlap_counts(200, 4)
    assert counts.min() == MIN_OVERLAP == counts[0] and counts[-1] >= MIN_OVERLAP
    assert overlap_counts(200, 1).min() > 150
    check_clip_frames(200, (1, 2, 3, 4))
    with pytest.raises(InputError, match="level 4"):
        check_clip_frames(150, (1, 4))
    mask = overlap_mask(200, 1)
    # Motion windows need 2 frames either side; shifted audio windows must stay inside.
    assert not mask[:2].any() and not mask[-2:].any()
    assert not mask[197 - 15 + 1:, -1].any()


def test_level_metrics_is_vectorised_over_clips():
    model = Syncer(ModelConfig(embed_dim=8, frame_hidden=8, audio=EncoderConfig(8, 0, 3),
                               motion=EncoderConfig(8, 0, 3)), motion_dim=12)
    params = init_params(model, 0)
    rng = np.random.default_rng(1)
    motion = rng.standard_normal((3, 80, 12)).astype(np.float32)
    audio = rng.standard_normal((3, 320, 26)).astype(np.float32)
    both = level_metrics(params, motion, audio, motion, model=model, level=2, max_offset=5)
    one = level_metrics(params, motion[1:2], audio[1:2], motion[1:2], model=model, level=2,
                        max_offset=5)
    for key in ("av_off", "av_conf", "avs_u", "avs_v", "avs_m"):
        assert both[key].shape == (3,)
        np.testing.assert_allclose(both[key][1], one[key][0], rtol=1e-4, atol=1e-5)
    assert np.all(np.abs(np.asarray(both["av_off"])) <= 5)
    # Generated motion equal to the reference: AVS_v = AVS_m = 1.
    np.testing.assert_allclose(both["avs_v"], 1.0, rtol=1e-5)
    np.testing.assert_allclose(both["avs_m"], 1.0, rtol=1e-5)


def test_audio_center_offsets_are_the_derived_rule():
    from syncers.data.pyramid import audio_center_offset, audio_centers
    # m = 4n + 1/2 + 3/(2s), rounded: +2 at level 1, +1 above (test_pyramid checks the timing).
    assert [audio_center_offset(level) for level in (1, 2, 3, 4, 5)] == [2, 1, 1, 1, 1]
    np.testing.assert_array_equal(audio_centers(np.array([7, 9]), 3), [29, 37])
