"""Multi-fold protocols: every fold trained and thresholded on its own, mean ± std reported."""
import json
import os

import numpy as np
import pytest

from tests.util import config_module

protocol_synthetic = config_module("protocol_synthetic")
from despoof_jax import experiment
from despoof_jax.data import protocols, synthetic
from despoof_jax.evaluation import evaluate, metrics


def _fold_table(seed: int, shift: float) -> dict:
    """A fusion table of random scores whose dev set is shifted by `shift` relative to test."""
    r = np.random.RandomState(seed)

    def split(offset):
        labels = np.repeat([0, 1], 50)
        species = np.where(labels == 1, 1 + np.arange(100) % 4, 0)
        comps = {f"score_{c}": r.randn(100) + 2.0 * labels + offset for c in ("noise", "map",
                                                                             "depth")}
        return dict(comps, label=labels, species=species, video=np.arange(100))
    return evaluate.fusion_table(split(shift), split(0.0), "eer")


def test_fold_summary_is_mean_and_sample_std_of_the_folds(tmp_path):
    tables = [_fold_table(k, shift=0.3 * k) for k in range(3)]
    summary = evaluate.write_fold_summary(tables, str(tmp_path), protocol="unseen_device")
    for how in ("average", "noise"):
        for key in ("acer", "threshold", "auc"):
            vals = [t["fusions"][how]["frame"][key] for t in tables]
            got = summary["fusions"][how]["frame"][key]
            assert got["mean"] == pytest.approx(np.mean(vals))
            assert got["std"] == pytest.approx(np.std(vals, ddof=1))
    # Each fold kept its own dev threshold (the dev shifts differ, so do the thresholds).
    assert summary["fusions"]["average"]["frame"]["threshold"]["std"] > 0
    md = open(tmp_path / "eval" / "table2.md").read()
    assert "±" in md and "video level" in md and "3 folds" in md
    assert json.load(open(tmp_path / "eval" / "metrics_folds.json"))["n_folds"] == 3


def test_fold_minus_one_runs_every_fold_in_its_own_workdir(tmp_path, monkeypatch):
    seen = []
    real = experiment.train_and_evaluate

    def fake(config, workdir):
        if config.data.fold == experiment.ALL_FOLDS:
            return real(config, workdir)
        seen.append((config.data.fold, str(workdir)))
        return {"eval": dict(_fold_table(config.data.fold, 0.1 * config.data.fold),
                             default_fusion="average")}

    monkeypatch.setattr(experiment, "train_and_evaluate", fake)
    c = protocol_synthetic.get_config("unseen_device,smoke")
    assert c.data.fold == -1
    out = experiment.train_and_evaluate(c, str(tmp_path))
    n = synthetic.N_CAPTURE_DEVICES
    assert seen == [(k, os.path.join(str(tmp_path), f"fold{k}")) for k in range(n)]
    assert out["eval"]["n_folds"] == n
    assert os.path.exists(tmp_path / "eval" / "metrics_folds.json")
    assert json.load(open(tmp_path / "config.json"))["data"]["fold"] == -1


def test_oulu_protocols_hold_out_what_the_paper_holds_out():
    meta = {"species": np.tile(np.arange(5), 18 * 6), "device": np.repeat(np.arange(6), 5 * 18),
            "session": np.tile(np.repeat(np.arange(3), 5), 36)}
    p1 = protocols.get_protocol("oulu_p1", "oulu_npu")
    assert set(meta["session"][protocols.select_indices(meta, p1, "train")]) == {0, 1}
    assert set(meta["session"][protocols.select_indices(meta, p1, "test")]) == {2}
    p2 = protocols.get_protocol("oulu_p2", "oulu_npu")
    assert set(meta["species"][protocols.select_indices(meta, p2, "test")]) == {0, 2, 4}
    for name in ("oulu_p3", "oulu_p4"):
        p = protocols.get_protocol(name, "oulu_npu")
        assert len(p.folds) == 6
        for k in range(6):
            tr = protocols.select_indices(meta, p, "train", k)
            te = protocols.select_indices(meta, p, "test", k)
            assert k not in set(meta["device"][tr]) and set(meta["device"][te]) == {k}
    p4 = protocols.get_protocol("oulu_p4", "oulu_npu")
    te = protocols.select_indices(meta, p4, "test", 0)
    assert set(meta["species"][te]) == {0, 2, 4} and set(meta["session"][te]) == {2}
    assert metrics.OULU_SPECIES_NAMES == synthetic.SPECIES


def test_dev_eer_fusion_rule_looks_at_dev_only():
    """eval.fusion = "dev_eer": the fusion of lowest dev EER (ties in FUSIONS order); a named
    fusion is taken as it is; an unknown one is refused."""
    from despoof_jax.evaluation import scores   # noqa: PLC0415

    def table(dev, test):
        return {"fusions": {how: {"frame": {"dev_eer": dev.get(how, 0.3),
                                            "acer": test.get(how, 0.3)}}
                            for how in scores.FUSIONS}}

    # The test split would prefer "map"; the rule must not see it.
    t = table({"noise": 0.05, "average": 0.08}, {"map": 0.01, "noise": 0.2})
    assert evaluate.choose_fusion("dev_eer", t) == "noise"
    tie = table({"noise": 0.05, "max_all": 0.05}, {})
    assert evaluate.choose_fusion("dev_eer", tie) == "noise"
    assert evaluate.choose_fusion("average", t) == "average"
    with pytest.raises(ValueError, match="dev_eer"):
        evaluate.choose_fusion("best", t)
