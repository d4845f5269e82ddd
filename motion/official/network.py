"""The released MS-Sync generator's layers as pure functions of its parameter tree
(``motion.official.layout``; docs/design.md, "Released MS-Sync model"; paper §3.2, eq. 8–10).

- keypoint encoder enc: ``[..., 10·d] → Linear 272 → LayerNorm → Linear 1088 → GELU → Linear
  coord_dim`` (no activation after the LayerNorm);
- audio FPN (bottom-up only): four ``InvResX1D`` blocks (26→64, 64→128 stride 2, 128→256,
  256→audio_dim stride 2: 100 Hz → 25 Hz) then three stride-2 kernel-7 blocks, every level
  linearly interpolated (``align_corners=True``) back to ``T = L // 4`` frames: a^1..a^4;
- temporal module: post-norm ``nn.TransformerEncoderLayer`` (ReLU feed-forward 1024, no
  positional encoding, causal mask) and ``lin_out`` to ``hidden_size`` — ``motion.official
  .rollout`` runs it over the last ≤ 40 frames;
- multi-scale module (eq. 10 with a fifth, audio-free stream): stream i ∈ 1..4 reads
  ``[h_t, enc(x_t), a^i_{t+1}]`` through a grouped ``DeepMLP`` backbone (one group per stream)
  and two grouped heads, per-keypoint mask logits ``[10]`` and velocities ``[10·d]``; the bias
  stream reads ``[h_t, enc(x_t)]`` through ungrouped ones. Masks are merged over the 5 streams
  by softmax (or a sigmoid each), repeated over a keypoint's d values, and ``final_block``
  (Linear ``5·10·d → 10·d``) mixes the 5 masked velocities into v.

``InvResX1D`` (ConvNeXt-style): depthwise conv → norm → pointwise ×expansion → GELU → pointwise,
plus the input (through a 1-wide conv and a norm when the shape changes), then GELU. Norms are
LayerNorm over channels, or GroupNorm over each group's channels in the grouped DeepMLPs (on a
length-1 signal that is a LayerNorm per group). GELU is exact (erf). Every norm's eps is 1e-5.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from motion.official.config import N_KEYPOINTS, OfficialConfig
from motion.official.layout import FPN_STEM

EPS = 1e-5
HIGHEST = jax.lax.Precision.HIGHEST


def gelu(x):
    return jax.nn.gelu(x, approximate=False)


def layer_norm(p, x):
    """LayerNorm over the last axis (``scale``/``bias`` of that axis' size, or broadcastable)."""
    mean = jnp.mean(x, axis=-1, keepdims=True)
    var = jnp.mean(jnp.square(x - mean), axis=-1, keepdims=True)
    return (x - mean) * jax.lax.rsqrt(var + EPS) * p["scale"] + p["bias"]


def dense(p, x):
    return jnp.matmul(x, p["kernel"], precision=HIGHEST) + p["bias"]


def encode_keypoints(p, x_flat):
    """enc: ``[..., 10·d]`` → ``[..., coord_dim]``."""
    x = layer_norm(p["1"], dense(p["0"], x_flat))
    return dense(p["4"], gelu(dense(p["2"], x)))


# --- audio FPN ---------------------------------------------------------------------------------

def _inv_res_time(p, x_BxLxC, stride: int):
    """``InvResX1D`` along time, ungrouped: ``[B, L, C]`` → ``[B, ceil(L / stride), C']``."""
    kernel = p["depth_wise"]["kernel"]                                       # [k, C]
    width = kernel.shape[0]
    out = jax.lax.conv_general_dilated(
        x_BxLxC, kernel[:, None, :], (stride,), [((width - 1) // 2, (width - 1) // 2)],
        dimension_numbers=("NWC", "WIO", "NWC"), feature_group_count=kernel.shape[1],
        precision=HIGHEST) + p["depth_wise"]["bias"]
    out = layer_norm(p["norm"], out)
    out = dense(p["pt_wise_out"], gelu(dense(p["pt_wise_in"], out)))
    identity = x_BxLxC
    if "downsample" in p:
        identity = layer_norm(p["out_norm"], dense(p["downsample"], x_BxLxC[:, ::stride]))
    return gelu(out + identity)


def interpolation(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``F.interpolate(mode="linear", align_corners=True)`` from ``n_in`` to ``n_out`` samples as
    ``(i0, i1, w1)``: ``out[t] = (1 − w1)·in[i0] + w1·in[i1]``, source position
    ``t·(n_in − 1)/(n_out − 1)`` computed in float32 as PyTorch's CPU kernel does."""
    scale = (np.float32(n_in - 1) / np.float32(n_out - 1) if n_out > 1 else np.float32(0.0))
    source = scale * np.arange(n_out, dtype=np.float32)
    i0 = np.minimum(source.astype(np.int64), n_in - 1)
    w1 = np.clip(source - i0.astype(np.float32), 0.0, 1.0).astype(np.float32)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, w1


def audio_streams(params, audio_BxLxF, config: OfficialConfig):
    """The FPN's 4 levels at video rate: ``[B, L, 26]`` → ``[B, T, 4, audio_dim]``, T = L // 4
    (``DynamicalModel.embed_audio``)."""
    p = params["encoder_a"]
    x = audio_BxLxF
    for i, (_, _, _, stride) in enumerate(FPN_STEM):
        x = _inv_res_time(p["conv0"][str(i)], x, stride)
    levels = [x]
    for i in range(config.pyramid_layers_g - 1):
        x = _inv_res_time(p["pyramid_layers"][str(i)], x, 2)
        levels.append(x)
    n_out = audio_BxLxF.shape[1] // 4
    out = []
    for level in levels:
        if level.shape[1] == n_out:          # align_corners=True at equal sizes is the identity
            out.append(level)
            continue
        i0, i1, w1 = interpolation(level.shape[1], n_out)
        w1 = jnp.asarray(w1)[:, None]
        out.append(level[:, i0] * (1.0 - w1) + level[:, i1] * w1)
    return jnp.stack(out, axis=2)


# --- temporal module ----------------------------------------------------------------------------

def qkv(p_layer, x):
    """The layer's input projection ``[..., E]`` → ``[..., 3E]`` (q, k, v)."""
    attn = p_layer["self_attn"]
    return jnp.matmul(x, attn["in_proj_kernel"], precision=HIGHEST) + attn["in_proj_bias"]


def attend(q_BxQxE, k_BxKxE, v_BxKxE, mask_QxK, n_heads: int):
    """Multi-head scaled dot-product attention; ``mask`` True = may attend (each row needs one)."""
    b, n_q, e = q_BxQxE.shape
    d = e // n_heads
    q = q_BxQxE.reshape(b, n_q, n_heads, d)
    k = k_BxKxE.reshape(b, -1, n_heads, d)
    v = v_BxKxE.reshape(b, -1, n_heads, d)
    scores = jnp.einsum("bqhd,bkhd->bhqk", q, k, precision=HIGHEST) * (1.0 / np.sqrt(d))
    weights = jax.nn.softmax(jnp.where(mask_QxK, scores, -jnp.inf), axis=-1)
    return jnp.einsum("bhqk,bkhd->bqhd", weights, v, precision=HIGHEST).reshape(b, n_q, e)


def after_attention(p_layer, x, attended):
    """Post-norm: ``y = LN1(x + W_o·a)``, then ``LN2(y + W_2·relu(W_1·y))``."""
    y = layer_norm(p_layer["norm1"], x + dense(p_layer["self_attn"]["out_proj"], attended))
    ff = dense(p_layer["linear2"], jax.nn.relu(dense(p_layer["linear1"], y)))
    return layer_norm(p_layer["norm2"], y + ff)


def temporal_layers(params, config: OfficialConfig) -> list:
    return [params["temp_module"]["layers"][str(n)] for n in range(config.nlayers_tf)]


# --- multi-scale module -------------------------------------------------------------------------

def _grouped(p, x_GxI):
    """A 1-wide grouped conv (or the bias stream's Linear): ``[..., G, in/G]`` → ``[..., G, o]``."""
    kernel, groups = p["kernel"], x_GxI.shape[-2]
    if kernel.ndim == 2:                                              # ungrouped Linear fc_out
        return jnp.matmul(x_GxI, kernel, precision=HIGHEST) + p["bias"]
    out = jnp.einsum("...gi,gio->...go", x_GxI, kernel, precision=HIGHEST)
    return out + p["bias"].reshape(groups, -1)


def _per_group(v, groups: int):
    return v.reshape(groups, -1)


def _inv_res_point(p, x_GxC):
    """A DeepMLP block (``InvResX1D`` with kernel 1, groups G) on ``[..., G, C/G]``."""
    groups = x_GxC.shape[-2]
    dw = p["depth_wise"]
    out = x_GxC * _per_group(dw["kernel"][0], groups) + _per_group(dw["bias"], groups)
    norm = {k: _per_group(v, groups) for k, v in p["norm"].items()}
    out = layer_norm(norm, out)
    out = _grouped(p["pt_wise_out"], gelu(_grouped(p["pt_wise_in"], out)))
    identity = x_GxC
    if "downsample" in p:
        out_norm = {k: _per_group(v, groups) for k, v in p["out_norm"].items()}
        identity = layer_norm(out_norm, _grouped(p["downsample"], x_GxC))
    return gelu(out + identity)


def deep_mlp(p, x_GxC):
    """``DeepMLP`` on ``[..., G, C/G]`` (G = 1: the bias stream's ungrouped ones)."""
    for b in range(len(p.get("blocks", {}))):
        x_GxC = _inv_res_point(p["blocks"][str(b)], x_GxC)
    return _grouped(p["fc_out"], x_GxC)


def stream_scales(head_scale=1.0, lip_scale=1.0) -> jax.Array:
    """``[5]`` multipliers of the merged streams (bias, a^1, a^2, a^3, a^4): msync's inference
    knobs, as for its own generator (``motion.generator.branch_scales``); ones = the model."""
    return jnp.asarray([1.0, lip_scale, 1.0, head_scale, head_scale], jnp.float32)


HEADS = ("mask_bias", "leaf_bias", "mask", "leaf")


def prepare(params, config: OfficialConfig) -> dict:
    """The multi-scale module's weights for :func:`velocity`: the four heads (``mask_bias``,
    ``leaf_bias``, ``mask``, ``leaf``) have blocks of the same per-group widths (272 → 136), so
    their blocks are stacked into one chain of 2 + 2G groups (one contraction per layer instead
    of four); each keeps its own ``fc_out``. Call it once, outside a scan."""
    heads = [params[name] for name in HEADS]
    blocks = []
    for b in range(len(heads[0]["blocks"])):
        parts = [head["blocks"][str(b)] for head in heads]
        blocks.append(jax.tree.map(
            lambda *leaves: jnp.concatenate(leaves, axis=0 if leaves[0].ndim == 3 else -1),
            *parts))
    return {"deep_output": params["deep_output"],
            "deep_output_bias": params["deep_output_bias"],
            "head_blocks": blocks, "fc_out": [head["fc_out"] for head in heads],
            "final_block": params["final_block"]}


def velocity(weights, h, coord, audio_GxA, config: OfficialConfig, scales=None):
    """v from ``h [..., hidden]``, ``enc(x) [..., E]`` and ``a^1..a^4 [..., 4, A]`` →
    ``[..., 10, d]`` (``DynamicalModel.deep_out_forward``); ``weights``: :func:`prepare`."""
    groups, values = config.pyramid_layers_g, N_KEYPOINTS * config.data_dim
    state = jnp.concatenate([h, coord], axis=-1)                           # [..., hs + E]
    streams = jnp.concatenate(
        [jnp.broadcast_to(state[..., None, :], audio_GxA.shape[:-1] + state.shape[-1:]),
         audio_GxA], axis=-1)                                              # [..., G, W]
    backbone = deep_mlp(weights["deep_output"], streams)                   # [..., G, 272]
    backbone_bias = deep_mlp(weights["deep_output_bias"], state[..., None, :])   # [..., 1, 272]
    x = jnp.concatenate([backbone_bias, backbone_bias, backbone, backbone], axis=-2)
    for block in weights["head_blocks"]:                                   # [..., 2 + 2G, 136]
        x = _inv_res_point(block, x)
    fc_mask_bias, fc_leaf_bias, fc_mask, fc_leaf = weights["fc_out"]
    masks = jnp.concatenate([_grouped(fc_mask_bias, x[..., :1, :]),
                             _grouped(fc_mask, x[..., 2:2 + groups, :])], axis=-2)  # [.., 5, 10]
    leaves = jnp.concatenate([_grouped(fc_leaf_bias, x[..., 1:2, :]),
                              _grouped(fc_leaf, x[..., 2 + groups:, :])], axis=-2)  # [.., 5, 10d]
    if config.streams_merging_activation == "softmax":
        merge = jax.nn.softmax(masks, axis=-2)
    else:
        merge = jax.nn.sigmoid(masks)
    if scales is not None:
        merge = merge * scales[:, None]
    terms = merge[..., None] * leaves.reshape(leaves.shape[:-1] + (N_KEYPOINTS, -1))
    out = dense(weights["final_block"],
                terms.reshape(terms.shape[:-3] + ((groups + 1) * values,)))
    return out.reshape(out.shape[:-1] + (N_KEYPOINTS, config.data_dim))
