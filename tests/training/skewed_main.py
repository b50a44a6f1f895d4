"""`despoof_jax.main` with process 1 compiling a stage's first step late, as a busier host or a
colder compilation cache would: run by the two-process fixture (tests/training/conftest.py)
through `launch/local_multiprocess.sh` with PYTHON=tests/training/skewed_python.sh.

Process 1 sleeps DESPOOF_TEST_SKEW_S (35) s after `DataParallel.connect` of the stage named by
DESPOOF_TEST_SKEW_STAGE (dq, the first: its step is the run's first cross-process collective), so
its first step starts well past the 30 s that Gloo waits for the other process when it connects a
group (jaxlib 0.10). Without `connect` such a run ended with both processes at status 1, "Gloo
context initialization failed: DEADLINE_EXCEEDED" (measured 2026-12-05 with this module and
`connect` switched off).

For a check by hand of what a dead process does to the others (not run by the suite: each case
costs a launch of two processes and a heartbeat timeout), DESPOOF_TEST_EXIT=before makes process
1 exit (status 3) instead of meeting the others at `connect` of that stage, and
DESPOOF_TEST_EXIT=after right after it, so process 0 is alone in the stage's first step. Measured
2026-12-05 (`launch/local_multiprocess.sh 2 2 ...` with the fixture's smoke flags): before, process
0 left the barrier with status 134, "Task 1 heartbeat timeout", 56-57 s after process 1 exited;
after, its first step failed ("Gloo all-reduce failed ... Connection closed by peer") and it
stopped with status 134 at JAX's shutdown barrier, 58 s after process 1 exited (95 s when the
exit came at stage 2's connect, whose step compiles longer). Neither waits for
`parallel.BARRIER_TIMEOUT_S`.
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
EXIT = os.environ.get("DESPOOF_TEST_EXIT", "")   # "", "before" or "after" (the docstring)
if EXIT not in ("", "before", "after"):
    raise SystemExit(f"DESPOOF_TEST_EXIT={EXIT!r}: expected before, after or nothing")
_connect = parallel.DataParallel.connect


def _exit(where, key):
    print(f"skewed_main: process 1 exits {where} connect({key!r})", flush=True)
    os._exit(3)   # no clean-up, as a crash or a lost host


def _connect_then_lag(self, key, **kwargs):
    ours = jax.process_index() == 1 and key.startswith(f"{STAGE}_")
    if ours and EXIT == "before":
        _exit(EXIT, key)
    _connect(self, key, **kwargs)
    if ours and EXIT == "after":
        _exit(EXIT, key)
    if ours:
        print(f"skewed_main: process 1 sleeps {SKEW_S:.0f} s after connect({key!r})", flush=True)
        time.sleep(SKEW_S)


parallel.DataParallel.connect = _connect_then_lag

if __name__ == "__main__":
    sys.exit(app.run(main_lib.main))
