"""The training loop and entry point: overrides, resuming, stopping, whole pipeline."""
import json
import logging
import os
import re
import signal
import subprocess
import sys

import jax
import numpy as np
import pytest

from despoof_jax import cli, commands, experiment
from despoof_jax import config as config_lib
from despoof_jax.training import checkpoint, losses, loop, observe, parallel
from despoof_jax.training import state as state_lib
from tests import fake_gcs
from tests.util import CONFIGS, config_module, smoke_config, tiny_config

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


@pytest.mark.parametrize("field, value, message", [
    # each read only where it is used: stage 2's step, the evaluation, DataParallel, the nets
    ("train.vq_batch", "separated", "config.train.vq_batch='separated'; expected one of "
                                    "('separate', 'shared')"),
    ("eval.threshold", "apcer@5%", "eval.threshold='apcer@5%'; expected 'eer' or 'apcer@<target>'"),
    ("eval.threshold", "apcer@5", "eval.threshold='apcer@5'; expected 'eer' or 'apcer@<target>' "
                                  "with a target in [0, 1)"),
    ("eval.threshold", "EER", "eval.threshold='EER'"),
    ("eval.fusion", "avg", "config.eval.fusion='avg'; expected one of ('map', 'noise', 'depth', "
                           "'max', 'average', 'max_all', 'average_all', 'dev_eer')"),
    ("eval.apcer_per", "media", "config.eval.apcer_per='media'; expected one of ('species', "
                                "'medium')"),
    ("eval.input_policy", "tile", "config.eval.input_policy='tile'; expected one of ('resize', "
                                  "'tiles')"),
    ("parallel", "shardmap", "config.parallel='shardmap'; expected one of ('pmap', 'shard_map')"),
    ("data.dataset", "oulu", "config.data.dataset='oulu'; expected one of ('synthetic_spoof', "
                             "'oulu_npu'"),
    ("method", "cnn", "config.method='cnn'; expected one of ('despoof', 'binary_cnn', "
                      "'depth_only')"),
    ("mode", "evaluate", "config.mode='evaluate'; expected one of ('all', 'train', 'dq', 'ds', "
                         "'eval')"),
    ("model.compute_dtype", "bf16", "config.model.compute_dtype = 'bf16'"),
    ("data.protocol", "intra_x", "Unknown protocol 'intra_x'"),
    ("eval.calibration", "simulator", "eval.calibration='simulator'"),
    ("train.keep_checkpoints", 0, "train.keep_checkpoints=0; expected a whole number >= 1"),
    ("train.keep_checkpoints", -2, "train.keep_checkpoints=-2"),
    ("train.checkpoint_every", 0, "train.checkpoint_every=0; expected a positive number"),
    # Table 3's degradations: a negative value used to read as "off" (clean images, no error)
    ("data.degrade_size", -64, "data.degrade_size=-64; expected a whole number of pixels >= 0"),
    ("data.degrade_size", 4096, "data.degrade_size=4096 is not below data.image_size="),
    ("data.blur_sigma", -1.0, "data.blur_sigma=-1.0; expected a std in pixels >= 0"),
    # checked before process 0 builds a dataset (the suite fakes 8 CPU devices)
    ("train.batch_size", 6, "global batch 6 does not divide over 8 devices"),
])
def test_preflight_refuses_a_config_value_before_anything_trains(tmp_path, field, value, message):
    config = tiny_config(**{field: value})
    with pytest.raises(config_lib.ConfigError, match=re.escape(message)):
        experiment.preflight(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_baselines_name_their_own_score_and_every_shipped_config_passes():
    baseline = tiny_config(**{"method": "binary_cnn", "eval.fusion": "cnn"})
    experiment.check_values(baseline)               # configs/baseline_cnn.py's fusion
    baseline.mode = "ds"
    with pytest.raises(config_lib.ConfigError, match=re.escape(
            "config.mode='ds'; expected one of ('all', 'train', 'eval')")):
        experiment.check_values(baseline)
    for path in sorted(CONFIGS.glob("*.py")):
        module = config_module(path.stem)
        for variant in getattr(module, "VARIANTS", ("",)):
            experiment.check_values(module.get_config(variant))


def test_a_config_value_typo_exits_2_with_one_line(tmp_path, capsys):
    rc = cli.main(["--cpu-kernels=default", "train", f"--config={CONFIGS}/default.py:smoke",
                   f"--workdir={tmp_path}/run", "--config.train.vq_batch=shard"])
    assert rc == commands.EXIT_USAGE
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert [line for line in err.splitlines() if line.startswith("error:")] == [
        "error: config.train.vq_batch='shard'; expected one of ('separate', 'shared')"]
    assert not (tmp_path / "run").exists()


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


def _losses(path):
    with open(path) as f:
        return {r["step"]: r for r in map(json.loads, f)}


def test_a_run_restarted_at_a_fresh_data_seed_keeps_that_seed_on_later_resumes(
        synthetic_data_dir, tmp_path, caplog):
    """After a resume that could not restore its input position (the process count changed: a
    fresh seed), a later resume continues the fresh seed's position: the same batches as a run
    that was not interrupted again. (Each later resume used to start yet another order.)"""
    import shutil  # noqa: PLC0415
    config = smoke_config(synthetic_data_dir, **{"train.stage1_steps": 2,
                                                 "train.checkpoint_every": 2})
    dp = parallel.DataParallel("pmap")
    base = tmp_path / "base"
    loop.train_dq(config, str(base), dp)
    data = base / "dq" / "checkpoints" / "2" / "data"
    # As if saved by 2 processes: this one finds no position of its own and takes a fresh seed.
    (data / "process_0-of-1.json").rename(data / "process_0-of-2.json")
    shutil.copy(data / "process_0-of-2.json", data / "process_1-of-2.json")
    shutil.copytree(base, tmp_path / "straight")
    config.train.stage1_steps = 6
    loop.train_dq(config, str(tmp_path / "straight"), dp)          # 2 -> 6 in one go
    config.train.stage1_steps = 4
    with caplog.at_level(logging.WARNING):
        loop.train_dq(config, str(base), dp)                       # 2 -> 4, fresh seed
    assert "input position not restored" in caplog.text
    saved = checkpoint.Checkpointer(base / "dq" / "checkpoints", every=2)
    assert saved.saved_data_seed(4) == loop.fresh_data_seed(config.seed, 2) != config.seed
    saved.close()
    config.train.stage1_steps = 6
    caplog.clear()
    with caplog.at_level(logging.INFO):
        loop.train_dq(config, str(base), dp)                       # 4 -> 6, the same seed
    a = _losses(base / "dq" / "metrics.jsonl")
    b = _losses(tmp_path / "straight" / "dq" / "metrics.jsonl")
    assert [a[k] for k in (5, 6)] == [b[k] for k in (5, 6)]
    assert "input position restored with its saved data seed" in caplog.text
    assert "input position not restored" not in caplog.text


def test_nan_loss_stops_loudly(synthetic_data_dir, tmp_path):
    config = smoke_config(synthetic_data_dir, **{"train.stage1_steps": 2,
                                                 "train.learning_rate": float("nan")})
    # Step 1's loss is computed before its (NaN) update, but the parameters it leaves are NaN:
    # the step is not finite, and nothing after the last good checkpoint is saved.
    with pytest.raises(FloatingPointError, match="non-finite loss or parameters at step 1"):
        loop.train_dq(config, str(tmp_path), parallel.DataParallel("pmap"))
    ckpts = os.path.join(tmp_path, "dq", "checkpoints")
    assert not [p for p in os.listdir(ckpts) if p.isdigit()], "a NaN state was checkpointed"


def test_a_nan_seen_on_the_wall_clock_timer_stops_at_a_step_every_process_checks(
        synthetic_data_dir, tmp_path, caplog):
    # Every step is due on the timer (1 us), but the timer ticks differently on each process: a
    # process that raised there alone would leave the others waiting in a collective. The stop
    # comes at step 2, the first multiple of log_every, where every process flushes the same rows.
    config = smoke_config(synthetic_data_dir, **{
        "train.stage1_steps": 4, "train.log_every": 2, "train.checkpoint_every": 10,
        "train.progress_every_secs": 1e-6, "train.learning_rate": float("nan")})
    with caplog.at_level(logging.WARNING), pytest.raises(
            loop.NonFiniteLoss, match="non-finite loss or parameters at step 1"):
        loop.train_dq(config, str(tmp_path), parallel.DataParallel("pmap"))
    assert "dq: non-finite loss or parameters at step 1; stopping at the next step" in caplog.text
    assert _steps(os.path.join(tmp_path, "dq", "metrics.jsonl")) == [1, 2]
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
        synthetic_data_dir, tmp_path, gcs, caplog, monkeypatch):
    # the other pipeline tests run pmap, the paper's two-batch stage 2 and local workdirs
    config = smoke_config(synthetic_data_dir, parallel="shard_map",
                          **{"train.stage1_steps": 2, "train.stage2_steps": 2,
                             "train.vq_batch": "shared"})
    url = "gs://bucket/run"
    # A bound every J_r is below: the runaway warning's path, once, in stage 2 only.
    monkeypatch.setattr(losses, "noise_peak_bound", lambda h, w: -float("inf"))
    with caplog.at_level(logging.INFO):
        out = experiment.train_and_evaluate(config, url)
    runaway = [r.getMessage() for r in caplog.records if "left the image range" in r.getMessage()]
    assert len(runaway) == 1 and runaway[0].startswith(
        "ds: DS Net's spoof noise has left the image range at step 1: noise_peak = "), runaway
    assert "J_r = " in runaway[0]
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


def test_a_url_workdir_is_checked_against_its_config_json_before_a_resume(tmp_path, gcs):
    # A URL's checkpoint metadata is not read (it blocked on this fake GCS): the shapes its
    # config.json builds stand in for the checkpoints' (checked in a local workdir, from the
    # metadata, by tests/serving/test_api.py).
    config = tiny_config(**{"model.ds_width": 0.5})
    wd = experiment.as_workdir("gs://bucket/run")
    wd.write_config(config)
    experiment.check_checkpoints_fit(config, wd)                 # no checkpoint: nothing to fit
    (tmp_path / "gcs" / "bucket" / "run" / "ds" / "checkpoints" / "4").mkdir(parents=True)
    experiment.check_checkpoints_fit(config, wd)                 # the recorded model: fits
    wider = tiny_config(**{"model.ds_width": 1.0})
    with pytest.raises(config_lib.ConfigError) as e:
        experiment.check_checkpoints_fit(wider, wd)
    assert str(e.value).startswith("ds: cannot resume: ") and \
        "arrays of the checkpoints in gs://bucket/run/ds/checkpoints (as config.json records " \
        "them) differ from what the config builds, e.g. ds/" in str(e.value), e.value
    # the stage without checkpoints is not the one named; an unreadable record is not used
    experiment.check_checkpoints_fit(tiny_config(**{"model.ds_width": 0.5,
                                                    "model.dq_width": 1.0}), wd)
    wd.config_path.write_text("{not json")
    experiment.check_checkpoints_fit(wider, wd)


def test_a_url_workdir_uploads_metrics_jsonl_before_each_checkpoint(synthetic_data_dir, tmp_path,
                                                                    gcs, monkeypatch):
    # The upload timer never fires and the run dies during step 3 without closing its log (as
    # under SIGKILL): the rows up to the checkpoint of step 2 must be in the bucket all the same.
    monkeypatch.setattr(observe, "UPLOAD_EVERY_SECS", 1e9)
    monkeypatch.setattr(observe.MetricsLog, "close", lambda self: None)
    wrap = parallel.DataParallel.wrap

    def wrap_and_die(self, *args, **kwargs):
        step_fn, calls = wrap(self, *args, **kwargs), []

        def counted(*a):
            calls.append(1)
            if len(calls) == 3:
                raise RuntimeError("killed during step 3")
            return step_fn(*a)
        return counted

    monkeypatch.setattr(parallel.DataParallel, "wrap", wrap_and_die)
    config = smoke_config(synthetic_data_dir, **{"train.stage1_steps": 4, "train.log_every": 1,
                                                 "train.checkpoint_every": 2})
    closed = []
    close = checkpoint.Checkpointer.close
    monkeypatch.setattr(checkpoint.Checkpointer, "close",
                        lambda self: (closed.append(True), close(self))[1])
    with pytest.raises(RuntimeError, match="killed during step 3"):
        loop.train_dq(config, "gs://bucket/run", parallel.DataParallel("pmap"))
    assert _steps(tmp_path / "gcs" / "bucket" / "run" / "dq" / "metrics.jsonl") == [1, 2]
    # ... and so is the step-2 checkpoint itself: the save in flight was finished before the
    # error left the stage (not left to orbax's commit thread, which interpreter shutdown kills).
    assert closed
    ckpts = tmp_path / "gcs" / "bucket" / "run" / "dq" / "checkpoints"
    assert sorted(p.name for p in ckpts.iterdir()) == ["2"]
    reader = checkpoint.Checkpointer(str(ckpts), every=1, read_only=True)
    assert reader.latest_step() == 2
    reader.close()


def test_each_host_prefetches_data_prefetch_batches_of_its_own(synthetic_data_dir, monkeypatch):
    # 2 processes: a host's batch is half the global one, and so is its prefetch buffer (records)
    seen = {}
    monkeypatch.setattr(loop.pipeline, "train_iterator", lambda *a, **kw: seen.update(kw))
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    config = smoke_config(synthetic_data_dir, **{"train.batch_size": 16, "data.prefetch": 3})
    loop._train_iterator(config, parallel.DataParallel("pmap"))   # noqa: SLF001
    assert seen["global_batch_size"] == 16 and seen["prefetch"] == 3 * 8
