"""The training loop and entry point: overrides, resuming, stopping, whole pipeline."""
import json
import logging
import os
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from despoof_jax import experiment
from despoof_jax.training import checkpoint, loop, parallel
from despoof_jax.training import state as state_lib
from tests import fake_gcs
from tests.util import smoke_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _steps(path):
    with open(path) as f:
        return [json.loads(line)["step"] for line in f]


def test_main_rejects_a_misspelt_override(tmp_path):
    out = subprocess.run(
        [sys.executable, "-m", "despoof_jax.main", "--config=configs/default.py:smoke",
         f"--workdir={tmp_path}", "--config.train.stage1_stepz=3"],
        cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "stage1_stepz" in out.stderr


def _dq_params(workdir, config) -> list:
    st, _ = checkpoint.restore_state_only(
        os.path.join(workdir, "dq", "checkpoints"),
        state_lib.abstract(state_lib.init_stage1, config), parallel.DataParallel("pmap").replicated)
    return [np.asarray(x.addressable_data(0)) for x in jax.tree.leaves(st)]


def test_stage_stops_on_sigterm_with_a_checkpoint_and_resumes_to_the_same_parameters(
        synthetic_data_dir, tmp_path, monkeypatch):
    config = smoke_config(synthetic_data_dir, **{"train.stage1_steps": 6,
                                                 "train.checkpoint_every": 4})
    dp = parallel.DataParallel("pmap")
    plain = loop.train_dq(config, str(tmp_path / "plain"), dp)
    wrap = parallel.DataParallel.wrap

    def wrap_and_signal(self, *args, **kwargs):
        step_fn, calls = wrap(self, *args, **kwargs), []

        def counted(*a):
            calls.append(1)
            if len(calls) == 3:     # as if the scheduler preempted the job during step 3
                os.kill(os.getpid(), signal.SIGTERM)
            return step_fn(*a)
        return counted

    workdir = str(tmp_path / "stopped")
    monkeypatch.setattr(parallel.DataParallel, "wrap", wrap_and_signal)
    with pytest.raises(loop.Interrupted, match="stopped by SIGTERM at step 3") as stop:
        loop.train_dq(config, workdir, dp)
    assert stop.value.exit_status == 143
    ckpts = os.path.join(workdir, "dq", "checkpoints")
    assert sorted(int(p) for p in os.listdir(ckpts) if p.isdigit()) == [3]
    monkeypatch.setattr(parallel.DataParallel, "wrap", wrap)
    out = loop.train_dq(config, workdir, dp)
    assert out["step"] == 6
    assert _steps(os.path.join(workdir, "dq", "metrics.jsonl")) == [1, 2, 3, 4, 5, 6]
    # Same seed: killed at 3 and resumed, the run reaches the uninterrupted run's losses and
    # parameters bit for bit (XLA's default CPU kernels, state + input position restored).
    assert out == plain
    a, b = _dq_params(workdir, config), _dq_params(str(tmp_path / "plain"), config)
    assert max(float(np.max(np.abs(x - y))) for x, y in zip(a, b)) == 0.0
    # A finished stage is skipped, not retrained.
    assert loop.train_dq(config, workdir, dp) == {"step": 6}


def test_nan_loss_stops_loudly(synthetic_data_dir, tmp_path):
    config = smoke_config(synthetic_data_dir, **{"train.stage1_steps": 2,
                                                 "train.learning_rate": float("nan")})
    # Step 1's loss is computed before its (NaN) update, but the parameters it leaves are NaN:
    # the step is not finite, and nothing after the last good checkpoint is saved.
    with pytest.raises(FloatingPointError, match="non-finite loss or parameters at step 1"):
        loop.train_dq(config, str(tmp_path), parallel.DataParallel("pmap"))
    ckpts = os.path.join(tmp_path, "dq", "checkpoints")
    assert not [p for p in os.listdir(ckpts) if p.isdigit()], "a NaN state was checkpointed"


def test_stage2_needs_stage1(synthetic_data_dir, tmp_path):
    config = smoke_config(synthetic_data_dir, mode="ds")
    with pytest.raises(FileNotFoundError, match="run stage 1 first"):
        experiment.train_and_evaluate(config, str(tmp_path))


@pytest.fixture
def gcs(tmp_path, monkeypatch):
    """gs:// served by `tests.fake_gcs` from tmp_path/gcs, the current directory moved to an
    empty tmp_path/cwd (where a URL mistaken for a local path would land); yields the list of
    directories orbax was given."""
    fake_gcs.install(tmp_path / "gcs")
    (tmp_path / "cwd").mkdir()
    monkeypatch.chdir(tmp_path / "cwd")
    yield fake_gcs.redirect_orbax(monkeypatch)
    fake_gcs.uninstall()


def test_whole_pipeline_with_shard_map_and_one_batch_stage2_in_a_url_workdir(
        synthetic_data_dir, tmp_path, gcs, caplog):
    # the other pipeline tests run pmap, the paper's two-batch stage 2 and local workdirs
    config = smoke_config(synthetic_data_dir, parallel="shard_map",
                          **{"train.stage1_steps": 2, "train.stage2_steps": 2,
                             "train.vq_batch": "shared"})
    url = "gs://bucket/run"
    with caplog.at_level(logging.INFO):
        out = experiment.train_and_evaluate(config, url)
    assert f"workdir {url} is a URL: free space not checked" in caplog.text
    assert out["dq"]["step"] == 2 and out["ds"]["step"] == 2
    assert set(out["eval"]["fusions"]) >= {"noise", "depth", "map", "average", "max"}
    local = tmp_path / "gcs" / "bucket" / "run"
    for name in ("metrics.json", "table2.md", "model.json", "scores_test.csv",
                 "sample_sheet.png"):
        assert (local / "eval" / name).stat().st_size > 0
    assert len(_steps(local / "ds" / "metrics.jsonl")) == 2
    # The URL reached orbax unchanged and was never made a local path: nothing appeared in the
    # current directory, and every file of the run came through the gs:// filesystem (or orbax,
    # into the checkpoint folders it was given).
    assert set(gcs) == {f"{url}/dq/checkpoints", f"{url}/ds/checkpoints"}, gcs
    assert os.listdir(tmp_path / "cwd") == []
    assert all(p.startswith(("gs://bucket/run", "bucket/run", str(local)))
               for p in fake_gcs.FakeGCS.seen), {p for p in fake_gcs.FakeGCS.seen
                                                 if not p.startswith("gs://")}
    files = {str(p) for p in local.rglob("*") if p.is_file()}
    orbax_dirs = (str(local / "dq" / "checkpoints"), str(local / "ds" / "checkpoints"))
    assert files - fake_gcs.FakeGCS.written - {f for f in files if f.startswith(orbax_dirs)} \
        == set()
    assert {os.path.basename(f) for f in fake_gcs.FakeGCS.written} >= {
        "config.json", "metrics.jsonl", "metrics.json", "model.json", "sample_sheet.png"}
    assert any("tfevents" in f for f in fake_gcs.FakeGCS.written)
