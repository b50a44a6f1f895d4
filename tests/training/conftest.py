"""Fixtures of the training tests: two-process runs through launch/local_multiprocess.sh."""
import json
import os
import pathlib
import re
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import shared_once

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STAGE1_STEPS, STAGE2_STEPS = 4, 2


def _launch(workdir, data_dir, stop_when=None, mode="all", timeout=600, skewed=False):
    """One run of 2 processes x 2 CPU devices; with `stop_when` (a regex), SIGTERM goes to the
    launcher as soon as process 0's log shows it (the launcher passes it on to both processes,
    as a scheduler would); with `skewed`, process 1 starts stage 1's first step 35 s after
    process 0 (tests/training/skewed_main.py). Returns (launcher status, {i: log of process i},
    launcher stderr)."""
    flags = ["--config=configs/default.py:smoke", f"--config.data.data_dir={data_dir}",
             f"--config.train.stage1_steps={STAGE1_STEPS}",
             f"--config.train.stage2_steps={STAGE2_STEPS}", f"--config.mode={mode}",
             "--cpu_kernels=default"]
    env = dict(os.environ, TFDS_DATA_DIR=data_dir)
    if skewed:
        env.update(PYTHON=os.path.join(ROOT, "tests", "training", "skewed_python.sh"),
                   REAL_PYTHON=sys.executable)
    log0 = workdir / "process_0.log"
    if log0.exists():
        log0.unlink()
    proc = subprocess.Popen(["bash", "launch/local_multiprocess.sh", "2", "2", str(workdir)] +
                            flags, cwd=ROOT, env=env, stderr=subprocess.PIPE, text=True)
    if stop_when is not None:
        deadline = time.time() + timeout
        while not (log0.exists() and re.search(stop_when, log0.read_text())):
            assert proc.poll() is None and time.time() < deadline, (
                f"the run ended before {stop_when!r} showed in its log")
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=timeout)
    logs = {i: (workdir / f"process_{i}.log").read_text() for i in range(2)}
    return proc.returncode, logs, err


@pytest.fixture(scope="session")
def two_process_runs(synthetic_data_dir, tmp_path_factory):
    """The same tiny config (smoke, 64 px, 4 + 2 steps) run twice on 2 processes x 2 devices:
    `plain` uninterrupted (both stages, `mode=train`: the evaluation would repeat the resumed
    run's), its process 1 starting the first step 35 s late; `resumed` stopped by SIGTERM while
    stage 2 starts, then rerun to the end, evaluation included. (One stop, in stage 2: both
    stages run the same loop, and stage 2 is the one with the frozen DQ tree, two nets and two
    batches a step; a stop in stage 1 is tested in one process, tests/training/test_train.py. A
    second stop cost the suite a third launch of two processes, ~30 s.) `runs` holds (status,
    logs, launcher stderr) of every launch. Built once per test run, also under pytest-xdist
    (`shared_once`): test_checkpoint.py and test_multihost.py may run on different workers."""
    def build(root):
        plain, resumed = root / "plain", root / "resumed"
        # One launch at a time. The plain run used to go beside the other two, but four
        # processes compiling at once beside the other xdist worker on 2 cores let one process of
        # a run reach the stage's first collective more than 30 s after the other, and Gloo's
        # context set-up gives up after 30 s (measured 2026-12-05: "Gloo context initialization
        # failed: DEADLINE_EXCEEDED", both processes exiting with status 1). The product has
        # since made that wait safe (`DataParallel.connect`), and the plain run tests it: its
        # process 1 begins the first step 35 s late (test_multihost.py). The launches stay one
        # at a time all the same: in parallel they would not save time on 2 cores.
        runs = {"plain": _launch(plain, synthetic_data_dir, mode="train", skewed=True),
                "stop": _launch(resumed, synthetic_data_dir, stop_when=r"ds: parameters"),
                "finish": _launch(resumed, synthetic_data_dir)}
        (root / "runs.json").write_text(json.dumps(runs))

    root = pathlib.Path(shared_once(tmp_path_factory, "multihost", build))
    runs = {name: (status, {int(i): log for i, log in logs.items()}, err)
            for name, (status, logs, err) in json.loads((root / "runs.json").read_text()).items()}
    return {"plain": root / "plain", "resumed": root / "resumed", "runs": runs,
            "data_dir": synthetic_data_dir}
