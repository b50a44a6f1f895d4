"""Checkpoints hold global arrays and one input position per process: saved by 2 processes x 2
devices (the `two_process_runs` fixture), they restore and train on in 1 process x 1 device
(pmap) and in 1 process x 4 devices (shard_map)."""
import json
import logging
import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from despoof_jax import config as config_lib
from despoof_jax.data import datasets, pipeline
from despoof_jax.training import checkpoint, parallel
from despoof_jax.training import state as state_lib
from despoof_jax.training.workdir import Workdir
from tests.training.conftest import STAGE2_STEPS

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _last_step(directory) -> int:
    return max(int(p) for p in os.listdir(directory) if p.isdigit())


def _iterator(config):
    source, meta = datasets.load_split(config.data, "train")
    return pipeline.train_iterator(source, datasets.protocol_indices(config.data, "train", meta),
                                   global_batch_size=config.train.batch_size, seed=config.seed,
                                   process_index=0, process_count=1,
                                   size=config.data.image_size)


def test_restore_in_one_process_says_the_input_positions_do_not_fit(two_process_runs, tmp_path):
    workdir = Workdir(two_process_runs["plain"])
    config = workdir.read_config()
    dp = parallel.DataParallel("shard_map")
    abstract = state_lib.abstract(state_lib.init_stage2, config)
    ckpt = checkpoint.Checkpointer(workdir.checkpoints("ds"), every=1)
    r = ckpt.restore(abstract, dp.replicated, iterator=_iterator(config))
    ckpt.close()
    assert r.step == STAGE2_STEPS and int(r.state.step) == STAGE2_STEPS
    # Saved by 2 processes: there is no position for process 0 of 1, and restore says so.
    assert not r.data
    assert "process_0-of-1.json" in r.data_note
    assert "process_0-of-2.json, process_1-of-2.json" in r.data_note
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        checkpoint.Checkpointer(tmp_path / "empty", every=1).restore(abstract, dp.replicated)


@pytest.mark.parametrize("devices,mode", [(1, "pmap"), (4, "shard_map")])
def test_saved_on_2x2_resumes_on_other_device_counts_and_saves_again(two_process_runs, tmp_path,
                                                                     devices, mode):
    workdir = tmp_path / "w"
    shutil.copytree(two_process_runs["plain"], workdir, ignore=shutil.ignore_patterns("eval"))
    config = Workdir(workdir).read_config()
    st, _ = checkpoint.restore_state_only(
        workdir / "ds" / "checkpoints", state_lib.abstract(state_lib.init_stage2, config),
        parallel.DataParallel("pmap").replicated)
    np.savez(tmp_path / "ref.npz", **{f"a{i}": np.asarray(x.addressable_data(0))
                                      for i, x in enumerate(jax.tree.leaves(st))})
    env = dict(os.environ, XLA_FLAGS=os.environ.get("XLA_FLAGS", "") +
               f" --xla_force_host_platform_device_count={devices}",   # the last count wins
               JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-m", "tests.training.checkpoint_worker", str(workdir),
                          str(tmp_path / "ref.npz"), mode], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["devices"] == devices
    assert result["restored_step"] == STAGE2_STEPS and result["max_diff"] == 0.0
    assert result["new_step"] == STAGE2_STEPS + 1 and result["finite"] == 1.0
    assert result["saved"][-2:] == [STAGE2_STEPS, STAGE2_STEPS + 1]
    # The frozen DQ tree came from stage 1's checkpoint; the positions of 2 processes do not fit
    # 1 process, so the pipeline restarted at a fresh position, with a warning.
    assert f"frozen DQ Net from step {_last_step(workdir / 'dq' / 'checkpoints')}" in out.stderr
    assert "input position not restored" in out.stderr
    assert "process_0-of-2.json, process_1-of-2.json" in out.stderr


def test_processes_resume_from_a_step_every_one_of_them_can_read(tmp_path, monkeypatch, caplog):
    """One process's failure to read the latest step (a transient error on its host) sends every
    process to the previous step, so they never resume from different steps."""
    import logging  # noqa: PLC0415
    ckpt = checkpoint.Checkpointer(tmp_path / "c", every=1)
    for step in (1, 2):
        ckpt.save(step, {"w": np.full(3, float(step), np.float32)})
    ckpt.close()
    sharding = parallel.DataParallel("pmap").replicated
    abstract = {"w": jax.ShapeDtypeStruct((3,), np.float32)}
    votes = []

    def another_process_fails_first(ok):   # this process reads step 2; another one cannot
        votes.append(ok)
        return ok and len(votes) > 1

    monkeypatch.setattr(checkpoint, "all_processes_agree", another_process_fails_first)
    reader = checkpoint.Checkpointer(tmp_path / "c", every=1)
    with caplog.at_level(logging.WARNING):
        r = reader.restore(abstract, sharding)
    reader.close()
    assert r.step == 1 and np.all(np.asarray(r.state["w"]) == 1.0) and votes == [True, True]
    assert "another process could not read it" in caplog.text
    with pytest.raises(RuntimeError, match="checkpoint 2: another process could not read it"):
        votes.clear()
        checkpoint.Checkpointer(tmp_path / "c", every=1).restore(abstract, sharding, step=2)


def test_a_checkpoint_of_other_arrays_is_refused_before_orbax_reads_it(tmp_path, monkeypatch):
    """A config that builds other arrays than were saved (another width, a renamed layer) is
    told from the checkpoint's metadata, naming an array, and orbax's restore is never started
    (it would fail the same way on every step, and leave its asynchronous reads behind)."""
    ckpt = checkpoint.Checkpointer(tmp_path / "c", every=1)
    for step in (1, 2):
        ckpt.save(step, {"w": np.full(3, float(step), np.float32),
                         "net": {"k": np.zeros((2, 4), np.float32)}})
    ckpt.close()
    sharding = parallel.DataParallel("pmap").replicated
    f32 = np.float32
    fits = {"w": jax.ShapeDtypeStruct((3,), f32), "net": {"k": jax.ShapeDtypeStruct((2, 4), f32)}}
    wider = {"w": jax.ShapeDtypeStruct((3,), f32), "net": {"k": jax.ShapeDtypeStruct((2, 8), f32)}}
    renamed = {"w": jax.ShapeDtypeStruct((3,), f32), "net": {"q": jax.ShapeDtypeStruct((2, 4), f32)}}
    with pytest.raises(checkpoint.DoesNotFit, match=r"1 of the 2 arrays saved in .*c/2 differ "
                                                    r"from what the config builds, e\.g\. "
                                                    r"net/k saved \(2, 4\), built \(2, 8\)$"):
        checkpoint.check_fits(tmp_path / "c" / "2", wider)
    with pytest.raises(checkpoint.DoesNotFit, match="e.g. net/k saved, not built; net/q built, "
                                                    "not saved$"):
        checkpoint.check_fits(tmp_path / "c" / "2", renamed)
    checkpoint.check_fits(tmp_path / "c" / "2", fits)
    checkpoint.check_fits(tmp_path / "c" / "missing", wider)   # no metadata: the restore says

    reader = checkpoint.Checkpointer(tmp_path / "c", every=1, read_only=True)
    started = []
    monkeypatch.setattr(reader.manager, "restore", lambda *a, **k: started.append(a))
    with pytest.raises(checkpoint.DoesNotFit, match="net/k saved"):
        reader.restore(wider, sharding)
    assert started == []
    monkeypatch.undo()
    r = reader.restore(fits, sharding)
    reader.close()
    assert r.step == 2 and np.all(np.asarray(r.state["w"]) == 2.0)


@pytest.mark.parametrize("keep", [0, -1, 1.5, True, "3", None])
def test_keep_checkpoints_below_one_is_refused_before_anything_is_written(tmp_path, keep):
    # orbax's max_to_keep=0 keeps no checkpoint at all: a run would have nothing to resume from
    with pytest.raises(config_lib.ConfigError, match=f"train.keep_checkpoints={keep!r}; expected "
                                                     "a whole number >= 1"):
        checkpoint.Checkpointer(tmp_path / "c", every=1, keep=keep)
    assert not (tmp_path / "c").exists()
    ckpt = checkpoint.Checkpointer(tmp_path / "c", every=1, keep=1)
    for step in (1, 2):
        ckpt.save(step, {"w": np.full(3, float(step), np.float32)})
    ckpt.close()
    assert sorted(os.listdir(tmp_path / "c")) == ["2"]     # the smallest keep still keeps one


def test_a_reader_is_not_warned_that_it_reads(tmp_path, caplog):
    """A read-only manager (evaluation, serving, the frozen DQ Net) is read-only by design: orbax's
    notice saying so is dropped; its warnings of a skipped save or delete still show."""
    (tmp_path / "c").mkdir()
    with caplog.at_level(logging.WARNING):
        reader = checkpoint.Checkpointer(tmp_path / "c", every=1, read_only=True)
        assert reader.latest_step() is None
        reader.close()
        logging.getLogger("absl").warning("%s is read only, save will be skipped", tmp_path)
    messages = [r.getMessage() for r in caplog.records]
    assert not [m for m in messages if m.startswith("Given directory is read only")], messages
    assert any("save will be skipped" in m for m in messages)
