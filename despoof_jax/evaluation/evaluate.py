"""Evaluate a trained model on the config's protocol: scores, the paper's metrics, figures.

Writes into `<workdir>/eval/` (paths: `training.workdir.Workdir`):
  scores_dev.csv, scores_test.csv  one row per sample: index, label, species, device, identity,
                                   video and the component scores (noise, map, depth)
  metrics.json                     per fusion (Table 2), frame- and video-level: the dev threshold,
                                   APCER (max and per species), BPCER, ACER, HTER, EER, AUC; and,
                                   when the test records carry `live_reference` (synthetic data),
                                   `decomposition`: how close DS Net's noise comes to the true
                                   spoof noise, per species (`evaluation.decomposition`); and
                                   `checkpoint_steps`: the steps of the checkpoints evaluated
                                   ({"dq": ..., "ds": ...}, each stage's last: `load_model`)
  table2.md                        the fusion table, frame level then video level
  model.json                       what the library API needs to score new images with the same
                                   decision rule: fusion statistics (from dev) and the threshold
  sample_sheet.png                 Fig. 2/5-style sheet: inputs, FFT magnitudes, noise x5 + 128
                                   (and the true noise, with ground truth) and live reconstructions
The threshold is always chosen on dev and applied unchanged to test (`metrics.evaluate_protocol`).

Multi-fold protocols (`data.fold = -1`, Oulu P3/P4-style): each fold is trained and evaluated in
`<workdir>/fold<k>/` with its own dev threshold, and `write_fold_summary` writes
`<workdir>/eval/metrics_folds.json` and `table2.md` with the mean +- std over folds.
"""
from __future__ import annotations

import csv
import functools
import io
import json
from typing import Optional

import jax
import numpy as np
from absl import logging
from etils import epath

from despoof_jax import config as config_lib
from despoof_jax.data import datasets, pipeline, synthetic
from despoof_jax.evaluation import analysis, decomposition, metrics, plots, scores
from despoof_jax.training import checkpoint, loop, observe
from despoof_jax.training import state as state_lib
from despoof_jax.training.workdir import as_workdir, replace_text

META_COLUMNS = ("label", "species", "device", "identity", "video")


def threshold_criterion(spec: str):
    """config.eval.threshold -> metrics criterion: "eer" or "apcer@0.05" -> ("apcer", 0.05);
    anything else is a `ConfigError` (`experiment.preflight` asks before training)."""
    if spec == "eer":
        return "eer"
    if isinstance(spec, str) and spec.startswith("apcer@"):
        try:
            target = float(spec.split("@", 1)[1])
        except ValueError:
            target = None
        if target is not None and 0.0 <= target < 1.0:   # metrics.threshold_at_apcer's range
            return ("apcer", target)
    raise config_lib.ConfigError(f"eval.threshold={spec!r}; expected 'eer' or 'apcer@<target>' "
                                 "with a target in [0, 1) (e.g. 'apcer@0.05')")


def load_model(config, workdir: str, sharding=None) -> tuple[state_lib.FrozenNet,
                                                              state_lib.FrozenNet]:
    """(DS Net, DQ Net) of a workdir's final checkpoints, as inference trees on the host's
    first device (or on `sharding`).

    Each stage's latest readable checkpoint must be its last step (`train.stage1_steps`,
    `train.stage2_steps`), the rule stage 2 applies to stage 1 (`loop.require_final_step`):
    otherwise `loop.UnfinishedStage` says to finish the training, instead of a run stopped early
    (or whose last checkpoint cannot be read) being evaluated or served as if trained. No caller
    wants an intermediate step; to look at one, give `train.stage2_steps` its step."""
    if sharding is None:
        sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    wd = as_workdir(workdir)
    nets = {}
    for stage, init in (("dq", state_lib.init_stage1), ("ds", state_lib.init_stage2)):
        directory = wd.checkpoints(stage)
        nets[stage], step = checkpoint.restore_state_only(
            directory, state_lib.abstract(init, config), sharding)
        loop.require_final_step(stage, step, config, directory, needed_by="evaluation",
                                finish="Finish the training first: run the training command "
                                       "again (--config.mode=all or train resumes it)")
    s2 = nets["ds"]
    return (state_lib.FrozenNet(s2.ds.params, s2.ds.batch_stats),
            state_lib.frozen_dq_from_stage1(nets["dq"]))


def make_predict(config):
    """Jitted `predict(ds, dq, rgb)` for the config's nets (compiled once per batch shape)."""
    ds_model, dq_model, _ = state_lib.make_models(config)
    return jax.jit(functools.partial(scores.predict, ds_model=ds_model, dq_model=dq_model))


def live_references(source, batch, degradation=None) -> Optional[np.ndarray]:
    """The ground-truth live faces (`live_reference`, uint8 [b, S, S, 3]) of a batch's valid
    records, degraded like their images (so I - Î* stays the spoof noise of what DS Net saw), or
    None when the records carry none (real datasets)."""
    idx = np.asarray(batch["index"])[np.asarray(batch["valid"])]
    records = [source[int(i)] for i in idx]
    if not records or "live_reference" not in records[0]:
        return None
    return np.stack([pipeline.degrade(np.asarray(r["live_reference"], np.uint8), degradation)
                     for r in records])


def score_split(config, ds, dq, split: str, predict=None,
                truth: Optional[decomposition.Accumulator] = None) -> dict:
    """Component scores and metadata of every record of `split` in the protocol: {name: [N]}.

    With `truth`, also adds each batch's decomposition metrics (DS Net's noise against the
    records' `live_reference`) to it, while the noise is at hand; skipped without ground truth."""
    predict = predict or make_predict(config)
    source, meta = datasets.load_split(datasets.for_split(config.data, split), split)
    indices = datasets.protocol_indices(config.data, split, meta)
    keep = {k: [] for k in ("index",) + META_COLUMNS + tuple(
        f"score_{c}" for c in scores.COMPONENTS)}
    degradation = datasets.degradation(config.data)
    batches = pipeline.eval_batches(source, indices, batch_size=config.eval.batch_size,
                                    size=config.data.image_size, degradation=degradation)
    n_batches = -(-len(indices) // config.eval.batch_size)
    for batch in observe.progress_bar(batches, total=n_batches, desc=f"scoring {split}",
                                      unit="batch"):
        out = predict(ds, dq, batch["rgb"])
        valid = batch["valid"]
        for k in keep:
            v = out[k] if k.startswith("score_") else batch[k]
            keep[k].append(np.asarray(v)[valid])
        if truth is not None:
            ref = live_references(source, batch, degradation)
            if ref is None:
                truth = None   # no ground truth in this dataset: stop looking
            else:
                truth.add(batch["rgb"][valid], np.asarray(out["noise"])[valid, ..., :3], ref,
                          batch["species"][valid], batch["identity"][valid])
    return {k: np.concatenate(v) for k, v in keep.items()}


def scoreset(split_scores: dict, values: np.ndarray,
             species_names=synthetic.SPECIES) -> metrics.ScoreSet:
    """A split's scores with its labels, species and videos (`datasets.species_names` names the
    species of a real dataset)."""
    return metrics.ScoreSet(scores=values, labels=split_scores["label"],
                            species=split_scores["species"], video=split_scores["video"],
                            species_names=species_names)


def write_csv(path, table: dict):
    """{column: [N]} -> a CSV file (floats exactly, the rest as integers).

    A float is written as the shortest decimal that reads back as the same float64 (`repr`),
    so `read_csv` gives back the values the evaluation decided on, bit for bit: a report or a
    user who recomputes APCER/BPCER from the file at the run's threshold gets the run's figures,
    also for a score within rounding of the threshold. (Until 2026-12-03: 6 significant digits,
    which could move such a score across the threshold.)"""
    names = list(table)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(names)
    for row in zip(*(table[n] for n in names)):
        w.writerow([repr(float(v)) if isinstance(v, (float, np.floating)) else int(v)
                    for v in row])
    epath.Path(path).write_text(buf.getvalue())


def read_csv(path) -> dict:
    """A scores_*.csv -> {column: float64 [N]}."""
    rows = list(csv.reader(io.StringIO(epath.Path(path).read_text())))
    if len(rows) < 2:
        raise ValueError(f"{path} has no rows")
    return {name: np.asarray([float(r[i]) for r in rows[1:]], np.float64)
            for i, name in enumerate(rows[0])}


APCER_PER = ("species", "medium")


def by_medium(split_scores: dict, species_names) -> tuple[dict, dict]:
    """`eval.apcer_per = "medium"`: a split's species ids replaced by their medium (1, 2 -> 1
    print; 3, 4 -> 3 display; ids keep the synthetic meaning in every dataset), and the names of
    the media present, so that APCER is per attack type (Oulu-NPU's print and display: its
    published Test lists label them -1 and -2) instead of per instrument (printer, screen)."""
    medium = analysis.species_to_medium(np.asarray(split_scores["species"]).astype(np.int64))
    species = np.where(medium == 2, 3, medium)
    ids = (range(len(species_names)) if isinstance(species_names, (tuple, list))
           else species_names)
    names = {0: "live"}
    for i in map(int, ids):
        if i in (1, 2):
            names[1] = "print"
        elif i in (3, 4):
            names[3] = "display"
    return dict(split_scores, species=species), names


def fusion_table(dev: dict, test: dict, criterion, species_names=synthetic.SPECIES,
                 dev_species_names=None, apcer_per: str = "species") -> dict:
    """metrics per fusion (paper Table 2), frame- and video-level, thresholds from dev.
    `dev_species_names`: the dev split's own names where it comes from another dataset than the
    test split (cross-dataset protocols); default `species_names`."""
    stats = scores.fusion_stats(dev)
    dev_names = species_names if dev_species_names is None else dev_species_names
    if apcer_per not in APCER_PER:
        raise ValueError(f"eval.apcer_per={apcer_per!r}; expected one of {APCER_PER}")
    if apcer_per == "medium":
        dev, dev_names = by_medium(dev, dev_names)
        test, species_names = by_medium(test, species_names)
    results = {}
    for how in scores.FUSIONS:
        d = scoreset(dev, scores.fuse(dev, stats, how), dev_names)
        t = scoreset(test, scores.fuse(test, stats, how), species_names)
        results[how] = {
            "frame": metrics.evaluate_protocol(d, t, criterion),
            "video": metrics.evaluate_protocol(metrics.video_level(d), metrics.video_level(t),
                                               criterion),
        }
        add_intervals(results[how], t, test)
    return {"fusion_stats": stats, "fusions": results}


DEV_CHOICE = "dev_eer"


def choose_fusion(rule: str, table: dict) -> str:
    """The fusion a run decides with: `rule` itself (one of `scores.FUSIONS`), or with
    `eval.fusion = "dev_eer"` the fusion of lowest frame-level EER on the *dev* split (the first in
    `scores.FUSIONS` order on a tie), so that a model whose depth or noise score is weak is not
    tied to a fusion that includes it, and nothing about the choice looks at the test split."""
    if rule != DEV_CHOICE:
        if rule not in table["fusions"]:
            raise ValueError(f"eval.fusion={rule!r}; expected one of {scores.FUSIONS} or "
                             f"{DEV_CHOICE!r}")
        return rule
    return min(table["fusions"], key=lambda how: (table["fusions"][how]["frame"]["dev_eer"],
                                                  scores.FUSIONS.index(how)))


def add_intervals(result: dict, test_set: metrics.ScoreSet, test: dict) -> None:
    """95 % intervals (bootstrap over test identities, dev threshold fixed) into the frame- and
    video-level results of one score, as result[level]["ci95"]; skipped without identities."""
    if "identity" not in test:
        return
    identity = np.asarray(test["identity"])
    result["frame"]["ci95"] = metrics.bootstrap_intervals(
        test_set, identity, result["frame"]["threshold"])
    if test_set.video is not None:
        videos = metrics.video_level(test_set)
        ids, first, inv = np.unique(test_set.video, return_index=True, return_inverse=True)
        mixed = np.flatnonzero(identity != identity[first][inv.reshape(-1)])
        if mixed.size:   # video_level already refuses mixed labels and species
            raise ValueError(f"video {ids[inv.reshape(-1)[mixed[0]]]!r} holds frames of more "
                             "than one identity; a video is one person's presentation")
        result["video"]["ci95"] = metrics.bootstrap_intervals(   # np.unique: video_level's order
            videos, identity[first], result["video"]["threshold"])


TABLE_METRICS = (("apcer", "APCER (%)", 100), ("bpcer", "BPCER (%)", 100),
                 ("acer", "ACER (%)", 100), ("hter", "HTER (%)", 100), ("eer", "EER (%)", 100),
                 ("auc", "AUC", 1))


def format_cell(value, scale) -> str:
    """One table cell: a number, or a fold aggregate {"mean", "std"} as "mean ± std"."""
    if isinstance(value, dict):
        if value.get("mean") is None:
            return "-"
        std = value.get("std")
        digits = 2 if scale == 100 else 4
        return (f"{scale * value['mean']:.{digits}f} ± {scale * std:.{digits}f}" if std is not None
                else f"{scale * value['mean']:.{digits}f}")
    return f"{scale * value:.2f}" if scale == 100 else f"{value:.4f}"


def markdown_table(fusions: dict, level: str = "frame") -> str:
    """The Table 2-style Markdown table of {fusion: {"frame": metrics, "video": metrics}}, where
    metrics are `evaluate_protocol` dicts or their `aggregate_folds` (cells "mean ± std"); a
    metric with a bootstrap interval (`add_intervals`) is shown as "value [low, high]"."""
    lines = ["| score | " + " | ".join(h for _, h, _ in TABLE_METRICS) + " |",
             "|---|" + "---|" * len(TABLE_METRICS)]
    for how, r in fusions.items():
        f = r[level]
        ci = f.get("ci95", {}) if isinstance(f, dict) else {}
        lines.append(f"| {how} | " + " | ".join(
            format_cell(f[k], s) + (format_interval(ci[k], s) if k in ci else "")
            for k, _, s in TABLE_METRICS) + " |")
    return "\n".join(lines) + "\n"


def format_interval(bounds, scale) -> str:
    lo, hi = bounds
    return (f" [{scale * lo:.2f}, {scale * hi:.2f}]" if scale == 100
            else f" [{lo:.3f}, {hi:.3f}]")


def markdown_tables(table: dict) -> str:
    return "".join(f"**{level} level**\n\n" + markdown_table(table["fusions"], level) + "\n"
                   for level in ("frame", "video"))


def write_fold_summary(fold_tables: list, workdir, **info) -> dict:
    """Aggregates per-fold `fusion_table`s (each fold thresholded on its own dev set) into mean +-
    sample std over folds (`metrics.aggregate_folds`) and writes metrics_folds.json and
    table2.md into the workdir's eval/; returns the summary."""
    fusions = {}
    for how in fold_tables[0]["fusions"]:
        fusions[how] = {level: metrics.aggregate_folds([t["fusions"][how][level]
                                                        for t in fold_tables])
                        for level in ("frame", "video")}
    # Each fold decides with its own score (`eval.fusion = "dev_eer"` picks one per fold on its
    # dev set). When they differ, the summary's decision row is the folds' own decisions,
    # aggregated ("decision"), not one fold's choice applied to all.
    chosen = [t.get("default_fusion") for t in fold_tables]
    if None not in chosen and len(set(chosen)) > 1:
        fusions["decision"] = {level: metrics.aggregate_folds(
            [t["fusions"][c][level] for t, c in zip(fold_tables, chosen)])
            for level in ("frame", "video")}
        info = dict(info, default_fusion="decision")
    elif None not in chosen:
        info = dict(info, default_fusion=chosen[0])
    summary = dict(info, n_folds=len(fold_tables), fusions=fusions, fold_fusions=chosen)
    if jax.process_index() == 0:
        wd = as_workdir(workdir)
        wd.eval_dir.mkdir(parents=True, exist_ok=True)
        wd.metrics_folds_json.write_text(json.dumps(summary, indent=2))
        wd.table2.write_text(f"Mean ± std over {len(fold_tables)} folds, each thresholded on its "
                             "own dev set.\n\n" + markdown_tables(summary))
    return summary


def write_tables(workdir, dev: dict, test: dict, table: dict) -> None:
    """scores_{dev,test}.csv, metrics.json and table2.md of one evaluation (process 0 only)."""
    if jax.process_index() != 0:
        return
    wd = as_workdir(workdir)
    wd.eval_dir.mkdir(parents=True, exist_ok=True)
    write_csv(wd.scores_csv("dev"), dev)
    write_csv(wd.scores_csv("test"), test)
    wd.metrics_json.write_text(json.dumps(table, indent=2))
    wd.table2.write_text(markdown_tables(table))


def sample_sheet(config, ds, dq, path: str, predict=None) -> str:
    """Fig. 2/5-style sheet of test samples: one row per species (live first) with the input,
    its FFT magnitude, the estimated noise (x5 + 128, RGB channels), the true noise I - Î* (x5 +
    128; only when the records carry `live_reference`), the noise's FFT magnitude and the live
    reconstruction."""
    predict = predict or make_predict(config)
    test_data = datasets.for_split(config.data, "test")
    source, meta = datasets.load_split(test_data, "test")
    species_names = datasets.species_names(test_data)
    scored = datasets.protocol_indices(config.data, "test", meta)   # what the protocol scores
    species = np.asarray(meta["species"])[scored]
    picks = [int(scored[np.flatnonzero(species == s)[0]]) for s in sorted(set(species.tolist()))]
    batch = next(pipeline.eval_batches(source, np.asarray(picks), batch_size=len(picks),
                                       size=config.data.image_size,
                                       degradation=datasets.degradation(config.data)))
    out = jax.tree.map(np.asarray, predict(ds, dq, batch["rgb"]))
    ref = live_references(source, batch, datasets.degradation(config.data))
    rows = []
    for i in range(len(picks)):
        noise = out["noise"][i, ..., :3]
        true = [] if ref is None else [plots.noise_to_image(
            (batch["rgb"][i].astype(np.float64) - ref[i]) / 255.0)]
        rows.append([batch["rgb"][i], analysis.fft_log_magnitude(batch["rgb"][i] / 255.0),
                     plots.noise_to_image(noise)] + true + [analysis.fft_log_magnitude(noise),
                                                            np.clip(out["live"][i, ..., :3], 0, 1)])
    names = [species_names[int(batch["species"][i])] for i in range(len(picks))]
    titles = (["input", "|FFT| input", "noise x5+128"] + ([] if ref is None else ["true N* x5+128"])
              + ["|FFT| noise", "live = I - N"])
    return plots.image_grid(rows, names, titles, path)


def evaluate(config, workdir, *, ds=None, dq=None) -> dict:
    """Scores dev and test with the workdir's model (or the given trees) and writes the report
    files listed in the module docstring into the workdir's eval/; returns the metrics dict."""
    wd = as_workdir(workdir)
    checkpoint_steps = None     # unknown for trees given by the caller
    if ds is None or dq is None:
        ds, dq = load_model(config, wd)
        # load_model takes each stage's last step and nothing else
        checkpoint_steps = {"dq": int(config.train.stage1_steps),
                            "ds": int(config.train.stage2_steps)}
    predict = make_predict(config)
    criterion = threshold_criterion(config.eval.threshold)
    dev = score_split(config, ds, dq, "dev", predict)
    truth = decomposition.Accumulator()
    test = score_split(config, ds, dq, "test", predict, truth=truth)
    table = fusion_table(dev, test, criterion,
                         datasets.species_names(datasets.for_split(config.data, "test")),
                         datasets.species_names(datasets.for_split(config.data, "dev")),
                         apcer_per=config.eval.get("apcer_per", "species"))
    how = choose_fusion(config.eval.fusion, table)
    table.update(protocol=config.data.protocol, fold=config.data.fold,
                 criterion=config.eval.threshold, default_fusion=how,
                 fusion_rule=config.eval.fusion)
    table.update(method="despoof")
    if checkpoint_steps is not None:
        table["checkpoint_steps"] = checkpoint_steps
    summary = truth.summary(synthetic.SPECIES)
    if summary is not None:   # only data with ground truth (the synthetic world)
        table["decomposition"] = summary
    write_tables(wd, dev, test, table)
    if summary is not None and jax.process_index() == 0:
        wd.decomposition_md.write_text(
            "DS Net's noise N against the true spoof noise N* = image - live_reference (test "
            "set; mean [95 % interval, bootstrap over identities]).\n\n"
            + decomposition.markdown(summary))
    if jax.process_index() == 0:
        fused = table["fusions"][how]["frame"]
        replace_text(wd.model_json, json.dumps(   # all at once: the model's decision rule
            {"fusion": how, "fusion_stats": table["fusion_stats"],
             "threshold": fused["threshold"], "criterion": config.eval.threshold,
             "image_size": config.data.image_size,
             # how the served model reads a crop larger than image_size (config.INPUT_POLICIES);
             # the records above were scored at image_size, where both policies read the same
             "input_policy": config.eval.get("input_policy", "resize")}, indent=2))
        sheet = sample_sheet(config, ds, dq, wd.sample_sheet, predict)
        log_to_tensorboard(wd, table, config, sheet)
    d = table["fusions"][how]["frame"]
    logging.info("eval (%s, fusion=%s): APCER %.2f%%  BPCER %.2f%%  ACER %.2f%%  AUC %.4f",
                 config.data.protocol, how, 100 * d["apcer"], 100 * d["bpcer"],
                 100 * d["acer"], d["auc"])
    return table


def log_to_tensorboard(workdir, table: dict, config, sheet_path=None) -> None:
    """The evaluation's metrics (every fusion, frame and video level) as TensorBoard scalars at
    the final training step, and the sample sheet as an image, in the workdir's eval/."""
    step = int(config.train.get("stage2_steps", 0)) if table.get("method") == "despoof" else 0
    events = observe.EventWriter(as_workdir(workdir).events("eval"),
                                 enabled=config.train.get("tensorboard", True))
    try:
        for how, levels in table["fusions"].items():
            for level, r in levels.items():
                events.scalars(step, {f"eval/{how}/{level}/{k}": r[k]
                                      for k in ("apcer", "bpcer", "acer", "hter", "eer", "auc")
                                      if isinstance(r.get(k), (int, float))})
        if sheet_path is not None and epath.Path(sheet_path).exists():
            from PIL import Image  # noqa: PLC0415 (pillow: only for the sample-sheet image)
            with epath.Path(sheet_path).open("rb") as f:
                events.image("eval/sample_sheet", step, np.asarray(Image.open(f).convert("RGB")))
    finally:
        events.close()
