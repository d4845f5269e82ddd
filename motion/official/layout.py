"""Where every parameter of the released generator lives: its key in the official state dict,
its path in msync's parameter tree, both shapes and the map between them (docs/design.md,
"Released MS-Sync model").

msync's tree mirrors the official module names (``encoder_a.conv0.1.pt_wise_in.weight`` →
``params["encoder_a"]["conv0"]["1"]["pt_wise_in"]["kernel"]``); leaves are named and laid out
for ``jnp`` without a per-call transpose:

- ``linear``: ``nn.Linear`` / 1-wide ungrouped ``nn.Conv1d`` weight ``[out, in(, 1)]`` →
  ``kernel [in, out]``;
- ``grouped``: a 1-wide ``nn.Conv1d`` with ``groups = G`` ``[out, in/G, 1]`` →
  ``kernel [G, in/G, out/G]`` (output channel o belongs to group o // (out/G));
- ``depthwise``: ``nn.Conv1d(C, C, k, groups=C)`` ``[C, 1, k]`` → ``kernel [k, C]``;
- ``in_proj``: ``MultiheadAttention.in_proj_weight [3E, E]`` → ``in_proj_kernel [E, 3E]``
  (columns q, k, v);
- ``scale``: a LayerNorm / GroupNorm ``weight`` → ``scale``; ``bias``: any bias, unchanged.
"""
from __future__ import annotations

import dataclasses
from typing import Iterator

import jax
import numpy as np

from motion.official.config import (
    AUDIO_FEATURES,
    DEEP_MLP_LAYERS,
    ENCODER_WIDTH,
    FEEDFORWARD,
    FPN_LEVELS,
    N_KEYPOINTS,
    OfficialConfig,
    deep_mlp_dims,
)

FPN_STEM = ((AUDIO_FEATURES, 64, 3, 1), (64, 128, 3, 2), (128, 256, 3, 1), (256, None, 3, 2))
FPN_KERNEL = 7                  # each pyramid level: InvResX1D(audio_dim, audio_dim, 7, stride 2)
EXPANSION = 4                   # InvResX1D's default expansion (the FPN's blocks)


@dataclasses.dataclass(frozen=True)
class Spec:
    key: str                    # the official state-dict key
    path: tuple[str, ...]       # msync's parameter path
    torch_shape: tuple[int, ...]
    shape: tuple[int, ...]
    kind: str                   # linear | grouped | depthwise | in_proj | scale | bias


def _linear(prefix: str, n_in: int, n_out: int, kernel: int | None = None) -> Iterator[Spec]:
    torch_shape = (n_out, n_in) if kernel is None else (n_out, n_in, kernel)
    yield Spec(f"{prefix}.weight", (*prefix.split("."), "kernel"), torch_shape, (n_in, n_out),
               "linear")
    yield _bias(prefix, n_out)


def _bias(prefix: str, n: int) -> Spec:
    return Spec(f"{prefix}.bias", (*prefix.split("."), "bias"), (n,), (n,), "bias")


def _norm(prefix: str, n: int) -> Iterator[Spec]:
    yield Spec(f"{prefix}.weight", (*prefix.split("."), "scale"), (n,), (n,), "scale")
    yield _bias(prefix, n)


def _grouped(prefix: str, n_in: int, n_out: int, groups: int) -> Iterator[Spec]:
    yield Spec(f"{prefix}.weight", (*prefix.split("."), "kernel"), (n_out, n_in // groups, 1),
               (groups, n_in // groups, n_out // groups), "grouped")
    yield _bias(prefix, n_out)


def _depthwise(prefix: str, n: int, kernel: int) -> Iterator[Spec]:
    yield Spec(f"{prefix}.weight", (*prefix.split("."), "kernel"), (n, 1, kernel), (kernel, n),
               "depthwise")
    yield _bias(prefix, n)


def _inv_res(prefix: str, n_in: int, n_out: int, kernel: int, stride: int, expansion: int,
             groups: int) -> Iterator[Spec]:
    """InvResX1D: depthwise conv, norm, pointwise in/out, and a projected shortcut when the
    shape changes. Its pointwise convs are ``linear`` ungrouped and ``grouped`` otherwise, and
    every DeepMLP block (kernel 1) is stored ``grouped``, G = 1 for the bias stream's."""
    pointwise = _grouped if kernel == 1 else (lambda p, i, o, g: _linear(p, i, o, 1))
    yield from _depthwise(f"{prefix}.depth_wise", n_in, kernel)
    yield from _norm(f"{prefix}.norm", n_in)
    yield from pointwise(f"{prefix}.pt_wise_in", n_in, expansion * n_in, groups)
    yield from pointwise(f"{prefix}.pt_wise_out", expansion * n_in, n_out, groups)
    if stride != 1 or n_in != n_out:
        yield from pointwise(f"{prefix}.downsample", n_in, n_out, groups)
        yield from _norm(f"{prefix}.out_norm", n_out)


def deep_mlp_blocks(n_in: int, n_out: int, layers) -> tuple[list[tuple[int, int]], int]:
    """``DeepMLP``'s blocks ``[(in, out)]`` in order and the width entering ``fc_out``."""
    dims, last = deep_mlp_dims(n_in, n_out, len(layers))
    blocks = []
    for n_blocks, (i, j) in zip(layers, dims):
        blocks += [(i, i)] * (n_blocks - 1) + [(i, j)]
    return blocks, last


def _deep_mlp(prefix: str, n_in: int, n_out: int, layers, expansion: int,
              groups: int) -> Iterator[Spec]:
    blocks, last = deep_mlp_blocks(n_in, n_out, layers)
    for b, (i, j) in enumerate(blocks):
        yield from _inv_res(f"{prefix}.blocks.{b}", i, j, 1, 1, expansion, groups)
    if groups > 1:
        yield from _grouped(f"{prefix}.fc_out", last, n_out, groups)
    else:
        yield from _linear(f"{prefix}.fc_out", last, n_out)


def specs(config: OfficialConfig) -> list[Spec]:
    """Every parameter of ``DynamicalModel(config)``, in the official state dict's order."""
    c = config
    out: list[Spec] = []
    out += _linear("encoder_x.0", N_KEYPOINTS * c.data_dim, ENCODER_WIDTH)
    out += _norm("encoder_x.1", ENCODER_WIDTH)
    out += _linear("encoder_x.2", ENCODER_WIDTH, 4 * ENCODER_WIDTH)
    out += _linear("encoder_x.4", 4 * ENCODER_WIDTH, c.coord_dim)
    for i, (n_in, n_out, kernel, stride) in enumerate(FPN_STEM):
        out += _inv_res(f"encoder_a.conv0.{i}", n_in, n_out or c.audio_dim, kernel, stride,
                        EXPANSION, 1)
    for i in range(FPN_LEVELS - 1):
        out += _inv_res(f"encoder_a.pyramid_layers.{i}", c.audio_dim, c.audio_dim, FPN_KERNEL, 2,
                        EXPANSION, 1)
    groups, layers = c.pyramid_layers_g, DEEP_MLP_LAYERS[c.nblocks_do]
    stream = c.stream_width
    values = N_KEYPOINTS * c.data_dim
    out += _deep_mlp("deep_output", stream * groups, ENCODER_WIDTH * groups, layers[:-1],
                     c.expansion_fact_do, groups)
    out += _deep_mlp("mask", ENCODER_WIDTH * groups, N_KEYPOINTS * groups, layers[-1:],
                     c.expansion_fact_do, groups)
    out += _deep_mlp("leaf", ENCODER_WIDTH * groups, values * groups, layers[-1:],
                     c.expansion_fact_do, groups)
    out += _deep_mlp("deep_output_bias", stream - c.audio_dim, ENCODER_WIDTH, layers[:-1],
                     c.expansion_fact_do, 1)
    out += _deep_mlp("mask_bias", ENCODER_WIDTH, N_KEYPOINTS, layers[-1:], c.expansion_fact_do, 1)
    out += _deep_mlp("leaf_bias", ENCODER_WIDTH, values, layers[-1:], c.expansion_fact_do, 1)
    out += _linear("final_block", values * (groups + 1), values)
    e = c.coord_dim
    for n in range(c.nlayers_tf):
        prefix = f"temp_module.layers.{n}"
        out.append(Spec(f"{prefix}.self_attn.in_proj_weight",
                        (*prefix.split("."), "self_attn", "in_proj_kernel"), (3 * e, e),
                        (e, 3 * e), "in_proj"))
        out.append(Spec(f"{prefix}.self_attn.in_proj_bias",
                        (*prefix.split("."), "self_attn", "in_proj_bias"), (3 * e,), (3 * e,),
                        "bias"))
        out += _linear(f"{prefix}.self_attn.out_proj", e, e)
        out += _linear(f"{prefix}.linear1", e, FEEDFORWARD)
        out += _linear(f"{prefix}.linear2", FEEDFORWARD, e)
        out += _norm(f"{prefix}.norm1", e)
        out += _norm(f"{prefix}.norm2", e)
    out += _linear("lin_out", e, c.hidden_size)
    return out


def to_msync(spec: Spec, tensor: np.ndarray) -> np.ndarray:
    """An official tensor (already of ``spec.torch_shape``) in msync's layout, float32."""
    x = np.asarray(tensor, np.float32)
    if spec.kind in ("linear", "in_proj"):
        return np.ascontiguousarray(x.reshape(x.shape[:2]).T)
    if spec.kind == "grouped":
        groups = spec.shape[0]
        out_dim, in_per_group = x.shape[:2]
        return np.ascontiguousarray(
            x.reshape(groups, out_dim // groups, in_per_group).transpose(0, 2, 1))
    if spec.kind == "depthwise":
        return np.ascontiguousarray(x[:, 0, :].T)
    return x


def to_torch(spec: Spec, array: np.ndarray) -> np.ndarray:
    """The inverse of :func:`to_msync` (for tests and writing the official layout)."""
    x = np.asarray(array, np.float32)
    if spec.kind in ("linear", "in_proj"):
        return np.ascontiguousarray(x.T.reshape(spec.torch_shape))
    if spec.kind == "grouped":
        return np.ascontiguousarray(x.transpose(0, 2, 1).reshape(spec.torch_shape))
    if spec.kind == "depthwise":
        return np.ascontiguousarray(x.T[:, None, :])
    return x


def nest(items) -> dict:
    """``[(path, leaf)]`` → a nested dict."""
    tree: dict = {}
    for path, leaf in items:
        node = tree
        for part in path[:-1]:
            node = node.setdefault(part, {})
        node[path[-1]] = leaf
    return tree


def template(config: OfficialConfig) -> dict:
    """The parameter tree's shapes (``jax.ShapeDtypeStruct`` leaves), for loading."""
    return nest((s.path, jax.ShapeDtypeStruct(s.shape, np.float32)) for s in specs(config))


def count_params(config: OfficialConfig) -> int:
    return int(sum(np.prod(s.shape) for s in specs(config)))
