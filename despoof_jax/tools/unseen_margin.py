"""A threshold margin for unseen physics, measured on leave-one-family-out folds (Rule L, issue #14).

    python -m despoof_jax.tools.unseen_margin ROOT... [--score map] [--json OUT] \
        [--model M --dev-scores DEV.csv --test-scores TEST.csv]

ROOT: an evaluated multi-fold workdir of `configs/protocol_unseen_physics.py` (its `fold<k>/`
folders) or one fold's workdir; every fold found is used. Per fold, the component score `--score`
(default the 0\\1 map, the packaged model's decision score) of its dev split (the seen families)
sets a threshold at each operating point of `GRID` ("EER": the dev EER, `metrics.eer`; b: a
fraction b of the dev bona fide scores at or above it, midway between the two it separates), and
the fold's test split (the held-out family, and live faces) gives the ACER there.

Why: every shipped threshold was set on attacks the model trained on; on real photographs the
attacks that pass the packaged model are of families the training world lacks. If a threshold
below the dev EER caught held-out families better, a margin learnt on the folds (as a dev BPCER,
which does not depend on the score's scale) could be carried to any model. The report says
whether it does: (a) the cross-validated gain, each fold scored at the operating point that is
best on the other folds, against its dev EER, with a bootstrap over folds; b*, the operating point
best on all folds; and with `--model`, that model's threshold at dev BPCER b* on its own dev
scores (`despoof subset --model M --split dev --scores DEV.csv`) and its test ACER there and at
its own threshold. Decided 2026-12-06 (README, "Rule L, decided"): no margin helps (upper bound
+0.16 points; +0.17 with this module's bootstrap order), so the packaged threshold stayed.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import sys
from typing import Optional, Sequence

import numpy as np

from despoof_jax.data import synthetic
from despoof_jax.evaluation import evaluate, metrics, scores
from despoof_jax.serving import model as serving_model
from despoof_jax.tools import bona_fide
from despoof_jax.training.workdir import Workdir

GRID: tuple = ("EER", 0.20, 0.25, 0.30, 0.35, 0.40)   # in this order: ties go to the first,
                                                     # the highest threshold where dev EER < 20 %


def threshold_at(dev_scores, dev_labels, point) -> float:
    """The dev threshold at `point`: "EER", or b in [0, 1): at most a fraction b of the dev bona
    fide scores at or above it (`bona_fide.threshold_at_bpcer`: midway between the two it
    separates)."""
    if point == "EER":
        return metrics.threshold_at_eer(dev_scores, dev_labels)
    b = float(point)
    if not 0 <= b < 1:
        raise ValueError(f"operating point {point!r}: expected 'EER' or a dev BPCER in [0, 1)")
    live = np.asarray(dev_scores, np.float64)[np.asarray(dev_labels) == metrics.BONA_FIDE]
    return bona_fide.threshold_at_bpcer(live, b)


def _split(table: dict, score: str):
    return (table[f"score_{score}"], table["label"].astype(int), table["species"].astype(int))


def _acer(split, t) -> float:
    return metrics.acer(*split, t, synthetic.SPECIES)


def find_folds(roots: Sequence[str]) -> list[Workdir]:
    """The evaluated folds under each root (a multi-fold workdir's `fold<k>/`, in fold order, or
    one fold's workdir), as `Workdir`s (which own the paths of their score files)."""
    found = []
    for root in map(pathlib.Path, roots):
        folds = sorted((d for d in root.glob("fold*") if d.name[4:].isdigit()),
                       key=lambda d: int(d.name[4:])) or [root]
        evaluated = [Workdir(d) for d in folds if Workdir(d).scores_csv("test").exists()]
        if not evaluated:
            raise FileNotFoundError(f"{root}: no evaluated fold (fold<k>/eval/scores_test.csv); "
                                    "train and evaluate the protocol first")
        found += evaluated
    return found


def fold_table(folds: Sequence[Workdir], score: str = "map", grid=GRID) -> np.ndarray:
    """[folds, grid] test ACER of each fold at each dev operating point."""
    rows = []
    for wd in folds:
        dev = _split(evaluate.read_csv(wd.scores_csv("dev")), score)
        test = _split(evaluate.read_csv(wd.scores_csv("test")), score)
        rows.append([_acer(test, threshold_at(dev[0], dev[1], p)) for p in grid])
    return np.asarray(rows, np.float64)


def cross_validated_gain(table: np.ndarray, *, draws: int = 2000, seed: int = 0) -> dict:
    """Each fold at the operating point of lowest mean ACER over the other folds (ties to the
    first column), minus the fold at the first column (the dev EER); mean gain and its one-sided
    95 % upper bound from a bootstrap over folds."""
    if table.shape[0] < 2:
        raise ValueError("a cross-validated gain needs at least two folds")
    chosen = [int(np.argmin(np.delete(table, f, axis=0).mean(0))) for f in range(table.shape[0])]
    gains = np.asarray([table[f, j] - table[f, 0] for f, j in enumerate(chosen)])
    rng = np.random.default_rng(seed)
    boot = gains[rng.integers(0, gains.size, (draws, gains.size))].mean(1)
    return {"chosen": chosen, "gains": gains.tolist(), "mean": float(gains.mean()),
            "upper_one_sided": float(np.percentile(boot, 95))}


def carry(model, dev_csv, test_csv, point) -> dict:
    """`model`'s threshold at dev operating point `point` on its own decision score (its fusion
    and dev statistics), from score files of `despoof subset --model ... --scores`; its test ACER
    there and at its own threshold."""
    def split(path):
        t = evaluate.read_csv(path)
        return (scores.fuse(t, model.fusion_stats, model.fusion), t["label"].astype(int),
                t["species"].astype(int))
    dev, test = split(dev_csv), split(test_csv)
    t = threshold_at(dev[0], dev[1], point)
    return {"threshold": t, "own_threshold": model.threshold,
            "dev_bpcer": metrics.bpcer(dev[0], dev[1], t),
            "test_acer": _acer(test, t), "test_acer_own": _acer(test, model.threshold)}


def report(roots: Sequence[str], score: str = "map", model=None, dev_csv=None,
           test_csv=None) -> dict:
    folds = find_folds(roots)
    table = fold_table(folds, score)
    cv = cross_validated_gain(table)
    best = GRID[int(np.argmin(table.mean(0)))]
    out = {"score": score, "grid": [str(p) for p in GRID], "folds": [str(wd.root) for wd in folds],
           "acer": table.tolist(), "mean_acer": table.mean(0).tolist(),
           "cross_validated": {**cv, "chosen": [str(GRID[j]) for j in cv["chosen"]]},
           "best": str(best)}
    if model is not None:
        out["carried"] = carry(model, dev_csv, test_csv, best)
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("roots", nargs="+", metavar="ROOT")
    ap.add_argument("--score", default="map", choices=scores.COMPONENTS)
    ap.add_argument("--model", default=None, help="carry b* to this model (with its score files)")
    ap.add_argument("--dev-scores", default=None, metavar="CSV")
    ap.add_argument("--test-scores", default=None, metavar="CSV")
    ap.add_argument("--json", default="")
    args = ap.parse_args(argv)
    model = None
    if args.model is not None:
        if not (args.dev_scores and args.test_scores):
            ap.error("--model needs --dev-scores and --test-scores (despoof subset --model M "
                     "--split dev|test --scores CSV)")
        model = serving_model.load(args.model)
    try:
        out = report(args.roots, args.score, model, args.dev_scores, args.test_scores)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"test ACER (%) of the {args.score} score per dev operating point {out['grid']}:")
    for name, row in zip(out["folds"], out["acer"]):
        print(f"  {name}: " + "  ".join(f"{100 * x:5.1f}" for x in row))
    print("  mean: " + "  ".join(f"{100 * x:5.1f}" for x in out["mean_acer"]))
    cv = out["cross_validated"]
    print(f"cross-validated gain {100 * cv['mean']:+.2f} points, one-sided 95 % upper bound "
          f"{100 * cv['upper_one_sided']:+.2f}; best on all folds: {out['best']}")
    if "carried" in out:
        c = out["carried"]
        print(f"{args.model}: threshold {c['threshold']:.6f} (dev BPCER {100 * c['dev_bpcer']:.1f} "
              f"%), test ACER {100 * c['test_acer']:.2f} % against {100 * c['test_acer_own']:.2f} "
              f"% at its own {c['own_threshold']:.6f}")
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
