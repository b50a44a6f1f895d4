"""Per-device training and evaluation steps, written pmap-style.

Each step is a pure function of (state, frozen trees, batch slice, rng). Inside `jax.pmap` or
`shard_map` it is called with `axis_name`: gradients are `pmean`-ed, BatchNorm statistics are
computed over the global batch, batch means divide by global counts (`losses.batch_mean`), and
per-device randomness comes from `fold_in(rng, axis_index)`. With `axis_name=None` the same
function is the single-device step. This module names no device; `parallel.py` runs the steps.

Batch slices are dicts of arrays (see `despoof_jax.data.pipeline`):
  rgb [b, H, W, 3] uint8, depth [b, H/8, W/8, 1] float32 face depth in [0, 1],
  label [b] int32 (1 = spoof); with `loss.noise_truth` also live_reference [b, H, W, 3] uint8.
"""
from __future__ import annotations

import functools
from typing import Optional, Sequence

import jax
import jax.numpy as jnp
import optax

from despoof_jax.data.color import model_input, smooth_colour_jitter, true_noise
from despoof_jax.training import losses
from despoof_jax.training.state import (
    FrozenNet,
    NetState,
    Stage1State,
    Stage2State,
    make_models,
    make_optimizer,
)


def step_rng(rng, step, axis_name: Optional[str]):
    """Randomness for one step on one device: fold in the step, then the device's axis index."""
    rng = jax.random.fold_in(rng, step)
    if axis_name is not None:
        rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))
    return rng


def pmean(tree, axis_name):
    return tree if axis_name is None else jax.lax.pmean(tree, axis_name)


def apply_update(net: NetState, grads, new_stats, tx: optax.GradientTransformation) -> NetState:
    updates, opt_state = tx.update(grads, net.opt_state, net.params)
    return NetState(optax.apply_updates(net.params, updates), new_stats, opt_state)


def check_finite(metrics: dict, *updated) -> dict:
    """Adds `finite`: 1.0 iff every loss is finite and so is every leaf of the `updated` trees
    (the parameters after the update: finite losses with non-finite gradients would otherwise
    save NaN parameters as the last good checkpoint), so the host can stop loudly on NaN."""
    checks = [jnp.all(jnp.isfinite(v)) for v in metrics.values()]
    checks += [jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(updated)]
    return dict(metrics, finite=jnp.all(jnp.stack(checks)).astype(jnp.float32))


def stage1_step(state: Stage1State, batch, rng, *, dq_model, tx, axis_name=None,
                colour_jitter: float = 0.0):
    """Pretrains DQ Net on pseudo-depth: face depth for live, zeros for spoof (Sec. 3.3).

    `colour_jitter` > 0 (config.train.dq_colour_jitter; off in the paper's setting) shows DQ Net
    each image under a random smooth colour change (`color.smooth_colour_jitter`), so that its
    depth answer cannot be moved by colour alone; see README "Reading of the paper"."""
    dq_model = dq_model.clone(axis_name=axis_name)
    if colour_jitter > 0:
        rgb = smooth_colour_jitter(batch["rgb"], step_rng(rng, state.step, axis_name),
                                   colour_jitter)
        x = model_input(rgb)
    else:
        x = model_input(batch["rgb"])
    is_spoof = batch["label"].astype(jnp.float32)
    target = losses.dq_pretraining_target(batch["depth"], is_spoof)

    def loss_fn(params):
        depth, new = dq_model.apply({"params": params, "batch_stats": state.dq.batch_stats}, x,
                                    train=True, mutable=["batch_stats"])
        return losses.depth_loss(depth, target, axis_name), new["batch_stats"]

    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.dq.params)
    grads = pmean(grads, axis_name)
    dq = apply_update(state.dq, grads, stats, tx)
    metrics = pmean({"dq_pretrain": loss}, axis_name)
    return Stage1State(state.step + 1, dq), check_finite(metrics, dq.params)


def vq_update(state: Stage2State, batch, rng, *, ds_model, vq_model, tx, axis_name=None):
    """Eq. 3: one VQ Net update with DS Net fixed -> (state with new `vq`, VQ loss).

    Sets of Eq. 3/4 (our reading): R, the real live images, are the live samples of the batch;
    S, the synthesised live images, are DS Net's reconstructions I - N of its spoof samples (the
    reconstruction of a live input is the input itself when N = 0 and would ask VQ Net to call the
    same image both real and synthetic). DS Net runs in training mode (batch statistics, like
    in the DS update) but its updated statistics are discarded: DS is fixed here.
    """
    x = model_input(batch["rgb"])
    out, _ = ds_model.apply(state.ds.variables(), x, train=True, mutable=["batch_stats"])
    return _vq_update_on(state, x, batch["label"], out["live"], rng, vq_model=vq_model, tx=tx,
                         axis_name=axis_name)


def _vq_update_on(state: Stage2State, x, label, live_hat, rng, *, vq_model, tx, axis_name):
    """The VQ update of `vq_update` given DS Net's reconstruction `live_hat` of the input `x`."""
    spoof = label.astype(jnp.float32)
    fake = jax.lax.stop_gradient(live_hat)

    def loss_fn(params):
        variables = {"params": params, "batch_stats": state.vq.batch_stats}
        logits, new = vq_model.apply(variables, jnp.concatenate([x, fake], axis=0), train=True,
                                     mutable=["batch_stats"], rngs={"dropout": rng})
        real_logits, fake_logits = jnp.split(logits, 2, axis=0)
        loss = losses.vq_discriminator_loss(real_logits, 1.0 - spoof, fake_logits, spoof,
                                            axis_name)
        return loss, new["batch_stats"]

    (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.vq.params)
    vq = apply_update(state.vq, pmean(grads, axis_name), stats, tx)
    return state.replace(vq=vq), loss


def ds_loss_parts(ds_params, state: Stage2State, dq: FrozenNet, batch, rng, *, ds_model,
                  dq_model, vq_model, k: int, axis_name=None):
    """The terms of Eq. 7 for DS Net params `ds_params` -> (parts dict, new DS batch stats).

    `dq` is applied with `train=False` (running statistics) and its variables are wrapped in
    `stop_gradient`: DQ Net is a fixed function here, yet the gradient of J_DQ flows *through* it
    into DS Net. VQ Net (fixed in this half) runs in training mode, as in its own update, with
    its statistics discarded; but here its BatchNorm statistics come from the B reconstructions
    alone, while its own update normalises the live inputs and the reconstructions together
    (README, "Reading of the paper": VQ Net's BatchNorm statistics; kept, as every recorded
    model was trained so).
    """
    out, new = ds_model.apply({"params": ds_params, "batch_stats": state.ds.batch_stats},
                              model_input(batch["rgb"]), train=True, mutable=["batch_stats"])
    return _ds_terms(out, state, dq, batch, rng, dq_model=dq_model, vq_model=vq_model, k=k,
                     axis_name=axis_name), new["batch_stats"]


def _ds_terms(out: dict, state: Stage2State, dq: FrozenNet, batch, rng, *, dq_model, vq_model,
              k: int, axis_name):
    """The terms of Eq. 7 given DS Net's outputs `out` (map, noise, live) on `batch`, and
    `peak_max`, a diagnostic without a gradient (`losses.peak_max`)."""
    spoof = batch["label"].astype(jnp.float32)
    depth = dq_model.apply(jax.lax.stop_gradient(dq.variables()), out["live"], train=False)
    logits, _ = vq_model.apply(jax.lax.stop_gradient(state.vq.variables()), out["live"],
                               train=True, mutable=["batch_stats"], rngs={"dropout": rng})
    peak = losses.high_frequency_peak(out["noise"], k)
    parts = {
        "z": losses.zero_one_map_loss(out["map"], spoof, axis_name),
        "m": losses.magnitude_loss(out["noise"], spoof, axis_name),
        "r": losses.repetitive_loss(out["noise"], spoof, k, axis_name, peak=peak),
        "dq": losses.depth_loss(depth, batch["depth"], axis_name),
        "vq": losses.vq_generator_loss(logits, spoof, axis_name),
        # Not a loss term (`total_ds_loss` never reads it): logged as `noise_peak`, the largest
        # per-sample peak of the global batch, which tells one sample's noise leaving the image
        # range (`losses.noise_runaway`); the batch-mean J_r tells only a whole batch's.
        "peak_max": losses.peak_max(peak, axis_name),
    }
    if "live_reference" in batch:   # loss.noise_truth (not in the paper)
        parts["t"] = losses.noise_truth_loss(
            out["noise"], true_noise(batch["rgb"], batch["live_reference"]), axis_name)
    return parts


def ds_update(state: Stage2State, dq: FrozenNet, batch, rng, *, ds_model, dq_model, vq_model,
              tx, lambdas: Sequence[float], k: int, axis_name=None):
    """Eq. 7: one DS Net update through the frozen DQ Net and the fixed VQ Net
    -> (state with new `ds`, total loss, parts)."""
    def loss_fn(params):
        parts, stats = ds_loss_parts(params, state, dq, batch, rng, ds_model=ds_model,
                                     dq_model=dq_model, vq_model=vq_model, k=k,
                                     axis_name=axis_name)
        return losses.total_ds_loss(parts, lambdas), (parts, stats)

    (loss, (parts, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.ds.params)
    ds = apply_update(state.ds, pmean(grads, axis_name), stats, tx)
    return state.replace(ds=ds), loss, parts


def _stage2_metrics(state: Stage2State, ds_loss, vq_loss, parts, axis_name):
    metrics = {"ds_total": ds_loss, "vq_disc": vq_loss, "noise_peak": parts["peak_max"]}
    metrics.update({f"J_{name}": v for name, v in parts.items() if name != "peak_max"})
    return state.replace(step=state.step + 1), check_finite(pmean(metrics, axis_name),
                                                            state.ds.params, state.vq.params)


def stage2_step(state: Stage2State, dq: FrozenNet, batch_vq, batch_ds, rng, *, ds_model,
                dq_model, vq_model, tx, lambdas: Sequence[float], k: int, axis_name=None):
    """One stage-2 iteration: the VQ update (Eq. 3) on `batch_vq`, then the DS update (Eq. 7) on
    `batch_ds`, as the paper alternates them on two batches (Sec. 3.3, "evaluated with two
    batches"). `dq` is an argument, not part of the state: it is never updated or returned.
    """
    ds_model, vq_model = ds_model.clone(axis_name=axis_name), vq_model.clone(axis_name=axis_name)
    rng = step_rng(rng, state.step, axis_name)
    r_vq, r_ds = jax.random.split(rng)
    state, vq_loss = vq_update(state, batch_vq, r_vq, ds_model=ds_model, vq_model=vq_model,
                               tx=tx, axis_name=axis_name)
    state, ds_loss, parts = ds_update(state, dq, batch_ds, r_ds, ds_model=ds_model,
                                      dq_model=dq_model, vq_model=vq_model, tx=tx,
                                      lambdas=lambdas, k=k, axis_name=axis_name)
    return _stage2_metrics(state, ds_loss, vq_loss, parts, axis_name)


def stage2_step_one_batch(state: Stage2State, dq: FrozenNet, batch, rng, *, ds_model, dq_model,
                          vq_model, tx, lambdas: Sequence[float], k: int, axis_name=None):
    """`stage2_step` with both halves on one batch (`config.train.vq_batch = "shared"`).

    DS Net's forward runs once: its reconstruction feeds the VQ update, then the DS loss through
    the updated VQ Net and the frozen DQ Net is pulled back through the same forward (`jax.vjp`).
    This is what `stage2_step(state, dq, batch, batch, rng)` computes, minus one DS forward
    (tests/training/test_train_step.py checks the equality), and what the PyTorch peer in
    ../shared/bench does. The paper uses two batches; this mode trades that for one DS forward
    per iteration (about 7 % of the step at 256 px on CPU) and half the data per step.
    """
    ds_model, vq_model = ds_model.clone(axis_name=axis_name), vq_model.clone(axis_name=axis_name)
    rng = step_rng(rng, state.step, axis_name)
    r_vq, r_ds = jax.random.split(rng)
    x = model_input(batch["rgb"])

    def ds_forward(params):
        out, new = ds_model.apply({"params": params, "batch_stats": state.ds.batch_stats}, x,
                                  train=True, mutable=["batch_stats"])
        return out, new["batch_stats"]

    out, pullback, stats = jax.vjp(ds_forward, state.ds.params, has_aux=True)
    state, vq_loss = _vq_update_on(state, x, batch["label"], out["live"], r_vq,
                                   vq_model=vq_model, tx=tx, axis_name=axis_name)

    def loss_of_outputs(o):
        parts = _ds_terms(o, state, dq, batch, r_ds, dq_model=dq_model, vq_model=vq_model, k=k,
                          axis_name=axis_name)
        return losses.total_ds_loss(parts, lambdas), parts

    (ds_loss, parts), d_out = jax.value_and_grad(loss_of_outputs, has_aux=True)(out)
    (grads,) = pullback(d_out)
    state = state.replace(ds=apply_update(state.ds, pmean(grads, axis_name), stats, tx))
    return _stage2_metrics(state, ds_loss, vq_loss, parts, axis_name)


VQ_BATCH_MODES = ("separate", "shared")


def bind_stage1(config):
    """stage1_step with the config's model and optimizer bound (call with axis_name)."""
    _, dq_model, _ = make_models(config)
    return functools.partial(stage1_step, dq_model=dq_model, tx=make_optimizer(config),
                             colour_jitter=float(config.train.get("dq_colour_jitter", 0.0)))


def bind_stage2(config):
    """The stage-2 step with the config's models, optimizer and loss weights bound:
    `stage2_step(state, dq, batch_vq, batch_ds, rng)` (config.train.vq_batch "separate", the
    paper) or `stage2_step_one_batch(state, dq, batch, rng)` ("shared")."""
    mode = config.train.get("vq_batch", "separate")
    if mode not in VQ_BATCH_MODES:
        raise ValueError(f"config.train.vq_batch={mode!r}; expected one of {VQ_BATCH_MODES}")
    ds_model, dq_model, vq_model = make_models(config)
    lc = config.loss
    return functools.partial(
        stage2_step if mode == "separate" else stage2_step_one_batch,
        ds_model=ds_model, dq_model=dq_model, vq_model=vq_model,
        tx=make_optimizer(config),
        lambdas=(lc.zero_one_map, lc.magnitude, lc.repetitive, lc.dq, lc.vq,
                 float(lc.get("noise_truth", 0.0))),
        k=losses.repetitive_kernel_size(config.data.image_size, lc.repetitive_k_at_256))


def stage2_batches(config) -> int:
    """Batches one stage-2 step consumes: 2 (the paper's two batches) or 1 (vq_batch shared)."""
    return 1 if config.train.get("vq_batch", "separate") == "shared" else 2
