"""A run's decision on part of its test split, chosen by the records' metadata columns.

    despoof subset WORKDIR --where photo_source=-1 --where scene_content=-1
    despoof subset WORKDIR --by print_family

`--where COLUMN=VALUE` (repeatable, all must hold) keeps the records whose metadata says so and
reports APCER (worst species and per species), BPCER, ACER and AUC on them at the run's own
decision score and threshold (`eval/model.json`), with 95 % intervals from resampling test
identities, as `evaluate` does for the whole split. `--by COLUMN` breaks the kept records down by
that column's values: per value, the APCER of its attacks and the BPCER of its bona fide records
(a physics column such as `print_family` is -1 on every record without that stage, so the live
faces fall under -1 there).

Nothing is scored again: the scores are the run's `eval/scores_<split>.csv`, joined on their
`index` column with the split's metadata (`datasets.load_split`), so the figures are those the
evaluation decided on. The issue #14 rules name the subset `direct` (no photo source, a person:
`--where photo_source=-1 --where scene_content=-1`) of the wide2 world.
"""
from __future__ import annotations

import json
import math
from typing import Optional, Sequence

import numpy as np

from despoof_jax.data import datasets
from despoof_jax.evaluation import evaluate, metrics, scores
from despoof_jax.training.workdir import as_workdir


def parse_where(specs: Sequence[str]) -> dict[str, int]:
    """["col=value", ...] -> {col: int value}; a clear error on anything else."""
    out = {}
    for spec in specs:
        name, sep, value = spec.partition("=")
        name = name.strip()
        try:
            v = int(value)
        except ValueError:
            v = None
        if not sep or not name or v is None:
            raise ValueError(f"--where {spec!r}: expected COLUMN=INTEGER, e.g. photo_source=-1")
        if name in out and out[name] != v:
            raise ValueError(f"--where names {name} twice with different values "
                             f"({out[name]} and {v}): no record can match both")
        out[name] = v
    return out


def _column(meta: dict, name: str) -> np.ndarray:
    if name not in meta:
        raise ValueError(f"no metadata column {name!r} in this split; it has "
                         f"{', '.join(sorted(meta))}")
    return np.asarray(meta[name])


def _run_decision(wd) -> tuple[str, dict, float]:
    path = wd.model_json
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: evaluate the run first "
                                "(`despoof train` ends with the evaluation)")
    m = json.loads(path.read_text())
    return m["fusion"], m["fusion_stats"], float(m["threshold"])


def load(workdir, split: str = "test"):
    """(ScoreSet of the split at the run's decision score, identity [N], metadata rows [N],
    threshold, fusion): the scores CSV joined with the split's metadata on `index`."""
    wd = as_workdir(workdir)
    config = wd.read_config()
    how, stats, threshold = _run_decision(wd)
    csv_path = wd.scores_csv(split)
    if not csv_path.exists():
        raise FileNotFoundError(f"{csv_path} is missing: evaluate the run first")
    table = evaluate.read_csv(csv_path)
    data = datasets.for_split(config.data, split)
    _, meta = datasets.load_split(data, split)
    index = table["index"].astype(np.int64)
    n_meta = len(np.asarray(meta["label"]))
    if index.size and (index.min() < 0 or index.max() >= n_meta):
        raise ValueError(f"{csv_path} indexes records up to {index.max()}, but the {split} split "
                         f"has {n_meta}: the scores were made on another build of the dataset")
    rows = {k: np.asarray(v)[index] for k, v in meta.items() if np.ndim(v) == 1
            and len(v) == n_meta}
    for col in ("label", "species", "identity"):
        if not np.array_equal(rows[col].astype(np.int64), table[col].astype(np.int64)):
            raise ValueError(f"{csv_path}: column {col} disagrees with the {split} split's "
                             "metadata; the scores were made on another build of the dataset")
    names = datasets.species_names(data)
    if config.eval.get("apcer_per", "species") == "medium":
        # APCER per attack type, as the evaluation computed it (evaluate.fusion_table); the
        # `species` column of `rows` keeps the instrument, for --where and --by.
        table, names = evaluate.by_medium(table, names)
    s = metrics.ScoreSet(scores=scores.fuse(table, stats, how), labels=table["label"],
                         species=table["species"], video=table["video"], species_names=names)
    return s, table["identity"], rows, threshold, how


def _subset(s: metrics.ScoreSet, keep: np.ndarray) -> metrics.ScoreSet:
    return metrics.ScoreSet(scores=s.scores[keep], labels=s.labels[keep], species=s.species[keep],
                            video=None if s.video is None else s.video[keep],
                            species_names=s.species_names)


def _nan_to_none(x: float):
    return None if isinstance(x, float) and math.isnan(x) else x


def at_threshold(s: metrics.ScoreSet, identity, threshold: float, n_boot: int = 1000) -> dict:
    """The metrics of one subset at a fixed threshold, with bootstrap intervals over identities."""
    n_att, n_bona = int((s.labels == 1).sum()), int((s.labels == 0).sum())
    if n_att == 0 or n_bona == 0:
        raise ValueError(f"the subset has {n_bona} bona fide and {n_att} attack records; ACER "
                         "and AUC need both (use --by for one class at a time)")
    per = metrics.apcer_per_species(s.scores, s.labels, s.species, threshold, s.species_names)
    out = {
        "n": {"bona_fide": n_bona, "attack": n_att,
              "identities": int(np.unique(identity).size)},
        "threshold": threshold,
        "apcer": metrics.apcer(s.scores, s.labels, s.species, threshold, s.species_names),
        "apcer_per_species": {k: _nan_to_none(v) for k, v in per.items()},
        "bpcer": metrics.bpcer(s.scores, s.labels, threshold),
        "auc": metrics.auc(s.scores, s.labels),
    }
    out["acer"] = metrics.acer(s.scores, s.labels, s.species, threshold, s.species_names)
    out["ci95"] = metrics.bootstrap_intervals(s, np.asarray(identity), threshold, n_boot=n_boot)
    return out


def breakdown(s: metrics.ScoreSet, values: np.ndarray, threshold: float) -> dict:
    """{value: {n_bona_fide, n_attack, apcer (pooled over its attacks), bpcer}} per value."""
    out = {}
    for v in np.unique(values):
        m = values == v
        att, bona = s.scores[m & (s.labels == 1)], s.scores[m & (s.labels == 0)]
        out[int(v)] = {"n_bona_fide": int(bona.size), "n_attack": int(att.size),
                       "apcer": float(np.mean(att < threshold)) if att.size else None,
                       "bpcer": float(np.mean(bona >= threshold)) if bona.size else None}
    return out


def run(workdir, where: Sequence[str] = (), by: Optional[str] = None, split: str = "test",
        n_boot: int = 1000) -> dict:
    """The report `despoof subset` prints (see the module docstring)."""
    conditions = parse_where(where)
    s, identity, rows, threshold, how = load(workdir, split)
    keep = np.ones(len(s), bool)
    for name, value in conditions.items():
        keep &= _column(rows, name) == value
    if not keep.any():
        raise ValueError(f"no {split} record has {' and '.join(where)}")
    sub, ids = _subset(s, keep), np.asarray(identity)[keep]
    report = {"workdir": str(workdir), "split": split, "where": dict(conditions),
              "fusion": how, "records": int(keep.sum()), "of": len(s)}
    if by is None:
        report.update(at_threshold(sub, ids, threshold, n_boot))
    else:
        report["by"] = by
        report["threshold"] = threshold
        report["values"] = breakdown(sub, _column(rows, by)[keep], threshold)
    return report


def format_report(r: dict) -> str:
    """A few lines for the terminal."""
    head = (f"{r['workdir']}: {r['split']} records {r['records']} of {r['of']}"
            + (f" where {', '.join(f'{k}={v}' for k, v in r['where'].items())}"
               if r["where"] else "") + f"; {r['fusion']} score >= {r['threshold']:.6g} is "
            "an attack")
    if "values" in r:
        lines = [head, f"{r['by']:>16}  bona fide  attacks   APCER %   BPCER %"]
        for v, d in r["values"].items():
            ap = "" if d["apcer"] is None else f"{100 * d['apcer']:.1f}"
            bp = "" if d["bpcer"] is None else f"{100 * d['bpcer']:.1f}"
            lines.append(f"{v:>16}  {d['n_bona_fide']:>9}  {d['n_attack']:>7}  {ap:>8}  {bp:>8}")
        return "\n".join(lines)
    ci = r["ci95"]

    def cell(k, scale=100):
        lo, hi = ci[k]
        return f"{scale * r[k]:.1f} [{scale * lo:.1f}, {scale * hi:.1f}]" if scale == 100 else \
            f"{r[k]:.3f} [{lo:.3f}, {hi:.3f}]"
    per = ", ".join(f"{k} {100 * v:.1f}" for k, v in r["apcer_per_species"].items()
                    if v is not None)
    return "\n".join([
        head,
        f"bona fide {r['n']['bona_fide']}, attacks {r['n']['attack']}, "
        f"identities {r['n']['identities']} (95 % intervals: {ci['n_boot']} resamples of them)",
        f"ACER {cell('acer')} %  APCER {cell('apcer')} %  BPCER {cell('bpcer')} %  "
        f"AUC {cell('auc', 1)}",
        f"APCER per species (%): {per}"])
