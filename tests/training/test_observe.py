"""Watching a run: TensorBoard event files beside metrics.jsonl (read back with the writer's own
package), the profile trace, the parameter overview and the wall-clock progress timer."""
import json
import logging
import os

import jax
import numpy as np
import pytest

from despoof_jax.training import observe
from despoof_jax.training import state as state_lib
from despoof_jax.training.workdir import Workdir
from tests.util import tiny_config


def _jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize("stage, loss", [("dq", "dq_pretrain"), ("ds", "ds_total")])
def test_event_files_hold_every_step_of_metrics_jsonl(trained_workdir, stage, loss):
    wd = Workdir(trained_workdir)
    assert any(p.name.startswith("events.out.tfevents") for p in wd.stage(stage).iterdir())
    rows = _jsonl(wd.metrics_log(stage))
    scalars = observe.read_scalars(wd.stage(stage))
    got = scalars[f"{stage}/{loss}"]
    assert [s for s, _ in got] == [r["step"] for r in rows] == [1, 2, 3, 4]
    np.testing.assert_allclose([v for _, v in got], [r[loss] for r in rows], rtol=1e-6)
    assert "finite" not in " ".join(scalars)   # the NaN guard is not a curve worth plotting
    if stage == "ds":   # the shared run trains with loss.noise_truth: its term is logged
        assert all(r["J_t"] > 0 for r in rows) and "ds/J_t" in scalars


def test_eval_events_hold_metrics_and_the_sample_sheet(trained_workdir):
    wd = Workdir(trained_workdir)
    scalars = observe.read_scalars(wd.eval_dir)
    table = json.loads(wd.metrics_json.read_text())
    acer = table["fusions"]["average"]["frame"]["acer"]
    assert scalars["eval/average/frame/acer"] == [(4, pytest.approx(acer, rel=1e-6))]
    assert "eval/sample_sheet" in observe.read_image_tags(wd.eval_dir)


def test_profile_steps_writes_a_trace_tensorboard_reads(trained_workdir):
    # --config.train.profile_steps=1 in the shared run: one trace per stage, after the
    # compiled first step, where TensorBoard's profile plugin looks (plugins/profile/<run>/).
    for stage in ("dq", "ds"):
        root = os.path.join(trained_workdir, stage, "plugins", "profile")
        runs = os.listdir(root)
        assert len(runs) == 1
        files = os.listdir(os.path.join(root, runs[0]))
        assert any(f.endswith(".xplane.pb") for f in files), files


def test_parameter_overview_lists_every_array_and_the_total():
    c = tiny_config(32)
    st = jax.eval_shape(lambda: state_lib.init_stage2(c, jax.random.key(0)))
    text = observe.parameter_overview(st.ds.params, name="ds")
    n = state_lib.count_params(st.ds.params)
    assert f"ds total: {n:,} parameters" in text
    n_arrays = len(jax.tree.leaves(st.ds.params))
    assert len(text.splitlines()) == n_arrays + 2   # header, one line per array, total
    assert "kernel" in text and "(3, 3, 6," in text   # conv1-1 reads RGB+HSV


def test_progress_is_due_every_n_steps_or_every_n_seconds(monkeypatch):
    now = [0.0]
    monkeypatch.setattr(observe.time, "monotonic", lambda: now[0])
    p = observe.Progress(every_steps=100, every_secs=30.0)
    assert not p.due(1, 1000)
    now[0] = 29.0
    assert not p.due(2, 1000)
    now[0] = 31.0
    assert p.due(3, 1000)            # 30 s of wall time since the start
    assert not p.due(4, 1000)
    assert p.due(100, 1000)          # every N steps regardless of time
    assert p.due(1000, 1000)         # the last step


def test_read_rows_skips_what_is_not_a_row(tmp_path):
    """`read_rows` (the packer's reader of a finished run's log) keeps every JSON row with a step,
    in order, and skips damage, a row without a step and a torn last line, as `MetricsLog`
    drops them; a missing log is an error, not an empty run."""
    path = tmp_path / "metrics.jsonl"
    rows = [{"step": 1, "J_r": 0.5}, {"step": 2, "J_r": -3.0}]
    path.write_text(json.dumps(rows[0]) + "\n\x00garbage\n" + json.dumps({"loss": 1.0}) + "\n"
                    + json.dumps(rows[1]) + "\n" + '{"step": 3, "J')
    assert observe.read_rows(path) == rows
    with pytest.raises(FileNotFoundError):
        observe.read_rows(tmp_path / "missing.jsonl")


def test_metrics_log_drops_torn_and_corrupt_lines_and_rewrites_through_a_rename(
        tmp_path, monkeypatch, caplog):
    path = tmp_path / "metrics.jsonl"
    rows = [{"step": s, "loss": 0.5} for s in (1, 2, 3, 4)]
    text = (json.dumps(rows[0]) + "\n" + "\x00\x00garbage\n" + "".join(
        json.dumps(r) + "\n" for r in rows[1:]) + '{"step": 5, "lo')   # killed mid-write
    path.write_text(text)
    path.chmod(0o644)

    def crash(src, dst):
        raise OSError("killed during the rewrite")
    monkeypatch.setattr(observe.os, "replace", crash)
    with pytest.raises(OSError, match="killed during the rewrite"):
        observe.MetricsLog(path, start_step=3)
    assert path.read_text() == text and os.listdir(tmp_path) == ["metrics.jsonl"]
    monkeypatch.undo()

    with caplog.at_level(logging.WARNING):
        log = observe.MetricsLog(path, start_step=3)       # resumed from the checkpoint of step 3
    assert "line 2 of 6 is not a JSON row with a step, dropped" in caplog.text
    assert "its last line (cut short by a kill during a write?) is not a JSON row" in caplog.text
    assert _jsonl(path) == rows[:3] and path.stat().st_mode & 0o777 == 0o644
    log.write([{"step": 4, "loss": 0.25}])
    log.close()
    assert _jsonl(path) == rows[:3] + [{"step": 4, "loss": 0.25}]
    assert os.listdir(tmp_path) == ["metrics.jsonl"]

    # A last row whole but for its newline gets one: the next append would join two rows.
    path.write_text(json.dumps(rows[0]))
    observe.MetricsLog(path, start_step=3).write([rows[1]])
    assert _jsonl(path) == rows[:2]


def test_config_json_is_rewritten_all_at_once(tmp_path, monkeypatch):
    # Rewritten on every resume (and model.json by every evaluation and `calibrate --write`,
    # through the same `workdir.replace_text`): a kill during the write keeps the old record.
    from despoof_jax.training import workdir as workdir_lib  # noqa: PLC0415
    from tests.util import tiny_config  # noqa: PLC0415
    wd = workdir_lib.Workdir(tmp_path / "run")
    path = tmp_path / "run" / "config.json"
    wd.write_config(tiny_config())                     # a new file: open()'s mode, not 0600
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
    before = path.read_text()
    path.chmod(0o640)

    def killed(src, dst):
        raise KeyboardInterrupt
    monkeypatch.setattr(workdir_lib.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        wd.write_config(tiny_config(**{"model.ds_width": 1.0}))
    assert path.read_text() == before and os.listdir(tmp_path / "run") == ["config.json"]
    monkeypatch.undo()
    wd.write_config(tiny_config(**{"model.ds_width": 1.0}))
    assert wd.read_config().model.ds_width == 1.0
    assert path.stat().st_mode & 0o777 == 0o640 and os.listdir(tmp_path / "run") == [
        "config.json"]
