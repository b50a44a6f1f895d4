"""Baselines on the de-spoofing pipeline: the binary softmax CNN and the depth-only model."""
import json
import os

import pytest

import jax
import ml_collections
import numpy as np

from despoof_jax.evaluation import baselines as eval_baselines
from despoof_jax.training import baselines, loop
from despoof_jax.training import state as state_lib
from tests.util import random_batch, tiny_config


def test_binary_cnn_step_fits_a_batch():
    """Cross-entropy falls on a repeated batch: the step, the head and the loss are wired."""
    c = tiny_config(32)
    with c.unlocked():
        c.method = "binary_cnn"
    st = baselines.init_cnn(c, jax.random.key(0))
    logits = baselines.make_cnn(c).apply(st.cnn.variables(), np.zeros((3, 32, 32, 6),
                                                                       np.float32), train=False)
    assert logits.shape == (3, 2)
    step = jax.jit(lambda s, b: baselines.cnn_step(s, b, None, model=baselines.make_cnn(c),
                                                   tx=state_lib.make_optimizer(c)))
    batch = random_batch(0, 8, 32)
    losses = []
    for _ in range(8):
        st, m = step(st, batch)
        losses.append(float(m["cross_entropy"]))
    assert m["finite"] == 1.0 and int(st.step) == 8
    assert losses[-1] < 0.5 * losses[0], losses


def test_baselines_run_end_to_end_and_write_their_tables(smoke_workdirs):
    for name, score in (("cnn", "cnn"), ("depth", "depth")):
        w = smoke_workdirs[name]
        table = json.load(open(os.path.join(w, "eval", "metrics.json")))
        assert list(table["fusions"]) == [score] and table["default_fusion"] == score
        frame = table["fusions"][score]["frame"]
        assert 0.0 <= frame["acer"] <= 1.0 and frame["criterion"] == "eer"
        header = open(os.path.join(w, "eval", "scores_test.csv")).readline()
        assert f"score_{score}" in header
        assert "| " + score + " |" in open(os.path.join(w, "eval", "table2.md")).read()
    # The CNN trained in its own stage directory; the depth-only model never trained DS Net.
    assert os.path.isdir(os.path.join(smoke_workdirs["cnn"], "cnn", "checkpoints"))
    assert not os.path.exists(os.path.join(smoke_workdirs["depth"], "ds"))


def test_depth_only_score_equals_the_despoof_depth_component(smoke_workdirs):
    """Same DQ Net (the depth workdir holds the ablation run's dq/): same depth scores."""
    import csv
    rows = {}
    for name, col in (("depth", "score_depth"), ("ablation", "score_depth")):
        with open(os.path.join(smoke_workdirs[name], "eval", "scores_test.csv")) as f:
            rows[name] = np.asarray([float(r[col]) for r in csv.DictReader(f)])
    np.testing.assert_allclose(rows["depth"], rows["ablation"], rtol=1e-4, atol=1e-5)


def test_a_binary_cnn_stopped_before_its_last_step_is_not_evaluated(smoke_workdirs):
    """As for the de-spoofing model (`evaluate.load_model`): a CNN whose latest checkpoint is not
    its last step is refused, not scored as if it were the trained baseline."""
    w = smoke_workdirs["cnn"]
    config = ml_collections.ConfigDict(json.load(open(os.path.join(w, "config.json"))))
    final = baselines.baseline_steps(config)
    assert callable(eval_baselines.make_score_fn(config, w))       # the finished run is taken
    with config.unlocked():
        config.train.baseline_steps = final + 5
    with pytest.raises(loop.UnfinishedStage, match="stopped before its end"):
        eval_baselines.make_score_fn(config, w)
