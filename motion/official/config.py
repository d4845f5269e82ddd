"""The released MS-Sync generator's sizes: ``OfficialConfig`` and the reading of its ``args``.

The authors' ``load_model`` (execute_model.py) starts from ``nets.utils.Config()`` and sets every
key of the training run's ``args`` JSON on it; ``DynamicalModel`` then reads eleven of them
(docs/design.md, "Released MS-Sync model"). ``OfficialConfig`` holds those eleven under their
official names, with ``Config()``'s defaults for keys a file leaves out; every other key of
``args`` (paths, loss weights, the discriminator, ...) is training-only and ignored.

Fixed by the official code, not configurable: 26 audio features into the FPN, 4 FPN levels,
keypoint-encoder widths 272 and 4·272, multi-scale width 272 per stream, feed-forward width
1024, a 40-frame context, 10 keypoints.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Mapping

from syncers.run.errors import InputError

ARCH = "ms-sync-official"
# nets/networks.py deep_mlp_layers: InvResX1D blocks per DeepMLP stage, keyed by nblocks_do. The
# multi-scale backbone takes every stage but the last; the mask and leaf heads take the last.
DEEP_MLP_LAYERS = {4: (4,), 6: (1, 1, 1, 1, 1, 1), 7: (1, 2, 2, 2), 8: (2, 2, 2, 2),
                   10: (1, 3, 3, 3), 16: (3, 4, 6, 3)}
N_KEYPOINTS = 10
AUDIO_FEATURES = 26             # FeaturePyramidNetwork's first block reads 26 channels
FPN_LEVELS = 4                  # FeaturePyramidNetwork(n_layers=4): the stream count G
ENCODER_WIDTH = 272             # keypoint encoder and multi-scale stream width
FEEDFORWARD = 1024              # nn.TransformerEncoderLayer(dim_feedforward=1024)
CONTEXT = 40                    # MAX_CONTEXT_LENGTH: frames the temporal module re-encodes
MERGINGS = ("softmax", "sigmoid")


@dataclasses.dataclass(frozen=True)
class OfficialConfig:
    """``DynamicalModel``'s sizes under the official names (defaults: ``Config()``'s).

    coord_dim: keypoint embedding = Transformer width; audio_dim: FPN width; hidden_size: the
    Transformer's output after ``lin_out``; nheads_tf / nlayers_tf: the Transformer's heads and
    layers; nblocks_do / expansion_fact_do: the multi-scale module's depth (a key of
    ``DEEP_MLP_LAYERS``) and its blocks' expansion; pyramid_layers_g: audio streams (4);
    data_dim: values per keypoint (6 = x, y and the jacobian); obs_len: warm-up frames;
    streams_merging_activation: ``softmax`` over the 5 streams or a per-stream ``sigmoid``
    (the official code takes any other string for sigmoid; it is recorded as ``sigmoid``).
    """
    coord_dim: int = 512
    audio_dim: int = 512
    hidden_size: int = 64
    nheads_tf: int = 1
    nlayers_tf: int = 1
    nblocks_do: int = 4
    expansion_fact_do: int = 4
    pyramid_layers_g: int = 4
    data_dim: int = 2
    obs_len: int = 3
    streams_merging_activation: str = "softmax"

    @property
    def audio_features(self) -> int:
        """Audio feature bands the model reads (what ``msync generate`` checks)."""
        return AUDIO_FEATURES

    @property
    def stream_width(self) -> int:
        """One stream's input to the multi-scale module: ``[h, enc(x), a^i]``."""
        return self.hidden_size + self.coord_dim + self.audio_dim


# The paper's generator: 41,718,606 parameters (the count the paper reports, 41.7 M); 8 heads is
# msync's reading of the paper (the head count does not change the parameter count).
PAPER = OfficialConfig(coord_dim=512, audio_dim=512, hidden_size=64, nheads_tf=8, nlayers_tf=4,
                       nblocks_do=4, expansion_fact_do=4, pyramid_layers_g=4, data_dim=6,
                       obs_len=3)
ARCHITECTURE_KEYS = tuple(f.name for f in dataclasses.fields(OfficialConfig))


def deep_mlp_dims(in_dim: int, out_dim: int, stages: int) -> tuple[list[tuple[int, int]], int]:
    """``DeepMLP``'s channel plan (nets/resnet.py): ``[(in, out)]`` of each stage's last block
    (the stage's other blocks are ``(in, in)``) and the width entering ``fc_out``. Stage i halves
    the width, never below ``out_dim``."""
    dims = [(in_dim if i == 0 else max(int(in_dim / 2 ** i), out_dim),
             max(int(in_dim / 2 ** (i + 1)), out_dim)) for i in range(stages)]
    return dims, max(int(in_dim / 2 ** stages), out_dim)


def multiscale_widths(config: OfficialConfig) -> list[int]:
    """Every channel count of the grouped (per-stream) DeepMLPs, all streams together."""
    groups, layers = config.pyramid_layers_g, DEEP_MLP_LAYERS[config.nblocks_do]
    widths = []
    for in_dim, out_dim, stages in (
            (config.stream_width * groups, ENCODER_WIDTH * groups, len(layers) - 1),
            (ENCODER_WIDTH * groups, N_KEYPOINTS * groups, 1),
            (ENCODER_WIDTH * groups, N_KEYPOINTS * config.data_dim * groups, 1)):
        dims, last = deep_mlp_dims(in_dim, out_dim, stages)
        widths += [w for pair in dims for w in pair] + [last, out_dim]
    return widths


# Upper bounds far above any released size: a model.json is untrusted input, and a size of
# 10⁹ would otherwise plan a billion layers before anything could refuse it.
_MOST = {"coord_dim": 16384, "audio_dim": 16384, "hidden_size": 16384, "nheads_tf": 1024,
         "nlayers_tf": 256, "nblocks_do": 64, "expansion_fact_do": 64, "pyramid_layers_g": 64,
         "data_dim": 64, "obs_len": 1024}


def _integer(args: Mapping[str, Any], key: str, source, minimum: int = 1) -> int:
    value = args[key]
    most = _MOST[key]
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= most:
        raise InputError(source, f"{key}: expected an integer from {minimum} to {most}; got "
                                 f"{value!r}")
    return value


def from_args(args: Mapping[str, Any], source: str | os.PathLike | None = None
              ) -> OfficialConfig:
    """The config of a released model's ``args`` (a parsed JSON object), as ``load_model``
    builds it: ``Config()``'s defaults, overridden by the file. Keys that ``DynamicalModel``
    does not read are ignored; a value the official code cannot build or run is an
    :class:`InputError` naming the key."""
    if not isinstance(args, Mapping):
        raise InputError(source, f"expected a JSON object of training arguments; got "
                                 f"{type(args).__name__}")
    defaults = OfficialConfig()
    given = {k: args[k] for k in ARCHITECTURE_KEYS if k in args}
    merged = {**dataclasses.asdict(defaults), **given}
    values: dict[str, Any] = {}
    for key in ARCHITECTURE_KEYS:
        if key == "streams_merging_activation":
            continue
        values[key] = _integer(merged, key, source)
    merging = merged["streams_merging_activation"]
    if not isinstance(merging, str):
        raise InputError(source, f"streams_merging_activation: expected a string; got "
                                 f"{merging!r}")
    values["streams_merging_activation"] = "softmax" if merging == "softmax" else "sigmoid"
    config = OfficialConfig(**values)
    check(config, source)
    return config


def from_dict(raw: Any, source: str | os.PathLike | None = None) -> OfficialConfig:
    """The config recorded in a saved model's ``model.json``: exactly the eleven keys."""
    if not isinstance(raw, Mapping) or set(raw) != set(ARCHITECTURE_KEYS):
        keys = sorted(raw) if isinstance(raw, Mapping) else raw
        raise InputError(source, f"config must hold exactly {', '.join(ARCHITECTURE_KEYS)}; "
                                 f"got {keys}")
    config = from_args(raw, source)
    if config.streams_merging_activation != raw["streams_merging_activation"]:
        raise InputError(source, f"streams_merging_activation must be one of "
                                 f"{', '.join(MERGINGS)}")
    return config


def check(config: OfficialConfig, source=None) -> None:
    """Refuse what the official code cannot build or run (one line naming the key)."""
    if config.nblocks_do not in DEEP_MLP_LAYERS:
        raise InputError(source, f"nblocks_do: {config.nblocks_do} is not one of the official "
                                 f"depths {sorted(DEEP_MLP_LAYERS)}")
    if config.coord_dim % config.nheads_tf:
        raise InputError(source, f"nheads_tf: {config.nheads_tf} heads do not divide "
                                 f"coord_dim {config.coord_dim}")
    if config.pyramid_layers_g != FPN_LEVELS:
        raise InputError(source, f"pyramid_layers_g: the official audio FPN always gives "
                                 f"{FPN_LEVELS} levels, so the multi-scale module needs "
                                 f"{FPN_LEVELS} groups; got {config.pyramid_layers_g}")
    if config.data_dim > 6:
        raise InputError(source, f"data_dim: the official inference feeds the first data_dim "
                                 f"of FOMM's 6 keypoint values; got {config.data_dim}")
    if config.obs_len < 2:
        raise InputError(source, f"obs_len: the official inference returns the last warm-up "
                                 f"output, which needs obs_len >= 2; got {config.obs_len}")
    narrow = min(config.stream_width, config.hidden_size + config.coord_dim)
    if len(DEEP_MLP_LAYERS[config.nblocks_do]) == 1 and narrow < ENCODER_WIDTH:
        raise InputError(source, f"nblocks_do: {config.nblocks_do} leaves the multi-scale "
                                 f"backbone a single layer of {ENCODER_WIDTH} inputs per stream, "
                                 f"but hidden_size + coord_dim (+ audio_dim) = {narrow}: the "
                                 "official code cannot run it")
    bad = [w for w in multiscale_widths(config) if w % config.pyramid_layers_g]
    if bad:
        raise InputError(source, f"hidden_size + audio_dim + coord_dim = {config.stream_width}: "
                                 f"the multi-scale module would have {bad[0]} channels in "
                                 f"{config.pyramid_layers_g} groups, which PyTorch cannot build")
