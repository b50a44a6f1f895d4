"""The training loop and entry point: overrides, resuming, stopping, whole pipeline."""
import json
import os
import signal
import subprocess
import sys

import pytest

from despoof_jax import experiment
from despoof_jax.training import loop, parallel
from tests.util import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def smoke_config(data_dir, **overrides):
    overrides = {"data.data_dir": data_dir, "data.builder_config": "s64_small", **overrides}
    return tiny_config(64, **overrides)


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


def test_stage_stops_on_sigterm_with_a_checkpoint_and_resumes(synthetic_data_dir, tmp_path,
                                                               monkeypatch):
    config = smoke_config(synthetic_data_dir, **{"train.stage1_steps": 6,
                                                 "train.checkpoint_every": 4})
    wrap = parallel.DataParallel.wrap

    def wrap_and_signal(self, *args, **kwargs):
        step_fn, calls = wrap(self, *args, **kwargs), []

        def counted(*a):
            calls.append(1)
            if len(calls) == 3:     # as if the scheduler preempted the job during step 3
                os.kill(os.getpid(), signal.SIGTERM)
            return step_fn(*a)
        return counted

    monkeypatch.setattr(parallel.DataParallel, "wrap", wrap_and_signal)
    dp = parallel.DataParallel("pmap")
    with pytest.raises(loop.Interrupted, match="step 3"):
        loop.train_dq(config, str(tmp_path), dp)
    ckpts = os.path.join(tmp_path, "dq", "checkpoints")
    assert sorted(int(p) for p in os.listdir(ckpts) if p.isdigit()) == [3]
    monkeypatch.setattr(parallel.DataParallel, "wrap", wrap)
    out = loop.train_dq(config, str(tmp_path), dp)
    assert out["step"] == 6
    assert _steps(os.path.join(tmp_path, "dq", "metrics.jsonl")) == [1, 2, 3, 4, 5, 6]
    # A finished stage is skipped, not retrained.
    assert loop.train_dq(config, str(tmp_path), dp) == {"step": 6}


def test_nan_loss_stops_loudly(synthetic_data_dir, tmp_path):
    config = smoke_config(synthetic_data_dir, **{"train.stage1_steps": 2,
                                                 "train.learning_rate": float("nan")})
    # Step 1's loss is computed before its (NaN) update; step 2's is the first non-finite one.
    with pytest.raises(FloatingPointError, match="non-finite loss at step 2"):
        loop.train_dq(config, str(tmp_path), parallel.DataParallel("pmap"))
    ckpts = os.path.join(tmp_path, "dq", "checkpoints")
    assert not [p for p in os.listdir(ckpts) if p.isdigit()], "a NaN state was checkpointed"


def test_stage2_needs_stage1(synthetic_data_dir, tmp_path):
    config = smoke_config(synthetic_data_dir, mode="ds")
    with pytest.raises(FileNotFoundError, match="run stage 1 first"):
        experiment.train_and_evaluate(config, str(tmp_path))


def test_whole_pipeline_with_shard_map_and_one_batch_stage2(synthetic_data_dir, tmp_path):
    # the other pipeline tests run pmap and the paper's two-batch stage 2
    config = smoke_config(synthetic_data_dir, parallel="shard_map",
                          **{"train.stage1_steps": 2, "train.stage2_steps": 2,
                             "train.vq_batch": "shared"})
    out = experiment.train_and_evaluate(config, str(tmp_path))
    assert out["dq"]["step"] == 2 and out["ds"]["step"] == 2
    for name in ("metrics.json", "table2.md", "model.json", "scores_test.csv",
                 "sample_sheet.png"):
        assert os.path.getsize(os.path.join(tmp_path, "eval", name)) > 0
    assert set(out["eval"]["fusions"]) >= {"noise", "depth", "map", "average", "max"}
    assert len(_steps(os.path.join(tmp_path, "ds", "metrics.jsonl"))) == 2
