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
    # Folds that decided with different scores (eval.fusion = "dev_eer"): the decision row is
    # each fold's own score, aggregated, not fold 0's choice applied to every fold.
    for t, how in zip(tables, ("noise", "map", "noise")):
        t["default_fusion"] = how
        t["fusions"]["noise"]["frame"]["ci95"] = {"acer": [0.0, 0.0]}   # as add_intervals puts
    summary = evaluate.write_fold_summary(tables, str(tmp_path / "mixed"), default_fusion="x")
    assert summary["default_fusion"] == "decision"
    assert summary["fold_fusions"] == ["noise", "map", "noise"]
    own = [t["fusions"][h]["frame"]["acer"] for t, h in zip(tables, ("noise", "map", "noise"))]
    assert summary["fusions"]["decision"]["frame"]["acer"]["mean"] == pytest.approx(np.mean(own))
    assert "ci95" not in summary["fusions"]["noise"]["frame"]   # a fold's interval is no mean's


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
    """Every split of every protocol and fold against the Oulu-NPU table (Boulkenafet et al.,
    FG 2017): sessions 0-2, phones 0-5, species 0 live, 1/2 print1/2, 3/4 display1/2."""
    meta = {"species": np.tile(np.arange(5), 18 * 6), "device": np.repeat(np.arange(6), 5 * 18),
            "session": np.tile(np.repeat(np.arange(3), 5), 36)}
    everything = {"species": set(range(5)), "session": {0, 1, 2}, "device": set(range(6))}

    def held(p, split, fold=None):
        idx = protocols.select_indices(meta, p, split, *(() if fold is None else (fold,)))
        return {k: set(meta[k][idx]) for k in everything}

    p1 = protocols.get_protocol("oulu_p1", "oulu_npu")
    for split in ("train", "dev"):
        assert held(p1, split) == dict(everything, session={0, 1}), split
    assert held(p1, "test") == dict(everything, session={2})
    p2 = protocols.get_protocol("oulu_p2", "oulu_npu")
    for split in ("train", "dev"):
        assert held(p2, split) == dict(everything, species={0, 1, 3}), split
    assert held(p2, "test") == dict(everything, species={0, 2, 4})
    p3, p4 = (protocols.get_protocol(n, "oulu_npu") for n in ("oulu_p3", "oulu_p4"))
    assert len(p3.folds) == len(p4.folds) == 6
    for k in range(6):
        others = set(range(6)) - {k}
        for split in ("train", "dev"):
            assert held(p3, split, k) == dict(everything, device=others), (k, split)
            assert held(p4, split, k) == dict(everything, device=others, session={0, 1},
                                              species={0, 1, 3}), (k, split)
        assert held(p3, "test", k) == dict(everything, device={k})
        assert held(p4, "test", k) == dict(everything, device={k}, session={2},
                                           species={0, 2, 4})
    assert metrics.OULU_SPECIES_NAMES == synthetic.SPECIES


def test_apcer_per_medium_pools_the_instruments_of_each_attack_type():
    r = np.random.RandomState(1)

    def split():
        labels = np.repeat([0, 1], 40)
        species = np.where(labels == 1, 1 + np.arange(80) % 4, 0)
        comps = {f"score_{c}": r.randn(80) + 1.5 * labels for c in ("noise", "map", "depth")}
        return dict(comps, label=labels, species=species, video=np.arange(80))
    dev, test = split(), split()
    per_species = evaluate.fusion_table(dev, test, "eer")["fusions"]["map"]["frame"]
    per_medium = evaluate.fusion_table(dev, test, "eer", apcer_per="medium")["fusions"]["map"]
    frame = per_medium["frame"]
    assert set(frame["apcer_per_species"]) == {"print", "display"}
    thr = frame["threshold"]
    assert thr == per_species["threshold"]          # the dev EER does not look at species
    s, sp = test["score_map"], test["species"]
    z = (s - dev["score_map"].mean()) / dev["score_map"].std()
    for name, ids in (("print", (1, 2)), ("display", (3, 4))):
        attack = np.isin(sp, ids)
        assert frame["apcer_per_species"][name] == pytest.approx(np.mean(z[attack] < thr))
    assert frame["apcer"] <= per_species["apcer"]   # pooled instruments: never a worse worst
    with pytest.raises(ValueError, match="apcer_per"):
        evaluate.fusion_table(dev, test, "eer", apcer_per="printer")


def test_a_cross_dataset_dev_is_named_by_its_own_dataset():
    """replay_to_casia: dev scores carry Replay-Attack's species ids (1, 3, 4), test CASIA-FASD's
    (1, 2, 3); an APCER-based threshold on dev needs dev's own names."""
    from despoof_jax.data.builders.casia_fasd import casia_fasd  # noqa: PLC0415
    from despoof_jax.data.builders.replay_attack import replay_attack  # noqa: PLC0415
    r = np.random.RandomState(0)

    def split(ids):
        labels = np.repeat([0, 1], 30)
        species = np.where(labels == 1, np.array(ids)[np.arange(60) % len(ids)], 0)
        comps = {f"score_{c}": r.randn(60) + 2.0 * labels for c in ("noise", "map", "depth")}
        return dict(comps, label=labels, species=species, video=np.arange(60))
    dev, test = split([1, 3, 4]), split([1, 2, 3])
    t = evaluate.fusion_table(dev, test, ("apcer", 0.1), casia_fasd.SPECIES_NAMES,
                              replay_attack.SPECIES_NAMES)
    frame = t["fusions"]["average"]["frame"]
    assert set(frame["apcer_per_species"]) == {"warped_photo", "cut_photo", "video_replay"}
    with pytest.raises(ValueError, match="not named"):
        evaluate.fusion_table(dev, test, ("apcer", 0.1), casia_fasd.SPECIES_NAMES)


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


def test_a_cross_dataset_test_split_takes_its_protocol_from_the_test_dataset():
    """Trained on CASIA-FASD, tested on Oulu-NPU under oulu_p1: the test records are selected by
    Oulu-NPU's own protocol (its protocol-file column), not looked up on CASIA-FASD."""
    import ml_collections  # noqa: PLC0415

    from despoof_jax.data import datasets  # noqa: PLC0415
    c = ml_collections.ConfigDict({"dataset": "casia_fasd", "test_dataset": "oulu_npu",
                                   "protocol": "oulu_p1", "fold": 0})
    n = 6
    meta = {"label": np.array([0, 1] * 3), "species": np.array([0, 1, 0, 3, 0, 4]),
            "device": np.zeros(n, int), "session": np.array([2] * n),
            "oulu_p1": np.array([1, 1, 0, 1, 0, 1])}
    np.testing.assert_array_equal(datasets.protocol_indices(c, "test", meta), [0, 1, 3, 5])
