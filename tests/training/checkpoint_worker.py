"""Run in a fresh process by test_checkpoint.py: restore a stage-2 checkpoint on however many
devices this process has, check it equals the saved reference, and train one more step.

    python -m tests.training.checkpoint_worker CKPT_DIR REFERENCE.npz MODE
"""
import json
import sys

import jax
import numpy as np

from despoof_jax.training import checkpoint, parallel
from despoof_jax.training import state as state_lib
from despoof_jax.training import steps as train_step
from tests.util import random_batch, tiny_config


def main(ckpt_dir, reference, mode):
    config = tiny_config(32)
    dp = parallel.DataParallel(mode)
    abstract = state_lib.abstract(state_lib.init_stage2, config)
    ckpt = checkpoint.Checkpointer(ckpt_dir, every=1)
    restored, data_state, step = ckpt.restore(abstract, dp.replicated)
    ref = np.load(reference)
    leaves = jax.tree.leaves(restored)
    diff = max(float(np.max(np.abs(np.asarray(x.addressable_data(0)) - ref[f"a{i}"])))
               for i, x in enumerate(leaves))
    dq = state_lib.frozen_dq_from_stage1(state_lib.init_stage1(config, jax.random.key(1)))
    step_fn = dp.wrap(train_step.bind_stage2(config), batch_args=(2, 3), n_args=5)
    p_state, metrics = step_fn(dp.from_global(restored), dp.from_global(dq),
                               dp.shard_batch(random_batch(5, 8, 32)),
                               dp.shard_batch(random_batch(6, 8, 32)), jax.random.key(0))
    host = dp.to_host(p_state)
    ckpt.save(step + 1, dp.to_global(p_state), {"note": "continued"})
    ckpt.close()
    print(json.dumps({"devices": jax.device_count(), "restored_step": step, "max_diff": diff,
                      "data_state": data_state, "new_step": int(host.step),
                      "finite": float(dp.to_host(metrics)["finite"])}))


if __name__ == "__main__":
    main(*sys.argv[1:])
