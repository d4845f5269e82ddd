"""Autoregressive rollout of G (paper eq. 8–10) with a fixed-size key/value cache.

Frame convention: ``x_obs [B, O, 10, 6]`` are frames 0..O−1 (O = obs_len = 3 warm-up frames);
``audio_features [B, 4A, F]`` cover frames 0..A−1 (features 4j..4j+3 ↔ frame j) with
``A ≥ O + n_frames``; the rollout returns frames O..O+n_frames−1, frame O+k being
``x_{O+k} = x_{O+k−1} + G(x_{0..O+k−1}, a_{O+k})`` (minus the leak towards frame 0 when
``GeneratorConfig.restore_seconds`` > 0). Audio beyond frame O+n_frames−1 (up to the
FPN look-ahead, ``GeneratorConfig.lookahead``) is used as context when given; it is zero
padding otherwise.

:func:`rollout` is the one implementation for training and inference: the whole audio FPN and
the audio part of every branch's first layer are computed once, outside the scan; the scan body
is one frame (``motion.decode.decode_step``, feature-major, parameters transposed once per
rollout): encode x_t, one decode step of the Transformer against a ring buffer of C keys and
values per layer (O(C) per frame, any length: the buffer slides), the branches, x_{t+1} = x_t +
v. It is differentiable end to end (training back-propagates through the 40-frame rollout);
its VJP is custom — a replay of the recorded forward pass whose weight gradients are formed
after the scan, as one product over all frames, and whose attention needs no per-frame copy of
the caches (``motion.decode``) — and equals plain AD (tested).
The tests compare it with a slow reference that re-encodes the whole history at every step
(O(t) per frame: ``tests/generator_helpers.rollout_reencode``).
"""
from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from motion import decode
from motion.generator import KEYPOINT_DIM, N_KEYPOINTS, Generator, GeneratorConfig, branch_scales
from syncers.data.layout import FEATURES_PER_FRAME


def _check(x_obs, audio_features, n_frames: int, config: GeneratorConfig):
    if x_obs.ndim != 4 or x_obs.shape[2:] != (N_KEYPOINTS, KEYPOINT_DIM):
        raise ValueError(f"x_obs must be [B, O, {N_KEYPOINTS}, {KEYPOINT_DIM}]; got "
                         f"{tuple(x_obs.shape)}")
    batch, n_obs = x_obs.shape[:2]
    if n_obs < 1:
        raise ValueError("x_obs needs at least one observed frame")
    if (audio_features.ndim != 3 or audio_features.shape[0] != batch
            or audio_features.shape[2] != config.audio_features):
        raise ValueError(f"audio_features must be [B={batch}, 4A, {config.audio_features}]; "
                         f"got {tuple(audio_features.shape)}")
    n_audio = audio_features.shape[1]
    if n_audio % FEATURES_PER_FRAME or n_audio // FEATURES_PER_FRAME < n_obs + n_frames:
        raise ValueError(f"audio_features must hold 4·A features with A ≥ O + n_frames = "
                         f"{n_obs + n_frames} frames; got {audio_features.shape[1]} features")
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1; got {n_frames}")
    return batch, n_obs


def frame_weights(params, config: GeneratorConfig) -> dict:
    """G's per-frame parameters in the scan's layout (``motion.decode.prepare``: every matrix
    transposed). :func:`rollout` makes them on every call; inference that runs one model many
    times makes them once (``motion.model.GeneratorModel``) and passes ``weights=``."""
    return decode.prepare(decode.frame_params(params), config)


def rollout(params, x_obs, audio_features, n_frames: int, *, config: GeneratorConfig,
            head_scale=1.0, lip_scale=1.0, unroll: int = 1, weights=None) -> jax.Array:
    """``x_obs [B, O, 10, 6]``, ``audio_features [B, 4A, F]`` → frames ``[B, n_frames, 10, 6]``.

    ``head_scale`` / ``lip_scale`` scale the coarse (levels 3–4) / finest (level 1) branch terms
    of eq. 10 (see ``motion.generator``); 1 is the trained model. Jit with ``n_frames``,
    ``config`` and ``unroll`` static. ``weights``: :func:`frame_weights` of ``params``, for
    inference (transposing 126 MB of matrices per call costs about 8 % of a 120-frame batch-1
    rollout); without them the rollout prepares its own, and its custom VJP (training) applies.
    """
    batch, n_obs = _check(x_obs, audio_features, n_frames, config)
    apply = functools.partial(Generator(config).apply, {"params": params})
    scales = branch_scales(config.levels, head_scale, lip_scale)
    # Audio-only work for all frames at once, outside the scan: [n, levels, hidden, B].
    a_proj = apply(audio_features, method=Generator.audio_projections)
    a_proj = jnp.transpose(a_proj[:, n_obs:n_obs + n_frames], (1, 2, 3, 0))

    if weights is None:
        frames = _scan_frames(config, unroll, decode.frame_params(params), x_obs, a_proj, scales)
    else:
        frames = _frames(weights, x_obs, a_proj, scales, config=config, unroll=unroll)[0]
    return jnp.moveaxis(frames, 0, 1)


def _frames(weights, x_obs, a_proj, scales, *, config, unroll, dense_of=None, history=None,
            extra=None):
    """The warm-up on ``x_obs [B, O, 10, 6]`` then the scan of ``motion.decode.decode_step``
    from frame O−1: frames ``[n, B, 10, 6]`` and the layers' records ``(scan, warm-up)``:
    ``dense_of(j, extra_j)`` makes frame j's ``motion.decode.Layers`` (plain by default; j is
    None in the scan, whose frame k gets ``extra``'s slice k); ``history``: see
    ``motion.decode.temporal``."""
    n_obs = x_obs.shape[1]
    dense_of = dense_of or (lambda j, extra: decode.Layers())
    k_cache, v_cache, warm = decode.warm_up(weights, x_obs, config,
                                            lambda j: dense_of(j, None), history)

    def step(carry, xs):
        dense = dense_of(None, xs[1])
        carry, x_next = decode.decode_step(weights, carry, xs[0], config=config, scales=scales,
                                           dense=dense, history=history, anchor=x_obs[:, 0])
        return carry, (x_next, dense.inputs, dense.products)
    init = (x_obs[:, -1], k_cache, v_cache, jnp.int32(n_obs - 1))
    _, (frames, inputs, products) = jax.lax.scan(step, init, (a_proj, extra), unroll=unroll)
    warm_records = tuple({n: jnp.stack([getattr(layers, kind)[n] for layers in warm])
                          for n in (getattr(warm[0], kind) if warm else {})}
                         for kind in ("inputs", "products"))
    return frames, (inputs, products), warm_records


@functools.partial(jax.custom_vjp, nondiff_argnums=(0, 1))
def _scan_frames(config, unroll, params, x_obs, a_proj, scales):
    """``[n, B, 10, 6]`` from ``params`` (``decode.frame_params``): :func:`_frames`."""
    return _frames(decode.prepare(params, config), x_obs, a_proj, scales, config=config,
                   unroll=unroll)[0]


def _scan_frames_fwd(config, unroll, params, x_obs, a_proj, scales):
    """:func:`_frames`, recording every dense layer's input and product (warm-up and scan);
    the residuals are those records, :func:`motion.decode.prepare`'s VJP and the inputs."""
    def prepared(params):
        return decode.prepare_backward(decode.prepare(params, config))

    weights, prepare_pull_back = jax.vjp(prepared, params)
    frames, records, warm_records = _frames(
        weights, x_obs, a_proj, scales, config=config, unroll=unroll,
        dense_of=lambda j, extra: decode.Layers(record=True))
    return frames, (prepare_pull_back, weights, x_obs, a_proj, scales, records, warm_records)


def _scan_frames_bwd(config, unroll, residuals, ct_frames):
    """The backward pass is the VJP of a *replay* of the forward (``motion.decode.Layers``):
    every dense layer's product is the recorded one (no matrix is read; its backward reads
    the ``[in, out]`` copy once per frame), attention reads every frame's recorded keys and
    values (``motion.decode.key_value_history``) instead of a per-frame copy of the cache,
    and each layer's output cotangent comes out through its zero probe. Weight gradients are
    then one product over all frames and rows per layer (``motion.decode.weight_gradients``)."""
    prepare_pull_back, weights, x_obs, a_proj, scales, records, warm_records = residuals
    (inputs, products), (warm_inputs, warm_products) = records, warm_records
    batch, n_obs = x_obs.shape[:2]
    every = {n: jnp.concatenate([warm_products[n], p]) if n in warm_products else p
             for n, p in products.items()}
    keys, values = decode.key_value_history(weights, every, config)
    probes = decode.zero_probes(weights, batch, a_proj.shape[0])
    warm_probes = decode.zero_probes(weights, batch, n_obs - 1)

    def replay(weights, x_obs, a_proj, scales, probes, warm_probes):
        def dense_of(j, extra):
            if j is None:
                return decode.Layers(extra[0], extra[1])
            return decode.Layers({n: p[j] for n, p in warm_probes.items()},
                                 {n: p[j] for n, p in warm_products.items()})
        return _frames(weights, x_obs, a_proj, scales, config=config, unroll=unroll,
                       dense_of=dense_of, history=(keys, values), extra=(probes, products))[0]

    _, pull_back = jax.vjp(replay, weights, x_obs, a_proj, scales, probes, warm_probes)
    ct_weights, ct_x_obs, ct_a_proj, ct_scales, ct_probes, ct_warm = pull_back(ct_frames)
    # The dense matrices' cotangents in ct_weights are zeros (motion.decode._replayed_matmul):
    # the prepare VJP maps the rest (biases, LayerNorms, position biases) to G's layout.
    (ct_params,) = prepare_pull_back(ct_weights)
    ct_params = jax.tree_util.tree_map(lambda x: x, ct_params)            # fresh containers
    for grads in (decode.weight_gradients(ct_weights, inputs, ct_probes),
                  decode.weight_gradients(ct_weights, warm_inputs, ct_warm)):
        for path, grad in grads.items():
            *parents, leaf = path
            node = decode.get_path(ct_params, parents)
            node[leaf] = node[leaf] + grad
    return ct_params, ct_x_obs, ct_a_proj, ct_scales


_scan_frames.defvjp(_scan_frames_fwd, _scan_frames_bwd)
