"""Runs one stage-1 step, the stage-2 losses and inference on the tiny config and saves every
output leaf: tests/test_benchmark.py runs it under XLA's default CPU kernels and under YNNPACK's.

The stage-2 *parameter update* is left out on purpose: at initialisation DS Net's reconstruction
is the input itself, so VQ Net's gradient is the difference of two nearly equal terms (the same
images called real and synthetic) and any change of summation order, e.g. XLA's own optimisation
level, moves it by percents. The stage-2 losses and everything else are well conditioned."""
import functools
import sys

import jax
import numpy as np

from despoof_jax.evaluation import scores
from despoof_jax.training import state as state_lib
from despoof_jax.training import steps as train_step
from tests.util import random_batch, tiny_config


def main(out_path: str) -> None:
    config = tiny_config(32, **{"model.vq_dropout": 0.0, "train.adam_eps": 1e-3})
    s1 = state_lib.init_stage1(config, jax.random.key(1))
    s2 = state_lib.init_stage2(config, jax.random.key(0))
    ba, bb = random_batch(0, 4, 32), random_batch(1, 4, 32)
    step1 = jax.jit(functools.partial(train_step.bind_stage1(config), axis_name=None))
    step2 = jax.jit(functools.partial(train_step.bind_stage2(config), axis_name=None))
    dq = state_lib.frozen_dq_from_stage1(s1)
    _, stage2_metrics = step2(s2, dq, ba, bb, jax.random.key(2))
    del stage2_metrics["J_vq"]   # VQ Net after that ill-conditioned update (see above)
    ds = state_lib.FrozenNet(s2.ds.params, s2.ds.batch_stats)
    ds_model, dq_model, _ = state_lib.make_models(config)
    predict = jax.jit(functools.partial(scores.predict, ds_model=ds_model, dq_model=dq_model))
    out = (step1(s1, ba, jax.random.key(2)), stage2_metrics, predict(ds, dq, ba["rgb"]))
    np.savez(out_path, *[np.asarray(x) for x in jax.tree.leaves(out)])


if __name__ == "__main__":
    main(sys.argv[1])
