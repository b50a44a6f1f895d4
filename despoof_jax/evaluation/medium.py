"""Spoof-medium analysis of the estimated noise (paper Sec. 4.4): Fig. 4, Table 6, Fig. 5.

    despoof medium WORKDIR

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
per species, drawn at random (seed `config.seed`): the datasets are stored in order (Oulu-NPU by
phone, the synthetic world by identity), so the first videos would come from a few phones or
people. Features are those of the high-pass band for both SVMs: Sec. 4.4 finds the
high-frequency part "more subject independent" and "can be utilized for classification".
"""
from __future__ import annotations

import json

import numpy as np
from etils import epath

from despoof_jax.data import datasets, pipeline, synthetic
from despoof_jax.evaluation import analysis, evaluate, plots, scores
from despoof_jax.training import losses, observe
from despoof_jax.training.workdir import as_workdir


def _predict(config, ds, dq, source, indices: np.ndarray) -> dict:
    predict = evaluate.make_predict(config)
    keep = {"rgb": [], "noise": [], "live": [], "species": [], "identity": []}
    batches = pipeline.eval_batches(source, indices, batch_size=config.eval.batch_size,
                                    size=config.data.image_size,
                                    degradation=datasets.degradation(config.data))
    n = -(-len(indices) // config.eval.batch_size)
    for batch in observe.progress_bar(batches, total=n, desc="medium analysis", unit="batch"):
        out = predict(ds, dq, batch["rgb"])
        v = batch["valid"]
        keep["rgb"].append(batch["rgb"][v])
        keep["noise"].append(np.asarray(out["noise"])[v])
        keep["live"].append(np.asarray(out["live"])[v])
        keep["species"].append(batch["species"][v])
        keep["identity"].append(batch["identity"][v])
    return {k: np.concatenate(x) for k, x in keep.items()}


def _check_cap(max_per_species) -> None:
    if not (isinstance(max_per_species, (int, np.integer)) and max_per_species >= 1):
        raise ValueError(f"max_per_species={max_per_species!r}; expected a whole number >= 1")


def _one_frame_per_video(meta: dict, indices: np.ndarray, max_per_species: int,
                         seed: int = 0) -> np.ndarray:
    """The first frame of each video, then at most `max_per_species` videos per species, drawn
    at random (not the first ones in storage order: a few phones or identities)."""
    _check_cap(max_per_species)
    _, first = np.unique(np.asarray(meta["video"])[indices], return_index=True)
    picked = indices[np.sort(first)]
    species = np.asarray(meta["species"])[picked]
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.permutation(picked[species == s])[:max_per_species]
                                   for s in np.unique(species)]))


def _svm(features, classes, names, groups, seed) -> dict:
    """The cross-validated SVM over the classes present, always grouped by identity (one person's
    videos in one fold: otherwise near-identical noise of one person in train and test folds
    makes any identity signature look like a medium cue), with its chance levels."""
    classes, groups = np.asarray(classes), np.asarray(groups)
    present = np.unique(classes)
    people = min(len(np.unique(groups[classes == c])) for c in present)
    n_folds = int(min(5, people))
    if present.size < 2 or n_folds < 2:
        return {"skipped": f"{present.size} class(es), the smallest from {people} person(s): a "
                           "cross-validation grouped by identity needs 2 classes of 2 people"}
    r = analysis.medium_classification(features, classes, n_folds=n_folds, seed=seed,
                                       groups=groups, class_names=present.tolist())
    counts = np.array([(classes == c).sum() for c in present])
    return {"accuracy": r["accuracy"], "fold_accuracies": r["fold_accuracies"],
            "confusion": r["confusion"].tolist(), "classes": [names[int(c)] for c in present],
            "n_folds": n_folds, "grouped_by_identity": True, "n_classes": int(present.size),
            "chance_majority": float(counts.max() / counts.sum()),
            "chance_uniform": float(1.0 / present.size)}


def analyze(config, workdir, out_dir=None, max_per_species: int = 40,
            ds=None, dq=None) -> dict:
    """Writes the files of the module docstring; returns the contents of medium.json."""
    if config.get("method", "despoof") != "despoof":
        raise ValueError(f"the spoof-medium analysis needs DS Net's noise; method "
                         f"{config.method!r} has none")
    _check_cap(max_per_species)   # before the model and the data are loaded
    wd = as_workdir(workdir)
    out_dir = epath.Path(out_dir) if out_dir else wd.medium_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    # medium.json marks a finished analysis (`report --medium` skips those): gone until this one
    # finishes, so a killed rerun cannot leave old SVM figures beside new plots.
    (out_dir / "medium.json").unlink(missing_ok=True)
    if ds is None or dq is None:
        ds, dq = evaluate.load_model(config, workdir)
    test_data = datasets.for_split(config.data, "test")
    source, meta = datasets.load_split(test_data, "test")
    indices = datasets.protocol_indices(config.data, "test", meta)
    picked = _one_frame_per_video(meta, indices, max_per_species, seed=config.seed)
    out = _predict(config, ds, dq, source, picked)
    # Species ids keep the synthetic meaning in every dataset (0 live, 1-2 print, 3-4 display);
    # the names are the dataset's, "unused<i>" for an id it does not have.
    given = datasets.species_names(test_data)
    names = (tuple(given) if isinstance(given, (tuple, list))
             else tuple(given.get(i, f"unused{i}") for i in range(len(synthetic.SPECIES))))
    k = losses.repetitive_kernel_size(config.data.image_size, config.loss.repetitive_k_at_256)
    noise = out["noise"].reshape(len(picked), -1)
    high = analysis.high_pass(out["noise"], k).reshape(len(picked), -1)
    files = {
        "tsne_noise": plots.plot_tsne(analysis.tsne_embed(noise, seed=config.seed), out["species"],
                                      names, out_dir / "tsne_noise.png",
                                      "t-SNE of the noise N"),
        "tsne_highpass": plots.plot_tsne(
            analysis.tsne_embed(high, seed=config.seed), out["species"], names,
            out_dir / "tsne_highpass.png", f"t-SNE of high-pass N (k = {k})"),
    }
    result = {"n_videos": int(len(picked)), "high_pass_k": int(k),
              "svm_3": _svm(high, analysis.species_to_medium(out["species"]),
                            analysis.MEDIUM_NAMES, out["identity"], config.seed),
              "svm_5": _svm(high, out["species"], names, out["identity"], config.seed)}
    for n in ("3", "5"):
        r = result[f"svm_{n}"]
        if "confusion" in r:
            files[f"confusion_{n}"] = plots.plot_confusion(
                np.asarray(r["confusion"]), r["classes"], out_dir / f"confusion_{n}.png",
                f"{r['n_classes']} classes: accuracy {100 * r['accuracy']:.1f}% (chance: "
                f"majority class {100 * r['chance_majority']:.0f}%, uniform "
                f"{100 * r['chance_uniform']:.0f}%)")
    files["fig5"] = fig5(out, names, out_dir / "fig5.png")
    failures = failure_cases(config, workdir, ds, dq, out_dir / "failures.png")
    if failures:
        files["failures"] = failures
    result["files"] = {k: epath.Path(v).name for k, v in files.items()}
    tmp = out_dir / "medium.json.tmp"
    tmp.write_text(json.dumps(result, indent=2))
    tmp.rename(out_dir / "medium.json")   # last, and whole
    return result


def fig5(out: dict, names, path: str, per_species: int = 2) -> str:
    """Fig. 5: columns are `per_species` samples of each species (live first, whose noise
    should be near zero, then print, then replay), rows the input, the noise x5 + 128 and the
    live reconstruction I - N (RGB channels)."""
    cols = [i for s in range(len(names)) for i in np.flatnonzero(out["species"] == s)[
        :per_species]]
    if not cols:
        cols = list(range(min(4, len(out["species"]))))
    rows = [[out["rgb"][i] for i in cols],
            [plots.noise_to_image(out["noise"][i, ..., :3]) for i in cols],
            [np.clip(out["live"][i, ..., :3], 0, 1) for i in cols]]
    return plots.image_grid(rows, ["input", "noise x5+128", "live = I - N"],
                            [names[int(out["species"][i])] for i in cols], path)


def failure_cases(config, workdir, ds, dq, path, n: int = 4) -> str | None:
    """The `n` highest-scoring live and `n` lowest-scoring spoof test samples under the default
    fusion (eval/scores_test.csv and the dev fusion statistics of eval/metrics.json)."""
    wd = as_workdir(workdir)
    scores_path, metrics_path = wd.scores_csv("test"), wd.metrics_json
    if not (scores_path.exists() and metrics_path.exists()):
        return None
    table = json.loads(metrics_path.read_text())
    test = evaluate.read_csv(scores_path)
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
