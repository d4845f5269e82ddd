"""GAN training step of the generator (paper §3.3, eq. 11–16): pure functions, jitted once.

:func:`train_step` ``(state, frozen, batch, rng) -> (state, metrics)`` does one alternating
update on a batch ``{"keypoints": [B, O+n, 10, 6], "audio_features": [B, 4(O+n), F]}`` (the
first O = obs_len frames are observed, the next n generated):

1. G rolls out n frames once (``motion.rollout``), keeping its VJP;
2. D_f and D_s take a hinge step (eq. 11–12) on real frames/windows vs the generated ones;
3. G's loss (eq. 16: λav·L_AV^MS + λadv·(L_Gf + L_Gs) + λrec·L_rec) is taken against the
   *updated* discriminators, differentiated w.r.t. the generated frames and pulled back through
   the stored rollout VJP — one rollout forward and one backward per step, not two.

Adam with β1 = 0, β2 = 0.999 (lr 2e-5 for G, 1e-5 for D by default). ``frozen`` holds the
syncers' parameters, passed separately (never differentiated nor checkpointed with the state);
``score_fn(frozen, level, audio [N,20,F], motion [N,5,60]) -> [N]`` is static.
The CLI / orbax loop comes later (``train_command``).
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax

from motion import losses
from motion.config import GeneratorRunConfig
from motion.discriminators import FrameDiscriminator, SequenceDiscriminator
from motion.generator import init_params
from motion.rollout import rollout


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    g_params: Any
    d_params: Any          # {"frame": ..., "seq": ...}
    d_stats: Any           # spectral-norm power-iteration vectors ("batch_stats")
    g_opt: Any
    d_opt: Any
    rng: jax.Array


def optimizers(lr_g: float = 2e-5, lr_d: float = 1e-5):
    return optax.adam(lr_g, b1=0.0, b2=0.999), optax.adam(lr_d, b1=0.0, b2=0.999)


def create_train_state(run: GeneratorRunConfig, rng, n_frames: int = 40, lr_g: float = 2e-5,
                       lr_d: float = 1e-5) -> TrainState:
    k_g, k_f, k_s, rng = jax.random.split(rng, 4)
    g = init_params(run.model, k_g)
    x = jnp.zeros((1, n_frames, 10, 6))
    obs = jnp.zeros((1, run.model.obs_len, 10, 6))
    v_f = FrameDiscriminator(run.discriminators).init(k_f, x)
    v_s = SequenceDiscriminator(run.discriminators).init(k_s, obs, x)
    d = {"frame": v_f["params"], "seq": v_s["params"]}
    stats = {"frame": v_f.get("batch_stats", {}), "seq": v_s.get("batch_stats", {})}
    tx_g, tx_d = optimizers(lr_g, lr_d)
    return TrainState(jnp.int32(0), g, d, stats, tx_g.init(g), tx_d.init(d), rng)


def _discriminate(run, d_params, d_stats, x_obs, x, update):
    """(frame scores [B, n], window scores [B, N], new stats)."""
    f = FrameDiscriminator(run.discriminators)
    s = SequenceDiscriminator(run.discriminators)
    kw = dict(update_stats=update, mutable=["batch_stats"]) if update else {}
    out_f = f.apply({"params": d_params["frame"], "batch_stats": d_stats["frame"]}, x, **kw)
    out_s = s.apply({"params": d_params["seq"], "batch_stats": d_stats["seq"]}, x_obs, x, **kw)
    if update:
        (sf, new_f), (ss, new_s) = out_f, out_s
        return sf, ss, {"frame": new_f["batch_stats"], "seq": new_s["batch_stats"]}
    return out_f, out_s, d_stats


def train_step(state: TrainState, frozen, batch, rng, *, run: GeneratorRunConfig,
               score_fn: Callable, lr_g: float = 2e-5, lr_d: float = 1e-5):
    """One D step then one G step; returns ``(state, metrics)`` (every loss term)."""
    obs = run.model.obs_len
    keypoints = batch["keypoints"]
    audio = batch["audio_features"]
    x_obs, real = keypoints[:, :obs], keypoints[:, obs:]
    n = real.shape[1]
    tx_g, tx_d = optimizers(lr_g, lr_d)
    cfg = run.loss

    fake, pull_back = jax.vjp(
        lambda g: rollout(g, x_obs, audio, n, config=run.model), state.g_params)

    def d_loss(d_params):
        both = jnp.concatenate([real, jax.lax.stop_gradient(fake)])
        sf, ss, stats = _discriminate(run, d_params, state.d_stats,
                                      jnp.concatenate([x_obs, x_obs]), both, True)
        b = real.shape[0]
        l_f = losses.d_hinge(sf[:b], sf[b:]) if cfg.frame_discriminator else 0.0
        l_s = losses.d_hinge(ss[:b], ss[b:]) if cfg.sequence_discriminator else 0.0
        return l_f + l_s, (l_f, l_s, stats)

    (l_d, (l_df, l_ds, stats)), d_grads = jax.value_and_grad(d_loss, has_aux=True)(
        state.d_params)
    d_updates, d_opt = tx_d.update(d_grads, state.d_opt, state.d_params)
    d_params = optax.apply_updates(state.d_params, d_updates)

    score = functools.partial(score_fn, frozen)

    def g_loss(fake):
        sf, ss, _ = _discriminate(run, d_params, stats, x_obs, fake, False)
        l_av, per_level = losses.av_multiscale(score, fake, audio[:, 4 * obs:4 * (obs + n)], cfg)
        l_gf, l_gs = losses.g_hinge(sf), losses.g_hinge(ss)
        l_rec = losses.reconstruction(real, fake)
        total = losses.generator_total(cfg, l_av, l_gf, l_gs, l_rec)
        return total, {"g_total": total, "l_av": l_av, "l_gf": l_gf, "l_gs": l_gs,
                       "l_rec": l_rec, **{f"av_score_{k}": v for k, v in per_level.items()}}

    (_, metrics), fake_grad = jax.value_and_grad(g_loss, has_aux=True)(fake)
    (g_grads,) = pull_back(fake_grad)
    g_updates, g_opt = tx_g.update(g_grads, state.g_opt, state.g_params)
    g_params = optax.apply_updates(state.g_params, g_updates)

    metrics = dict(metrics, d_loss=l_d, l_df=l_df, l_ds=l_ds,
                   g_grad_norm=optax.tree.norm(g_grads),
                   d_grad_norm=optax.tree.norm(d_grads))
    new = TrainState(state.step + 1, g_params, d_params, stats, g_opt, d_opt,
                     jax.random.fold_in(rng, state.step))
    return new, metrics


def jit_train_step(run: GeneratorRunConfig, score_fn: Callable, **kwargs):
    """``train_step`` jitted once for this config and syncer scorer, the state donated."""
    return jax.jit(functools.partial(train_step, run=run, score_fn=score_fn, **kwargs),
                   donate_argnums=0)
