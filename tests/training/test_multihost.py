"""Multi-host training rehearsed with two local processes joined by jax.distributed: a plain run,
and the same run stopped by SIGTERM in stage 2 and resumed (`two_process_runs`)."""
import hashlib
import json
import os
import re

import jax
import ml_collections
import numpy as np

from despoof_jax.data import datasets, pipeline
from despoof_jax.training import checkpoint, parallel
from despoof_jax.training import state as state_lib
from despoof_jax.training.workdir import Workdir
from tests.training.conftest import STAGE1_STEPS, STAGE2_STEPS

STAGES = {"dq": (state_lib.init_stage1, STAGE1_STEPS), "ds": (state_lib.init_stage2, STAGE2_STEPS)}


def _steps(directory) -> list:
    return sorted(int(p) for p in os.listdir(directory) if p.isdigit())


def _metrics(workdir, stage) -> list:
    lines = (workdir / stage / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _final_state(workdir, stage):
    config = Workdir(workdir).read_config()
    abstract = state_lib.abstract(STAGES[stage][0], config)
    st, step = checkpoint.restore_state_only(workdir / stage / "checkpoints", abstract,
                                             parallel.DataParallel("pmap").replicated)
    return [np.asarray(x.addressable_data(0)) for x in jax.tree.leaves(st)], step


def _slice_digests(workdir) -> list:
    """The digest `pipeline` gives each host's slice of the training records (it is part of the
    saved input position), for hosts 0 and 1 of 2."""
    data = ml_collections.ConfigDict(json.loads((workdir / "config.json").read_text())["data"])
    _, meta = datasets.load_split(data, "train")
    indices = datasets.protocol_indices(data, "train", meta)
    return [hashlib.sha1(pipeline.host_slice(indices, i, 2).astype(np.int64).tobytes())
            .hexdigest()[:16] for i in range(2)]


def test_two_processes_train_both_stages(two_process_runs):
    status, logs, err = two_process_runs["runs"]["plain"]
    assert status == 0, err + logs[0][-3000:] + logs[1][-3000:]
    for i in range(2):
        assert "devices: 4 (2 local), process %d of 2" % i in logs[i]
    workdir = two_process_runs["plain"]
    # Process 0 alone writes metrics; both write the checkpoints: the global arrays, and each its
    # own input position beside them. (mode=train: the resumed run evaluates.)
    assert not (workdir / "eval").exists()
    assert [r["step"] for r in _metrics(workdir, "ds")] == list(range(1, STAGE2_STEPS + 1))
    for stage, (_, total) in STAGES.items():
        data = workdir / stage / "checkpoints" / str(total) / "data"
        assert {p for p in os.listdir(data) if p.startswith("process_")} == {
            checkpoint.data_file(0, 2), checkpoint.data_file(1, 2)}


def test_a_process_35s_late_at_the_first_step_does_not_break_the_run(two_process_runs):
    """Process 1 of the plain run sleeps 35 s between `DataParallel.connect` and its first step
    (tests/training/skewed_main.py), so process 0 waits for it in the run's first cross-process
    collective for longer than Gloo's 30 s; the run still trains (status 0). Without `connect`
    the same skew ended both processes with "Gloo context initialization failed:
    DEADLINE_EXCEEDED" (measured 2026-12-05)."""
    status, logs, err = two_process_runs["runs"]["plain"]
    assert status == 0, err + logs[0][-3000:] + logs[1][-3000:]
    assert "skewed_main: process 1 sleeps 35 s after connect('dq_from_step_0')" in logs[1]
    waited = float(re.search(r"dq: first step done in ([0-9.]+) s", logs[0]).group(1))
    assert waited > 30, f"process 0's first step took {waited} s: the skew did not reach it"


def test_sigterm_stops_every_process_at_one_step_and_resuming_matches_the_plain_run(
        two_process_runs):
    runs, resumed = two_process_runs["runs"], two_process_runs["resumed"]
    status, logs, err = runs["stop"]
    assert status == 143, err + logs[0][-3000:] + logs[1][-3000:]
    # One line, no traceback; both processes stopped at the same step, inside stage 2.
    found = [re.findall(r"despoof: ds: stopped by SIGTERM.*? at step (\d+); "
                        r"checkpoint \S+ saved; run the same command again", logs[i])
             for i in range(2)]
    assert len(found[0]) == 1 and found[0] == found[1], found
    assert all("Traceback" not in logs[i] for i in range(2))
    stop = int(found[0][0])
    assert 1 <= stop < STAGE2_STEPS
    assert stop in _steps(resumed / "ds" / "checkpoints")
    status, logs, err = runs["finish"]
    assert status == 0, err + logs[0][-3000:] + logs[1][-3000:]
    for i in range(2):
        assert f"ds: resumed at step {stop} from" in logs[i]
        assert "input position not restored" not in logs[i]
    # Process 0 alone writes the evaluation; the summary line is its last output.
    assert (resumed / "eval" / "metrics.json").exists()
    assert json.loads(logs[0].strip().splitlines()[-1])["protocol"] == "intra"

    # Each process saved, and so resumed from, its own slice of the data, before and after
    # the resume: its position names its host's records, not the other host's.
    digests = _slice_digests(resumed)
    for stage, (_, total) in STAGES.items():
        for step in ({stop, total} if stage == "ds" else {total}):
            for i in range(2):
                saved = json.loads((resumed / stage / "checkpoints" / str(step) / "data" /
                                    checkpoint.data_file(i, 2)).read_text())
                assert f"indices_sha1={digests[i]}" in saved["data_source"], saved

    # Same seed, so the same run: every step's losses and the final parameters are
    # bit-identical to the uninterrupted run (state, input positions and per-step keys restored).
    plain = two_process_runs["plain"]
    for stage, (_, total) in STAGES.items():
        assert _metrics(resumed, stage) == _metrics(plain, stage)
        (a, step_a), (b, step_b) = _final_state(resumed, stage), _final_state(plain, stage)
        assert step_a == step_b == total
        assert max(float(np.max(np.abs(x - y))) for x, y in zip(a, b)) == 0.0


def test_preflight_refuses_a_workdir_the_processes_do_not_share(tmp_path):
    """Two processes given node-local folders (here: two different paths) would each resume
    their own checkpoints and hang in the first collective; preflight says so on every process.
    Given one folder, both pass and the probe is removed."""
    import socket  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    def run(dirs):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        procs = [subprocess.Popen([sys.executable, "-m", "tests.training.shared_worker",
                                   f"127.0.0.1:{port}", str(i), str(d)], cwd=root, env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                 for i, d in enumerate(dirs)]
        # (the last line: Gloo prints its connection report on stdout first)
        return [(p.wait(timeout=120), p.stdout.read().strip().splitlines()[-1]) for p in procs]

    for d in ("a", "b"):
        (tmp_path / d).mkdir()
    assert run([tmp_path / "a", tmp_path / "a"]) == [(0, "shared"), (0, "shared")]
    assert list((tmp_path / "a").iterdir()) == []
    for status, out in run([tmp_path / "a", tmp_path / "b"]):
        assert status == 2 and "is not shared between the processes: process(es) 1 do not see" \
            in out, out
