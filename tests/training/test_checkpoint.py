"""Checkpoints hold global arrays: saved on 8 devices, they restore on 1 and on 4."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from despoof_jax.training import checkpoint, parallel
from despoof_jax.training import state as state_lib
from despoof_jax.training import steps as train_step
from tests.util import random_batch, tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A stage-2 state after one pmapped step on 8 devices, saved at step 1."""
    tmp = tmp_path_factory.mktemp("ckpt")
    config = tiny_config(32)
    dp = parallel.DataParallel("pmap")
    assert dp.n_devices == 8
    s2 = state_lib.init_stage2(config, jax.random.key(0))
    dq = state_lib.frozen_dq_from_stage1(state_lib.init_stage1(config, jax.random.key(1)))
    step = dp.wrap(train_step.bind_stage2(config), batch_args=(2, 3), n_args=5)
    p_state, _ = step(dp.from_global(s2), dp.from_global(dq),
                      dp.shard_batch(random_batch(0, 8, 32)),
                      dp.shard_batch(random_batch(1, 8, 32)), jax.random.key(0))
    ckpt = checkpoint.Checkpointer(str(tmp / "ckpt"), every=1)
    ckpt.save(1, dp.to_global(p_state), {"iterator": "position-1"})
    ckpt.close()
    host = dp.to_host(p_state)
    np.savez(tmp / "ref.npz", **{f"a{i}": np.asarray(x) for i, x in
                                  enumerate(jax.tree.leaves(host))})
    return tmp


def test_restore_in_process_matches(saved):
    config = tiny_config(32)
    dp = parallel.DataParallel("shard_map")
    abstract = state_lib.abstract(state_lib.init_stage2, config)
    st, data, step = checkpoint.Checkpointer(str(saved / "ckpt"), every=1).restore(
        abstract, dp.replicated)
    assert step == 1 and data == {"iterator": "position-1"} and int(st.step) == 1
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        checkpoint.Checkpointer(str(saved / "empty"), every=1).restore(abstract, dp.replicated)


@pytest.mark.parametrize("devices,mode", [(1, "pmap"), (4, "shard_map")])
def test_restore_on_other_device_counts_and_continue(saved, tmp_path, devices, mode):
    ckpt_dir = tmp_path / "ckpt"
    subprocess.run(["cp", "-r", str(saved / "ckpt"), str(ckpt_dir)], check=True)
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}",
               JAX_PLATFORMS="cpu")
    out = subprocess.run([sys.executable, "-m", "tests.training.checkpoint_worker", str(ckpt_dir),
                          str(saved / "ref.npz"), mode], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["devices"] == devices
    assert result["restored_step"] == 1 and result["max_diff"] == 0.0
    assert result["data_state"] == {"iterator": "position-1"}
    assert result["new_step"] == 2 and result["finite"] == 1.0
    assert sorted(int(p) for p in os.listdir(ckpt_dir) if p.isdigit()) == [1, 2]
