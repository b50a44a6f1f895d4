"""Evaluate a trained model on the config's protocol: scores, the paper's metrics, figures.

Writes into `<workdir>/eval/` (or `out_dir`):
  scores_dev.csv, scores_test.csv  one row per sample: index, label, species, device, identity,
                                   video and the component scores (noise, map, depth)
  metrics.json                     per fusion (Table 2), frame- and video-level: the dev threshold,
                                   APCER (max and per species), BPCER, ACER, HTER, EER, AUC; and,
                                   when the test records carry `live_reference` (synthetic data),
                                   `decomposition`: how close DS Net's noise comes to the true
                                   spoof noise, per species (`despoof_jax.decomposition`)
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
import json
import os
from typing import Optional

import jax
import numpy as np
from absl import logging

from despoof_jax import analysis, checkpoint, decomposition, metrics, plots, scores
from despoof_jax import state as state_lib
from despoof_jax import train_step
from despoof_jax.data import datasets, pipeline, synthetic

META_COLUMNS = ("label", "species", "device", "identity", "video")


def threshold_criterion(spec: str):
    """config.eval.threshold -> metrics criterion: "eer" or "apcer@0.05" -> ("apcer", 0.05)."""
    if spec == "eer":
        return "eer"
    if spec.startswith("apcer@"):
        return ("apcer", float(spec.split("@", 1)[1]))
    raise ValueError(f"eval.threshold={spec!r}; expected 'eer' or 'apcer@<target>' (e.g. "
                     "'apcer@0.05')")


def load_model(config, workdir: str, sharding=None) -> tuple[state_lib.FrozenNet,
                                                              state_lib.FrozenNet]:
    """(DS Net, DQ Net) of a workdir's latest checkpoints, as inference trees on the host's
    first device (or on `sharding`)."""
    if sharding is None:
        sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    dq_dir = os.path.join(workdir, "dq", "checkpoints")
    ds_dir = os.path.join(workdir, "ds", "checkpoints")
    s1, _ = checkpoint.restore_state_only(
        dq_dir, state_lib.abstract(state_lib.init_stage1, config), sharding)
    s2, _ = checkpoint.restore_state_only(
        ds_dir, state_lib.abstract(state_lib.init_stage2, config), sharding)
    return (state_lib.FrozenNet(s2.ds.params, s2.ds.batch_stats),
            state_lib.frozen_dq_from_stage1(s1))


def make_predict(config):
    """Jitted `predict(ds, dq, rgb)` for the config's nets (compiled once per batch shape)."""
    ds_model, dq_model, _ = state_lib.make_models(config)
    return jax.jit(functools.partial(train_step.predict, ds_model=ds_model, dq_model=dq_model))


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
    for batch in pipeline.eval_batches(source, indices, batch_size=config.eval.batch_size,
                                       size=config.data.image_size, degradation=degradation):
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


def _scoreset(split_scores: dict, values: np.ndarray) -> metrics.ScoreSet:
    return metrics.ScoreSet(scores=values, labels=split_scores["label"],
                            species=split_scores["species"], video=split_scores["video"],
                            species_names=synthetic.SPECIES)


def _write_csv(path: str, table: dict):
    names = list(table)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(names)
        for row in zip(*(table[n] for n in names)):
            w.writerow([f"{v:.6g}" if isinstance(v, (float, np.floating)) else int(v)
                        for v in row])


def fusion_table(dev: dict, test: dict, criterion) -> dict:
    """metrics per fusion (paper Table 2), frame- and video-level, thresholds from dev."""
    stats = scores.fusion_stats(dev)
    results = {}
    for how in scores.FUSIONS:
        d = _scoreset(dev, scores.fuse(dev, stats, how))
        t = _scoreset(test, scores.fuse(test, stats, how))
        results[how] = {
            "frame": metrics.evaluate_protocol(d, t, criterion),
            "video": metrics.evaluate_protocol(metrics.video_level(d), metrics.video_level(t),
                                               criterion),
        }
    return {"fusion_stats": stats, "fusions": results}


TABLE_METRICS = (("apcer", "APCER (%)", 100), ("bpcer", "BPCER (%)", 100),
                 ("acer", "ACER (%)", 100), ("hter", "HTER (%)", 100), ("eer", "EER (%)", 100),
                 ("auc", "AUC", 1))


def _cell(value, scale) -> str:
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
    metrics are `evaluate_protocol` dicts or their `aggregate_folds` (cells "mean ± std")."""
    lines = ["| score | " + " | ".join(h for _, h, _ in TABLE_METRICS) + " |",
             "|---|" + "---|" * len(TABLE_METRICS)]
    for how, r in fusions.items():
        f = r[level]
        lines.append(f"| {how} | " + " | ".join(_cell(f[k], s) for k, _, s in TABLE_METRICS)
                     + " |")
    return "\n".join(lines) + "\n"


def _markdown_table(table: dict) -> str:
    return "".join(f"**{level} level**\n\n" + markdown_table(table["fusions"], level) + "\n"
                   for level in ("frame", "video"))


def write_fold_summary(fold_tables: list, out_dir: str, **info) -> dict:
    """Aggregates per-fold `fusion_table`s (each fold thresholded on its own dev set) into mean +-
    sample std over folds (`metrics.aggregate_folds`) and writes metrics_folds.json and
    table2.md into `out_dir`; returns the summary."""
    fusions = {}
    for how in fold_tables[0]["fusions"]:
        fusions[how] = {level: metrics.aggregate_folds([t["fusions"][how][level]
                                                        for t in fold_tables])
                        for level in ("frame", "video")}
    summary = dict(info, n_folds=len(fold_tables), fusions=fusions)
    if jax.process_index() == 0:
        os.makedirs(out_dir, exist_ok=True)
        with open(os.path.join(out_dir, "metrics_folds.json"), "w") as f:
            json.dump(summary, f, indent=2)
        with open(os.path.join(out_dir, "table2.md"), "w") as f:
            f.write(f"Mean ± std over {len(fold_tables)} folds, each thresholded on its own dev "
                    "set.\n\n" + _markdown_table(summary))
    return summary


def write_tables(out_dir: str, dev: dict, test: dict, table: dict) -> None:
    """scores_{dev,test}.csv, metrics.json and table2.md of one evaluation (process 0 only)."""
    if jax.process_index() != 0:
        return
    os.makedirs(out_dir, exist_ok=True)
    _write_csv(os.path.join(out_dir, "scores_dev.csv"), dev)
    _write_csv(os.path.join(out_dir, "scores_test.csv"), test)
    with open(os.path.join(out_dir, "metrics.json"), "w") as f:
        json.dump(table, f, indent=2)
    with open(os.path.join(out_dir, "table2.md"), "w") as f:
        f.write(_markdown_table(table))


def sample_sheet(config, ds, dq, path: str, predict=None) -> str:
    """Fig. 2/5-style sheet of test samples: one row per species (live first) with the input,
    its FFT magnitude, the estimated noise (x5 + 128, RGB channels), the true noise I - Î* (x5 +
    128; only when the records carry `live_reference`), the noise's FFT magnitude and the live
    reconstruction."""
    predict = predict or make_predict(config)
    source, meta = datasets.load_split(datasets.for_split(config.data, "test"), "test")
    picks = [int(np.flatnonzero(meta["species"] == s)[0])
             for s in range(len(synthetic.SPECIES)) if np.any(meta["species"] == s)]
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
    names = [synthetic.SPECIES[int(batch["species"][i])] for i in range(len(picks))]
    titles = (["input", "|FFT| input", "noise x5+128"] + ([] if ref is None else ["true N* x5+128"])
              + ["|FFT| noise", "live = I - N"])
    return plots.image_grid(rows, names, titles, path)


def evaluate(config, workdir: str, *, ds=None, dq=None, out_dir: Optional[str] = None) -> dict:
    """Scores dev and test with the workdir's model (or the given trees) and writes the report
    files listed in the module docstring; returns the metrics dict."""
    if ds is None or dq is None:
        ds, dq = load_model(config, workdir)
    out_dir = out_dir or os.path.join(workdir, "eval")
    os.makedirs(out_dir, exist_ok=True)
    predict = make_predict(config)
    criterion = threshold_criterion(config.eval.threshold)
    dev = score_split(config, ds, dq, "dev", predict)
    truth = decomposition.Accumulator()
    test = score_split(config, ds, dq, "test", predict, truth=truth)
    table = fusion_table(dev, test, criterion)
    table.update(protocol=config.data.protocol, fold=config.data.fold,
                 criterion=config.eval.threshold, default_fusion=config.eval.fusion)
    table.update(method="despoof")
    summary = truth.summary(synthetic.SPECIES)
    if summary is not None:   # only data with ground truth (the synthetic world)
        table["decomposition"] = summary
    write_tables(out_dir, dev, test, table)
    if jax.process_index() == 0:
        fused = table["fusions"][config.eval.fusion]["frame"]
        with open(os.path.join(out_dir, "model.json"), "w") as f:
            json.dump({"fusion": config.eval.fusion, "fusion_stats": table["fusion_stats"],
                       "threshold": fused["threshold"], "criterion": config.eval.threshold,
                       "image_size": config.data.image_size}, f, indent=2)
        sample_sheet(config, ds, dq, os.path.join(out_dir, "sample_sheet.png"), predict)
    d = table["fusions"][config.eval.fusion]["frame"]
    logging.info("eval (%s, fusion=%s): APCER %.2f%%  BPCER %.2f%%  ACER %.2f%%  AUC %.4f",
                 config.data.protocol, config.eval.fusion, 100 * d["apcer"], 100 * d["bpcer"],
                 100 * d["acer"], d["auc"])
    return table
