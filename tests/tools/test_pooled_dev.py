"""A threshold at the EER of synthetic dev splits pooled (`despoof calibrate --dev-splits`): the
pooling rule, and the command end to end on a trained model."""
from __future__ import annotations

import json

import numpy as np
import pytest

from despoof_jax import cli
from despoof_jax.evaluation import metrics
from despoof_jax.serving import model as api
from despoof_jax.tools import pooled_dev


class _Model:
    fusion, threshold = "map", 0.0


def _scores(live_mean, n=200, seed=0):
    """A dev split whose attacks score around 1 and whose bona fide around `live_mean`."""
    rng = np.random.default_rng(seed)
    live, att = rng.normal(live_mean, 0.3, n), rng.normal(1.0, 0.3, n)
    return metrics.ScoreSet(scores=np.concatenate([live, att]),
                            labels=np.repeat([0, 1], n), species=np.repeat([0, 1], n))


def test_the_pooled_threshold_balances_the_errors_over_all_splits(monkeypatch):
    """Two worlds whose bona fide faces score differently (as a finer sensor's do): each split's
    own EER threshold suits it alone; the pooled one lies between them, and its EER is that of
    the records of both, each record weighing the same."""
    splits = {"near": _scores(-1.0, seed=1), "far": _scores(0.2, seed=2)}
    monkeypatch.setattr(pooled_dev.subsets, "load_model_scores",
                        lambda model, split, builder_config, data_dir, scores_path:
                        (splits[builder_config], None, None, model.threshold, model.fusion))
    r = pooled_dev.threshold_for(_Model(), ["near", "far"])
    own = {k: metrics.eer(s.scores, s.labels)[1] for k, s in splits.items()}
    assert own["near"] < r["threshold"] < own["far"]
    both = np.concatenate([s.scores for s in splits.values()])
    labels = np.concatenate([s.labels for s in splits.values()])
    assert (r["eer"], r["threshold"]) == metrics.eer(both, labels)
    for k, s in splits.items():
        at = r["splits"][k]["at_pooled"]
        assert at["bpcer"] == metrics.bpcer(s.scores, s.labels, r["threshold"])
        assert at["acer"] == pytest.approx((at["apcer"] + at["bpcer"]) / 2)
        assert r["splits"][k]["records"] == 400 and r["splits"][k]["bona_fide"] == 200
    # the errors move between the worlds: the far world's faces are rejected more often
    assert r["splits"]["far"]["at_pooled"]["bpcer"] > r["splits"]["near"]["at_pooled"]["bpcer"]
    for bad in ([], ["near", "near"]):
        with pytest.raises(ValueError, match="distinct"):
            pooled_dev.threshold_for(_Model(), bad)


def test_where_sets_the_threshold_on_the_matching_records_only(monkeypatch):
    """`--where scene_content=-1`: content scenes whose bona fide score like attacks (as wide2's
    natural-image scenes do) pull the EER threshold of the whole split up; on the face sessions
    alone it is those records' own EER threshold. A column the split lacks, or a selection left
    without both classes, is an error, not a threshold."""
    faces, scenes = _scores(-1.0, seed=3), _scores(0.8, n=100, seed=4)
    whole = metrics.ScoreSet(scores=np.concatenate([faces.scores, scenes.scores]),
                             labels=np.concatenate([faces.labels, scenes.labels]),
                             species=np.concatenate([faces.species, scenes.species]))
    content = np.concatenate([np.full(400, -1), np.full(200, 7)])
    rows = {"index": np.arange(600), "scene_content": content, "label": whole.labels}
    monkeypatch.setattr(pooled_dev.subsets, "load_model_scores",
                        lambda model, split, builder_config, data_dir, scores_path:
                        (whole, None, rows, model.threshold, model.fusion))
    everything = pooled_dev.threshold_for(_Model(), ["wide2"])
    on_faces = pooled_dev.threshold_for(_Model(), ["wide2"], where=["scene_content=-1"])
    assert on_faces["where"] == {"scene_content": -1} and everything["where"] == {}
    assert (on_faces["eer"], on_faces["threshold"]) == metrics.eer(faces.scores, faces.labels)
    assert on_faces["threshold"] < everything["threshold"]
    assert on_faces["splits"]["wide2"]["records"] == 400
    with pytest.raises(ValueError, match="no metadata column"):
        pooled_dev.threshold_for(_Model(), ["wide2"], where=["photo_source=-1"])
    rows["scene_content"] = np.where(whole.labels == 1, 7, -1)   # no attack among the faces
    with pytest.raises(ValueError, match="an EER needs both"):
        pooled_dev.threshold_for(_Model(), ["wide2"], where=["scene_content=-1"])


def test_calibrate_on_dev_splits_through_the_command_line(trained_workdir, synthetic_data_dir,
                                                          tmp_path, capsys):
    """On the model's own dev split alone the pooled threshold is the model's dev-EER threshold
    (the same records, scored again); --out writes a copy with it, --scores-dir keeps the scores,
    and options of the other calibrations are refused before anything is scored."""
    from despoof_jax.serving import pretrained   # noqa: PLC0415 (lazily: only this test packs)
    packed = tmp_path / "packed"
    pretrained.pack(trained_workdir, packed, dtype="float32")
    model = api.load(str(packed))
    out, copy, cache = tmp_path / "pd.json", tmp_path / "copy", tmp_path / "scores"
    rc = cli.main(["--cpu-kernels=default", "calibrate", "--model", str(packed), "--dev-splits",
                   "s64_small", "--data-dir", synthetic_data_dir, "--scores-dir", str(cache),
                   "--json", str(out), "--out", str(copy)])
    assert rc == 0
    report = json.loads(out.read_text())
    assert report["threshold"] == pytest.approx(model.threshold, abs=1e-4)
    assert report["current_threshold"] == model.threshold
    assert (cache / "s64_small_dev.csv").exists()
    info = json.loads((copy / "model.json").read_text())
    assert info["criterion"] == pooled_dev.CRITERION and info["pooled_dev"]["dev_splits"] == [
        "s64_small"]
    assert info["threshold"] == report["threshold"]
    assert info["dev_threshold"] == model.threshold
    assert api.load(str(copy)).threshold == report["threshold"]
    before = (packed / "model.json").read_text()
    for argv, message in ((["--dev-splits", "s64_small", "--bona-fide", str(tmp_path)],
                           "give one of them"),
                          (["--scores-dir", str(cache)], "--scores-dir keeps"),
                          (["--where", "scene_content=-1"], "--where selects"),
                          (["--dev-splits", "s64_small", "--scores-dir", str(cache), "--where",
                            "scene_content=-1"], "no metadata column"),
                          (["--dev-splits", "s64_small", "--bpcer", "0.1"], "--bpcer"),
                          (["--dev-splits", "s64_small", "--fusions", "map"], "simulator"),
                          (["--dev-splits", "s64_small", "--out", str(copy)], "not empty"),
                          (["--dev-splits", "s64_small", "s64_small"], "distinct")):
        rc = cli.main(["--cpu-kernels=default", "calibrate", "--model", str(packed),
                       "--data-dir", synthetic_data_dir, *argv])
        assert rc == 2 and message in capsys.readouterr().err, argv
    assert (packed / "model.json").read_text() == before
