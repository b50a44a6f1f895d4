"""Markdown report of one or more workdirs: tables, ROC/DET curves, histograms and figures.

    despoof report WORKDIR [WORKDIR ...] [--out DIR] [--medium]

Reads what training and evaluation left in each workdir (config.json, eval/metrics.json,
eval/scores_{dev,test}.csv, eval/*.png; or eval/metrics_folds.json and fold<k>/ for a multi-fold
run) and writes DIR/report.md (default: WORKDIR/report for one workdir, ./report for several)
with its PNGs in DIR/images/:
  - a summary table, one row per workdir (method, protocol, the default score's test metrics at
    the dev threshold; "mean ± std" over folds for multi-fold runs),
  - per workdir: the Table 2-style tables (frame and video level), ROC and DET curves of every
    score on test, the histogram of the default score with the dev threshold, the sample sheet,
    and the spoof-medium figures of Sec. 4.4 when eval/medium/ exists (`--medium` computes them
    first for de-spoofing workdirs that lack them; `despoof medium` does it alone),
  - with several workdirs, one ROC/DET plot comparing their default scores.
Nothing here loads a model unless `--medium` asks for it.
"""
from __future__ import annotations

import json

import numpy as np
from etils import epath

from despoof_jax.data import datasets, synthetic
from despoof_jax.evaluation import decomposition, evaluate, metrics, plots, scores
from despoof_jax.evaluation import medium as medium_lib
from despoof_jax.training.workdir import Workdir


def _load_json(path):
    return json.loads(epath.Path(path).read_text())


def scoreset(table: dict, split_scores: dict, how: str,
             species_names=synthetic.SPECIES) -> metrics.ScoreSet:
    """The test (or dev) ScoreSet of score `how`: a fusion of the de-spoofing components with the
    dev statistics in `table`, or a baseline's own score column; `species_names` are the
    dataset's (`datasets.species_names`)."""
    if "fusion_stats" in table:
        values = scores.fuse(split_scores, table["fusion_stats"], how)
    else:
        values = split_scores[f"score_{how}"]
    return metrics.ScoreSet(scores=values, labels=split_scores["label"].astype(np.int64),
                            species=split_scores["species"].astype(np.int64),
                            video=split_scores["video"].astype(np.int64),
                            species_names=species_names)


def _names(workdir: str, split: str = "test"):
    """The species names of a workdir's `split` (its dataset's, not the synthetic world's)."""
    config = Workdir(workdir).read_config()
    return datasets.species_names(datasets.for_split(config.data, split))


def _fmt(value, scale=100) -> str:
    return evaluate.format_cell(value, scale)


class _Report:
    """Lines of report.md and its images/ folder; `out_dir` may be a URL (epath throughout)."""

    def __init__(self, out_dir):
        self.out_dir = epath.Path(out_dir)
        self.images = self.out_dir / "images"
        self.images.mkdir(parents=True, exist_ok=True)
        self.lines: list[str] = []

    def add(self, *lines: str):
        self.lines.extend(lines)

    def image(self, path, caption: str):
        rel = epath.Path(path).relative_to(self.out_dir)
        self.add(f"![{caption}]({rel})", "")

    def copy(self, src, name: str, caption: str):
        src = epath.Path(src)
        if src.exists():
            dst = self.images / name
            dst.write_bytes(src.read_bytes())
            self.image(dst, caption)


def _label(workdir: str) -> str:
    return epath.Path(workdir).name or str(workdir)


def _summary_row(label: str, config, table: dict) -> tuple[str, dict]:
    how = table.get("default_fusion") or config.get("eval", {}).get("fusion", "average")
    r = table["fusions"][how]["frame"]
    cells = " | ".join(_fmt(r[k], s) for k, _, s in evaluate.TABLE_METRICS)
    fold = "all" if config.data.fold == -1 else config.data.fold
    return (f"| {label} | {config.get('method', 'despoof')} | {config.data.protocol} "
            f"(fold {fold}) | {how} | {cells} |"), r


def _single(rep: _Report, label: str, workdir: str, table: dict, curves: dict):
    wd = Workdir(workdir)
    rep.add(evaluate.markdown_tables(table))
    if table.get("decomposition"):
        rep.add("#### Decomposition against the true spoof noise (test set)", "",
                decomposition.markdown(table["decomposition"]))
    dev = evaluate.read_csv(wd.scores_csv("dev"))
    test = evaluate.read_csv(wd.scores_csv("test"))
    how = table.get("default_fusion", next(iter(table["fusions"])))
    names = _names(workdir)
    sets = {h: scoreset(table, test, h, names) for h in table["fusions"]}
    rep.image(plots.plot_roc_det(sets, rep.images / f"{label}_roc_det.png"),
              f"{label}: ROC and DET on test")
    threshold = table["fusions"][how]["frame"]["threshold"]
    rep.image(plots.plot_score_histograms(sets[how], threshold,
                                          rep.images / f"{label}_hist_test.png"),
              f"{label}: test scores ({how}) and the dev threshold")
    rep.image(plots.plot_score_histograms(scoreset(table, dev, how, _names(workdir, "dev")),
                                          threshold,
                                          rep.images / f"{label}_hist_dev.png"),
              f"{label}: dev scores ({how}) and the threshold chosen on them")
    curves[label] = sets[how]
    rep.copy(wd.sample_sheet, f"{label}_sample_sheet.png",
             f"{label}: inputs, |FFT|, noise x5+128, |FFT| of noise, live reconstruction")
    medium_dir = wd.medium_dir
    if (medium_dir / "medium.json").exists():
        m = _load_json(medium_dir / "medium.json")
        rep.add(f"#### Spoof medium (Sec. 4.4), {m['n_videos']} test videos", "")
        for n in ("3", "5"):
            r = m[f"svm_{n}"]
            if "accuracy" in r:
                rep.add(f"- SVM, {n} classes ({', '.join(r['classes'])}): accuracy "
                        f"{100 * r['accuracy']:.1f}% ({r['n_folds']}-fold, out of fold)")
        rep.add("")
        for key, caption in (("tsne_noise", "Fig. 4 left: t-SNE of the noise"),
                             ("tsne_highpass", "Fig. 4 right: t-SNE of the high-pass noise"),
                             ("confusion_3", "Table 6: 3 classes"),
                             ("confusion_5", "Table 6: 5 classes"),
                             ("fig5", "Fig. 5: input, noise x5+128, live reconstruction"),
                             ("failures", "Failure cases (* = misclassified at the dev "
                                          "threshold)")):
            if key in m.get("files", {}):
                rep.copy(medium_dir / m["files"][key], f"{label}_{key}.png",
                         f"{label}: {caption}")


def _folds(rep: _Report, label: str, workdir: str, summary: dict, curves: dict):
    rep.add(f"Mean ± std over {summary['n_folds']} folds, each with its own dev threshold.", "")
    rep.add(evaluate.markdown_tables(summary))
    how = summary.get("default_fusion", next(iter(summary["fusions"])))
    # "decision": the folds decided with different scores; each fold's curve is its own score's.
    own = summary.get("fold_fusions") or [how] * summary["n_folds"]
    sets = {}
    for k in range(summary["n_folds"]):
        fold = Workdir(workdir).fold(k)
        if fold.metrics_json.exists():
            t = _load_json(fold.metrics_json)
            fold_how = own[k] if how == "decision" else how
            sets[f"fold {k} ({fold_how})" if how == "decision" else f"fold {k}"] = scoreset(
                t, evaluate.read_csv(fold.scores_csv("test")), fold_how,
                _names(str(fold.root)))
    if sets:
        rep.image(plots.plot_roc_det(sets, rep.images / f"{label}_folds_roc.png"),
                  f"{label}: ROC and DET of {how} on each fold's test set")
        curves[label] = next(iter(sets.values())) if len(sets) == 1 else None


def build(workdirs: list[str], out_dir, medium: bool = False) -> str:
    """Writes out_dir/report.md and its images (a local folder or a URL); returns the report's
    path."""
    rep = _Report(out_dir)
    labels, seen = [], set()
    for w in workdirs:
        label = _label(w)
        while label in seen:
            label += "_"
        seen.add(label)
        labels.append(label)
    header = ["| workdir | method | protocol | score | " +
              " | ".join(h for _, h, _ in evaluate.TABLE_METRICS) + " |",
              "|---|---|---|---|" + "---|" * len(evaluate.TABLE_METRICS)]
    sections, curves = [], {}
    for label, w in zip(labels, workdirs):
        wd = Workdir(w)
        config = wd.read_config()
        folds_path = wd.metrics_folds_json
        if (medium and config.get("method", "despoof") == "despoof" and not folds_path.exists()
                and not (wd.medium_dir / "medium.json").exists()):
            medium_lib.analyze(config, wd)
        section = _Report(out_dir)
        section.add(f"## {label}", "", f"`{w}` — method `{config.get('method', 'despoof')}`, "
                    f"protocol `{config.data.protocol}`, data `{config.data.dataset}/"
                    f"{config.data.builder_config}` at {config.data.image_size} px, "
                    f"threshold `{config.eval.threshold}` on dev.", "")
        if folds_path.exists():
            table = _load_json(folds_path)
            _folds(section, label, w, table, curves)
        elif wd.metrics_json.exists():
            table = _load_json(wd.metrics_json)
            _single(section, label, w, table, curves)
        else:
            header.append(f"| {label} | not evaluated | | | " + "| " * len(evaluate.TABLE_METRICS))
            continue
        row, _ = _summary_row(label, config, table)
        header.append(row)
        sections.append(section.lines)
    per = sorted({Workdir(w).read_config().eval.get("apcer_per", "species") for w in workdirs})
    over = " or ".join({"species": "attack species", "medium": "attack media (print, display)"}
                       .get(p, p) for p in per)
    rep.add("# despoof_jax report", "",
            "Test metrics of each workdir's default score at the threshold chosen on its dev "
            f"set (frame level; APCER is the max over {over}: each workdir's `eval.apcer_per`). "
            "Synthetic-world numbers unless a workdir's data says otherwise.", "")
    rep.add(*header, "")
    usable = {k: v for k, v in curves.items() if v is not None}
    if len(usable) > 1:
        rep.image(plots.plot_roc_det(usable, rep.images / "compare_roc_det.png"),
                  "ROC and DET of each workdir's default score on test")
    for lines in sections:
        rep.add(*lines)
    path = rep.out_dir / "report.md"
    path.write_text("\n".join(rep.lines) + "\n")
    return str(path)
