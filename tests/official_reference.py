"""A PyTorch re-statement of the released MS-Sync generator and its inference, for the parity
tests and the benchmark (LouisBearing/HMo-audio: ``nets/networks.py`` DynamicalModel,
``nets/resnet.py`` InvResX1D / DeepMLP / FeaturePyramidNetwork, ``execute_model.py``,
``dataset/preprocess_audio.py``).

Module names equal the official ones, so ``state_dict()`` keys ARE the released checkpoint's
layout (``encoder_x.0.weight``, ``encoder_a.conv0.1.downsample.weight``,
``temp_module.layers.0.self_attn.in_proj_weight``, ``deep_output.blocks.2.norm.weight``, ...).
The forward pass is the official one line for line; the only changes are the device (CPU, no
``.cuda()``) and an empty ``obs_outputs`` of the right rank. The audio front-end is restated
without torch in ``official_audio_reference.py``.
"""
from __future__ import annotations

import json
import os

import numpy as np
import torch
from torch import nn

DEEP_MLP_LAYERS = {"4": [4], "6": [1, 1, 1, 1, 1, 1], "7": [1, 2, 2, 2], "8": [2, 2, 2, 2],
                   "10": [1, 3, 3, 3], "16": [3, 4, 6, 3]}
KEYPOINTS_DIM = 10
MAX_CONTEXT_LENGTH = 40

# nets/utils.py Config(): the defaults load_model starts from before reading `args`.
CONFIG_DEFAULTS = {"data_dim": 2, "obs_len": 3, "expansion_fact_do": 4, "nblocks_do": 4,
                   "audio_dim": 512, "coord_dim": 512, "pyramid_layers_g": 4,
                   "streams_merging_activation": "softmax", "hidden_size": 64,
                   "nlayers_tf": 1, "nheads_tf": 1}


class Config:
    def __init__(self, **values):
        for key, value in {**CONFIG_DEFAULTS, **values}.items():
            setattr(self, key, value)


class InvResX1D(nn.Module):
    def __init__(self, indim, outdim, kernel, stride=1, expansion_fact=4, groups=1):
        super().__init__()
        self.depth_wise = nn.Conv1d(indim, indim, kernel, stride=stride,
                                    padding=int(0.5 * (kernel - 1)), groups=indim)
        self.norm = nn.GroupNorm(groups, indim) if groups > 1 else nn.LayerNorm(indim)
        self.pt_wise_in = nn.Conv1d(indim, expansion_fact * indim, 1, groups=groups)
        self.act = nn.GELU()
        self.pt_wise_out = nn.Conv1d(expansion_fact * indim, outdim, 1, groups=groups)
        self.downsample = None
        if (stride != 1) or (indim != outdim):
            self.downsample = nn.Conv1d(indim, outdim, 1, stride, groups=groups)
            self.out_norm = nn.GroupNorm(groups, outdim) if groups > 1 else nn.LayerNorm(outdim)
        self.groups = groups

    def forward(self, x):
        identity = x
        out = self.depth_wise(x)
        if self.groups > 1:
            out = self.norm(out)
        else:
            out = self.norm(out.transpose(1, 2)).transpose(1, 2)
        out = self.pt_wise_in(out)
        out = self.act(out)
        out = self.pt_wise_out(out)
        if self.downsample is not None:
            if self.groups > 1:
                identity = self.out_norm(self.downsample(x))
            else:
                identity = self.out_norm(self.downsample(x).transpose(1, 2)).transpose(1, 2)
        out += identity
        return self.act(out)


class DeepMLP(nn.Module):
    def __init__(self, indim, outdim, layers=(1, 1, 1, 1), expansion_fact=1, groups=1):
        super().__init__()
        dims = [(max(int(indim / (2 ** i)), outdim), max(int(indim / (2 ** (i + 1))), outdim))
                if i > 0 else (indim, max(int(indim / (2 ** (i + 1))), outdim))
                for i in range(len(layers))]
        blocks = []
        for nblocks, (i, j) in zip(layers, dims):
            blocks += [InvResX1D(i, i, kernel=1, expansion_fact=expansion_fact, groups=groups)
                       for _ in range(nblocks - 1)]
            blocks += [InvResX1D(i, j, kernel=1, expansion_fact=expansion_fact, groups=groups)]
        self.blocks = nn.Sequential(*blocks)
        width = max(int(indim / (2 ** len(layers))), outdim)
        self.fc_out = (nn.Conv1d(width, outdim, 1, groups=groups) if groups > 1
                       else nn.Linear(width, outdim))
        self.groups = groups

    def forward(self, x):
        if self.groups > 1:
            return self.fc_out(self.blocks(x[..., None])).squeeze(-1)
        return self.fc_out(self.blocks(x[..., None]).squeeze(-1))


class FeaturePyramidNetwork(nn.Module):
    """The bottom-up-only branch (the only one DynamicalModel builds)."""

    def __init__(self, feature_dim, interm_dim, n_layers=4):
        super().__init__()
        self.conv0 = nn.Sequential(InvResX1D(26, 64, 3), InvResX1D(64, 128, 3, 2),
                                   InvResX1D(128, 256, 3), InvResX1D(256, interm_dim, 3, 2))
        self.pyramid_layers = nn.ModuleList([InvResX1D(interm_dim, interm_dim, 7, 2)
                                             for _ in range(n_layers - 1)])

    def forward(self, x):
        out = self.conv0(x.transpose(1, 2))
        bottom_ups = [out]
        for layer in self.pyramid_layers:
            out = layer(out)
            bottom_ups.append(out)
        return bottom_ups


class DynamicalModel(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.h_size = config.hidden_size
        self.input_dim = KEYPOINTS_DIM
        self.emb_dim = self.input_dim * config.data_dim
        self.encoder_x = nn.Sequential(nn.Linear(self.emb_dim, 272), nn.LayerNorm(272),
                                       nn.Linear(272, 4 * 272), nn.GELU(),
                                       nn.Linear(4 * 272, config.coord_dim))
        self.encoder_a = FeaturePyramidNetwork(config.audio_dim, config.audio_dim)
        self.instantiate_deep_output_net(self.h_size + config.audio_dim + config.coord_dim)
        tf_layer = nn.TransformerEncoderLayer(d_model=config.coord_dim, nhead=config.nheads_tf,
                                              dim_feedforward=1024, dropout=0)
        self.temp_module = nn.TransformerEncoder(tf_layer, num_layers=config.nlayers_tf)
        self.lin_out = nn.Linear(config.coord_dim, self.h_size)

    def instantiate_deep_output_net(self, in_dim):
        c = self.config
        groups = c.pyramid_layers_g
        layers = DEEP_MLP_LAYERS[str(c.nblocks_do)]
        self.deep_output = DeepMLP(in_dim * groups, 272 * groups, layers=layers[:-1],
                                   expansion_fact=c.expansion_fact_do, groups=groups)
        self.mask = DeepMLP(272 * groups, self.input_dim * groups, layers=[layers[-1]],
                            expansion_fact=c.expansion_fact_do, groups=groups)
        self.leaf = DeepMLP(272 * groups, self.input_dim * c.data_dim * groups,
                            layers=[layers[-1]], expansion_fact=c.expansion_fact_do,
                            groups=groups)
        groups += 1
        self.deep_output_bias = DeepMLP(in_dim - c.audio_dim, 272, layers=layers[:-1],
                                        expansion_fact=c.expansion_fact_do)
        self.mask_bias = DeepMLP(272, self.input_dim, layers=[layers[-1]],
                                 expansion_fact=c.expansion_fact_do)
        self.leaf_bias = DeepMLP(272, self.input_dim * c.data_dim, layers=[layers[-1]],
                                 expansion_fact=c.expansion_fact_do)
        self.final_block = nn.Linear(self.input_dim * c.data_dim * groups,
                                     self.input_dim * c.data_dim)

    def embed_audio(self, audio):
        tgt_len = int(audio.shape[1] / 4)
        fpn_out = self.encoder_a(audio)
        return tuple(torch.nn.functional.interpolate(t, size=tgt_len, mode="linear",
                                                     align_corners=True).transpose(1, 2)
                     for t in fpn_out)

    def deep_out_forward(self, deep_out_input):
        c = self.config
        bckbone_out = self.deep_output(deep_out_input)
        leaf_output = self.leaf(bckbone_out)
        leaf_output = torch.stack(leaf_output.split(int(leaf_output.shape[-1]
                                                        / c.pyramid_layers_g), dim=-1), dim=0)
        mask = self.mask(bckbone_out).repeat_interleave(c.data_dim, dim=1)
        mask = torch.stack(mask.split(int(mask.shape[-1] / c.pyramid_layers_g), dim=-1), dim=0)
        temp_mod_out_dim = int(deep_out_input.shape[1] / c.pyramid_layers_g) - c.audio_dim
        bckbone_out_bias = self.deep_output_bias(deep_out_input[:, :temp_mod_out_dim])
        leaf_output_bias = self.leaf_bias(bckbone_out_bias)
        leaf_output = torch.cat([leaf_output_bias[None], leaf_output], dim=0)
        mask_bias = self.mask_bias(bckbone_out_bias).repeat_interleave(c.data_dim, dim=1)
        mask = torch.cat([mask_bias[None], mask], dim=0)
        if c.streams_merging_activation == "softmax":
            mask = torch.softmax(mask, dim=0)
        else:
            mask = torch.sigmoid(mask)
        out = mask * leaf_output
        return self.final_block(out.transpose(0, 1).flatten(start_dim=1))

    def forward(self, inpt, audio):
        bs, obs_len, _, _ = inpt.size()
        running_inpt = inpt.flatten(start_dim=-2)
        seq_len = int(audio.shape[1] / 4) - obs_len
        audio_pyramid = self.embed_audio(audio)
        coord = self.encoder_x(running_inpt)
        forward_mask = torch.triu(torch.ones(obs_len, obs_len), diagonal=1).bool()
        deep_out_input = self.lin_out(self.temp_module(coord.transpose(0, 1),
                                                       mask=forward_mask).transpose(0, 1))
        deep_out_input = torch.cat([deep_out_input, coord], dim=-1)
        deep_out_input = torch.cat([torch.cat([deep_out_input, a[:, 1:obs_len + 1]], dim=-1)
                                    for a in audio_pyramid], dim=-1)
        last_vel = self.deep_out_forward(deep_out_input.flatten(end_dim=1)).view(
            bs, obs_len, self.input_dim, self.config.data_dim)
        last_pos = inpt + last_vel
        obs_outputs = last_pos[:, :-1]
        last_pos = last_pos[:, -1]
        running_inpt = last_pos.view(bs, -1)
        outputs = [last_pos.unsqueeze(1)]
        for i in range(seq_len - 1):
            coord_i = self.encoder_x(running_inpt)
            coord = torch.cat([coord, coord_i.unsqueeze(1)], dim=1)[:, -MAX_CONTEXT_LENGTH:]
            forward_mask = torch.triu(torch.ones(coord.shape[1], coord.shape[1]),
                                      diagonal=1).bool()
            h_n = self.lin_out(self.temp_module(coord.transpose(0, 1),
                                                mask=forward_mask).transpose(0, 1))
            h_n = h_n[:, -1]
            deep_out_input = torch.cat([h_n, coord_i], dim=-1)
            deep_out_input = torch.cat([torch.cat([deep_out_input, a[:, i + obs_len + 1]],
                                                  dim=-1) for a in audio_pyramid], dim=-1)
            last_vel = self.deep_out_forward(deep_out_input).view(bs, self.input_dim,
                                                                  self.config.data_dim)
            last_pos = last_pos + last_vel
            running_inpt = last_pos.view(bs, -1)
            outputs.append(last_pos.unsqueeze(1))
        return obs_outputs, torch.cat(outputs, dim=1)


def build(args: dict, seed: int = 0) -> DynamicalModel:
    """An eval-mode DynamicalModel for ``args`` with random weights away from the defaults:
    every LayerNorm/GroupNorm gets a random affine (a port that ignored them must fail) and the
    weights are scaled so velocities are O(0.1) (a wrong term must show)."""
    torch.manual_seed(seed)
    model = DynamicalModel(Config(**args)).eval()
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.LayerNorm, nn.GroupNorm)):
                n = module.weight.shape[0]
                module.weight.copy_(1 + 0.3 * torch.randn(n, generator=gen))
                module.bias.copy_(0.2 * torch.randn(n, generator=gen))
            elif isinstance(module, (nn.Linear, nn.Conv1d)):
                module.bias.copy_(0.05 * torch.randn(module.bias.shape, generator=gen))
        for name, p in model.named_parameters():
            if name.startswith("final_block"):
                p.mul_(0.3)
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def save_release(directory, model: DynamicalModel, args: dict, legacy: bool = False,
                 **extra) -> None:
    """Write ``directory/args`` (JSON) and ``directory/model_chkpt.pt`` as the official trainer
    saves a best model: ``{'checkpoints': state_dict, 'steps': ...}`` (plus ``extra``)."""
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "args"), "w") as f:
        json.dump(args, f)
    torch.save({"checkpoints": model.state_dict(), "steps": 84000, **extra},
               os.path.join(directory, "model_chkpt.pt"),
               _use_new_zipfile_serialization=not legacy)


# --- inference protocol ---------------------------------------------------------------------

def execute_model(model, config, kp0, melspec, seq_len=0):
    """execute_model.py's protocol: kp0 ``[1, 10, 6]`` torch, melspec ``[N, 26]`` torch →
    keypoints ``[1, T, 10, data_dim]``."""
    inc = 3.9943
    required_len = int(len(melspec) / inc)
    if seq_len > 0:
        required_len = min(1 + seq_len, required_len)
    i_x = np.arange(required_len)
    full_audio = melspec[:np.round((i_x[-1] + 1) * inc).astype(int)]
    prepad_l = np.round(4 * (config.obs_len - 1)).astype(int)
    mirror_pad = full_audio[:prepad_l, :].flip([0])
    full_audio = torch.nn.functional.pad(full_audio[None], (0, 0, 0, 5),
                                         mode="reflect")[:, :4 * required_len]
    mirror_pad = mirror_pad[None]
    inpt = kp0[:, None, :, :config.data_dim].repeat(1, config.obs_len, 1, 1)
    with torch.no_grad():
        x_rec, x_pred = model(inpt, torch.cat([mirror_pad, full_audio], dim=1))
    return torch.cat([x_rec[:, [-1]], x_pred], dim=1)
