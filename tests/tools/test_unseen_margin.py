"""Rule L's computation (tools/unseen_margin.py): dev operating points, the per-fold table, the
cross-validated gain and the carried threshold, on folds whose scores are made to order."""
import json
import types

import numpy as np
import pytest

from despoof_jax.data import synthetic
from despoof_jax.evaluation import evaluate, metrics
from despoof_jax.tools import unseen_margin

BONA, ATTACK = metrics.BONA_FIDE, metrics.ATTACK


def _split(rng, n_live, n_attack, live_mu, attack_mu, species=1):
    """A score table: live faces ~ N(live_mu, 1), attacks of one species ~ N(attack_mu, 1)."""
    s = np.concatenate([rng.normal(live_mu, 1, n_live), rng.normal(attack_mu, 1, n_attack)])
    label = np.array([BONA] * n_live + [ATTACK] * n_attack)
    table = {"label": label, "species": np.where(label == BONA, 0, species),
             "score_map": s, "score_noise": s, "score_depth": s}
    return table


def _folds(tmp_path, held_out_mu, n=4, seed=0):
    """A multi-fold root: dev = seen attacks far from live (mean 3), test = held-out attacks at
    `held_out_mu`, live faces at 0 in both."""
    rng = np.random.default_rng(seed)
    root = tmp_path / f"root_{held_out_mu}"
    for k in range(n):
        ev = root / f"fold{k}" / "eval"
        ev.mkdir(parents=True)
        evaluate.write_csv(ev / "scores_dev.csv", _split(rng, 200, 200, 0.0, 3.0))
        evaluate.write_csv(ev / "scores_test.csv", _split(rng, 200, 200, 0.0, held_out_mu, 2))
    return root


def test_operating_points_on_the_dev_bona_fide_scores():
    scores = np.array([0.1, 0.5, 0.2, 0.9, 0.4, 0.8, 0.3, 0.7, 2.0, 3.0])
    labels = np.array([BONA] * 8 + [ATTACK] * 2)
    t = unseen_margin.threshold_at(scores, labels, 0.25)      # 2 of 8 bona fide at or above
    assert 0.7 < t <= 0.8 and metrics.bpcer(scores, labels, t) == 0.25
    assert unseen_margin.threshold_at(scores, labels, 0.0) > 0.9   # none refused
    assert unseen_margin.threshold_at(scores, labels, "EER") == metrics.threshold_at_eer(scores,
                                                                                        labels)
    with pytest.raises(ValueError, match="dev BPCER in"):
        unseen_margin.threshold_at(scores, labels, 1.5)


def test_a_margin_helps_only_where_held_out_attacks_sit_below_the_dev_threshold(tmp_path):
    # Held-out attacks hardly above the live faces: the dev EER (set on attacks at 3) lets most
    # through, and a threshold lower in the live scores catches them; the rule must see it.
    close = unseen_margin.report([str(_folds(tmp_path, 1.0))])
    assert close["best"] != "EER"
    cv = close["cross_validated"]
    assert cv["mean"] < 0 and cv["upper_one_sided"] < 0
    # Held-out attacks as far as the seen ones: the dev EER already catches them and a lower
    # threshold only refuses live faces.
    far = unseen_margin.report([str(_folds(tmp_path, 3.0))])
    assert far["best"] == "EER" and far["cross_validated"]["mean"] >= 0
    # the table's first column is each fold's ACER at its own dev EER
    fold = _folds(tmp_path, 2.0, n=2) / "fold1"
    dev, test = (evaluate.read_csv(fold / "eval" / f"scores_{s}.csv") for s in ("dev", "test"))
    t = metrics.threshold_at_eer(dev["score_map"], dev["label"])
    expect = metrics.acer(test["score_map"], test["label"], test["species"], t, synthetic.SPECIES)
    assert unseen_margin.fold_table(unseen_margin.find_folds([str(fold)]))[0, 0] == \
        pytest.approx(expect)


def test_carry_sets_the_models_threshold_on_its_own_decision_score(tmp_path):
    rng = np.random.default_rng(1)
    dev, test = _split(rng, 100, 100, 0.0, 3.0), _split(rng, 100, 100, 0.0, 3.0)
    for name, t in (("dev", dev), ("test", test)):
        evaluate.write_csv(tmp_path / f"{name}.csv", t)
    # a model standardising its map score by (mean 10, std 2): the carried threshold is on that
    # scale, and its dev BPCER is the operating point's
    model = types.SimpleNamespace(fusion="map", threshold=0.5,
                                  fusion_stats={c: (10.0, 2.0) for c in ("map", "noise", "depth")})
    c = unseen_margin.carry(model, tmp_path / "dev.csv", tmp_path / "test.csv", 0.2)
    assert c["dev_bpcer"] == 0.2
    z = (dev["score_map"] - 10.0) / 2.0
    assert np.sum(z[dev["label"] == BONA] >= c["threshold"]) == 20


def test_command_line_reports_and_refuses_a_folder_without_folds(tmp_path, capsys):
    root = _folds(tmp_path, 1.0, n=3)
    out = tmp_path / "margin.json"
    assert unseen_margin.main([str(root), "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    assert len(report["folds"]) == 3 and len(report["acer"][0]) == len(unseen_margin.GRID)
    assert "cross-validated gain" in capsys.readouterr().out
    (tmp_path / "empty").mkdir()
    assert unseen_margin.main([str(tmp_path / "empty")]) == 2
    assert "no evaluated fold" in capsys.readouterr().err
