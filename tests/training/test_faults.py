"""Faults: a save cut by SIGKILL, a corrupt latest checkpoint, a signal during the last save, a
half-copied checkpoint, a reader beside a trainer, an unwritable or full workdir, an evaluation
of a run that did not finish, and what `despoof train` prints and returns when a signal or a NaN
loss stops it. (The loop's NaN
stop: test_train.test_nan_loss_stops_loudly; SIGTERM on two processes: test_multihost.)"""
import collections
import json
import logging
import os
import shutil
import signal
import subprocess
import sys

import pytest

from despoof_jax import cli, commands
from despoof_jax.evaluation import evaluate
from despoof_jax.training import loop, parallel
from despoof_jax.training import workdir as workdir_lib
from tests.training import fault_worker
from tests.util import CONFIGS, smoke_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _listing(directory) -> list:
    return sorted(os.listdir(directory))


def _metric_steps(workdir, stage="dq") -> list:
    with open(os.path.join(workdir, stage, "metrics.jsonl")) as f:
        return [int(line.split('"step": ')[1].split(",")[0]) for line in f if line.strip()]


def test_sigkill_during_a_save_leaves_the_previous_checkpoint_to_resume_from(
        synthetic_data_dir, tmp_path, caplog):
    out = subprocess.run([sys.executable, "-m", "tests.training.fault_worker", str(tmp_path),
                          synthetic_data_dir], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == -signal.SIGKILL, out.stderr[-3000:]
    ckpts = tmp_path / "dq" / "checkpoints"
    # Step 2 was being written when the process died: only its temporary folder exists.
    assert "1" in _listing(ckpts) and "2" not in _listing(ckpts)
    assert any(p.startswith("2.orbax-checkpoint-tmp") for p in _listing(ckpts)), _listing(ckpts)
    config = smoke_config(synthetic_data_dir, **{"train.stage1_steps": fault_worker.STEPS,
                                                 "train.checkpoint_every": 1})
    with caplog.at_level(logging.INFO):
        assert loop.train_dq(config, str(tmp_path), parallel.DataParallel("pmap"))["step"] == 3
    assert "dq: resumed at step 1" in caplog.text
    assert _listing(ckpts) == ["1", "2", "3"]           # the half-written folder is gone
    assert _metric_steps(tmp_path) == [1, 2, 3]         # step 2 logged once, though run twice


def test_a_corrupt_latest_checkpoint_falls_back_to_the_previous_one(synthetic_data_dir, tmp_path,
                                                                   caplog):
    config = smoke_config(synthetic_data_dir, **{"train.stage1_steps": 2,
                                                 "train.checkpoint_every": 1})
    dp = parallel.DataParallel("pmap")
    loop.train_dq(config, str(tmp_path), dp)
    ckpts = tmp_path / "dq" / "checkpoints"
    # Step 2's array files cut to nothing, as a half-copied or damaged checkpoint leaves them.
    for f in (ckpts / "2" / "state").rglob("*"):
        if f.is_file():
            f.write_bytes(b"")
    config.train.stage1_steps = 3
    with caplog.at_level(logging.INFO):
        assert loop.train_dq(config, str(tmp_path), dp)["step"] == 3
    warning = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING
               and "cannot be read" in r.getMessage()]
    assert len(warning) == 1 and f"checkpoint {ckpts}/2 cannot be read" in warning[0], warning
    aside = [p for p in _listing(ckpts) if p.startswith("corrupt-2-")]
    assert len(aside) == 1 and f"{ckpts}/{aside[0]}" in warning[0]
    assert "dq: resumed at step 1" in caplog.text
    assert [p for p in _listing(ckpts) if p.isdigit()] == ["1", "2", "3"]
    assert _metric_steps(tmp_path) == [1, 2, 3]


def test_a_signal_in_the_last_save_a_half_copied_step_a_reader_and_an_unfinished_stage1(
        synthetic_data_dir, tmp_path, monkeypatch, caplog):
    from despoof_jax.training import checkpoint, state as state_lib  # noqa: PLC0415
    close = checkpoint.Checkpointer.close

    def close_under_a_signal(self):
        if not self.read_only:      # the trainer's close waits for the last save: SIGTERM now
            os.kill(os.getpid(), signal.SIGTERM)
        close(self)

    monkeypatch.setattr(checkpoint.Checkpointer, "close", close_under_a_signal)
    config = smoke_config(synthetic_data_dir, **{"train.stage1_steps": 2,
                                                 "train.checkpoint_every": 1})
    dp = parallel.DataParallel("pmap")
    # 1. The stage ends and saves its last step; the signal is neither a kill mid-save nor lost:
    # the stage reports the stop, so `mode=all` does not go on to stage 2.
    with pytest.raises(loop.Interrupted, match="dq: stopped by SIGTERM at step 2"):
        loop.train_dq(config, str(tmp_path), dp)
    monkeypatch.setattr(checkpoint.Checkpointer, "close", close)
    ckpts = tmp_path / "dq" / "checkpoints"
    assert _listing(ckpts) == ["1", "2"]
    # 2. A half copy: step 2's state is whole but its input positions are missing. Resuming
    # there with a fresh input position (as after a process-count change) would differ from an
    # uninterrupted run: step 1 is used instead.
    shutil.rmtree(ckpts / "2" / "data")
    config.train.stage1_steps = 3
    with caplog.at_level(logging.INFO):
        assert loop.train_dq(config, str(tmp_path), dp)["step"] == 3
    assert f"checkpoint {ckpts}/2 cannot be read (IncompleteCheckpoint" in caplog.text
    assert "dq: resumed at step 1" in caplog.text
    assert [p for p in _listing(ckpts) if p.isdigit()] == ["1", "2", "3"]
    assert _metric_steps(tmp_path) == [1, 2, 3]
    # 3. A reader (here stage 2's frozen DQ Net) leaves a trainer's half-written step alone.
    (ckpts / "4.orbax-checkpoint-tmp-1").mkdir()
    frozen = loop.load_frozen_dq(config, str(tmp_path), dp.replicated)
    assert isinstance(frozen, state_lib.FrozenNet)
    assert "4.orbax-checkpoint-tmp-1" in _listing(ckpts)
    # 4. Stage 2 refuses a DQ Net whose stage was stopped before its end.
    config.train.stage1_steps = 4
    with pytest.raises(ValueError, match="latest checkpoint .* is step 3: stage 1 was stopped"):
        loop.load_frozen_dq(config, str(tmp_path), dp.replicated)


def test_an_unwritable_or_full_workdir_is_reported_before_training(synthetic_data_dir, tmp_path,
                                                                  monkeypatch, capsys):
    args = ["--cpu-kernels=default", "train", f"--config={CONFIGS}/default.py:smoke",
            f"--config.data.data_dir={synthetic_data_dir}"]
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert cli.main(args + [f"--workdir={blocker}/run"]) == commands.EXIT_USAGE
    err = capsys.readouterr().err
    assert f"error: workdir {blocker}/run is not writable" in err and "Traceback" not in err

    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(workdir_lib.shutil, "disk_usage", lambda path: usage(2**30, 2**30, 4096))
    assert cli.main(args + [f"--workdir={tmp_path}/full"]) == commands.EXIT_USAGE
    err = capsys.readouterr().err
    assert f"error: workdir {tmp_path}/full has 0.0 MiB free but a checkpoint needs about" in err
    assert not (tmp_path / "full" / "dq").exists()      # nothing was trained


def test_despoof_train_stopped_by_a_signal_prints_one_line_and_exits_128_plus_it(
        synthetic_data_dir, tmp_path, monkeypatch, capsys):
    wrap = parallel.DataParallel.wrap

    def wrap_and_signal(self, *args, **kwargs):
        step_fn, calls = wrap(self, *args, **kwargs), []

        def counted(*a):
            calls.append(1)
            if len(calls) == 2:     # Ctrl-C during step 2
                os.kill(os.getpid(), signal.SIGINT)
            return step_fn(*a)
        return counted

    monkeypatch.setattr(parallel.DataParallel, "wrap", wrap_and_signal)
    rc = cli.main(["--cpu-kernels=default", "train", f"--config={CONFIGS}/default.py:smoke",
                   f"--workdir={tmp_path}", f"--config.data.data_dir={synthetic_data_dir}",
                   "--config.mode=dq", "--config.train.stage1_steps=4"])
    assert rc == 128 + signal.SIGINT == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if "stopped by" in line]
    assert lines == [f"despoof: dq: stopped by SIGINT at step 2; checkpoint "
                     f"{tmp_path}/dq/checkpoints/2 saved; run the same command again to resume "
                     "from it"]


def test_despoof_train_exits_3_with_one_line_on_a_nan_loss(synthetic_data_dir, tmp_path, capsys):
    rc = cli.main(["--cpu-kernels=default", "train", f"--config={CONFIGS}/default.py:smoke",
                   f"--workdir={tmp_path}", f"--config.data.data_dir={synthetic_data_dir}",
                   "--config.mode=dq", "--config.train.stage1_steps=2",
                   "--config.train.learning_rate=nan"])
    assert rc == commands.EXIT_NON_FINITE == 3
    err = capsys.readouterr().err
    assert "Traceback" not in err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith("error: dq: non-finite loss or parameters at step 1")



def test_evaluation_refuses_a_stage_that_did_not_reach_its_last_step(trained_workdir, tmp_path,
                                                                     capsys):
    wd = workdir_lib.Workdir(trained_workdir)
    # The finished run (4 + 4 steps) was evaluated at both last steps, and says so.
    assert json.loads(wd.metrics_json.read_text())["checkpoint_steps"] == {"dq": 4, "ds": 4}
    config = wd.read_config()
    # A run meant for 6 stage-2 steps, preempted after its checkpoint of step 4 ...
    config.train.stage2_steps = 6
    with pytest.raises(loop.UnfinishedStage, match=(
            r"evaluation needs stage 2's final DS Net \(step 6\), but the latest checkpoint in "
            r"\S+/ds/checkpoints is step 4: stage 2 was stopped before its end .*run the "
            r"training command again")):
        evaluate.load_model(config, wd)
    # ... one trained longer than its config says, and a stage 1 that stopped early.
    config.train.stage2_steps = 2
    with pytest.raises(loop.UnfinishedStage, match=r"is step 4: stage 2 was trained for more "
                                                   r"steps than train.stage2_steps=2; pass .*"
                                                   r"--config.train.stage2_steps=4"):
        evaluate.load_model(config, wd)
    config.train.stage2_steps, config.train.stage1_steps = 4, 5
    with pytest.raises(loop.UnfinishedStage, match=r"stage 1's final DQ Net \(step 5\)"):
        evaluate.load_model(config, wd)
    # `despoof train --config.mode=eval` on the preempted run: one line, exit 2, nothing written.
    copy = tmp_path / "preempted"
    for part in ("dq", "ds"):
        shutil.copytree(os.path.join(trained_workdir, part, "checkpoints"),
                        copy / part / "checkpoints")
    rc = cli.main(["--cpu-kernels=default", "train", f"--config={CONFIGS}/default.py:smoke",
                   f"--workdir={copy}", f"--config.data.data_dir={config.data.data_dir}",
                   "--config.train.stage1_steps=4", "--config.train.stage2_steps=6",
                   "--config.loss.noise_truth=3.0", "--config.mode=eval"])
    assert rc == commands.EXIT_USAGE
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert "Traceback" not in err and len(errors) == 1, err[-3000:]
    assert errors[0].startswith("error: evaluation needs stage 2's final DS Net (step 6)")
    assert not (copy / "eval").exists()
