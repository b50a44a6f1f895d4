"""Run in a fresh process by test_checkpoint.py: resume stage 2 of a workdir saved by 2 processes
x 2 devices on however many devices this process has, check that the restored state equals the
saved reference, train one more step (`loop.train_ds`: frozen DQ tree, input pipeline) and save it.

    python -m tests.training.checkpoint_worker WORKDIR REFERENCE.npz MODE
"""
import json
import os
import sys

import jax
import numpy as np
from absl import logging

from despoof_jax.training import checkpoint, loop, parallel
from despoof_jax.training import state as state_lib
from despoof_jax.training.workdir import Workdir


def main(workdir, reference, mode):
    logging.set_verbosity(logging.INFO)
    wd = Workdir(workdir)
    config = wd.read_config()
    config.parallel = mode
    dp = parallel.DataParallel(mode)
    abstract = state_lib.abstract(state_lib.init_stage2, config)
    restored, step = checkpoint.restore_state_only(wd.checkpoints("ds"), abstract, dp.replicated)
    ref = np.load(reference)
    diff = max(float(np.max(np.abs(np.asarray(x.addressable_data(0)) - ref[f"a{i}"])))
               for i, x in enumerate(jax.tree.leaves(restored)))
    config.train.stage2_steps = step + 1
    out = loop.train_ds(config, wd, dp)
    saved = sorted(int(p) for p in os.listdir(wd.checkpoints("ds")) if p.isdigit())
    print(json.dumps({"devices": jax.device_count(), "restored_step": step, "max_diff": diff,
                      "new_step": out["step"], "finite": out["finite"], "saved": saved}))


if __name__ == "__main__":
    main(*sys.argv[1:])
