"""Objectives (paper eq. 2 and alternatives): hand-computed values and their invariants."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from syncers import objectives
from syncers.objectives import NAMES, ObjectiveConfig

# One motion embedding [1, 0] against candidates scoring cos = 1 (positive), 0 and −1.
MOTION = jnp.array([[1.0, 0.0]])
AUDIO = jnp.array([[[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]]])


def loss_of(name, audio=AUDIO, motion=MOTION, **kw):
    config = ObjectiveConfig(name=name, **kw)
    return objectives.loss(config, objectives.init_params(config), audio, motion)


def test_infonce_equals_hand_computed_value():
    loss, accuracy = loss_of("infonce", temperature=0.5)
    expected = -math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(-2)))
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    assert float(accuracy) == 1.0


def test_bce_triplet_l1_clip_hand_values():
    sig = lambda z: 1 / (1 + math.exp(-z))
    loss, _ = loss_of("bce", temperature=0.5)
    expected = -math.log(sig(2)) - 0.5 * (math.log(1 - sig(0)) + math.log(1 - sig(-2)))
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    loss, _ = loss_of("triplet", margin=0.2)       # relu(0.2 − 1 + 0), relu(0.2 − 1 − 1)
    assert float(loss) == pytest.approx(0.0)
    loss, _ = loss_of("triplet", margin=1.5)
    assert float(loss) == pytest.approx((0.5 + 0.0) / 2)
    # l1 scores: −‖·‖₁/√2 = 0, −2/√2, −2/√2 → logits / τ with τ = 1.
    loss, _ = loss_of("l1contrast", temperature=1.0)
    s = [0.0, -2 / math.sqrt(2), -2 / math.sqrt(2)]
    assert float(loss) == pytest.approx(-s[0] + math.log(sum(math.exp(v) for v in s)), rel=1e-6)
    # clip with B = 2 orthogonal pairs and no negatives: every row has logits [1/τ, 0].
    audio = jnp.array([[[1.0, 0.0]], [[0.0, 1.0]]])
    motion = jnp.array([[1.0, 0.0], [0.0, 1.0]])
    loss, accuracy = loss_of("clip", audio, motion, temperature=0.5)
    assert float(loss) == pytest.approx(math.log(1 + math.exp(-2)), rel=1e-6)
    assert float(accuracy) == 1.0


@pytest.mark.parametrize("name", NAMES)
def test_perfect_and_reversed_embeddings(name):
    rng = np.random.default_rng(0)
    e = rng.standard_normal((8, 5, 16))
    e /= np.linalg.norm(e, axis=-1, keepdims=True)
    motion = jnp.asarray(e[:, 0])
    _, accuracy = loss_of(name, jnp.asarray(e), motion)
    assert float(accuracy) == 1.0
    _, accuracy = loss_of(name, jnp.asarray(e[:, ::-1]), motion)   # positive last
    assert float(accuracy) == 0.0
    # The loss prefers the right pairing.
    good, _ = loss_of(name, jnp.asarray(e), motion)
    bad, _ = loss_of(name, jnp.asarray(e[:, ::-1]), motion)
    assert float(good) < float(bad)


@pytest.mark.parametrize("learn", [True, False])
def test_temperature_is_learnable_unless_fixed(learn):
    config = ObjectiveConfig(temperature=0.3, learn_temperature=learn)
    params = objectives.init_params(config)
    assert float(objectives.temperature(config, params)) == pytest.approx(0.3)
    rng = np.random.default_rng(1)
    audio = jnp.asarray(rng.standard_normal((4, 3, 8)))
    motion = jnp.asarray(rng.standard_normal((4, 8)))
    grad = jax.grad(lambda p: objectives.loss(config, p, audio, motion)[0])(params)
    assert (float(grad["log_temperature"]) != 0.0) == learn


def test_shape_errors():
    with pytest.raises(ValueError, match="expected audio"):
        loss_of("infonce", AUDIO[0], MOTION)
