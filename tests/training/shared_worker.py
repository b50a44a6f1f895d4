"""Run as one of two processes by test_multihost.py: `Workdir(WORKDIR).check_shared()`; prints
"shared" or the error, and exits 0 or 2.

    python -m tests.training.shared_worker COORDINATOR PROCESS_ID WORKDIR
"""
import sys

import jax

from despoof_jax.training.workdir import Workdir, WorkdirNotWritable


def main(coordinator, process_id, workdir):
    jax.distributed.initialize(coordinator_address=coordinator, num_processes=2,
                               process_id=int(process_id))
    try:
        Workdir(workdir).check_shared()
    except WorkdirNotWritable as e:
        print(e)
        return 2
    print("shared")
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
