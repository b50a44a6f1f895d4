"""Multi-host training rehearsed with two local processes joined by jax.distributed."""
import os
import subprocess

from despoof_jax.training import checkpoint, parallel
from despoof_jax.training import state as state_lib
from tests.util import tiny_config

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_two_processes_train_both_stages_and_evaluate(synthetic_data_dir, tmp_path):
    workdir = tmp_path / "mh"
    env = dict(os.environ, TFDS_DATA_DIR=synthetic_data_dir)
    flags = ["--config=configs/default.py:smoke", f"--config.data.data_dir={synthetic_data_dir}",
             "--config.train.stage1_steps=3", "--config.train.stage2_steps=2",
             "--config.model.dq_width=0.125"]
    out = subprocess.run(["bash", "launch/local_multiprocess.sh", "2", "2", str(workdir)] + flags,
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    logs = {i: (workdir / f"process_{i}.log").read_text() for i in range(2)}
    assert out.returncode == 0, out.stderr + logs[0][-3000:] + logs[1][-3000:]
    for i in range(2):
        assert "devices: 4 (2 local), process %d of 2" % i in logs[i]
    # Process 0 alone writes metrics and the report; both wrote the checkpoints (global arrays).
    assert (workdir / "eval" / "metrics.json").exists()
    assert len((workdir / "ds" / "metrics.jsonl").read_text().splitlines()) == 2
    config = tiny_config(64)
    abstract = state_lib.abstract(state_lib.init_stage2, config)
    dp = parallel.DataParallel("pmap")
    st, data, step = checkpoint.Checkpointer(str(workdir / "ds" / "checkpoints"),
                                             every=1).restore(abstract, dp.replicated)
    assert step == 2 and int(st.step) == 2 and data["iterator"]
