"""Spoof-medium analysis of the estimated noise (paper Sec. 4.4): Fig. 4, Table 6, Fig. 5.

    python -m despoof_jax.medium WORKDIR

reads a trained de-spoofing workdir (its config.json, checkpoints and eval/ from `evaluate`) and
writes `<workdir>/eval/medium/`:
  tsne_noise.png, tsne_highpass.png   Fig. 4: t-SNE of the noise N of test videos (left) and of
                                      its high-frequency band (right), coloured by species
  confusion_3.png, confusion_5.png    Table 6: SVM on the noise, live/print/replay and the five
                                      species, out-of-fold over the test videos
  fig5.png                            Fig. 5: inputs, noise x5 + 128 and live reconstructions
  failures.png                        the highest-scoring live and lowest-scoring spoof test
                                      samples under the default fusion, with their scores
  medium.json                         SVM accuracies and confusion matrices
One frame per test video (the paper plots "testing videos"), at most `max_per_species` videos
per species. Features are those of the high-pass band for both SVMs: Sec. 4.4 finds the
high-frequency part "more subject independent" and "can be utilized for classification".
"""
from __future__ import annotations

import csv
import json
import os
import sys

import ml_collections
import numpy as np

from despoof_jax import analysis, evaluate, losses, plots, scores
from despoof_jax.data import datasets, pipeline, synthetic


def load_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a workdir was trained with (its config.json)."""
    with open(os.path.join(workdir, "config.json")) as f:
        return ml_collections.ConfigDict(json.load(f))


def read_scores(path: str) -> dict:
    """A scores_*.csv -> {column: float64 [N]}."""
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{path} has no rows")
    return {k: np.asarray([float(r[k]) for r in rows]) for k in rows[0]}


def _predict(config, ds, dq, source, indices: np.ndarray) -> dict:
    predict = evaluate.make_predict(config)
    keep = {"rgb": [], "noise": [], "live": [], "species": [], "identity": []}
    for batch in pipeline.eval_batches(source, indices, batch_size=config.eval.batch_size,
                                       size=config.data.image_size,
                                       degradation=datasets.degradation(config.data)):
        out = predict(ds, dq, batch["rgb"])
        v = batch["valid"]
        keep["rgb"].append(batch["rgb"][v])
        keep["noise"].append(np.asarray(out["noise"])[v])
        keep["live"].append(np.asarray(out["live"])[v])
        keep["species"].append(batch["species"][v])
        keep["identity"].append(batch["identity"][v])
    return {k: np.concatenate(x) for k, x in keep.items()}


def _one_frame_per_video(meta: dict, indices: np.ndarray, max_per_species: int) -> np.ndarray:
    _, first = np.unique(np.asarray(meta["video"])[indices], return_index=True)
    picked = indices[np.sort(first)]
    species = np.asarray(meta["species"])[picked]
    return np.sort(np.concatenate([picked[species == s][:max_per_species]
                                   for s in np.unique(species)]))


def _svm(features, classes, names, groups, seed) -> dict:
    counts = np.unique(classes, return_counts=True)[1]
    n_folds = int(min(5, counts.min()))
    if n_folds < 2:
        return {"skipped": f"a class has {counts.min()} sample(s); need 2"}
    use_groups = len(np.unique(groups)) >= n_folds
    r = analysis.medium_classification(features, classes, n_folds=n_folds, seed=seed,
                                       groups=groups if use_groups else None,
                                       class_names=list(range(len(names))))
    return {"accuracy": r["accuracy"], "fold_accuracies": r["fold_accuracies"],
            "confusion": r["confusion"].tolist(), "classes": list(names), "n_folds": n_folds,
            "grouped_by_identity": use_groups}


def analyze(config, workdir: str, out_dir: str | None = None, max_per_species: int = 40,
            ds=None, dq=None) -> dict:
    """Writes the files of the module docstring; returns the contents of medium.json."""
    if config.get("method", "despoof") != "despoof":
        raise ValueError(f"the spoof-medium analysis needs DS Net's noise; method "
                         f"{config.method!r} has none")
    out_dir = out_dir or os.path.join(workdir, "eval", "medium")
    os.makedirs(out_dir, exist_ok=True)
    if ds is None or dq is None:
        ds, dq = evaluate.load_model(config, workdir)
    test_data = datasets.for_split(config.data, "test")
    source, meta = datasets.load_split(test_data, "test")
    indices = datasets.protocol_indices(config.data, "test", meta)
    picked = _one_frame_per_video(meta, indices, max_per_species)
    out = _predict(config, ds, dq, source, picked)
    names = synthetic.SPECIES
    k = losses.repetitive_kernel_size(config.data.image_size, config.loss.repetitive_k_at_256)
    noise = out["noise"].reshape(len(picked), -1)
    high = analysis.high_pass(out["noise"], k).reshape(len(picked), -1)
    files = {
        "tsne_noise": plots.plot_tsne(analysis.tsne_embed(noise, seed=config.seed), out["species"],
                                      names, os.path.join(out_dir, "tsne_noise.png"),
                                      "t-SNE of the noise N"),
        "tsne_highpass": plots.plot_tsne(
            analysis.tsne_embed(high, seed=config.seed), out["species"], names,
            os.path.join(out_dir, "tsne_highpass.png"), f"t-SNE of high-pass N (k = {k})"),
    }
    result = {"n_videos": int(len(picked)), "high_pass_k": int(k),
              "svm_3": _svm(high, analysis.species_to_medium(out["species"]),
                            analysis.MEDIUM_NAMES, out["identity"], config.seed),
              "svm_5": _svm(high, out["species"], names, out["identity"], config.seed)}
    for n in ("3", "5"):
        r = result[f"svm_{n}"]
        if "confusion" in r:
            files[f"confusion_{n}"] = plots.plot_confusion(
                np.asarray(r["confusion"]), r["classes"], os.path.join(out_dir,
                                                                       f"confusion_{n}.png"),
                f"{n} classes: accuracy {100 * r['accuracy']:.1f}%")
    files["fig5"] = fig5(out, names, os.path.join(out_dir, "fig5.png"))
    failures = failure_cases(config, workdir, ds, dq, os.path.join(out_dir, "failures.png"))
    if failures:
        files["failures"] = failures
    result["files"] = {k: os.path.basename(v) for k, v in files.items()}
    with open(os.path.join(out_dir, "medium.json"), "w") as f:
        json.dump(result, f, indent=2)
    return result


def fig5(out: dict, names, path: str, per_species: int = 2) -> str:
    """Fig. 5: columns are attack samples (print first, then replay), rows the input, the noise
    x5 + 128 and the live reconstruction I - N (RGB channels)."""
    cols = [i for s in range(1, len(names)) for i in np.flatnonzero(out["species"] == s)[
        :per_species]]
    if not cols:
        cols = list(range(min(4, len(out["species"]))))
    rows = [[out["rgb"][i] for i in cols],
            [plots.noise_to_image(out["noise"][i, ..., :3]) for i in cols],
            [np.clip(out["live"][i, ..., :3], 0, 1) for i in cols]]
    return plots.image_grid(rows, ["input", "noise x5+128", "live = I - N"],
                            [names[int(out["species"][i])] for i in cols], path)


def failure_cases(config, workdir: str, ds, dq, path: str, n: int = 4) -> str | None:
    """The `n` highest-scoring live and `n` lowest-scoring spoof test samples under the default
    fusion (eval/scores_test.csv and the dev fusion statistics of eval/metrics.json)."""
    scores_path = os.path.join(workdir, "eval", "scores_test.csv")
    metrics_path = os.path.join(workdir, "eval", "metrics.json")
    if not (os.path.exists(scores_path) and os.path.exists(metrics_path)):
        return None
    with open(metrics_path) as f:
        table = json.load(f)
    test = read_scores(scores_path)
    how = table.get("default_fusion", config.eval.fusion)
    fused = scores.fuse(test, table["fusion_stats"], how)
    threshold = table["fusions"][how]["frame"]["threshold"]
    live, spoof = np.flatnonzero(test["label"] == 0), np.flatnonzero(test["label"] == 1)
    picks = [(live[np.argsort(-fused[live])][:n], "live, highest score"),
             (spoof[np.argsort(fused[spoof])][:n], "spoof, lowest score")]
    source, _ = datasets.load_split(datasets.for_split(config.data, "test"), "test")
    rows, titles = [], []
    for rows_idx, title in picks:
        if len(rows_idx) == 0:
            continue
        out = _predict(config, ds, dq, source, test["index"][rows_idx].astype(np.int64))
        rows.append([out["rgb"][i] for i in range(len(rows_idx))])
        rows.append([plots.noise_to_image(out["noise"][i, ..., :3]) for i in range(len(rows_idx))])
        # "*" marks a sample the dev threshold misclassifies.
        marks = ["*" if (fused[j] >= threshold) != bool(test["label"][j]) else "" for j in rows_idx]
        titles += [f"{title}\n" + ", ".join(f"{fused[j]:.2f}{m}" for j, m in zip(rows_idx, marks)),
                   "noise x5+128"]
    return plots.image_grid(rows, titles, None, path)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return 0 if argv else 2
    for workdir in argv:
        r = analyze(load_config(workdir), workdir)
        print(json.dumps({"workdir": workdir,
                          **{k: r[k].get("accuracy") for k in ("svm_3", "svm_5")}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
