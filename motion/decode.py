"""One generated frame of G, feature-major: the rollout's scan body (paper eq. 8–10).

The same function as ``Generator.encode`` → the temporal module at frame t
(``TemporalTransformer.full``'s last row) → ``Generator.velocity`` (``motion.generator``,
``motion.temporal``), evaluated one frame at a time on a different memory layout:

- activations are kept **feature-major**, ``[D, B]``, and every matrix is stored ``[out, in]``
  (:func:`prepare` transposes G's parameters once per rollout, outside the scan). A frame at
  batch B is a chain of skinny products — a few columns against a weight matrix read from
  memory once per frame — and XLA:CPU runs ``W[out, in] @ h[in, B]`` 2–3× faster than
  ``h[B, in] @ W[in, out]`` (a 60-frame scan of four 1024–5120-wide layers on this 2-core CPU:
  105 vs 36 GFLOP/s at B = 32, 52 vs 21 at B = 8, 7.1 vs 5.9 at B = 1);
- the key/value caches are per layer, tuples of L ``[B, H, C, D/H]`` ring buffers (slot
  ``t mod C`` holds frame t, as in ``motion.temporal``): attention is B·H small products, which
  run 6× faster with the batch axes leading than trailing (q, k, v and the result are
  transposed instead: [D, B] is small); separate buffers per layer, not one stacked array,
  because the backward pass of a layer's slice of a stacked carry pads its cotangent to the
  whole stack every frame.

**The backward pass: a replay, and deferred weight gradients.** Differentiating the scan
directly has two costs that dominated a training step. JAX accumulates each loop-invariant
weight's cotangent in the backward loop's carry (every frame adds a rank-B outer product to a
full-size accumulator: 126 MB at paper size), and it saves a copy of every layer's key/value
cache per frame for the attention's backward. ``motion.rollout`` avoids both:

- its forward pass records each dense layer's input and product ``w @ h`` per frame
  (:class:`Layers` with ``record=True``);
- its backward pass is the VJP of a *replay* of the frames (:class:`Layers` given the
  products and zero ``probes [N, B]`` added to each dense layer's output): a replayed layer
  reads no matrix in the forward direction (:func:`_replayed_matmul` returns the recorded
  product), and its backward passes only the input's cotangent, computed with the
  ``[in, out]`` copy of the matrix, again the fast layout; attention reads every frame's
  recorded keys and values (:func:`key_value_history`, :func:`_history_attention`) instead of
  a per-frame copy of the cache;
- the probes' cotangents — each layer's output cotangent per frame — come out stacked
  ``[T, N, B]``, and every weight's gradient is formed after the scan as one product over all
  frames and rows, ``Σ_{t,b} in[t] · ∂out[t]ᵀ``, written straight into G's ``[in, out]``
  parameter layout (:func:`weight_gradients`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from motion.generator import (
    ENCODER_IN,
    ENCODER_NORM,
    ENCODER_OUT,
    HEAD_STATE,
    KEYPOINT_DIM,
    N_KEYPOINTS,
    GeneratorConfig,
    encoder_input,
    head_hidden_names,
)
from motion.temporal import MASKED_LOGIT, layer_name

_LN_EPS = 1e-6          # flax.linen.LayerNorm's default


def dense_layers(n_layers: int, n_hidden: int) -> list[tuple[str, tuple, tuple, tuple]]:
    """``(name, path in prepare()'s tree, kernel path, bias path in G's parameters)`` of every
    dense layer of a frame: the one map between G's parameters and this kernel's (the names
    are declared in ``motion.generator`` and ``motion.temporal``). Kernels are ``[.., in, out]``
    (the branches' stacked ``[levels, in, out]``)."""
    def flax_dense(name, path, *param_path):
        return name, path, (*param_path, "kernel"), (*param_path, "bias")

    layers = [flax_dense("encoder.in", ("encoder", "in"), "encoder", ENCODER_IN),
              flax_dense("encoder.out", ("encoder", "out"), "encoder", ENCODER_OUT)]
    for i in range(n_layers):
        layers += [flax_dense(f"layers{i}.{n}", ("layers", i, n), "temporal", layer_name(i), n)
                   for n in ("qkv", "proj", "ff1", "ff2")]
    layers.append(flax_dense("head.state", ("head", "state"), "head", HEAD_STATE))
    for j in range(n_hidden):
        w, b = head_hidden_names(j)
        layers.append((f"head.hidden{j}", ("head", "hidden", j), ("head", w), ("head", b)))
    layers.append(("head.out", ("head", "out"), ("head", "w_out"), ("head", "b_out")))
    return layers


def prepare(params, config: GeneratorConfig) -> dict:
    """G's per-frame parameters in the feature-major layout: dense layers ``{"w": [.., out, in],
    "b": [.., out, 1]}``, LayerNorms ``{"scale", "bias": [D, 1]}``, ``rel_bias [H, C]``."""
    def norm(p):
        return {"scale": p["scale"][..., None], "bias": p["bias"][..., None]}

    temporal = params["temporal"]
    n_hidden = config.branch_depth - 1
    weights = {
        "encoder": {"norm": norm(params["encoder"][ENCODER_NORM])},
        "layers": [{"norm1": norm(p["norm1"]), "norm2": norm(p["norm2"]),
                    "rel_bias": p["rel_bias"]}
                   for p in (temporal[layer_name(i)] for i in range(config.n_layers))],
        "norm": norm(temporal["norm"]),
        "head": {"hidden": [{} for _ in range(n_hidden)]},
    }
    for _, path, kernel, bias in dense_layers(config.n_layers, n_hidden):
        *parents, leaf = path
        get_path(weights, parents)[leaf] = {"w": jnp.swapaxes(get_path(params, kernel), -1, -2),
                                            "b": get_path(params, bias)[..., None]}
    return weights


def prepare_backward(weights: dict) -> dict:
    """:func:`prepare`'s tree plus each dense layer's ``[.., in, out]`` copy ``"w_io"`` (what
    :func:`_replayed_matmul`'s backward multiplies by, in the fast layout)."""
    weights = jax.tree_util.tree_map(lambda x: x, weights)        # fresh containers
    for _, path, _ in dense_names_of(weights):
        layer = get_path(weights, path)
        layer["w_io"] = jnp.swapaxes(layer["w"], -1, -2)
    return weights


def empty_cache(config: GeneratorConfig, batch: int, dtype=jnp.float32) -> tuple:
    """Zeroed ring buffers, one ``[B, H, C, D/H]`` per layer (keys or values)."""
    shape = (batch, config.n_heads, config.context, config.d_model // config.n_heads)
    return tuple(jnp.zeros(shape, dtype) for _ in range(config.n_layers))


# --------------------------------------------------------------------------- dense layers

@jax.custom_vjp
def _feature_major(x_BxD):
    """``x.T``, whose backward keeps the transpose out of the producing matrix product. XLA
    otherwise folds it into ``w_io @ ct`` as a ``[B, in]``-output product, off the fast
    feature-major path: 0.6–0.8 ms per layer and frame at B = 8 in a training rollout's
    profile; keeping them apart took 0.1 s off a 40-frame rollout's forward + backward."""
    return x_BxD.T


def _feature_major_fwd(x_BxD):
    return x_BxD.T, None


def _feature_major_bwd(_, ct_DxB):
    return (jax.lax.optimization_barrier(ct_DxB).T,)


_feature_major.defvjp(_feature_major_fwd, _feature_major_bwd)


@jax.custom_vjp
def _replayed_matmul(w_io, h_iB, product_oB):
    """``w_oi @ h``, its value taken from ``product`` (recorded by the forward pass); the
    backward returns only the input's cotangent, ``w_io @ ct`` (see the module docstring)."""
    return product_oB


def _replayed_fwd(w_io, h_iB, product_oB):
    return product_oB, w_io


def _replayed_bwd(w_io, ct_oB):
    return None, jnp.matmul(w_io, ct_oB), None


_replayed_matmul.defvjp(_replayed_fwd, _replayed_bwd)


class Layers:
    """Applies dense layers by name, in one of three modes:

    - plain: ``w @ h + b``;
    - ``record=True``: plain, keeping each layer's input (``inputs``) and product ``w @ h``
      (``products``) for the backward pass;
    - ``probes`` and ``products`` given (the replay): the recorded product in value, no matrix
      read, plus ``b`` and the layer's probe; its backward is the input's cotangent only, and
      the probe's cotangent is the layer's output cotangent (weights' gradients are formed
      after the scan, :func:`weight_gradients`).
    """

    def __init__(self, probes=None, products=None, record: bool = False):
        self.probes, self.recorded, self.record = probes, products, record
        self.inputs, self.products = {}, {}

    def __call__(self, name: str, p: dict, h):
        if self.recorded is not None:
            out = _replayed_matmul(p["w_io"], h, self.recorded[name])
            return out + p["b"] + self.probes[name]
        product = jnp.matmul(p["w"], h)
        if self.record:
            self.inputs[name], self.products[name] = h, product
        return product + p["b"]


def dense_names_of(weights: dict) -> list[tuple[str, tuple, tuple]]:
    """``(name, path in prepare()'s tree, kernel path in G's parameters)`` of every dense layer
    of a frame, for :func:`prepare`'s ``weights`` (:func:`dense_layers`)."""
    return [layer[:3] for layer in dense_layers(len(weights["layers"]),
                                                len(weights["head"]["hidden"]))]


def frame_params(params) -> dict:
    """The part of G's parameters one frame reads: all but the audio FPN and the audio part of
    the branches' first layer (both run once per sequence, outside the scan)."""
    return {"encoder": params["encoder"], "temporal": params["temporal"],
            "head": {k: v for k, v in params["head"].items() if k != "w_audio"}}


def zero_probes(weights: dict, batch: int, n_frames: int) -> dict:
    """Zeros ``[T, .., out, B]`` for every dense layer's output (see the module docstring)."""
    probes = {}
    for name, path, _ in dense_names_of(weights):
        bias = get_path(weights, path)["b"]
        probes[name] = jnp.zeros((n_frames,) + bias.shape[:-1] + (batch,), bias.dtype)
    return probes


def get_path(tree, path):
    """``tree[path[0]][path[1]]...``."""
    for key in path:
        tree = tree[key]
    return tree


# --------------------------------------------------------------------------- the frame

def _layer_norm(p, x_DxB):
    mean = x_DxB.mean(axis=0, keepdims=True)
    var = jnp.square(x_DxB - mean).mean(axis=0, keepdims=True)
    return (x_DxB - mean) * jax.lax.rsqrt(var + _LN_EPS) * p["scale"] + p["bias"]


def encode(weights, x_BxKx6, dense=None, anchor=None):
    """enc(x_t): ``[B, 10, 6]`` → ``[D, B]`` (``anchor [B, 10, 6]``: the first observed frame,
    read only by a generator with ``anchor_input``; pass None otherwise)."""
    dense = dense or Layers()
    p = weights["encoder"]
    x = encoder_input(x_BxKx6, anchor).T
    x = jax.nn.gelu(_layer_norm(p["norm"], dense("encoder.in", p["in"], x)))
    return dense("encoder.out", p["out"], x)


def temporal(weights, e_DxB, k_cache, v_cache, t, config: GeneratorConfig, dense=None,
             history=None):
    """h_t and the updated caches: one frame at absolute index ``t`` (``motion.temporal``).

    Caches are ring buffers ``[B, H, C, D/H]`` (slot ``t mod C``), or, in the replay
    (``history`` = per-layer keys and values of every frame, ``([B, H, N, D/H], ..)`` twice),
    buffers ``[B, H, N, D/H]`` written at ``t`` whose values are never read: attention reads
    ``history`` (:func:`_history_attention`) and the buffers only carry the keys' and values'
    cotangents back to the frames that wrote them."""
    dense = dense or Layers()
    n_heads, head = config.n_heads, config.d_model // config.n_heads
    if history is None:
        offset = (t - jnp.arange(config.context)) % config.context          # [C]
        valid = offset <= t
    else:
        offset = t - jnp.arange(history[0][0].shape[2])                     # [N]
        valid = (offset >= 0) & (offset < config.context)
        offset = jnp.clip(offset, 0, config.context - 1)
    x = e_DxB
    for i, p in enumerate(weights["layers"]):
        qkv = dense(f"layers{i}.qkv", p["qkv"], _layer_norm(p["norm1"], x))   # [3D, B]
        # [3D, B] → q, k, v [B, H, 1, D/H]: attention is a per-(row, head) product, batch-major
        q, k, v = (jnp.transpose(part.reshape(n_heads, head, 1, -1), (3, 0, 2, 1))
                   for part in jnp.split(qkv, 3, axis=0))
        start = (0, 0, t % config.context if history is None else t, 0)
        k_layer = jax.lax.dynamic_update_slice(k_cache[i], k, start)
        v_layer = jax.lax.dynamic_update_slice(v_cache[i], v, start)
        k_cache = k_cache[:i] + (k_layer,) + k_cache[i + 1:]
        v_cache = v_cache[:i] + (v_layer,) + v_cache[i + 1:]
        bias = jnp.where(valid, p["rel_bias"][:, offset], MASKED_LOGIT)      # [H, C or N]
        q = q[:, :, 0] * head ** -0.5
        if history is None:
            logits = jnp.einsum("bhd,bhcd->bhc", q, k_layer) + bias
            attn = jnp.einsum("bhc,bhcd->bhd", jax.nn.softmax(logits, axis=-1), v_layer)
        else:
            attn = _history_attention(q, k_layer, v_layer, bias, history[0][i], history[1][i])
        attn = _feature_major(attn.reshape(-1, config.d_model))                   # [D, B]
        x = x + dense(f"layers{i}.proj", p["proj"], attn)
        hidden = jax.nn.gelu(dense(f"layers{i}.ff1", p["ff1"], _layer_norm(p["norm2"], x)))
        x = x + dense(f"layers{i}.ff2", p["ff2"], hidden)
    return _layer_norm(weights["norm"], x), k_cache, v_cache


@jax.custom_vjp
def _history_attention(q_BxHxd, k_buffer, v_buffer, bias_HxN, k_history, v_history):
    """Attention of ``q`` over ``k_history`` / ``v_history`` ``[B, H, N, d]`` (+ ``bias``), as
    if over the buffers: their cotangents go to ``k_buffer`` / ``v_buffer`` (the replay's
    carried buffers, see :func:`temporal`), none to the histories, which are constants, so the
    backward pass saves no per-frame copy of a cache."""
    return _history_attention_fwd(q_BxHxd, k_buffer, v_buffer, bias_HxN, k_history,
                                  v_history)[0]


def _history_attention_fwd(q, k_buffer, v_buffer, bias, k_history, v_history):
    logits = jnp.einsum("bhd,bhnd->bhn", q, k_history) + bias
    weights = jax.nn.softmax(logits, axis=-1)
    return (jnp.einsum("bhn,bhnd->bhd", weights, v_history),
            (q, weights, k_history, v_history))


def _history_attention_bwd(residuals, ct_BxHxd):
    q, weights, k_history, v_history = residuals
    ct_weights = jnp.einsum("bhd,bhnd->bhn", ct_BxHxd, v_history)
    ct_logits = weights * (ct_weights - jnp.sum(weights * ct_weights, axis=-1, keepdims=True))
    return (jnp.einsum("bhn,bhnd->bhd", ct_logits, k_history),
            jnp.einsum("bhn,bhd->bhnd", ct_logits, q),
            jnp.einsum("bhn,bhd->bhnd", weights, ct_BxHxd),
            ct_logits.sum(axis=0), None, None)


_history_attention.defvjp(_history_attention_fwd, _history_attention_bwd)


def velocity(weights, h_DxB, e_DxB, a_proj_NxHxB, scales_N, config: GeneratorConfig,
             dense=None):
    """Eq. 10: ``v [B, 10, 6]`` from h_t, enc(x_t) and the branches' audio projections."""
    dense = dense or Layers()
    p = weights["head"]
    levels, width = config.levels, config.branch_hidden
    z = dense("head.state", p["state"], jnp.concatenate([h_DxB, e_DxB], axis=0))
    z = jax.nn.gelu(z.reshape(levels, width, -1) + a_proj_NxHxB)
    for j, layer in enumerate(p["hidden"]):
        z = jax.nn.gelu(dense(f"head.hidden{j}", layer, z))
    out = dense("head.out", p["out"], z)                                    # [n, 70, B]
    n_values = N_KEYPOINTS * KEYPOINT_DIM
    v_i = out[:, :n_values].reshape(levels, N_KEYPOINTS, KEYPOINT_DIM, -1)
    masks = jax.nn.softmax(out[:, n_values:], axis=0)                       # [n, 10, B]
    v = jnp.einsum("nkb,nkdb->bkd", masks * scales_N[:, None, None], v_i)
    return v


def decode_step(weights, carry, a_proj_NxHxB, *, config: GeneratorConfig, scales, dense=None,
                history=None, anchor=None):
    """One generated frame: ``carry = (x_t [B,10,6], k, v, t)`` → ``(carry', x_{t+1})``
    (``dense``: a :class:`Layers`, for its modes; ``history``: see :func:`temporal`;
    ``anchor [B, 10, 6]``: the frame the leak of ``config.restore_seconds`` pulls towards)."""
    x_t, k_cache, v_cache, t = carry
    e_t = encode(weights, x_t, dense, anchor if config.anchor_input else None)
    h_t, k_cache, v_cache = temporal(weights, e_t, k_cache, v_cache, t, config, dense, history)
    x_next = x_t + velocity(weights, h_t, e_t, a_proj_NxHxB, scales, config, dense)
    if config.restore_rate:
        x_next = x_next - config.restore_rate * (x_t - anchor)
    return (x_next, k_cache, v_cache, t + 1), x_next


def weight_gradients(weights: dict, inputs: dict, probe_cotangents: dict) -> dict:
    """``{parameter path: ∂kernel [.., in, out]}`` of every dense layer, from its stacked inputs
    ``[T, .., in, B]`` and output cotangents ``[T, .., out, B]``: one product over all frames and
    rows each, written straight into G's ``[in, out]`` layout (transposing a finished gradient
    costs a strided pass over it; a GEMM can write either layout for free)."""
    grads = {}
    for name, _, param_path in dense_names_of(weights):
        if name in inputs:
            grads[param_path] = jnp.einsum("t...ob,t...ib->...io", probe_cotangents[name],
                                           inputs[name])
    return grads


def key_value_history(weights: dict, products: dict, config: GeneratorConfig):
    """Every frame's keys and values per layer, ``([B, H, N, D/H], ..)`` twice, from the
    recorded products of the ``qkv`` layers (``{name: [N, 3D, B]}``, frames 0..N−1)."""
    n_heads, head, width = config.n_heads, config.d_model // config.n_heads, config.d_model
    keys, values = [], []
    for i, p in enumerate(weights["layers"]):
        qkv = products[f"layers{i}.qkv"] + p["qkv"]["b"]                      # [N, 3D, B]
        for part, out in ((qkv[:, width:2 * width], keys), (qkv[:, 2 * width:], values)):
            out.append(jnp.transpose(part.reshape(part.shape[0], n_heads, head, -1),
                                     (3, 1, 0, 2)))
    return tuple(keys), tuple(values)


def warm_up(weights, x_obs_BxOx10x6, config: GeneratorConfig, dense_of=None, history=None):
    """Fill the caches with observed frames 0..O−2 (encode + temporal only): ``(k, v, layers)``,
    ``layers`` the frames' :class:`Layers` (``dense_of(j)``, plain by default; their records).
    With ``history`` the caches are the replay's ``[B, H, N, D/H]`` buffers (:func:`temporal`)."""
    batch = x_obs_BxOx10x6.shape[0]
    if history is None:
        k_cache = v_cache = empty_cache(config, batch, x_obs_BxOx10x6.dtype)
    else:
        k_cache = v_cache = tuple(jnp.zeros_like(k) for k in history[0])
    layers = []
    for j in range(x_obs_BxOx10x6.shape[1] - 1):
        dense = dense_of(j) if dense_of else Layers()
        e_j = encode(weights, x_obs_BxOx10x6[:, j], dense,
                     x_obs_BxOx10x6[:, 0] if config.anchor_input else None)
        _, k_cache, v_cache = temporal(weights, e_j, k_cache, v_cache, j, config, dense, history)
        layers.append(dense)
    return k_cache, v_cache, layers
