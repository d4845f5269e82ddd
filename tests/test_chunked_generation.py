"""Long audio is generated piece by piece (``motion.generate``, "Long audio in bounded
memory"): the keypoints equal the single scan's, whatever the piece size and where the pieces
fall, with restore_seconds and the anchor input on, for a batch; one program is compiled for
every length."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from generator_helpers import tiny_params
from tolerance import assert_close

from motion import generate as gen
from motion import model as model_lib
from motion.generator import TINY

TINY_ANCHOR = dataclasses.replace(TINY, restore_seconds=0.4, anchor_input=True)


@pytest.mark.parametrize("config", [TINY, TINY_ANCHOR], ids=["plain", "restore+anchor"])
@pytest.mark.parametrize("piece", [16, 37])
def test_pieces_give_the_single_scans_keypoints(monkeypatch, config, piece):
    model = model_lib.ready(model_lib.GeneratorModel(tiny_params(config), config))
    rng = np.random.default_rng(piece)
    x0 = 0.3 * rng.normal(size=(2, 10, 6)).astype(np.float32)
    n_frames = 203                                     # pieces do not divide it
    audio = rng.normal(size=(2, 4 * n_frames, 26)).astype(np.float32)
    whole = gen.generate_batch(model, x0, audio, head_scale=1.3, lip_scale=0.7)
    monkeypatch.setattr(gen, "CHUNK_FRAMES", piece)
    pieces = gen.generate_batch(model, x0, audio, head_scale=1.3, lip_scale=0.7)
    assert pieces.shape == whole.shape == (2, n_frames, 10, 6)
    np.testing.assert_array_equal(pieces[:, 0], x0)
    assert_close(pieces, whole, rel=1e-5)


def test_one_program_for_every_long_length(monkeypatch, capsys):
    model = model_lib.ready(model_lib.GeneratorModel(tiny_params(TINY), TINY))
    monkeypatch.setattr(gen, "CHUNK_FRAMES", 32)
    x0 = np.zeros((10, 6), np.float32)
    rng = np.random.default_rng(3)
    gen.generate(model, x0, rng.normal(size=(4 * 150, 26)).astype(np.float32))
    compiled = gen._rollout_piece._cache_size()
    for n_frames in (97, 260, 301):
        out = gen.generate(model, x0, rng.normal(size=(4 * n_frames, 26)).astype(np.float32))
        assert out.shape == (n_frames, 10, 6) and np.all(np.isfinite(out))
    assert gen._rollout_piece._cache_size() == compiled
    err = capsys.readouterr().err
    # an estimate of the time left once the first piece is done, and the progress
    assert "msync: warning: generating 301 frames" in err and "min more" in err, err
    assert "generate" in err and "frame" in err
