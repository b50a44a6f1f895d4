"""Baselines on the de-spoofing pipeline (same data, protocols, thresholds and reports).

config.method:
  "binary_cnn"  `models.binary_cnn.BinaryCNN` (DS Net's encoder + a 2-way head) trained with
                softmax cross-entropy on live/spoof labels, the black-box formulation the paper
                argues against (Sec. 1-2). Score: the spoof log-odds, logit[1] - logit[0].
                Trained for `train.baseline_steps` steps (0 = stage1_steps + stage2_steps, the
                de-spoofing method's number of optimizer steps) in `<workdir>/cnn/`.
  "depth_only"  the auxiliary-supervision model alone: stage 1 (DQ Net on pseudo-depth) and no
                DS/VQ Net. Score: the depth score of `scores.component_scores`, -mean(DQ(I)).
This module trains them (`train_cnn`; the depth-only model is stage 1, `loop.train_dq`);
`evaluation.baselines` scores and evaluates them like the de-spoofing model.
"""
from __future__ import annotations

import functools

import flax.struct
import jax
import jax.numpy as jnp
import optax

from despoof_jax.data.color import model_input
from despoof_jax.models.binary_cnn import BinaryCNN
from despoof_jax.training import loop, steps
from despoof_jax.training import state as state_lib

METHODS = ("binary_cnn", "depth_only")
SCORE_NAME = {"binary_cnn": "cnn", "depth_only": "depth"}


@flax.struct.dataclass
class CNNState:
    step: jnp.ndarray
    cnn: state_lib.NetState


def make_cnn(config, axis_name=None) -> BinaryCNN:
    return BinaryCNN(width=config.model.ds_width, axis_name=axis_name,
                     bn_momentum=config.model.bn_momentum,
                     dtype=state_lib.compute_dtype(config))   # as the de-spoofing nets


def init_cnn(config, rng) -> CNNState:
    return CNNState(jnp.zeros((), jnp.int32),
                    state_lib.init_net(make_cnn(config), rng, config,
                                       state_lib.make_optimizer(config)))


def cnn_step(state: CNNState, batch, rng, *, model, tx, axis_name=None):
    """One cross-entropy step of the binary CNN (pmap-style, like `steps.stage1_step`)."""
    del rng   # no dropout
    model = model.clone(axis_name=axis_name)
    x = model_input(batch["rgb"])

    def loss_fn(params):
        logits, new = model.apply({"params": params, "batch_stats": state.cnn.batch_stats}, x,
                                  train=True, mutable=["batch_stats"])
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
        acc = jnp.mean((jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32))
        return jnp.mean(ce), (new["batch_stats"], acc)

    (loss, (stats, acc)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.cnn.params)
    # Equal per-device batches: the mean of per-device means is the global mean.
    grads = steps.pmean(grads, axis_name)
    cnn = steps.apply_update(state.cnn, grads, stats, tx)
    metrics = steps.pmean({"cross_entropy": loss, "accuracy": acc}, axis_name)
    return CNNState(state.step + 1, cnn), steps.check_finite(metrics, cnn.params)


def baseline_steps(config) -> int:
    return int(config.train.get("baseline_steps", 0) or
               config.train.stage1_steps + config.train.stage2_steps)


def train_cnn(config, workdir, dp) -> dict:
    step = functools.partial(cnn_step, model=make_cnn(config),
                             tx=state_lib.make_optimizer(config))
    return loop.run_stage("cnn", config, workdir, dp, init_fn=init_cnn,
                            total_steps=baseline_steps(config), batches_per_step=1,
                            make_step=lambda: dp.wrap(step, batch_args=(1,), n_args=3))


