"""Runs one stage-1 step, the stage-2 losses (Eq. 7's terms, forward only) and inference on the
tiny config and saves every output leaf: tests/tools/test_benchmark.py runs it under XLA's default
CPU kernels and under YNNPACK's.

The stage-2 *parameter update* is left out on purpose: at initialisation DS Net's reconstruction
is the input itself, so VQ Net's gradient is the difference of two nearly equal terms (the same
images called real and synthetic) and any change of summation order, e.g. XLA's own optimisation
level, moves it by percents. The backward convolutions are covered by the stage-1 step (the same
conv, ELU and BatchNorm kernels); compiling only the stage-2 forward keeps the worker short."""
import functools
import sys

import jax
import numpy as np

from despoof_jax.evaluation import scores
from despoof_jax.training import losses
from despoof_jax.training import state as state_lib
from despoof_jax.training import steps as train_step
from tests.util import random_batch, tiny_config


def main(out_path: str) -> None:
    config = tiny_config(32, **{"model.vq_dropout": 0.0, "train.adam_eps": 1e-3})
    s1 = state_lib.init_stage1(config, jax.random.key(1))
    s2 = state_lib.init_stage2(config, jax.random.key(0))
    ba, bb = random_batch(0, 4, 32), random_batch(1, 4, 32)
    step1 = jax.jit(functools.partial(train_step.bind_stage1(config), axis_name=None))
    ds_model, dq_model, vq_model = state_lib.make_models(config)
    k = losses.repetitive_kernel_size(32, config.loss.repetitive_k_at_256)
    stage2_losses = jax.jit(functools.partial(
        train_step.ds_loss_parts, ds_model=ds_model, dq_model=dq_model, vq_model=vq_model, k=k))
    dq = state_lib.frozen_dq_from_stage1(s1)
    stage2_metrics, _ = stage2_losses(s2.ds.params, s2, dq, bb, jax.random.key(2))
    ds = state_lib.FrozenNet(s2.ds.params, s2.ds.batch_stats)
    predict = jax.jit(functools.partial(scores.predict, ds_model=ds_model, dq_model=dq_model))
    out = (step1(s1, ba, jax.random.key(2)), stage2_metrics, predict(ds, dq, ba["rgb"]))
    np.savez(out_path, *[np.asarray(x) for x in jax.tree.leaves(out)])


if __name__ == "__main__":
    main(sys.argv[1])
