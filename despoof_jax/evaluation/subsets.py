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

`--model M` (`run(model=...)`) instead scores a split with any model `despoof_jax.load` reads (a
packed folder such as `pretrained`, or a workdir), at its own decision score and threshold, on the
dataset of its config or on another build named by `--builder-config` / `--data-dir`: e.g. a
model trained on `wide2_s128` on `wide2_s128_t60`, whose test split has 5x the identities (and
whose train and dev splits are the same records). `--scores CSV` keeps the scores: a later call
with the same model, dataset and split reads them instead of scoring again (the file records
which model and dataset made it, and any other is refused). A build larger than the model's input
is scored through the model's own `score`, and so read by its input policy (`model.json:
input_policy`: shrunk, or as tiles at the records' resolution); the scores file records which.
"""
from __future__ import annotations

import hashlib
import json
import math
from typing import Optional, Sequence

import jax
import ml_collections
import numpy as np
from etils import epath

from despoof_jax.data import datasets, synthetic
from despoof_jax.data.builders import synthetic_spoof
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


def parse_bins(spec: Optional[str]) -> Optional[list[float]]:
    """"1.2,2,3" -> [1.2, 2.0, 3.0]; None stays None; a clear error on anything else."""
    if spec is None:
        return None
    try:
        return [float(x) for x in spec.split(",")]
    except ValueError:
        raise ValueError(f"--bins {spec!r}: expected numbers separated by commas, e.g. 1.2,2,3")


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
    s, identity, rows = _join(table, config, split, stats, how, csv_path)
    return s, identity, rows, threshold, how


def _join(table: dict, config, split: str, stats: dict, how: str, csv_path):
    """(ScoreSet at the decision score, identity [N], metadata rows [N]) of a scores table
    joined with the split's metadata on `index`; refuses a table of another build."""
    data = datasets.for_split(config.data, split)
    _, meta = datasets.load_split(data, split)
    index = table["index"].astype(np.int64)
    n_meta = len(np.asarray(meta["label"]))
    if index.size and (index.min() < 0 or index.max() >= n_meta):
        raise ValueError(f"{csv_path} indexes records up to {index.max()}, but the {split} split "
                         f"has {n_meta}: the scores were made on another build of the dataset")
    rows = {k: np.asarray(v)[index] for k, v in meta.items() if np.ndim(v) == 1
            and len(v) == n_meta}
    rows["index"] = index   # the record's place in the split (`physics_table`'s rows)
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
    return s, table["identity"], rows


def _model_data(config, builder_config: Optional[str], data_dir: Optional[str]):
    """The model's run config with its data pointed at another build (cross-dataset test splits
    are not followed: the split is read from `data.dataset` itself)."""
    c = ml_collections.ConfigDict(config.to_dict())
    if builder_config:
        c.data.builder_config = builder_config
        if c.data.dataset == "synthetic_spoof":
            # The build's own size: one larger than the model's input is scored through the
            # model's `score` and its input policy (`_score_resized`), as a camera's larger
            # crops are.
            sizes = {b.name: b.size for b in synthetic_spoof.CONFIGS}
            members = datasets.synthetic_builds(builder_config)
            unknown = [n for n in members if n not in sizes]
            if unknown:
                raise ValueError(f"--builder-config {builder_config!r}: {', '.join(unknown)} is "
                                 f"not a synthetic_spoof config; valid names: {', '.join(sizes)}")
            if len({sizes[n] for n in members}) != 1:
                raise ValueError(f"--builder-config {builder_config!r}: a union's builds must "
                                 "hold one size")
            c.data.image_size = sizes[members[0]]
    if data_dir:
        c.data.data_dir = data_dir
    c.data.test_dataset = ""
    return c


def _provenance(model, config, split: str) -> dict:
    """What made a scores file: the model's weights (its decision rule is applied after, so it
    may differ), the dataset build and split, and for a build larger than the model's input the
    input policy that read it (the same weights score such records differently under each)."""
    h = hashlib.sha256()
    for net in (model.ds, model.dq):
        for leaf in jax.tree_util.tree_leaves((net.params, net.batch_stats)):
            h.update(np.asarray(leaf, np.float32).tobytes())
    d = config.data
    made_by = {"weights_sha256": h.hexdigest(), "dataset": d.dataset,
               "builder_config": d.builder_config, "protocol": d.protocol, "fold": int(d.fold),
               "image_size": int(d.image_size), "split": split}
    if int(d.image_size) > int(model.config.data.image_size):
        made_by["input_policy"] = getattr(model, "input_policy", "resize")
    return made_by


def load_model_scores(model, split: str = "test", *, builder_config: Optional[str] = None,
                      data_dir: Optional[str] = None, scores_path=None, name: str = ""):
    """Like `load`, for a loaded model (`despoof_jax.load(...)`: a `DespoofModel`, or anything
    with its `config`, `ds`, `dq`, `fusion`, `fusion_stats` and `threshold`): (ScoreSet at its
    decision score, identity, metadata rows, threshold, fusion) of `split` of its dataset (or of
    `builder_config` under `data_dir`), scored now or read from `scores_path` (a CSV written
    here before for the same model and data, with its provenance beside it as CSV + .json)."""
    return _score_model(model, split, builder_config, data_dir, scores_path, name)[0]


def _score_model(model, split, builder_config, data_dir, scores_path, name=""):
    """(`load_model_scores`'s tuple, the data config it read)."""
    config = _model_data(model.config, builder_config, data_dir)
    made_by = _provenance(model, config, split)
    table = None
    if scores_path is not None:
        csv_path, info_path = epath.Path(scores_path), epath.Path(f"{scores_path}.json")
        if csv_path.exists():
            info = json.loads(info_path.read_text()) if info_path.exists() else None
            if info != made_by:
                raise ValueError(f"{csv_path} holds the scores of another model or dataset "
                                 f"({info_path}: {info}; this call: {made_by}); pass another "
                                 "--scores path or remove it")
            table = evaluate.read_csv(csv_path)
    if table is None:
        size, own = int(config.data.image_size), int(model.config.data.image_size)
        if size == own:
            table = evaluate.score_split(config, model.ds, model.dq, split)
        elif size > own:
            table = _score_resized(model, config, split)
        else:
            raise ValueError(f"{config.data.builder_config} holds {size} px records, smaller than "
                             f"the model's {own} px input: scoring them would upsample")
        if scores_path is not None:
            evaluate.write_csv(csv_path, table)
            info_path.write_text(json.dumps(made_by, indent=1))
    where = scores_path or f"the scores of {name or 'the model'}"
    s, identity, rows = _join(table, config, split, model.fusion_stats, model.fusion, where)
    return (s, identity, rows, float(model.threshold), model.fusion), config.data


def _score_resized(model, config, split: str) -> dict:
    """`evaluate.score_split`'s table for records larger than the model's input: each batch goes
    through `model.score`, which reads the crops as every user crop is read, by the model's input
    policy (resized to its input with PIL's antialiased bilinear, or as tiles at their own
    resolution), so a build at 2x the input measures the model on crops a camera finer than its
    input would give (README, "Capture resolution"). The pipeline's all-zero padding rows pass
    `score`'s grayscale check (a flat image is not refused)."""
    if datasets.degradation(config.data) is not None:
        # Its blur sigma and degrade size are in pixels of the build, not of the model's input.
        raise ValueError("a degraded test split (data.degrade_size / blur_sigma) is scored at "
                         "the model's own input size only")

    def predict(ds, dq, rgb):
        del ds, dq   # the model's own nets, behind `score`
        r = model.score(np.asarray(rgb))
        return {f"score_{c}": r.components[c] for c in scores.COMPONENTS}

    return evaluate.score_split(config, model.ds, model.dq, split, predict=predict)


def matching(rows: dict, conditions: dict[str, int]) -> np.ndarray:
    """The boolean mask of the metadata `rows` (as `load` returns them) that hold every
    {column: value} of `conditions` (`parse_where`'s); an unknown column is an error."""
    keep = np.ones(len(rows["index"]), bool)
    for name, value in conditions.items():
        keep &= _column(rows, name) == value
    return keep


def keep_records(s: metrics.ScoreSet, keep: np.ndarray) -> metrics.ScoreSet:
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


def check_options(workdir, model, by, builder_config, data_dir, scores_path, versus,
                  versus_scores, bins=None, input_policy=None) -> None:
    """ValueError for options that do not go together (the command line checks them before it
    loads a model)."""
    if by in synthetic.PHYSICS_COLUMNS and not bins:
        raise ValueError(f"--by {by} is a continuous physics column: give its bin edges, e.g. "
                         "--bins 1.2,2,3")
    if bins and by not in synthetic.PHYSICS_COLUMNS:
        raise ValueError(f"--bins goes with --by one of the physics columns "
                         f"{', '.join(synthetic.PHYSICS_COLUMNS)}, not {by!r}")
    if bins and any(not b < a for b, a in zip(bins, bins[1:])):
        raise ValueError(f"--bins {bins}: expected increasing edges, e.g. 1.2,2,3")
    if (workdir is None) == (model is None):
        raise ValueError("give either an evaluated workdir or --model, not both")
    if model is None and (builder_config or data_dir or scores_path or versus or input_policy):
        raise ValueError("--builder-config, --data-dir, --scores, --versus and --input-policy go "
                         "with --model (a workdir's subset reads the scores its evaluation "
                         "stored)")
    if versus_scores and not versus:
        raise ValueError("--versus-scores goes with --versus")
    if versus and by is not None:
        raise ValueError("--versus compares ACERs; it does not go with --by")


def run(workdir=None, where: Sequence[str] = (), by: Optional[str] = None, split: str = "test",
        n_boot: int = 1000, *, model=None, builder_config: Optional[str] = None,
        data_dir: Optional[str] = None, scores_path=None, versus=None,
        versus_scores=None, model_name: str = "", versus_name: str = "",
        bins: Optional[Sequence[float]] = None) -> dict:
    """The report `despoof subset` prints (see the module docstring): of an evaluated `workdir`'s
    stored scores, or of a loaded `model` (with the options of `load_model_scores`; the command
    line loads it with `despoof_jax.load`). With `versus` (another loaded model, scored on the
    same data), the report adds that model's figures on the same records and the paired
    difference of their ACERs (`metrics.paired_acer_difference`). `model_name` and
    `versus_name` label them in the report. `by` may also name a continuous physics column of
    the wide worlds (`synthetic.PHYSICS_COLUMNS`, e.g. `display_pitch`), cut at the edges `bins`:
    the records' draws are replayed from the generator (`physics_table`), not stored."""
    conditions = parse_where(where)
    check_options(workdir, model, by, builder_config, data_dir, scores_path, versus,
                  versus_scores, bins)
    if model is None:
        s, identity, rows, threshold, how = load(workdir, split)
        data = as_workdir(workdir).read_config().data
    else:
        model_name = model_name or str(getattr(model, "workdir", "the model"))
        (s, identity, rows, threshold, how), data = _score_model(
            model, split, builder_config, data_dir, scores_path, model_name)
        workdir = model_name + (f" on {builder_config}" if builder_config else "")
    other = None
    if versus:
        # The versus model reads the records the model read (a model trained on
        # wide2_s128_t60 against one trained on wide2_s128: both on wide2_s128_t60).
        versus_name = versus_name or str(getattr(versus, "workdir", "the versus model"))
        other = load_model_scores(versus, split, builder_config=data.builder_config,
                                  data_dir=data.data_dir or None, scores_path=versus_scores,
                                  name=versus_name)
        if set(other[2]) != set(rows) or any(not np.array_equal(other[2][k], rows[k])
                                              for k in rows):
            raise ValueError(f"{versus_name} was not scored on the same records as {model_name}: "
                             "a paired comparison needs one dataset build and protocol for both")
    keep = matching(rows, conditions)
    if not keep.any():
        raise ValueError(f"no {split} record has {' and '.join(where)}")
    sub, ids = keep_records(s, keep), np.asarray(identity)[keep]
    report = {"workdir": str(workdir), "split": split, "where": dict(conditions),
              "fusion": how, "records": int(keep.sum()), "of": len(s)}
    if by is None:
        report.update(at_threshold(sub, ids, threshold, n_boot))
        if other is not None:
            o_sub, o_threshold = keep_records(other[0], keep), other[3]
            vs = at_threshold(o_sub, ids, o_threshold, n_boot)
            vs.update(model=versus_name, fusion=other[4])
            vs["paired"] = metrics.paired_acer_difference(sub, o_sub, ids, threshold, o_threshold,
                                                          n_boot=max(n_boot, 2000))
            report["versus"] = vs
    else:
        report["by"] = by
        report["threshold"] = threshold
        if by in synthetic.PHYSICS_COLUMNS:
            values, labels = _binned(physics_column(data, split, by)[rows["index"]], bins)
            report["bins"] = list(map(float, bins))
            report["values"] = {labels[v]: d for v, d in
                                breakdown(sub, values[keep], threshold).items()}
        else:
            report["values"] = breakdown(sub, _column(rows, by)[keep], threshold)
    return report


def physics_column(data, split: str, name: str) -> np.ndarray:
    """[N] values of physics column `name` for the records of `split` of the data config
    `data` (a wide-world `synthetic_spoof` build), in storage order."""
    data = datasets.for_split(data, split)
    if data.dataset != "synthetic_spoof":
        raise ValueError(f"--by {name}: physics columns exist for the synthetic wide worlds only, "
                         f"not for {data.dataset}")
    return np.concatenate([synthetic_spoof.physics_table(n, split)[name]
                           for n in datasets.synthetic_builds(data.builder_config)])


def _binned(x: np.ndarray, edges: Sequence[float]) -> tuple[np.ndarray, dict]:
    """(bin code [N]: -1 where x is NaN (no such stage), else 0..len(edges)), {code: label})."""
    edges = [float(e) for e in edges]
    codes = np.where(np.isnan(x), -1, np.searchsorted(edges, x, side="right"))
    labels = {-1: "none", 0: f"< {edges[0]:g}", len(edges): f">= {edges[-1]:g}"}
    labels.update({i: f"{edges[i - 1]:g}-{edges[i]:g}" for i in range(1, len(edges))})
    return codes, labels


def format_report(r: dict) -> str:
    """A few lines for the terminal."""
    head = (f"{r['workdir']}: {r['split']} records {r['records']} of {r['of']}"
            + (f" where {', '.join(f'{k}={v}' for k, v in r['where'].items())}"
               if r["where"] else "") + f"; decision score ({r['fusion']}) >= "
            f"{r['threshold']:.6g} is an attack")
    # The decision score is the component scores standardised by the dev statistics and fused
    # (`scores.fuse`), not a raw `score_*` column of a scores CSV: said once, since a reader who
    # compares the CSV's raw column with this threshold finds nonsense, not an error.
    head += "\n(decision score: the raw score_* columns standardised by the model's dev statistics)"
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
    lines = [
        head,
        f"bona fide {r['n']['bona_fide']}, attacks {r['n']['attack']}, "
        f"identities {r['n']['identities']} (95 % intervals: {ci['n_boot']} resamples of them)",
        f"ACER {cell('acer')} %  APCER {cell('apcer')} %  BPCER {cell('bpcer')} %  "
        f"AUC {cell('auc', 1)}",
        f"APCER per species (%): {per}"]
    if "versus" in r:
        v, p = r["versus"], r["versus"]["paired"]
        lo, hi = v["ci95"]["acer"]
        lines += [
            f"versus {v['model']} (decision score ({v['fusion']}) >= {v['threshold']:.6g}): ACER "
            f"{100 * v['acer']:.1f} [{100 * lo:.1f}, {100 * hi:.1f}] %  APCER "
            f"{100 * v['apcer']:.1f} %  BPCER {100 * v['bpcer']:.1f} %  AUC {v['auc']:.3f}",
            f"paired ACER difference (this - versus): {100 * p['diff']:+.1f} points, 95 % "
            f"[{100 * p['ci'][0]:+.1f}, {100 * p['ci'][1]:+.1f}], one-sided 95 % upper bound "
            f"{100 * p['upper_one_sided']:+.1f}; this lower in {100 * p['p_a_better']:.1f} % of "
            f"{p['n_boot']} identity resamples"]
    return "\n".join(lines)
