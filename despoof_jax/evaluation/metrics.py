"""Presentation-attack-detection metrics: ISO/IEC 30107-3 APCER/BPCER/ACER, HTER, EER, ROC, AUC.

Pure numpy; no JAX. Every function takes 1-D arrays of per-sample values.

Conventions (used everywhere in this module):

* **Scores**: higher = more likely an attack (spoof), e.g. one of the paper's Table 2 outputs
  or fusions, oriented by the caller so that spoof is high. Any monotone score works.
* **Labels**: ``1`` = attack presentation, ``0`` = bona fide (live).
* **Decision rule**: a sample is classified as *attack iff score >= threshold*. A score exactly
  equal to the threshold is therefore an attack. This matches scikit-learn's ``roc_curve``
  (a point (fpr, tpr) at threshold t counts ``score >= t`` as positive), so the ROC here and
  sklearn's agree. The ROC and EER thresholds are observed scores; `threshold_between` (used to
  fix an operating point between two scores, e.g. at a BPCER target) returns midpoints.
* **Species**: integer presentation-attack-instrument ids. Id ``0`` (``BONA_FIDE_SPECIES``) is
  reserved for bona fide samples and every attack has an id ``>= 1``; e.g. Oulu-NPU uses
  ``OULU_SPECIES_NAMES``: 0 live, 1 print1, 2 print2, 3 replay1 (display1), 4 replay2 (display2).
* **species_names**: either a sequence indexed by id (``names[i]`` names id ``i``; entry 0 is the
  bona fide name and is never an attack species) or a mapping ``{id: name}``. Species listed in
  ``species_names`` but absent from the data get APCER ``nan`` and are excluded from the max.

Error rates (ISO/IEC 30107-3, Sec. 4 of the paper):

* APCER of species s = fraction of s's attacks classified bona fide (``score < threshold``);
  APCER = max over species (the ISO "worst case" reporting rule used on Oulu-NPU).
* BPCER = fraction of bona fide classified attack (``score >= threshold``).
* ACER = (APCER + BPCER) / 2, the paper's Oulu-NPU number.
* HTER = (FAR + FRR) / 2 with FAR = attacks accepted (pooled over species, *not* the max) and
  FRR = bona fide rejected; the CASIA-MFSD <-> Replay-Attack cross-testing number.

Protocol rule: the threshold is chosen on the development set only and applied unchanged to
the test set (``evaluate_protocol``). Reports are JSON-serialisable: floats, ints, strings,
lists, dicts, and ``None`` where a value is undefined (``nan`` is not valid JSON).
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Sequence

import numpy as np

BONA_FIDE = 0
ATTACK = 1
BONA_FIDE_SPECIES = 0
OULU_SPECIES_NAMES = ("live", "print1", "print2", "replay1", "replay2")

# numpy >= 2 renamed trapz; setup.cfg still allows numpy 1.26.
_trapezoid = getattr(np, "trapezoid", None) or np.trapz

SpeciesNames = Sequence[str] | Mapping[int, str] | None


# ----------------------------------------------------------------------------------------------
# Input validation.
# ----------------------------------------------------------------------------------------------
def _as_scores(scores, what: str = "scores") -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 1:
        raise ValueError(f"{what} must be 1-D [N], got shape {scores.shape}.")
    if scores.size == 0:
        raise ValueError(f"{what} is empty; metrics need at least one sample.")
    bad = ~np.isfinite(scores)
    if bad.any():
        idx = np.flatnonzero(bad)[:5].tolist()
        raise ValueError(
            f"{what} contains {int(bad.sum())} NaN/inf values (first indices {idx}); a NaN score "
            "usually means the model diverged or a frame failed to load. Fix or drop them first.")
    return scores


def _as_labels(labels, n: int, what: str = "labels") -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"{what} must be 1-D [N], got shape {labels.shape}.")
    if labels.shape[0] != n:
        raise ValueError(f"{what} has length {labels.shape[0]} but scores has length {n}.")
    if labels.dtype.kind == "f" and np.isnan(labels).any():
        raise ValueError(f"{what} contains NaN; labels must be 0 (bona fide) or 1 (attack).")
    uniq = np.unique(labels)
    if not np.isin(uniq, (BONA_FIDE, ATTACK)).all():
        raise ValueError(
            f"{what} must be 0 (bona fide) or 1 (attack); found values {uniq.tolist()}.")
    return labels.astype(np.int64)


def _as_species(species, labels: np.ndarray, what: str = "species") -> np.ndarray:
    species = np.asarray(species)
    if species.ndim != 1:
        raise ValueError(f"{what} must be 1-D [N], got shape {species.shape}.")
    if species.shape[0] != labels.shape[0]:
        raise ValueError(
            f"{what} has length {species.shape[0]} but scores/labels have length "
            f"{labels.shape[0]}.")
    if species.dtype.kind not in "iu":
        # Whole-number floats (ids that went through a float array) are accepted as ids.
        whole = species.dtype.kind == "f" and np.all(np.isfinite(species))
        if whole and np.all(species == np.round(species)):
            species = species.astype(np.int64)
        else:
            raise ValueError(f"{what} must hold integer species ids, got dtype {species.dtype}.")
    species = species.astype(np.int64)
    bad_bf = (labels == BONA_FIDE) & (species != BONA_FIDE_SPECIES)
    bad_att = (labels == ATTACK) & (species == BONA_FIDE_SPECIES)
    if bad_bf.any() or bad_att.any():
        raise ValueError(
            f"{what} disagrees with labels: species id {BONA_FIDE_SPECIES} is reserved for bona "
            f"fide samples and attacks need an id >= 1 ({int(bad_bf.sum())} bona fide samples "
            f"with a non-zero species, {int(bad_att.sum())} attacks with species 0).")
    return species


def _check_threshold(threshold) -> float:
    threshold = float(threshold)
    if math.isnan(threshold):
        raise ValueError("threshold is NaN.")
    return threshold


def _split(scores, labels) -> tuple[np.ndarray, np.ndarray]:
    scores = _as_scores(scores)
    labels = _as_labels(labels, scores.shape[0])
    return scores[labels == BONA_FIDE], scores[labels == ATTACK]


def _require_both_classes(scores, labels, what: str) -> None:
    labels = np.asarray(labels)
    n_bf = int(np.sum(labels == BONA_FIDE))
    n_att = int(np.sum(labels == ATTACK))
    if n_bf == 0 or n_att == 0:
        raise ValueError(
            f"{what} needs both bona fide and attack samples to choose a threshold; it has "
            f"{n_bf} bona fide and {n_att} attack samples. Check the split/protocol filter.")


def _name_map(species_names: SpeciesNames, attack_ids: np.ndarray) -> dict[int, str]:
    """{attack species id: name}, ordered by id; bona fide id 0 is never included."""
    if species_names is None:
        return {int(i): f"species{int(i)}" for i in np.unique(attack_ids)}
    if isinstance(species_names, Mapping):
        names = {int(k): str(v) for k, v in species_names.items()}
    else:
        names = {i: str(v) for i, v in enumerate(species_names)}
    names.pop(BONA_FIDE_SPECIES, None)
    unknown = sorted(set(np.unique(attack_ids).tolist()) - set(names))
    if unknown:
        raise ValueError(
            f"attack species ids {unknown} are not named in species_names {names}; add them or "
            "pass species_names=None to name species by id.")
    return dict(sorted(names.items()))


# ----------------------------------------------------------------------------------------------
# Error rates at a fixed threshold.
# ----------------------------------------------------------------------------------------------
def apcer_per_species(scores, labels, species, threshold,
                      species_names: SpeciesNames = None) -> dict[str, float]:
    """APCER of each attack species at ``threshold``.

    Args:
      scores: [N] float, higher = attack.
      labels: [N] int, 1 attack / 0 bona fide.
      species: [N] int ids, 0 for bona fide, >= 1 for attacks.
      threshold: attack iff score >= threshold.
      species_names: names of the species (see module docstring); None names them "species<id>".

    Returns:
      {name: fraction of that species' attacks with score < threshold}, ordered by species id;
      ``nan`` for a named species with no attack samples.
    """
    scores = _as_scores(scores)
    labels = _as_labels(labels, scores.shape[0])
    species = _as_species(species, labels)
    threshold = _check_threshold(threshold)
    names = _name_map(species_names, species[labels == ATTACK])
    out = {}
    for sid, name in names.items():
        s = scores[(labels == ATTACK) & (species == sid)]
        out[name] = float(np.mean(s < threshold)) if s.size else float("nan")
    return out


def apcer(scores, labels, species, threshold, species_names: SpeciesNames = None) -> float:
    """Max over attack species of the per-species APCER (ISO/IEC 30107-3); nan species skipped.

    Raises ValueError when there are no attack samples (APCER is undefined).
    """
    per = apcer_per_species(scores, labels, species, threshold, species_names)
    vals = [v for v in per.values() if not math.isnan(v)]
    if not vals:
        raise ValueError("APCER is undefined: there are no attack samples (labels == 1).")
    return float(max(vals))


def bpcer(scores, labels, threshold) -> float:
    """Fraction of bona fide samples ([N] labels == 0) with score >= threshold."""
    bona, _ = _split(scores, labels)
    threshold = _check_threshold(threshold)
    if bona.size == 0:
        raise ValueError("BPCER is undefined: there are no bona fide samples (labels == 0).")
    return float(np.mean(bona >= threshold))


def acer(scores, labels, species, threshold, species_names: SpeciesNames = None) -> float:
    """(APCER + BPCER) / 2 with APCER the max over species."""
    return 0.5 * (apcer(scores, labels, species, threshold, species_names)
                  + bpcer(scores, labels, threshold))


def far_frr(scores, labels, threshold) -> tuple[float, float]:
    """(FAR, FRR): attacks accepted (score < t, pooled over species), bona fide rejected (>= t)."""
    bona, att = _split(scores, labels)
    threshold = _check_threshold(threshold)
    if bona.size == 0 or att.size == 0:
        raise ValueError(
            f"HTER needs both classes; got {bona.size} bona fide and {att.size} attack samples.")
    return float(np.mean(att < threshold)), float(np.mean(bona >= threshold))


def hter(scores, labels, threshold) -> float:
    """Half total error rate (FAR + FRR) / 2 at ``threshold`` (cross-database testing)."""
    far, frr = far_frr(scores, labels, threshold)
    return 0.5 * (far + frr)


# ----------------------------------------------------------------------------------------------
# Threshold-free curves.
# ----------------------------------------------------------------------------------------------
def roc(scores, labels) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full ROC with attack as the positive class.

    Returns:
      fpr, tpr, thresholds: [M] each, thresholds strictly decreasing, ``thresholds[0] = +inf``
      (nothing flagged), then every distinct score. ``fpr[i]`` = BPCER and ``tpr[i]`` = 1 - pooled
      APCER at ``thresholds[i]``. Identical to
      ``sklearn.metrics.roc_curve(labels, scores, drop_intermediate=False)``; sklearn's default
      ``drop_intermediate=True`` returns a subset of these points.
    """
    bona, att = _split(scores, labels)
    if bona.size == 0 or att.size == 0:
        raise ValueError(
            f"ROC needs both classes; got {bona.size} bona fide and {att.size} attack samples.")
    uniq = np.unique(np.concatenate([bona, att]))[::-1]
    thresholds = np.concatenate([[np.inf], uniq])
    fpr = _frac_at_or_above(bona, thresholds)
    tpr = _frac_at_or_above(att, thresholds)
    return fpr, tpr, thresholds


def _frac_at_or_above(values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """Fraction of ``values`` >= each threshold, vectorised with a sorted search."""
    sorted_v = np.sort(values)
    return 1.0 - np.searchsorted(sorted_v, thresholds, side="left") / sorted_v.size


def auc(scores, labels) -> float:
    """Area under the ROC (trapezoidal, so tied scores count 1/2), = sklearn roc_auc_score."""
    fpr, tpr, _ = roc(scores, labels)
    return float(_trapezoid(tpr, fpr))


def threshold_between(lo, hi=None):
    """A threshold t (decision: attack iff score >= t) above `lo` and, where float32 can tell
    `lo` and `hi` apart, at most `hi`, in float64 and in float32 alike: the midpoint, or the
    next float32 after `lo` where the midpoint of two adjacent float32 values rounds back onto
    `lo` (the exported model and numpy 2's comparison of a float32 score array with a Python
    float both decide in float32). Where `lo` and `hi` are one float32 value, no float32
    threshold splits them: t is then that next float32, above `hi` too, so a score at `hi` is
    decided bona fide like one at `lo`; callers compute their error rates at t itself, which
    keeps their figures true. hi=None: just above `lo`, by max(1e-6, 1e-6 |lo|). Elementwise
    on arrays."""
    lo = np.asarray(lo, np.float64)
    above32 = np.nextafter(lo.astype(np.float32), np.float32(np.inf)).astype(np.float64)
    if hi is None:
        t = np.maximum(lo + np.maximum(1e-6, 1e-6 * np.abs(lo)), above32)
    else:
        mid = (lo + np.asarray(hi, np.float64)) / 2
        t = np.where(mid.astype(np.float32) > lo.astype(np.float32), mid, above32)
    return float(t) if t.ndim == 0 else t


def eer(scores, labels) -> tuple[float, float]:
    """Equal error rate and the threshold that attains it.

    Over every distinct score t, pick the t minimising |BPCER(t) - APCER(t)| (pooled APCER, i.e.
    FRR vs FAR) and report EER = (BPCER(t) + APCER(t)) / 2 at that t; ties go to the smaller
    mean, then the smaller threshold. Discrete data rarely cross exactly, so this "closest
    operating point" reading (not a linear interpolation between points) keeps the returned EER
    equal to the HTER one gets by actually applying the returned threshold.

    Every threshold in (s', t], s' the next lower score, makes the same decisions on these
    scores; the one returned is their midpoint (`threshold_between(s', t)`), not t itself. At t a
    new score just below the lowest attack-side score of the set (one the set decided an attack)
    would be called bona fide, so a threshold at a score leans to the bona fide side by up to the
    gap below it; the midpoint does not lean. (Until 2026-12-04 t itself was returned; runs
    evaluated before then keep the threshold in their metrics.json.) Where t is the lowest score
    there is no s' and t is returned. The EER is the HTER at the returned threshold.

    Returns:
      (eer, threshold) as Python floats.
    """
    bona, att = _split(scores, labels)
    if bona.size == 0 or att.size == 0:
        raise ValueError(
            f"EER needs both classes; got {bona.size} bona fide and {att.size} attack samples.")
    cand = np.unique(np.concatenate([bona, att]))
    nb, na = bona.size, att.size
    # Counts, not rates: BPCER = kb / nb and APCER = ka / na, so gap and mean are ranked exactly
    # on integers (|kb na - ka nb| and kb na + ka nb). Rates such as 1 - k/n carry rounding
    # errors that made two equal gaps unequal and skipped the tie rule.
    kb = nb - np.searchsorted(np.sort(bona), cand, side="left")   # bona fide >= t: rejected
    ka = np.searchsorted(np.sort(att), cand, side="left")         # attacks < t: accepted
    gap = np.abs(kb * na - ka * nb)
    total = kb * na + ka * nb
    # lexsort: last key is primary -> gap, then mean, then threshold (ascending).
    best = np.lexsort((cand, total, gap))[0]
    if best == 0:
        return float(0.5 * (kb[0] / nb + ka[0] / na)), float(cand[0])
    t = threshold_between(cand[best - 1], cand[best])
    # Rates at t itself: where float32 cannot split the two scores, t lies above both.
    return float(0.5 * (np.mean(bona >= t) + np.mean(att < t))), t


def threshold_at_eer(dev_scores, dev_labels) -> float:
    """Threshold at the EER of the development set (the usual Oulu-NPU/CASIA criterion)."""
    _require_both_classes(dev_scores, dev_labels, "dev set")
    return eer(dev_scores, dev_labels)[1]


def threshold_at_apcer(dev_scores, dev_labels, species, target_apcer: float,
                       species_names: SpeciesNames = None) -> float:
    """Largest threshold whose (max-over-species) APCER on dev is <= ``target_apcer``.

    APCER grows and BPCER shrinks as the threshold rises, so the largest feasible threshold is
    the one with the lowest BPCER subject to the APCER bound. ``target_apcer`` in [0, 1).
    """
    target_apcer = float(target_apcer)
    if not 0.0 <= target_apcer < 1.0:
        raise ValueError(f"target_apcer must be in [0, 1), got {target_apcer}.")
    scores = _as_scores(dev_scores, "dev_scores")
    labels = _as_labels(dev_labels, scores.shape[0], "dev_labels")
    species = _as_species(species, labels)
    _require_both_classes(scores, labels, "dev set")
    names = _name_map(species_names, species[labels == ATTACK])
    cand = np.unique(scores)
    worst = np.zeros_like(cand)
    for sid in names:
        s = scores[(labels == ATTACK) & (species == sid)]
        if s.size:
            worst = np.maximum(worst, 1.0 - _frac_at_or_above(s, cand))
    # Small tolerance so a target of exactly k/n (e.g. 0.05 with 20 attacks) is reachable.
    feasible = np.flatnonzero(worst <= target_apcer + 1e-12)
    # cand[0] = min score flags everything -> APCER 0, so feasible is never empty.
    return float(cand[feasible[-1]])


def bpcer_at_apcer(scores, labels, species, target_apcer: float,
                   species_names: SpeciesNames = None) -> float:
    """BPCER at ``threshold_at_apcer`` on the same data (e.g. target 0.05 -> "BPCER20")."""
    t = threshold_at_apcer(scores, labels, species, target_apcer, species_names)
    return bpcer(scores, labels, t)


# ----------------------------------------------------------------------------------------------
# Score sets, protocols, videos, folds.
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True, eq=False)
class ScoreSet:
    """Scores of one split (dev or test) of one protocol.

    Attributes:
      scores: [N] float64, higher = attack; finite.
      labels: [N] int64, 1 attack / 0 bona fide.
      species: [N] int64, 0 for bona fide, >= 1 attack species id.
      video: [N] video ids (any hashable numpy dtype) or None; frames of a video share one id.
      species_names: sequence indexed by id or {id: name}; None names attacks "species<id>".
    """
    scores: np.ndarray
    labels: np.ndarray
    species: np.ndarray
    video: np.ndarray | None = None
    species_names: SpeciesNames = None

    def __post_init__(self):
        scores = _as_scores(self.scores)
        labels = _as_labels(self.labels, scores.shape[0])
        species = _as_species(self.species, labels)
        video = self.video
        if video is not None:
            video = np.asarray(video)
            if video.ndim != 1 or video.shape[0] != scores.shape[0]:
                raise ValueError(
                    f"video must be [N={scores.shape[0]}] ids, got shape {video.shape}.")
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "labels", labels)
        object.__setattr__(self, "species", species)
        object.__setattr__(self, "video", video)

    def __len__(self) -> int:
        return int(self.scores.shape[0])


def video_level(scoreset: ScoreSet) -> ScoreSet:
    """One sample per video: the mean of its frame scores, with the video's label and species.

    Output order: sorted unique video ids (``np.unique``). Raises ValueError if ``video`` is None
    or a video mixes labels or species (frames of one presentation share both).
    """
    if scoreset.video is None:
        raise ValueError("video_level needs ScoreSet.video (per-frame video ids); it is None.")
    vids, first, inv = np.unique(scoreset.video, return_index=True, return_inverse=True)
    inv = inv.reshape(-1)
    n = vids.shape[0]
    counts = np.bincount(inv, minlength=n)
    mean = np.bincount(inv, weights=scoreset.scores, minlength=n) / counts
    for name, arr in (("labels", scoreset.labels), ("species", scoreset.species)):
        lo = np.full(n, np.iinfo(np.int64).max)
        hi = np.full(n, np.iinfo(np.int64).min)
        np.minimum.at(lo, inv, arr)
        np.maximum.at(hi, inv, arr)
        mixed = np.flatnonzero(lo != hi)
        if mixed.size:
            raise ValueError(
                f"video(s) {vids[mixed][:5].tolist()} mix {name} across frames; a video is one "
                "presentation. Check how video ids were assigned.")
    return ScoreSet(scores=mean, labels=scoreset.labels[first], species=scoreset.species[first],
                    video=vids, species_names=scoreset.species_names)


def _none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def evaluate_protocol(dev: ScoreSet, test: ScoreSet, criterion: Any = "eer") -> dict:
    """Choose the threshold on ``dev``, apply it unchanged to ``test``, report test metrics.

    Args:
      dev, test: ScoreSets (frame- or video-level; call ``video_level`` first for video-level).
      criterion: ``"eer"`` (threshold at the dev EER) or ``("apcer", target)`` (largest dev
        threshold with max-species APCER <= target).

    Returns:
      JSON-serialisable dict: criterion (str), threshold, apcer, apcer_per_species
      ({name: float or None when the species is absent from test}), bpcer, acer, hter, far, frr,
      eer and eer_threshold (test set's own EER; for reference, not used for decisions), auc,
      dev_eer, n_bona_fide, n_attack. The test species names come from ``test.species_names``.
    """
    _require_both_classes(dev.scores, dev.labels, "dev set")
    _require_both_classes(test.scores, test.labels, "test set")
    if criterion == "eer":
        threshold = threshold_at_eer(dev.scores, dev.labels)
        crit_name = "eer"
    elif (isinstance(criterion, (tuple, list)) and len(criterion) == 2
          and criterion[0] == "apcer"):
        target = float(criterion[1])
        threshold = threshold_at_apcer(dev.scores, dev.labels, dev.species, target,
                                       dev.species_names)
        crit_name = f"apcer@{target:g}"
    else:
        raise ValueError(f"criterion must be 'eer' or ('apcer', target), got {criterion!r}.")
    per = apcer_per_species(test.scores, test.labels, test.species, threshold,
                            test.species_names)
    ap = apcer(test.scores, test.labels, test.species, threshold, test.species_names)
    bp = bpcer(test.scores, test.labels, threshold)
    far, frr = far_frr(test.scores, test.labels, threshold)
    test_eer, test_eer_t = eer(test.scores, test.labels)
    return {
        "criterion": crit_name,
        "threshold": float(threshold),
        "apcer": ap,
        "apcer_per_species": {k: _none_if_nan(v) for k, v in per.items()},
        "bpcer": bp,
        "acer": 0.5 * (ap + bp),
        "hter": 0.5 * (far + frr),
        "far": far,
        "frr": frr,
        "eer": test_eer,
        "eer_threshold": test_eer_t,
        "auc": auc(test.scores, test.labels),
        "dev_eer": eer(dev.scores, dev.labels)[0],
        "n_bona_fide": int(np.sum(test.labels == BONA_FIDE)),
        "n_attack": int(np.sum(test.labels == ATTACK)),
    }


BOOTSTRAP_METRICS = ("apcer", "bpcer", "acer", "hter", "auc")


def _group_resamples(groups: np.ndarray, labels: np.ndarray, species: np.ndarray, n_boot: int,
                     seed: int) -> tuple[list, np.ndarray, int]:
    """(per-resample draw counts of each group [n_groups] x n_boot, each sample's group index,
    number of groups): groups drawn with replacement; a resample lacking bona fide samples or any
    attack species of the set is redrawn (the draws, in order, of one metric call per
    resample)."""
    ids, inv = np.unique(groups, return_inverse=True)
    inv = inv.reshape(-1)
    n_groups = len(ids)
    bona, att = labels == BONA_FIDE, labels == ATTACK
    has_bona = np.bincount(inv, weights=bona, minlength=n_groups) > 0
    has_species = np.stack([np.bincount(inv, weights=att & (species == sid), minlength=n_groups)
                            > 0 for sid in np.unique(species[att])], axis=1)   # [groups, species]
    rng = np.random.default_rng(seed)
    counts, tries = [], 0
    while len(counts) < n_boot:
        tries += 1
        if tries > 20 * n_boot:
            raise ValueError("bootstrap: resamples keep missing bona fide samples or an attack "
                             "species; too few groups")
        pick = rng.integers(0, n_groups, n_groups)
        if has_species[pick].any(axis=0).all() and has_bona[pick].any():
            counts.append(np.bincount(pick, minlength=n_groups))
    return counts, inv, n_groups


def bootstrap_intervals(test: ScoreSet, groups, threshold: float, *, n_boot: int = 1000,
                        seed: int = 0, level: float = 0.95) -> dict:
    """Percentile intervals of the test metrics at a fixed threshold, resampling *groups*
    (identities) with replacement: frames and videos of one person are not independent, so
    resampling samples would make the intervals too narrow.

    The threshold is held fixed (chosen on dev): the intervals describe the test set's sampling
    error, not the threshold's. A resample lacking bona fide samples, or lacking any attack
    species of the test set, is redrawn: APCER is the worst species, and a resample without one
    of them would measure the worst of fewer species, another quantity (with every species in
    every identity, as in the synthetic world and the three datasets, no draw is redrawn for it).

    Args:
      test: the test ScoreSet (frame- or video-level).
      groups: [N] group id (identity) of each test sample.
      threshold: the dev-chosen decision threshold.
    Returns:
      {metric: [low, high]} for BOOTSTRAP_METRICS, plus "n_groups" and "n_boot".
    """
    groups = np.asarray(groups)
    if groups.shape != test.scores.shape:
        raise ValueError(f"groups must be [N={len(test)}], got shape {groups.shape}")
    scores = _as_scores(test.scores)
    labels = _as_labels(test.labels, scores.shape[0])
    species = _as_species(test.species, labels)
    threshold = _check_threshold(threshold)
    counts, inv, n_groups = _group_resamples(groups, labels, species, n_boot, seed)
    bona, att = labels == BONA_FIDE, labels == ATTACK
    # A resample is its samples, each repeated as often as its group was drawn: every metric at
    # the fixed threshold is a ratio of weighted counts, computed for a block of resamples at a
    # time (weights [block, N]) instead of one metric call per resample.
    names = _name_map(test.species_names, species[att])
    order = np.argsort(scores, kind="stable")
    sorted_scores = scores[order]
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    columns = {"bona": bona, "att": att, "rejected": bona & (scores >= threshold),
               "accepted": att & (scores < threshold)}
    for sid in names:
        columns[f"n{sid}"] = att & (species == sid)
        columns[f"a{sid}"] = att & (species == sid) & (scores < threshold)
    masks = np.stack([columns[k] for k in columns], axis=1).astype(np.float64)   # [N, K]
    keys = {k: i for i, k in enumerate(columns)}
    draws = {k: [] for k in BOOTSTRAP_METRICS}
    block = max(1, 2 ** 22 // max(1, scores.shape[0]))    # ~32 MB of weights at a time
    for lo in range(0, n_boot, block):
        w = np.asarray(counts[lo:lo + block], np.float64)[:, inv]                 # [B, N]
        t = w @ masks                                                            # [B, K]
        n_bona, n_att = t[:, keys["bona"]], t[:, keys["att"]]
        bp = t[:, keys["rejected"]] / n_bona
        far = t[:, keys["accepted"]] / n_att
        with np.errstate(invalid="ignore", divide="ignore"):
            per = [np.where(t[:, keys[f"n{sid}"]] > 0,
                            t[:, keys[f"a{sid}"]] / t[:, keys[f"n{sid}"]], np.nan)
                   for sid in names]
        ap = np.nanmax(np.stack(per), axis=0)
        # AUC = P(attack score > bona fide score) + P(tie) / 2, the trapezoidal ROC area:
        # per distinct score, each resample's bona fide and attack weight.
        ws = w[:, order]
        wb = np.add.reduceat(ws * bona[order], starts, axis=1)
        wa = np.add.reduceat(ws * att[order], starts, axis=1)
        below = np.cumsum(wb, axis=1) - wb
        auc_draws = np.sum(wa * (below + 0.5 * wb), axis=1) / (n_bona * n_att)
        for k, v in (("apcer", ap), ("bpcer", bp), ("acer", 0.5 * (ap + bp)),
                     ("hter", 0.5 * (far + bp)), ("auc", auc_draws)):
            draws[k].append(v)
    draws = {k: np.concatenate(v) for k, v in draws.items()}
    q = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
    out = {k: [float(x) for x in np.nanpercentile(np.asarray(draws[k], float), q)]
           for k in BOOTSTRAP_METRICS}
    out.update(n_groups=int(n_groups), n_boot=int(n_boot))
    return out


def paired_acer_difference(a: ScoreSet, b: ScoreSet, groups, threshold_a: float,
                           threshold_b: float, *, n_boot: int = 2000, seed: int = 0,
                           level: float = 0.95) -> dict:
    """ACER(a) - ACER(b) of two models' scores of the *same* samples, each at its own fixed
    threshold, with a paired bootstrap over groups (identities): every resample draws the same
    identities for both models, so what the two share (hard people, easy people) cancels and the
    interval is that of the difference, far narrower than the two models' own intervals side by
    side. Resamples lacking bona fide samples or an attack species are redrawn, as in
    `bootstrap_intervals`.

    Returns {"diff": point difference, "ci": two-sided `level` percentile interval,
    "upper_one_sided": the one-sided `level` upper bound (the `level` percentile),
    "p_a_better": the share of resamples where ACER(a) < ACER(b) (a tie is not), "n_groups",
    "n_boot"}. Differences are rounded at 1e-12, so equal ACERs are equal."""
    groups = np.asarray(groups)
    for name, s in (("a", a), ("b", b)):
        if s.scores.shape != groups.shape:
            raise ValueError(f"{name} has {len(s)} scores but groups has shape {groups.shape}")
    labels = _as_labels(a.labels, groups.shape[0])
    if not np.array_equal(labels, _as_labels(b.labels, groups.shape[0])):
        raise ValueError("a and b label the samples differently: a paired comparison needs the "
                         "same samples in the same order")
    species = _as_species(a.species, labels)
    if not np.array_equal(species, _as_species(b.species, labels)):
        raise ValueError("a and b give the samples different species: not the same samples")
    counts, inv, n_groups = _group_resamples(groups, labels, species, n_boot, seed)
    bona, att = labels == BONA_FIDE, labels == ATTACK
    present = np.unique(species[att])

    def acer_columns(scores, threshold):
        scores, threshold = _as_scores(scores), _check_threshold(threshold)
        cols = [bona, bona & (scores >= threshold)]
        for sid in present:
            cols += [att & (species == sid), att & (species == sid) & (scores < threshold)]
        return np.stack(cols, axis=1).astype(np.float64)

    def acer_of(t):        # t: [B, 2 + 2 * species] weighted counts
        bp = t[:, 1] / t[:, 0]
        ap = np.max(t[:, 3::2] / t[:, 2::2], axis=1)
        return 0.5 * (ap + bp)

    def difference(ta, tb):
        # Two equal ACERs reached through different APCER/BPCER pairs (0.3 + 0 against 0.1 +
        # 0.2) differ by ~1e-17 in floating point, which would count a tie as a win or a loss
        # and put a bound that is exactly 0 a hair below it (2026-12-05: a rule's bound read
        # -2.8e-17). A real difference of two ratios of counts is at least ~1e-8, so rounding
        # at 1e-12 makes ties exact and changes nothing else.
        return np.round(acer_of(ta) - acer_of(tb), 12) + 0.0   # + 0.0: no -0.0

    ma, mb = acer_columns(a.scores, threshold_a), acer_columns(b.scores, threshold_b)
    ones = np.ones((1, groups.shape[0]))
    point = float(difference(ones @ ma, ones @ mb)[0])
    diffs = []
    block = max(1, 2 ** 22 // max(1, groups.shape[0]))
    for lo in range(0, n_boot, block):
        w = np.asarray(counts[lo:lo + block], np.float64)[:, inv]
        diffs.append(difference(w @ ma, w @ mb))
    diffs = np.concatenate(diffs)
    q = [100 * (1 - level) / 2, 100 * (1 + level) / 2]
    return {"diff": point, "ci": [float(x) for x in np.percentile(diffs, q)],
            "upper_one_sided": float(np.percentile(diffs, 100 * level)),
            "p_a_better": float(np.mean(diffs < 0)), "n_groups": int(n_groups),
            "n_boot": int(n_boot)}


def _is_number(x) -> bool:
    return isinstance(x, (int, float, np.integer, np.floating)) and not isinstance(x, bool)


def _mean_std(values: list, ddof: int) -> dict:
    v = np.asarray([np.nan if x is None else float(x) for x in values], dtype=np.float64)
    v = v[~np.isnan(v)]
    if v.size == 0:
        return {"mean": None, "std": None, "n": 0}
    std = float(np.std(v, ddof=ddof)) if v.size > ddof else float("nan")
    return {"mean": float(np.mean(v)), "std": _none_if_nan(std), "n": int(v.size)}


def aggregate_folds(fold_results: Sequence[dict], ddof: int = 1) -> dict:
    """Mean and std over folds of every numeric metric (e.g. Oulu-NPU Protocols 3/4, 6 folds).

    Each fold result is an ``evaluate_protocol`` dict, so each fold used its own dev threshold.

    Std convention: the *sample* std (``ddof=1``), the default of MATLAB's ``std`` that the
    Oulu-NPU reference evaluation uses; pass ``ddof=0`` for the population std (smaller by
    sqrt((k-1)/k), 0.913x for 6 folds). Values that are None/nan in a fold (e.g. a species absent
    from that fold's test set) are skipped, and ``n`` says how many folds contributed.

    Returns:
      {"n_folds": k, metric: {"mean", "std", "n"}, ..., nested dicts (apcer_per_species)
      aggregated per key}; non-numeric entries (criterion) are copied when all folds agree.
      JSON-serialisable; std is None when fewer than ddof + 1 folds contributed.
    """
    folds = list(fold_results)
    if not folds:
        raise ValueError("aggregate_folds got no fold results.")

    def agg(dicts: list[dict]) -> dict:
        out = {}
        keys = list(dict.fromkeys(k for d in dicts for k in d))
        for k in keys:
            if k == "ci95":   # a fold's bootstrap interval says nothing about the fold mean
                continue
            vals = [d.get(k) for d in dicts]
            present = [v for v in vals if v is not None]
            if present and all(isinstance(v, Mapping) for v in present):
                out[k] = agg([dict(v) for v in present])
            elif present and all(_is_number(v) for v in present):
                out[k] = _mean_std(vals, ddof)
            elif not present and vals:
                out[k] = {"mean": None, "std": None, "n": 0}
            elif all(v == vals[0] for v in vals):
                out[k] = vals[0]
        return out

    return {"n_folds": len(folds), **agg(folds)}
