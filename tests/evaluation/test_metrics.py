"""Tests for despoof_jax.evaluation.metrics: hand-computed error rates, sklearn agreement, protocol rules."""
import json
import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score, roc_curve

from despoof_jax.evaluation import metrics as M

NAMES = M.OULU_SPECIES_NAMES  # 0 live, 1 print1, 2 print2, 3 replay1, 4 replay2

# A hand-checked set. Bona fide: 0.1 0.5 0.5 0.9. Attacks: print1 0.2 0.5 0.1,
# print2 0.7 0.8, replay1 0.6 0.3, replay2 none. Scores of 0.5 sit exactly on the threshold.
SCORES = np.array([0.1, 0.5, 0.5, 0.9, 0.2, 0.5, 0.1, 0.7, 0.8, 0.6, 0.3])
LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1])
SPECIES = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 3, 3])
T = 0.5


def test_apcer_per_species_hand_computed_with_ties_and_missing_species():
    per = M.apcer_per_species(SCORES, LABELS, SPECIES, T, NAMES)
    assert list(per) == ["print1", "print2", "replay1", "replay2"]  # bona fide never listed
    # print1: 0.2 and 0.1 are < 0.5 -> missed; 0.5 == threshold -> detected as attack.
    assert per["print1"] == pytest.approx(2 / 3)
    assert per["print2"] == 0.0
    assert per["replay1"] == 0.5
    assert math.isnan(per["replay2"])  # no samples -> nan, not 0


def test_apcer_bpcer_acer_hter_hand_computed():
    # APCER is the max over species; the nan species is excluded rather than poisoning the max.
    assert M.apcer(SCORES, LABELS, SPECIES, T, NAMES) == pytest.approx(2 / 3)
    # Bona fide 0.5, 0.5 (ties) and 0.9 are >= 0.5 -> rejected.
    assert M.bpcer(SCORES, LABELS, T) == pytest.approx(3 / 4)
    assert M.acer(SCORES, LABELS, SPECIES, T, NAMES) == pytest.approx((2 / 3 + 3 / 4) / 2)
    # HTER pools the attacks: 0.2, 0.1, 0.3 of 7 accepted; it is not the species max.
    assert M.far_frr(SCORES, LABELS, T) == pytest.approx((3 / 7, 3 / 4))
    assert M.hter(SCORES, LABELS, T) == pytest.approx((3 / 7 + 3 / 4) / 2)


def test_ties_at_threshold_count_as_attack():
    just_above = np.nextafter(T, 1.0)
    # Moving the threshold past the tied scores flips exactly those samples.
    assert M.bpcer(SCORES, LABELS, just_above) == pytest.approx(1 / 4)
    assert M.apcer_per_species(SCORES, LABELS, SPECIES, just_above, NAMES)["print1"] == 1.0
    # Scores all equal to the threshold: everything is an attack.
    s = np.full(4, 0.3)
    lab = np.array([0, 0, 1, 1])
    assert M.bpcer(s, lab, 0.3) == 1.0
    assert M.apcer(s, lab, np.array([0, 0, 1, 1]), 0.3) == 0.0


def test_species_names_default_and_mapping():
    per = M.apcer_per_species(SCORES, LABELS, SPECIES, T)
    assert list(per) == ["species1", "species2", "species3"]
    per = M.apcer_per_species(SCORES, LABELS, SPECIES, T, {1: "a", 2: "b", 3: "c"})
    assert per == pytest.approx({"a": 2 / 3, "b": 0.0, "c": 0.5})
    with pytest.raises(ValueError, match="not named"):
        M.apcer_per_species(SCORES, LABELS, SPECIES, T, {1: "a", 2: "b"})


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_roc_and_auc_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, size=300)
    # Rounded scores create many ties, the case where conventions usually diverge.
    scores = np.round(rng.normal(size=300) + 0.8 * labels, 1)
    fpr, tpr, thr = M.roc(scores, labels)
    sk_fpr, sk_tpr, sk_thr = roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sk_fpr)
    np.testing.assert_allclose(tpr, sk_tpr)
    np.testing.assert_array_equal(thr, sk_thr)
    assert M.auc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
    # Each ROC point is (BPCER, 1 - pooled APCER) at its threshold, tie rule included.
    for i in (1, len(thr) // 2, len(thr) - 1):
        far, frr = M.far_frr(scores, labels, thr[i])
        assert fpr[i] == pytest.approx(frr)
        assert tpr[i] == pytest.approx(1 - far)


def test_eer_known_answers():
    bona = [0.1, 0.2, 0.3, 0.4]
    att = [0.35, 0.5, 0.6, 0.7]
    scores = np.array(bona + att)
    labels = np.array([0] * 4 + [1] * 4)
    # At 0.4: bona fide 0.4 rejected (1/4), attack 0.35 accepted (1/4): equal errors. Every
    # threshold in (0.35, 0.4] decides so; the midpoint is returned.
    e, t = M.eer(scores, labels)
    assert (e, t) == (pytest.approx(0.25), pytest.approx(0.375))
    assert M.hter(scores, labels, t) == pytest.approx(e)  # EER is attained by its threshold
    # Perfectly separable: EER 0, midway between the highest bona fide and the lowest attack.
    e, t = M.eer(np.array([0.1, 0.2, 0.8, 0.9]), np.array([0, 0, 1, 1]))
    assert (e, t) == (0.0, pytest.approx(0.5))
    # Fully reversed scores: the error curves only meet where both are 1 (0.2 < t <= 0.8).
    e, t = M.eer(np.array([0.8, 0.9, 0.1, 0.2]), np.array([0, 0, 1, 1]))
    assert (e, t) == (1.0, pytest.approx(0.5))
    # Two operating points with the same gap, 2/3 (t = 1: BPCER 2/3, APCER 0; t = 2: BPCER
    # 1/3, APCER 1): the smaller mean wins, exactly, though 1 - k/n rounds the two gaps apart.
    e, t = M.eer([0, 1, 2, 1], [0, 0, 0, 1])
    assert (e, t) == (pytest.approx(1 / 3), 0.5)
    # Two scores: midway, whichever side each class is on.
    assert M.eer([0.0, 1.0], [0, 1]) == (0.0, 0.5)
    assert M.eer([1.0, 0.0], [0, 1]) == (1.0, 0.5)
    # One distinct score: no score lies below it, so the threshold is that score.
    assert M.eer([0.5, 0.5], [0, 1]) == (0.5, 0.5)


def test_eer_threshold_makes_the_decisions_of_its_operating_point_and_leans_neither_way():
    rng = np.random.default_rng(3)
    for _ in range(50):
        labels = rng.integers(0, 2, 41)
        labels[:2] = [0, 1]
        scores = np.round(rng.normal(size=41) + labels, 2)     # ties included
        e, t = M.eer(scores, labels)
        assert M.hter(scores, labels, t) == pytest.approx(e)
        below, above = scores[scores < t], scores[scores >= t]
        if below.size:      # midway between the two scores it separates
            assert t == pytest.approx((below.max() + above.min()) / 2)
    # Two scores one float32 apart: no float32 threshold splits them, and the EER returned is
    # the error actually made at the threshold returned.
    lo = np.float32(0.3)
    hi = np.nextafter(lo, np.float32(1))
    s, y = np.array([lo, hi], np.float64), np.array([0, 1])
    e, t = M.eer(s, y)
    assert e == M.hter(s, y, t) and M.hter(s.astype(np.float32), y, np.float32(t)) == e


def test_eer_random_is_near_the_crossing():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 2000)
    scores = rng.normal(size=4000) + 2.0 * labels
    e, t = M.eer(scores, labels)
    # Two unit Gaussians 2 apart cross at 1.0 with EER = Phi(-1) = 0.1587.
    assert e == pytest.approx(0.1587, abs=0.015)
    assert t == pytest.approx(1.0, abs=0.1)
    far, frr = M.far_frr(scores, labels, t)
    assert abs(far - frr) <= 2 / 2000 + 1e-12


def test_threshold_at_apcer_uses_max_over_species():
    sp1 = np.arange(1, 11) / 10  # 0.1 .. 1.0
    sp2 = np.array([0.15, 0.9])
    bona = np.array([0.05, 0.12, 0.18, 0.25])
    scores = np.concatenate([bona, sp1, sp2])
    labels = np.array([0] * 4 + [1] * 12)
    species = np.array([0] * 4 + [1] * 10 + [2] * 2)
    # Target 0.2. Pooled over species, t = 0.2 would pass (0.1, 0.15 missed: 2/12), but print2
    # alone then misses 1/2. With the ISO max over species the largest feasible t is 0.15
    # (print1 misses 0.1 -> 0.1, print2 misses nothing).
    t = M.threshold_at_apcer(scores, labels, species, 0.2)
    assert t == 0.15
    assert M.apcer(scores, labels, species, t) == pytest.approx(0.1)
    assert M.apcer(scores, labels, species, np.nextafter(t, 1)) > 0.2
    assert M.bpcer_at_apcer(scores, labels, species, 0.2) == pytest.approx(2 / 4)  # 0.18, 0.25
    # An exactly reachable target k/n is reachable despite float rounding: 0.1 = 1/10 at 0.15.
    assert M.threshold_at_apcer(scores, labels, species, 0.1) == 0.15
    assert M.threshold_at_apcer(scores, labels, species, 0.0) == 0.1
    with pytest.raises(ValueError, match="target_apcer"):
        M.threshold_at_apcer(scores, labels, species, 1.5)


def _scoreset(rng, n_bona=40, n_att=80, shift=1.5, names=NAMES):
    labels = np.array([0] * n_bona + [1] * n_att)
    species = np.concatenate([np.zeros(n_bona, int), rng.integers(1, 5, size=n_att)])
    scores = rng.normal(size=labels.size) + shift * labels
    return M.ScoreSet(scores=scores, labels=labels, species=species, species_names=names)


def test_threshold_comes_from_dev_only():
    rng = np.random.default_rng(0)
    dev, test = _scoreset(rng), _scoreset(rng)
    res = M.evaluate_protocol(dev, test)
    assert res["threshold"] == M.threshold_at_eer(dev.scores, dev.labels)
    # Changing the test scores does not move the threshold, but does change the test metrics.
    test2 = M.ScoreSet(test.scores + rng.normal(size=len(test)), test.labels, test.species,
                       species_names=NAMES)
    res2 = M.evaluate_protocol(dev, test2)
    assert res2["threshold"] == res["threshold"]
    assert res2["acer"] != res["acer"]
    # Changing the dev scores moves it.
    dev2 = M.ScoreSet(dev.scores + 0.37, dev.labels, dev.species, species_names=NAMES)
    assert M.evaluate_protocol(dev2, test)["threshold"] == pytest.approx(res["threshold"] + 0.37)
    # The reported numbers are the test metrics at that dev threshold.
    t = res["threshold"]
    assert res["apcer"] == M.apcer(test.scores, test.labels, test.species, t, NAMES)
    assert res["bpcer"] == M.bpcer(test.scores, test.labels, t)
    assert res["acer"] == pytest.approx((res["apcer"] + res["bpcer"]) / 2)
    assert res["hter"] == M.hter(test.scores, test.labels, t)
    assert res["eer"] == M.eer(test.scores, test.labels)[0]
    assert res["auc"] == M.auc(test.scores, test.labels)
    # APCER criterion: dev APCER at the chosen threshold respects the target.
    r = M.evaluate_protocol(dev, test, ("apcer", 0.05))
    assert r["criterion"] == "apcer@0.05"
    assert M.apcer(dev.scores, dev.labels, dev.species, r["threshold"], NAMES) <= 0.05
    with pytest.raises(ValueError, match="criterion"):
        M.evaluate_protocol(dev, test, "hter")


def test_evaluate_protocol_is_strict_json_with_missing_species():
    rng = np.random.default_rng(1)
    dev = _scoreset(rng)
    test = _scoreset(rng)
    keep = test.species != 4  # replay2 absent from test
    test = M.ScoreSet(test.scores[keep], test.labels[keep], test.species[keep],
                      species_names=NAMES)
    res = M.evaluate_protocol(dev, test)
    assert res["apcer_per_species"]["replay2"] is None
    json.dumps(res, allow_nan=False)  # raises on nan / numpy types


def test_video_level():
    ss = M.ScoreSet(scores=np.array([0.2, 0.4, 0.9, 0.7, 0.8, 0.1]),
                    labels=np.array([0, 0, 1, 1, 1, 0]),
                    species=np.array([0, 0, 3, 3, 3, 0]),
                    video=np.array([7, 7, 3, 3, 3, 5]), species_names=NAMES)
    v = M.video_level(ss)
    np.testing.assert_array_equal(v.video, [3, 5, 7])
    np.testing.assert_allclose(v.scores, [0.8, 0.1, 0.3])
    np.testing.assert_array_equal(v.labels, [1, 0, 0])
    np.testing.assert_array_equal(v.species, [3, 0, 0])
    assert v.species_names == NAMES
    # String video ids work too.
    v = M.video_level(M.ScoreSet(ss.scores, ss.labels, ss.species, video=ss.video.astype(str)))
    np.testing.assert_allclose(v.scores, [0.8, 0.1, 0.3])
    mixed = M.ScoreSet(ss.scores, ss.labels, ss.species, video=np.array([7, 7, 3, 3, 3, 3]))
    with pytest.raises(ValueError, match="mix labels"):
        M.video_level(mixed)
    with pytest.raises(ValueError, match="video"):
        M.video_level(M.ScoreSet(ss.scores, ss.labels, ss.species))


def test_aggregate_folds():
    rng = np.random.default_rng(2)
    folds = []
    for _ in range(6):
        dev, test = _scoreset(rng), _scoreset(rng)
        folds.append(M.evaluate_protocol(dev, test))
    folds[0]["apcer_per_species"]["replay2"] = None  # a fold missing one species
    agg = M.aggregate_folds(folds)
    assert agg["n_folds"] == 6
    assert agg["criterion"] == "eer"
    acers = np.array([f["acer"] for f in folds])
    assert agg["acer"]["mean"] == pytest.approx(acers.mean())
    assert agg["acer"]["std"] == pytest.approx(acers.std(ddof=1))  # sample std by default
    assert M.aggregate_folds(folds, ddof=0)["acer"]["std"] == pytest.approx(acers.std())
    # Each fold kept its own threshold, so thresholds differ and have a spread.
    assert agg["threshold"]["std"] > 0
    r2 = agg["apcer_per_species"]["replay2"]
    assert r2["n"] == 5
    assert r2["mean"] == pytest.approx(np.mean([f["apcer_per_species"]["replay2"]
                                                for f in folds[1:]]))
    json.dumps(agg, allow_nan=False)
    one = M.aggregate_folds(folds[:1])
    assert one["acer"]["mean"] == folds[0]["acer"] and one["acer"]["std"] is None
    with pytest.raises(ValueError, match="no fold"):
        M.aggregate_folds([])


@pytest.mark.parametrize("fn", [
    lambda s, l: M.bpcer(s, l, 0.5),
    lambda s, l: M.hter(s, l, 0.5),
    lambda s, l: M.eer(s, l),
    lambda s, l: M.roc(s, l),
    lambda s, l: M.auc(s, l),
])
def test_errors_on_bad_inputs(fn):
    with pytest.raises(ValueError, match="empty"):
        fn(np.array([]), np.array([]))
    with pytest.raises(ValueError, match="length"):
        fn(np.array([0.1, 0.2, 0.3]), np.array([0, 1]))
    with pytest.raises(ValueError, match="NaN"):
        fn(np.array([0.1, np.nan, 0.3]), np.array([0, 1, 1]))
    with pytest.raises(ValueError, match="0 \\(bona fide\\) or 1"):
        fn(np.array([0.1, 0.2]), np.array([0, 2]))


def test_errors_on_dev_without_a_class_and_bad_species():
    s = np.array([0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="0 bona fide"):
        M.threshold_at_eer(s, np.array([1, 1, 1]))
    with pytest.raises(ValueError, match="0 attack"):
        M.threshold_at_apcer(s, np.array([0, 0, 0]), np.array([0, 0, 0]), 0.05)
    only_attacks = M.ScoreSet(s, np.array([1, 1, 1]), np.array([1, 2, 3]))
    good = M.ScoreSet(s, np.array([0, 1, 1]), np.array([0, 1, 2]))
    with pytest.raises(ValueError, match="dev set"):
        M.evaluate_protocol(only_attacks, good)
    with pytest.raises(ValueError, match="test set"):
        M.evaluate_protocol(good, only_attacks)
    with pytest.raises(ValueError, match="species id 0 is reserved"):
        M.ScoreSet(s, np.array([0, 1, 1]), np.array([0, 0, 2]))
    with pytest.raises(ValueError, match="species"):
        M.apcer(s, np.array([0, 1, 1]), np.array([0, 1]), 0.5)
    with pytest.raises(ValueError, match="no attack"):
        M.apcer(s, np.array([0, 0, 0]), np.array([0, 0, 0]), 0.5)


@pytest.mark.parametrize("decimals", [1, 6])   # 1: many tied scores, also across the threshold
def test_bootstrap_intervals_equal_one_metric_call_per_resample(decimals):
    """The blocked, weighted-count bootstrap gives what resampling the samples and calling the
    metric functions on each resample gives (same draws, same redraw rule)."""
    r = np.random.default_rng(decimals)
    n, n_ids, threshold = 300, 9, 0.5
    ids = r.integers(0, n_ids, n)
    labels = (r.random(n) < 0.6).astype(np.int64)
    labels[ids == 0] = 0                      # an all-bona-fide identity: some draws are redrawn
    species = np.where(labels == 1, r.integers(1, 5, n), 0)
    scores = np.round(r.normal(labels + 0.3 * (ids % 3), 1.0), decimals)
    test = M.ScoreSet(scores, labels, species, species_names=("live", "a", "b", "c", "d", "e"))
    got = M.bootstrap_intervals(test, ids, threshold, n_boot=200, seed=3)

    rng, draws = np.random.default_rng(3), {k: [] for k in M.BOOTSTRAP_METRICS}
    members = [np.flatnonzero(ids == g) for g in range(n_ids)]
    while len(draws["acer"]) < 200:
        pick = np.concatenate([members[g] for g in rng.integers(0, n_ids, n_ids)])
        s, y, sp = scores[pick], labels[pick], species[pick]
        if not (set(species[labels == 1]) <= set(sp[y == 1]) and np.any(y == 0)):
            continue
        ap, bp = M.apcer(s, y, sp, threshold, test.species_names), M.bpcer(s, y, threshold)
        draws["apcer"].append(ap)
        draws["bpcer"].append(bp)
        draws["acer"].append(0.5 * (ap + bp))
        draws["hter"].append(M.hter(s, y, threshold))
        draws["auc"].append(M.auc(s, y))
    for k in M.BOOTSTRAP_METRICS:
        np.testing.assert_allclose(got[k], np.percentile(draws[k], [2.5, 97.5]), rtol=0,
                                   atol=1e-12, err_msg=k)
    assert got["n_groups"] == n_ids and got["n_boot"] == 200


def test_bootstrap_resamples_keep_every_attack_species():
    """APCER is the worst species: a resample that drew no identity with some species would report
    the worst of the others. Here species 2 sits in two identities out of ten and is always
    accepted (APCER 1); every interval of APCER must stay at 1, not reach down to the others'."""
    ids = np.repeat(np.arange(10), 6)
    labels = np.tile([0, 0, 1, 1, 1, 1], 10)
    species = np.where(labels == 1, 1, 0)
    species[(ids < 2) & (labels == 1)] = 2
    scores = np.where(labels == 1, 1.0, 0.0)
    scores[species == 2] = -1.0                          # below the threshold: always accepted
    test = M.ScoreSet(scores, labels, species, species_names=("live", "print", "replay"))
    assert M.apcer(scores, labels, species, 0.5, test.species_names) == 1.0
    ci = M.bootstrap_intervals(test, ids, 0.5, n_boot=300, seed=0)
    assert ci["apcer"] == [1.0, 1.0]
    assert ci["bpcer"] == [0.0, 0.0]


def test_bootstrap_intervals_resample_identities_and_shrink_with_more_of_them():
    def scoreset(n_ids, seed):
        r = np.random.default_rng(seed)
        ids = np.repeat(np.arange(n_ids), 10)
        labels = (np.arange(ids.size) % 5 != 0).astype(np.int64)
        species = np.where(labels == 1, np.arange(ids.size) % 5, 0)
        person = r.normal(0, 1.0, n_ids)[ids]   # identity effect: frames of a person correlate
        s = M.ScoreSet(r.normal(0, 0.3, ids.size) + 1.5 * labels + person, labels, species,
                             species_names=("live", "a", "b", "c", "d"))
        return s, ids
    small, ids_small = scoreset(8, 0)
    big, ids_big = scoreset(128, 1)
    ci_small = M.bootstrap_intervals(small, ids_small, 0.75, n_boot=300)
    ci_big = M.bootstrap_intervals(big, ids_big, 0.75, n_boot=300)
    point = M.acer(big.scores, big.labels, big.species, 0.75, big.species_names)
    assert ci_big["acer"][0] <= point <= ci_big["acer"][1]
    width = lambda ci, k: ci[k][1] - ci[k][0]  # noqa: E731
    for k in ("acer", "bpcer"):   # (AUC sits at its ceiling of 1 in some small resamples)
        assert width(ci_big, k) < 0.5 * width(ci_small, k), k
    assert ci_big["n_groups"] == 128
    # Resampling identities, not frames: with a strong identity effect, the identity bootstrap
    # is wider than one that treats every frame as its own identity.
    frames = M.bootstrap_intervals(big, np.arange(len(big)), 0.75, n_boot=300)
    assert width(ci_big, "acer") > width(frames, "acer")
    with pytest.raises(ValueError, match="groups must be"):
        M.bootstrap_intervals(big, ids_big[:-1], 0.75)


def test_video_level_intervals_resample_the_videos_identities():
    """evaluate.add_intervals: the video-level interval is the identity bootstrap of the
    video-level scores, each video carrying its person; a video of two people is refused."""
    from despoof_jax.evaluation import evaluate
    r = np.random.default_rng(0)
    video = np.repeat(np.arange(40), 5)                  # 40 videos of 5 frames, 10 people
    identity = video // 4
    labels = (video % 4 != 0).astype(np.int64)
    species = np.where(labels == 1, video % 4, 0)
    scores = r.normal(labels + 0.5 * (identity % 3), 1.0)
    names = ("live", "a", "b", "c")
    test_set = M.ScoreSet(scores, labels, species, video=video, species_names=names)
    result = {"frame": {"threshold": 0.5}, "video": {"threshold": 0.7}}
    evaluate.add_intervals(result, test_set, {"identity": identity})
    per_video = M.ScoreSet(scores.reshape(40, 5).mean(1), labels[::5], species[::5],
                           species_names=names)
    assert result["video"]["ci95"] == M.bootstrap_intervals(per_video, identity[::5], 0.7)
    assert result["frame"]["ci95"] == M.bootstrap_intervals(test_set, identity, 0.5)
    identity = identity.copy()
    identity[7] = 9                                      # a frame of video 1 from another person
    with pytest.raises(ValueError, match="more than one identity"):
        evaluate.add_intervals(result, test_set, {"identity": identity})


def test_paired_acer_difference_counts_equal_acers_as_a_tie():
    """ACER 0.15 both: a through APCER 0.3 and BPCER 0, b through 0.1 and 0.2. In floating point
    0.5 * (0.3 + 0) - 0.5 * (0.1 + 0.2) is -2.8e-17: unrounded, a tie read as a "win" for a."""
    ids = np.arange(20)                          # one sample an identity
    labels = np.r_[np.zeros(10), np.ones(10)].astype(np.int64)
    species = labels.copy()
    s_a = np.r_[np.zeros(10), np.zeros(3), np.ones(7)]          # 3 of 10 attacks pass
    s_b = np.r_[np.ones(2), np.zeros(8), np.zeros(1), np.ones(9)]   # 2 live refused, 1 passes
    assert 0.5 * (0.3 + 0.0) - 0.5 * (0.1 + 0.2) != 0.0        # the float artefact itself
    got = M.paired_acer_difference(M.ScoreSet(s_a, labels, species),
                                   M.ScoreSet(s_b, labels, species), ids, 0.5, 0.5, n_boot=200)
    assert got["diff"] == 0.0


def test_paired_acer_difference_equals_per_resample_metric_calls_and_is_paired():
    """The paired bootstrap's draws are those of resampling identities and calling `acer` on
    both models (same redraw rule as `bootstrap_intervals`); a shared identity effect cancels,
    so its interval is far narrower than the two models' own intervals would suggest."""
    r = np.random.default_rng(0)
    n_ids = 12
    ids = np.repeat(np.arange(n_ids), 20)
    labels = (np.arange(ids.size) % 4 != 0).astype(np.int64)
    species = np.where(labels == 1, np.arange(ids.size) % 4, 0)
    names = ("live", "a", "b", "c")
    person = r.normal(0, 1.0, n_ids)[ids]                       # what both models share
    base = 1.2 * labels + person + r.normal(0, 0.5, ids.size)
    a = M.ScoreSet(base + 0.4 * labels, labels, species, species_names=names)   # a separates more
    b = M.ScoreSet(base + r.normal(0, 0.05, ids.size), labels, species, species_names=names)
    got = M.paired_acer_difference(a, b, ids, 0.7, 0.6, n_boot=300, seed=5)

    rng, diffs = np.random.default_rng(5), []
    members = [np.flatnonzero(ids == g) for g in range(n_ids)]
    while len(diffs) < 300:
        pick = np.concatenate([members[g] for g in rng.integers(0, n_ids, n_ids)])
        y, sp = labels[pick], species[pick]
        diffs.append(round(M.acer(a.scores[pick], y, sp, 0.7, names)
                           - M.acer(b.scores[pick], y, sp, 0.6, names), 12))
    np.testing.assert_allclose(got["ci"], np.percentile(diffs, [2.5, 97.5]), atol=1e-12)
    assert got["upper_one_sided"] == pytest.approx(np.percentile(diffs, 95), abs=1e-12)
    assert got["p_a_better"] == pytest.approx(np.mean(np.asarray(diffs) < 0))
    assert got["diff"] == pytest.approx(M.acer(a.scores, labels, species, 0.7, names)
                                        - M.acer(b.scores, labels, species, 0.6, names))
    # Unpaired, the difference's interval would be about as wide as the two intervals combined.
    wa, wb = (np.diff(M.bootstrap_intervals(s, ids, t, n_boot=300)["acer"])[0]
              for s, t in ((a, 0.7), (b, 0.6)))
    assert got["ci"][1] - got["ci"][0] < 0.6 * np.hypot(wa, wb)
    with pytest.raises(ValueError, match="same samples"):
        M.paired_acer_difference(a, M.ScoreSet(b.scores, np.roll(labels, 1), np.roll(species, 1),
                                               species_names=names), ids, 0.7, 0.6)
