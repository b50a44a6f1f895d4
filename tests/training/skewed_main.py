"""`despoof_jax.main` with process 1 compiling a stage's first step late, as a busier host or a
colder compilation cache would: run by the two-process fixture (tests/training/conftest.py)
through `launch/local_multiprocess.sh` with PYTHON=tests/training/skewed_python.sh.

Process 1 sleeps DESPOOF_TEST_SKEW_S (35) s after `DataParallel.connect` of the stage named by
DESPOOF_TEST_SKEW_STAGE (dq, the first: its step is the run's first cross-process collective), so
its first step starts well past the 30 s that Gloo waits for the other process when it connects a
group (jaxlib 0.10). Without `connect` such a run ended with both processes at status 1, "Gloo
context initialization failed: DEADLINE_EXCEEDED" (measured 2026-12-05 with this module and
`connect` switched off).
"""
import os
import sys
import time

import jax
from absl import app

from despoof_jax import main as main_lib
from despoof_jax.training import parallel

SKEW_S = float(os.environ.get("DESPOOF_TEST_SKEW_S", "35"))
STAGE = os.environ.get("DESPOOF_TEST_SKEW_STAGE", "dq")
_connect = parallel.DataParallel.connect


def _connect_then_lag(self, key, **kwargs):
    _connect(self, key, **kwargs)
    if jax.process_index() == 1 and key.startswith(f"{STAGE}_"):
        print(f"skewed_main: process 1 sleeps {SKEW_S:.0f} s after connect({key!r})", flush=True)
        time.sleep(SKEW_S)


parallel.DataParallel.connect = _connect_then_lag

if __name__ == "__main__":
    sys.exit(app.run(main_lib.main))
