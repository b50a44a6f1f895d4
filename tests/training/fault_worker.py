"""Run in a fresh process by test_faults.py: stage 1 with a checkpoint after every step, killed
by SIGKILL as soon as the asynchronous save of step 2 has started (its files are being written).

    python -m tests.training.fault_worker WORKDIR DATA_DIR
"""
import os
import signal
import sys

from despoof_jax.training import checkpoint, loop, parallel
from tests.util import smoke_config

STEPS = 3


def main(workdir, data_dir):
    config = smoke_config(data_dir, **{"train.stage1_steps": STEPS, "train.checkpoint_every": 1})
    save = checkpoint.Checkpointer.save

    def save_then_die(self, step, *args, **kwargs):
        started = save(self, step, *args, **kwargs)
        if step == 2:
            os.kill(os.getpid(), signal.SIGKILL)
        return started

    checkpoint.Checkpointer.save = save_then_die
    loop.train_dq(config, workdir, parallel.DataParallel("pmap"))


if __name__ == "__main__":
    main(*sys.argv[1:])
